"""Linear attention as a recurrent network: kernelised attention, GLA and HGRN2.

Layout (as ``rnnkit.deltanet`` and ``rnnkit.retnet``): q, k (B, H, L, dk), v (B, H, L, dv), one
state S (dk, dv) per head, o_t = q_t S_t with row vectors. No scaling and no normalisation happen
inside the operators unless asked for (``feature_map=``, ``normalize=``); the layers apply them.
Equations, numbered as in chapter 16:

    (16.1)  o_t = sum_{s<=t} softmax_s(q_t k_s^T) v_s                     softmax attention
    (16.2)  o_t = sum_{s<=t} (phi(q_t) phi(k_s)^T) v_s = phi(q_t) S_t,
            S_t = S_{t-1} + phi(k_t)^T v_t                               linear attention (fast
            weights: the "program" k_t^T v_t is written into the matrix S)
    (16.3)  o_t = phi(q_t) S_t / (phi(q_t) z_t),  z_t = z_{t-1} + phi(k_t)^T    the normaliser
    (16.4)  O = tril(Q K^T) V                                            parallel form
    (16.5)  chunk of C tokens from S_0:  O = Q S_0 + tril(Q K^T) V,  S_C = S_0 + K^T V
    (16.10) S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t,  g_t <= 0 (dk,)     GLA
    (16.11) with b_r = sum_{i<=r} g_i (from the chunk start):
            O = (Q * exp(b)) S_0 + [ (q_r * exp(b_r - b_s)) . k_s ]_{s<=r} V
            S_C = exp(b_C) * S_0 + (K * exp(b_C - b))^T V
    (16.12) the intra-chunk scores with a reference point ref between s and r:
            (q_r * exp(b_r - b_ref)) . (k_s * exp(b_ref - b_s)); both exponents are <= 0
    (16.13) HGRN2: S_t = diag(f_t) S_{t-1} + (1 - f_t)^T v_t, o_t = q_t S_t: GLA with the key
            tied to the forget gate, k_t = 1 - f_t, g_t = log f_t

The normaliser (16.3) is computed by appending a column of ones to v: the state is then
[S, z] of shape (dk, dv + 1) and o_t = (phi(q_t) [S_t, z_t])[:dv] / (phi(q_t) [S_t, z_t])[dv].

The chunkwise GLA form (16.11) is the GLA paper's: the naive factorisation
(Q * exp(b)) (K * exp(-b))^T needs exp(-b_s), which overflows once the log-decays sum below about
-709 within a chunk (float64; -88 in float32). Here the scores between different sub-chunks use
the reference point (16.12), the last position before the query's sub-chunk, so every exponent is
<= 0, and the scores inside one sub-chunk use the pairwise differences b_r - b_s directly (the
"secondary chunking" of section 4.3; the paper computes that diagonal part in full precision).

References:
    A. Katharopoulos, A. Vyas, N. Pappas, F. Fleuret, "Transformers are RNNs: Fast
    Autoregressive Transformers with Linear Attention", ICML 2020 (eq. 4-6, 16-20; elu + 1).
    I. Schlag, K. Irie, J. Schmidhuber, "Linear Transformers Are Secretly Fast Weight
    Programmers", ICML 2021 (the outer-product write as a fast-weight update; DPFP).
    S. Yang, B. Wang, Y. Shen, R. Panda, Y. Kim, "Gated Linear Attention Transformers with
    Hardware-Efficient Training", ICML 2024, sections 3-4 (chunkwise form, secondary chunking).
    Z. Qin et al., "HGRN2: Gated Linear RNNs with State Expansion", COLM 2024 (eq. 4).
    S. Arora et al., "Simple linear attention language models balance the recall-throughput
    tradeoff" (BASED), ICML 2024 (the 2nd-order Taylor feature map).
    Official code: fla-org/flash-linear-attention, ``fla/ops/linear_attn/naive.py``,
    ``fla/ops/gla/naive.py``. Deliberate difference: no sub-chunk sizes fixed by a GPU tile;
    ``sub_chunk`` is a keyword.
"""
from __future__ import annotations

import math

import array_api_compat

from .core.backend import xp_of
from .core.checks import check_floating, check_positive_int, check_shape

__all__ = ["linear_attention", "gla", "hgrn2", "feature", "FEATURE_MAPS", "FORMS"]

FORMS = ("recurrent", "parallel", "chunkwise")
FEATURE_MAPS = (None, "elu1", "relu", "taylor2")


def feature(x, feature_map):
    """phi(x) over the last axis: None (identity), "elu1" (elu(x) + 1, Katharopoulos et al.),
    "relu", "taylor2" ([1, x, vec(x x^T) / sqrt 2], BASED's 2nd-order Taylor map of exp(q.k):
    phi(q).phi(k) = 1 + q.k + (q.k)^2 / 2; the last axis grows from d to 1 + d + d^2)."""
    xp = xp_of(x)
    if feature_map is None:
        return x
    if feature_map == "elu1":
        return xp.where(x > 0, x + 1, xp.exp(xp.minimum(x, xp.zeros_like(x))))
    if feature_map == "relu":
        return xp.maximum(x, xp.zeros_like(x))
    if feature_map == "taylor2":
        d = x.shape[-1]
        outer = xp.reshape(x[..., :, None] * x[..., None, :], x.shape[:-1] + (d * d,))
        return xp.concat([xp.ones_like(x[..., :1]), x, outer / math.sqrt(2.0)], axis=-1)
    raise ValueError(f"feature_map: expected one of {FEATURE_MAPS}, got {feature_map!r}")


def _zeros(xp, shape, like):
    return xp.zeros(shape, dtype=like.dtype, device=array_api_compat.device(like))


def _check(q, k, v, g, state, form, chunk_size, g_spec="B H L dk", state_dv=None):
    dims = {}
    check_shape("q", q, "B H L dk", dims)
    check_shape("k", k, "B H L dk", dims)
    check_shape("v", v, "B H L dv", dims)
    if g is not None:
        check_shape("g", g, g_spec, dims)
    for name, a in (("q", q), ("k", k), ("v", v), ("g", g)):
        if a is not None:
            check_floating(name, a)
    if state is not None:
        spec = "B H dk dv" if state_dv is None else f"B H dk {state_dv}"
        check_shape("state", state, spec, dims)
    if form not in FORMS:
        raise ValueError(f"form: expected one of {FORMS}, got {form!r}")
    check_positive_int("chunk_size", chunk_size)
    return dims


def _tril(xp, n, like, k=0):
    return xp.tril(xp.ones((n, n), dtype=like.dtype, device=array_api_compat.device(like)), k=k)


# --------------------------------------------------------------------------- linear attention
def _la_recurrent(q, k, v, S):
    xp = xp_of(q, k, v)
    outs = []
    for t in range(q.shape[2]):
        S = S + k[:, :, t, :, None] * v[:, :, t, None, :]              # (16.2) S_t (B, H, dk, dv)
        outs.append(xp.einsum("bhk,bhkv->bhv", q[:, :, t], S))
    return xp.stack(outs, axis=2), S


def _la_chunkwise(q, k, v, S, C):
    xp = xp_of(q, k, v)
    outs = []
    for s in range(0, q.shape[2], C):
        Q, K, V = q[:, :, s:s + C], k[:, :, s:s + C], v[:, :, s:s + C]  # (B, H, c, .), c <= C
        mask = _tril(xp, Q.shape[2], Q)
        outs.append(Q @ S + ((Q @ xp.matrix_transpose(K)) * mask) @ V)   # (16.5)
        S = S + xp.matrix_transpose(K) @ V
    return xp.concat(outs, axis=2), S


def linear_attention(q, k, v, *, feature_map=None, normalize: bool = False,
                     form: str = "recurrent", chunk_size: int = 16, state=None):
    """Causal linear attention (16.2)-(16.5).

    Args:
        q, k: (B, H, L, d) queries and keys; ``feature_map`` (see ``feature``) maps them to
            (B, H, L, dk) first (dk = d, or 1 + d + d^2 for "taylor2").
        v: (B, H, L, dv) values.
        normalize: divide by phi(q_t) z_t (16.3); the state then has dv + 1 columns, the last
            one z. With normalize the feature map should be positive (elu1, taylor2 in practice).
        form: "recurrent" (the loop), "parallel" (16.4) or "chunkwise" (16.5, any chunk_size;
            L need not be a multiple of it).
        state: (B, H, dk, dv) (or dv + 1 with normalize) initial state, zeros by default.
    Returns:
        o (B, H, L, dv), state (B, H, dk, dv) (or dv + 1) after the last token.
    """
    _check(q, k, v, None, None, form, chunk_size)
    xp = xp_of(q, k, v)
    q, k = feature(q, feature_map), feature(k, feature_map)
    if normalize:
        v = xp.concat([v, xp.ones_like(v[..., :1])], axis=-1)             # [v, 1]: S -> [S, z]
    dims = _check(q, k, v, None, state, form, chunk_size)
    S = _zeros(xp, (dims["B"], dims["H"], dims["dk"], dims["dv"]), q) if state is None else state
    if form == "recurrent":
        o, S = _la_recurrent(q, k, v, S)
    elif form == "parallel":
        mask = _tril(xp, dims["L"], q)
        o = q @ S + ((q @ xp.matrix_transpose(k)) * mask) @ v           # (16.4), with S_0
        S = S + xp.matrix_transpose(k) @ v
    else:
        o, S = _la_chunkwise(q, k, v, S, chunk_size)
    if normalize:
        o = o[..., :-1] / o[..., -1:]                                   # (16.3)
    return o, S


# --------------------------------------------------------------------------- GLA
def _gla_recurrent(q, k, v, g, S):
    xp = xp_of(q, k, v)
    outs = []
    for t in range(q.shape[2]):
        S = xp.exp(g[:, :, t])[..., None] * S + k[:, :, t, :, None] * v[:, :, t, None, :]   # (16.10)
        outs.append(xp.einsum("bhk,bhkv->bhv", q[:, :, t], S))
    return xp.stack(outs, axis=2), S


def _pairwise(Q, K, b_q, b_k, causal):
    """Scores sum_d q_rd k_sd exp(b_rd - b_sd) from the pairwise differences (no factorisation):
    Q, b_q (..., n, dk), K, b_k (..., m, dk); with ``causal`` only s <= r (n = m) is formed."""
    xp = xp_of(Q, K)
    diff = b_q[..., :, None, :] - b_k[..., None, :, :]                  # (..., n, m, dk)
    if causal:
        keep = _tril(xp, Q.shape[-2], Q)[..., None] > 0
        diff = xp.where(keep, diff, xp.full_like(diff, -math.inf))      # exp(-inf) = 0 above
    return xp.sum(Q[..., :, None, :] * K[..., None, :, :] * xp.exp(diff), axis=-1)


def _gla_parallel(q, k, v, g, S):
    xp = xp_of(q, k, v)
    b = xp.cumsum(g, axis=2)                                            # (B, H, L, dk)
    o = (q * xp.exp(b)) @ S + _pairwise(q, k, b, b, causal=True) @ v
    S = xp.exp(b[:, :, -1])[..., None] * S + xp.matrix_transpose(k * xp.exp(b[:, :, -1:] - b)) @ v
    return o, S


def _intra(Q, K, b, c):
    """The (n, n) causal score matrix of one chunk by secondary chunking (16.12), sub-chunks of c."""
    xp = xp_of(Q, K)
    n, rows = Q.shape[-2], []
    for s in range(0, n, c):
        e = min(s + c, n)
        blocks = []
        if s > 0:                                                       # keys before sub-chunk
            ref = b[..., s - 1:s, :]                                    # b_ref, the last of them
            Qs = Q[..., s:e, :] * xp.exp(b[..., s:e, :] - ref)          # exponents <= 0
            Ks = K[..., :s, :] * xp.exp(ref - b[..., :s, :])            # exponents <= 0
            blocks.append(Qs @ xp.matrix_transpose(Ks))                 # (.., e - s, s)
        blocks.append(_pairwise(Q[..., s:e, :], K[..., s:e, :], b[..., s:e, :], b[..., s:e, :],
                                causal=True))                           # diagonal sub-chunk
        if e < n:
            blocks.append(_zeros(xp, Q.shape[:-2] + (e - s, n - e), Q))
        rows.append(xp.concat(blocks, axis=-1))
    return xp.concat(rows, axis=-2)                                     # (.., n, n)


def _gla_chunkwise(q, k, v, g, S, C, c):
    xp = xp_of(q, k, v)
    outs = []
    for s in range(0, q.shape[2], C):
        Q, K, V = q[:, :, s:s + C], k[:, :, s:s + C], v[:, :, s:s + C]
        b = xp.cumsum(g[:, :, s:s + C], axis=2)                         # (B, H, n, dk), <= 0
        outs.append((Q * xp.exp(b)) @ S + _intra(Q, K, b, c) @ V)       # (16.11)
        bC = b[:, :, -1:]                                               # (B, H, 1, dk)
        S = xp.exp(bC[:, :, 0])[..., None] * S + xp.matrix_transpose(K * xp.exp(bC - b)) @ V
    return xp.concat(outs, axis=2), S


def gla(q, k, v, g, *, form: str = "recurrent", chunk_size: int = 16, sub_chunk: int = 4,
        state=None):
    """Gated linear attention (16.10): S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t, o_t = q_t S_t.

    Args:
        q, k: (B, H, L, dk).  v: (B, H, L, dv).
        g: (B, H, L, dk) log-decays (<= 0 in the model: GLA takes g = log sigmoid(.) / tau).
        form: "recurrent", "parallel" (pairwise differences of the cumulative log-decays,
            O(L^2 dk) memory) or "chunkwise" (16.11)-(16.12), chunks of ``chunk_size`` split into
            sub-chunks of ``sub_chunk`` tokens; every exponent it takes is <= 0 when g <= 0.
        state: (B, H, dk, dv) initial state, zeros by default.
    Returns:
        o (B, H, L, dv), state (B, H, dk, dv).
    """
    dims = _check(q, k, v, g, state, form, chunk_size)
    check_positive_int("sub_chunk", sub_chunk)
    xp = xp_of(q, k, v)
    S = _zeros(xp, (dims["B"], dims["H"], dims["dk"], dims["dv"]), q) if state is None else state
    if form == "recurrent":
        return _gla_recurrent(q, k, v, g, S)
    if form == "parallel":
        return _gla_parallel(q, k, v, g, S)
    return _gla_chunkwise(q, k, v, g, S, chunk_size, sub_chunk)


def hgrn2(q, v, log_f, *, form: str = "recurrent", chunk_size: int = 16, sub_chunk: int = 4,
          state=None):
    """HGRN2 (16.13): S_t = diag(f_t) S_{t-1} + (1 - f_t)^T v_t, o_t = q_t S_t, f_t = exp(log_f_t).

    Args:
        q: (B, H, L, dk) the output gate (HGRN2's o_t).  v: (B, H, L, dv) the input (HGRN2's i_t).
        log_f: (B, H, L, dk) log forget gates, <= 0 (HGRN2 bounds f below per layer).
        form, chunk_size, sub_chunk, state: as ``gla``.
    Returns:
        o (B, H, L, dv), state (B, H, dk, dv).
    """
    dims = check_shape("q", q, "B H L dk")
    check_shape("log_f", log_f, "B H L dk", dims)
    check_floating("log_f", log_f)
    k = -xp_of(log_f).expm1(log_f)                                       # 1 - f_t, tied key
    return gla(q, k, v, log_f, form=form, chunk_size=chunk_size, sub_chunk=sub_chunk, state=state)
