"""xLSTM: the sLSTM cell (exponential gating, stabiliser, normaliser) and the mLSTM (matrix memory).

Equations, numbered as in chapter 17 (row vectors; i~, f~ are the gate pre-activations):

  sLSTM, per hidden unit, with a recurrent connection h_{t-1} R:
    (17.11) [z~, i~, f~, o~] = x_t W + h_{t-1} R + b
            z_t = tanh(z~),  o_t = sigma(o~),  i_t = exp(i~),  f_t = sigma(f~) or exp(f~)
    (17.12) c_t = f_t c_{t-1} + i_t z_t,   n_t = f_t n_{t-1} + i_t,   h_t = o_t c_t / n_t
    (17.13) stabiliser: m_t = max(log f_t + m_{t-1}, i~_t),
            i'_t = exp(i~_t - m_t),  f'_t = exp(log f_t + m_{t-1} - m_t)
            c and n are kept divided by exp(m_t): the same h_t, and no exp of a large number.

  mLSTM, per head, C (dk, dv), n (dk):
    (17.14) C_t = f_t C_{t-1} + i_t k_t^T v_t,   n_t = f_t n_{t-1} + i_t k_t
            h~_t = q_t C_t / max(|q_t n_t^T|, 1)
    (17.15) stabilised as (17.13): C'_t = C_t e^{-m_t}, n'_t = n_t e^{-m_t},
            h~_t = q_t C'_t / max(|q_t n'_t^T|, e^{-m_t})
    (17.16) parallel: log D_ts = sum_{j=s+1..t} log f_j + i~_s (s <= t),
            m_t = max(max_s log D_ts, sum_{j<=t} log f_j),  Ct_ts = (q_t k_s^T) exp(log D_ts - m_t),
            h~_t = (sum_s Ct_ts v_s) / max(|sum_s Ct_ts|, e^{-m_t})
    (17.17) chunkwise: (17.16) inside a chunk plus the carried state (C', n', m) decayed to each
            position; the carried m enters the max as the j <= t term does in (17.16).

  The m_0 = 0 convention (the zero state is C' = 0, n' = 0, m = 0) is used by every form, so the
  three forms return the same state, not only the same outputs.

  The mLSTM block (pre-up-projection, Beck et al. Figure 10, small): LayerNorm, up-projection to
  2D, heads q, k (scaled by 1/sqrt(dk)), v, gates, mLSTM, per-head LayerNorm, a learnt skip,
  output gate swish(z), down-projection, residual. Deliberate difference: no causal convolution
  before q and k (so the block's state is the mLSTM state alone); dense projections.

References:
    M. Beck, K. Poeppel, M. Spanring, A. Auer, O. Prudnikova, M. Kopp, G. Klambauer, J.
    Brandstetter, S. Hochreiter, "xLSTM: Extended Long Short-Term Memory", NeurIPS 2024,
    section 2.2-2.3 and Appendix A (stabilisation, parallel form). Official code: NX-AI/xlstm
    (``mlstm/backends.py`` parallel_stabilized_simple, chunkwise_simple). Deliberate
    differences: sLSTM's R is dense here (block-diagonal per head there); the forget gate is
    sigmoid by default (``forget="exp"`` gives the exponential one).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import array_api_compat
import numpy as np

from .core.backend import xp_of
from .core.checks import check_floating, check_params, check_positive_int, check_shape

__all__ = ["SState", "MState", "slstm_init", "slstm_step", "slstm_forward", "mlstm",
           "init", "step", "forward", "forward_parallel", "forward_chunkwise", "zero_state",
           "example", "FORMS", "MLSTM_FORMS"]

FORMS = ("forward_parallel", "forward_chunkwise")
MLSTM_FORMS = ("recurrent", "parallel", "chunkwise")


class SState(NamedTuple):
    """sLSTM state, each (B, H): cell c, normaliser n, stabiliser m, hidden h (all divided by e^m
    except h)."""

    c: object
    n: object
    m: object
    h: object


class MState(NamedTuple):
    """mLSTM state per head: C' (B, NH, dk, dv), n' (B, NH, dk), m (B, NH)."""

    C: object
    n: object
    m: object


def _zeros(xp, shape, like):
    return xp.zeros(shape, dtype=like.dtype, device=array_api_compat.device(like))


def _log_forget(xp, f_pre, forget):
    if forget == "sigmoid":
        return -_softplus(xp, -f_pre)                      # log sigma(f~), stable
    if forget == "exp":
        return f_pre
    raise ValueError(f"forget: expected 'sigmoid' or 'exp', got {forget!r}")


def _softplus(xp, x):
    return xp.maximum(x, xp.zeros_like(x)) + xp.log1p(xp.exp(-xp.abs(x)))


# --------------------------------------------------------------------------- sLSTM
def slstm_init(rng: np.random.Generator, D: int, H: int, *, dtype=np.float64) -> dict:
    """sLSTM parameters: W (D, 4H), R (H, 4H) ~ N(0, 1/fan_in), b (4H,) in the order z, i, f, o,
    with the forget bias in [3, 6] (linspace, as the official code) so that f starts near 1."""
    check_positive_int("D", D)
    check_positive_int("H", H)
    b = np.zeros(4 * H)
    b[2 * H:3 * H] = np.linspace(3.0, 6.0, H)
    p = {"W": rng.standard_normal((D, 4 * H)) / np.sqrt(D),
         "R": rng.standard_normal((H, 4 * H)) / np.sqrt(H), "b": b}
    return {k: v.astype(dtype) for k, v in p.items()}


def _slstm_check(params, x, spec):
    dims = check_params(params, (("W", "D G"), ("R", "H G"), ("b", "G")))
    if dims["G"] != 4 * dims["H"]:
        raise ValueError(f"params['W']: expected shape (D, 4H) = (D, {4 * dims['H']}), got "
                         f"{tuple(params['W'].shape)}")
    check_shape("x", x, spec, dims)
    check_floating("x", x)
    return dims


def _slstm_state(params, x, state, dims):
    """The zero state, or the given one with every part checked to be (B, H)."""
    if state is None:
        return _slstm_zero(params, x)
    for name, part in zip(SState._fields, state):
        check_shape(f"state.{name}", part, "B H", dims)
    return state


def _slstm_zero(params, x):
    xp = xp_of(x)
    z = _zeros(xp, (x.shape[0], params["R"].shape[0]), x)
    return SState(z, z, z, z)


def _slstm_cell(params, x_t, state, forget, stabilize):
    xp = xp_of(x_t, params["W"])
    H = params["R"].shape[0]
    pre = x_t @ params["W"] + state.h @ params["R"] + params["b"]             # (17.11)
    z, i_pre, f_pre, o = (pre[:, j * H:(j + 1) * H] for j in range(4))
    z, o, log_f = xp.tanh(z), 1.0 / (1.0 + xp.exp(-o)), _log_forget(xp, f_pre, forget)
    if stabilize:                                                              # (17.13)
        m = xp.maximum(log_f + state.m, i_pre)
        i_g, f_g = xp.exp(i_pre - m), xp.exp(log_f + state.m - m)
    else:                                                                      # (17.12) as written
        m = state.m
        i_g, f_g = xp.exp(i_pre), xp.exp(log_f)
    c = f_g * state.c + i_g * z
    n = f_g * state.n + i_g
    h = o * c / n
    return h, SState(c, n, m, h)


def slstm_step(params: dict, x_t, state=None, *, forget: str = "sigmoid", stabilize: bool = True):
    """One sLSTM step: x_t (B, D) -> h_t (B, H), SState. ``stabilize=False`` runs (17.12) with
    raw exponentials (it overflows for large i~: chapter 17's demonstration)."""
    dims = _slstm_check(params, x_t, "B D")
    state = _slstm_state(params, x_t, state, dims)
    return _slstm_cell(params, x_t, state, forget, stabilize)


def slstm_forward(params: dict, x, state=None, *, forget: str = "sigmoid", stabilize: bool = True):
    """The step loop over x (B, L, D): returns h (B, L, H) and the last SState."""
    dims = _slstm_check(params, x, "B L D")
    if dims["L"] == 0:
        raise ValueError(f"x: expected at least one time step (L >= 1), got shape {tuple(x.shape)}")
    xp = xp_of(x)
    state = _slstm_state(params, x, state, dims)
    hs = []
    for t in range(x.shape[1]):
        h, state = _slstm_cell(params, x[:, t], state, forget, stabilize)
        hs.append(h)
    return xp.stack(hs, axis=1), state


# --------------------------------------------------------------------------- mLSTM operator
def _mlstm_recurrent(q, k, v, i_pre, log_f, st, stabilize):
    xp = xp_of(q, k, v)
    C, n, m = st
    outs = []
    for t in range(q.shape[2]):
        if stabilize:                                                           # (17.15)
            m_new = xp.maximum(log_f[:, :, t] + m, i_pre[:, :, t])
            f_g, i_g = xp.exp(log_f[:, :, t] + m - m_new), xp.exp(i_pre[:, :, t] - m_new)
            floor = xp.exp(-m_new)
            m = m_new
        else:                                                                   # (17.14)
            f_g, i_g = xp.exp(log_f[:, :, t]), xp.exp(i_pre[:, :, t])
            floor = xp.ones_like(f_g)
        k_t = k[:, :, t]
        C = f_g[..., None, None] * C + i_g[..., None, None] * (k_t[..., :, None] * v[:, :, t, None, :])
        n = f_g[..., None] * n + i_g[..., None] * k_t
        num = xp.einsum("bhk,bhkv->bhv", q[:, :, t], C)
        den = xp.maximum(xp.abs(xp.sum(q[:, :, t] * n, axis=-1)), floor)
        outs.append(num / den[..., None])
    return xp.stack(outs, axis=2), MState(C, n, m)


def _mlstm_chunk(Q, K, V, I, LF, st):
    """(17.16)-(17.17) for one chunk of c steps with carried state st = (C', n', m)."""
    xp = xp_of(Q, K, V)
    C, n, m = st
    c = Q.shape[2]
    b = xp.cumsum(LF, axis=-1)                                                  # (B, NH, c)
    tri = xp.tril(xp.ones((c, c), dtype=Q.dtype, device=array_api_compat.device(Q)))
    logD = b[..., :, None] - b[..., None, :] + I[..., None, :]                  # (B, NH, c, c)
    logD = xp.where(tri > 0, logD, xp.full_like(logD, -float("inf")))
    carried = b + m[..., None]                                                  # decayed old m
    m_t = xp.maximum(xp.max(logD, axis=-1), carried)                            # (B, NH, c)
    Dm = xp.exp(logD - m_t[..., None])
    Ct = (Q @ xp.matrix_transpose(K)) * Dm                                      # (B, NH, c, c)
    w_old = xp.exp(carried - m_t)[..., None]                                    # (B, NH, c, 1)
    num = Ct @ V + w_old * (Q @ C)
    den = xp.sum(Ct, axis=-1) + w_old[..., 0] * xp.sum(Q * n[:, :, None, :], axis=-1)
    h = num / xp.maximum(xp.abs(den), xp.exp(-m_t))[..., None]
    # carried state at the chunk's end
    m_end = m_t[..., -1]
    w_s = xp.exp(b[..., -1:] - b + I - m_end[..., None])                        # (B, NH, c)
    w_c = xp.exp(b[..., -1] + m - m_end)
    C = w_c[..., None, None] * C + xp.matrix_transpose(K * w_s[..., None]) @ V
    n = w_c[..., None] * n + xp.sum(K * w_s[..., None], axis=2)
    return h, MState(C, n, m_end)


def mlstm(q, k, v, i_pre, f_pre, *, form: str = "recurrent", chunk_size: int = 16, state=None,
          forget: str = "sigmoid", stabilize: bool = True):
    """The mLSTM operator (17.14)-(17.17), multi-head.

    Args:
        q, k: (B, NH, L, dk) (scale k by 1/sqrt(dk) outside, as the block does).
        v: (B, NH, L, dv).  i_pre, f_pre: (B, NH, L) gate pre-activations i~, f~.
        form: "recurrent", "parallel" (one chunk of length L) or "chunkwise" (any chunk_size).
        state: MState or None (zeros, m = 0).  stabilize: False runs (17.14) with raw
            exponentials (recurrent form only; it overflows for large i~).
    Returns:
        h~ (B, NH, L, dv), MState after the last step.
    """
    dims = {}
    check_shape("q", q, "B NH L dk", dims)
    check_shape("k", k, "B NH L dk", dims)
    check_shape("v", v, "B NH L dv", dims)
    check_shape("i_pre", i_pre, "B NH L", dims)
    check_shape("f_pre", f_pre, "B NH L", dims)
    for name, a in (("q", q), ("k", k), ("v", v), ("i_pre", i_pre), ("f_pre", f_pre)):
        check_floating(name, a)
    if dims["L"] == 0:
        raise ValueError(f"q: expected at least one time step (L >= 1), got shape {tuple(q.shape)}")
    if form not in MLSTM_FORMS:
        raise ValueError(f"form: expected one of {MLSTM_FORMS}, got {form!r}")
    check_positive_int("chunk_size", chunk_size)
    if not stabilize and form != "recurrent":
        raise ValueError("stabilize: the unstabilised mLSTM exists only in form='recurrent'")
    xp = xp_of(q, k, v)
    if state is None:
        state = MState(_zeros(xp, (dims["B"], dims["NH"], dims["dk"], dims["dv"]), q),
                       _zeros(xp, (dims["B"], dims["NH"], dims["dk"]), q),
                       _zeros(xp, (dims["B"], dims["NH"]), q))
    else:
        check_shape("state.C", state.C, "B NH dk dv", dims)
        check_shape("state.n", state.n, "B NH dk", dims)
        check_shape("state.m", state.m, "B NH", dims)
    log_f = _log_forget(xp, f_pre, forget)
    if form == "recurrent":
        return _mlstm_recurrent(q, k, v, i_pre, log_f, state, stabilize)
    size = dims["L"] if form == "parallel" else chunk_size
    outs = []
    for s in range(0, dims["L"], size):
        e = min(s + size, dims["L"])
        h, state = _mlstm_chunk(q[:, :, s:e], k[:, :, s:e], v[:, :, s:e], i_pre[:, :, s:e],
                                log_f[:, :, s:e], state)
        outs.append(h)
    return xp.concat(outs, axis=2), state


# --------------------------------------------------------------------------- mLSTM block (a cell)
def init(rng: np.random.Generator, D: int, *, n_heads: int = 2, dtype=np.float64) -> dict:
    """mLSTM block parameters for model width D (inner width 2D, n_heads heads of 2D / n_heads)."""
    check_positive_int("D", D)
    check_positive_int("n_heads", n_heads)
    E = 2 * D
    if E % n_heads:
        raise ValueError(f"n_heads: expected a divisor of 2D = {E}, got {n_heads}")
    g = lambda a, b: rng.standard_normal((a, b)) / np.sqrt(a)          # noqa: E731
    p = {"ln_w": np.ones(D), "ln_b": np.zeros(D), "W_up": g(D, E), "W_z": g(D, E),
         "W_q": g(E, E), "W_k": g(E, E), "W_v": g(E, E),
         "W_i": g(E, n_heads) * 0.1, "b_i": np.zeros(n_heads),
         "W_f": g(E, n_heads) * 0.1, "b_f": np.linspace(3.0, 6.0, n_heads),
         "hn_w": np.ones(E), "skip": np.ones(E), "W_down": g(E, D)}
    return {k: v.astype(dtype) for k, v in p.items()}


KEYS = (("ln_w", "D"), ("ln_b", "D"), ("W_up", "D E"), ("W_z", "D E"), ("W_q", "E E"),
        ("W_k", "E E"), ("W_v", "E E"), ("W_i", "E NH"), ("b_i", "NH"), ("W_f", "E NH"),
        ("b_f", "NH"), ("hn_w", "E"), ("skip", "E"), ("W_down", "E D"))


def _layer_norm(xp, x, w, b=None, eps=1e-5):
    mu = xp.mean(x, axis=-1, keepdims=True)
    var = xp.mean((x - mu) ** 2, axis=-1, keepdims=True)
    y = (x - mu) / xp.sqrt(var + eps) * w
    return y if b is None else y + b


def _block(params, x, state, form, chunk_size):
    """x (B, L, D) -> (B, L, D), MState."""
    xp = xp_of(x, params["W_up"])
    B, L, D = x.shape
    NH = params["b_i"].shape[0]
    E = params["W_up"].shape[1]
    dh = E // NH
    u = _layer_norm(xp, x, params["ln_w"], params["ln_b"])
    xm, z = u @ params["W_up"], u @ params["W_z"]                              # (B, L, E)
    heads = lambda a: xp.permute_dims(xp.reshape(a, (B, L, NH, dh)), (0, 2, 1, 3))  # noqa: E731
    q, k, v = heads(xm @ params["W_q"]), heads(xm @ params["W_k"]) / math.sqrt(dh), heads(xm @ params["W_v"])
    i_pre = xp.permute_dims(xm @ params["W_i"] + params["b_i"], (0, 2, 1))     # (B, NH, L)
    f_pre = xp.permute_dims(xm @ params["W_f"] + params["b_f"], (0, 2, 1))
    h, state = mlstm(q, k, v, i_pre, f_pre, form=form, chunk_size=chunk_size, state=state)
    h = _layer_norm(xp, h, xp.reshape(params["hn_w"], (NH, 1, dh)))              # per-head norm
    h = xp.reshape(xp.permute_dims(h, (0, 2, 1, 3)), (B, L, E)) + params["skip"] * xm
    y = (h * (z / (1.0 + xp.exp(-z)))) @ params["W_down"]                      # swish(z) gate
    return x + y, state


def _check_block(params, x, spec):
    dims = check_params(params, KEYS)
    check_shape("x", x, spec, dims)
    check_floating("x", x)
    if spec.count(" ") == 2 and dims["L"] == 0:
        raise ValueError(f"x: expected at least one time step (L >= 1), got shape {tuple(x.shape)}")
    return dims


def zero_state(params: dict, x) -> MState:
    """The zero mLSTM state for the block, on x's device: C' = 0, n' = 0, m = 0."""
    xp = xp_of(x)
    NH, E = params["b_i"].shape[0], params["W_up"].shape[1]
    B = x.shape[0]
    return MState(_zeros(xp, (B, NH, E // NH, E // NH), x), _zeros(xp, (B, NH, E // NH), x),
                  _zeros(xp, (B, NH), x))


def step(params: dict, x_t, state=None):
    """One step of the mLSTM block: x_t (B, D) -> y_t (B, D), MState."""
    _check_block(params, x_t, "B D")
    state = zero_state(params, x_t) if state is None else state
    y, state = _block(params, x_t[:, None], state, "recurrent", 1)
    return y[:, 0], state


def forward(params: dict, x, state=None):
    """The mLSTM block over x (B, L, D), recurrent mLSTM: y (B, L, D), MState."""
    _check_block(params, x, "B L D")
    return _block(params, x, zero_state(params, x) if state is None else state, "recurrent", 1)


def forward_parallel(params: dict, x, state=None):
    """As ``forward`` with the parallel mLSTM (17.16) (one chunk of length L)."""
    _check_block(params, x, "B L D")
    return _block(params, x, zero_state(params, x) if state is None else state, "parallel", 1)


def forward_chunkwise(params: dict, x, state=None, *, chunk_size: int = 4):
    """As ``forward`` with the chunkwise mLSTM (17.17)."""
    _check_block(params, x, "B L D")
    return _block(params, x, zero_state(params, x) if state is None else state, "chunkwise",
                  chunk_size)


def example(rng, *, dtype=np.float64):
    """A small mLSTM block for the contract tests: (params, x (2, 7, 4), options)."""
    return init(rng, 4, n_heads=2, dtype=dtype), rng.standard_normal((2, 7, 4)).astype(dtype), {}
