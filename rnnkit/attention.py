"""Additive (Bahdanau) and multiplicative (Luong) attention: scores, a masked softmax, the context
vector and their backward.

Equations, numbered as in chapter 5 (row vectors: the decoder state s_{i-1} is (B, H), the
annotations h_1 ... h_L of the encoder are (B, L, C), one per source position j):

    (5.6)  e_ij = tanh(s_{i-1} W_a + h_j U_a) v          additive energies, (B, L); W_a (H, A), U_a (C, A), v (A,)
    (5.7)  alpha_ij = exp(e_ij) / sum_k exp(e_ik)         over the unmasked positions k; 0 where masked
    (5.8)  c_i = sum_j alpha_ij h_j                       context vector, (B, C)
    (5.9)  e_ij = s_{i-1} W_a h_j^T = (h_j W_a^T) . s_{i-1}  Luong's "general" score, W_a (H, C)

The score is read from the parameters, like the GRU's reset placement: a dict with ``v`` (from
``init(..., score="additive")``) is additive, one with ``W_a`` alone (``score="luong"``) is Luong's.
With W_a = I (H = C) (5.9) is Luong's "dot" score s_{i-1} . h_j.

The keys h_j U_a do not depend on the decoder step, so they are computed once per source sentence
(``keys``) and reused at every output step, as Bahdanau et al. note (appendix A.1.2) and their
code does. The softmax subtracts the row maximum and puts -inf on masked (padding) positions, so
their weight is exactly 0.

Backward, with dc_i = dLoss/dc_i (and optionally a direct gradient dalpha on the weights):

    (5.10) dalpha_ij = dc_i . h_j (+ dalpha_ij),           dh_j = alpha_ij dc_i
    (5.11) de_ij = alpha_ij (dalpha_ij - sum_k alpha_ik dalpha_ik)       softmax Jacobian
    (5.12) additive: du_ij = de_ij v (1 - u_ij^2) with u_ij = tanh(s_{i-1} W_a + h_j U_a) (B, L, A);
           dv = sum_ij de_ij u_ij,  dW_a = s^T sum_j du_ij,  ds_{i-1} = (sum_j du_ij) W_a^T,
           dU_a = sum_ij h_j^T du_ij,  dh_j += du_ij U_a^T
           Luong (5.9): with r_i = sum_j de_ij h_j (B, C):  dW_a = s^T r,  ds_{i-1} = r W_a^T,
           dh_j += de_ij (s_{i-1} W_a)

Letters: B batch, L source length, H decoder state size, C annotation (encoder state) size,
A attention size.

References:
    D. Bahdanau, K. Cho, Y. Bengio, "Neural Machine Translation by Jointly Learning to Align and
    Translate", ICLR 2015, section 3.1 (eq. 5-6) and appendix A.1.2 (the alignment model
    a(s_{i-1}, h_j) = v_a^T tanh(W_a s_{i-1} + U_a h_j), U_a h_j precomputed). Official code:
    the GroundHog / dl4mt-tutorial ``session2`` attention (pre-computed ``pctx_``).
    Deliberate difference: row vectors (s W_a rather than W_a s); no bias inside the tanh (the
    paper has none; dl4mt adds one).
    M.-T. Luong, H. Pham, C. D. Manning, "Effective Approaches to Attention-based Neural Machine
    Translation", EMNLP 2015, section 3.1 (the "dot" and "general" scores, eq. 8). Deliberate
    difference: Luong et al. score the *current* state h_t after the decoder step and combine the
    context afterwards; here the context is an input of the decoder step (Bahdanau's decoder,
    (5.3)), so (5.9) scores s_{i-1}, exactly where the additive score sits.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .core.backend import xp_of
from .core.checks import check_floating, check_params, check_positive_int, check_shape

__all__ = ["init", "keys", "scores", "masked_softmax", "forward", "backward", "AttentionCache",
           "check_mask", "score_of", "SCORES"]

SPECS = (("W_a", "H A"), ("U_a", "C A"), ("v", "A"))
LUONG_SPECS = (("W_a", "H C"),)
SCORES = ("additive", "luong")


def score_of(params: dict) -> str:
    """'additive' (params W_a, U_a, v) or 'luong' (W_a alone), read from the parameter dict."""
    if not isinstance(params, dict):
        raise ValueError(f"params: expected a dict of arrays, got {type(params).__name__}")
    if "v" in params or "U_a" in params:
        return "additive"
    if set(params) == {"W_a"}:
        return "luong"
    raise ValueError(f"params: expected keys W_a, U_a, v (additive) or W_a alone (luong), got "
                     f"{sorted(params)}")


def _specs(params: dict):
    return SPECS if score_of(params) == "additive" else LUONG_SPECS


class AttentionCache(NamedTuple):
    """What ``backward`` needs from ``forward``."""

    s_prev: object   # (B, H)    decoder state s_{i-1}
    h_enc: object    # (B, L, C) annotations h_j
    u: object        # (B, L, A) tanh(s_{i-1} W_a + h_j U_a); for Luong's score, the keys h_j W_a^T (B, L, H)
    alpha: object    # (B, L)    attention weights


def init(rng: np.random.Generator, H: int, C: int, A: int | None = None, *, score: str = "additive",
         dtype=np.float64) -> dict:
    """Random attention parameters, uniform in [-1/sqrt(fan_in), +].

    Args:
        rng: NumPy random generator.  H: decoder state size.  C: annotation size.
        A: attention size (additive score only; must be None for ``score="luong"``).
        score: "additive" (Bahdanau, (5.6)): W_a (H, A), U_a (C, A), v (A,);
            "luong" (general score, (5.9)): W_a (H, C).
    """
    if score not in SCORES:
        raise ValueError(f"score: expected one of {SCORES}, got {score!r}")
    check_positive_int("H", H)
    check_positive_int("C", C)
    if score == "luong":
        if A is not None:
            raise ValueError(f"A: Luong's score has no attention size, expected None, got {A!r}")
        return {"W_a": (rng.uniform(-1, 1, (H, C)) / np.sqrt(H)).astype(dtype)}
    check_positive_int("A", A)
    return {"W_a": (rng.uniform(-1, 1, (H, A)) / np.sqrt(H)).astype(dtype),
            "U_a": (rng.uniform(-1, 1, (C, A)) / np.sqrt(C)).astype(dtype),
            "v": (rng.uniform(-1, 1, (A,)) / np.sqrt(A)).astype(dtype)}


def check_mask(mask, dims: dict, src: dict, name: str = "mask"):
    """mask (B, L) of booleans or of the values 0 and 1 only, with at least one 1 per row; returns
    it as booleans. Any other value (2, 0.5, -1, NaN) is refused: it has no meaning as a mask."""
    check_shape(name, mask, "B L", dims, src)
    xp = xp_of(mask)
    if "bool" in str(mask.dtype):
        m = mask
    else:
        if not any(k in str(mask.dtype) for k in ("int", "float")):
            raise ValueError(f"{name}: expected booleans or the values 0 and 1, got dtype {mask.dtype}")
        valid = xp.logical_or(mask == 0, mask == 1)                 # NaN is neither
        if not bool(xp.all(valid)):
            bad = mask[xp.logical_not(valid)]
            raise ValueError(f"{name}: expected booleans or the values 0 and 1 only, got the value "
                             f"{float(bad[0])!r} (a mask must say yes or no)")
        m = mask != 0
    if int(xp.min(xp.sum(xp.astype(m, xp.int64), axis=1))) < 1:
        raise ValueError(f"{name}: expected at least one unmasked source position per row, got a "
                         f"row of zeros (its attention weights would be 0/0)")
    return m


def keys(params: dict, h_enc):
    """What the score needs from every source position, computed once per source sentence:
    h_j U_a (B, L, A) for the additive score, h_j W_a^T (B, L, H) for Luong's."""
    if score_of(params) == "luong":
        return h_enc @ params["W_a"].T                              # (B, L, H)
    return h_enc @ params["U_a"]                                    # (B, L, A)


def scores(params: dict, s_prev, k):
    """Energies e (B, L), equation (5.6) or (5.9), and what the backward needs (B, L, A or H).

    Additive: u = tanh(s_{i-1} W_a + h_j U_a) (B, L, A), e = u v.  Luong: e_ij = k_j . s_{i-1}
    with k = h W_a^T; the keys themselves are returned in place of u.

    Args: s_prev (B, H); k from ``keys``.
    """
    xp = xp_of(s_prev, k)
    if score_of(params) == "luong":
        return xp.sum(k * s_prev[:, None, :], axis=-1), k           # (B, L), (B, L, H)  (5.9)
    u = xp.tanh((s_prev @ params["W_a"])[:, None, :] + k)          # (B, L, A)          (5.6)
    return u @ params["v"], u                                       # (B, L), (B, L, A)


def masked_softmax(e, mask=None):
    """Equation (5.7): softmax over the last axis, exactly 0 where ``mask`` is False.

    Args: e (B, L) energies; mask (B, L) booleans or None (no padding). Every row must keep at
    least one position (``check_mask`` enforces it at the public entry points).
    """
    xp = xp_of(e)
    if mask is not None:
        e = xp.where(mask, e, xp.full_like(e, -math.inf))
    z = xp.exp(e - xp.max(e, axis=-1, keepdims=True))               # exp(-inf) = 0 exactly
    return z / xp.sum(z, axis=-1, keepdims=True)


def _attend(params: dict, s_prev, h_enc, k, mask):
    """(5.6)-(5.8) or (5.9), (5.7)-(5.8) without checks: context (B, C), alpha (B, L), u."""
    e, u = scores(params, s_prev, k)
    alpha = masked_softmax(e, mask)                                 # (B, L)
    c = xp_of(alpha).sum(alpha[:, :, None] * h_enc, axis=1)         # (B, C)  (5.8)
    return c, alpha, u


def forward(params: dict, s_prev, h_enc, mask=None, return_cache: bool = False):
    """Attention for one decoder step, equations (5.6)-(5.8) (additive) or (5.9), (5.7)-(5.8) (Luong).

    Args:
        params: W_a (H, A), U_a (C, A), v (A,) (additive) or W_a (H, C) (Luong), from ``init``.
        s_prev: (B, H) the decoder state s_{i-1}.  h_enc: (B, L, C) the annotations.
        mask: (B, L) 1/True for real source positions, 0/False for padding; None: all real.
        return_cache: also return the ``AttentionCache`` that ``backward`` needs.
    Returns:
        c (B, C), alpha (B, L)[, cache]
    """
    dims, src = {}, {}
    check_params(params, _specs(params), dims, src)
    check_shape("s_prev", s_prev, "B H", dims, src)
    check_shape("h_enc", h_enc, "B L C", dims, src)
    check_floating("s_prev", s_prev)
    check_floating("h_enc", h_enc)
    if mask is not None:
        mask = check_mask(mask, dims, src)
    c, alpha, u = _attend(params, s_prev, h_enc, keys(params, h_enc), mask)
    if return_cache:
        return c, alpha, AttentionCache(s_prev, h_enc, u, alpha)
    return c, alpha


def backward(params: dict, dc, cache: AttentionCache, dalpha=None):
    """Gradients of (5.6)-(5.9), equations (5.10)-(5.12).

    Args:
        params: as in ``forward``.  dc: (B, C) gradient on the context.
        cache: from ``forward(..., return_cache=True)``.
        dalpha: optional (B, L) gradient on the attention weights themselves.
    Returns:
        grads keyed like params; ds_prev (B, H); dh_enc (B, L, C).
    """
    s_prev, h_enc, u, alpha = cache
    dims, src = {}, {}
    check_params(params, _specs(params), dims, src)
    check_shape("cache.h_enc", h_enc, "B L C", dims, src)
    check_shape("dc", dc, "B C", dims, src)
    xp = xp_of(dc, h_enc)
    da = xp.sum(h_enc * dc[:, None, :], axis=-1)                    # (B, L)   (5.10)
    if dalpha is not None:
        check_shape("dalpha", dalpha, "B L", dims, src)
        da = da + dalpha
    dh_enc = alpha[:, :, None] * dc[:, None, :]                     # (B, L, C)
    de = alpha * (da - xp.sum(alpha * da, axis=-1, keepdims=True))  # (B, L)   (5.11)
    if score_of(params) == "luong":                                 # (5.12), Luong's score
        r = xp.sum(de[:, :, None] * h_enc, axis=1)                  # (B, C)   sum_j de_ij h_j
        sW = s_prev @ params["W_a"]                                 # (B, C)
        dh_enc = dh_enc + de[:, :, None] * sW[:, None, :]
        return {"W_a": s_prev.T @ r}, r @ params["W_a"].T, dh_enc
    dpre = de[:, :, None] * params["v"] * (1.0 - u * u)             # (B, L, A) (5.12)
    dpre_sum = xp.sum(dpre, axis=1)                                 # (B, A)
    A = u.shape[-1]
    grads = {"W_a": s_prev.T @ dpre_sum,
             "U_a": xp.reshape(h_enc, (-1, h_enc.shape[-1])).T @ xp.reshape(dpre, (-1, A)),
             "v": xp.sum(xp.reshape(de[:, :, None] * u, (-1, A)), axis=0)}
    dh_enc = dh_enc + dpre @ params["U_a"].T
    return grads, dpre_sum @ params["W_a"].T, dh_enc
