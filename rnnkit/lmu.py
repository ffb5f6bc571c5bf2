"""The Legendre Memory Unit (LMU) and the linear state space layer (LSSL).

Both put a HiPPO memory (``rnnkit.hippo``) inside a recurrent network. Row-vector convention as in
chapter 1: x_t is (B, D), h_t is (B, H), the memory m_t is (B, N).

LMU. A scalar u_t is written into a LegT memory of window theta (in steps of dt); the
nonlinear hidden state reads the memory:

    (12.16)  u_t = x_t e_x + h_{t-1} e_h + m_{t-1} e_m                    (B,)
    (12.17)  m_t = m_{t-1} A_bar^T + u_t B_bar^T                            (B, N)
    (12.18)  h_t = tanh(x_t W_x + h_{t-1} W_h + m_t W_m)                    (B, H)
    (12.19)  theta m'(t) = A m(t) + B u(t),  a_ij = (2i+1) (-1 if i < j else (-1)^(i-j+1)),
             b_i = (2i+1) (-1)^i,   (A_bar, B_bar) = ZOH(A / theta, B / theta, dt)

The LMU paper writes its memory in its own form (12.19) (``memory_matrices``); it is HiPPO-LegT
(12.4) with the sign convention flipped and theta taken out: A / theta = -A_LegT(theta),
B / theta = B_LegT(theta) (asserted in tests/test_lmu.py and in chapter 12), so that
u(t - r) ~ sum_i m_i P_i(2 r / theta - 1) for 0 <= r <= theta (``hippo.reconstruct``).

LSSL. H independent single-input single-output SSMs, one per channel, each with its own step
dt_h = exp(log_dt_h), sharing a fixed HiPPO (A, B) (SSM sign, A = -A_HiPPO):

    (12.20)  x'(t) = A x(t) + B u(t),   y(t) = C x(t) + D u(t)             x: (N,), u, y scalars
    (12.21)  (A_bar, B_bar) = bilinear(A, B, dt_h)                          (12.12)
    (12.22)  recurrent:       x_k = A_bar x_{k-1} + B_bar u_k,   y_k = C x_k + D u_k
    (12.23)  convolutional:   K = (C B_bar, C A_bar B_bar, ..., C A_bar^{L-1} B_bar),   y = K * u + D u

The convolution is computed by FFT in O(L log L); the kernel here is the naive Krylov product by
powers of A_bar, O(L N^2), which S4 (``rnnkit.s4``) replaces by a fast, stable algorithm and uses
as its reference. ``ssm_step``, ``ssm_kernel`` and ``fft_conv`` take a discrete system and are
shared with S4 and S4D; when the system is complex (S4's diagonal basis) the output is Re(C x).

References:
    A. Voelker, I. Kajić, C. Eliasmith, "Legendre Memory Units: Continuous-Time Representation in
    Recurrent Neural Networks", NeurIPS 2019, section 3; official code
    github.com/abr/neurips2019 and github.com/nengo/keras-lmu (initialisers: LeCun uniform e_x and
    e_h, zero e_m, Glorot normal W_x, W_h, W_m; A and B fixed).
    A. Gu, I. Johnson, K. Goel, K. Saab, T. Dao, A. Rudra, C. Ré, "Combining Recurrent,
    Convolutional, and Continuous-time Models with Linear State-Space Layers", NeurIPS 2021,
    sections 2-3; code in github.com/state-spaces/s4 (the LSSL is the "dense" kernel there).
    The LSSL there has M output copies per channel and learns A; we keep one copy and a fixed A.
    The LSSL lives in this module, not in ``s4``, because the LSSL paper presents it as the
    generalisation of the LMU's linear memory, and S4 then builds on both.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .core.backend import device_of, xp_of, zeros
from .core.checks import check_floating, check_params, check_positive_int, check_shape
from .discretize import bilinear, zoh
from .hippo import transition

__all__ = ["LMUState", "memory_matrices", "init", "step", "forward", "zero_state", "example",
           "FORMS", "STATE", "lssl_init", "lssl_discretize", "ssm_step",
           "ssm_scan", "ssm_kernel", "fft_conv", "lssl_step", "lssl_forward", "lssl_forward_conv"]


# ----------------------------------------------------------------------------------------------
# LMU (12.16)-(12.19)

STATE = ("h", "m")   # the LMU state: hidden h (B, H) and memory m (B, N)
FORMS = ()


class LMUState(NamedTuple):
    """The two recurrent states of the LMU."""

    h: object  # (B, H) hidden state
    m: object  # (B, N) memory


def memory_matrices(N: int):
    """The LMU's continuous memory (A, B) of (12.19), theta m' = A m + B u, as the LMU paper writes it.

    Args:
        N: memory order (number of Legendre coefficients).
    Returns:
        A (N, N), B (N,), float64 NumPy arrays (no theta: divide both by theta for m').
    """
    check_positive_int("N", N)
    i = np.arange(N, dtype=np.float64)[:, None]            # (N, 1) row index
    j = np.arange(N, dtype=np.float64)[None, :]            # (1, N) column index
    A = (2 * i + 1) * np.where(i < j, -1.0, (-1.0) ** (i - j + 1))
    B = (2 * i[:, 0] + 1) * (-1.0) ** i[:, 0]
    return A, B


def init(rng: np.random.Generator, D: int, H: int, N: int, theta: float, dt: float = 1.0,
         dtype=np.float64) -> dict:
    """LMU parameters: encoders e_*, kernels W_*, and the fixed memory (A_bar, B_bar) of (12.19).

    Args:
        D: input size.  H: hidden size.  N: memory order (Legendre coefficients).
        theta: memory window, in the same time unit as dt (steps when dt = 1).
    Returns:
        dict with e_x (D,), e_h (H,), e_m (N,), W_x (D, H), W_h (H, H), W_m (N, H),
        A_bar (N, N), B_bar (N,), NumPy arrays of ``dtype``.
    """
    for name, value in (("D", D), ("H", H), ("N", N)):
        check_positive_int(name, value)

    def glorot(n_in, n_out):
        return rng.normal(0.0, np.sqrt(2.0 / (n_in + n_out)), size=(n_in, n_out))

    if not theta > 0:
        raise ValueError(f"theta: expected a positive window length, got {theta}")
    A, B = memory_matrices(N)
    A_bar, B_bar = zoh(A / theta, B / theta, dt)            # (12.19)
    params = {
        "e_x": rng.uniform(-np.sqrt(3.0 / D), np.sqrt(3.0 / D), size=D),
        "e_h": rng.uniform(-np.sqrt(3.0 / H), np.sqrt(3.0 / H), size=H),
        "e_m": np.zeros(N),
        "W_x": glorot(D, H), "W_h": glorot(H, H), "W_m": glorot(N, H),
        "A_bar": A_bar, "B_bar": B_bar,
    }
    return {k: v.astype(dtype) for k, v in params.items()}


_LMU_SPECS = (("e_x", "D"), ("e_h", "H"), ("e_m", "N"), ("W_x", "D H"), ("W_h", "H H"),
              ("W_m", "N H"), ("A_bar", "N N"), ("B_bar", "N"))


def _check_params(params: dict, specs, dims: dict, src: dict) -> None:
    check_params(params, specs, dims, src)


def _lmu_cell(params, xe_t, xw_t, state: LMUState):
    """(12.16)-(12.18) given the input terms x_t e_x (B,) and x_t W_x (B, H)."""
    h, m = state
    u = xe_t + h @ params["e_h"] + m @ params["e_m"]              # (B,)     (12.16)
    m = m @ params["A_bar"].T + u[:, None] * params["B_bar"]       # (B, N)   (12.17)
    xp = xp_of(h)
    h = xp.tanh(xw_t + h @ params["W_h"] + m @ params["W_m"])      # (B, H)   (12.18)
    return h, LMUState(h, m)


def zero_state(params: dict, x):
    """LMUState(h=0, m=0), (B, H) and (B, N), with the batch size, dtype and device of ``x``."""
    xp, B = xp_of(x), x.shape[0]
    return LMUState(zeros(xp, (B, params["W_h"].shape[0]), like=x),
                    zeros(xp, (B, params["A_bar"].shape[0]), like=x))


def example(rng: np.random.Generator, *, dtype=np.float64):
    """A small LMU for the contract tests (rnnkit/PROTOCOL.md): (params, x, options)."""
    return init(rng, 3, 4, 5, theta=8.0, dtype=dtype), rng.standard_normal((2, 5, 3)).astype(dtype), {}


def step(params: dict, x_t, state: LMUState | None = None):
    """One LMU step, (12.16)-(12.18).

    Args:
        params: from ``init``.  x_t: (B, D).  state: ``LMUState`` with h (B, H), m (B, N); zeros
            if None.
    Returns:
        h_t (B, H), the new ``LMUState``.
    """
    dims, src = {}, {}
    _check_params(params, _LMU_SPECS, dims, src)
    check_shape("x_t", x_t, "B D", dims, src)
    check_floating("x_t", x_t)
    if state is None:
        state = zero_state(params, x_t)
    state = LMUState(*state)
    check_shape("state.h", state.h, "B H", dims, src)
    check_shape("state.m", state.m, "B N", dims, src)
    return _lmu_cell(params, x_t @ params["e_x"], x_t @ params["W_x"], state)


def forward(params: dict, x, state: LMUState | None = None):
    """Run the LMU over a sequence; the input terms x_t e_x, x_t W_x are computed for all t first.

    Args:
        params: from ``init``.  x: (B, L, D).  state: initial ``LMUState``, zeros if None.
    Returns:
        h_all (B, L, H), the final ``LMUState``.
    """
    dims, src = {}, {}
    _check_params(params, _LMU_SPECS, dims, src)
    check_shape("x", x, "B L D", dims, src)
    check_floating("x", x)
    xp = xp_of(x, params["W_h"])
    state = zero_state(params, x) if state is None else LMUState(*state)
    check_shape("state.h", state.h, "B H", dims, src)
    check_shape("state.m", state.m, "B N", dims, src)
    xe = x @ params["e_x"]                                   # (B, L)
    xw = x @ params["W_x"]                                   # (B, L, H)
    hs = []
    # Steps by unstack, not xw[:, t, :]: the LMU is trained by torch autograd through this loop,
    # and the backward of each slice writes a whole (B, L, H) gradient, O(L^2) over the loop;
    # unstack's backward is one stack. NumPy and CuPy give views.
    for xe_t, xw_t in zip(xp.unstack(xe, axis=1), xp.unstack(xw, axis=1)):
        h, state = _lmu_cell(params, xe_t, xw_t, state)
        hs.append(h)
    return xp.stack(hs, axis=1), state


# ----------------------------------------------------------------------------------------------
# LSSL (12.20)-(12.23)

def lssl_init(rng: np.random.Generator, H: int, N: int, measure: str = "legs", theta: float = 1.0,
              dt_min: float = 1e-3, dt_max: float = 1e-1, dtype=np.float64) -> dict:
    """LSSL parameters: fixed HiPPO (A, B) in the SSM sign, random C, D and log-uniform dt.

    Args:
        H: channels.  N: state size.  measure: HiPPO measure for A ("legs" or "legt", theta).
        dt_min, dt_max: range of the initial steps, log_dt ~ U[log dt_min, log dt_max] as in S4.
    Returns:
        dict with A (N, N), B (N,), C (H, N), D (H,), log_dt (H,).
    """
    check_positive_int("H", H)
    check_positive_int("N", N)
    if not 0 < dt_min <= dt_max:
        raise ValueError(f"dt_min, dt_max: expected 0 < dt_min <= dt_max, got {dt_min}, {dt_max}")
    A, B = transition(measure, N, theta)
    params = {
        "A": -A, "B": B,                                     # SSM sign: x' = A x + B u
        "C": rng.normal(0.0, np.sqrt(1.0 / N), size=(H, N)),
        "D": rng.normal(size=H),
        "log_dt": rng.uniform(np.log(dt_min), np.log(dt_max), size=H),
    }
    return {k: v.astype(dtype) for k, v in params.items()}


_LSSL_SPECS = (("A", "N N"), ("B", "N"), ("C", "H N"), ("D", "H"), ("log_dt", "H"))
_SSM_SPECS = (("A_bar", "H N N"), ("B_bar", "H N"), ("C", "H N"), ("D", "H"))


def lssl_discretize(params: dict) -> dict:
    """The discrete system of every channel, (12.21): dt = exp(log_dt) keeps the step positive.

    Returns:
        ssm: dict with A_bar (H, N, N), B_bar (H, N), C (H, N), D (H,), the input of ``ssm_*``.
    """
    _check_params(params, _LSSL_SPECS, {}, {})
    xp = xp_of(params["A"])
    A_bar, B_bar = bilinear(params["A"], params["B"], xp.exp(params["log_dt"]))
    return {"A_bar": A_bar, "B_bar": B_bar, "C": params["C"], "D": params["D"]}


def _output(xp, C, x, D, u):
    """y = C x + D u per channel; Re(C x) when the state is complex. x (..., H, N), u (..., H)."""
    y = xp.sum(C * x, axis=-1)                              # (..., H)
    if xp.isdtype(y.dtype, "complex floating"):
        y = xp.real(y)
    return y + D * u


def ssm_step(ssm: dict, u_t, x_prev):
    """One step of (12.22) for H channels.

    Args:
        ssm: A_bar (H, N, N), B_bar (H, N), C (H, N), D (H,).
        u_t: (B, H) input.  x_prev: (B, H, N) state.
    Returns:
        y_t (B, H), x_t (B, H, N).
    """
    dims, src = {}, {}
    _check_params(ssm, _SSM_SPECS, dims, src)
    check_shape("u_t", u_t, "B H", dims, src)
    check_shape("x_prev", x_prev, "B H N", dims, src)
    xp = xp_of(u_t, x_prev, ssm["A_bar"])
    x = (ssm["A_bar"] @ x_prev[..., None])[..., 0] + ssm["B_bar"] * u_t[..., None]
    return _output(xp, ssm["C"], x, ssm["D"], u_t), x


def ssm_scan(ssm: dict, u, x0=None):
    """(12.22) over a sequence: the recurrent view, O(L H N^2).

    Args:
        ssm: as in ``ssm_step``.  u: (B, L, H).  x0: (B, H, N), zeros if None.
    Returns:
        y (B, L, H), x_L (B, H, N).
    """
    dims, src = {}, {}
    _check_params(ssm, _SSM_SPECS, dims, src)
    check_shape("u", u, "B L H", dims, src)
    check_floating("u", u)
    xp = xp_of(u, ssm["A_bar"])
    B, L, H, N = dims["B"], dims["L"], dims["H"], dims["N"]
    if x0 is None:
        x0 = xp.zeros((B, H, N), dtype=xp.result_type(u.dtype, ssm["A_bar"].dtype),
                      device=device_of(u))
    check_shape("x0", x0, "B H N", dims, src)
    A_bar, Bu = ssm["A_bar"], ssm["B_bar"] * u[..., None]   # (H, N, N), (B, L, H, N)
    x, xs = x0, []
    for k in range(L):
        x = (A_bar @ x[..., None])[..., 0] + Bu[:, k]       # (B, H, N)
        xs.append(x)
    x_all = xp.stack(xs, axis=1)                            # (B, L, H, N)
    return _output(xp, ssm["C"], x_all, ssm["D"], u), x


def ssm_kernel(ssm: dict, L: int):
    """The convolution kernel of (12.23) by powers of A_bar: the naive reference, O(L H N^2).

    Stable here because it multiplies vectors step by step; what fails for HiPPO matrices is
    computing large powers A_bar^l in closed form or by fast Krylov algorithms (S4, section 3.1).

    Returns:
        K: (H, L), K[h, l] = C_h A_bar_h^l B_bar_h (real part for a complex system).
    """
    check_positive_int("L", L)
    _check_params(ssm, _SSM_SPECS, {}, {})
    xp = xp_of(ssm["A_bar"])
    v, ks = ssm["B_bar"], []                                # (H, N)
    for _ in range(L):
        ks.append(xp.sum(ssm["C"] * v, axis=-1))            # (H,)
        v = (ssm["A_bar"] @ v[..., None])[..., 0]
    K = xp.stack(ks, axis=-1)                               # (H, L)
    return xp.real(K) if xp.isdtype(K.dtype, "complex floating") else K


def fft_conv(K, u):
    """Causal convolution y_k = sum_{j <= k} K_j u_{k-j} per channel, by FFT of size 2L.

    Args:
        K: (H, L) kernel.  u: (B, L, H) input.
    Returns:
        y: (B, L, H). Zero-padding to 2L makes the circular FFT convolution a linear one.
    """
    dims, src = {}, {}
    check_shape("K", K, "H L", dims, src)
    check_shape("u", u, "B L H", dims, src)
    xp = xp_of(K, u)
    L = dims["L"]
    K_f = xp.fft.rfft(K, n=2 * L, axis=-1)                  # (H, L+1)
    u_f = xp.fft.rfft(xp.permute_dims(u, (0, 2, 1)), n=2 * L, axis=-1)  # (B, H, L+1)
    y = xp.fft.irfft(K_f * u_f, n=2 * L, axis=-1)[..., :L]  # (B, H, L)
    return xp.permute_dims(y, (0, 2, 1))


def lssl_step(params: dict, u_t, x_prev):
    """One LSSL step (12.22); for generation call ``lssl_discretize`` once and ``ssm_step``."""
    return ssm_step(lssl_discretize(params), u_t, x_prev)


def lssl_forward(params: dict, u, x0=None):
    """Recurrent view of the LSSL: u (B, L, H) -> y (B, L, H), x_L (B, H, N)."""
    return ssm_scan(lssl_discretize(params), u, x0)


def lssl_forward_conv(params: dict, u):
    """Convolutional view of the LSSL (12.23): u (B, L, H) -> y (B, L, H), from a zero state."""
    ssm = lssl_discretize(params)
    check_shape("u", u, "B L H", {"H": ssm["D"].shape[0]})
    check_floating("u", u)
    return fft_conv(ssm_kernel(ssm, u.shape[1]), u) + ssm["D"] * u
