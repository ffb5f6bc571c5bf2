"""The gated recurrent unit (GRU) in both reset placements, and backpropagation through time.

Equations, numbered as in chapter 3 (row vectors: x_t is (B, D), h_t is (B, H)). The gates come
from fused products whose 3H columns hold the blocks in torch's order r, z, n (n for the candidate
h~_t, torch's "new gate"); W_h = [W_hr | W_hz | W_hn] (H, 3H):

    (3.1)  [a_r | a_z | a_n] = x_t W_x + b                     input part, (B, 3H)
    (3.2)  r_t = sigma(a_r + h_{t-1} W_hr)                      reset gate
    (3.3)  z_t = sigma(a_z + h_{t-1} W_hz)                      update gate
    (3.4a) h~_t = tanh(a_n + r_t * (h_{t-1} W_hn + b_hn))       reset_after=True  (torch, cuDNN)
    (3.4b) h~_t = tanh(a_n + (r_t * h_{t-1}) W_hn)              reset_after=False (Cho et al.)
    (3.5)  h_t = (1 - z_t) * h~_t + z_t * h_{t-1}

Where the reset gate acts. Cho et al. (2014, section 2.3, eq. 5-8) reset the *state* before the
recurrent product, (3.4b): the candidate h~_t sees r_t * h_{t-1}, so the product with W_hn has to
wait for r_t and cannot share one matrix product with the r and z blocks. torch (like cuDNN) resets the
*product*, (3.4a): h_{t-1} W_h for all three blocks is one (B, H) x (H, 3H) product per step, and r_t
scales its n block afterwards. The two are different functions of the same weights. Under (3.4a) the
hidden bias of the n block sits inside the reset, so it cannot be folded into b like the others:
it is the separate parameter b_hn. Under (3.4b) one bias b suffices. The placement is read from the
parameters: a dict with ``b_hn`` is a reset_after GRU, one without is Cho's. (Keras offers both
under the same name, ``reset_after``, and notes that arXiv v1 of Cho et al. had the reset after.)

Backpropagation through time, with dh_t the total gradient on h_t (output at t plus dh_t^{rec},
what h_t receives from step t+1; every rec gradient is indexed by the step that receives it):

    (3.6)  dh~ = dh_t * (1 - z_t),   dz = dh_t * (h_{t-1} - h~_t)
    (3.7)  da_n = dh~ * (1 - h~_t^2),  da_z = dz * z_t (1 - z_t)
    (3.8a) reset_after:  dr = da_n * q_t,  q_t = h_{t-1} W_hn + b_hn  (the n block of the h-side
           product receives da_n * r_t)
    (3.8b) reset_before: ds = da_n W_hn^T (gradient on s = r_t * h_{t-1});  dr = ds * h_{t-1}
    (3.9)  da_r = dr * r_t (1 - r_t), and then what h_{t-1} receives:
           dh_{t-1}^{rec} = dh_t * z_t + [da_r | da_z | da_n * r_t] W_h^T                   (a)
           dh_{t-1}^{rec} = dh_t * z_t + [da_r | da_z] [W_hr | W_hz]^T + ds * r_t           (b)
    (3.10) dW_x = sum_t x_t^T [da_r | da_z | da_n],  db likewise summed,  dx_t = [...] W_x^T;
           dW_h = sum_t h_{t-1}^T [da_r | da_z | da_n * r_t],  db_hn = sum_t 1^T (da_n * r_t)  (a)
           dW_h = [sum_t h_{t-1}^T [da_r | da_z]  |  sum_t (r_t * h_{t-1})^T da_n]            (b)

Letters: B batch, L length, D input size, H hidden size.

References:
    K. Cho, B. van Merrienboer, C. Gulcehre, D. Bahdanau, F. Bougares, H. Schwenk, Y. Bengio,
    "Learning Phrase Representations using RNN Encoder-Decoder for Statistical Machine
    Translation", EMNLP 2014, section 2.3 (the hidden unit, eq. 5-8).
    J. Chung, C. Gulcehre, K. Cho, Y. Bengio, "Empirical Evaluation of Gated Recurrent Neural
    Networks on Sequence Modeling", 2014.
    ``torch.nn.GRU`` documentation (reset after the product, biases b_ih and b_hh). We name the
    update gate z as Cho et al. and torch do, and the candidate h~ as Cho et al. (torch: n).
    ``from_torch`` folds b_ih + b_hh for the r and z blocks into b and keeps b_hn apart.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .core.backend import device_of, xp_of, zeros
from .core.checks import check_floating, check_positive_int, check_shape
from .lstm import sigmoid

__all__ = ["init", "step", "forward", "backward", "zero_state", "example", "from_torch", "GRUCache",
           "STATE", "FORMS"]

#: What the recurrent state is: h alone. Generic code (rnnkit.stack) reads this.
STATE = ("h",)
FORMS = ()


class GRUCache(NamedTuple):
    """What ``backward`` needs from ``forward``."""

    x: object       # (B, L, D) inputs
    h0: object      # (B, H)    initial state
    h_all: object   # (B, L, H) h_1 ... h_L
    act: object     # (B, L, 3H) r_t, z_t, h~_t
    hn: object      # (B, L, H) h_{t-1} W_hn + b_hn (reset_after), None for reset_before


def init(rng: np.random.Generator, D: int, H: int, *, reset_after: bool = True,
         dtype=np.float64) -> dict:
    """Random GRU parameters, uniform in [-1/sqrt(H), 1/sqrt(H)] like ``torch.nn.GRU``.

    Args:
        rng: NumPy random generator.  D: input size.  H: hidden size.
        reset_after: True for torch's placement (3.4a), False for Cho et al.'s (3.4b).
    Returns:
        dict with W_x (D, 3H), W_h (H, 3H), b (3H,) and, if reset_after, b_hn (H,).
    """
    check_positive_int("D", D)
    check_positive_int("H", H)
    bound = 1.0 / np.sqrt(H)
    params = {"W_x": rng.uniform(-bound, bound, (D, 3 * H)),
              "W_h": rng.uniform(-bound, bound, (H, 3 * H)),
              "b": rng.uniform(-bound, bound, (3 * H,))}
    if reset_after:
        params["b_hn"] = rng.uniform(-bound, bound, (H,))
    return {k: v.astype(dtype) for k, v in params.items()}


def _check_params(params: dict, dims: dict, src: dict) -> bool:
    """Check shapes; return reset_after (whether the dict has b_hn)."""
    for key in ("W_x", "W_h", "b"):
        if key not in params:
            raise ValueError(f"params: expected keys W_x, W_h, b (and b_hn for reset_after), "
                             f"missing {key!r}")
    check_shape("params['W_h']", params["W_h"], "H G", dims, src)
    if dims["G"] != 3 * dims["H"]:
        raise ValueError(f"params['W_h']: expected shape (H, 3H) (gates r, z, n), "
                         f"got {tuple(params['W_h'].shape)}")
    check_shape("params['W_x']", params["W_x"], "D G", dims, src)
    check_shape("params['b']", params["b"], "G", dims, src)
    if "b_hn" in params:
        check_shape("params['b_hn']", params["b_hn"], "H", dims, src)
    return "b_hn" in params


def _new(xp, fill, shape, like):
    return fill(shape, dtype=like.dtype, device=device_of(like))


def _cell(xp, params: dict, a, h_prev):
    """Equations (3.2)-(3.5) for one step, from the input part a (B, 3H) of (3.1).

    Returns h_t (B, H), the activations (r, z, h~) each (B, H), and h_{t-1} W_hn + b_hn (B, H)
    under reset_after (None otherwise).
    """
    H = h_prev.shape[-1]
    a_r, a_z, a_n = a[:, :H], a[:, H:2 * H], a[:, 2 * H:]
    W_h = params["W_h"]
    if "b_hn" in params:
        hw = h_prev @ W_h                                                    # (B, 3H), one product
        r = sigmoid(xp, a_r + hw[:, :H])                                     # (3.2)
        z = sigmoid(xp, a_z + hw[:, H:2 * H])                                # (3.3)
        hn = hw[:, 2 * H:] + params["b_hn"]                                  # (B, H)
        h_tilde = xp.tanh(a_n + r * hn)                                      # (3.4a)
    else:
        hw = h_prev @ W_h[:, :2 * H]                                         # (B, 2H)
        r = sigmoid(xp, a_r + hw[:, :H])                                     # (3.2)
        z = sigmoid(xp, a_z + hw[:, H:])                                     # (3.3)
        hn = None
        h_tilde = xp.tanh(a_n + (r * h_prev) @ W_h[:, 2 * H:])               # (3.4b)
    h = (1.0 - z) * h_tilde + z * h_prev                                     # (3.5)
    return h, (r, z, h_tilde), hn


def zero_state(params: dict, x):
    """h_0 = 0: (B, H) zeros with the batch size, dtype and device of ``x``."""
    return zeros(xp_of(x), (x.shape[0], params["W_h"].shape[0]), like=x)


def example(rng: np.random.Generator, *, dtype=np.float64):
    """A small instance for the contract tests (rnnkit/PROTOCOL.md): (params, x, options)."""
    return init(rng, 3, 4, dtype=dtype), rng.standard_normal((2, 5, 3)).astype(dtype), {}


def step(params: dict, x_t, state=None):
    """One time step, equations (3.1)-(3.5).

    Args:
        params: W_x (D, 3H), W_h (H, 3H), b (3H,)[, b_hn (H,)].
        x_t: (B, D) input at step t.  state: (B, H) previous state h_{t-1}, zeros if None.
    Returns:
        (h_t, h_t): the output and the new state (the same (B, H) array).
    """
    dims, src = {}, {}
    _check_params(params, dims, src)
    check_shape("x_t", x_t, "B D", dims, src)
    check_floating("x_t", x_t)
    if state is None:
        state = zero_state(params, x_t)
    check_shape("state", state, "B H", dims, src)
    xp = xp_of(x_t, state, params["W_h"])
    h = _cell(xp, params, x_t @ params["W_x"] + params["b"], state)[0]
    return h, h


def forward(params: dict, x, state=None, return_cache: bool = False):
    """Run the GRU over a whole sequence, with the input part (3.1) hoisted out of the loop.

    Args:
        params: W_x (D, 3H), W_h (H, 3H), b (3H,)[, b_hn (H,)].
        x: (B, L, D) inputs.  state: (B, H) initial state h_0, zeros if None.
        return_cache: also return the ``GRUCache`` that ``backward`` needs.
    Returns:
        h_all (B, L, H), h_last (B, H)[, cache]
    """
    dims, src = {}, {}
    reset_after = _check_params(params, dims, src)
    check_shape("x", x, "B L D", dims, src)
    check_floating("x", x)
    xp = xp_of(x, params["W_h"])
    B, L, D, H = dims["B"], dims["L"], dims["D"], dims["H"]
    xw = xp.reshape(xp.reshape(x, (B * L, D)) @ params["W_x"] + params["b"], (B, L, 3 * H))  # (3.1)
    h0 = zero_state(params, xw) if state is None else state
    check_shape("state", h0, "B H", dims, src)
    h_all = _new(xp, xp.empty, (B, L, H), xw)
    if return_cache:  # what backward needs; inference skips storing it
        act_all = _new(xp, xp.empty, (B, L, 3 * H), xw)
        hn_all = _new(xp, xp.empty, (B, L, H), xw) if reset_after else None
    h = h0
    for t in range(L):
        h, (r, z, h_tilde), hn = _cell(xp, params, xw[:, t, :], h)          # (3.2)-(3.5)
        h_all[:, t, :] = h
        if return_cache:
            act_all[:, t, :H], act_all[:, t, H:2 * H], act_all[:, t, 2 * H:] = r, z, h_tilde
            if reset_after:
                hn_all[:, t, :] = hn
    if return_cache:
        return h_all, h, GRUCache(x, h0, h_all, act_all, hn_all)
    return h_all, h


def backward(params: dict, dh_all, cache: GRUCache, dstate=None, *, truncate: int | None = None):
    """Backpropagation through time, equations (3.6)-(3.10), for either reset placement.

    Args:
        params: the parameters used in ``forward``.
        dh_all: (B, L, H) dLoss/dh_t from the outputs at each step.
        cache: from ``forward(..., return_cache=True)``.
        dstate: (B, H) extra gradient on the final state h_L.
        truncate: if k, the recurrent gradient is cut every k steps counted from the start, as
            running chunks of k with the state detached between them gives (truncated BPTT).
    Returns:
        grads keyed like ``params``; dx (B, L, D); dh0 (B, H).
    """
    x, h0, h_all, act_all, hn_all = cache
    dims, src = {}, {}
    reset_after = _check_params(params, dims, src)
    check_shape("cache.h_all", h_all, "B L H", dims, src)
    check_shape("dh_all", dh_all, "B L H", dims, src)
    check_positive_int("truncate", truncate, allow_none=True)
    if reset_after != (hn_all is not None):
        raise ValueError("cache: comes from a GRU with the other reset placement than params")
    xp = xp_of(dh_all, h_all)
    B, L, D, H = dims["B"], dims["L"], dims["D"], dims["H"]
    dh_rec = _new(xp, xp.zeros, (B, H), h_all)
    if dstate is not None:
        check_shape("dstate", dstate, "B H", dims, src)
        dh_rec = dh_rec + dstate
    h_prev_all = xp.concat([h0[:, None, :], h_all[:, :-1, :]], axis=1)        # (B, L, H) h_{t-1}
    da_all = _new(xp, xp.empty, (B, L, 3 * H), h_all)    # (B, L, 3H) [da_r | da_z | da_n]
    dah_all = _new(xp, xp.empty, (B, L, 3 * H), h_all)   # (B, L, 3H) what the h-side product gets
    # W_h^T copied row-major once: the loop's products with the transposed *view* run ~1.5x slower
    # in OpenBLAS.
    W_h_T = _new(xp, xp.empty, (3 * H, H), h_all)         # (3H, H)
    W_h_T[...] = params["W_h"].T
    for t in range(L - 1, -1, -1):
        r, z, h_tilde = act_all[:, t, :H], act_all[:, t, H:2 * H], act_all[:, t, 2 * H:]
        h_prev = h_prev_all[:, t, :]
        dh = dh_all[:, t, :] + dh_rec
        dh_tilde, dz = dh * (1.0 - z), dh * (h_prev - h_tilde)              # (3.6)
        da_n, da_z = dh_tilde * (1.0 - h_tilde * h_tilde), dz * z * (1.0 - z)   # (3.7)
        if reset_after:
            dr = da_n * hn_all[:, t, :]                                      # (3.8a)
            da_r = dr * r * (1.0 - r)                                        # (3.9)
            dah_all[:, t, :H], dah_all[:, t, H:2 * H], dah_all[:, t, 2 * H:] = da_r, da_z, da_n * r
            dh_rec = dh * z + dah_all[:, t, :] @ W_h_T                       # (3.9a)
        else:
            ds = da_n @ W_h_T[2 * H:, :]                                     # (3.8b)
            dr = ds * h_prev                                                 # (3.8b)
            da_r = dr * r * (1.0 - r)                                        # (3.9)
            dah_all[:, t, :H], dah_all[:, t, H:2 * H] = da_r, da_z
            dh_rec = dh * z + dah_all[:, t, :2 * H] @ W_h_T[:2 * H, :] + ds * r   # (3.9b)
        da_all[:, t, :H], da_all[:, t, H:2 * H], da_all[:, t, 2 * H:] = da_r, da_z, da_n
        if truncate is not None and t % truncate == 0 and t > 0:
            dh_rec = xp.zeros_like(dh_rec)                                   # state was detached
    # (3.10): the weight, bias and input gradients need no recurrence, one product each.
    da_flat = xp.reshape(da_all, (B * L, 3 * H))
    h_prev_flat = xp.reshape(h_prev_all, (B * L, H))
    grads = {"W_x": xp.reshape(x, (B * L, D)).T @ da_flat, "b": xp.sum(da_flat, axis=0)}
    if reset_after:
        dah_flat = xp.reshape(dah_all, (B * L, 3 * H))
        grads["W_h"] = h_prev_flat.T @ dah_flat
        grads["b_hn"] = xp.sum(dah_flat[:, 2 * H:], axis=0)
    else:
        rh_flat = xp.reshape(act_all[:, :, :H] * h_prev_all, (B * L, H))     # r_t * h_{t-1}
        grads["W_h"] = xp.concat([h_prev_flat.T @ xp.reshape(dah_all[:, :, :2 * H], (B * L, 2 * H)),
                                  rh_flat.T @ da_flat[:, 2 * H:]], axis=1)
    dx = xp.reshape(da_flat @ params["W_x"].T, (B, L, D))
    return {k: grads[k] for k in params}, dx, dh_rec


def from_torch(module) -> list:
    """Parameters of a ``torch.nn.GRU`` as a list of rnnkit dicts (reset_after), one per layer.

    torch's rows are in the order r, z, n: W_x = W_ih^T, W_h = W_hh^T, b = b_ih + [b_hr, b_hz, 0],
    b_hn = the n block of b_hh (it sits inside the reset, (3.4a)). The arrays are float64 NumPy
    copies. For bidirectional modules use ``rnnkit.stack.from_torch``.
    """
    import torch  # noqa: PLC0415

    if not isinstance(module, torch.nn.GRU):
        raise ValueError(f"module: expected torch.nn.GRU, got {type(module).__name__}")
    if module.bidirectional:
        raise ValueError("module.bidirectional: expected False (use rnnkit.stack.from_torch), got True")
    layers = []
    for k in range(module.num_layers):
        def get(name):
            return getattr(module, f"{name}_l{k}").detach().cpu().double().numpy()

        W_ih, W_hh = get("weight_ih"), get("weight_hh")
        H = W_hh.shape[1]
        b_ih, b_hh = (get("bias_ih"), get("bias_hh")) if module.bias else (np.zeros(3 * H),) * 2
        b = b_ih + np.concatenate([b_hh[:2 * H], np.zeros(H)])
        layers.append({"W_x": W_ih.T.copy(), "W_h": W_hh.T.copy(), "b": b, "b_hn": b_hh[2 * H:].copy()})
    return layers
