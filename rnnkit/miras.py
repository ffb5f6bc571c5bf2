"""Miras, ATLAS and Longhorn: one family of online memories, one interface.

Miras' view (Behrouz et al. 2025): a recurrent memory is an online optimiser of an attentional
bias (the loss it fits at test time) under a retention gate (how much of the old memory it keeps).
Every rule here takes q, k (B, H, L, dk), v (B, H, L, dv), a step size theta (B, H, L) and a
retention alpha (B, H, L) in [0, 1), and returns o (B, H, L, dv) with o_t = q_t M_t and the last
memory M (B, H, dk, dv). Equations, numbered as in chapter 18 (e_t = k_t M - v_t):

    (18.13) M_t = (1 - alpha_t) M_{t-1} - theta_t grad l_t(M_{t-1})     gradient step + retention
    (18.14) attentional biases and their gradients:
            l2     ||e||^2                    grad 2 k^T e                       (Titans, DeltaNet)
            lp     ||e||_p^p                  grad p k^T (sign(e) |e|^(p-1))     (Moneta)
            huber  sum_j H_delta(e_j)         grad k^T clip(e, -delta, delta)    (Yaad's robustness)
                   H_delta(u) = u^2 / 2 for |u| <= delta, delta (|u| - delta / 2) otherwise
    (18.15) Omega rule (ATLAS): l_t(M) = sum_{i = t-c+1}^{t} gamma_i ||k_i M - v_i||^2, the
            gradient of a sliding window of the last c tokens (c = 1: the l2 rule)
    (18.16) polynomial feature map of degree p (ATLAS sec. 3): phi(x) = [x, vec(x x^T) / sqrt 2!,
            ...], the Taylor terms of exp(<x, y>) up to degree p, so <phi(x), phi(y)> =
            sum_{n=1}^{p} <x, y>^n / n!
    (18.17) Longhorn's implicit step: M_t = argmin_M ||M - M'||_F^2 + theta_t ||k_t M - v_t||^2
            with M' = (1 - alpha_t) M_{t-1}; closed form (Sherman-Morrison):
            M_t = M' + eps_t k_t^T (v_t - k_t M'),   eps_t = theta_t / (1 + theta_t ||k_t||^2),
            a (gated) delta rule whose step can never overshoot: eps_t ||k_t||^2 < 1 for all theta_t.

Forms: "recurrent" (the loop (18.13)) and "chunked" (gradients of a chunk at its first memory,
``rnnkit.titans.memory_core``, equal at chunk_size = 1); Longhorn's forms are "recurrent" and
"chunkwise" (the exact WY form of ``rnnkit.deltanet.gated_delta_rule`` with beta = eps).

References:
    A. Behrouz, M. Razaviyayn, P. Zhong, V. Mirrokni, "It's All Connected: A Journey Through
    Test-Time Memorization, Attentional Bias, Retention, and Online Optimization", arXiv:2504.13173,
    2025, sections 3-5 (Moneta, Yaad, Memora). Deliberate difference: the Huber bias is
    coordinate-wise with a fixed delta (Yaad's delta is data dependent).
    A. Behrouz et al., "ATLAS: Learning to Optimally Memorize the Context at Test Time",
    arXiv:2505.23735, 2025, section 3 (Omega rule, polynomial features). Deliberate difference:
    plain gradient steps (ATLAS also uses Muon).
    B. Liu, R. Wang, L. Wu, Y. Feng, P. Stone, Q. Liu, "Longhorn: State Space Models are Amortized
    Online Learners", arXiv:2407.14207, 2024, section 3 (implicit online learning, closed form).
    Deliberate difference: one scalar theta per token and head (Longhorn: one per value channel).
"""
from __future__ import annotations

import math

from .core.backend import xp_of
from .core.backend import zeros as _zeros
from .core.checks import check_floating, check_positive_int, check_shape
from .titans import l2_grad, memory_core

__all__ = ["online_memory", "bias_grad", "omega", "longhorn", "polynomial_features", "RULES",
           "BIASES"]

BIASES = ("l2", "lp", "huber")
RULES = BIASES + ("omega", "longhorn")


def _check(q, k, v, theta, alpha, state, extra=()):
    dims = {}
    for name, a, spec in (("q", q, "B H L dk"), ("k", k, "B H L dk"), ("v", v, "B H L dv"),
                          ("theta", theta, "B H L"), ("alpha", alpha, "B H L"), *extra):
        check_shape(name, a, spec, dims)
        check_floating(name, a)
    if state is not None:
        check_shape("state", state, "B H dk dv", dims)
    return dims


def bias_grad(M, k, v, bias: str = "l2", *, p: float = 3.0, delta: float = 1.0):
    """(18.14) per token: M (B, H, dk, dv), k (B, H, C, dk), v (B, H, C, dv) -> (B, H, C, dk, dv)."""
    xp = xp_of(M, k, v)
    e = xp.einsum("bhck,bhkv->bhcv", k, M) - v                          # (B, H, C, dv)
    if bias == "l2":
        r = 2 * e
    elif bias == "lp":
        r = p * xp.sign(e) * xp.abs(e) ** (p - 1)
    elif bias == "huber":
        r = xp.clip(e, -delta, delta)
    else:
        raise ValueError(f"bias: expected one of {BIASES}, got {bias!r}")
    return k[..., :, None] * r[..., None, :]


def _run(q, k, v, theta, alpha, grad_fn, form, chunk_size, state, dims):
    if form not in ("recurrent", "chunked"):
        raise ValueError(f"form: expected 'recurrent' or 'chunked', got {form!r}")
    check_positive_int("chunk_size", chunk_size)
    xp = xp_of(q, k, v)
    B, H, L, dk, dv = (dims[c] for c in ("B", "H", "L", "dk", "dv"))
    M0 = _zeros(xp, (B, H, dk, dv), like=q) if state is None else state
    zero = xp.zeros_like(theta)
    o, st = memory_core(grad_fn, lambda Ms, s, e: xp.einsum("bhck,bhckv->bhcv", q[:, :, s:e], Ms[0]),
                        L, theta, zero, alpha, (M0,), (xp.zeros_like(M0),), form=form,
                        chunk_size=chunk_size)
    return o, st.M[0]


def online_memory(q, k, v, theta, alpha, *, rule: str = "l2", p: float = 3.0, delta: float = 1.0,
                  window: int = 4, gamma=None, form: str = "recurrent", chunk_size: int = 16,
                  state=None):
    """One entry point for every rule of the family: (18.13) with the bias ``rule``.

    Args:
        q, k: (B, H, L, dk).  v: (B, H, L, dv).  theta: (B, H, L) step sizes.  alpha: (B, H, L)
            retention (forget) gates in [0, 1).
        rule: "l2", "lp" (exponent p), "huber" (threshold delta), "omega" (window c = window,
            weights gamma (B, H, L), ones if None) or "longhorn" (implicit step (18.17)).
        form: "recurrent" or "chunked" ("chunkwise" for longhorn; its chunked form is exact).
        state: (B, H, dk, dv) initial memory (zeros if None).
    Returns:
        o (B, H, L, dv), M (B, H, dk, dv).
    """
    if rule not in RULES:
        raise ValueError(f"rule: expected one of {RULES}, got {rule!r}")
    if rule == "longhorn":
        return longhorn(q, k, v, theta, alpha, form=form, chunk_size=chunk_size, state=state)
    if rule == "omega":
        return omega(q, k, v, theta, alpha, window=window, gamma=gamma, form=form,
                     chunk_size=chunk_size, state=state)
    dims = _check(q, k, v, theta, alpha, state)
    if rule == "lp" and not p >= 1:
        raise ValueError(f"p: expected an exponent p >= 1, got {p!r}")
    if rule == "huber" and not delta > 0:
        raise ValueError(f"delta: expected a threshold delta > 0, got {delta!r}")
    grad_fn = lambda Ms, s, e: (bias_grad(Ms[0], k[:, :, s:e], v[:, :, s:e], rule, p=p,  # noqa: E731
                                          delta=delta),)
    return _run(q, k, v, theta, alpha, grad_fn, form, chunk_size, state, dims)


def omega(q, k, v, theta, alpha, *, window: int = 4, gamma=None, form: str = "recurrent",
          chunk_size: int = 16, state=None):
    """ATLAS's Omega rule (18.15): the gradient over the last ``window`` tokens, weights gamma.
    Shapes and returns as ``online_memory``; features: pass ``polynomial_features(k)`` and
    ``polynomial_features(q)`` as k and q."""
    extra = () if gamma is None else (("gamma", gamma, "B H L"),)
    dims = _check(q, k, v, theta, alpha, state, extra)
    check_positive_int("window", window)
    xp = xp_of(q, k, v)
    gam = xp.ones_like(theta) if gamma is None else gamma

    def grad_fn(Ms, s, e):
        lo = max(0, s - window + 1)
        G = l2_grad(Ms[0], k[:, :, lo:e], v[:, :, lo:e]) * gam[:, :, lo:e, None, None]
        out = G[:, :, s - lo:]                                           # i = t
        for j in range(1, window):                                       # i = t - j
            if s - lo - j >= 0:
                out = out + G[:, :, s - lo - j:e - lo - j]
            elif e - lo - j > 0:   # near the sequence start only the tokens t >= j have an i = t - j
                pad = xp.zeros_like(out[:, :, :j - (s - lo)])
                out = out + xp.concat([pad, G[:, :, :e - lo - j]], axis=2)
        return (out,)

    return _run(q, k, v, theta, alpha, grad_fn, form, chunk_size, state, dims)


def longhorn(q, k, v, theta, alpha, *, form: str = "recurrent", chunk_size: int = 16, state=None):
    """Longhorn's implicit online-learning step (18.17); forms "recurrent" and "chunkwise".
    Shapes and returns as ``online_memory``; alpha < 1 (its log is the gated delta rule's g)."""
    from . import deltanet  # noqa: PLC0415

    dims = _check(q, k, v, theta, alpha, state)
    if form not in ("recurrent", "chunkwise"):
        raise ValueError(f"form: expected 'recurrent' or 'chunkwise', got {form!r}")
    xp = xp_of(q, k, v)
    eps = theta / (1 + theta * xp.sum(k * k, axis=-1))                  # (B, H, L)
    if form == "chunkwise":
        return deltanet.gated_delta_rule(q, k, v, xp.log(1 - alpha), eps, form="chunkwise",
                                         chunk_size=chunk_size, state=state)
    B, H, L, dk, dv = (dims[c] for c in ("B", "H", "L", "dk", "dv"))
    M = _zeros(xp, (B, H, dk, dv), like=q) if state is None else state
    outs = []
    for t in range(L):
        Mp = (1 - alpha[:, :, t])[..., None, None] * M                   # M' = (1 - alpha_t) M
        k_t = k[:, :, t]
        err = v[:, :, t] - xp.einsum("bhk,bhkv->bhv", k_t, Mp)
        M = Mp + eps[:, :, t][..., None, None] * k_t[..., :, None] * err[..., None, :]   # (18.17)
        outs.append(xp.einsum("bhk,bhkv->bhv", q[:, :, t], M))
    return xp.stack(outs, axis=2), M


def polynomial_features(x, degree: int = 2):
    """(18.16): x (..., d) -> (..., d + d^2 + ... + d^degree), [x, vec(x x^T)/sqrt(2!), ...]."""
    check_positive_int("degree", degree)
    xp = xp_of(x)
    feats, term = [x], x
    for n in range(2, degree + 1):
        term = xp.reshape(term[..., :, None] * x[..., None, :], tuple(x.shape[:-1]) + (-1,))
        feats.append(term / math.sqrt(math.factorial(n)))
    return xp.concat(feats, axis=-1)
