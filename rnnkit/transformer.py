"""Causal softmax attention as a recurrent network whose state grows: a KV cache, and FoX's forget gate.

Layout as ``rnnkit.linear_attention``: q, k (B, H, L, dk), v (B, H, L, dv). Equations, numbered as
in chapter 16:

    (16.1)  o_t = sum_{s<=t} softmax_s(q_t k_s^T) v_s          (the layer scales q by 1/sqrt(dk))
    (16.14) Forgetting Transformer (FoX): f_t = sigmoid(x_t w_f + b_f) per head,
            F_t = sum_{l<=t} log f_l,  o_t = sum_{s<=t} softmax_s(q_t k_s^T + F_t - F_s) v_s,
            i.e. the score of key s is down-weighted by the product of the forget gates after it
    (16.15) the layer (pre-norm): u = LayerNorm(x);  q, k, v = u W_Q, u W_K, u W_V per head
            (rotated by position, as ``retnet.rotate``, unless FoX: its paper drops RoPE);
            y = x + concat_h(o) W_O

The state of this recurrent network is the KV cache, all keys and values seen so far (and F for
FoX): ``step`` appends one row per head, so the state grows with t (2 H d numbers per token), where
linear attention's state (``linear_attention``) stays at H dk dv numbers. That is why this module
does not define ``example`` (the cell protocol's fixed-size state); tests/test_transformer.py
checks step == forward itself.

References:
    A. Vaswani et al., "Attention Is All You Need", NeurIPS 2017 (scaled dot-product attention).
    Z. Lin, E. Nikishin, X. O. He, A. Courville, "Forgetting Transformer: Softmax Attention with a
    Forget Gate", ICLR 2025, section 3 (eq. 4-6; no RoPE in FoX).
    J. Su et al., "RoFormer: Enhanced Transformer with Rotary Position Embedding", 2021.
    Deliberate differences: one attention layer, no MLP; FoX's output gate and QK-norm ("Pro"
    variant) are left out.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import array_api_compat
import numpy as np

from .core.backend import xp_of
from .core.checks import check_floating, check_positive_int, check_shape
from .retnet import rotate

__all__ = ["softmax_attention", "KVCache", "init", "forward", "step", "zero_state", "n_params",
           "ATTENTION_FORMS"]

ATTENTION_FORMS = ("recurrent", "parallel")
_SPECS = (("ln_w", "D"), ("ln_b", "D"), ("W_Q", "D H dk"), ("W_K", "D H dk"), ("W_V", "D H dv"),
          ("W_O", "H dv D"))


class KVCache(NamedTuple):
    """The growing state: every key and value so far, and FoX's cumulative log forget gate."""

    K: object   # (B, H, t, dk)
    V: object   # (B, H, t, dv)
    F: object   # (B, H, t)      F_s = sum_{l<=s} log f_l (zeros without a forget gate)


def _dev(x):
    return array_api_compat.device(x)


def _softmax_rows(scores):
    xp = xp_of(scores)
    m = xp.max(scores, axis=-1, keepdims=True)
    e = xp.exp(scores - m)
    return e / xp.sum(e, axis=-1, keepdims=True)


def softmax_attention(q, k, v, *, log_f=None, form: str = "parallel", state: KVCache | None = None):
    """Causal softmax attention (16.1), with FoX's forget gate (16.14) when ``log_f`` is given.

    Args:
        q, k: (B, H, L, dk) (no scaling inside).  v: (B, H, L, dv).
        log_f: (B, H, L) log forget gates (<= 0), or None for plain attention.
        form: "parallel" (the masked L x L score matrix) or "recurrent" (one query at a time
            against the growing cache).  state: a ``KVCache`` of earlier tokens, or None (empty).
    Returns:
        o (B, H, L, dv), the ``KVCache`` with these L tokens appended.
    """
    dims = {}
    check_shape("q", q, "B H L dk", dims)
    check_shape("k", k, "B H L dk", dims)
    check_shape("v", v, "B H L dv", dims)
    if log_f is not None:
        check_shape("log_f", log_f, "B H L", dims)
    for name, a in (("q", q), ("k", k), ("v", v), ("log_f", log_f)):
        if a is not None:
            check_floating(name, a)
    if form not in ATTENTION_FORMS:
        raise ValueError(f"form: expected one of {ATTENTION_FORMS}, got {form!r}")
    xp = xp_of(q, k, v)
    B, H, L = dims["B"], dims["H"], dims["L"]
    if state is None:
        state = _empty(xp, B, H, dims["dk"], dims["dv"], q)
    else:
        if not isinstance(state, tuple) or len(state) != 3:
            raise ValueError(f"state: expected a KVCache (K, V, F), got {type(state).__name__}")
        check_shape("state.K", state[0], "B H T dk", dims)
        check_shape("state.V", state[1], "B H T dv", dims)
        check_shape("state.F", state[2], "B H T", dims)
    T = state.K.shape[2]
    F_last = state.F[:, :, -1:] if T else xp.zeros((B, H, 1), dtype=q.dtype, device=_dev(q))
    F_new = F_last + (xp.cumsum(log_f, axis=2) if log_f is not None else xp.zeros_like(q[..., 0]))
    K = xp.concat([state.K, k], axis=2)                                  # (B, H, T + L, dk)
    V = xp.concat([state.V, v], axis=2)
    F = xp.concat([state.F, F_new], axis=2)                              # (B, H, T + L)
    if form == "parallel":
        scores = q @ xp.matrix_transpose(K) + F_new[..., :, None] - F[..., None, :]
        allowed = xp.tril(xp.ones((L, T + L), dtype=q.dtype, device=_dev(q)), k=T) > 0
        scores = xp.where(allowed, scores, xp.full_like(scores, -math.inf))
        o = _softmax_rows(scores) @ V
    else:
        outs = []
        for t in range(L):
            n = T + t + 1                                                # keys 0 .. T + t
            s = (xp.einsum("bhk,bhsk->bhs", q[:, :, t], K[:, :, :n])
                 + F_new[:, :, t, None] - F[:, :, :n])
            outs.append(xp.einsum("bhs,bhsv->bhv", _softmax_rows(s), V[:, :, :n]))
        o = xp.stack(outs, axis=2)
    return o, KVCache(K, V, F)


def _empty(xp, B, H, dk, dv, like):
    z = lambda *s: xp.zeros(s, dtype=like.dtype, device=_dev(like))     # noqa: E731
    return KVCache(z(B, H, 0, dk), z(B, H, 0, dv), z(B, H, 0))


# --------------------------------------------------------------------------- the layer
def init(rng: np.random.Generator, D: int, *, n_heads: int = 1, d_head: int | None = None,
         forget_gate: bool = False, dtype=np.float64) -> dict:
    """Layer parameters: ln_w, ln_b (D,); W_Q, W_K, W_V (D, H, d); W_O (H, d, D); with
    ``forget_gate`` also FoX's w_f (D, H), b_f (H,) (the bias starts at 3: f near 0.95, little
    forgetting at first). d = D / n_heads by default (even, for the rotation)."""
    check_positive_int("D", D)
    check_positive_int("n_heads", n_heads)
    d = D // n_heads if d_head is None else d_head
    check_positive_int("d_head", d)
    if d % 2:
        raise ValueError(f"d_head: expected an even head size (the rotation turns pairs), got {d}")
    u = lambda *s, fan: rng.uniform(-1, 1, s) / math.sqrt(fan)          # noqa: E731
    p = {"ln_w": np.ones(D), "ln_b": np.zeros(D), "W_Q": u(D, n_heads, d, fan=D),
         "W_K": u(D, n_heads, d, fan=D), "W_V": u(D, n_heads, d, fan=D),
         "W_O": u(n_heads, d, D, fan=n_heads * d)}
    if forget_gate:
        p |= {"w_f": u(D, n_heads, fan=D), "b_f": np.full(n_heads, 3.0)}
    return {k: a.astype(dtype) for k, a in p.items()}


def n_params(params: dict) -> int:
    return int(sum(math.prod(a.shape) for a in params.values()))


def zero_state(params: dict, x) -> KVCache:
    """The empty cache (t = 0) for a batch like x ((B, D) or (B, L, D))."""
    _, H, dk = params["W_Q"].shape
    return _empty(xp_of(x), x.shape[0], H, dk, params["W_V"].shape[2], x)


def _check_layer(params, x, x_spec):
    dims, src = {}, {}
    for key, spec in _SPECS:
        if key not in params:
            raise ValueError(f"params: expected keys {', '.join(k for k, _ in _SPECS)}, "
                             f"missing {key!r}")
        check_shape(f"params['{key}']", params[key], spec, dims, src)
    if ("w_f" in params) != ("b_f" in params):
        raise ValueError("params: expected both w_f and b_f (FoX) or neither")
    if "w_f" in params:
        check_shape("params['w_f']", params["w_f"], "D H", dims, src)
        check_shape("params['b_f']", params["b_f"], "H", dims, src)
    check_shape("x", x, x_spec, dims, src)
    check_floating("x", x)
    return dims


def forward(params: dict, x, state: KVCache | None = None, *, form: str = "parallel"):
    """The pre-norm attention layer (16.15): x (B, L, D) -> y (B, L, D), the grown ``KVCache``.
    ``form`` picks ``softmax_attention``'s form (the result is the same)."""
    _check_layer(params, x, "B L D")
    xp = xp_of(x, params["W_Q"])
    B, L, D = x.shape
    mu = xp.mean(x, axis=-1, keepdims=True)
    u = (x - mu) / xp.sqrt(xp.mean((x - mu) ** 2, axis=-1, keepdims=True) + 1e-5)
    u = u * params["ln_w"] + params["ln_b"]
    heads = lambda W: xp.einsum("bld,dhe->bhle", u, W)                  # noqa: E731
    q, k, v = heads(params["W_Q"]), heads(params["W_K"]), heads(params["W_V"])
    q = q / math.sqrt(q.shape[-1])
    T = 0 if state is None else state[0].shape[2]
    log_f = None
    if "w_f" in params:                                                 # FoX: no rotation
        a = xp.permute_dims(u @ params["w_f"] + params["b_f"], (0, 2, 1))   # (B, H, L)
        log_f = -xp.log1p(xp.exp(-a))                                   # log sigmoid(a)
    else:
        pos = xp.arange(T, T + L, dtype=x.dtype, device=_dev(x))
        q, k = rotate(q, pos), rotate(k, pos)
    o, state = softmax_attention(q, k, v, log_f=log_f, form=form, state=state)
    return x + xp.einsum("bhle,hed->bld", o, params["W_O"]), state


def step(params: dict, x_t, state: KVCache | None = None):
    """One generation step: x_t (B, D) -> y_t (B, D) and the cache grown by one token."""
    _check_layer(params, x_t, "B D")
    y, state = forward(params, x_t[:, None], state, form="recurrent")
    return y[:, 0], state
