"""Chaotic time series for chapter 7, integrated by the project: Mackey-Glass and Lorenz.

Equations (chapter 7):

    (7.5)  dx/dt = beta x(t - tau) / (1 + x(t - tau)^p) - gamma x(t)        Mackey-Glass, tau = 17
           (the chapter's beta_MG and n are ``beta`` and ``p`` here: ``n`` counts the samples)
    (7.6)  dx/dt = sigma (y - x),  dy/dt = x (rho - z) - y,  dz/dt = x y - b z     Lorenz 1963

Both are integrated with the classical fourth-order Runge-Kutta method. For the delay equation
the step is h = tau / m (m an integer), so x(t - tau) lies on the stored grid; RK4's half-step
stages need x(t - tau + h/2), taken by cubic Hermite interpolation from the values and slopes at
the two ends of that step (error O(h^4), so the whole scheme stays fourth order; tests/test_chaos.py checks the order and
compares with scipy's solve_ivp run by the method of steps). The history before t = 0 is the
constant x0.

References:
    M. C. Mackey and L. Glass, "Oscillation and chaos in physiological control systems", Science
    197, 1977. E. N. Lorenz, "Deterministic nonperiodic flow", J. Atmos. Sci. 20, 1963.
    Jaeger and Haas (Science 2004) use tau = 17 sampled every time unit, squashed by tanh(x - 1).
"""
from __future__ import annotations

import numpy as np

from ..core.checks import check_positive_int

__all__ = ["mackey_glass", "lorenz", "valid_time", "LORENZ_LYAPUNOV"]

LORENZ_LYAPUNOV = 0.9056   # largest Lyapunov exponent of Lorenz-63 at (10, 28, 8/3), 1 / time unit


def _positive(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name}: expected a positive number, got {value!r}")


def mackey_glass(n: int, *, tau: float = 17.0, beta: float = 0.2, gamma: float = 0.1,
                 p: float = 10.0, dt: float = 0.1, sample_every: float = 1.0, x0: float = 1.2,
                 discard: float = 0.0) -> np.ndarray:
    """n samples of the Mackey-Glass series (7.5), one every ``sample_every`` time units.

    Args:
        n: number of samples returned. tau, beta, gamma, p: the equation's constants.
        dt: RK4 step; tau / dt and sample_every / dt must be integers (to 1e-9).
        x0: constant history on [-tau, 0]. discard: time units dropped at the start (transient).
    Returns:
        (n,) float64 array: x(discard), x(discard + sample_every), ...
    """
    check_positive_int("n", n)
    for name, v in (("tau", tau), ("dt", dt), ("sample_every", sample_every)):
        _positive(name, v)
    m, every = tau / dt, sample_every / dt
    if abs(m - round(m)) > 1e-9 or abs(every - round(every)) > 1e-9 or round(m) < 2:
        raise ValueError(f"dt: expected tau/dt and sample_every/dt integers (tau/dt >= 2), "
                         f"got dt={dt} (tau/dt={m}, sample_every/dt={every})")
    if not discard >= 0:
        raise ValueError(f"discard: expected a non-negative number, got {discard!r}")
    m, every = int(round(m)), int(round(every))
    skip = int(round(discard / dt))
    steps = skip + (n - 1) * every
    x = np.empty(m + 1 + steps + 1)                # x[m + 1 + i] = x(i h); x[: m + 1] = history
    x[: m + 2] = x0
    dx = np.zeros_like(x)                          # dx[j] = x'(t_j) from the right; 0 in the history
    f = lambda xt, xd: beta * xd / (1.0 + xd ** p) - gamma * xt   # noqa: E731

    for i in range(steps):
        j = m + 1 + i                              # index of x(t); x(t - tau) is x[j - m]
        d0, d1 = x[j - m], x[j - m + 1]
        # x(t - tau + h/2): cubic Hermite on the one interval [t - tau, t - tau + h], from the two
        # values and the two slopes there. It never reaches across a grid point, where the
        # solution's derivatives jump (x' at t = 0, x'' at tau, ...), so it keeps O(h^4).
        slope1 = dx[j - m + 1] if i >= m else 0.0  # the interval [-h, 0] lies in the history
        d_half = 0.5 * (d0 + d1) + dt * (dx[j - m] - slope1) / 8.0
        xt = x[j]
        k1 = dx[j] = f(xt, d0)
        k2 = f(xt + 0.5 * dt * k1, d_half)
        k3 = f(xt + 0.5 * dt * k2, d_half)
        k4 = f(xt + dt * k3, d1)
        x[j + 1] = xt + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x[m + 1 + skip::every][:n].copy()


def _lorenz_rhs(s, sigma, rho, b):
    x, y, z = s[..., 0], s[..., 1], s[..., 2]
    return np.stack([sigma * (y - x), x * (rho - z) - y, x * y - b * z], axis=-1)


def lorenz(n: int, *, dt: float = 0.01, sample_every: int = 1, sigma: float = 10.0,
           rho: float = 28.0, b: float = 8.0 / 3.0, x0=(1.0, 1.0, 1.0),
           discard: int = 0) -> np.ndarray:
    """n samples of the Lorenz system (7.6) by RK4 with step dt, every ``sample_every`` steps.

    Args:
        x0: (3,) initial state, or (B, 3) to integrate B trajectories at once.
        discard: samples dropped at the start (the transient onto the attractor).
    Returns:
        (n, 3) or (B, n, 3) float64 array; sample i is at time (discard + i) * sample_every * dt.
    """
    check_positive_int("n", n)
    check_positive_int("sample_every", sample_every)
    _positive("dt", dt)
    s = np.array(x0, dtype=np.float64)
    if s.shape[-1:] != (3,) or s.ndim > 2:
        raise ValueError(f"x0: expected shape (3,) or (B, 3), got {s.shape}")
    out = np.empty((n,) + s.shape)
    for i in range(-discard, n):
        if i >= 0:
            out[i] = s
        for _ in range(sample_every):
            k1 = _lorenz_rhs(s, sigma, rho, b)
            k2 = _lorenz_rhs(s + 0.5 * dt * k1, sigma, rho, b)
            k3 = _lorenz_rhs(s + 0.5 * dt * k2, sigma, rho, b)
            k4 = _lorenz_rhs(s + dt * k3, sigma, rho, b)
            s = s + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    return out if s.ndim == 1 else np.moveaxis(out, 0, 1)


def valid_time(y_true, y_pred, threshold: float = 0.4) -> int:
    """Steps before the normalised error ||y - y_hat|| / sqrt(mean ||y||^2) first exceeds
    ``threshold`` (Pathak et al. 2018's valid prediction time). y_true, y_pred: (L, K)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 2:
        raise ValueError(f"y_pred: expected shape {y_true.shape} (L, K), got {y_pred.shape}")
    err = np.linalg.norm(y_true - y_pred, axis=1) / np.sqrt(np.mean(np.sum(y_true ** 2, axis=1)))
    above = np.nonzero(err > threshold)[0]
    return int(above[0]) if above.size else len(err)
