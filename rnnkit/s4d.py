"""S4D: the diagonal state space model (S4 with A = Lambda, no low-rank term).

Each of the H channels is x' = A x + B u, y = C x + D u with a diagonal complex A. A real system
has its eigenvalues in conjugate pairs, so N2 = N/2 modes are stored and the other half is their
complex conjugate, which turns every sum over the N modes into twice a real part:

    (13.10)  A = diag(lambda_n),  lambda_n = -exp(log_A_real_n) + i A_imag_n    (Re < 0 always)
    (13.11)  ZOH (12.13):       A_bar = exp(dt lambda),      B_bar = (exp(dt lambda) - 1)/lambda B
    (13.12)  bilinear (12.12):  A_bar = (1 + dt lambda/2)/(1 - dt lambda/2),
             B_bar = dt/(1 - dt lambda/2) B
    (13.13)  kernel:    K_l = 2 Re sum_n C_n B_bar_n A_bar_n^l = 2 Re[(C * B_bar) V]_l,
             V_nl = A_bar_n^l = exp(l log A_bar_n)   (Vandermonde matrix, O(N L) per channel)
    (13.14)  recurrent: x_k = A_bar * x_{k-1} + B_bar u_k,   y_k = 2 Re(C x_k) + D u_k
    (13.15)  convolutional: y = K * u + D u  (``lmu.fft_conv``)
    (13.16)  continuous: K(t) = 2 Re sum_n C_n B_n exp(lambda_n t); with ZOH the discrete kernel
             is its integral over each step, K_l = int_{l dt}^{(l+1) dt} K(t) dt
    (13.17)  S4D-Lin:  lambda_n = -1/2 + i pi n
             S4D-Inv:  lambda_n = -1/2 + i (N/pi) (N/(2n+1) - 1),   n = 0..N2-1, B = 1

Parameters: log_dt (H,), log_A_real (H, N2), A_imag (H, N2), D (H,) real; B (H, N2), C (H, N2)
complex. The state of the recurrent view is (B, H, N2) complex.

References:
    A. Gu, A. Gupta, K. Goel, C. Ré, "On the Parameterization and Initialization of Diagonal State
    Space Models", NeurIPS 2022: section 3 (Vandermonde kernel, discretisations, conjugate
    symmetry), section 4 (S4D-Lin, S4D-Inv). Official code github.com/state-spaces/s4
    (models/s4/s4d.py, ``SSMKernelDiag`` and ``dplr`` in models/s4/s4.py). The official kernel
    folds B into C and uses softplus for dt by default; we keep B and use exp(log_dt) as S4 did.
"""
from __future__ import annotations

import math

import array_api_compat
import numpy as np

from .core.backend import xp_of
from .core.checks import check_floating, check_params, check_positive_int, check_shape
from .lmu import fft_conv

__all__ = ["INITS", "init", "discretize", "kernel", "kernel_naive", "kernel_continuous", "step",
           "forward", "forward_conv", "split_complex", "merge_complex"]

INITS = ("inv", "lin")
_METHODS = ("zoh", "bilinear")
_SPECS = (("log_dt", "H"), ("log_A_real", "H N2"), ("A_imag", "H N2"), ("B", "H N2"),
          ("C", "H N2"), ("D", "H"))
_SSM_SPECS = (("A_bar", "H N2"), ("B_bar", "H N2"), ("C", "H N2"), ("D", "H"))


def init(rng: np.random.Generator, H: int, N: int, init: str = "inv", dt_min: float = 1e-3,
         dt_max: float = 1e-1, dtype=np.float64) -> dict:
    """S4D parameters with the S4D-Lin or S4D-Inv eigenvalues (13.17), B = 1 and random C.

    Args:
        H: channels.  N: state size (even); N2 = N/2 modes are stored.
        init: "inv" (S4D-Inv) or "lin" (S4D-Lin).  dt_min, dt_max: log_dt ~ U[log dt_min, log dt_max].
    Returns:
        dict with log_dt (H,), log_A_real (H, N2), A_imag (H, N2), D (H,) real;
        B (H, N2), C (H, N2) complex.
    """
    check_positive_int("H", H)
    check_positive_int("N", N)
    if N % 2:
        raise ValueError(f"N: expected an even state size (conjugate pairs), got {N}")
    if init not in INITS:
        raise ValueError(f"init: expected one of {INITS}, got {init!r}")
    if not 0 < dt_min <= dt_max:
        raise ValueError(f"dt_min, dt_max: expected 0 < dt_min <= dt_max, got {dt_min}, {dt_max}")
    n = np.arange(N // 2)
    imag = np.pi * n if init == "lin" else N / np.pi * (N / (2 * n + 1) - 1)
    cdtype = np.result_type(dtype, np.complex64)
    C = (rng.normal(size=(H, N // 2)) + 1j * rng.normal(size=(H, N // 2))) * np.sqrt(0.5)
    real = {"log_dt": rng.uniform(np.log(dt_min), np.log(dt_max), size=H),
            "log_A_real": np.full((H, N // 2), np.log(0.5)), "A_imag": np.tile(imag, (H, 1)),
            "D": rng.normal(size=H)}
    cplx = {"B": np.ones((H, N // 2)), "C": C}
    return ({k: v.astype(dtype) for k, v in real.items()}
            | {k: v.astype(cdtype) for k, v in cplx.items()})


def _check_params(params: dict, specs, dims: dict, src: dict):
    check_params(params, specs, dims, src)
    return xp_of(*(params[k] for k, _ in specs))


def discretize(params: dict, method: str = "zoh") -> dict:
    """(13.10)-(13.12): the diagonal discrete system.

    Returns:
        ssm: dict with A_bar (H, N2), B_bar (H, N2), C (H, N2) complex and D (H,).
    """
    xp = _check_params(params, _SPECS, {}, {})
    if method not in _METHODS:
        raise ValueError(f"method: expected one of {_METHODS}, got {method!r}")
    lam = -xp.exp(params["log_A_real"]) + 1j * params["A_imag"]    # (H, N2)   (13.10)
    dt = xp.exp(params["log_dt"])[:, None]                          # (H, 1)
    if method == "zoh":                                             # (13.11)
        A_bar = xp.exp(dt * lam)
        B_bar = (A_bar - 1) / lam * params["B"]
    else:                                                           # (13.12)
        A_bar = (1 + dt * lam / 2) / (1 - dt * lam / 2)
        B_bar = dt / (1 - dt * lam / 2) * params["B"]
    return {"A_bar": A_bar, "B_bar": B_bar, "C": params["C"], "D": params["D"]}


def kernel(params: dict, L: int, method: str = "zoh"):
    """The Vandermonde kernel (13.13): K (H, L) real, O(H N L).

    The powers A_bar^l are exp(l log A_bar) (any branch of the log gives the same integer powers);
    for ZOH log A_bar is dt lambda itself. Writing l = c q + r with c = ceil(sqrt(L)) splits the
    Vandermonde matrix into two small ones, A_bar^l = A_bar^(c q) A_bar^r, so the sum over n is
    one batched matrix product (H, Q, N2) @ (H, N2, c) and only O(H N sqrt(L)) exponentials are
    taken instead of H N L (the same products, a faster order).
    """
    check_positive_int("L", L)
    ssm = discretize(params, method)
    xp = xp_of(ssm["A_bar"])
    if method == "zoh":
        lam = -xp.exp(params["log_A_real"]) + 1j * params["A_imag"]
        log_A_bar = xp.exp(params["log_dt"])[:, None] * lam         # (H, N2), exactly dt lambda
    else:
        log_A_bar = xp.log(ssm["A_bar"])                            # (H, N2)
    c = math.isqrt(L - 1) + 1                                       # ceil(sqrt(L))
    Q = -(-L // c)                                                  # ceil(L / c), Q c >= L
    dev, rdt = array_api_compat.device(log_A_bar), params["log_dt"].dtype
    r = xp.arange(c, dtype=rdt, device=dev)
    q = xp.arange(Q, dtype=rdt, device=dev) * c
    V_r = xp.exp(log_A_bar[..., None] * r)                          # (H, N2, c)  A_bar^r
    V_q = xp.exp(log_A_bar[..., None] * q)                          # (H, N2, Q)  A_bar^(c q)
    CB = ssm["C"] * ssm["B_bar"]                                    # (H, N2)
    K = xp.matrix_transpose(CB[..., None] * V_q) @ V_r              # (H, Q, c): l = c q + r
    return 2 * xp.real(xp.reshape(K, (K.shape[0], Q * c)))[:, :L]   # (H, L)


def kernel_naive(params: dict, L: int, method: str = "zoh"):
    """Reference kernel: K_l = 2 Re sum_n C_n A_bar_n^l B_bar_n by repeated multiplication."""
    check_positive_int("L", L)
    ssm = discretize(params, method)
    xp = xp_of(ssm["A_bar"])
    v, ks = ssm["B_bar"], []                                        # (H, N2)
    for _ in range(L):
        ks.append(2 * xp.real(xp.sum(ssm["C"] * v, axis=-1)))      # (H,)
        v = ssm["A_bar"] * v
    return xp.stack(ks, axis=-1)                                    # (H, L)


def kernel_continuous(params: dict, t):
    """The continuous-time kernel K(t) = 2 Re sum_n C_n B_n exp(lambda_n t) of (13.16).

    Args:
        t: (T,) times >= 0.
    Returns:
        (H, T).
    """
    xp = _check_params(params, _SPECS, {}, {})
    check_shape("t", t, "T")
    lam = -xp.exp(params["log_A_real"]) + 1j * params["A_imag"]    # (H, N2)
    E = xp.exp(lam[..., None] * t)                                  # (H, N2, T)
    return 2 * xp.real(xp.sum((params["C"] * params["B"])[..., None] * E, axis=-2))


def step(ssm: dict, u_t, x_prev):
    """One recurrent step (13.14).

    Args:
        ssm: from ``discretize``.  u_t: (B, H).  x_prev: (B, H, N2) complex.
    Returns:
        y_t (B, H) real, x_t (B, H, N2).
    """
    dims, src = {}, {}
    xp = _check_params(ssm, _SSM_SPECS, dims, src)
    check_shape("u_t", u_t, "B H", dims, src)
    check_shape("x_prev", x_prev, "B H N2", dims, src)
    x = ssm["A_bar"] * x_prev + ssm["B_bar"] * u_t[..., None]       # (B, H, N2)
    y = 2 * xp.real(xp.sum(ssm["C"] * x, axis=-1)) + ssm["D"] * u_t  # (B, H)
    return y, x


def forward(params: dict, u, x0=None, method: str = "zoh"):
    """Recurrent view (13.14): u (B, L, H) -> y (B, L, H), x_L (B, H, N2) complex."""
    dims, src = {}, {}
    _check_params(params, _SPECS, dims, src)
    check_shape("u", u, "B L H", dims, src)
    check_floating("u", u)
    ssm = discretize(params, method)
    xp = xp_of(u, ssm["A_bar"])
    B, L, H, N2 = dims["B"], dims["L"], dims["H"], dims["N2"]
    if x0 is None:
        x0 = xp.zeros((B, H, N2), dtype=ssm["A_bar"].dtype, device=array_api_compat.device(u))
    check_shape("x0", x0, "B H N2", dims, src)
    Bu = ssm["B_bar"] * u[..., None]                                # (B, L, H, N2)
    x, xs = x0, []
    for k in range(L):
        x = ssm["A_bar"] * x + Bu[:, k]                             # (B, H, N2)
        xs.append(x)
    x_all = xp.stack(xs, axis=1)                                    # (B, L, H, N2)
    y = 2 * xp.real(xp.sum(ssm["C"] * x_all, axis=-1)) + ssm["D"] * u
    return y, x


def forward_conv(params: dict, u, method: str = "zoh"):
    """Convolutional view (13.15): u (B, L, H) -> y (B, L, H), from a zero state."""
    dims, src = {}, {}
    _check_params(params, _SPECS, dims, src)
    check_shape("u", u, "B L H", dims, src)
    check_floating("u", u)
    return fft_conv(kernel(params, dims["L"], method), u) + params["D"] * u


def split_complex(params: dict) -> dict:
    """Complex entries k -> real arrays k_re, k_im (for optimisers and trainers that only take
    real tensors, such as ``rnnkit.training.seqclass``); real entries unchanged. Works for S4 params too."""
    out = {}
    for k, v in params.items():
        if array_api_compat.array_namespace(v).isdtype(v.dtype, "complex floating"):
            out[k + "_re"], out[k + "_im"] = v.real, v.imag
        else:
            out[k] = v
    return out


def merge_complex(params: dict) -> dict:
    """The inverse of ``split_complex``: k = k_re + i k_im (differentiable on torch)."""
    out = {k: v for k, v in params.items() if not k.endswith(("_re", "_im"))}
    for k in params:
        if k.endswith("_re"):
            out[k[:-3]] = params[k] + 1j * params[k[:-3] + "_im"]
    return out
