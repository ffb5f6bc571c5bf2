"""The Real-Gated Linear Recurrent Unit (RG-LRU) of Griffin and Hawk.

Equations, numbered as in chapter 11 (row vectors: x_t and h_t are (B, D); c = 8 is a constant):

    (11.15) r_t = sigma(x_t W_a + b_a)                    recurrence gate
    (11.16) i_t = sigma(x_t W_x + b_x)                    input gate
    (11.17) a_t = a^(c r_t),  a = sigma(Lambda):   log a_t = -c softplus(-Lambda) r_t   (log space)
    (11.18) h_t = a_t h_{t-1} + sqrt(1 - a_t^2) (i_t x_t)          a scan (chapter 9)
           sqrt(1 - a_t^2) = sqrt(-expm1(2 log a_t)), accurate when a_t is close to 1

The gate r_t only ever shrinks the decay towards a^c <= a_t <= 1: with r_t = 0 the state is copied,
with r_t = 1 it decays at the learnt rate. sqrt(1 - a_t^2) keeps the state's variance near that of
i_t x_t, like gamma in the LRU (chapter 10):
    (11.19) for u_t = i_t x_t of variance s^2, uncorrelated with the past:
            E h_t^2 = a_t^2 E h_{t-1}^2 + (1 - a_t^2) s^2,   a convex combination, so
            E h_t^2 <= max(E h_0^2, s^2); without the factor, E h_t^2 -> s^2 / (1 - a^2) for a
            constant a (500 s^2 at a = 0.999).

References:
    S. De, S. L. Smith, A. Fernando et al., "Griffin: Mixing Gated Linear Recurrences with Local
    Attention for Efficient Language Models", arXiv:2402.19427, 2024: section 2.4, equations (1)-(4).
    Official code: google-deepmind/recurrentgemma (``RGLRU``, ``rnn_param_init``). Deliberate
    differences: W_a, W_x are dense here (block-diagonal per head there); no document-boundary
    resets; no gradient clipping of the square root near a_t = 1 (the code's SqrtBoundDerivative).
    Initialisation follows the code: a = sigma(Lambda) with a^2 uniform in [min_rad^2, max_rad^2]
    (the paper's text states the range for a^c).
"""
from __future__ import annotations

import numpy as np

from .core.backend import xp_of, zeros
from .core.checks import check_floating, check_params, check_positive_int, check_shape
from .scan import linear_scan, sigmoid, softplus

__all__ = ["init", "step", "forward", "forward_scan", "zero_state", "example", "C_DEFAULT", "FORMS"]

FORMS = ("forward_scan",)

C_DEFAULT = 8.0
KEYS = (("W_a", "D D"), ("b_a", "D"), ("W_x", "D D"), ("b_x", "D"), ("Lambda", "D"))


def init(rng: np.random.Generator, D: int, *, min_rad: float = 0.9, max_rad: float = 0.999,
         dtype=np.float64) -> dict:
    """RG-LRU parameters: W_a, W_x (D, D) ~ N(0, 1/D), b_a, b_x (D,) zeros, Lambda (D,).

    Lambda = logit(a) with a^2 ~ U[min_rad^2, max_rad^2] (recurrentgemma's ``rnn_param_init``).
    """
    check_positive_int("D", D)
    if not 0.0 < min_rad < max_rad < 1.0:
        raise ValueError(f"min_rad, max_rad: expected 0 < min_rad < max_rad < 1, "
                         f"got {min_rad}, {max_rad}")
    log_a = 0.5 * np.log(rng.uniform(min_rad**2, max_rad**2, size=D))    # log a, a in the ring
    params = {
        "W_a": rng.standard_normal((D, D)) / np.sqrt(D), "b_a": np.zeros(D),
        "W_x": rng.standard_normal((D, D)) / np.sqrt(D), "b_x": np.zeros(D),
        "Lambda": log_a - np.log(-np.expm1(log_a)),          # logit(a) = log a - log(1 - a)
    }
    return {k: v.astype(dtype) for k, v in params.items()}


def _check(params: dict, x, x_name: str, x_spec: str, h, h_name: str) -> dict:
    dims, src = {}, {}
    check_params(params, KEYS, dims, src)
    check_shape(x_name, x, x_spec, dims, src)
    check_floating(x_name, x)
    if h is not None:
        check_shape(h_name, h, "B D", dims, src)
    return dims


def _coefficients(params: dict, x, c: float):
    """a_t and b_t = sqrt(1 - a_t^2) i_t x_t of (11.18) for any leading shape (..., D)."""
    if not c > 0:
        raise ValueError(f"c: expected a positive number, got {c}")
    xp = xp_of(x, params["Lambda"])
    r = sigmoid(x @ params["W_a"] + params["b_a"])           # (..., D)  (11.15)
    i = sigmoid(x @ params["W_x"] + params["b_x"])           # (..., D)  (11.16)
    log_a = -c * softplus(-params["Lambda"]) * r             # (..., D)  (11.17)
    return xp.exp(log_a), xp.sqrt(-xp.expm1(2.0 * log_a)) * (i * x)


def step(params: dict, x_t, state=None, *, c: float = C_DEFAULT):
    """One step (11.15)-(11.18).  x_t: (B, D), state: (B, D) h_{t-1} (zeros if None).

    Returns (h_t, h_t): the output and the new state, (B, D).
    """
    _check(params, x_t, "x_t", "B D", state, "state")
    a, b = _coefficients(params, x_t, c)
    h = b if state is None else a * state + b
    return h, h


def forward(params: dict, x, state=None, *, c: float = C_DEFAULT):
    """The RG-LRU over a sequence, one step at a time after computing all gates at once.

    Args:
        x: (B, L, D).  state: (B, D) initial state, zeros if None.  c: the constant of (11.17).
    Returns:
        h_all (B, L, D), h_last (B, D).
    """
    dims = _check(params, x, "x", "B L D", state, "state")
    xp = xp_of(x, params["Lambda"])
    a, b = _coefficients(params, x, c)                       # (B, L, D) each
    if state is None:
        state = zeros(xp, (dims["B"], dims["D"]), like=b)
    h, hs = state, []
    # Steps by unstack, not a[:, t, :]: under torch autograd each slice's backward writes a
    # whole (B, L, D) gradient, O(L^2) over the loop; unstack's backward is one stack.
    for a_t, b_t in zip(xp.unstack(a, axis=1), xp.unstack(b, axis=1)):
        h = a_t * h + b_t                                    # (B, D)  (11.18)
        hs.append(h)
    return xp.stack(hs, axis=1), h


def forward_scan(params: dict, x, state=None, *, c: float = C_DEFAULT, method: str = "chunked",
                 chunk_size: int | None = None):
    """The RG-LRU with a parallel scan of (11.18) (b_t has either sign, so not method="log").

    Returns h_all (B, L, D), h_last (B, D).
    """
    _check(params, x, "x", "B L D", state, "state")
    a, b = _coefficients(params, x, c)
    h_all = linear_scan(a, b, state, method=method, chunk_size=chunk_size)
    return h_all, h_all[:, -1, :]


def zero_state(params: dict, x):
    """h_0 = 0: (B, D) zeros with the batch size, dtype and device of ``x``."""
    return zeros(xp_of(x), (x.shape[0], params["Lambda"].shape[0]), like=x)


def example(rng: np.random.Generator, *, dtype=np.float64):
    """A small RG-LRU for the contract tests (rnnkit/PROTOCOL.md): (params, x, options)."""
    return init(rng, 4, dtype=dtype), rng.standard_normal((2, 5, 4)).astype(dtype), {}
