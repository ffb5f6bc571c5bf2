"""Long short-term memory (LSTM) with a forget gate, four of its variants, and BPTT by hand.

Equations, numbered as in chapter 2 (row vectors: x_t is (B, D), h_t and c_t are (B, H)). The gate
pre-activations of all gates come from one fused product whose G = 4H columns hold the blocks in
torch's order i, f, g, o (block k is columns k*H:(k+1)*H):

    (2.1)  z_t = x_t W_x + h_{t-1} W_h + b          = [z_i | z_f | z_g | z_o]     (B, 4H)
    (2.2)  i_t = sigma(z_i)                          input gate
    (2.3)  f_t = sigma(z_f)                          forget gate (Gers, Schmidhuber, Cummins 2000)
    (2.4)  g_t = tanh(z_g)                           candidate cell input
    (2.5)  c_t = f_t * c_{t-1} + i_t * g_t           the cell: an additive memory
    (2.6)  o_t = sigma(z_o)                          output gate
    (2.7)  h_t = o_t * tanh(c_t)

The variants of Greff et al. (2017), chosen with ``variant=``. A variant without a gate also drops
that gate's block from W_x, W_h and b (G = 3H), so its parameter count is the paper's:

    "vanilla"          (2.1)-(2.7), blocks i f g o: torch.nn.LSTM.
    "no_forget_gate"   NFG:  f_t = 1 (the 1997 LSTM), blocks i g o.
    "coupled"          CIFG: f_t = 1 - i_t, blocks i g o.
    "no_output_gate"   NOG:  o_t = 1, so h_t = tanh(c_t), blocks i f g.
    "peephole"         blocks i f g o plus peephole weights p_i, p_f, p_o (H,) (Gers et al. 2002):
           (2.8)  i_t = sigma(z_i + p_i * c_{t-1}),  f_t = sigma(z_f + p_f * c_{t-1}),
                  o_t = sigma(z_o + p_o * c_t)

Backpropagation through time, with dh_t the total gradient reaching h_t (from the output at t plus
dh_t^{rec} from step t+1) and dc_t^{rec} the gradient reaching c_t from step t+1 along the cell
(every rec gradient is indexed by the step that receives it; dh_L^{rec} = dc_L^{rec} = 0 unless
``dstate`` is given):

    (2.9)   dz_o = dh_t * tanh(c_t) * o_t (1 - o_t)
    (2.10)  dc_t = dc_t^{rec} + dh_t * o_t * (1 - tanh^2 c_t)        [+ dz_o * p_o]
    (2.11)  dz_i = dc_t * g_t * i_t (1 - i_t),   dz_f = dc_t * c_{t-1} * f_t (1 - f_t),
            dz_g = dc_t * i_t * (1 - g_t^2)
    (2.12)  dc_{t-1}^{rec} = dc_t * f_t                               [+ dz_i * p_i + dz_f * p_f]
    (2.13)  dh_{t-1}^{rec} = dz_t W_h^T
    (2.14)  dW_x = sum_t x_t^T dz_t,  dW_h = sum_t h_{t-1}^T dz_t,  db = sum_t 1^T dz_t,
            dx_t = dz_t W_x^T;   dp_i = sum_t 1^T (dz_i * c_{t-1}), likewise p_f; dp_o with c_t.

(In NFG dc^{rec} = dc; in CIFG dz_i = dc (g - c_{t-1}) i (1 - i) and dc^{rec} = dc (1 - i); in NOG
the (2.9) term is absent and (2.10) has o_t = 1.)

The input part x_t W_x + b of (2.1) does not depend on h, so ``forward`` computes it for all L
steps in one (B L, D) x (D, G) product before the loop; likewise ``backward`` forms dW_x, dW_h, db
and dx from all L steps at once. Only the (B, H) x (H, G) products stay in the time loop.

The sigmoid is written sigma(a) = (1 + tanh(a / 2)) / 2, an identity that never overflows
(1 / (1 + exp(-a)) overflows exp for a < -709 in float64, a < -88 in float32).

Letters: B batch, L length, D input size, H hidden size, G = (number of gates) * H.

References:
    S. Hochreiter and J. Schmidhuber, "Long Short-Term Memory", Neural Computation 9(8), 1997.
    F. A. Gers, J. Schmidhuber and F. Cummins, "Learning to Forget: Continual Prediction with
    LSTM", Neural Computation 12(10), 2000 (the forget gate).
    F. A. Gers, N. Schraudolph and J. Schmidhuber, "Learning Precise Timing with LSTM Recurrent
    Networks", JMLR 3, 2002 (peepholes).
    K. Greff, R. K. Srivastava, J. Koutnik, B. R. Steunebrink and J. Schmidhuber, "LSTM: A Search
    Space Odyssey", IEEE TNNLS 28(10), 2017, section II (the variants).
    Deliberate differences: Greff et al.'s "vanilla" LSTM has peepholes (our "peephole"); ours is
    torch's LSTM, their NP variant. torch keeps two biases b_ih and b_hh; only their sum matters,
    so ``from_torch`` folds them into b. ``init`` sets the forget-gate bias to ``forget_bias``
    (1.0, after Jozefowicz, Zaremba and Sutskever, ICML 2015) where torch draws it at random.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import NamedTuple

import numpy as np

from .core.backend import device_of, xp_of, zeros
from .core.checks import check_floating, check_positive_int, check_shape

__all__ = ["init", "step", "forward", "backward", "zero_state", "example", "from_torch", "cell",
           "sigmoid", "LSTMCache", "FORMS",
           "GATES", "VARIANTS", "STATE"]

#: The gate blocks of each variant, in the column order of W_x, W_h and b.
GATES = {"vanilla": "ifgo", "no_forget_gate": "igo", "coupled": "igo", "no_output_gate": "ifg",
         "peephole": "ifgo"}
VARIANTS = tuple(GATES)
#: What the recurrent state is: a pair (h, c). Generic code (rnnkit.stack) reads this.
STATE = ("h", "c")
FORMS = ()
_PEEPHOLES = ("p_i", "p_f", "p_o")


class LSTMCache(NamedTuple):
    """What ``backward`` needs from ``forward``."""

    variant: str
    x: object       # (B, L, D) inputs
    h0: object      # (B, H)    initial hidden state
    c0: object      # (B, H)    initial cell state
    h_all: object   # (B, L, H) h_1 ... h_L
    c_all: object   # (B, L, H) c_1 ... c_L
    act: object     # (B, L, G) gate activations (i, f, g, o), laid out like z


def sigmoid(xp, a):
    """Logistic sigmoid 1 / (1 + exp(-a)) as (1 + tanh(a / 2)) / 2: no overflow for any a.

    Accurate to absolute rounding error (about 1e-16 in float64), which is what a gate needs; below
    a = -37 (float64) it returns 0 where the exact value is under 1e-16.
    """
    return 0.5 + 0.5 * xp.tanh(0.5 * a)


def _check_variant(variant) -> None:
    if variant not in GATES:
        raise ValueError(f"variant: expected one of {', '.join(map(repr, VARIANTS))}, got {variant!r}")


def init(rng: np.random.Generator, D: int, H: int, *, variant: str = "vanilla",
         forget_bias: float | None = 1.0, dtype=np.float64) -> dict:
    """Random LSTM parameters, uniform in [-1/sqrt(H), 1/sqrt(H)] like ``torch.nn.LSTM``.

    Args:
        rng: NumPy random generator.  D: input size.  H: hidden size.
        variant: one of ``VARIANTS`` (module docstring).
        forget_bias: value of the forget-gate bias b_f (ignored by variants without f); None keeps
            the uniform draw, as torch does.
    Returns:
        dict with W_x (D, G), W_h (H, G), b (G,), and for "peephole" p_i, p_f, p_o (H,), where
        G = len(GATES[variant]) * H; NumPy arrays of ``dtype``.
    """
    _check_variant(variant)
    check_positive_int("D", D)
    check_positive_int("H", H)
    G = len(GATES[variant]) * H
    bound = 1.0 / np.sqrt(H)
    params = {"W_x": rng.uniform(-bound, bound, (D, G)), "W_h": rng.uniform(-bound, bound, (H, G)),
              "b": rng.uniform(-bound, bound, (G,))}
    if "f" in GATES[variant] and forget_bias is not None:
        k = GATES[variant].index("f")
        params["b"][k * H:(k + 1) * H] = forget_bias
    if variant == "peephole":
        params.update({p: rng.uniform(-bound, bound, (H,)) for p in _PEEPHOLES})
    return {k: v.astype(dtype) for k, v in params.items()}


def _check_params(params: dict, variant: str, dims: dict, src: dict) -> None:
    _check_variant(variant)
    keys = ("W_x", "W_h", "b") + (_PEEPHOLES if variant == "peephole" else ())
    for key in keys:
        if key not in params:
            raise ValueError(f"params: expected keys {', '.join(keys)} for variant {variant!r}, "
                             f"missing {key!r}")
    if variant != "peephole" and any(p in params for p in _PEEPHOLES):
        raise ValueError(f"params: has peephole weights p_i, p_f, p_o but variant is {variant!r} "
                         f"(pass variant='peephole')")
    check_shape("params['W_h']", params["W_h"], "H G", dims, src)
    n_gates = len(GATES[variant])
    if dims["G"] != n_gates * dims["H"]:
        raise ValueError(f"params['W_h']: expected shape (H, {n_gates}H) for variant {variant!r} "
                         f"(gates {', '.join(GATES[variant])}), got {tuple(params['W_h'].shape)}")
    check_shape("params['W_x']", params["W_x"], "D G", dims, src)
    check_shape("params['b']", params["b"], "G", dims, src)
    for p in keys[3:]:
        check_shape(f"params['{p}']", params[p], "H", dims, src)


def _check_state(name: str, state, dims: dict, src: dict):
    if not isinstance(state, (tuple, list)) or len(state) != 2:
        raise ValueError(f"{name}: expected a pair (h, c) of (B, H) arrays, got {type(state).__name__}")
    check_shape(f"{name}[0]", state[0], "B H", dims, src)
    check_shape(f"{name}[1]", state[1], "B H", dims, src)
    return state[0], state[1]


def _new(xp, fill, shape, like):
    return fill(shape, dtype=like.dtype, device=device_of(like))


def _transposed_copy(xp, W):
    """W^T copied into a new row-major array.

    The time loops use W_h^T stored this way: ``forward`` forms h_{t-1} W_h as (W_h^T h_{t-1}^T)^T,
    ``backward`` forms dz_t W_h^T. With W_h as stored (rows G floats apart, 4 KiB in float32 when
    G = 1024) OpenBLAS ran these small per-step products about 1.4-1.6x slower on the book's
    benchmark (B=32, H=256); the copy costs one pass over W_h per call.
    """
    W_T = _new(xp, xp.empty, (W.shape[1], W.shape[0]), W)
    W_T[...] = W.T
    return W_T


def _cell(xp, variant: str, params: dict, z, c_prev):
    """Equations (2.2)-(2.8) for one step, from the pre-activations z (B, G) of (2.1).

    Returns h_t (B, H), c_t (B, H) and the gate activations, a tuple of (B, H) in GATES order.
    """
    H = c_prev.shape[-1]
    zs = {gate: z[:, k * H:(k + 1) * H] for k, gate in enumerate(GATES[variant])}   # each (B, H)
    peep = variant == "peephole"
    act = {"i": sigmoid(xp, zs["i"] + params["p_i"] * c_prev if peep else zs["i"]),  # (2.2)/(2.8)
           "g": xp.tanh(zs["g"])}                                                    # (2.4)
    i, g = act["i"], act["g"]
    if variant == "no_forget_gate":
        c = c_prev + i * g                                                   # (2.5), f = 1
    elif variant == "coupled":
        c = (1.0 - i) * c_prev + i * g                                       # (2.5), f = 1 - i
    else:
        act["f"] = sigmoid(xp, zs["f"] + params["p_f"] * c_prev if peep else zs["f"])  # (2.3)
        c = act["f"] * c_prev + i * g                                        # (2.5)
    tanh_c = xp.tanh(c)
    if variant == "no_output_gate":
        h = tanh_c                                                           # (2.7), o = 1
    else:
        act["o"] = sigmoid(xp, zs["o"] + params["p_o"] * c if peep else zs["o"])       # (2.6)/(2.8)
        h = act["o"] * tanh_c                                                # (2.7)
    return h, c, tuple(act[gate] for gate in GATES[variant])


def zero_state(params: dict, x):
    """(h_0, c_0) = (0, 0): a pair of (B, H) zeros with the batch size, dtype and device of ``x``."""
    xp, shape = xp_of(x), (x.shape[0], params["W_h"].shape[0])
    return zeros(xp, shape, like=x), zeros(xp, shape, like=x)


def example(rng: np.random.Generator, *, dtype=np.float64):
    """A small instance for the contract tests (rnnkit/PROTOCOL.md): (params, x, options)."""
    return (init(rng, 3, 4, variant="peephole", dtype=dtype),
            rng.standard_normal((2, 5, 3)).astype(dtype), {"variant": "peephole"})


def step(params: dict, x_t, state=None, *, variant: str = "vanilla"):
    """One time step, equations (2.1)-(2.8).

    Args:
        params: as from ``init(..., variant=variant)``.
        x_t: (B, D) input at step t.  state: the pair (h_{t-1}, c_{t-1}), each (B, H); zeros
            if None.
        variant: one of ``VARIANTS``.
    Returns:
        h_t (B, H), the new state (h_t, c_t).
    """
    dims, src = {}, {}
    _check_params(params, variant, dims, src)
    check_shape("x_t", x_t, "B D", dims, src)
    check_floating("x_t", x_t)
    if state is None:
        state = zero_state(params, x_t)
    h_prev, c_prev = _check_state("state", state, dims, src)
    xp = xp_of(x_t, h_prev, params["W_h"])
    z = x_t @ params["W_x"] + h_prev @ params["W_h"] + params["b"]       # (B, G)  (2.1)
    h, c, _ = _cell(xp, variant, params, z, c_prev)
    return h, (h, c)


def forward(params: dict, x, state=None, return_cache: bool = False, *, variant: str = "vanilla"):
    """Run the LSTM over a whole sequence, with the input projection hoisted out of the loop.

    Args:
        params: as from ``init(..., variant=variant)``.
        x: (B, L, D) inputs.  state: the pair (h0, c0), each (B, H); zeros if None.
        return_cache: also return the ``LSTMCache`` that ``backward`` needs.
        variant: one of ``VARIANTS``.
    Returns:
        h_all (B, L, H), the final state (h_L, c_L) each (B, H)[, cache]
    """
    dims, src = {}, {}
    _check_params(params, variant, dims, src)
    check_shape("x", x, "B L D", dims, src)
    check_floating("x", x)
    xp = xp_of(x, params["W_h"])
    B, L, D, H, G = dims["B"], dims["L"], dims["D"], dims["H"], dims["G"]
    # (2.1), input part for every t in one product: (B L, D) x (D, G)
    xw = xp.reshape(xp.reshape(x, (B * L, D)) @ params["W_x"] + params["b"], (B, L, G))
    if state is None:
        h0 = c0 = _new(xp, xp.zeros, (B, H), xw)
    else:
        h0, c0 = _check_state("state", state, dims, src)
    h_all = _new(xp, xp.empty, (B, L, H), xw)
    if return_cache:  # what backward needs; inference skips storing it
        c_all = _new(xp, xp.empty, (B, L, H), xw)
        act_all = _new(xp, xp.empty, (B, L, G), xw)
    # h_{t-1} W_h computed as (W_h^T h_{t-1}^T)^T: the same product, in BLAS's faster orientation.
    W_h_T, h, c = _transposed_copy(xp, params["W_h"]), h0, c0             # (G, H)
    for t in range(L):
        h, c, act = _cell(xp, variant, params, xw[:, t, :] + (W_h_T @ h.T).T, c)   # (2.1)-(2.8)
        h_all[:, t, :] = h
        if return_cache:
            c_all[:, t, :] = c
            for k, a in enumerate(act):
                act_all[:, t, k * H:(k + 1) * H] = a
    if return_cache:
        return h_all, (h, c), LSTMCache(variant, x, h0, c0, h_all, c_all, act_all)
    return h_all, (h, c)


def _cell_backward(variant: str, params: dict, dh, dc_rec, act, tanh_c, c_prev):
    """Equations (2.9)-(2.12) for one step.

    Args: dh (B, H) total gradient on h_t; dc_rec (B, H) gradient from step t+1 along the cell;
        act (B, G) this step's gate activations; tanh_c (B, H); c_prev (B, H) c_{t-1}.
    Returns: the pre-activation gradients, a dict gate -> (B, H); dc_{t-1}^{rec}, what c_{t-1} receives.
    """
    H = dh.shape[-1]
    a = {gate: act[:, k * H:(k + 1) * H] for k, gate in enumerate(GATES[variant])}
    i, g = a["i"], a["g"]
    peep = variant == "peephole"
    dz = {}
    if variant == "no_output_gate":
        dc = dc_rec + dh * (1.0 - tanh_c * tanh_c)                           # (2.10), o = 1
    else:
        o = a["o"]
        dz["o"] = dh * tanh_c * o * (1.0 - o)                                # (2.9)
        dc = dc_rec + dh * o * (1.0 - tanh_c * tanh_c)                       # (2.10)
        if peep:
            dc = dc + dz["o"] * params["p_o"]
    dz["g"] = dc * i * (1.0 - g * g)                                         # (2.11)
    if variant == "no_forget_gate":
        dz["i"] = dc * g * i * (1.0 - i)
        dc_prev = dc                                                         # (2.12), f = 1
    elif variant == "coupled":
        dz["i"] = dc * (g - c_prev) * i * (1.0 - i)
        dc_prev = dc * (1.0 - i)                                             # (2.12), f = 1 - i
    else:
        f = a["f"]
        dz["i"] = dc * g * i * (1.0 - i)                                     # (2.11)
        dz["f"] = dc * c_prev * f * (1.0 - f)
        dc_prev = dc * f                                                     # (2.12)
        if peep:
            dc_prev = dc_prev + dz["i"] * params["p_i"] + dz["f"] * params["p_f"]
    return dz, dc_prev


def backward(params: dict, dh_all, cache: LSTMCache, dstate=None, *, truncate: int | None = None):
    """Backpropagation through time, equations (2.9)-(2.14).

    Args:
        params: the parameters used in ``forward``.
        dh_all: (B, L, H) dLoss/dh_t from the outputs at each step.
        cache: from ``forward(..., return_cache=True)`` (it knows the variant).
        dstate: the pair (dh_L, dc_L), each (B, H) or None: extra gradient on the final state.
        truncate: if k, the recurrent gradients (on h and on c) are cut every k steps counted from
            the start, exactly what running the sequence in chunks of k with the state detached
            between chunks gives (truncated BPTT).
    Returns:
        grads keyed like ``params`` (same shapes); dx (B, L, D); the pair (dh0, dc0), each (B, H).
    """
    variant, x, h0, c0, h_all, c_all, act_all = cache
    dims, src = {}, {}
    _check_params(params, variant, dims, src)
    check_shape("cache.h_all", h_all, "B L H", dims, src)
    check_shape("dh_all", dh_all, "B L H", dims, src)
    check_positive_int("truncate", truncate, allow_none=True)
    xp = xp_of(dh_all, h_all)
    B, L, D, H, G = dims["B"], dims["L"], dims["D"], dims["H"], dims["G"]
    dh_rec, dc_rec = _new(xp, xp.zeros, (B, H), h_all), _new(xp, xp.zeros, (B, H), h_all)
    if dstate is not None:
        if not isinstance(dstate, (tuple, list)) or len(dstate) != 2:
            raise ValueError(f"dstate: expected a pair (dh, dc) of (B, H) arrays or None, "
                             f"got {type(dstate).__name__}")
        for k, d in enumerate(dstate):
            if d is not None:
                check_shape(f"dstate[{k}]", d, "B H", dims, src)
        dh_rec = dh_rec if dstate[0] is None else dh_rec + dstate[0]
        dc_rec = dc_rec if dstate[1] is None else dc_rec + dstate[1]
    tanh_c_all = xp.tanh(c_all)                                              # (B, L, H)
    c_prev_all = xp.concat([c0[:, None, :], c_all[:, :-1, :]], axis=1)       # (B, L, H) c_{t-1}
    dz_all = _new(xp, xp.empty, (B, L, G), h_all)                            # (B, L, G)
    W_h_T = _transposed_copy(xp, params["W_h"])                              # (G, H)
    for t in range(L - 1, -1, -1):
        dz, dc_rec = _cell_backward(variant, params, dh_all[:, t, :] + dh_rec, dc_rec,
                                    act_all[:, t, :], tanh_c_all[:, t, :], c_prev_all[:, t, :])
        for k, gate in enumerate(GATES[variant]):
            dz_all[:, t, k * H:(k + 1) * H] = dz[gate]
        dh_rec = dz_all[:, t, :] @ W_h_T                                     # (2.13)
        if truncate is not None and t % truncate == 0 and t > 0:
            dh_rec, dc_rec = xp.zeros_like(dh_rec), xp.zeros_like(dc_rec)   # state was detached
    # (2.14): the weight, bias and input gradients need no recurrence, one product each.
    h_prev_all = xp.concat([h0[:, None, :], h_all[:, :-1, :]], axis=1)       # (B, L, H) h_{t-1}
    dz_flat = xp.reshape(dz_all, (B * L, G))
    grads = {"W_x": xp.reshape(x, (B * L, D)).T @ dz_flat,
             "W_h": xp.reshape(h_prev_all, (B * L, H)).T @ dz_flat,
             "b": xp.sum(dz_flat, axis=0)}
    if variant == "peephole":
        def block(gate):
            k = GATES[variant].index(gate)
            return dz_all[:, :, k * H:(k + 1) * H]                           # (B, L, H)

        grads["p_i"] = xp.sum(block("i") * c_prev_all, axis=(0, 1))
        grads["p_f"] = xp.sum(block("f") * c_prev_all, axis=(0, 1))
        grads["p_o"] = xp.sum(block("o") * c_all, axis=(0, 1))
    dx = xp.reshape(dz_flat @ params["W_x"].T, (B, L, D))
    return grads, dx, (dh_rec, dc_rec)


def cell(variant: str = "vanilla") -> SimpleNamespace:
    """The LSTM surface with ``variant`` bound, for code that takes a cell module.

    ``rnnkit.training.charlm`` and ``rnnkit.stack`` call ``cell.init``, ``cell.forward(params, x, state)``
    and ``cell.backward``; the parameters alone cannot say whether a 3-gate LSTM is NFG or CIFG,
    so pass ``lstm.cell("coupled")`` to them instead of the module.
    """
    _check_variant(variant)

    def init_(rng, D, H, **kwargs):
        return init(rng, D, H, variant=variant, **kwargs)

    def step_(params, x_t, state=None):
        return step(params, x_t, state, variant=variant)

    def forward_(params, x, state=None, return_cache=False):
        return forward(params, x, state, return_cache, variant=variant)

    return SimpleNamespace(__name__=f"rnnkit.lstm.cell({variant!r})", variant=variant, STATE=STATE,
                           init=init_, step=step_, forward=forward_, backward=backward,
                           from_torch=from_torch)


def from_torch(module) -> list:
    """Parameters of a ``torch.nn.LSTM`` as a list of rnnkit dicts (variant "vanilla"), one per layer.

    torch computes the gates from x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh with rows in the order
    i, f, g, o, our order: W_x = W_ih^T, W_h = W_hh^T, b = b_ih + b_hh. The arrays are float64 NumPy
    copies. For bidirectional modules use ``rnnkit.stack.from_torch``.
    """
    import torch  # noqa: PLC0415

    if not isinstance(module, torch.nn.LSTM):
        raise ValueError(f"module: expected torch.nn.LSTM, got {type(module).__name__}")
    if module.bidirectional:
        raise ValueError("module.bidirectional: expected False (use rnnkit.stack.from_torch), got True")
    if module.proj_size:
        raise ValueError(f"module.proj_size: expected 0, got {module.proj_size}")
    layers = []
    for k in range(module.num_layers):
        def get(name):
            return getattr(module, f"{name}_l{k}").detach().cpu().double().numpy()

        W_ih, W_hh = get("weight_ih"), get("weight_hh")
        b = get("bias_ih") + get("bias_hh") if module.bias else np.zeros(W_hh.shape[0])
        layers.append({"W_x": W_ih.T.copy(), "W_h": W_hh.T.copy(), "b": b})
    return layers
