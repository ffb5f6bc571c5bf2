"""RWKV: the v4 WKV recurrence (numerically stable), v6's data-dependent decay, v7's generalised
delta rule, and the small RWKV-4 block (token shift, time mixing, channel mixing) as a cell.

Equations, numbered as in chapter 17 (per channel for v4; per head, S (dk, dv), for v6/v7):

    (17.18) v4:  wkv_t = (sum_{i<t} e^{-(t-1-i) w + k_i} v_i + e^{u + k_t} v_t)
                       / (sum_{i<t} e^{-(t-1-i) w + k_i}     + e^{u + k_t}),   w > 0, bonus u
    (17.19) recurrent: a_t = e^{-w} a_{t-1} + e^{k_t} v_t,  b_t = e^{-w} b_{t-1} + e^{k_t},
                       wkv_t = (a_{t-1} + e^{u+k_t} v_t) / (b_{t-1} + e^{u+k_t})
    (17.20) stable: keep a, b divided by e^{p} with p the running maximum exponent:
                q = max(p_{t-1}, u + k_t):  wkv_t = (e^{p-q} a + e^{u+k-q} v) / (e^{p-q} b + e^{u+k-q})
                q' = max(p_{t-1} - w, k_t): a <- e^{p-w-q'} a + e^{k-q'} v,  b likewise,  p_t = q'
    (17.21) v6:  o_t = r_t (S_{t-1} + diag(u) k_t^T v_t),  S_t = diag(w_t) S_{t-1} + k_t^T v_t,
                 w_t = exp(log_w_t) in (0, 1) per key channel, data dependent
    (17.22) v7:  S_t = (diag(w_t) - (a_t * kh_t)^T kh_t) S_{t-1} + k_t^T v_t,  o_t = r_t S_t
                 (kh: the normalised removal key, a in (0, 1): the in-context learning rate);
                 w = 1, a = beta, kh = k, k -> beta k is the delta rule (17.1)
    (17.23) token shift: xx_t = mu * x_t + (1 - mu) * x_{t-1}   (x_0 = 0 or the carried state)
    (17.24) time mixing:  r = sigma(xx_r W_r), k = xx_k W_k, v = xx_v W_v,
                          y = (r * wkv(k, v)) W_o
    (17.25) channel mixing: r = sigma(xx_r W_r'), y = r * (relu(xx_k W_k')^2 W_v')
            block: x <- x + TimeMix(LN(x)),  x <- x + ChannelMix(LN(x))

References:
    B. Peng et al., "RWKV: Reinventing RNNs for the Transformer Era", Findings of EMNLP 2023,
    section 3 and Appendix (the stable WKV kernel, ``wkv_cuda.cu`` in BlinkDL/RWKV-LM).
    B. Peng et al., "Eagle and Finch: RWKV with Matrix-Valued States and Dynamic Recurrence",
    COLM 2024, section 4 (v6). B. Peng et al., "RWKV-7 Goose with Expressive Dynamic State
    Evolution", 2025, section 4 (v7). Deliberate differences: v6/v7 are given as operators only
    (their low-rank data-dependent token shift and LoRA decay are not built); the block is v4's.
"""
from __future__ import annotations

from typing import NamedTuple

import array_api_compat
import numpy as np

from .core.backend import xp_of
from .core.checks import check_floating, check_params, check_positive_int, check_shape

__all__ = ["WKVState", "State", "wkv4", "wkv4_naive", "wkv6", "wkv7", "init", "step", "forward",
           "zero_state", "example", "FORMS", "WKV6_FORMS"]

FORMS = ()
WKV6_FORMS = ("recurrent", "chunkwise")


class WKVState(NamedTuple):
    """v4 WKV state, each (B, D): a and b divided by e^p, and the exponent p."""

    a: object
    b: object
    p: object


class State(NamedTuple):
    """RWKV-4 block state: the previous inputs of the two token shifts (B, D) and the WKV state."""

    x_tm: object
    x_cm: object
    wkv: WKVState


def _zeros(xp, shape, like):
    return xp.zeros(shape, dtype=like.dtype, device=array_api_compat.device(like))


def _check_wkv4(w, u, k, v):
    dims = {}
    check_shape("k", k, "B L D", dims)
    check_shape("v", v, "B L D", dims)
    check_shape("w", w, "D", dims)
    check_shape("u", u, "D", dims)
    for name, a in (("w", w), ("u", u), ("k", k), ("v", v)):
        check_floating(name, a)
    if dims["L"] == 0:
        raise ValueError(f"k: expected at least one time step (L >= 1), got shape {tuple(k.shape)}")
    return dims


def wkv4_naive(w, u, k, v):
    """(17.18) as written: an (L, L) weighted average with raw exponentials (overflows for large k).
    w, u (D,); k, v (B, L, D) -> wkv (B, L, D)."""
    dims = _check_wkv4(w, u, k, v)
    xp = xp_of(k, v)
    L = dims["L"]
    t = xp.arange(L, dtype=k.dtype, device=array_api_compat.device(k))
    lag = t[:, None] - 1 - t[None, :]                                        # (L, L): t-1-i
    past = xp.tril(xp.ones((L, L), dtype=k.dtype, device=array_api_compat.device(k)), k=-1)
    expo = -lag[None, :, :, None] * w + k[:, None, :, :]                     # (B, L, L, D)
    weight = xp.exp(xp.where(past[None, :, :, None] > 0, expo, xp.zeros_like(expo))) \
        * past[None, :, :, None]
    bonus = xp.exp(u + k)                                                    # (B, L, D)
    num = xp.sum(weight * v[:, None, :, :], axis=2) + bonus * v
    den = xp.sum(weight, axis=2) + bonus
    return num / den


def _wkv4_cell(w, u, k_t, v_t, st, stabilize):
    xp = xp_of(k_t, v_t)
    a, b, p = st
    if not stabilize:                                                        # (17.19)
        e = xp.exp(u + k_t)
        out = (a + e * v_t) / (b + e)
        ek = xp.exp(k_t)
        return out, WKVState(xp.exp(-w) * a + ek * v_t, xp.exp(-w) * b + ek, p)
    q = xp.maximum(p, u + k_t)                                               # (17.20)
    e1, e2 = xp.exp(p - q), xp.exp(u + k_t - q)
    out = (e1 * a + e2 * v_t) / (e1 * b + e2)
    q2 = xp.maximum(p - w, k_t)
    e1, e2 = xp.exp(p - w - q2), xp.exp(k_t - q2)
    return out, WKVState(e1 * a + e2 * v_t, e1 * b + e2, q2)


def _wkv4_zero(k):
    xp = xp_of(k)
    z = _zeros(xp, (k.shape[0], k.shape[-1]), k)
    return WKVState(z, z, z - float("inf"))                                  # p_0 = -inf: empty sums


def wkv4(w, u, k, v, *, state=None, stabilize: bool = True):
    """The v4 WKV recurrence, stable (17.20) by default or raw (17.19).

    Args:
        w: (D,) decay rates > 0 (e^{-w} per step).  u: (D,) bonus of the current token.
        k, v: (B, L, D).  state: WKVState or None (empty past).
    Returns:
        wkv (B, L, D), WKVState.
    """
    dims = _check_wkv4(w, u, k, v)
    xp = xp_of(k, v)
    if state is not None:
        for name, part in zip(WKVState._fields, state):
            check_shape(f"state.{name}", part, "B D", dims)
    st = _wkv4_zero(k) if state is None else state
    if not stabilize and state is None:
        st = WKVState(st.a, st.b, xp.zeros_like(st.a))
    outs = []
    for t in range(k.shape[1]):
        o, st = _wkv4_cell(w, u, k[:, t], v[:, t], st, stabilize)
        outs.append(o)
    return xp.stack(outs, axis=1), st


# --------------------------------------------------------------------------- v6 and v7 operators
def _check_heads(names_arrays, spec_of):
    dims = {}
    for name, a in names_arrays:
        if a is None:
            continue
        check_shape(name, a, spec_of[name], dims)
        check_floating(name, a)
    if dims["L"] == 0:
        raise ValueError("r: expected at least one time step (L >= 1), got L = 0")
    return dims


def wkv6(r, k, v, log_w, u, *, form: str = "recurrent", chunk_size: int = 16, state=None):
    """RWKV-6 (Finch) WKV (17.21), multi-head.

    Args:
        r, k: (B, H, L, dk).  v: (B, H, L, dv).  log_w: (B, H, L, dk) log decays (<= 0).
        u: (H, dk) bonus.  form: "recurrent" or "chunkwise" (any chunk_size).
        state: (B, H, dk, dv) or None (zeros).
    Returns:
        o (B, H, L, dv), state (B, H, dk, dv).
    """
    dims = _check_heads((("r", r), ("k", k), ("v", v), ("log_w", log_w), ("u", u)),
                        {"r": "B H L dk", "k": "B H L dk", "v": "B H L dv",
                         "log_w": "B H L dk", "u": "H dk"})
    if form not in WKV6_FORMS:
        raise ValueError(f"form: expected one of {WKV6_FORMS}, got {form!r}")
    check_positive_int("chunk_size", chunk_size)
    xp = xp_of(r, k, v)
    S = _zeros(xp, (dims["B"], dims["H"], dims["dk"], dims["dv"]), r) if state is None else state
    if state is not None:
        check_shape("state", state, "B H dk dv", dims)
    L, outs = dims["L"], []
    if form == "recurrent":
        for t in range(L):
            kv = k[:, :, t, :, None] * v[:, :, t, None, :]                    # (B, H, dk, dv)
            outs.append(xp.einsum("bhk,bhkv->bhv", r[:, :, t], S + u[None, :, :, None] * kv))
            S = xp.exp(log_w[:, :, t])[..., None] * S + kv
        return xp.stack(outs, axis=2), S
    for s in range(0, L, chunk_size):
        e = min(s + chunk_size, L)
        R, K, V, LW = r[:, :, s:e], k[:, :, s:e], v[:, :, s:e], log_w[:, :, s:e]
        c = e - s
        cum = xp.cumsum(LW, axis=2)                                           # Lambda_r (B,H,c,dk)
        prev = cum - LW                                                       # Lambda_{r-1}
        strict = xp.tril(xp.ones((c, c), dtype=r.dtype, device=array_api_compat.device(r)), k=-1)
        diff = prev[:, :, :, None, :] - cum[:, :, None, :, :]                 # (B,H,c,c,dk)
        diff = xp.where(strict[..., None] > 0, diff, xp.zeros_like(diff))
        A = xp.sum(R[:, :, :, None, :] * K[:, :, None, :, :] * xp.exp(diff), axis=-1) * strict
        diag = xp.sum(R * u[None, :, None, :] * K, axis=-1)                   # (B, H, c)
        outs.append((R * xp.exp(prev)) @ S + A @ V + diag[..., None] * V)
        S = xp.exp(cum[:, :, -1])[..., None] * S \
            + xp.matrix_transpose(K * xp.exp(cum[:, :, -1:] - cum)) @ V
    return xp.concat(outs, axis=2), S


def wkv7(r, log_w, k, v, kh, a, *, state=None):
    """RWKV-7 (Goose) state update (17.22), recurrent.

    Args:
        r, k, kh: (B, H, L, dk) receptance, key, normalised removal key.  log_w: (B, H, L, dk).
        v: (B, H, L, dv).  a: (B, H, L, dk) in-context learning rates in (0, 1).
        state: (B, H, dk, dv) or None (zeros).
    Returns:
        o (B, H, L, dv), state (B, H, dk, dv).
    """
    dims = _check_heads((("r", r), ("log_w", log_w), ("k", k), ("v", v), ("kh", kh), ("a", a)),
                        {"r": "B H L dk", "log_w": "B H L dk", "k": "B H L dk", "v": "B H L dv",
                         "kh": "B H L dk", "a": "B H L dk"})
    xp = xp_of(r, k, v)
    if state is not None:
        check_shape("state", state, "B H dk dv", dims)
    S = _zeros(xp, (dims["B"], dims["H"], dims["dk"], dims["dv"]), r) if state is None else state
    outs = []
    for t in range(dims["L"]):
        ak = a[:, :, t] * kh[:, :, t]                                          # (B, H, dk)
        removed = xp.einsum("bhk,bhkv->bhv", kh[:, :, t], S)                  # kh S
        S = xp.exp(log_w[:, :, t])[..., None] * S - ak[..., :, None] * removed[..., None, :] \
            + k[:, :, t, :, None] * v[:, :, t, None, :]
        outs.append(xp.einsum("bhk,bhkv->bhv", r[:, :, t], S))
    return xp.stack(outs, axis=2), S


# --------------------------------------------------------------------------- the RWKV-4 block
KEYS = (("ln1_w", "D"), ("ln1_b", "D"), ("ln2_w", "D"), ("ln2_b", "D"),
        ("mu_r", "D"), ("mu_k", "D"), ("mu_v", "D"), ("W_r", "D D"), ("W_k", "D D"),
        ("W_v", "D D"), ("W_o", "D D"), ("time_decay", "D"), ("time_first", "D"),
        ("cmu_r", "D"), ("cmu_k", "D"), ("C_r", "D D"), ("C_k", "D F"), ("C_v", "F D"))


def init(rng: np.random.Generator, D: int, *, ffn: int | None = None, dtype=np.float64) -> dict:
    """RWKV-4 block for width D: w = exp(time_decay) spread over channels as the official init
    (fast to slow decay), u = time_first, mixing coefficients mu in (0, 1); ffn width 4D."""
    check_positive_int("D", D)
    F = 4 * D if ffn is None else ffn
    check_positive_int("ffn", F)
    ratio = np.arange(D) / max(D - 1, 1)
    g = lambda a, b: rng.standard_normal((a, b)) / np.sqrt(a)                # noqa: E731
    p = {"ln1_w": np.ones(D), "ln1_b": np.zeros(D), "ln2_w": np.ones(D), "ln2_b": np.zeros(D),
         "mu_r": 0.5 + 0.5 * ratio, "mu_k": 0.3 + 0.7 * ratio, "mu_v": 0.2 + 0.8 * ratio,
         "W_r": g(D, D), "W_k": g(D, D), "W_v": g(D, D), "W_o": g(D, D) * 0.5,
         "time_decay": -5.0 + 8.0 * ratio ** 0.7,                           # w = exp(.) in (e^-5, e^3)
         "time_first": np.full(D, np.log(0.3)) + 0.5 * ((np.arange(D) + 1) % 3 - 1),
         "cmu_r": 0.5 + 0.5 * ratio, "cmu_k": 0.5 + 0.5 * ratio,
         "C_r": g(D, D), "C_k": g(D, F), "C_v": g(F, D) * 0.5}
    return {k: v.astype(dtype) for k, v in p.items()}


def _ln(xp, x, w, b, eps=1e-5):
    mu = xp.mean(x, axis=-1, keepdims=True)
    var = xp.mean((x - mu) ** 2, axis=-1, keepdims=True)
    return (x - mu) / xp.sqrt(var + eps) * w + b


def _shift(xp, x, x_prev):
    """x_{t-1} for every t of x (B, L, D), x_prev (B, D) the step before x's first."""
    return xp.concat([x_prev[:, None], x[:, :-1]], axis=1)


def _block(params, x, state):
    xp = xp_of(x, params["W_r"])
    p = params
    u = _ln(xp, x, p["ln1_w"], p["ln1_b"])
    us = _shift(xp, u, state.x_tm)                                            # (17.23)
    mix = lambda mu: mu * u + (1 - mu) * us                                   # noqa: E731
    r = 1.0 / (1.0 + xp.exp(-(mix(p["mu_r"]) @ p["W_r"])))                    # (17.24)
    k, v = mix(p["mu_k"]) @ p["W_k"], mix(p["mu_v"]) @ p["W_v"]
    wkv, st = wkv4(xp.exp(p["time_decay"]), p["time_first"], k, v, state=state.wkv)
    x = x + (r * wkv) @ p["W_o"]
    c = _ln(xp, x, p["ln2_w"], p["ln2_b"])
    cs = _shift(xp, c, state.x_cm)
    cmix = lambda mu: mu * c + (1 - mu) * cs                                  # noqa: E731
    rr = 1.0 / (1.0 + xp.exp(-(cmix(p["cmu_r"]) @ p["C_r"])))                 # (17.25)
    kk = xp.maximum(cmix(p["cmu_k"]) @ p["C_k"], xp.zeros_like(c[..., :1]))
    x = x + rr * ((kk * kk) @ p["C_v"])
    return x, State(u[:, -1], c[:, -1], st)


def _check_block(params, x, spec):
    dims = check_params(params, KEYS)
    check_shape("x", x, spec, dims)
    check_floating("x", x)
    if spec == "B L D" and dims["L"] == 0:
        raise ValueError(f"x: expected at least one time step (L >= 1), got shape {tuple(x.shape)}")


def zero_state(params: dict, x) -> State:
    """Empty past on x's device: zero shifted inputs, WKV sums a = b = 0 with p = -inf."""
    xp = xp_of(x)
    z = _zeros(xp, (x.shape[0], params["W_r"].shape[0]), x)
    return State(z, z, WKVState(z, z, z - float("inf")))


def step(params: dict, x_t, state=None):
    """One RWKV-4 block step: x_t (B, D) -> y_t (B, D), State."""
    _check_block(params, x_t, "B D")
    y, state = _block(params, x_t[:, None], zero_state(params, x_t) if state is None else state)
    return y[:, 0], state


def forward(params: dict, x, state=None):
    """The RWKV-4 block over x (B, L, D): y (B, L, D), State."""
    _check_block(params, x, "B L D")
    return _block(params, x, zero_state(params, x) if state is None else state)


def example(rng, *, dtype=np.float64):
    """A small RWKV-4 block for the contract tests: (params, x (2, 6, 4), options)."""
    return init(rng, 4, dtype=dtype), rng.standard_normal((2, 6, 4)).astype(dtype), {}
