"""Layers shared by every chapter: the linear readout and the softmax cross-entropy loss.

    (1.8)  z_t = h_t W_hy + b_y                       logits over V classes
    (1.9)  loss = -(1/n) sum_t log softmax(z_t)[y_t]   mean over the n scored positions
    (1.10) dz_t = (softmax(z_t) - onehot(y_t)) / n

The softmax subtracts the row maximum before exponentiating (log-sum-exp trick), so large
logits never overflow.
"""
from __future__ import annotations

import numpy as np

from ..core.backend import device_of, xp_of
from ..core.checks import check_positive_int, check_shape

__all__ = ["linear_init", "linear", "linear_backward", "softmax_cross_entropy", "log_softmax"]


def linear_init(rng: np.random.Generator, H: int, V: int, dtype=np.float64) -> dict:
    """Readout parameters W_hy (H, V), b_y (V,), uniform in [-1/sqrt(H), 1/sqrt(H)] like nn.Linear."""
    check_positive_int("H", H)
    check_positive_int("V", V)
    bound = 1.0 / np.sqrt(H)
    return {"W_hy": rng.uniform(-bound, bound, (H, V)).astype(dtype),
            "b_y": rng.uniform(-bound, bound, (V,)).astype(dtype)}


def linear(params: dict, h):
    """Equation (1.8). h: (..., H) -> logits (..., V)."""
    check_shape("params['W_hy']", params["W_hy"], "H V")
    if h.shape[-1] != params["W_hy"].shape[0]:
        raise ValueError(f"h: expected last dimension H={params['W_hy'].shape[0]}, got shape {tuple(h.shape)}")
    return h @ params["W_hy"] + params["b_y"]


def linear_backward(params: dict, dz, h):
    """Gradients of (1.8): returns ({W_hy, b_y}, dh) for dz (..., V) and the h used in forward."""
    xp = xp_of(dz, h)
    H, V = params["W_hy"].shape
    h_flat, dz_flat = xp.reshape(h, (-1, H)), xp.reshape(dz, (-1, V))
    grads = {"W_hy": h_flat.T @ dz_flat, "b_y": xp.sum(dz_flat, axis=0)}
    return grads, dz @ params["W_hy"].T


def log_softmax(z):
    """Stable log softmax over the last axis."""
    xp = xp_of(z)
    z = z - xp.max(z, axis=-1, keepdims=True)
    return z - xp.log(xp.sum(xp.exp(z), axis=-1, keepdims=True))


def softmax_cross_entropy(z, y, mask=None):
    """Equations (1.9)-(1.10): mean cross-entropy and its gradient.

    Args:
        z: (..., V) logits.  y: (...) integer class ids in [0, V).
        mask: optional (...) array of 0/1 weights: only positions with 1 are scored (copy task).
    Returns:
        loss (float, nats per scored position), dz (..., V).
    """
    xp = xp_of(z)
    if tuple(y.shape) != tuple(z.shape[:-1]):
        raise ValueError(f"y: expected shape {tuple(z.shape[:-1])} (the logits' leading axes), "
                         f"got {tuple(y.shape)}")
    V = z.shape[-1]
    if "int" not in str(y.dtype):   # a float label 1.7 would match no class and score loss 0
        raise ValueError(f"y: expected integer class ids, got dtype {y.dtype}")
    y_min, y_max = int(xp.min(y)), int(xp.max(y))
    if y_min < 0 or y_max >= V:
        raise ValueError(f"y: expected class ids in [0, {V}), got values in [{y_min}, {y_max}]")
    dev = device_of(z)
    logp = log_softmax(z)                                            # (..., V)
    onehot = xp.astype(xp.reshape(y, (*y.shape, 1)) == xp.arange(V, device=dev), z.dtype)
    w = xp.ones(y.shape, dtype=z.dtype, device=dev) if mask is None else xp.astype(mask, z.dtype)
    n = float(xp.sum(w))
    if n <= 0:
        raise ValueError("mask: expected at least one scored position, got none")
    loss = -float(xp.sum(xp.sum(logp * onehot, axis=-1) * w)) / n
    dz = (xp.exp(logp) - onehot) * (w[..., None] / n)
    return loss, dz
