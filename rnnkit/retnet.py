"""Retention (RetNet): the recurrent, parallel and chunkwise forms, and the multi-scale retention layer.

Layout as ``rnnkit.linear_attention``: q, k (B, H, L, dk), v (B, H, L, dv), one state S (dk, dv)
per head, o_t = q_t S_t (row vectors); positions n = 0 .. L-1. Equations, numbered as in chapter 16:

    (16.6)  S_n = gamma S_{n-1} + k_n^T v_n,   o_n = q_n S_n           recurrent; gamma (H,) in (0, 1]
    (16.7)  O = (Q K^T * D) V + (Q S_0) * xi,   D_nm = gamma^(n-m) for n >= m, 0 otherwise,
            xi_n = gamma^(n+1)                                          parallel (the decay mask D)
    (16.8)  chunk i of C tokens (positions j = 0 .. c-1 inside it, c <= C):
            O_[i] = (Q_[i] K_[i]^T * D) V_[i] + (Q_[i] R_{i-1}) * xi,   xi_j = gamma^(j+1)
            R_i = gamma^c R_{i-1} + K_[i]^T (V_[i] * zeta),            zeta_j = gamma^(c-1-j)
    (16.9) the layer (multi-scale retention, MSR): per head h, gamma_h = 1 - 2^(-5-h);
            q_n = rot(x_n W_Q, n theta), k_n = rot(x_n W_K, n theta) / sqrt(dk), v_n = x_n W_V
            (rot: the xPos / rotary rotation of consecutive pairs, so q_n . k_m depends on n - m);
            Y = GroupNorm_h(Retention(q, k, v, gamma));  MSR(x) = (swish(x W_G) * Y) W_O

The layer's state is (S, n): the retention state of every head and the position of the next
token (the rotation angle of the next query and key), so ``step`` continues exactly where
``forward`` stopped.

References:
    Y. Sun, L. Dong, S. Huang, S. Ma, Y. Xia, J. Xue, J. Wang, F. Wei, "Retentive Network: A
    Successor to Transformer for Large Language Models", 2023, section 2.1 (eq. 1-7: the three
    forms), 2.2 (gated multi-scale retention, eq. 8), 2.3 (retention score normalisation).
    Official code: microsoft/torchscale, ``torchscale/component/multiscale_retention.py``.
    Deliberate differences: the xPos length-extrapolation factor is left out (RetNet folds it into
    gamma); the group norm has no affine parameters; no score normalisation of section 2.3 (it
    changes nothing mathematically after the group norm, up to its epsilon); dv is a free size
    (the paper doubles it).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import array_api_compat
import numpy as np

from .core.backend import xp_of
from .core.checks import check_floating, check_positive_int, check_shape

__all__ = ["retention", "decay_mask", "rotate", "gammas", "RetNetState", "init", "step", "forward",
           "forward_parallel", "forward_chunkwise", "zero_state", "example", "n_params",
           "RETENTION_FORMS", "FORMS"]

RETENTION_FORMS = ("recurrent", "parallel", "chunkwise")
FORMS = ("forward_parallel", "forward_chunkwise")
_SPECS = (("W_Q", "D H dk"), ("W_K", "D H dk"), ("W_V", "D H dv"), ("W_G", "D H dv"),
          ("W_O", "H dv D"))


def _dev(x):
    return array_api_compat.device(x)


def _check(q, k, v, gamma, state, form, chunk_size):
    dims = {}
    check_shape("q", q, "B H L dk", dims)
    check_shape("k", k, "B H L dk", dims)
    check_shape("v", v, "B H L dv", dims)
    check_shape("gamma", gamma, "H", dims)
    for name, a in (("q", q), ("k", k), ("v", v), ("gamma", gamma)):
        check_floating(name, a)
    if state is not None:
        check_shape("state", state, "B H dk dv", dims)
    if form not in RETENTION_FORMS:
        raise ValueError(f"form: expected one of {RETENTION_FORMS}, got {form!r}")
    check_positive_int("chunk_size", chunk_size)
    return dims


def decay_mask(gamma, n: int):
    """D of (16.7): gamma (H,) -> (H, n, n), D_nm = gamma^(n-m) below and on the diagonal, 0 above."""
    xp = xp_of(gamma)
    pos = xp.arange(n, dtype=gamma.dtype, device=_dev(gamma))
    diff = pos[:, None] - pos[None, :]                                  # n - m
    below = diff >= 0
    power = gamma[:, None, None] ** xp.where(below, diff, xp.zeros_like(diff))
    return xp.where(below, power, xp.zeros_like(power))


def _powers(gamma, exps):
    """gamma^e for a vector of exponents: (H,), (n,) -> (H, n, 1)."""
    return (gamma[:, None] ** exps[None, :])[..., None]


def _recurrent(q, k, v, gamma, S):
    xp = xp_of(q, k, v)
    outs = []
    for n in range(q.shape[2]):
        S = gamma[:, None, None] * S + k[:, :, n, :, None] * v[:, :, n, None, :]   # (16.6)
        outs.append(xp.einsum("bhk,bhkv->bhv", q[:, :, n], S))
    return xp.stack(outs, axis=2), S


def _block(Q, K, V, gamma, S):
    """One chunk (16.8) from R_{i-1} = S; a single chunk of length L is the parallel form (16.7)."""
    xp = xp_of(Q, K, V)
    c = Q.shape[2]
    j = xp.arange(c, dtype=Q.dtype, device=_dev(Q))
    inner = ((Q @ xp.matrix_transpose(K)) * decay_mask(gamma, c)) @ V    # (B, H, c, dv)
    O = inner + (Q @ S) * _powers(gamma, j + 1)                          # xi_j = gamma^(j+1)
    S = (gamma ** c)[:, None, None] * S + xp.matrix_transpose(K) @ (V * _powers(gamma, c - 1 - j))
    return O, S


def retention(q, k, v, gamma, *, form: str = "recurrent", chunk_size: int = 16, state=None):
    """Retention (16.6)-(16.8), one decay per head.

    Args:
        q, k: (B, H, L, dk).  v: (B, H, L, dv).  gamma: (H,) decays in (0, 1].
        form: "recurrent" (16.6), "parallel" (16.7) or "chunkwise" (16.8; any chunk_size, L need
            not be a multiple of it).  state: (B, H, dk, dv) initial state, zeros by default.
    Returns:
        o (B, H, L, dv), state (B, H, dk, dv) after the last token.
    """
    dims = _check(q, k, v, gamma, state, form, chunk_size)
    xp = xp_of(q, k, v)
    if state is None:
        state = xp.zeros((dims["B"], dims["H"], dims["dk"], dims["dv"]), dtype=q.dtype,
                         device=_dev(q))
    if form == "recurrent":
        return _recurrent(q, k, v, gamma, state)
    if form == "parallel":
        return _block(q, k, v, gamma, state)
    outs, S = [], state
    for s in range(0, dims["L"], chunk_size):
        O, S = _block(q[:, :, s:s + chunk_size], k[:, :, s:s + chunk_size],
                      v[:, :, s:s + chunk_size], gamma, S)
        outs.append(O)
    return xp.concat(outs, axis=2), S


# --------------------------------------------------------------------------- rotation, decays
def gammas(xp, H: int, like):
    """The multi-scale decays gamma_h = 1 - 2^(-5-h), h = 0 .. H-1 (section 2.2), like ``like``."""
    h = xp.arange(H, dtype=like.dtype, device=_dev(like))
    return 1 - 2.0 ** (-5 - h)


def rotate(x, pos):
    """The xPos / rotary rotation: x (..., L, d) with d even, pos (..., L) positions; pair
    (x_2i, x_2i+1) is turned by the angle pos * theta_i, theta_i = 10000^(-2i/d). Then
    rotate(q, n) . rotate(k, m) depends on n - m only."""
    xp = xp_of(x)
    d = x.shape[-1]
    i = xp.arange(d // 2, dtype=x.dtype, device=_dev(x))
    theta = xp.exp(i * (-2.0 * math.log(10000.0) / d))                   # (d/2,)
    ang = pos[..., None] * theta                                         # (..., L, d/2)
    cos, sin = xp.cos(ang), xp.sin(ang)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = xp.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)  # (..., L, d/2, 2)
    return xp.reshape(out, x.shape)


# --------------------------------------------------------------------------- the MSR layer
class RetNetState(NamedTuple):
    """The constant-size state of one retention layer."""

    S: object     # (B, H, dk, dv)  retention state of every head
    pos: object   # (B,)            position of the next token (float, the rotation angle's n)


def init(rng: np.random.Generator, D: int, *, n_heads: int = 2, dk: int | None = None,
         dv: int | None = None, dtype=np.float64) -> dict:
    """MSR layer parameters, uniform in [-1/sqrt(fan_in), +]: W_Q, W_K (D, H, dk), W_V, W_G
    (D, H, dv), W_O (H, dv, D). Defaults dk = dv = D / n_heads (dk must be even, for the rotation)."""
    check_positive_int("D", D)
    check_positive_int("n_heads", n_heads)
    dk = D // n_heads if dk is None else dk
    dv = D // n_heads if dv is None else dv
    check_positive_int("dk", dk)
    check_positive_int("dv", dv)
    if dk % 2:
        raise ValueError(f"dk: expected an even key size (the rotation turns pairs), got {dk}")
    u = lambda *s, fan: rng.uniform(-1, 1, s) / math.sqrt(fan)           # noqa: E731
    p = {"W_Q": u(D, n_heads, dk, fan=D), "W_K": u(D, n_heads, dk, fan=D),
         "W_V": u(D, n_heads, dv, fan=D), "W_G": u(D, n_heads, dv, fan=D),
         "W_O": u(n_heads, dv, D, fan=n_heads * dv)}
    return {k: a.astype(dtype) for k, a in p.items()}


def n_params(params: dict) -> int:
    return int(sum(math.prod(a.shape) for a in params.values()))


def _check_layer(params, x, x_spec, state):
    dims, src = {}, {}
    for key, spec in _SPECS:
        if key not in params:
            raise ValueError(f"params: expected keys {', '.join(k for k, _ in _SPECS)}, "
                             f"missing {key!r}")
        check_shape(f"params['{key}']", params[key], spec, dims, src)
    check_shape("x", x, x_spec, dims, src)
    check_floating("x", x)
    if state is not None:
        if not isinstance(state, tuple) or len(state) != 2:
            raise ValueError(f"state: expected a RetNetState (S, pos), got {type(state).__name__}")
        check_shape("state.S", state[0], "B H dk dv", dims, src)
        check_shape("state.pos", state[1], "B", dims, src)
    return dims


def zero_state(params: dict, x) -> RetNetState:
    """The empty state for a batch like x ((B, D) or (B, L, D)): S = 0, position 0."""
    xp = xp_of(x)
    _, H, dk = params["W_Q"].shape
    dv = params["W_V"].shape[2]
    B = x.shape[0]
    return RetNetState(xp.zeros((B, H, dk, dv), dtype=x.dtype, device=_dev(x)),
                       xp.zeros((B,), dtype=x.dtype, device=_dev(x)))


def _project(params, x, pos):
    """x (B, L, D), pos (B, L) -> q, k (B, H, L, dk), v, gate (B, H, L, dv)."""
    xp = xp_of(x, params["W_Q"])
    heads = lambda W: xp.einsum("bld,dhe->bhle", x, W)                  # noqa: E731
    q, k, v, z = heads(params["W_Q"]), heads(params["W_K"]), heads(params["W_V"]), heads(params["W_G"])
    dk = q.shape[-1]
    q = rotate(q, pos[:, None, :])
    k = rotate(k, pos[:, None, :]) / math.sqrt(dk)
    return q, k, v, z


def _group_norm_gate_out(params, Y, z, eps=1e-5):
    """GroupNorm over each head's dv values (no affine), swish gate, W_O: (B, H, L, dv) -> (B, L, D)."""
    xp = xp_of(Y)
    mu = xp.mean(Y, axis=-1, keepdims=True)
    var = xp.mean((Y - mu) ** 2, axis=-1, keepdims=True)
    Y = (Y - mu) / xp.sqrt(var + eps)
    gated = z / (1 + xp.exp(-z)) * Y                                     # swish(x W_G) * Y
    return xp.einsum("bhle,hed->bld", gated, params["W_O"])


def _forward(params, x, state, form, chunk_size):
    dims = _check_layer(params, x, "B L D", state)
    xp = xp_of(x, params["W_Q"])
    if state is None:
        state = zero_state(params, x)
    L = dims["L"]
    pos = state.pos[:, None] + xp.arange(L, dtype=x.dtype, device=_dev(x))[None, :]   # (B, L)
    q, k, v, z = _project(params, x, pos)
    gamma = gammas(xp, dims["H"], x)
    Y, S = retention(q, k, v, gamma, form=form, chunk_size=chunk_size, state=state.S)
    return _group_norm_gate_out(params, Y, z), RetNetState(S, state.pos + L)


def forward(params: dict, x, state: RetNetState | None = None):
    """The MSR layer (16.9) with the recurrent form: x (B, L, D) -> y (B, L, D), state."""
    return _forward(params, x, state, "recurrent", 16)


def forward_parallel(params: dict, x, state: RetNetState | None = None):
    """``forward`` with the parallel form (16.7) (training)."""
    return _forward(params, x, state, "parallel", 16)


def forward_chunkwise(params: dict, x, state: RetNetState | None = None, *, chunk_size: int = 4):
    """``forward`` with the chunkwise form (16.8) (long-sequence training)."""
    return _forward(params, x, state, "chunkwise", chunk_size)


def step(params: dict, x_t, state: RetNetState | None = None):
    """One generation step, constant-size state: x_t (B, D) -> y_t (B, D), state."""
    _check_layer(params, x_t, "B D", state)
    if state is None:
        state = zero_state(params, x_t)
    y, state = _forward(params, x_t[:, None], state, "recurrent", 1)
    return y[:, 0], state


def example(rng: np.random.Generator, *, dtype=np.float64):
    """A small instance for the contract tests: (params, x, options), x (B, L, D) = (2, 7, 6)."""
    params = init(rng, 6, n_heads=3, dk=2, dv=3, dtype=dtype)
    return params, rng.standard_normal((2, 7, 6)).astype(dtype), {}
