"""minGRU and minLSTM: a GRU and an LSTM whose gates read only x_t, so that they train with a scan.

Equations, numbered as in chapter 11 (row vectors: x_t is (B, D), h_t is (B, H); g keeps h~ > 0):

minGRU
    (11.1) z_t = sigma(k_t),  k_t = x_t W_z + b_z                        update gate
    (11.2) h~_t = g(p_t),     p_t = x_t W_h + b_h                        candidate state, positive
    (11.3) h_t = (1 - z_t) h_{t-1} + z_t h~_t      = a_t h_{t-1} + b_t with a = 1 - z, b = z h~
    (11.4) g(p) = p + 1/2 for p >= 0, sigma(p) for p < 0;  log g(p) = log(p + 1/2) or -softplus(-p)
    (11.5) log(1 - z_t) = -softplus(k_t),  log z_t = -softplus(-k_t), so that
           log a_t = -softplus(k_t),  log b_t = -softplus(-k_t) + log g(p_t)
    (11.6) log h_t = a*_t + logcumsumexp_{s<=t}(log b_s - a*_s),  a*_t = sum_{s<=t} log a_s
           (plus the h_0 term; rnnkit.scan.log_space_scan, chapter 9)
minLSTM
    (11.7) f_t = sigma(x_t W_f + b_f),  i_t = sigma(x_t W_i + b_i),  h~_t = g(x_t W_h + b_h)
    (11.8) f'_t = f_t / (f_t + i_t),  i'_t = i_t / (f_t + i_t)           normalised, so f' + i' = 1
    (11.9) h_t = f'_t h_{t-1} + i'_t h~_t
    (11.10) with d_t = log i_t - log f_t = softplus(-k^f_t) - softplus(-k^i_t):
            log f'_t = -softplus(d_t),  log i'_t = -softplus(-d_t)
minGRU backward (dh_t = dLoss/dh_t through the outputs only; delta_t the total gradient on h_t):
    (11.11) the reverse scan delta_t = dh_t + a_{t+1} delta_{t+1},  delta_L = dh_L,  then
            da_t = delta_t h_{t-1},  db_t = delta_t,  dh_0 = a_1 delta_1
            (a_t = 1 - z_t, b_t = z_t h~_t; rnnkit.scan.linear_scan_backward, chapter 9)
    (11.12) dz_t = h~_t db_t - da_t,   dh~_t = z_t db_t
    (11.13) dk_t = dz_t z_t (1 - z_t),  dp_t = dh~_t g'(p_t),  g'(p) = 1 (p >= 0), g (1 - g) (p < 0)
    (11.14) dW_z = sum_t x_t^T dk_t,  db_z = sum_t dk_t,  dW_h = sum_t x_t^T dp_t,
            db_h = sum_t dp_t,  dx_t = dk_t W_z^T + dp_t W_h^T

References:
    L. Feng, F. Tung, M. O. Ahmed, Y. Bengio and H. Hajimirsadeghi, "Were RNNs All We Needed?",
    arXiv:2410.01201, 2024: sections 3.1-3.2 and Appendix B (log-space listings, g and log_g).
    Deliberate difference: the paper's parallel listing passes h_0 through log_g; here h_0 is a
    state like any h_t (so the sequential and log-space forms agree for any positive h_0), and the
    log-space form needs h_0 > 0 (zeros, the default, are handled exactly).
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import NamedTuple

import numpy as np

from .core.backend import xp_of, zeros
from .core.checks import check_floating, check_positive_int, check_shape
from .scan import linear_scan, linear_scan_backward, log_sigmoid, log_space_scan, sigmoid, softplus

__all__ = ["init", "step", "forward", "forward_scan", "backward", "zero_state", "example",
           "MinGRUCache", "g", "log_g", "minlstm_init", "minlstm_step", "minlstm_forward",
           "minlstm_forward_scan", "minlstm", "FORMS", "CELLS"]

# The equivalent forms of ``forward`` (rnnkit/PROTOCOL.md): the contract tests check they agree.
FORMS = ("forward_scan",)

GRU_KEYS = ("W_z", "b_z", "W_h", "b_h")
LSTM_KEYS = ("W_f", "b_f", "W_i", "b_i", "W_h", "b_h")


class MinGRUCache(NamedTuple):
    """What ``backward`` needs from the forward pass."""

    x: object        # (B, L, D) inputs
    h0: object       # (B, H) initial state, or None for zeros
    z: object        # (B, L, H) update gates (11.1)
    p: object        # (B, L, H) candidate pre-activations (11.2)
    h_tilde: object  # (B, L, H) candidates g(p)
    h_all: object    # (B, L, H) h_1 ... h_L


# --------------------------------------------------------------------------- shared pieces
def g(p):
    """The positive activation of the paper: p + 1/2 for p >= 0, sigma(p) for p < 0 (continuous)."""
    xp = xp_of(p)
    return xp.where(p >= 0, xp.maximum(p, xp.zeros_like(p)) + 0.5, sigmoid(p))


def log_g(p):
    """log g(p) without log of a negative number: log(max(p, 0) + 1/2) or -softplus(-p)."""
    xp = xp_of(p)
    return xp.where(p >= 0, xp.log(xp.maximum(p, xp.zeros_like(p)) + 0.5), log_sigmoid(p))


def _init(rng, D: int, H: int, keys, dtype) -> dict:
    """Uniform in [-1/sqrt(D), 1/sqrt(D)] like ``torch.nn.Linear`` (the paper's layers)."""
    check_positive_int("D", D)
    check_positive_int("H", H)
    bound = 1.0 / np.sqrt(D)
    shapes = {"W": (D, H), "b": (H,)}
    return {k: rng.uniform(-bound, bound, size=shapes[k[0]]).astype(dtype) for k in keys}


def _check(params: dict, keys, x, x_name: str, x_spec: str, h, h_name: str):
    dims, src = {}, {}
    for key in keys:
        if key not in params:
            raise ValueError(f"params: expected keys {', '.join(keys)}, missing {key!r}")
        check_shape(f"params['{key}']", params[key], "D H" if key[0] == "W" else "H", dims, src)
    check_shape(x_name, x, x_spec, dims, src)
    check_floating(x_name, x)
    if h is not None:
        check_shape(h_name, h, "B H", dims, src)
    return dims


def _zeros_state(xp, dims, like):
    return zeros(xp, (dims["B"], dims["H"]), like=like)


def zero_state(params: dict, x):
    """h_0 = 0: (B, H) zeros with the batch size, dtype and device of ``x`` (minGRU and minLSTM)."""
    return zeros(xp_of(x), (x.shape[0], params["W_h"].shape[1]), like=x)


def example(rng: np.random.Generator, *, dtype=np.float64):
    """A small minGRU for the contract tests (rnnkit/PROTOCOL.md): (params, x, options)."""
    return init(rng, 3, 4, dtype=dtype), rng.standard_normal((2, 5, 3)).astype(dtype), {}


def _log_h0(xp, h0):
    """log h_0 for the log-space forms: None stands for h_0 = 0."""
    if h0 is None:
        return None
    if not bool(xp.all(h0 > 0)):
        raise ValueError("state: the log-space form needs h0 > 0 (states of these models stay "
                         "positive); pass None for zeros or use another method")
    return xp.log(h0)


# --------------------------------------------------------------------------- minGRU
def init(rng: np.random.Generator, D: int, H: int, dtype=np.float64) -> dict:
    """minGRU parameters: W_z, W_h (D, H), b_z, b_h (H,)."""
    return _init(rng, D, H, GRU_KEYS, dtype)


def _gru_gates(params: dict, x):
    """(11.1)-(11.2) for any leading shape: returns z, 1 - z, p, h~, all (..., H)."""
    k = x @ params["W_z"] + params["b_z"]
    p = x @ params["W_h"] + params["b_h"]
    return sigmoid(k), sigmoid(-k), p, g(p)          # sigma(-k) is 1 - z without cancellation


def step(params: dict, x_t, state=None):
    """One minGRU step (11.1)-(11.3).  x_t: (B, D), state: (B, H) h_{t-1} (zeros if None).

    Returns (h_t, h_t): the output and the new state, (B, H).
    """
    _check(params, GRU_KEYS, x_t, "x_t", "B D", state, "state")
    if state is None:
        state = zero_state(params, x_t)
    z, one_minus_z, _, h_tilde = _gru_gates(params, x_t)
    h = one_minus_z * state + z * h_tilde
    return h, h


def forward(params: dict, x, state=None, return_cache: bool = False):
    """minGRU over a sequence, one step at a time (11.3) after computing all gates at once.

    Args:
        x: (B, L, D).  state: (B, H) initial state h_0, zeros if None.
        return_cache: also return the ``MinGRUCache`` that ``backward`` needs.
    Returns:
        h_all (B, L, H), h_last (B, H)[, cache]
    """
    h0 = state
    dims = _check(params, GRU_KEYS, x, "x", "B L D", h0, "state")
    xp = xp_of(x, params["W_z"])
    z, one_minus_z, p, h_tilde = _gru_gates(params, x)        # (B, L, H) each
    b = z * h_tilde                                           # (B, L, H)
    h = _zeros_state(xp, dims, b) if h0 is None else h0
    hs = []
    # Steps by unstack, not one_minus_z[:, t, :]: under torch autograd the backward of each slice
    # writes a whole (B, L, H) gradient, O(L^2) work over the loop (35 s instead of 0.15 s at
    # B = 64, L = 1024, H = 128); unstack's backward is one stack. NumPy and CuPy give views.
    for a_t, b_t in zip(xp.unstack(one_minus_z, axis=1), xp.unstack(b, axis=1)):
        h = a_t * h + b_t                                     # (B, H)  (11.3)
        hs.append(h)
    h_all = xp.stack(hs, axis=1)
    if return_cache:
        return h_all, h, MinGRUCache(x, h0, z, p, h_tilde, h_all)
    return h_all, h


def forward_scan(params: dict, x, state=None, return_cache: bool = False, *, method: str = "log",
                 chunk_size: int | None = None):
    """minGRU over a sequence with a parallel scan: the log-space form (11.5) by default.

    Args: as ``forward``, plus ``method`` ("log", or any ``rnnkit.scan.METHODS`` entry run on
    a = 1 - z, b = z h~ in linear space) and ``chunk_size``. Returns: as ``forward``.
    On a CPU, "chunked" is the faster choice: NumPy's logaddexp costs a few transcendental
    functions per element, and the linear-space scan never divides by products of a_t, so it
    cannot overflow either (only chapter 9's closed form with products of a_t can).
    """
    h0 = state
    _check(params, GRU_KEYS, x, "x", "B L D", h0, "state")
    xp = xp_of(x, params["W_z"])
    if method == "log":
        k = x @ params["W_z"] + params["b_z"]                 # (B, L, H)
        p = x @ params["W_h"] + params["b_h"]
        log_a, log_b = -softplus(k), -softplus(-k) + log_g(p)  # (11.5)
        h_all = xp.exp(log_space_scan(log_a, log_b, _log_h0(xp, h0)))
        if not return_cache:
            return h_all, h_all[:, -1, :]
        z, h_tilde = sigmoid(k), g(p)                         # only backward needs them
    else:
        z, one_minus_z, p, h_tilde = _gru_gates(params, x)
        h_all = linear_scan(one_minus_z, z * h_tilde, h0, method=method, chunk_size=chunk_size)
    if return_cache:
        return h_all, h_all[:, -1, :], MinGRUCache(x, h0, z, p, h_tilde, h_all)
    return h_all, h_all[:, -1, :]


def backward(params: dict, dh_all, cache: MinGRUCache, dstate=None, *, method: str = "sequential",
             chunk_size: int | None = None):
    """minGRU backward through the reverse scan, equations (11.11)-(11.14).

    Args:
        dh_all: (B, L, H) dLoss/dh_t from the outputs.  cache: from ``forward`` or ``forward_scan``.
        dstate: (B, H) extra gradient on the final state h_L.  method, chunk_size: the reverse
        scan's.
    Returns:
        grads: dict keyed like ``params``; dx: (B, L, D); dh0: (B, H).
    """
    x, h0, z, p, h_tilde, h_all = cache
    dims = _check(params, GRU_KEYS, x, "cache.x", "B L D", h0, "cache.h0")
    check_shape("dh_all", dh_all, "B L H", dims)
    xp = xp_of(dh_all, h_all)
    if dstate is not None:
        check_shape("dstate", dstate, "B H", dims)
        dh_all = xp.concat([dh_all[:, :-1, :], xp.expand_dims(dh_all[:, -1, :] + dstate, axis=1)],
                           axis=1)
    da, db, dh0 = linear_scan_backward(1 - z, h_all, dh_all, h0, method=method,
                                       chunk_size=chunk_size)               # (11.11)
    dz = h_tilde * db - da                                                   # (11.12)
    dh_tilde = z * db
    dk = dz * z * (1 - z)                                                    # (11.13)
    dp = dh_tilde * xp.where(p >= 0, xp.ones_like(p), h_tilde * (1 - h_tilde))
    sum_bl = ((0, 1), (0, 1))
    grads = {"W_z": xp.tensordot(x, dk, axes=sum_bl), "b_z": xp.sum(dk, axis=(0, 1)),   # (11.14)
             "W_h": xp.tensordot(x, dp, axes=sum_bl), "b_h": xp.sum(dp, axis=(0, 1))}
    dx = dk @ params["W_z"].T + dp @ params["W_h"].T
    return grads, dx, dh0


# --------------------------------------------------------------------------- minLSTM
def minlstm_init(rng: np.random.Generator, D: int, H: int, dtype=np.float64) -> dict:
    """minLSTM parameters: W_f, W_i, W_h (D, H), b_f, b_i, b_h (H,)."""
    return _init(rng, D, H, LSTM_KEYS, dtype)


def _lstm_log_gates(params: dict, x):
    """log f'_t, log i'_t (11.10) and log h~_t for any leading shape, each (..., H)."""
    k_f = x @ params["W_f"] + params["b_f"]
    k_i = x @ params["W_i"] + params["b_i"]
    d = softplus(-k_f) - softplus(-k_i)                       # log i - log f
    return -softplus(d), -softplus(-d), log_g(x @ params["W_h"] + params["b_h"])


def minlstm_step(params: dict, x_t, state=None):
    """One minLSTM step (11.7)-(11.9).  x_t: (B, D), state: (B, H) h_{t-1} (zeros if None).

    Returns (h_t, h_t): the output and the new state, (B, H).
    """
    _check(params, LSTM_KEYS, x_t, "x_t", "B D", state, "state")
    if state is None:
        state = zero_state(params, x_t)
    xp = xp_of(x_t, params["W_f"])
    log_f, log_i, log_h_tilde = _lstm_log_gates(params, x_t)
    h = xp.exp(log_f) * state + xp.exp(log_i + log_h_tilde)
    return h, h


def minlstm_forward(params: dict, x, state=None):
    """minLSTM over a sequence one step at a time.  x: (B, L, D), state: (B, H) h_0 or None.

    Returns h_all (B, L, H), h_last (B, H).
    """
    h0 = state
    dims = _check(params, LSTM_KEYS, x, "x", "B L D", h0, "state")
    xp = xp_of(x, params["W_f"])
    log_f, log_i, log_h_tilde = _lstm_log_gates(params, x)   # (B, L, H) each
    f_norm, b = xp.exp(log_f), xp.exp(log_i + log_h_tilde)
    h = _zeros_state(xp, dims, b) if h0 is None else h0
    hs = []
    for f_t, b_t in zip(xp.unstack(f_norm, axis=1), xp.unstack(b, axis=1)):   # see forward
        h = f_t * h + b_t                                    # (B, H)  (11.9)
        hs.append(h)
    return xp.stack(hs, axis=1), h


def minlstm_forward_scan(params: dict, x, state=None, *, method: str = "log",
                         chunk_size: int | None = None):
    """minLSTM with a parallel scan, log space (11.10) by default.  Returns h_all, h_last."""
    h0 = state
    _check(params, LSTM_KEYS, x, "x", "B L D", h0, "state")
    xp = xp_of(x, params["W_f"])
    log_f, log_i, log_h_tilde = _lstm_log_gates(params, x)
    if method == "log":
        h_all = xp.exp(log_space_scan(log_f, log_i + log_h_tilde, _log_h0(xp, h0)))
    else:
        h_all = linear_scan(xp.exp(log_f), xp.exp(log_i + log_h_tilde), h0, method=method,
                            chunk_size=chunk_size)
    return h_all, h_all[:, -1, :]


def _minlstm_example(rng: np.random.Generator, *, dtype=np.float64):
    """A small minLSTM for the contract tests: (params, x, options)."""
    return minlstm_init(rng, 3, 4, dtype=dtype), rng.standard_normal((2, 5, 3)).astype(dtype), {}


# minLSTM as a cell of its own (rnnkit/PROTOCOL.md names), for stack, charlm and the contract tests.
minlstm = SimpleNamespace(
    __name__="rnnkit.mingru.minlstm", STATE=("h",), FORMS=("forward_scan",),
    init=minlstm_init, step=minlstm_step, forward=minlstm_forward,
    forward_scan=minlstm_forward_scan, zero_state=zero_state, example=_minlstm_example)
CELLS = {"minlstm": minlstm}
