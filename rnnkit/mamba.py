"""Mamba: the selective state space model (S6) and the Mamba block, after Gu and Dao (2023).

Equations, numbered as in chapter 14 (channels d = 1..D, state n = 1..N; A is diagonal per channel):

    (14.1)  h_t = A_bar_t * h_{t-1} + B_bar_t u_t,   y_t = C_t h_t + D u_t      S4D with inputs-dependent
            A_bar_t = exp(delta_t A)                  (14.2) ZOH of delta_t A (exact)
            B_bar_t = delta_t B_t                     (14.3) the paper's simplified ZOH for B
    (14.4)  delta_t = softplus(dt_t W_dt + b_dt),  (dt_t, B_t, C_t) = x_t W_x     the selection
    (14.5)  y <- y * silu(z)                                                     the output gate
    (14.6)  backward (a reverse scan, (9.6) with a = A_bar, b = B_bar u):
            g_t = dh_t + A_bar_{t+1} g_{t+1},  dh_t = dy_t C_t
            dB_bar u = g_t,  dA_bar_t = g_t h_{t-1}
    (14.7)  the block: (x, z) = u W_in;  x <- silu(causal depthwise conv(x));  (14.4);
            y = selective_scan(x, delta, A, B, C, D, z) W_out,   A = -exp(A_log)

``selective_scan`` forms (all agree to float64 rounding):

    "sequential"  the reference loop over t, mamba-minimal's dozen lines.
    "scan"        rnnkit.scan.linear_scan(method="blelloch") on a = A_bar, b = B_bar u: chapter 9's
                  tree sweep, the inclusive (Brent-Kung) form of Blelloch's up- and down-sweep;
                  L states of shape (B, D, N) at once.
    "chunked"     chunks of T steps: inside a chunk every h_t is a masked sum
                  h_t = sum_{s<=t} exp(S_t - S_s) b_s with S_t the cumulative sum of delta A
                  (one (T, T) decay matrix per channel and state), between chunks the chunk-end
                  states are passed on by (9.1). Exponentials only of non-positive numbers.

Shapes: u, delta, z (B, L, D); A (D, N); B, C (B, L, N); D (D,); states h (B, D, N).

References:
    A. Gu and T. Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces",
    arXiv:2312.00752, 2023: Algorithm 2 (S6), section 3.5.2 (delta, A, B, C init), section 3.3.2
    (hardware-aware scan: recomputation in the backward), Figure 3 (the block).
    Official code github.com/state-spaces/mamba (mamba_ssm/modules/mamba_simple.py,
    ops/selective_scan_interface.py ``selective_scan_ref``); johnma2006/mamba-minimal.
    Deliberate differences: no bias on the projections, float64 reference, the scan's
    "recomputation" is a plain recomputation in NumPy (there is no SRAM to keep it in).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import array_api_compat
import numpy as np

from .core.backend import xp_of
from .core.checks import check_floating, check_positive_int, check_shape
from .scan import linear_scan, linear_scan_backward, sigmoid, softplus

__all__ = ["SCAN_FORMS", "FORMS", "MambaState", "selective_scan", "selective_scan_backward",
           "silu", "init", "step", "forward", "forward_scan", "forward_chunked", "zero_state",
           "example", "causal_conv", "n_params"]

SCAN_FORMS = ("sequential", "scan", "chunked")
FORMS = ("forward_scan", "forward_chunked")
_SPECS = (("W_in", "D E2"), ("conv_w", "K E"), ("conv_b", "E"), ("W_x", "E RNN"),
          ("W_dt", "R E"), ("b_dt", "E"), ("A_log", "E N"), ("D", "E"), ("W_out", "E D"))


class MambaState(NamedTuple):
    """The constant-size generation cache of one Mamba block."""

    conv: object    # (B, K-1, E) the last K-1 inputs of the causal convolution
    ssm: object     # (B, E, N) the selective state h_t


def silu(x):
    """x sigma(x) (the paper's SiLU / swish)."""
    return x * sigmoid(x)


# --------------------------------------------------------------------------- the selective scan
def _check_scan(u, delta, A, B, C, D, z, state):
    dims, src = {}, {}
    for name, arr, spec in (("u", u, "B L D"), ("delta", delta, "B L D"), ("A", A, "D N"),
                            ("B", B, "B L N"), ("C", C, "B L N"), ("D", D, "D"),
                            ("z", z, "B L D"), ("state", state, "B D N")):
        if arr is not None:
            check_shape(name, arr, spec, dims, src)
            check_floating(name, arr)
    if dims["L"] < 1:
        raise ValueError(f"u: expected at least one time step (L >= 1), got shape {tuple(u.shape)}")
    return dims


def _discretize(u, delta, A, B):
    """(14.2)-(14.3): A_bar (B, L, D, N) and B_bar u (B, L, D, N)."""
    dA = delta[..., None] * A                                   # (B, L, D, N)  delta_t A
    dBu = (delta * u)[..., None] * B[:, :, None, :]             # (B, L, D, N)  delta_t B_t u_t
    return dA, dBu


def _scan_sequential(xp, dA, dBu, C, h):
    ys = []
    for t in range(dA.shape[1]):
        h = xp.exp(dA[:, t]) * h + dBu[:, t]                    # (B, D, N)  (14.1)
        ys.append(xp.sum(h * C[:, t, None, :], axis=-1))        # (B, D)     C_t h_t
    return xp.stack(ys, axis=1), h                              # (B, L, D), (B, D, N)


def _scan_parallel(xp, dA, dBu, C, h):
    hs = linear_scan(xp.exp(dA), dBu, h, method="blelloch")    # (B, L, D, N)  chapter 9
    return xp.sum(hs * C[:, :, None, :], axis=-1), hs[:, -1]


def _scan_chunked(xp, dA, dBu, C, h, T):
    Bsz, L, Dd, N = dA.shape
    nC = -(-L // T)
    pad = nC * T - L
    if pad:   # delta = 0 steps: A_bar = 1, no input, so the state passes through unchanged
        dev = array_api_compat.device(dA)
        z4 = xp.zeros((Bsz, pad, Dd, N), dtype=dA.dtype, device=dev)
        dA, dBu = xp.concat([dA, z4], axis=1), xp.concat([dBu, z4], axis=1)
        C = xp.concat([C, xp.zeros((Bsz, pad, N), dtype=C.dtype, device=dev)], axis=1)
    dA = xp.reshape(dA, (Bsz, nC, T, Dd, N))
    dBu = xp.reshape(dBu, (Bsz, nC, T, Dd, N))
    S = xp.cumulative_sum(dA, axis=2)                           # (B, nC, T, D, N)  S_t in the chunk
    diff = S[:, :, :, None] - S[:, :, None, :]                  # (B, nC, T, T, D, N)  S_t - S_s
    dev = array_api_compat.device(dA)
    ar = xp.arange(T, device=dev)
    causal = xp.reshape(ar[:, None] >= ar[None, :], (1, 1, T, T, 1, 1))
    neg_inf = xp.asarray(-math.inf, dtype=dA.dtype, device=dev)
    decay = xp.exp(xp.where(causal, diff, neg_inf))             # 0 above the diagonal, no overflow
    h_loc = xp.sum(decay * dBu[:, :, None], axis=3)             # (B, nC, T, D, N)  zero-start states
    # carry: the state entering chunk c, by (9.1) over chunk ends, H_c = exp(S_T) H_{c-1} + h_loc_T
    carry, starts = h, []
    for c in range(nC):
        starts.append(carry)
        carry = xp.exp(S[:, c, -1]) * carry + h_loc[:, c, -1]   # (B, D, N)
    H_in = xp.stack(starts, axis=1)                             # (B, nC, D, N)
    hs = h_loc + xp.exp(S) * H_in[:, :, None]                   # (B, nC, T, D, N)
    hs = xp.reshape(hs, (Bsz, nC * T, Dd, N))
    y = xp.sum(hs * C[:, :, None, :], axis=-1)[:, :L]           # (B, L, D)
    return y, hs[:, L - 1]


def selective_scan(u, delta, A, B, C, D=None, z=None, *, form: str = "sequential",
                   chunk_size: int | None = None, state=None, return_state: bool = False):
    """The selective scan S6 (14.1)-(14.3), then the skip D u and the gate silu(z) (14.5).

    Args:
        u: (B, L, D) input.  delta: (B, L, D) positive step sizes.  A: (D, N) (negative reals).
        B, C: (B, L, N) input and output matrices, one per time step.  D: (D,) skip, or None.
        z: (B, L, D) gate, or None.  form: one of ``SCAN_FORMS``.  chunk_size: T of "chunked"
        (default ~sqrt(L)).  state: (B, D, N) initial h_0 (zeros if None).
        return_state: also return the last state h_L.
    Returns:
        y (B, L, D)[, h_L (B, D, N)].
    Raises:
        ValueError: wrong shapes or dtypes (naming the argument), L = 0, an unknown form.
    """
    if form not in SCAN_FORMS:
        raise ValueError(f"form: expected one of {SCAN_FORMS}, got {form!r}")
    check_positive_int("chunk_size", chunk_size, allow_none=True)
    dims = _check_scan(u, delta, A, B, C, D, z, state)
    xp = xp_of(u, delta, A, B, C)
    dA, dBu = _discretize(u, delta, A, B)
    h = state if state is not None else xp.zeros(
        (dims["B"], dims["D"], dims["N"]), dtype=dBu.dtype, device=array_api_compat.device(u))
    if form == "sequential":
        y, h = _scan_sequential(xp, dA, dBu, C, h)
    elif form == "scan":
        y, h = _scan_parallel(xp, dA, dBu, C, h)
    else:
        T = chunk_size if chunk_size is not None else max(1, math.isqrt(dims["L"]))
        y, h = _scan_chunked(xp, dA, dBu, C, h, T)
    if D is not None:
        y = y + D * u                                           # (B, L, D)
    if z is not None:
        y = y * silu(z)                                         # (14.5)
    return (y, h) if return_state else y


def selective_scan_backward(dy, u, delta, A, B, C, D=None, z=None, *, state=None, dstate=None,
                            method: str = "sequential"):
    """Gradients of a loss through ``selective_scan`` (14.6), from its inputs alone.

    Like the paper's fused kernel this keeps nothing from the forward pass: the states h_t are
    recomputed (one forward scan), then the gradient runs back as a reverse scan (9.6).

    Args:
        dy: (B, L, D) dLoss/dy.  u ... z, state: the forward's arguments.
        dstate: (B, D, N) dLoss/dh_L, or None.  method: the ``rnnkit.scan`` method of both scans.
    Returns:
        dict with "u", "delta", "A", "B", "C" and, where given, "D", "z", "state" (same shapes).
    """
    dims = _check_scan(u, delta, A, B, C, D, z, state)
    check_shape("dy", dy, "B L D", dims)
    if dstate is not None:
        check_shape("dstate", dstate, "B D N", dims)
    xp = xp_of(dy, u, delta, A, B, C)
    dA, dBu = _discretize(u, delta, A, B)
    a = xp.exp(dA)                                              # (B, L, D, N)  A_bar
    hs = linear_scan(a, dBu, state, method=method)              # (B, L, D, N)  recomputed
    y_ssm = xp.sum(hs * C[:, :, None, :], axis=-1)              # (B, L, D)
    if D is not None:
        y_ssm = y_ssm + D * u
    grads = {}
    if z is not None:
        sz = sigmoid(z)
        grads["z"] = dy * y_ssm * sz * (1 + z * (1 - sz))       # silu'(z) = s (1 + z (1 - s))
        dy = dy * z * sz                                        # gradient on the ungated output
    grads["C"] = xp.einsum("bld,bldn->bln", dy, hs)              # (B, L, N)
    dh = dy[..., None] * C[:, :, None, :]                       # (B, L, D, N) direct part
    if dstate is not None:
        dh = xp.concat([dh[:, :-1], (dh[:, -1] + dstate)[:, None]], axis=1)
    da, g, dh0 = linear_scan_backward(a, hs, dh, state, method=method)   # (14.6)
    dlog_a = da * a                                             # d/d(delta A) of exp(delta A)
    grads["A"] = xp.einsum("bldn,bld->dn", dlog_a, delta)
    d_delta = xp.sum(dlog_a * A, axis=-1)                       # (B, L, D)
    gB = xp.einsum("bldn,bln->bld", g, B)                       # sum_n g_t B_t
    grads["B"] = xp.einsum("bldn,bld->bln", g, delta * u)
    grads["delta"] = d_delta + gB * u
    grads["u"] = gB * delta
    if D is not None:
        grads["D"] = xp.sum(dy * u, axis=(0, 1))
        grads["u"] = grads["u"] + dy * D
    if state is not None:
        grads["state"] = dh0
    return grads


# --------------------------------------------------------------------------- the Mamba block
def init(rng: np.random.Generator, D: int, N: int = 16, *, expand: int = 2, d_conv: int = 4,
         dt_rank: int | None = None, dt_min: float = 1e-3, dt_max: float = 1e-1,
         dtype=np.float64) -> dict:
    """Mamba block parameters, initialised as the official code does (section 3.5.2).

    Args:
        D: model width.  N: state size per channel.  expand: E = expand * D inner channels.
        d_conv: K, the causal convolution's width.  dt_rank: R (default ceil(D / 16)).
        dt_min, dt_max: delta = softplus(b_dt) at init is log-uniform in [dt_min, dt_max].
    Returns:
        dict: W_in (D, 2E), conv_w (K, E), conv_b (E,), W_x (E, R + 2N), W_dt (R, E), b_dt (E,),
        A_log (E, N), D (E,), W_out (E, D).
    """
    for name, v in (("D", D), ("N", N), ("expand", expand), ("d_conv", d_conv)):
        check_positive_int(name, v)
    check_positive_int("dt_rank", dt_rank, allow_none=True)
    if not 0 < dt_min <= dt_max:
        raise ValueError(f"dt_min, dt_max: expected 0 < dt_min <= dt_max, got {dt_min}, {dt_max}")
    E, R = expand * D, dt_rank or math.ceil(D / 16)

    def lin(n_in, n_out):                                       # torch.nn.Linear's U[-1/sqrt, 1/sqrt]
        return rng.uniform(-1, 1, (n_in, n_out)) / math.sqrt(n_in)

    dt = np.exp(rng.uniform(np.log(dt_min), np.log(dt_max), E))  # (E,) log-uniform
    p = {"W_in": lin(D, 2 * E), "conv_w": rng.uniform(-1, 1, (d_conv, E)) / math.sqrt(d_conv),
         "conv_b": rng.uniform(-1, 1, E) / math.sqrt(d_conv), "W_x": lin(E, R + 2 * N),
         "W_dt": rng.uniform(-1, 1, (R, E)) * R ** -0.5,         # dt_init="random", dt_scale=1
         "b_dt": dt + np.log(-np.expm1(-dt)),                    # softplus^{-1}(dt)
         "A_log": np.log(np.tile(np.arange(1, N + 1, dtype=np.float64), (E, 1))),  # S4D-real
         "D": np.ones(E), "W_out": lin(E, D)}
    return {k: v.astype(dtype) for k, v in p.items()}


def _check_block(params, x, x_spec, state):
    dims, src = {}, {}
    for key, spec in _SPECS:
        if key not in params:
            raise ValueError(f"params: expected keys {', '.join(k for k, _ in _SPECS)}, "
                             f"missing {key!r}")
        check_shape(f"params['{key}']", params[key], spec, dims, src)
    if dims["E2"] != 2 * dims["E"] or dims["RNN"] != dims["R"] + 2 * dims["N"]:
        raise ValueError(f"params: W_in must be (D, 2E) and W_x (E, R + 2N); got E={dims['E']}, "
                         f"W_in {tuple(params['W_in'].shape)}, W_x {tuple(params['W_x'].shape)}")
    check_shape("x", x, x_spec, dims, src)
    check_floating("x", x)
    if x_spec == "B L D" and dims["L"] < 1:
        raise ValueError(f"x: expected at least one time step (L >= 1), got shape {tuple(x.shape)}")
    if state is not None:
        if not isinstance(state, tuple) or len(state) != 2:
            raise ValueError(f"state: expected a MambaState(conv, ssm), got {type(state).__name__}")
        check_shape("state.conv", state[0], f"B {dims['K'] - 1} E", dims, src)
        check_shape("state.ssm", state[1], "B E N", dims, src)
    return dims


def zero_state(params: dict, x) -> MambaState:
    """The empty cache: no past inputs, h = 0; batch, dtype and device of x ((B, D) or (B, L, D))."""
    xp = xp_of(x)
    K, E = params["conv_w"].shape
    N = params["A_log"].shape[1]
    dev = array_api_compat.device(x)
    return MambaState(xp.zeros((x.shape[0], K - 1, E), dtype=x.dtype, device=dev),
                      xp.zeros((x.shape[0], E, N), dtype=x.dtype, device=dev))


def causal_conv(params: dict, x, past):
    """Depthwise causal convolution: out_t = b + sum_k w_k x_{t-K+1+k}, with the K-1 inputs
    before the sequence taken from ``past``.  x (B, L, E), past (B, K-1, E) -> out (B, L, E),
    and the new past (the last K-1 inputs)."""
    xp = xp_of(x)
    w = params["conv_w"]                                        # (K, E)
    K, L = w.shape[0], x.shape[1]
    xpad = xp.concat([past, x], axis=1)                         # (B, K-1+L, E)
    out = params["conv_b"] + sum(w[k] * xpad[:, k:k + L] for k in range(K))
    return out, xpad[:, xpad.shape[1] - (K - 1):]


def _selection(params, xc):
    """(14.4): delta (.., E), B (.., N), C (.., N) from the convolved input."""
    R, N = params["W_dt"].shape[0], params["A_log"].shape[1]
    proj = xc @ params["W_x"]                                   # (.., R + 2N)
    delta = softplus(proj[..., :R] @ params["W_dt"] + params["b_dt"])   # (.., E)
    return delta, proj[..., R:R + N], proj[..., R + N:]


def _forward(params, x, state, form, chunk_size):
    dims = _check_block(params, x, "B L D", state)
    xp = xp_of(x, params["W_in"])
    if state is None:
        state = zero_state(params, x)
    E = dims["E"]
    xz = x @ params["W_in"]                                     # (B, L, 2E)
    xi, z = xz[..., :E], xz[..., E:]
    xc, conv = causal_conv(params, xi, state[0])
    xc = silu(xc)                                               # (B, L, E)
    delta, Bm, Cm = _selection(params, xc)
    A = -xp.exp(params["A_log"])                                # (E, N)
    y, h = selective_scan(xc, delta, A, Bm, Cm, params["D"], z, form=form,
                          chunk_size=chunk_size, state=state[1], return_state=True)
    return y @ params["W_out"], MambaState(conv, h)             # (B, L, D)  (14.7)


def forward(params: dict, x, state: MambaState | None = None):
    """The Mamba block (14.7) over a sequence, with the sequential scan.

    Args: x (B, L, D); state: MambaState (conv (B, K-1, E), ssm (B, E, N)), zeros if None.
    Returns: y (B, L, D), the state after the last step.
    """
    return _forward(params, x, state, "sequential", None)


def forward_scan(params: dict, x, state: MambaState | None = None):
    """``forward`` with chapter 9's parallel tree sweep (``linear_scan(method="blelloch")``, inclusive)."""
    return _forward(params, x, state, "scan", None)


def forward_chunked(params: dict, x, state: MambaState | None = None, *,
                    chunk_size: int | None = None):
    """``forward`` with the chunked scan (masked decay matrices inside chunks)."""
    return _forward(params, x, state, "chunked", chunk_size)


def step(params: dict, x_t, state: MambaState | None = None):
    """One generation step with the constant-size cache: x_t (B, D) -> y_t (B, D), state."""
    dims = _check_block(params, x_t, "B D", state)
    xp = xp_of(x_t, params["W_in"])
    if state is None:
        state = zero_state(params, x_t)
    E = dims["E"]
    xz = x_t @ params["W_in"]                                   # (B, 2E)
    xi, z = xz[:, :E], xz[:, E:]
    window = xp.concat([state[0], xi[:, None]], axis=1)         # (B, K, E)
    xc = silu(params["conv_b"] + xp.sum(params["conv_w"] * window, axis=1))   # (B, E)
    delta, Bm, Cm = _selection(params, xc)                      # (B, E), (B, N), (B, N)
    A = -xp.exp(params["A_log"])
    h = xp.exp(delta[..., None] * A) * state[1] + (delta * xc)[..., None] * Bm[:, None]  # (B, E, N)
    y = (xp.sum(h * Cm[:, None], axis=-1) + params["D"] * xc) * silu(z)                # (B, E)
    return y @ params["W_out"], MambaState(window[:, 1:], h)


def n_params(params: dict) -> int:
    """Number of scalars in ``params``."""
    return int(sum(np.prod(v.shape) for v in params.values()))


def example(rng: np.random.Generator, *, dtype=np.float64):
    """A small instance for the contract tests: (params, x, options), x (B, L, D) = (2, 7, 4)."""
    params = init(rng, 4, N=3, expand=2, d_conv=3, dt_min=0.1, dt_max=1.0, dtype=dtype)
    return params, rng.standard_normal((2, 7, 4)).astype(dtype), {}
