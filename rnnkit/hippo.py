"""HiPPO: online function approximation by orthogonal polynomial projection.

A signal f seen up to time t is summarised by N coefficients c(t), its projection onto the first
N polynomials p_n(t, .) orthogonal for a measure w(t, x) over the past (the signal starts at
time 0, f = 0 before):

    (12.1)  c_n(t) = int f(x) p_n(t, x) w(t, x) dx / ||p_n||^2,     f(x) ~ sum_n c_n(t) p_n(t, x)

Differentiating (12.1) in t gives a linear ODE, in the HiPPO paper's sign convention

    (12.2)  LegT, LagT:  dc/dt = -A c + B f(t)
    (12.3)  LegS:        dc/dt = -(1/t) A c + (1/t) B f(t)

for three measures (n, k = 0..N-1, P_n Legendre, L_n Laguerre polynomials):

    (12.4)  LegT: w = 1/theta on [t - theta, t], p_n = P_n(2 (t - x)/theta - 1),
              ||p_n||^2 = 1/(2n+1)
              A_nk = (2n+1)/theta * ((-1)^(n-k) if k <= n else 1),   B_n = (2n+1) (-1)^n / theta
    (12.5)  LagT: w = exp(-(t - x)) on x <= t, p_n = L_n(t - x), ||p_n|| = 1
              A_nk = 1 if k <= n else 0,   B_n = 1
    (12.6)  LegS: w = 1/t on [0, t], p_n = sqrt(2n+1) P_n(2x/t - 1), ||p_n|| = 1
              A_nk = sqrt(2n+1) sqrt(2k+1) if n > k,  n+1 if n = k,  0 if n < k;   B_n = sqrt(2n+1)

LagT and LegS are exact for every f. LegT is exact while f is a polynomial of degree < N on the
window (its derivation replaces the forgotten value f(t - theta) by the approximation of it).
LegS has no timescale: substituting s = log t turns (12.3) into the time-invariant
dc/ds = -A c + B f, so compressing f(t) and its slower copy f(t/2) gives the same coefficients
at t and 2t respectively.

Discrete, online (``compress``): sample k (k = 0..L-1) stands for the signal on the step
(t_k - dt, t_k], t_k = (k+1) dt, and c_k approximates c(t_k), from c(0) = 0:

    (12.7)  LegT, LagT:  c_k = A_bar c_{k-1} + B_bar f_k,  (A_bar, B_bar) = discretize(-A, B, dt)
    (12.8)  LegS:        c_0 = f_0 e_0,  then the same step in log-time with
                           ds_k = log(t_k / t_{k-1}) = log((k+1)/k)

Sampling at the step midpoints f(t_k - dt/2) makes the bilinear and ZOH versions second-order
accurate in dt; sampling at the step ends f(t_k) makes them first-order (a half-step delay).

Shapes: A (N, N), B (N,), samples (L,), coefficients (L, N) (N the number of coefficients).
The module is NumPy-only: it builds constant matrices and reference projections (move them to
another backend with ``rnnkit.core.backend.to_backend``).

References:
    A. Gu, T. Dao, S. Ermon, A. Rudra, C. Ré, "HiPPO: Recurrent Memory with Optimal Polynomial
    Projections", NeurIPS 2020: section 2-3, appendix D (derivations of LegT, LagT, LegS).
    Official code: github.com/HazyResearch/hippo-code, and ``transition`` in state-spaces/s4
    (src/models/hippo/hippo.py), which uses the SSM sign (A already negated) and a rescaled LegT.
    Deliberate differences: the official LegS step uses A/k (first order in 1/k); we use the
    exact log-time step ds_k = log((k+1)/k) and start from the exact c_0 = f_0 e_0, so a constant
    signal is represented exactly from the first sample on.
"""
from __future__ import annotations

import functools

import numpy as np
from numpy.polynomial import laguerre, legendre

from .core.checks import check_floating, check_positive_int, check_shape
from .discretize import METHODS, discretize

__all__ = ["MEASURES", "transition", "basis", "project", "compress", "reconstruct"]

MEASURES = ("legt", "lagt", "legs")


def _check_measure(measure: str) -> None:
    if measure not in MEASURES:
        raise ValueError(f"measure: expected one of {MEASURES}, got {measure!r}")


@functools.lru_cache(maxsize=8)
def _gauss_legendre(n: int):
    """Nodes and weights on [-1, 1] (cached: NumPy computes them by an eigenvalue problem)."""
    return legendre.leggauss(n)


def transition(measure: str, N: int, theta: float = 1.0):
    """The HiPPO matrices (A, B) of (12.4)-(12.6), paper sign: dc/dt = -A c + B f.

    Args:
        measure: "legt", "lagt" or "legs".  N: number of coefficients.
        theta: window length, used by LegT only.
    Returns:
        A (N, N), B (N,), float64 NumPy arrays.
    """
    _check_measure(measure)
    check_positive_int("N", N)
    if not theta > 0:
        raise ValueError(f"theta: expected a positive window length, got {theta}")
    n = np.arange(N, dtype=np.float64)[:, None]            # (N, 1) row index
    k = np.arange(N, dtype=np.float64)[None, :]            # (1, N) column index
    if measure == "legt":                                   # (12.4)
        sign = np.where(k <= n, (-1.0) ** (n - k), 1.0)
        A = (2 * n + 1) / theta * sign
        B = (2 * n[:, 0] + 1) * (-1.0) ** n[:, 0] / theta
    elif measure == "lagt":                                 # (12.5)
        A = np.where(k <= n, 1.0, 0.0)
        B = np.ones(N)
    else:                                                   # (12.6)
        r = np.sqrt(2 * n + 1) * np.sqrt(2 * k + 1)
        A = np.where(n > k, r, 0.0) + np.diag(n[:, 0] + 1)
        B = np.sqrt(2 * n[:, 0] + 1)
    return A, B


def basis(measure: str, N: int, t: float, x, theta: float = 1.0):
    """The polynomials p_n(t, x) of (12.4)-(12.6) at the points x: f(x) ~ sum_n c_n(t) p_n(t, x).

    Args:
        x: (M,) times, inside the measure's support ([t - theta, t], x <= t, or [0, t]).
    Returns:
        G: (M, N), G[m, n] = p_n(t, x_m).
    """
    _check_measure(measure)
    check_positive_int("N", N)
    x = np.asarray(x, dtype=np.float64)
    check_shape("x", x, "M")
    if measure == "legt":
        return legendre.legvander(2 * (t - x) / theta - 1, N - 1)
    if measure == "lagt":
        return laguerre.lagvander(t - x, N - 1)
    if not t > 0:
        raise ValueError(f"t: expected t > 0 for LegS, got {t}")
    return legendre.legvander(2 * x / t - 1, N - 1) * np.sqrt(2 * np.arange(N) + 1)


def project(f, measure: str, N: int, t: float, theta: float = 1.0, n_quad: int = 200):
    """The exact coefficients c(t) of (12.1), by Gauss-Legendre quadrature (the reference).

    The signal starts at time 0 (f = 0 before), so the integral runs over the part of the
    measure's support inside [0, t].

    Args:
        f: callable, f(x) for an (M,) array of times returns (M,) values.
        t: current time.  n_quad: quadrature nodes (exact for polynomials of degree < 2 n_quad).
    Returns:
        c: (N,) float64.
    """
    _check_measure(measure)
    check_positive_int("n_quad", n_quad)
    if not t > 0:
        raise ValueError(f"t: expected t > 0, got {t}")
    lo = max(0.0, t - theta) if measure == "legt" else 0.0
    z, wq = _gauss_legendre(n_quad)
    x = lo + (t - lo) * (z + 1) / 2                         # (Q,) nodes in [lo, t]
    wq = wq * (t - lo) / 2                                  # (Q,) weights for dx
    fx = np.asarray(f(x), dtype=np.float64)
    check_shape("f(x)", fx, "Q", {"Q": n_quad})
    G = basis(measure, N, t, x, theta)                      # (Q, N)
    if measure == "legt":
        w = (2 * np.arange(N) + 1) / theta                  # w / ||p_n||^2
    elif measure == "lagt":
        w = np.exp(-(t - x))[:, None]                       # (Q, 1)
    else:
        w = 1.0 / t
    return ((wq * fx)[:, None] * G * w).sum(axis=0)


def compress(f_samples, measure: str, N: int, dt: float, theta: float = 1.0,
             method: str = "bilinear"):
    """Online compression (12.7)-(12.8): the coefficients after each sample.

    Args:
        f_samples: (L,) the signal over each step (t_k - dt, t_k], t_k = (k+1) dt: its midpoint
            value gives second-order accuracy, its end value f(t_k) first-order.
        dt: sampling step.  theta: LegT window.
        method: one of ``rnnkit.discretize.METHODS``.
    Returns:
        c: (L, N), c[k] ~ c(t_k).
    """
    _check_measure(measure)
    check_positive_int("N", N)
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    f = np.asarray(f_samples)
    check_shape("f_samples", f, "L")
    check_floating("f_samples", f)
    A, B = transition(measure, N, theta)
    L = f.shape[0]
    c = np.zeros((L, N))
    if measure != "legs":                                   # (12.7), time-invariant
        A_bar, B_bar = discretize(-A, B, dt, method)
        state = np.zeros(N)
        for k in range(L):
            state = A_bar @ state + B_bar * f[k]
            c[k] = state
        return c
    if L:                                                   # (12.8), LegS in log-time
        c[0, 0] = f[0]
    chunk = 256                                             # discretise 256 steps at a time
    for start in range(1, L, chunk):
        k = np.arange(start, min(start + chunk, L))
        A_bar, B_bar = discretize(-A, B, np.log((k + 1) / k), method)   # (K, N, N), (K, N)
        for i, kk in enumerate(k):
            c[kk] = A_bar[i] @ c[kk - 1] + B_bar[i] * f[kk]
    return c


def reconstruct(c, measure: str, t: float, x, theta: float = 1.0):
    """Evaluate the approximation sum_n c_n p_n(t, x) of (12.1) at the times x.

    Args:
        c: (N,) coefficients at time t (a row of ``compress`` or ``project``).
        x: (M,) times: in [t - theta, t] for LegT, [0, t] for LegS, x <= t for LagT.
    Returns:
        (M,) values.
    """
    c = np.asarray(c)
    dims = check_shape("c", c, "N")
    return basis(measure, dims["N"], t, x, theta) @ c
