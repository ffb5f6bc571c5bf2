"""Mamba-2: state space duality (SSD), after Dao and Gu (2024).

Equations, numbered as in chapter 15 (heads h = 1..H, head dimension P, state size N):

    (15.1)  h_t = exp(dt_t A_h) h_{t-1} + dt_t x_t B_t^T,   y_t = h_t C_t     h_t (P, N) per head
            A_h is one scalar per head: the decay is a scalar times the identity (Mamba-1: diagonal)
    (15.2)  a_t = exp(dt_t A),  a_{t:s} = a_t a_{t-1} ... a_{s+1} = exp(sum_{r=s+1}^t dt_r A)
    (15.3)  y = M (dt x),  M_ts = (C_t . B_s) a_{t:s} for s <= t, 0 above the diagonal:
            M = L o (C B^T), L the 1-semiseparable mask (``segsum``), i.e. masked linear attention
            with queries C, keys B, values dt x and the decay mask L
    (15.4)  chunks of T steps (the SSD algorithm):
            diagonal blocks   y_diag = (L_c o C_c B_c^T) (dt x)_c                  quadratic, T x T
            chunk states      s_c = sum_{s in c} a_{end:s} dt_s x_s B_s^T          (P, N)
            state passing     H_c = a_{chunk c} H_{c-1} + s_c                    over the chunks
            off-diagonal      y_off,t = a_{t:start} H_{c-1} C_t
    (15.5)  the block: (z, x, B, C, dt) = u (W_z, W_x, W_B, W_C, W_dt) in parallel; x, B, C <- silu(conv);
            y = ssd(x, softplus(dt + b_dt), -exp(A_log), B, C) + D x;
            y = RMSNorm(y * silu(z)) * norm_w;  out = y W_out

Shapes: x (B, L, H, P); dt (B, L, H); A (H,); B, C (B, L, H, N) in ``ssd`` (the block shares B, C
over the H / G heads of each of G groups); states (B, H, P, N).

References:
    T. Dao and A. Gu, "Transformers are SSMs: Generalized Models and Efficient Algorithms Through
    Structured State Space Duality", ICML 2024: section 3 (semiseparable matrices), section 4
    (masked attention duality), section 6 and Listing 1 (``ssd_minimal_discrete``), section 7
    (the block: parallel projections, extra normalisation, grouped heads).
    Official code github.com/state-spaces/mamba (mamba_ssm/modules/ssd_minimal.py, mamba2.py).
    Deliberate differences: the projections are separate matrices (the official one in_proj is
    their concatenation), the convolutions have no bias, one RMSNorm group.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import array_api_compat
import numpy as np

from .core.backend import xp_of
from .core.checks import check_floating, check_positive_int, check_shape
from .mamba import silu
from .scan import softplus

__all__ = ["SSD_FORMS", "FORMS", "Mamba2State", "segsum", "ssd", "ssd_matrix", "init", "step",
           "forward", "forward_quadratic", "forward_chunked", "zero_state", "example"]

SSD_FORMS = ("recurrent", "quadratic", "chunked")
FORMS = ("forward_quadratic", "forward_chunked")
_SPECS = (("W_z", "D E"), ("W_x", "D E"), ("W_B", "D G N"), ("W_C", "D G N"), ("W_dt", "D H"),
          ("conv_x", "K E"), ("conv_B", "K G N"), ("conv_C", "K G N"), ("b_dt", "H"),
          ("A_log", "H"), ("D", "H"), ("norm_w", "E"), ("W_out", "E D"))


class Mamba2State(NamedTuple):
    """The constant-size generation cache of one Mamba-2 block."""

    conv_x: object   # (B, K-1, E)  last K-1 inputs of each causal convolution
    conv_B: object   # (B, K-1, G, N)
    conv_C: object   # (B, K-1, G, N)
    ssm: object      # (B, H, P, N)


# --------------------------------------------------------------------------- SSD
def _check_ssd(x, dt, A, B, C, state):
    dims, src = {}, {}
    for name, arr, spec in (("x", x, "B L H P"), ("dt", dt, "B L H"), ("A", A, "H"),
                            ("B", B, "B L H N"), ("C", C, "B L H N"), ("state", state, "B H P N")):
        if arr is not None:
            check_shape(name, arr, spec, dims, src)
            check_floating(name, arr)
    if dims["L"] < 1:
        raise ValueError(f"x: expected at least one time step (L >= 1), got shape {tuple(x.shape)}")
    return dims


def segsum(a_log):
    """The log of the 1-semiseparable mask (15.2): out[..., t, s] = sum_{r=s+1}^t a_log[..., r]
    for s <= t and -inf above the diagonal, so exp(out) is L of (15.3), with no exponential of a
    positive number and no subtraction of large cumulative sums (the official ``segsum``).
    a_log (..., T) -> (..., T, T)."""
    xp = xp_of(a_log)
    T = a_log.shape[-1]
    dev = array_api_compat.device(a_log)
    ar = xp.arange(T, device=dev)
    rep = xp.broadcast_to(a_log[..., :, None], a_log.shape + (T,))   # [.., r, s] = a_r
    strict = ar[:, None] > ar[None, :]                                 # r > s
    ss = xp.cumulative_sum(xp.where(strict, rep, xp.zeros_like(rep)), axis=-2)
    # ss[.., t, s] = sum_{r <= t, r > s} a_r = sum_{r=s+1}^t a_r
    neg_inf = xp.asarray(-math.inf, dtype=a_log.dtype, device=dev)
    return xp.where(ar[:, None] >= ar[None, :], ss, neg_inf)


def ssd_matrix(dt, A, B, C):
    """The sequence-mixing matrix M of (15.3), per batch row and head: (B, H, L, L)."""
    xp = xp_of(dt, A, B, C)
    Lmask = xp.exp(segsum(xp.moveaxis(dt * A, 1, -1)))         # (B, H, L, L)
    return Lmask * xp.einsum("bthn,bshn->bhts", C, B)


def _ssd_recurrent(xp, x, dt, A, B, C, h):
    ys = []
    for t in range(x.shape[1]):
        a = xp.exp(dt[:, t] * A)[..., None, None]               # (B, H, 1, 1)
        h = a * h + (dt[:, t, :, None] * x[:, t])[..., None] * B[:, t, :, None, :]  # (B, H, P, N)
        ys.append(xp.sum(h * C[:, t, :, None, :], axis=-1))    # (B, H, P)
    return xp.stack(ys, axis=1), h


def _ssd_quadratic(xp, x, dt, A, B, C, h):
    M = ssd_matrix(dt, A, B, C)                                 # (B, H, L, L)
    y = xp.moveaxis(M @ xp.moveaxis(dt[..., None] * x, 2, 1), 1, 2)   # (B, L, H, P)
    cum = xp.cumulative_sum(dt * A, axis=1)                     # (B, L, H)
    y = y + xp.exp(cum)[..., None] * xp.einsum("bhpn,bthn->bthp", h, C)
    # the last state: row L of M's "state" view, h_L = a_{L:0} h_0 + sum_s a_{L:s} dt_s x_s B_s^T
    w = xp.exp(cum[:, -1:] - cum) * dt                          # (B, L, H)  a_{L:s} dt_s
    h_last = xp.exp(cum[:, -1])[..., None, None] * h + xp.einsum("bsh,bshp,bshn->bhpn", w, x, B)
    return y, h_last


def _ssd_chunked(xp, x, dt, A, B, C, h, T):
    Bsz, L, H, P = x.shape
    N = B.shape[-1]
    nC = -(-L // T)
    pad = nC * T - L
    if pad:   # dt = 0 steps are the identity: a = 1 and no input
        dev = array_api_compat.device(x)
        x = xp.concat([x, xp.zeros((Bsz, pad, H, P), dtype=x.dtype, device=dev)], axis=1)
        dt = xp.concat([dt, xp.zeros((Bsz, pad, H), dtype=dt.dtype, device=dev)], axis=1)
        zN = xp.zeros((Bsz, pad, H, N), dtype=B.dtype, device=dev)
        B, C = xp.concat([B, zN], axis=1), xp.concat([C, zN], axis=1)
    heads_first = lambda v: xp.moveaxis(xp.reshape(v, (Bsz, nC, T, H, -1)), 3, 1)   # noqa: E731
    X = heads_first(dt[..., None] * x)                          # (B, H, nC, T, P)  dt x, chunked
    Bc, Cc = heads_first(B), heads_first(C)                     # (B, H, nC, T, N)
    a_log = xp.moveaxis(xp.reshape(dt * A, (Bsz, nC, T, H)), 3, 1)   # (B, H, nC, T)
    cum = xp.cumulative_sum(a_log, axis=-1)                     # (B, H, nC, T)
    # 1) diagonal blocks: the quadratic (masked attention) form inside every chunk
    Lmask = xp.exp(segsum(a_log))                               # (B, H, nC, T, T)
    y_diag = (Lmask * (Cc @ xp.matrix_transpose(Bc))) @ X       # (B, H, nC, T, P)
    # 2) the state each chunk would end in from a zero start: sum_s a_{end:s} dt_s x_s B_s^T
    decay_to_end = xp.exp(cum[..., -1:] - cum)                  # (B, H, nC, T)
    s = xp.matrix_transpose(X) @ (decay_to_end[..., None] * Bc)  # (B, H, nC, P, N)
    # 3) pass states from chunk to chunk: H_c = a_chunk H_{c-1} + s_c
    a_chunk = xp.exp(cum[..., -1])                              # (B, H, nC)
    starts = []
    for c in range(nC):
        starts.append(h)
        h = a_chunk[:, :, c, None, None] * h + s[:, :, c]       # (B, H, P, N)
    H_in = xp.stack(starts, axis=2)                             # (B, H, nC, P, N)
    # 4) what the entering state contributes inside each chunk: a_{t:start} C_t H_{c-1}
    y_off = xp.exp(cum)[..., None] * (Cc @ xp.matrix_transpose(H_in))   # (B, H, nC, T, P)
    y = xp.reshape(xp.moveaxis(y_diag + y_off, 1, 3), (Bsz, nC * T, H, P))[:, :L]
    return y, h


def ssd(x, dt, A, B, C, *, form: str = "recurrent", chunk_size: int | None = None, state=None,
        return_state: bool = False):
    """The SSD layer (15.1) by one of ``SSD_FORMS`` (all agree to float64 rounding).

    Args:
        x: (B, L, H, P).  dt: (B, L, H) positive steps.  A: (H,) negative scalars per head.
        B, C: (B, L, H, N).  form: "recurrent" (the loop), "quadratic" (y = M dt x with the
        L x L matrix (15.3)) or "chunked" (15.4).  chunk_size: T (default ~sqrt(L); any L).
        state: (B, H, P, N) initial state, zeros if None.  return_state: also return h_L.
    Returns:
        y (B, L, H, P)[, h_L (B, H, P, N)].
    """
    if form not in SSD_FORMS:
        raise ValueError(f"form: expected one of {SSD_FORMS}, got {form!r}")
    check_positive_int("chunk_size", chunk_size, allow_none=True)
    dims = _check_ssd(x, dt, A, B, C, state)
    xp = xp_of(x, dt, A, B, C)
    h = state if state is not None else xp.zeros(
        (dims["B"], dims["H"], dims["P"], dims["N"]), dtype=x.dtype, device=array_api_compat.device(x))
    if form == "recurrent":
        y, h = _ssd_recurrent(xp, x, dt, A, B, C, h)
    elif form == "quadratic":
        y, h = _ssd_quadratic(xp, x, dt, A, B, C, h)
    else:
        T = chunk_size if chunk_size is not None else max(1, math.isqrt(dims["L"]))
        y, h = _ssd_chunked(xp, x, dt, A, B, C, h, T)
    return (y, h) if return_state else y


# --------------------------------------------------------------------------- the Mamba-2 block
def init(rng: np.random.Generator, D: int, *, N: int = 16, head_dim: int = 8, expand: int = 2,
         n_groups: int = 1, d_conv: int = 4, dt_min: float = 1e-3, dt_max: float = 1e-1,
         dtype=np.float64) -> dict:
    """Mamba-2 block parameters as the official code initialises them.

    Args:
        D: model width.  N: state size.  head_dim: P.  expand: E = expand * D = H * P.
        n_groups: G, heads sharing one B and C (H divisible by G).  d_conv: K.
    Returns:
        dict: W_z, W_x (D, E); W_B, W_C (D, G, N); W_dt (D, H); conv_x (K, E), conv_B, conv_C
        (K, G, N); b_dt, A_log, D (H,); norm_w (E,); W_out (E, D).
    """
    for name, v in (("D", D), ("N", N), ("head_dim", head_dim), ("expand", expand),
                    ("n_groups", n_groups), ("d_conv", d_conv)):
        check_positive_int(name, v)
    E = expand * D
    if E % head_dim or (E // head_dim) % n_groups:
        raise ValueError(f"head_dim, n_groups: expected E = expand * D = {E} divisible by head_dim "
                         f"and E / head_dim by n_groups, got head_dim={head_dim}, n_groups={n_groups}")
    H = E // head_dim

    def u(*shape, fan_in):
        return rng.uniform(-1, 1, shape) / math.sqrt(fan_in)

    dt = np.exp(rng.uniform(np.log(dt_min), np.log(dt_max), H))
    p = {"W_z": u(D, E, fan_in=D), "W_x": u(D, E, fan_in=D), "W_B": u(D, n_groups, N, fan_in=D),
         "W_C": u(D, n_groups, N, fan_in=D), "W_dt": u(D, H, fan_in=D),
         "conv_x": u(d_conv, E, fan_in=d_conv), "conv_B": u(d_conv, n_groups, N, fan_in=d_conv),
         "conv_C": u(d_conv, n_groups, N, fan_in=d_conv), "b_dt": dt + np.log(-np.expm1(-dt)),
         "A_log": np.log(rng.uniform(1, 16, H)), "D": np.ones(H), "norm_w": np.ones(E),
         "W_out": u(E, D, fan_in=E)}
    return {k: v.astype(dtype) for k, v in p.items()}


def _check_block(params, x, x_spec, state):
    dims, src = {}, {}
    for key, spec in _SPECS:
        if key not in params:
            raise ValueError(f"params: expected keys {', '.join(k for k, _ in _SPECS)}, "
                             f"missing {key!r}")
        check_shape(f"params['{key}']", params[key], spec, dims, src)
    if dims["E"] % dims["H"] or dims["H"] % dims["G"]:
        raise ValueError(f"params: expected E divisible by H and H by G, got E={dims['E']}, "
                         f"H={dims['H']}, G={dims['G']}")
    check_shape("x", x, x_spec, dims, src)
    check_floating("x", x)
    if x_spec == "B L D" and dims["L"] < 1:
        raise ValueError(f"x: expected at least one time step (L >= 1), got shape {tuple(x.shape)}")
    if state is not None:
        if not isinstance(state, tuple) or len(state) != 4:
            raise ValueError(f"state: expected a Mamba2State, got {type(state).__name__}")
        k = dims["K"] - 1
        check_shape("state.conv_x", state[0], f"B {k} E", dims, src)
        check_shape("state.conv_B", state[1], f"B {k} G N", dims, src)
        check_shape("state.conv_C", state[2], f"B {k} G N", dims, src)
        dims["P"] = dims["E"] // dims["H"]
        check_shape("state.ssm", state[3], "B H P N", dims, src)
    dims["P"] = dims["E"] // dims["H"]
    return dims


def zero_state(params: dict, x) -> Mamba2State:
    """The empty cache for a batch like x ((B, D) or (B, L, D)): batch, dtype, device of x."""
    xp = xp_of(x)
    K, G, N = params["conv_B"].shape
    E, H = params["norm_w"].shape[0], params["A_log"].shape[0]
    dev, B = array_api_compat.device(x), x.shape[0]
    z = lambda *s: xp.zeros(s, dtype=x.dtype, device=dev)   # noqa: E731
    return Mamba2State(z(B, K - 1, E), z(B, K - 1, G, N), z(B, K - 1, G, N), z(B, H, E // H, N))


def _conv(w, x, past):
    """Depthwise causal conv over axis 1: w (K, ...), x (B, L, ...), past (B, K-1, ...)."""
    xp = xp_of(x)
    K, L = w.shape[0], x.shape[1]
    xpad = xp.concat([past, x], axis=1)
    return sum(w[k] * xpad[:, k:k + L] for k in range(K)), xpad[:, xpad.shape[1] - (K - 1):]


def _heads(params, dims, x, Bg, Cg, dt):
    """Split x into heads and share each group's B, C over its heads."""
    xp = xp_of(x)
    H, G, P = dims["H"], dims["G"], dims["P"]
    xh = xp.reshape(x, x.shape[:-1] + (H, P))                   # (.., H, P)
    rep = H // G                                                # heads h use group h // rep
    Bh = xp.repeat(Bg, rep, axis=-2)                            # (.., H, N)
    Ch = xp.repeat(Cg, rep, axis=-2)
    return xh, softplus(dt + params["b_dt"]), Bh, Ch


def _gate_norm_out(params, y, z, eps=1e-5):
    """RMSNorm(y * silu(z)) * norm_w, then W_out (the extra normalisation of section 7)."""
    xp = xp_of(y)
    g = y * silu(z)
    g = g / xp.sqrt(xp.mean(g * g, axis=-1, keepdims=True) + eps)
    return (g * params["norm_w"]) @ params["W_out"]


def _forward(params, x, state, form, chunk_size):
    dims = _check_block(params, x, "B L D", state)
    xp = xp_of(x, params["W_x"])
    if state is None:
        state = zero_state(params, x)
    z = x @ params["W_z"]                                       # (B, L, E)   all five in parallel
    xi = x @ params["W_x"]                                      # (B, L, E)
    Bi = xp.einsum("bld,dgn->blgn", x, params["W_B"])           # (B, L, G, N)
    Ci = xp.einsum("bld,dgn->blgn", x, params["W_C"])
    dt = x @ params["W_dt"]                                     # (B, L, H)
    xc, cx = _conv(params["conv_x"], xi, state[0])
    Bc, cB = _conv(params["conv_B"], Bi, state[1])
    Cc, cC = _conv(params["conv_C"], Ci, state[2])
    xh, delta, Bh, Ch = _heads(params, dims, silu(xc), silu(Bc), silu(Cc), dt)
    A = -xp.exp(params["A_log"])                                # (H,)
    y, h = ssd(xh, delta, A, Bh, Ch, form=form, chunk_size=chunk_size, state=state[3],
               return_state=True)                               # (B, L, H, P)
    y = y + params["D"][:, None] * xh
    y = xp.reshape(y, x.shape[:2] + (dims["E"],))
    return _gate_norm_out(params, y, z), Mamba2State(cx, cB, cC, h)


def forward(params: dict, x, state: Mamba2State | None = None):
    """The Mamba-2 block (15.5) with the recurrent SSD form: x (B, L, D) -> y (B, L, D), state."""
    return _forward(params, x, state, "recurrent", None)


def forward_quadratic(params: dict, x, state: Mamba2State | None = None):
    """``forward`` with the quadratic (masked attention) form of SSD."""
    return _forward(params, x, state, "quadratic", None)


def forward_chunked(params: dict, x, state: Mamba2State | None = None, *,
                    chunk_size: int | None = None):
    """``forward`` with the chunked SSD algorithm (15.4)."""
    return _forward(params, x, state, "chunked", chunk_size)


def step(params: dict, x_t, state: Mamba2State | None = None):
    """One generation step with the constant-size cache: x_t (B, D) -> y_t (B, D), state."""
    dims = _check_block(params, x_t, "B D", state)
    xp = xp_of(x_t, params["W_x"])
    if state is None:
        state = zero_state(params, x_t)
    z = x_t @ params["W_z"]
    wins = [xp.concat([s, v[:, None]], axis=1) for s, v in
            ((state[0], x_t @ params["W_x"]), (state[1], xp.einsum("bd,dgn->bgn", x_t, params["W_B"])),
             (state[2], xp.einsum("bd,dgn->bgn", x_t, params["W_C"])))]
    xc, Bc, Cc = (xp.sum(w * win, axis=1) for w, win in
                  zip((params["conv_x"], params["conv_B"], params["conv_C"]), wins))
    xh, delta, Bh, Ch = _heads(params, dims, silu(xc), silu(Bc), silu(Cc), x_t @ params["W_dt"])
    A = -xp.exp(params["A_log"])
    h = (xp.exp(delta * A)[..., None, None] * state[3]
         + (delta[..., None] * xh)[..., None] * Bh[:, :, None, :])      # (B, H, P, N)  (15.1)
    y = xp.sum(h * Ch[:, :, None, :], axis=-1) + params["D"][:, None] * xh   # (B, H, P)
    y = _gate_norm_out(params, xp.reshape(y, (x_t.shape[0], dims["E"])), z)
    return y, Mamba2State(wins[0][:, 1:], wins[1][:, 1:], wins[2][:, 1:], h)


def example(rng: np.random.Generator, *, dtype=np.float64):
    """A small instance for the contract tests: (params, x, options), x (B, L, D) = (2, 7, 4)."""
    params = init(rng, 4, N=3, head_dim=2, expand=2, n_groups=2, d_conv=3, dt_min=0.1,
                  dt_max=1.0, dtype=dtype)
    return params, rng.standard_normal((2, 7, 4)).astype(dtype), {}
