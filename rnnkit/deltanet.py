"""The delta rule (DeltaNet), Gated DeltaNet and DeltaProduct: recurrent and chunkwise forms.

Issue 21 asked for these in ``linear_attention.py``; that module (linear attention, GLA) is
written separately, so the delta-rule family lives here. Layout as there: q, k (B, H, L, dk),
v (B, H, L, dv), one state S (dk, dv) per head, o_t = q_t S_t (row vectors), no scaling or
normalisation inside the operators (DeltaNet L2-normalises q and k outside: ``l2_normalize``).
Equations, numbered as in chapter 17:

    (17.1)  S_t = S_{t-1} + beta_t k_t^T (v_t - k_t S_{t-1})            delta rule
                = (I - beta_t k_t^T k_t) S_{t-1} + beta_t k_t^T v_t
            one gradient step of size beta_t on (1/2) ||k_t S - v_t||^2 at S = S_{t-1}
    (17.2)  o_t = q_t S_t
    (17.3)  chunk of C tokens from S_0 (WY / UT form, Yang et al. 2024):
            A = strict_tril(diag(beta) K K^T),   T = (I + A)^{-1} diag(beta)     (C, C)
            W = T K  (C, dk),   U = T V  (C, dv)
    (17.4)  O = Q S_0 + tril(Q K^T) (U - W S_0),   S_C = S_0 + K^T (U - W S_0)
    (17.5)  S_t = S' + beta_t k_t^T (v_t - k_t S'),   S' = exp(g_t) S_{t-1}    Gated DeltaNet
    (17.6)  chunk with G_r = sum_{i<=r} g_i, Gamma_ri = exp(G_r - G_i) (i <= r):
            A = strict_tril(diag(beta) (Gamma * K K^T)),  W = T (exp(G) * K),  U = T V,
            O = exp(G) * Q S_0 + tril(Gamma * Q K^T) (U - W S_0),
            S_C = exp(G_C) S_0 + (exp(G_C - G) * K)^T (U - W S_0)
    (17.7)  DeltaProduct: n_h delta steps (17.1) per token with keys k_{t,1..n_h}, values
            v_{t,1..n_h}, betas beta_{t,1..n_h}; o_t = q_t S_t after the last one. The transition
            is a product of n_h generalised Householder matrices (I - beta k^T k).

With ||k_t|| = 1 the transition I - beta_t k_t^T k_t has eigenvalue 1 - beta_t along k_t and 1
elsewhere: beta in (0, 1) keeps it in (0, 1); beta in (0, 2) allows (-1, 1), a reflection at
beta = 2, which is what parity needs (Grazzi et al. 2025; chapter 17, section on state tracking).

References:
    I. Schlag, K. Irie, J. Schmidhuber, "Linear Transformers Are Secretly Fast Weight
    Programmers", ICML 2021 (the delta rule as a fast-weight update).
    S. Yang, B. Wang, Y. Zhang, Y. Shen, Y. Kim, "Parallelizing Linear Transformers with the
    Delta Rule over Sequence Length", NeurIPS 2024, section 3 (WY/UT form).
    S. Yang, J. Kautz, A. Hatamizadeh, "Gated Delta Networks", ICLR 2025, section 3.
    J. Siems et al., "DeltaProduct", 2025 (n_h Householder steps per token).
    Official code: fla-org/flash-linear-attention, ``fla/ops/delta_rule/naive.py``,
    ``fla/ops/gated_delta_rule``. Deliberate difference: the (C, C) triangular system of (17.3) is
    solved with ``linalg.solve`` (fla inverts it by forward substitution in the kernel).
"""
from __future__ import annotations

from typing import NamedTuple

import array_api_compat

from .core.backend import xp_of
from .core.checks import check_floating, check_positive_int, check_shape

__all__ = ["delta_rule", "gated_delta_rule", "deltaproduct", "delta_rule_backward",
           "l2_normalize", "wy_factors", "FORMS"]

FORMS = ("recurrent", "chunkwise")


def l2_normalize(x, eps: float = 1e-6):
    """x / ||x|| over the last axis (DeltaNet's normalisation of q and k, done by the caller)."""
    xp = xp_of(x)
    return x / (xp.sqrt(xp.sum(x * x, axis=-1, keepdims=True)) + eps)


def _check(q, k, v, beta, g, state, k_spec="B H L dk", b_spec="B H L"):
    dims = {}
    check_shape("q", q, "B H L dk", dims)
    check_shape("k", k, k_spec, dims)
    check_shape("v", v, k_spec.replace("dk", "dv"), dims)
    check_shape("beta", beta, b_spec, dims)
    if g is not None:
        check_shape("g", g, "B H L", dims)
    for name, a in (("q", q), ("k", k), ("v", v), ("beta", beta), ("g", g)):
        if a is not None:
            check_floating(name, a)
    if dims["L"] == 0:
        raise ValueError(f"q: expected at least one time step (L >= 1), got shape {tuple(q.shape)}")
    if state is not None:
        check_shape("state", state, "B H dk dv", dims)
    return dims


def _zeros(xp, shape, like):
    return xp.zeros(shape, dtype=like.dtype, device=array_api_compat.device(like))


def _recurrent(q, k, v, beta, g, S):
    """The loop (17.1)/(17.5): S (B, H, dk, dv); returns o (B, H, L, dv) and the last S."""
    xp = xp_of(q, k, v)
    outs = []
    for t in range(q.shape[2]):
        if g is not None:
            S = xp.exp(g[:, :, t])[..., None, None] * S               # S' = exp(g_t) S_{t-1}
        k_t, b_t = k[:, :, t], beta[:, :, t][..., None]                # (B, H, dk), (B, H, 1)
        err = v[:, :, t] - xp.einsum("bhk,bhkv->bhv", k_t, S)          # v_t - k_t S   (B, H, dv)
        S = S + xp.einsum("bhk,bhv->bhkv", k_t, b_t * err)             # (17.1)
        outs.append(xp.einsum("bhk,bhkv->bhv", q[:, :, t], S))         # (17.2)
    return xp.stack(outs, axis=2), S


def wy_factors(k, v, beta, g=None):
    """W = T (exp(G) K) and U = T V of (17.3)/(17.6) for one chunk: k (..., C, dk), v (..., C, dv),
    beta (..., C), g (..., C) or None. Returns W (..., C, dk), U (..., C, dv), and G (..., C) or None.
    """
    xp = xp_of(k, v, beta)
    C = k.shape[-2]
    mask = xp.tril(xp.ones((C, C), dtype=k.dtype, device=array_api_compat.device(k)), k=-1)
    KK = k @ xp.matrix_transpose(k)                                     # (..., C, C)
    G = None
    if g is not None:
        G = xp.cumsum(g, axis=-1)                                       # (..., C)
        diff = G[..., :, None] - G[..., None, :]                        # G_r - G_i
        KK = KK * xp.exp(xp.where(mask > 0, diff, xp.zeros_like(diff)))   # Gamma, i < r only
        k = xp.exp(G)[..., None] * k
    A = beta[..., :, None] * KK * mask                                  # (17.3) strictly lower
    eye = xp.eye(C, dtype=k.dtype, device=array_api_compat.device(k))
    rhs = xp.concat([beta[..., None] * k, beta[..., None] * v], axis=-1)   # diag(beta) [K, V]
    WU = xp.linalg.solve(eye + A, rhs)                                  # T [K, V]
    return WU[..., :k.shape[-1]], WU[..., k.shape[-1]:], G


def _chunkwise(q, k, v, beta, g, S, chunk_size):
    """(17.3)-(17.4), or (17.6) when g is given, chunk by chunk; the last chunk may be shorter."""
    xp = xp_of(q, k, v)
    L, outs = q.shape[2], []
    for s in range(0, L, chunk_size):
        e = min(s + chunk_size, L)
        Q, K, V, b = q[:, :, s:e], k[:, :, s:e], v[:, :, s:e], beta[:, :, s:e]
        W, U, G = wy_factors(K, V, b, None if g is None else g[:, :, s:e])
        C = e - s
        tri = xp.tril(xp.ones((C, C), dtype=q.dtype, device=array_api_compat.device(q)))
        QK = Q @ xp.matrix_transpose(K)                                 # (B, H, C, C)
        Kend = K
        if G is not None:
            diff = G[..., :, None] - G[..., None, :]
            QK = QK * xp.exp(xp.where(tri > 0, diff, xp.zeros_like(diff)))
            Q = xp.exp(G)[..., None] * Q
            Kend = xp.exp(G[..., -1:] - G)[..., None] * K
        delta = U - W @ S                                               # (B, H, C, dv)
        outs.append(Q @ S + (QK * tri) @ delta)                         # (17.4)
        S = S if G is None else xp.exp(G[..., -1])[..., None, None] * S
        S = S + xp.matrix_transpose(Kend) @ delta                       # S_C
    return xp.concat(outs, axis=2), S


def _run(q, k, v, beta, g, state, form, chunk_size):
    dims = _check(q, k, v, beta, g, state)
    check_positive_int("chunk_size", chunk_size)
    if form not in FORMS:
        raise ValueError(f"form: expected one of {FORMS}, got {form!r}")
    xp = xp_of(q, k, v)
    S = _zeros(xp, (dims["B"], dims["H"], dims["dk"], dims["dv"]), q) if state is None else state
    if form == "recurrent":
        return _recurrent(q, k, v, beta, g, S)
    return _chunkwise(q, k, v, beta, g, S, chunk_size)


def delta_rule(q, k, v, beta, *, form: str = "recurrent", chunk_size: int = 16, state=None):
    """DeltaNet's operator (17.1)-(17.2), recurrent or chunkwise (17.3)-(17.4).

    Args:
        q, k: (B, H, L, dk) queries and keys (normalise k yourself, ``l2_normalize``).
        v: (B, H, L, dv) values.
        beta: (B, H, L) step sizes (sigmoid for (0, 1), 2 sigmoid for (0, 2)).
        form: "recurrent" (the loop) or "chunkwise" (WY form, any chunk_size; L need not be a
            multiple of it).  state: (B, H, dk, dv) initial state, zeros by default.
    Returns:
        o (B, H, L, dv), state (B, H, dk, dv) after the last token.
    """
    return _run(q, k, v, beta, None, state, form, chunk_size)


def gated_delta_rule(q, k, v, g, beta, *, form: str = "recurrent", chunk_size: int = 16,
                     state=None):
    """Gated DeltaNet (17.5): the state is first decayed by exp(g_t), g (B, H, L) (log decay,
    <= 0 in the model), then updated by the delta rule. Chunkwise form (17.6). Shapes and
    returns as ``delta_rule``."""
    return _run(q, k, v, beta, g, state, form, chunk_size)


def deltaproduct(q, k, v, beta, *, g=None, form: str = "recurrent", chunk_size: int = 16,
                 state=None):
    """DeltaProduct (17.7): n_h delta steps per token.

    Args:
        q: (B, H, L, dk).  k: (B, H, L, n_h, dk).  v: (B, H, L, n_h, dv).  beta: (B, H, L, n_h).
        g: optional (B, H, L) log decay applied once per token, before its first step.
        form: "recurrent" (the loop) or "chunkwise" (the delta rule on the interleaved sequence of
            L n_h steps, read every n_h-th step).
    Returns:
        o (B, H, L, dv), state (B, H, dk, dv).
    """
    dims = _check(q, k, v, beta, g, state, k_spec="B H L nh dk", b_spec="B H L nh")
    check_positive_int("chunk_size", chunk_size)
    if form not in FORMS:
        raise ValueError(f"form: expected one of {FORMS}, got {form!r}")
    xp = xp_of(q, k, v)
    B, H, L, nh, dk, dv = (dims[c] for c in ("B", "H", "L", "nh", "dk", "dv"))
    S = _zeros(xp, (B, H, dk, dv), q) if state is None else state
    if form == "recurrent":
        outs = []
        for t in range(L):
            if g is not None:
                S = xp.exp(g[:, :, t])[..., None, None] * S
            for j in range(nh):                                          # (17.7)
                k_t, b_t = k[:, :, t, j], beta[:, :, t, j][..., None]
                err = v[:, :, t, j] - xp.einsum("bhk,bhkv->bhv", k_t, S)
                S = S + xp.einsum("bhk,bhv->bhkv", k_t, b_t * err)
            outs.append(xp.einsum("bhk,bhkv->bhv", q[:, :, t], S))
        return xp.stack(outs, axis=2), S
    # interleave: step (t, j) is position t n_h + j; the query sits at j = n_h - 1
    zq = _zeros(xp, (B, H, L, nh - 1, dk), q)
    qq = xp.reshape(xp.concat([zq, q[:, :, :, None]], axis=3), (B, H, L * nh, dk))
    gg = None
    if g is not None:
        zg = _zeros(xp, (B, H, L, nh - 1), g)
        gg = xp.reshape(xp.concat([g[..., None], zg], axis=3), (B, H, L * nh))
    o, S = _chunkwise(qq, xp.reshape(k, (B, H, L * nh, dk)), xp.reshape(v, (B, H, L * nh, dv)),
                      xp.reshape(beta, (B, H, L * nh)), gg, S, chunk_size)
    return o[:, :, nh - 1::nh], S


class Grads(NamedTuple):
    """Gradients from ``delta_rule_backward``, named d + the forward argument."""

    dq: object
    dk: object
    dv: object
    dbeta: object
    dg: object       # None when the forward had no gate
    dstate: object   # with respect to the initial state


def delta_rule_backward(q, k, v, beta, do, *, g=None, state=None, dstate=None) -> Grads:
    """Hand backward of (17.1)/(17.5) through time (NumPy/CuPy/torch alike), reverse loop:

        dS_t += q_t^T do_t,   dq_t = do_t S_t^T,   e_t = v_t - k_t S'_t
        dv_t = beta_t k_t dS_t,   dbeta_t = k_t dS_t e_t^T,
        dk_t = beta_t e_t dS_t^T - dv_t S'_t^T,   dS' = (I - beta_t k_t^T k_t) dS_t
        dg_t = exp(g_t) <dS', S_{t-1}>,   dS_{t-1} = exp(g_t) dS'

    Args: as ``gated_delta_rule`` (g=None: the plain delta rule); do (B, H, L, dv) the gradient
        of the loss with respect to o, dstate (B, H, dk, dv) that with respect to the final state.
    Returns: ``Grads``.
    """
    dims = _check(q, k, v, beta, g, state)
    check_shape("do", do, "B H L dv", dims)
    xp = xp_of(q, k, v)
    S = _zeros(xp, (dims["B"], dims["H"], dims["dk"], dims["dv"]), q) if state is None else state
    states = [S]                                                         # S_0 .. S_L
    for t in range(dims["L"]):
        Sp = S if g is None else xp.exp(g[:, :, t])[..., None, None] * S
        err = v[:, :, t] - xp.einsum("bhk,bhkv->bhv", k[:, :, t], Sp)
        S = Sp + xp.einsum("bhk,bhv->bhkv", k[:, :, t], beta[:, :, t][..., None] * err)
        states.append(S)
    dS = xp.zeros_like(S) if dstate is None else dstate
    dq, dk, dv, db, dg = [], [], [], [], []
    for t in reversed(range(dims["L"])):
        k_t, b_t, S_prev = k[:, :, t], beta[:, :, t], states[t]
        a_t = None if g is None else xp.exp(g[:, :, t])[..., None, None]
        Sp = S_prev if g is None else a_t * S_prev
        dS = dS + xp.einsum("bhk,bhv->bhkv", q[:, :, t], do[:, :, t])
        dq.append(xp.einsum("bhv,bhkv->bhk", do[:, :, t], states[t + 1]))
        err = v[:, :, t] - xp.einsum("bhk,bhkv->bhv", k_t, Sp)             # (B, H, dv)
        kdS = xp.einsum("bhk,bhkv->bhv", k_t, dS)                           # k_t dS_t
        dv_t = b_t[..., None] * kdS
        dv.append(dv_t)
        db.append(xp.sum(kdS * err, axis=-1))
        dk.append(b_t[..., None] * xp.einsum("bhv,bhkv->bhk", err, dS)
                  - xp.einsum("bhv,bhkv->bhk", dv_t, Sp))
        dSp = dS - xp.einsum("bhk,bhv->bhkv", k_t, dv_t)                    # (I - b k^T k) dS
        if g is None:
            dS = dSp
        else:
            dg.append(xp.sum(dSp * Sp, axis=(-2, -1)))                      # a <dS', S_{t-1}>
            dS = a_t * dSp
    stack = lambda xs: xp.stack(xs[::-1], axis=2)                          # noqa: E731
    return Grads(stack(dq), stack(dk), stack(dv), stack(db), None if g is None else stack(dg), dS)
