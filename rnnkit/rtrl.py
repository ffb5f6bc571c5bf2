"""Real-time recurrent learning (RTRL) for the Elman cell: the gradient carried forward in time.

Chapter 1's Elman cell (row-vector convention, x_t is (B, D), h_t is (B, H)):

    (8.1)  a_t = x_t W_xh + h_{t-1} W_hh + b_h,   h_t = tanh(a_t)

RTRL carries the sensitivity of the state to every parameter, S_t = dh_t/dtheta, forward in
time next to h_t. Differentiating (8.1) (theta is any of W_xh, W_hh, b_h; k indexes hidden units):

    (8.2)  S_t[k, theta] = (1 - h_t[k]^2) ( da_t[k]/dtheta|_direct + sum_m W_hh[m, k] S_{t-1}[m, theta] )
    (8.3)  direct terms:  da_t[k]/dW_xh[i, j] = x_t[i] [j = k],   da_t[k]/dW_hh[i, j] = h_{t-1}[i] [j = k],
                          da_t[k]/db_h[j] = [j = k]
    (8.4)  S_0 = 0                        (h_0 does not depend on the parameters)
    (8.5)  dLoss/dtheta = sum_t sum_k g_t[k] S_t[k, theta],   g_t = dLoss_t/dh_t (the step-t loss only)

(8.5) needs only quantities known at time t, so the gradient of every loss so far is available
online, without storing the past; BPTT (chapter 1, (1.3)-(1.7)) computes the same sum backwards
from stored activations. The price: S_t holds H * (D*H + H*H + H) numbers per sequence, O(H^3),
and (8.2) costs O(H^2 (D*H + H*H)) = O(H^4) operations per step, against BPTT's O(L H) memory
and O(H^2) per step.

    (8.6)  online learning: after step t, theta <- theta - lr * sum_k g_t[k] S_t[k, theta]
           (Williams and Zipser's "real-time" variant: S keeps being propagated with the changing
           weights, an approximation that is good for small learning rates)

References:
    R. J. Williams and D. Zipser, "A Learning Algorithm for Continually Running Fully Recurrent
    Neural Networks", Neural Computation 1(2), 1989, section 2 (equations (3)-(5) there: our
    (8.2)-(8.5) in row-vector form) and section 3 (teacher forcing, real-time updates).
    R. J. Williams and J. Peng, "An efficient gradient-based algorithm for on-line training of
    recurrent network trajectories", Neural Computation 2(4), 1990 (truncated BPTT).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import elman
from .training import layers
from .core.backend import eye, xp_of, zeros
from .core.checks import check_floating, check_params, check_positive_int, check_shape

__all__ = ["Sensitivities", "init_sensitivities", "step", "accumulate", "gradients",
           "state_size", "train_online", "OnlineResult"]


class Sensitivities(NamedTuple):
    """S_t = dh_t/dtheta for each parameter of the Elman cell, the first axes (B, H) being h_t's."""

    W_xh: object   # (B, H, D, H)   S[b, k, i, j] = dh_t[b, k] / dW_xh[i, j]
    W_hh: object   # (B, H, H, H)   S[b, k, i, j] = dh_t[b, k] / dW_hh[i, j]
    b_h: object    # (B, H, H)      S[b, k, j]    = dh_t[b, k] / db_h[j]


def _check_params(params: dict, dims: dict, src: dict) -> None:
    check_params(params, (("W_xh", "D H"), ("W_hh", "H H"), ("b_h", "H")), dims, src)


def state_size(D: int, H: int) -> dict:
    """Numbers stored per sequence: RTRL's sensitivities vs BPTT's activations per time step.

    Returns {"rtrl": H*(D*H + H*H + H)  (independent of L), "bptt_per_step": H (one h_t)}.
    """
    check_positive_int("D", D)
    check_positive_int("H", H)
    return {"rtrl": H * (D * H + H * H + H), "bptt_per_step": H}


def init_sensitivities(params: dict, B: int) -> Sensitivities:
    """S_0 = 0, equation (8.4)."""
    dims, src = {}, {}
    _check_params(params, dims, src)
    check_positive_int("B", B)
    xp = xp_of(params["W_hh"])
    D, H = dims["D"], dims["H"]
    W = params["W_hh"]
    return Sensitivities(zeros(xp, (B, H, D, H), like=W), zeros(xp, (B, H, H, H), like=W),
                         zeros(xp, (B, H, H), like=W))


def step(params: dict, x_t, h_prev, S_prev: Sensitivities):
    """One step of the cell and of its sensitivities, equations (8.1)-(8.3).

    Args:
        params: W_xh (D, H), W_hh (H, H), b_h (H,).
        x_t: (B, D).  h_prev: (B, H).  S_prev: ``Sensitivities`` of h_prev.
    Returns:
        h_t (B, H), S_t (``Sensitivities``).
    """
    dims, src = {}, {}
    _check_params(params, dims, src)
    check_shape("x_t", x_t, "B D", dims, src)
    check_shape("h_prev", h_prev, "B H", dims, src)
    check_shape("S_prev.W_xh", S_prev.W_xh, "B H D H", dims, src)
    check_shape("S_prev.W_hh", S_prev.W_hh, "B H H H", dims, src)
    check_shape("S_prev.b_h", S_prev.b_h, "B H H", dims, src)
    check_floating("x_t", x_t)
    xp = xp_of(x_t, h_prev, params["W_hh"])
    W_hh, H = params["W_hh"], dims["H"]
    h_t = xp.tanh(x_t @ params["W_xh"] + h_prev @ W_hh + params["b_h"])   # (B, H)  (8.1)
    dtanh = 1.0 - h_t * h_t                                                 # (B, H)
    eye_H = eye(xp, H, like=h_t)                                            # [j = k] in (8.3)
    # (8.2): propagate the old sensitivities through W_hh (sum over m), add the direct terms (8.3),
    # then scale row k by tanh'(a_t[k]).
    S_xh = xp.einsum("mk,bmij->bkij", W_hh, S_prev.W_xh) + xp.einsum("bi,kj->bkij", x_t, eye_H)
    S_hh = xp.einsum("mk,bmij->bkij", W_hh, S_prev.W_hh) + xp.einsum("bi,kj->bkij", h_prev, eye_H)
    S_b = xp.einsum("mk,bmj->bkj", W_hh, S_prev.b_h) + eye_H
    return h_t, Sensitivities(dtanh[:, :, None, None] * S_xh, dtanh[:, :, None, None] * S_hh,
                              dtanh[:, :, None] * S_b)


def accumulate(S_t: Sensitivities, g_t) -> dict:
    """The step-t term of (8.5): sum over b and k of g_t[b, k] S_t[b, k, ...].

    Args:
        S_t: ``Sensitivities`` at step t.  g_t: (B, H) dLoss_t/dh_t.
    Returns:
        dict W_xh (D, H), W_hh (H, H), b_h (H,): this step's contribution to dLoss/dtheta.
    """
    dims, src = {}, {}
    check_shape("S_t.W_hh", S_t.W_hh, "B H H H", dims, src)
    check_shape("g_t", g_t, "B H", dims, src)
    xp = xp_of(g_t, S_t.W_hh)
    return {"W_xh": xp.einsum("bk,bkij->ij", g_t, S_t.W_xh),
            "W_hh": xp.einsum("bk,bkij->ij", g_t, S_t.W_hh),
            "b_h": xp.einsum("bk,bkj->j", g_t, S_t.b_h)}


def gradients(params: dict, x, dh_all, h0=None):
    """The gradient of a whole sequence by RTRL: the same quantity ``elman.backward`` returns.

    Args:
        params: W_xh (D, H), W_hh (H, H), b_h (H,).
        x: (B, L, D) inputs.  dh_all: (B, L, H) g_t = dLoss/dh_t from each step's outputs.
        h0: (B, H) initial state, zeros if None.
    Returns:
        grads dict W_xh (D, H), W_hh (H, H), b_h (H,); h_all (B, L, H).
    """
    dims, src = {}, {}
    _check_params(params, dims, src)
    check_shape("x", x, "B L D", dims, src)
    check_shape("dh_all", dh_all, "B L H", dims, src)
    check_floating("x", x)
    xp = xp_of(x, params["W_hh"])
    B, L, H = dims["B"], dims["L"], dims["H"]
    h = zeros(xp, (B, H), like=x) if h0 is None else h0
    check_shape("h0", h, "B H", dims, src)
    S = init_sensitivities(params, B)
    grads = {k: xp.zeros_like(v) for k, v in params.items()}
    hs = []
    for t in range(L):
        h, S = step(params, x[:, t, :], h, S)                   # (8.1)-(8.3)
        for k, v in accumulate(S, dh_all[:, t, :]).items():     # (8.5), online
            grads[k] = grads[k] + v
        hs.append(h)
    return grads, xp.stack(hs, axis=1)


class OnlineResult(NamedTuple):
    """What ``train_online`` returns: the trained parameters and the per-step losses."""

    params: dict        # the cell's parameters after training
    readout: dict       # W_hy (H, V), b_y (V,)
    losses: np.ndarray  # (L,) cross-entropy (nats) at each step, averaged over the B streams


def train_online(params: dict, readout: dict, x, y, lr: float, method: str = "rtrl",
                 truncate: int = 1) -> OnlineResult:
    """Learn while reading B parallel streams: a loss and an SGD update at every step.

    Both methods see the same stream and update after every step t with the loss at step t
    (readout (1.8), cross-entropy (1.9)); they differ in how far back the gradient reaches:
    ``"rtrl"`` uses the full-history sensitivities (8.6); ``"tbptt"`` backpropagates the step-t
    loss through the last ``truncate`` steps only (truncate=1: through the current step alone),
    the online truncated BPTT of Williams and Peng (1990) with h = truncate, h' = 1. It keeps the
    last ``truncate`` inputs and the state before them, and re-runs that window with the current
    weights to backpropagate (so its memory is O(truncate * H), RTRL's O(H^3)).

    Args:
        params: Elman parameters W_xh (D, H), W_hh (H, H), b_h (H,) (copied, not modified).
        readout: W_hy (H, V), b_y (V,) (copied).
        x: (B, L, D) input streams.  y: (B, L) integer targets in [0, V).
        lr: learning rate.  method: "rtrl" or "tbptt".  truncate: window of "tbptt".
    Returns:
        ``OnlineResult``.
    """
    if method not in ("rtrl", "tbptt"):
        raise ValueError(f"method: expected 'rtrl' or 'tbptt', got {method!r}")
    check_positive_int("truncate", truncate)
    dims, src = {}, {}
    _check_params(params, dims, src)
    check_shape("x", x, "B L D", dims, src)
    check_shape("y", y, "B L", dims, src)
    check_floating("x", x)
    xp = xp_of(x, params["W_hh"])
    B, L, H = dims["B"], dims["L"], dims["H"]
    params = {k: xp.asarray(v, copy=True) for k, v in params.items()}
    readout = {k: xp.asarray(v, copy=True) for k, v in readout.items()}
    h = zeros(xp, (B, H), like=x)
    S = init_sensitivities(params, B) if method == "rtrl" else None
    window_x, window_h0 = [], []          # tbptt: the last `truncate` inputs and the state before them
    losses = np.zeros(L)
    for t in range(L):
        if method == "rtrl":
            h, S = step(params, x[:, t, :], h, S)
        else:
            window_x.append(x[:, t, :])
            window_h0.append(h)
            window_x, window_h0 = window_x[-truncate:], window_h0[-truncate:]
            h, _ = elman.step(params, x[:, t, :], h)
        z = layers.linear(readout, h)                                      # (B, V)  (1.8)
        losses[t], dz = layers.softmax_cross_entropy(z, y[:, t])          # (1.9)-(1.10)
        g_readout, g_h = layers.linear_backward(readout, dz, h)           # g_t: (B, H)
        if method == "rtrl":
            g_cell = accumulate(S, g_h)                                    # (8.5) at step t
        else:
            xs = xp.stack(window_x, axis=1)                                # (B, k, D)
            _, _, cache = elman.forward(params, xs, window_h0[0], return_cache=True)
            dh_all = zeros(xp, (B, xs.shape[1], H), like=x)
            dh_all[:, -1, :] = g_h
            g_cell, _, _ = elman.backward(params, dh_all, cache)
        for k in params:                                                   # (8.6)
            params[k] = params[k] - lr * g_cell[k]
        for k in readout:
            readout[k] = readout[k] - lr * g_readout[k]
    return OnlineResult(params, readout, losses)
