"""The Elman recurrent network (simple recurrent network) and backpropagation through time.

Equations, numbered as in chapter 1 (row-vector convention: x_t is (B, D), h_t is (B, H)):

    (1.1)  a_t = x_t W_xh + h_{t-1} W_hh + b_h
    (1.2)  h_t = tanh(a_t)

Backpropagation through time, with g_t = dLoss/dh_t from the outputs at step t:

    (1.3)  dh_t  = g_t + dh_t^{rec},  dh_L^{rec} = 0 (or dstate)   total gradient reaching h_t
    (1.4)  da_t  = dh_t * (1 - h_t^2)                   through tanh
    (1.5)  dh_{t-1}^{rec} = da_t W_hh^T                 what h_{t-1} receives through a_t

    (1.6)  dW_xh = sum_t x_t^T da_t,  dW_hh = sum_t h_{t-1}^T da_t,  db_h = sum_t 1^T da_t
    (1.7)  dx_t  = da_t W_xh^T
(dh_t^{rec} is indexed by the step that receives it: the gradient reaching h_t from a_{t+1}.)

Args use the book's letters: B batch, L length, D input size, H hidden size.

References:
    J. L. Elman, "Finding Structure in Time", Cognitive Science 14(2), 1990.
    P. J. Werbos, "Backpropagation through time: what it does and how to do it", Proc. IEEE 1990.
    R. J. Williams and J. Peng, "An efficient gradient-based algorithm for on-line training of
    recurrent network trajectories", Neural Computation 1990 (truncated BPTT).
    PyTorch's ``torch.nn.RNN`` keeps two biases, b_ih and b_hh; only their sum matters, so
    ``from_torch`` folds them into b_h.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .core.backend import xp_of, zeros
from .core.checks import check_floating, check_params, check_positive_int, check_shape

__all__ = ["init", "step", "forward", "backward", "zero_state", "example", "forward_layers",
           "from_torch", "ElmanCache", "STATE", "FORMS"]

STATE = ("h",)  # the cell's state is the hidden state alone (rnnkit.stack reads this)
FORMS = ()      # no further equivalent forms: the recurrence is nonlinear


class ElmanCache(NamedTuple):
    """What ``backward`` needs from ``forward``: the inputs and every hidden state."""

    x: object      # (B, L, D) inputs
    h0: object     # (B, H)    initial state
    h_all: object  # (B, L, H) h_1 ... h_L


def init(rng: np.random.Generator, D: int, H: int, *, spectral_radius: float | None = None,
         dtype=np.float64) -> dict:
    """Random Elman parameters, uniform in [-1/sqrt(H), 1/sqrt(H)] like ``torch.nn.RNN``.

    Args:
        rng: NumPy random generator (seed it for reproducible chapters).
        D: input size. H: hidden size.
        spectral_radius: if given, W_hh is rescaled so that max |eigenvalue| equals it (the knob
            of the vanishing/exploding-gradient experiment in section 1.6).
    Returns:
        dict with W_xh (D, H), W_hh (H, H), b_h (H,), NumPy arrays of ``dtype``.
    """
    check_positive_int("D", D)
    check_positive_int("H", H)
    bound = 1.0 / np.sqrt(H)
    params = {
        "W_xh": rng.uniform(-bound, bound, size=(D, H)),
        "W_hh": rng.uniform(-bound, bound, size=(H, H)),
        "b_h": rng.uniform(-bound, bound, size=(H,)),
    }
    if spectral_radius is not None:
        if spectral_radius < 0:
            raise ValueError(f"spectral_radius: expected a non-negative number, got {spectral_radius}")
        rho = np.max(np.abs(np.linalg.eigvals(params["W_hh"])))
        params["W_hh"] = params["W_hh"] * (spectral_radius / rho)
    return {k: v.astype(dtype) for k, v in params.items()}


def _check_params(params: dict, dims: dict, src: dict) -> None:
    check_params(params, (("W_xh", "D H"), ("W_hh", "H H"), ("b_h", "H")), dims, src)


def zero_state(params: dict, x):
    """h_0 = 0: (B, H) zeros with the batch size, dtype and device of ``x`` ((B, D) or (B, L, D))."""
    return zeros(xp_of(x), (x.shape[0], params["W_hh"].shape[0]), like=x)


def example(rng: np.random.Generator, *, dtype=np.float64):
    """A small instance for the contract tests (rnnkit/PROTOCOL.md): (params, x, options)."""
    return init(rng, 3, 4, dtype=dtype), rng.standard_normal((2, 5, 3)).astype(dtype), {}


def step(params: dict, x_t, state=None):
    """One time step, equations (1.1)-(1.2).

    Args:
        params: W_xh (D, H), W_hh (H, H), b_h (H,).
        x_t: (B, D) input at step t.  state: (B, H) previous state h_{t-1}, zeros if None.
    Returns:
        (h_t, h_t): the output and the new state, both (B, H): for the Elman cell they are the
        same array (rnnkit/PROTOCOL.md: ``step`` always returns (y, state)).
    """
    dims, src = {}, {}
    _check_params(params, dims, src)
    check_shape("x_t", x_t, "B D", dims, src)
    check_floating("x_t", x_t)
    if state is None:
        state = zero_state(params, x_t)
    check_shape("state", state, "B H", dims, src)
    xp = xp_of(x_t, state, params["W_hh"])
    h = xp.tanh(x_t @ params["W_xh"] + state @ params["W_hh"] + params["b_h"])
    return h, h


def forward(params: dict, x, state=None, return_cache: bool = False):
    """Run the Elman RNN over a whole sequence.

    The input projection x_t W_xh + b_h does not depend on h, so it is computed for all L steps
    in one matrix product before the loop ("hoisting"); only h_{t-1} W_hh stays sequential.

    Args:
        params: W_xh (D, H), W_hh (H, H), b_h (H,).
        x: (B, L, D) inputs.  state: (B, H) initial state h_0, zeros if None.
        return_cache: also return the ``ElmanCache`` that ``backward`` needs.
    Returns:
        h_all (B, L, H), h_last (B, H)[, cache]
    """
    dims, src = {}, {}
    _check_params(params, dims, src)
    check_shape("x", x, "B L D", dims, src)
    check_floating("x", x)
    xp = xp_of(x, params["W_hh"])
    L = dims["L"]
    h0 = zero_state(params, x) if state is None else state
    check_shape("state", h0, "B H", dims, src)
    xw = x @ params["W_xh"] + params["b_h"]        # (B, L, H)  (1.1), input part for every t
    h, hs = h0, []
    for t in range(L):
        h = xp.tanh(xw[:, t, :] + h @ params["W_hh"])  # (B, H)  (1.1)-(1.2)
        hs.append(h)
    h_all = xp.stack(hs, axis=1)                    # (B, L, H)
    if return_cache:
        return h_all, h, ElmanCache(x, h0, h_all)
    return h_all, h


def backward(params: dict, dh_all, cache: ElmanCache, dstate=None, *, truncate: int | None = None):
    """Backpropagation through time, equations (1.3)-(1.7).

    Args:
        params: the parameters used in ``forward``.
        dh_all: (B, L, H) dLoss/dh_t from the outputs at each step (g_t in (1.3)).
        cache: from ``forward(..., return_cache=True)``.
        dstate: (B, H) extra gradient on the final state h_L (when it feeds a later computation).
        truncate: if k, the recurrent gradient is cut every k steps counted from the start
            (chunks [0, k), [k, 2k), ...): exactly what you get by running the sequence in chunks
            of k and detaching the state between them (truncated BPTT, Williams and Peng 1990).
    Returns:
        grads: dict with W_xh (D, H), W_hh (H, H), b_h (H,), keyed like ``params``;
        dx: (B, L, D); dh0: (B, H) gradient on the initial state.
    """
    x, h0, h_all = cache
    dims, src = {}, {}
    _check_params(params, dims, src)
    check_shape("cache.h_all", h_all, "B L H", dims, src)
    check_shape("dh_all", dh_all, "B L H", dims, src)
    check_positive_int("truncate", truncate, allow_none=True)
    xp = xp_of(dh_all, h_all)
    B, L, H = dims["B"], dims["L"], dims["H"]
    D = dims["D"]
    W_hh = params["W_hh"]
    dh_rec = zeros(xp, (B, H), like=h_all)
    if dstate is not None:
        check_shape("dstate", dstate, "B H", dims, src)
        dh_rec = dh_rec + dstate
    da_all = zeros(xp, (B, L, H), like=h_all)           # (B, L, H)
    tanh_grad = 1.0 - h_all * h_all                  # (B, L, H)  tanh'(a_t), for (1.4)
    for t in range(L - 1, -1, -1):
        dh = dh_all[:, t, :] + dh_rec                # (1.3)
        da = dh * tanh_grad[:, t, :]                 # (1.4)
        dh_rec = da @ W_hh.T                         # (1.5)
        if truncate is not None and t % truncate == 0 and t > 0:
            dh_rec = xp.zeros_like(dh_rec)           # chunk boundary: the state was detached
        da_all[:, t, :] = da
    # Only (1.3)-(1.5) are sequential. The sums over t in (1.6) and the input gradient (1.7) are
    # one large product each once every da_t is known (much faster than L small products).
    h_prev = xp.concat([xp.reshape(h0, (B, 1, H)), h_all[:, :-1, :]], axis=1)  # (B, L, H) h_{t-1}
    x_flat = xp.reshape(x, (B * L, D))
    da_flat = xp.reshape(da_all, (B * L, H))
    grads = {"W_xh": x_flat.T @ da_flat,
             "W_hh": xp.reshape(h_prev, (B * L, H)).T @ da_flat,
             "b_h": xp.sum(da_flat, axis=0)}
    dx = xp.reshape(da_flat @ params["W_xh"].T, (B, L, D))
    return grads, dx, dh_rec


def forward_layers(layers: list, x, state=None):
    """A stack of Elman layers, layer k reading layer k-1's hidden states (like ``num_layers``).

    Args:
        layers: list of parameter dicts, bottom first.  x: (B, L, D).
        state: (n_layers, B, H) initial states, zeros if None.
    Returns:
        h_all of the top layer (B, L, H), h_last of every layer (n_layers, B, H), as torch does.
    """
    if not layers:
        raise ValueError("layers: expected a non-empty list of parameter dicts, got []")
    xp = xp_of(x)
    lasts, h = [], x
    for k, params in enumerate(layers):
        h, last = forward(params, h, None if state is None else state[k])
        lasts.append(last)
    return h, xp.stack(lasts, axis=0)


def from_torch(module) -> list:
    """Parameters of a ``torch.nn.RNN`` (tanh) as a list of rnnkit dicts, one per layer.

    torch computes h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), so W_xh = W_ih^T,
    W_hh = W_hh^T and b_h = b_ih + b_hh. The arrays are float64 NumPy copies.
    """
    import torch  # noqa: PLC0415

    if not isinstance(module, torch.nn.RNN):
        raise ValueError(f"module: expected torch.nn.RNN, got {type(module).__name__}")
    if module.nonlinearity != "tanh":
        raise ValueError(f"module.nonlinearity: expected 'tanh', got {module.nonlinearity!r}")
    if module.bidirectional:
        raise ValueError("module.bidirectional: expected False (use the bidirectional wrapper), got True")
    if getattr(module, "proj_size", 0):
        raise ValueError(f"module.proj_size: expected 0, got {module.proj_size}")
    layers = []
    for k in range(module.num_layers):
        def get(name):
            return getattr(module, f"{name}_l{k}").detach().cpu().double().numpy()

        W_ih, W_hh = get("weight_ih"), get("weight_hh")
        b_h = get("bias_ih") + get("bias_hh") if module.bias else np.zeros(W_hh.shape[0])
        layers.append({"W_xh": W_ih.T.copy(), "W_hh": W_hh.T.copy(), "b_h": b_h})
    return layers
