"""The structurally constrained recurrent network (SCRN): an Elman network plus slow context units.

Equations, numbered as in chapter 6 (row vectors: x_t is (B, D), h_t is (B, H), s_t is (B, N)):

    (6.1)  s_t = (1 - alpha) x_t W_xs + alpha s_{t-1}               slow context state, no squashing
    (6.2)  h_t = sigmoid(s_t W_sh + x_t W_xh + h_{t-1} W_hh + b_h)   fast hidden state
    (6.3)  y_t = [h_t | s_t]                                         what the readout sees, (B, H + N)

The context recurrence (6.1) is linear with the fixed diagonal weight alpha (0.95 in the paper), so
its closed form is a discounted sum of the projected inputs u_k = (1 - alpha) x_k W_xs:

    (6.4)  s_t = alpha^t s_0 + sum_{k=1}^{t} alpha^(t-k) u_k

``context_parallel`` evaluates (6.4) for all t at once as a product with the (L, L) lower-triangular
decay matrix M[t, k] = alpha^(t-k) (k <= t): the same numbers as the loop without a Python loop.

Seen as one recurrent network with state [h_t | s_t], substituting (6.1) into (6.2) gives
[a_t | s_t] = [h_{t-1} | s_{t-1}] M + (input terms), a_t the pre-activation of h_t, with the block
matrix (``recurrent_matrix``; rows: from h, from s; columns: to a, to s)

    M = [[W_hh,        0     ],
         [alpha W_sh,  alpha I]]

(W_sh acts on s_t = alpha s_{t-1} + ..., hence its factor alpha). The lower-right block is pinned
near the identity: Mikolov et al.'s "structural constraint". The per-step Jacobian
d[h_t | s_t] / d[h_{t-1} | s_{t-1}] = diag(h_t (1 - h_t) | 1) M^T is block-triangular, so N of its
eigenvalues are exactly alpha; its singular values are not (the block alpha diag(h (1 - h)) W_sh^T
couples the two parts).

Letters: B batch, L length, D input size, H hidden size, N number of context units.

References:
    T. Mikolov, A. Joulin, S. Chopra, M. Mathieu and M. Ranzato, "Learning Longer Memory in
    Recurrent Neural Networks", ICLR workshop 2015 (arXiv:1412.7753), section 3 and figure 2:
    s_t = (1 - alpha) B x_t + alpha s_{t-1},  h_t = sigma(P s_t + A x_t + R h_{t-1}),
    y_t = f(U h_t + V s_t). In our row-vector names B = W_xs^T, P = W_sh^T, A = W_xh^T, R = W_hh^T.
    Deliberate differences: we add a bias b_h (the paper's equations have none), and the output
    layer f(U h_t + V s_t) is left to the caller, who applies any readout to y_t = [h_t | s_t].
"""
from __future__ import annotations

import numpy as np

from .core.backend import device_of, eye, xp_of, zeros
from .core.checks import check_floating, check_params, check_positive_int, check_shape
from .lstm import sigmoid

__all__ = ["init", "step", "forward", "context_parallel", "recurrent_matrix", "zero_state", "example",
           "STATE", "FORMS"]

FORMS = ()

STATE = ("h", "s")  # fast hidden state, slow context state


def _check_alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha: expected a number in [0, 1], got {alpha!r}")
    return float(alpha)


def init(rng: np.random.Generator, D: int, H: int, N: int, dtype=np.float64) -> dict:
    """Random SCRN parameters, uniform in [-1/sqrt(H), 1/sqrt(H)] like ``elman.init``.

    Args:
        rng: NumPy random generator.  D: input size.  H: hidden size.  N: number of context units.
    Returns:
        dict with W_xs (D, N), W_sh (N, H), W_xh (D, H), W_hh (H, H), b_h (H,), NumPy arrays of ``dtype``.
    """
    for name, v in (("D", D), ("H", H), ("N", N)):
        check_positive_int(name, v)
    bound = 1.0 / np.sqrt(H)
    shapes = {"W_xs": (D, N), "W_sh": (N, H), "W_xh": (D, H), "W_hh": (H, H), "b_h": (H,)}
    return {k: rng.uniform(-bound, bound, size=s).astype(dtype) for k, s in shapes.items()}


def _check_params(params: dict, dims: dict, src: dict) -> None:
    check_params(params, (("W_xs", "D N"), ("W_sh", "N H"), ("W_xh", "D H"), ("W_hh", "H H"),
                          ("b_h", "H")), dims, src)


def _check_state(name: str, state, dims: dict, src: dict):
    if not isinstance(state, (tuple, list)) or len(state) != 2:
        raise ValueError(f"{name}: expected a pair (h, s) of (B, H) and (B, N) arrays, "
                         f"got {type(state).__name__}")
    check_shape(f"{name}[0]", state[0], "B H", dims, src)
    check_shape(f"{name}[1]", state[1], "B N", dims, src)
    return state[0], state[1]


def _zeros(xp, shape, like):
    return zeros(xp, shape, like=like)


def step(params: dict, x_t, state=None, *, alpha: float = 0.95):
    """One time step, equations (6.1)-(6.3).

    Args:
        params: W_xs (D, N), W_sh (N, H), W_xh (D, H), W_hh (H, H), b_h (H,).
        x_t: (B, D) input.  state: the pair (h_{t-1} (B, H), s_{t-1} (B, N)); zeros if None.
        alpha: the context units' fixed self-weight, in [0, 1].
    Returns:
        y_t = [h_t | s_t] (B, H + N), the new state (h_t, s_t).
    """
    alpha = _check_alpha(alpha)
    dims, src = {}, {}
    _check_params(params, dims, src)
    check_shape("x_t", x_t, "B D", dims, src)
    check_floating("x_t", x_t)
    if state is None:
        state = zero_state(params, x_t)
    h_prev, s_prev = _check_state("state", state, dims, src)
    xp = xp_of(x_t, h_prev, params["W_hh"])
    s = (1.0 - alpha) * (x_t @ params["W_xs"]) + alpha * s_prev                        # (6.1)
    h = sigmoid(xp, s @ params["W_sh"] + x_t @ params["W_xh"] + h_prev @ params["W_hh"]
                + params["b_h"])                                                     # (6.2)
    return xp.concat([h, s], axis=-1), (h, s)                                        # (6.3)


def forward(params: dict, x, state=None, *, alpha: float = 0.95):
    """Run the SCRN over a sequence; the input projections are hoisted out of the loop.

    Args:
        params: as from ``init``.  x: (B, L, D).  state: (h0 (B, H), s0 (B, N)), zeros if None.
        alpha: the context units' fixed self-weight, in [0, 1].
    Returns:
        y_all (B, L, H + N) with y_t = [h_t | s_t], the final state (h_L, s_L).
    """
    alpha = _check_alpha(alpha)
    dims, src = {}, {}
    _check_params(params, dims, src)
    check_shape("x", x, "B L D", dims, src)
    check_floating("x", x)
    xp = xp_of(x, params["W_hh"])
    B, L, H, N = dims["B"], dims["L"], dims["H"], dims["N"]
    if state is None:
        h, s = _zeros(xp, (B, H), x), _zeros(xp, (B, N), x)
    else:
        h, s = _check_state("state", state, dims, src)
    u = (1.0 - alpha) * (x @ params["W_xs"])              # (B, L, N)  input part of (6.1)
    xw = x @ params["W_xh"] + params["b_h"]               # (B, L, H)  input part of (6.2)
    ys = []
    for t in range(L):
        s = u[:, t] + alpha * s                                            # (6.1)  (B, N)
        h = sigmoid(xp, xw[:, t] + s @ params["W_sh"] + h @ params["W_hh"])  # (6.2)  (B, H)
        ys.append(xp.concat([h, s], axis=-1))                              # (6.3)
    return xp.stack(ys, axis=1), (h, s)


def context_parallel(params: dict, x, s0=None, *, alpha: float = 0.95):
    """All context states s_1 ... s_L at once from the closed form (6.4), without a time loop.

    Args:
        params: needs W_xs (D, N).  x: (B, L, D).  s0: (B, N), zeros if None.
        alpha: the context self-weight, in [0, 1].
    Returns:
        s_all (B, L, N), equal to the s-part of ``forward``'s y_all.
    """
    alpha = _check_alpha(alpha)
    dims, src = {}, {}
    check_params(params, (("W_xs", "D N"),), dims, src)
    check_shape("x", x, "B L D", dims, src)
    check_floating("x", x)
    xp = xp_of(x, params["W_xs"])
    L = dims["L"]
    dev = device_of(x)
    t = xp.arange(L, dtype=x.dtype, device=dev)
    lag = xp.reshape(t, (L, 1)) - xp.reshape(t, (1, L))          # (L, L)  t - k
    causal = lag >= 0
    # M[t, k] = alpha^(t-k) for k <= t, else 0; the exponent is clamped so no inf appears above it.
    M = xp.where(causal, alpha ** xp.where(causal, lag, xp.zeros_like(lag)), xp.zeros_like(lag))
    u = (1.0 - alpha) * (x @ params["W_xs"])                      # (B, L, N)
    s_all = M @ u                                                 # (B, L, N)  (6.4), sum over k
    if s0 is not None:
        check_shape("s0", s0, "B N", dims, src)
        powers = alpha ** (t + 1.0)                               # (L,)  alpha^t for t = 1..L
        s_all = s_all + xp.reshape(powers, (1, L, 1)) * xp.reshape(s0, (dims["B"], 1, dims["N"]))
    return s_all


def recurrent_matrix(params: dict, *, alpha: float = 0.95):
    """The SCRN as one recurrent network: M (H + N, H + N) with [a_t | s_t] = [h_{t-1} | s_{t-1}] M
    plus input terms, M = [[W_hh, 0], [alpha W_sh, alpha I]] (see the module docstring)."""
    alpha = _check_alpha(alpha)
    dims, src = {}, {}
    _check_params(params, dims, src)
    xp = xp_of(params["W_hh"])
    H, N = dims["H"], dims["N"]
    top = xp.concat([params["W_hh"], _zeros(xp, (H, N), params["W_hh"])], axis=-1)       # from h
    bottom = xp.concat([alpha * params["W_sh"], alpha * eye(xp, N, like=params["W_sh"])],
                       axis=-1)                                                           # from s
    return xp.concat([top, bottom], axis=0)                                               # (H+N, H+N)


def zero_state(params: dict, x):
    """(h_0, s_0) = (0, 0): (B, H) and (B, N) zeros with the batch size, dtype and device of ``x``."""
    xp, B = xp_of(x), x.shape[0]
    return zeros(xp, (B, params["W_hh"].shape[0]), like=x), zeros(xp, (B, params["W_xs"].shape[1]), like=x)


def example(rng: np.random.Generator, *, dtype=np.float64):
    """A small SCRN for the contract tests (rnnkit/PROTOCOL.md): (params, x, options)."""
    return (init(rng, 3, 4, 2, dtype=dtype), rng.standard_normal((2, 5, 3)).astype(dtype),
            {"alpha": 0.9})
