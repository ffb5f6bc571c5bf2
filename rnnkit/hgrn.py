"""HGRN's token mixer (HGRU): a gated linear recurrence whose forget gate has a learnt lower bound.

Equations, numbered as in chapter 11 (row vectors: x_t is (B, D), h_t is (B, H); real variant):

    (11.20) c_t = SiLU(x_t W_c + b_c),   SiLU(v) = v sigma(v)             input
    (11.21) mu_t = sigma(x_t W_f + b_f)                                  forget gate
    (11.22) lambda_t = gamma + (1 - gamma) mu_t                          lower bound gamma in [0, 1)
    (11.23) h_t = lambda_t h_{t-1} + (1 - lambda_t) c_t     a scan (chapter 9), input gate tied
           1 - lambda_t = (1 - gamma) sigma(-(x_t W_f + b_f))           (no cancellation near 1)
    (11.24) o_t = sigma(x_t W_g + b_g),   y_t = LayerNorm(o_t h_t) W_o + b_o       output gate
    (11.25) lower bounds of layers k = 1..K from one learnt Gamma (K, H), softmax over layers:
           gamma^k = [cumsum_k softmax(Gamma)]_k - [softmax(Gamma)]_1,   so 0 = gamma^1 <= ... < 1

Lower layers may forget quickly (gamma near 0); upper layers are forced to remember (gamma near 1).

References:
    Z. Qin, S. Yang and Y. Zhong, "Hierarchically Gated Recurrent Neural Network for Sequence
    Modeling", NeurIPS 2023, arXiv:2311.04823: section 3. Which variant: the paper's HGRU is complex,
    h_t = lambda_t exp(i theta) h_{t-1} + (1 - lambda_t) c_t with a learnt phase theta; this module
    is the real variant of the authors' released code (``Hgru1_real_1d`` in OpenNLPLab's
    hgru-pytorch), which flash-linear-attention's HGRN also uses: theta = 0 and a real c_t. Its
    output gate and normalisation follow that code: LayerNorm(h_t * sigma(x_t W_g + b_g)), then W_o.
"""
from __future__ import annotations

import numpy as np

from .core.backend import xp_of, zeros
from .core.checks import check_floating, check_params, check_positive_int, check_shape
from .scan import linear_scan, sigmoid

__all__ = ["init", "lower_bounds", "step", "forward", "forward_scan", "zero_state", "example",
           "LN_EPS", "FORMS"]

FORMS = ("forward_scan",)

LN_EPS = 1e-5   # torch.nn.LayerNorm's default
KEYS = (("W_c", "D H"), ("b_c", "H"), ("W_f", "D H"), ("b_f", "H"), ("W_g", "D H"), ("b_g", "H"),
        ("ln_w", "H"), ("ln_b", "H"), ("W_o", "H D"), ("b_o", "D"))


def init(rng: np.random.Generator, D: int, H: int, dtype=np.float64) -> dict:
    """HGRU parameters, uniform in [-1/sqrt(fan_in), 1/sqrt(fan_in)] like ``torch.nn.Linear``.

    Returns W_c, W_f, W_g (D, H), b_c, b_f, b_g (H,), ln_w = 1, ln_b = 0 (H,), W_o (H, D), b_o (D,).
    """
    check_positive_int("D", D)
    check_positive_int("H", H)
    params = {}
    for name in ("c", "f", "g"):
        params[f"W_{name}"] = rng.uniform(-1, 1, (D, H)) / np.sqrt(D)
        params[f"b_{name}"] = rng.uniform(-1, 1, H) / np.sqrt(D)
    params["ln_w"], params["ln_b"] = np.ones(H), np.zeros(H)
    params["W_o"] = rng.uniform(-1, 1, (H, D)) / np.sqrt(H)
    params["b_o"] = rng.uniform(-1, 1, D) / np.sqrt(H)
    return {k: v.astype(dtype) for k, v in params.items()}


def lower_bounds(Gamma):
    """Lower bounds gamma^k of every layer (11.25).  Gamma: (K, H) -> (K, H), row 0 all zeros."""
    check_shape("Gamma", Gamma, "K H")
    check_floating("Gamma", Gamma)
    xp = xp_of(Gamma)
    e = xp.exp(Gamma - xp.max(Gamma, axis=0, keepdims=True))   # stable softmax over layers
    P = e / xp.sum(e, axis=0, keepdims=True)                   # (K, H)
    return xp.cumulative_sum(P, axis=0) - P[:1, :]


def _check(params: dict, x, x_name: str, x_spec: str, h, h_name: str, lower_bound) -> dict:
    dims, src = {}, {}
    check_params(params, KEYS, dims, src)
    check_shape(x_name, x, x_spec, dims, src)
    check_floating(x_name, x)
    if h is not None:
        check_shape(h_name, h, "B H", dims, src)
    if hasattr(lower_bound, "shape"):
        check_shape("lower_bound", lower_bound, "H", dims, src)
        ok = bool(xp_of(lower_bound).all((lower_bound >= 0) & (lower_bound < 1)))
    else:
        ok = 0 <= lower_bound < 1
    if not ok:
        raise ValueError("lower_bound: expected values in [0, 1), got some outside")
    return dims


def _recurrence(params: dict, x, lower_bound):
    """lambda_t and (1 - lambda_t) c_t of (11.23) for any leading shape (..., H)."""
    p_c = x @ params["W_c"] + params["b_c"]
    c = p_c * sigmoid(p_c)                                    # (..., H)  (11.20)
    k_f = x @ params["W_f"] + params["b_f"]
    lam = lower_bound + (1 - lower_bound) * sigmoid(k_f)      # (..., H)  (11.21)-(11.22)
    return lam, (1 - lower_bound) * sigmoid(-k_f) * c


def _output(params: dict, x, h):
    """(11.24): y = LayerNorm(sigma(x W_g + b_g) * h) W_o + b_o, for any leading shape."""
    xp = xp_of(h)
    v = sigmoid(x @ params["W_g"] + params["b_g"]) * h        # (..., H)
    mean = xp.mean(v, axis=-1, keepdims=True)
    var = xp.mean((v - mean) ** 2, axis=-1, keepdims=True)
    v = (v - mean) / xp.sqrt(var + LN_EPS) * params["ln_w"] + params["ln_b"]
    return v @ params["W_o"] + params["b_o"]                  # (..., D)


def step(params: dict, x_t, state=None, *, lower_bound=0.0):
    """One step (11.20)-(11.24).

    Args:
        x_t: (B, D).  state: (B, H) h_{t-1}, zeros if None.  lower_bound: gamma of this layer, a number or (H,) in [0, 1).
    Returns:
        y_t (B, D), h_t (B, H).
    """
    _check(params, x_t, "x_t", "B D", state, "state", lower_bound)
    lam, b = _recurrence(params, x_t, lower_bound)
    if state is None:
        state = zeros(xp_of(b), b.shape, like=b)
    h_t = lam * state + b
    return _output(params, x_t, h_t), h_t


def forward(params: dict, x, state=None, *, lower_bound=0.0):
    """The HGRU over a sequence, one step at a time after computing all gates at once.

    Args:
        x: (B, L, D).  state: (B, H) initial state, zeros if None.  lower_bound: as in ``step``.
    Returns:
        y (B, L, D), h_last (B, H).
    """
    dims = _check(params, x, "x", "B L D", state, "state", lower_bound)
    xp = xp_of(x, params["W_c"])
    lam, b = _recurrence(params, x, lower_bound)               # (B, L, H) each
    if state is None:
        state = zeros(xp, (dims["B"], dims["H"]), like=b)
    h, hs = state, []
    # Steps by unstack, not lam[:, t, :]: under torch autograd each slice's backward writes a
    # whole (B, L, H) gradient, O(L^2) over the loop; unstack's backward is one stack.
    for lam_t, b_t in zip(xp.unstack(lam, axis=1), xp.unstack(b, axis=1)):
        h = lam_t * h + b_t                                    # (B, H)  (11.23)
        hs.append(h)
    return _output(params, x, xp.stack(hs, axis=1)), h


def forward_scan(params: dict, x, state=None, *, lower_bound=0.0, method: str = "chunked",
                 chunk_size: int | None = None):
    """The HGRU with a parallel scan of (11.23) (c_t has either sign, so not method="log").

    Returns y (B, L, D), h_last (B, H).
    """
    _check(params, x, "x", "B L D", state, "state", lower_bound)
    lam, b = _recurrence(params, x, lower_bound)
    h_all = linear_scan(lam, b, state, method=method, chunk_size=chunk_size)   # (B, L, H)
    return _output(params, x, h_all), h_all[:, -1, :]


def zero_state(params: dict, x):
    """h_0 = 0: (B, H) zeros with the batch size, dtype and device of ``x``."""
    return zeros(xp_of(x), (x.shape[0], params["W_c"].shape[1]), like=x)


def example(rng: np.random.Generator, *, dtype=np.float64):
    """A small HGRU layer for the contract tests (rnnkit/PROTOCOL.md): (params, x, options)."""
    return (init(rng, 3, 4, dtype=dtype), rng.standard_normal((2, 5, 3)).astype(dtype),
            {"lower_bound": 0.3})
