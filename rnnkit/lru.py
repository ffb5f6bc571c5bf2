"""The Linear Recurrent Unit (LRU): a complex diagonal linear recurrence with a stable parametrisation.

Equations, numbered as in chapter 10 (u_k is a real (D,) input, x_k a complex (N,) state; products
with a vector are elementwise, the paper's Lambda is the diagonal lambda):

    (10.6)  lambda = exp(-exp(nu_log) + i exp(theta_log))     |lambda| = exp(-exp(nu_log)) < 1 always
    (10.7)  ring initialisation: |lambda|^2 ~ U[r_min^2, r_max^2], arg lambda ~ U[0, max_phase], so
            nu_log = log(-log(U[r_min^2, r_max^2]) / 2),  theta_log = log(max_phase U[0, 1])
    (10.9)  gamma = exp(gamma_log), initialised to sqrt(1 - |lambda|^2)  (normalises the state's size)
    (10.10) x_k = lambda * x_{k-1} + gamma * (B u_k),      B = B_re + i B_im   (N, D)
    (10.11) y_k = Re(C x_k) + D * u_k,                     C = C_re + i C_im   (D, N)

Backward (complex gradients as dz = dL/dRe z + i dL/dIm z, see ``rnnkit.scan``), with dy_k = dL/dy_k:

    (10.12) dx_k (direct) = conj(C)^T dy_k;  dC = sum_k dy_k conj(x_k)^T;  dD = sum_k dy_k * u_k
    (10.13) (dlambda, dBu_k, dx_0) from the reverse scan (9.6), with Bu_k = gamma * (B u_k):
            g_k = dx_k + conj(lambda) g_{k+1},  dlambda = sum_k g_k conj(x_{k-1}),  dBu_k = g_k
    (10.14) dnu_log = -exp(nu_log) Re(conj(lambda) dlambda),
            dtheta_log = exp(theta_log) Im(conj(lambda) dlambda)
    (10.15) dgamma_log = gamma * sum_k Re(dBu_k * conj(B u_k));  dB = sum_k (gamma * dBu_k) u_k^T;
            du_k = Re(B^H (gamma * dBu_k)) + D * dy_k

Shapes are batch-first: u (B, L, D), x (B, L, N). (The batch letter B and the matrix B are told
apart by context, as in the paper.) Complex matrices are stored as real and imaginary parts so that
every parameter is a real array and a real optimiser can train it.

References:
    A. Orvieto, S. L. Smith, A. Gu, A. Fernando, C. Gulcehre, R. Pascanu and S. De, "Resurrecting
    Recurrent Neural Networks for Long Sequences", ICML 2023, arXiv:2303.06349: section 3 and
    Appendix A (the JAX listing: init_lru_parameters, forward_LRU). As there, gamma_log is a trained
    parameter initialised from lambda (it is not recomputed from lambda during training). The
    surrounding block (LayerNorm, GLU, residual) is not part of this module.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .core.backend import xp_of, zeros
from .core.checks import check_floating, check_params, check_positive_int, check_shape
from .scan import linear_scan, linear_scan_backward

__all__ = ["init", "lambda_of", "step", "forward", "forward_scan", "backward", "zero_state",
           "example", "LRUCache", "FORMS", "STATE"]

STATE = ("x",)           # the complex state x_k (rnnkit.stack reads this)
FORMS = ("forward_scan",)

PARAM_SHAPES = (("nu_log", "N"), ("theta_log", "N"), ("gamma_log", "N"), ("B_re", "N D"),
                ("B_im", "N D"), ("C_re", "D N"), ("C_im", "D N"), ("D", "D"))


class LRUCache(NamedTuple):
    """What ``backward`` needs from the forward pass."""

    u: object      # (B, L, D) real inputs
    x0: object     # (B, N)    complex initial state
    x_all: object  # (B, L, N) complex states x_1 ... x_L
    v: object      # (B, L, N) complex B u_k, before the gamma scaling


def init(rng: np.random.Generator, D: int, N: int, *, r_min: float = 0.0, r_max: float = 1.0,
         max_phase: float = 6.28, dtype=np.float64) -> dict:
    """LRU parameters with the ring initialisation (10.7) and gamma = sqrt(1 - |lambda|^2) (10.9).

    Args:
        rng: NumPy random generator.  D: input and output size.  N: state size.
        r_min, r_max: radii of the ring, 0 <= r_min < r_max <= 1.  max_phase: largest arg lambda.
    Returns:
        dict with nu_log, theta_log, gamma_log (N,), B_re, B_im (N, D), C_re, C_im (D, N), D (D,).
    """
    check_positive_int("D", D)
    check_positive_int("N", N)
    if not 0.0 <= r_min < r_max <= 1.0:
        raise ValueError(f"r_min, r_max: expected 0 <= r_min < r_max <= 1, got {r_min}, {r_max}")
    if not max_phase > 0:
        raise ValueError(f"max_phase: expected a positive number, got {max_phase}")
    r2 = rng.uniform(r_min**2, r_max**2, size=N)            # |lambda|^2, uniform on the ring's area
    nu_log = np.log(-0.5 * np.log(r2))
    theta_log = np.log(max_phase * rng.uniform(size=N))
    gamma_log = 0.5 * np.log(-np.expm1(-2.0 * np.exp(nu_log)))   # log sqrt(1 - |lambda|^2)
    params = {
        "nu_log": nu_log, "theta_log": theta_log, "gamma_log": gamma_log,
        "B_re": rng.standard_normal((N, D)) / np.sqrt(2 * D),   # Glorot-like, as in Appendix A
        "B_im": rng.standard_normal((N, D)) / np.sqrt(2 * D),
        "C_re": rng.standard_normal((D, N)) / np.sqrt(N),
        "C_im": rng.standard_normal((D, N)) / np.sqrt(N),
        "D": rng.standard_normal(D),
    }
    return {k: v.astype(dtype) for k, v in params.items()}


def _check_params(params: dict, dims: dict, src: dict) -> None:
    check_params(params, PARAM_SHAPES, dims, src)


def lambda_of(params: dict):
    """The diagonal lambda (N,) of (10.6), complex."""
    xp = xp_of(params["nu_log"])
    return xp.exp(-xp.exp(params["nu_log"]) + 1j * xp.exp(params["theta_log"]))


def _input(params: dict, u):
    """B u (10.10), complex, from the real input u (..., D) -> (..., N); two real products."""
    return u @ params["B_re"].T + 1j * (u @ params["B_im"].T)


def _output(params: dict, x, u):
    """y = Re(C x) + D * u (10.11): x (..., N) complex, u (..., D) real -> (..., D) real."""
    xp = xp_of(x)
    return xp.real(x) @ params["C_re"].T - xp.imag(x) @ params["C_im"].T + params["D"] * u


def zero_state(params: dict, u):
    """x_0 = 0: (B, N) complex zeros with the batch size and device of ``u`` ((B, D) or (B, L, D))."""
    xp = xp_of(u, params["B_re"])
    lam = lambda_of(params)
    return zeros(xp, (u.shape[0], params["nu_log"].shape[0]), like=u, dtype=lam.dtype)


def example(rng: np.random.Generator, *, dtype=np.float64):
    """A small LRU for the contract tests (rnnkit/PROTOCOL.md): (params, x, options)."""
    return init(rng, 3, 4, dtype=dtype), rng.standard_normal((2, 5, 3)).astype(dtype), {}


def step(params: dict, u_k, state=None):
    """One step (10.10)-(10.11).

    Args:
        u_k: (B, D) real input.  state: (B, N) complex state x_{k-1}, zeros if None.
    Returns:
        y_k (B, D) real, x_k (B, N) complex.
    """
    dims, src = {}, {}
    _check_params(params, dims, src)
    check_shape("u_k", u_k, "B D", dims, src)
    check_floating("u_k", u_k)
    if state is None:
        state = zero_state(params, u_k)
    check_shape("state", state, "B N", dims, src)
    xp = xp_of(u_k, params["B_re"])
    gamma = xp.exp(params["gamma_log"])                     # (N,)
    x_k = lambda_of(params) * state + gamma * _input(params, u_k)   # (B, N)  (10.10)
    return _output(params, x_k, u_k), x_k


def _prepare(params: dict, u, x0):
    dims, src = {}, {}
    _check_params(params, dims, src)
    check_shape("u", u, "B L D", dims, src)
    check_floating("u", u)
    xp = xp_of(u, params["B_re"])
    lam = lambda_of(params)                                 # (N,) complex
    if x0 is None:
        x0 = zeros(xp, (dims["B"], dims["N"]), like=u, dtype=lam.dtype)
    check_shape("state", x0, "B N", dims, src)
    v = _input(params, u)                                   # (B, L, N)  B u_k for every k at once
    return xp, lam, x0, v


def forward(params: dict, u, state=None, return_cache: bool = False):
    """The LRU over a whole sequence, one step at a time (the recurrent view).

    Args:
        u: (B, L, D) real inputs.  state: (B, N) complex initial state x_0, zeros if None.
        return_cache: also return the ``LRUCache`` that ``backward`` needs.
    Returns:
        y (B, L, D), x_last (B, N)[, cache]
    """
    xp, lam, x0, v = _prepare(params, u, state)
    Bu = xp.exp(params["gamma_log"]) * v                     # (B, L, N)
    x, xs = x0, []
    for k in range(u.shape[1]):
        x = lam * x + Bu[:, k, :]                            # (B, N)  (10.10)
        xs.append(x)
    x_all = xp.stack(xs, axis=1)                             # (B, L, N)
    y = _output(params, x_all, u)                            # (B, L, D)  (10.11)
    return (y, x, LRUCache(u, x0, x_all, v)) if return_cache else (y, x)


def forward_scan(params: dict, u, state=None, return_cache: bool = False, *,
                 method: str = "chunked", chunk_size: int | None = None):
    """The LRU over a whole sequence with a parallel scan of (10.10) (``rnnkit.scan.linear_scan``).

    Args: as ``forward``, plus ``method`` and ``chunk_size`` of ``linear_scan`` ("log" does not
    apply: lambda and B u are complex). Returns: as ``forward``.
    """
    xp, lam, x0, v = _prepare(params, u, state)
    Bu = xp.exp(params["gamma_log"]) * v                     # (B, L, N)
    x_all = linear_scan(lam, Bu, x0, method=method, chunk_size=chunk_size)   # (B, L, N)
    y = _output(params, x_all, u)
    x_last = x_all[:, -1, :]
    return (y, x_last, LRUCache(u, x0, x_all, v)) if return_cache else (y, x_last)


def backward(params: dict, dy, cache: LRUCache, dstate=None, *, method: str = "sequential",
             chunk_size: int | None = None):
    """Gradients of a real loss through the LRU, equations (10.12)-(10.15).

    Args:
        dy: (B, L, D) dLoss/dy_k.  cache: from ``forward`` or ``forward_scan``.
        dstate: (B, N) complex extra gradient on x_L (if the final state feeds something else).
        method, chunk_size: how to run the reverse scan (10.13).
    Returns:
        grads: dict keyed like ``params`` (all real); du: (B, L, D); dx0: (B, N) complex.
    """
    u, x0, x_all, v = cache
    dims, src = {}, {}
    _check_params(params, dims, src)
    check_shape("cache.x_all", x_all, "B L N", dims, src)
    check_shape("dy", dy, "B L D", dims, src)
    xp = xp_of(dy, x_all)
    lam = lambda_of(params)
    gamma = xp.exp(params["gamma_log"])                      # (N,)
    C = params["C_re"] + 1j * params["C_im"]                 # (D, N)
    B_ = params["B_re"] + 1j * params["B_im"]                # (N, D)
    sum_bl = ((0, 1), (0, 1))                                # tensordot axes: sum over batch and time
    # (10.12) output layer
    dC = xp.tensordot(dy + 0j, xp.conj(x_all), axes=sum_bl)  # (D, N)
    dD = xp.sum(dy * u, axis=(0, 1))                         # (D,)
    dx_all = (dy + 0j) @ xp.conj(C)                          # (B, L, N)
    if dstate is not None:
        check_shape("dstate", dstate, "B N", dims, src)
        tail = xp.concat([xp.zeros_like(dx_all[:, :-1, :]), xp.expand_dims(dstate, axis=1)], axis=1)
        dx_all = dx_all + tail
    # (10.13) the recurrence, as a reverse scan
    dlam, dBu, dx0 = linear_scan_backward(lam, x_all, dx_all, x0, method=method,
                                          chunk_size=chunk_size)
    # (10.14) lambda = exp(w), w = -exp(nu_log) + i exp(theta_log): dw = conj(lambda) dlambda
    dw = xp.conj(lam) * dlam                                 # (N,)
    dnu_log = -xp.exp(params["nu_log"]) * xp.real(dw)
    dtheta_log = xp.exp(params["theta_log"]) * xp.imag(dw)
    # (10.15) input layer, Bu = gamma * v with v = B u
    dgamma_log = gamma * xp.sum(xp.real(dBu * xp.conj(v)), axis=(0, 1))   # (N,)
    dv = gamma * dBu                                         # (B, L, N)
    dB = xp.tensordot(dv, u + 0j, axes=sum_bl)               # (N, D)
    du = xp.real(dv @ xp.conj(B_)) + params["D"] * dy        # (B, L, D)
    grads = {"nu_log": dnu_log, "theta_log": dtheta_log, "gamma_log": dgamma_log,
             "B_re": xp.real(dB), "B_im": xp.imag(dB), "C_re": xp.real(dC), "C_im": xp.imag(dC),
             "D": dD}
    return grads, du, dx0
