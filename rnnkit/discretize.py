"""From continuous to discrete time: forward Euler, backward Euler, bilinear (Tustin) and ZOH.

Every continuous-time model of Part IV is a linear time-invariant system (SSM convention: A is
stable when every eigenvalue has a negative real part; HiPPO's "-A" convention is flipped by the
caller, see ``rnnkit.hippo``):

    (12.9)  x'(t) = A x(t) + B u(t)

Sampled with step dt it becomes the linear recurrence x_k = Ā x_{k-1} + B̄ u_k, where

    (12.10)  forward Euler   Ā = I + dt A                           B̄ = dt B
    (12.11)  backward Euler  Ā = (I - dt A)^{-1}                    B̄ = (I - dt A)^{-1} dt B
    (12.12)  bilinear        Ā = (I - dt/2 A)^{-1} (I + dt/2 A)     B̄ = (I - dt/2 A)^{-1} dt B
    (12.13)  zero-order hold Ā = exp(dt A)                          B̄ = A^{-1} (exp(dt A) - I) B

The first three are the generalised bilinear transform (GBT) with alpha = 0, 1, 1/2:

    (12.14)  Ā = (I - alpha dt A)^{-1} (I + (1 - alpha) dt A),   B̄ = (I - alpha dt A)^{-1} dt B

What u_k stands for differs: u(t_{k-1}) for forward Euler, u(t_k) for backward Euler, the
average (u(t_{k-1}) + u(t_k)) / 2 (or the midpoint value) for bilinear, and the constant value on
(t_{k-1}, t_k] for ZOH, which is then exact. Global errors (accumulated over a fixed time span): Euler O(dt), bilinear O(dt^2); the
local, one-step errors are one order higher, O(dt^2) and O(dt^3).

An eigenvalue lambda of A becomes an eigenvalue z of Ā:

    (12.15)  z = 1 + dt lambda  (forward Euler),   1 / (1 - dt lambda)  (backward Euler),
               (1 + dt lambda/2) / (1 - dt lambda/2)  (bilinear),   exp(dt lambda)  (ZOH)

Backward Euler, bilinear and ZOH map the open left half-plane into the open unit disc (a stable
system stays stable for every dt); forward Euler only maps the disc |1 + dt lambda| < 1 there, so
a fast or oscillating mode becomes unstable when dt is too large.

Shapes: A (N, N) or (H, N, N) (one system per channel), B (N,) or (H, N), dt a number or (H,).
Complex A and B are allowed (S4 works in a complex diagonal basis).

References:
    A. Gu, T. Dao, S. Ermon, A. Rudra, C. Ré, "HiPPO: Recurrent Memory with Optimal Polynomial
    Projections", NeurIPS 2020, appendix B.3 (the GBT) and code github.com/HazyResearch/hippo-code.
    A. Gu, K. Goel, C. Ré, "Efficiently Modeling Long Sequences with Structured State Spaces",
    ICLR 2022, section 2.3 (bilinear); official code github.com/state-spaces/s4.
    C. Moler, C. Van Loan, "Nineteen Dubious Ways to Compute the Exponential of a Matrix, Twenty-
    Five Years Later", SIAM Review 45(1), 2003 (scaling and squaring with a Padé approximant);
    G. H. Golub, C. F. Van Loan, "Matrix Computations", algorithm 11.3.1 (what ``expm`` follows).
    SciPy's ``expm`` and ``cont2discrete`` do the same with a degree-13 Padé approximant; we keep
    SciPy out of the dependencies, and degree 6 after scaling to norm 1/2 is already accurate to
    about 1e-16.
"""
from __future__ import annotations

import math

import numpy as np

from .core.backend import device_of, xp_of
from .core.checks import check_floating, check_shape

__all__ = ["METHODS", "discretize", "forward_euler", "backward_euler", "bilinear", "gbt", "zoh",
           "expm", "eigenvalue_map"]

METHODS = ("forward_euler", "backward_euler", "bilinear", "zoh")


def _eye(xp, n, like):
    return xp.eye(n, dtype=like.dtype, device=device_of(like))


def _real_dtype(xp, dtype):
    if xp.isdtype(dtype, "complex floating"):
        return xp.float32 if dtype == xp.complex64 else xp.float64
    return dtype


def _check_system(A, B, dt):
    """Check A (N, N) or (H, N, N), B (N,) or (H, N), dt > 0 a number or (H,).

    Returns xp, A, B and dt broadcast to the common batch shape (), or (H,).
    """
    dims, src = {}, {}
    if getattr(A, "ndim", None) not in (2, 3):
        raise ValueError(f"A: expected shape (N, N) or (H, N, N), got {getattr(A, 'shape', type(A))}")
    check_shape("A", A, "N N" if A.ndim == 2 else "H N N", dims, src)
    check_shape("B", B, "H N" if getattr(B, "ndim", None) == 2 else "N", dims, src)
    xp = xp_of(A, B)
    # Integer A or B would make dt an integer too (zoh(-eye(int), ones(int), 1.5) ran with dt = 1):
    # the system must be floating point, as it is in every caller.
    check_floating("A", A)
    check_floating("B", B)
    if hasattr(dt, "dtype"):
        check_floating("dt", dt)
    if not hasattr(dt, "shape"):                            # a Python number (arrays kept as given)
        dt = xp.asarray(dt, dtype=_real_dtype(xp, A.dtype), device=device_of(A))
    if dt.ndim > 1:
        raise ValueError(f"dt: expected a number or shape (H,), got shape {tuple(dt.shape)}")
    if dt.ndim == 1:
        check_shape("dt", dt, "H", dims, src)
    if not bool(xp.all(dt > 0)):
        raise ValueError("dt: expected positive step sizes, got a value <= 0")
    N = dims["N"]
    batch = (dims["H"],) if "H" in dims else ()
    return (xp, xp.broadcast_to(A, batch + (N, N)), xp.broadcast_to(B, batch + (N,)),
            xp.broadcast_to(dt, batch))


def gbt(A, B, dt, alpha: float):
    """Generalised bilinear transform (12.14): alpha 0 forward Euler, 1 backward, 1/2 bilinear.

    Args:
        A: (N, N) or (H, N, N).  B: (N,) or (H, N).  dt: number or (H,).
        alpha: where in [t_{k-1}, t_k] the derivative is evaluated, in [0, 1].
    Returns:
        A_bar (…, N, N), B_bar (…, N), with the batch shape of A, B and dt broadcast together.
    """
    xp, A, B, dt = _check_system(A, B, dt)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha: expected a number in [0, 1], got {alpha}")
    I = _eye(xp, A.shape[-1], A)
    dtA = dt[..., None, None] * A                           # (…, N, N)
    dtB = dt[..., None] * B                                 # (…, N)
    if alpha == 0.0:                                        # explicit: no solve needed (12.10)
        return I + dtA, dtB
    M = I - alpha * dtA                                     # (…, N, N)
    A_bar = xp.linalg.solve(M, I + (1.0 - alpha) * dtA)
    B_bar = xp.linalg.solve(M, dtB[..., None])[..., 0]
    return A_bar, B_bar


def forward_euler(A, B, dt):
    """Forward (explicit) Euler (12.10): A_bar = I + dt A, B_bar = dt B."""
    return gbt(A, B, dt, 0.0)


def backward_euler(A, B, dt):
    """Backward (implicit) Euler (12.11): A_bar = (I - dt A)^{-1}, B_bar = (I - dt A)^{-1} dt B."""
    return gbt(A, B, dt, 1.0)


def bilinear(A, B, dt):
    """Bilinear / Tustin / trapezoid (12.12), the discretisation of the LSSL and S4."""
    return gbt(A, B, dt, 0.5)


def expm(M):
    """Matrix exponential exp(M) of (…, n, n) real or complex matrices.

    Scaling and squaring: exp(M) = exp(M / 2^s)^(2^s) with s chosen so that ||M / 2^s||_1 <= 1/2,
    and exp(X) ~ D(X)^{-1} N(X), the degree-6 diagonal Padé approximant
    N(X) = sum_k c_k X^k, D(X) = sum_k c_k (-X)^k, c_k = (12 - k)! 6! / (12! k! (6 - k)!).
    """
    xp = xp_of(M)
    if M.ndim < 2 or M.shape[-1] != M.shape[-2]:
        raise ValueError(f"M: expected shape (..., n, n), got {tuple(M.shape)}")
    norm = float(xp.max(xp.sum(xp.abs(M), axis=-2))) if M.shape[-1] else 0.0
    if not math.isfinite(norm):
        raise ValueError("M: expected finite entries, got inf or NaN")
    s = max(0, math.ceil(math.log2(norm / 0.5))) if norm > 0.5 else 0
    X = M / (2.0 ** s)
    I = _eye(xp, M.shape[-1], M)
    num, den, Xk, c = I, I, I, 1.0
    for k in range(1, 7):
        c = c * (6 - k + 1) / (k * (12 - k + 1))           # c_k from c_{k-1}
        Xk = Xk @ X
        num = num + c * Xk
        den = den + ((-1) ** k * c) * Xk
    E = xp.linalg.solve(den, num)
    for _ in range(s):
        E = E @ E
    return E


def zoh(A, B, dt):
    """Zero-order hold (12.13): exact for an input held constant over each step.

    B_bar = A^{-1}(exp(dt A) - I) B = (int_0^dt exp(s A) ds) B is read off one exponential of the
    augmented matrix [[A, B], [0, 0]] dt (Van Loan's trick), so A need not be invertible.
    """
    xp, A, B, dt = _check_system(A, B, dt)
    N = A.shape[-1]
    aug = xp.zeros(A.shape[:-2] + (N + 1, N + 1), dtype=xp.result_type(A, B),
                   device=device_of(A))
    aug[..., :N, :N] = A
    aug[..., :N, N] = B
    E = expm(dt[..., None, None] * aug)                     # (…, N+1, N+1)
    return E[..., :N, :N], E[..., :N, N]


def discretize(A, B, dt, method: str = "bilinear"):
    """Dispatch to one of ``METHODS``: (A, B, dt) -> (A_bar, B_bar)."""
    fns = {"forward_euler": forward_euler, "backward_euler": backward_euler,
           "bilinear": bilinear, "zoh": zoh}
    if method not in fns:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    return fns[method](A, B, dt)


def eigenvalue_map(lam, dt, method: str = "bilinear"):
    """Where a continuous eigenvalue lambda lands after discretisation (12.15).

    Args:
        lam: (complex) eigenvalues of A, an array of any shape or a number.
        dt: step, a number or an array broadcastable against lam.
    Returns:
        z, same shape: the eigenvalues of A_bar. The discrete system is stable when |z| < 1.
    """
    if not hasattr(lam, "shape"):                           # a Python number
        lam = np.asarray(lam)
    xp = xp_of(lam)
    if method == "forward_euler":
        return 1 + dt * lam
    if method == "backward_euler":
        return 1 / (1 - dt * lam)
    if method == "bilinear":
        return (1 + dt * lam / 2) / (1 - dt * lam / 2)
    if method == "zoh":
        return xp.exp(dt * lam)
    raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
