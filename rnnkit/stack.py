"""Deep (stacked) and bidirectional recurrent networks around any cell, and their backward.

Equations, numbered as in chapter 4, for a cell (Elman, LSTM, GRU...) whose state s is h or (h, c):

    (4.1)  h_t^(1) = cell(x_t, s_{t-1}^(1)),   h_t^(k) = cell(h_t^(k-1), s_{t-1}^(k))   deep: layer k
           reads the hidden states of layer k-1; the network's output is the top layer's h_t
    (4.2)  hf_t = cell_fw(x_t, sf_{t-1}),   hb_t = cell_bw(x_t, sb_{t+1}),   y_t = [hf_t | hb_t]
           bidirectional: a second cell reads the sequence backwards (x_L first); (B, L, 2H) out

Backward composes the cells' own ``backward``:

    (4.3)  g_t^(k-1) = dx_t^(k)                     the gradient on layer k's input is the output
                                                    gradient g_t of layer k-1 (chapter 1's g_t); layer
                                                    k-1's own BPTT adds its recurrent part, since
                                                    h_t^(k-1) also feeds h_{t+1}^(k-1)
    (4.4)  dx_t = dx_t^fw + dx_t^bw                 a bidirectional layer splits dy_t = [dhf_t | dhb_t],
                                                    runs cell_bw's backward on the reversed
                                                    sequence, and sums what both send to x_t

A ``layers`` list holds, bottom first, a parameter dict (one direction) or a pair (params_fw,
params_bw) (a bidirectional layer). Final and initial states are stacked like torch's h_n:
(S, B, H) with one slot per layer and direction, in the order layer 0 forward, layer 0 backward,
layer 1 forward...; for a cell whose state is (h, c) they are a pair of such arrays.

A cell is any model module that follows rnnkit/PROTOCOL.md (``forward(params, x, state)``; for the
backward, ``forward(..., return_cache=True)`` and ``backward(params, dy, cache, dstate)``): every
cell of the book runs forward in a stack, and those with a hand-derived backward (elman, lstm, gru,
mingru, lru) run backward too. A cell whose options are not the defaults is passed bound,
``rnnkit.core.registry.bind(rnnkit.scrn, alpha=0.9)`` (``lstm.cell(variant)`` is the same for the LSTM).
Its ``STATE`` attribute names the parts of its state, ("h",) (a bare (B, H) array; the default when
absent) or several names (a tuple of arrays, e.g. ("h", "c") for the LSTM, ("h", "s") for the SCRN,
whose parts may differ in width).

References:
    A. Graves, A. Mohamed, G. Hinton, "Speech Recognition with Deep Recurrent Neural Networks",
    ICASSP 2013, section 2 (deep and deep bidirectional LSTM).
    M. Schuster and K. K. Paliwal, "Bidirectional Recurrent Neural Networks", IEEE Trans. Signal
    Processing 45(11), 1997.
    ``torch.nn.RNN/LSTM/GRU`` with ``num_layers`` and ``bidirectional``: same output and h_n
    layouts. Not modelled: torch's ``dropout`` between layers (parity holds in eval mode or with
    dropout=0) and LSTM ``proj_size``.
"""
from __future__ import annotations

from typing import NamedTuple

from .core.backend import xp_of
from .core.checks import check_positive_int, check_shape

__all__ = ["forward_deep", "backward_deep", "forward_bidirectional", "backward_bidirectional",
           "from_torch", "state_names", "DeepCache", "BidirectionalCache"]


class BidirectionalCache(NamedTuple):
    """What ``backward_bidirectional`` needs: both cells' caches and where dy splits."""

    fw: object     # cache of cell_fw over x
    bw: object     # cache of cell_bw over x reversed in time
    H_fw: int      # width of hf_t: dy[..., :H_fw] belongs to the forward cell


class DeepCache(NamedTuple):
    """What ``backward_deep`` needs: one cache per layer (a BidirectionalCache for a pair)."""

    layers: list


_PART_WIDTH = {"h": "H", "c": "H", "y": "H", "z": "H", "s": "N", "m": "N", "x": "N"}


def state_names(cell) -> tuple:
    """The parts of ``cell``'s state: ("h",) unless the cell says otherwise in ``STATE``."""
    return tuple(getattr(cell, "STATE", ("h",)))


def _is_pair(layer) -> bool:
    return isinstance(layer, (tuple, list))


def _n_slots(layers) -> int:
    return sum(2 if _is_pair(layer) else 1 for layer in layers)


def _check_layers(layers) -> None:
    if not isinstance(layers, (list, tuple)) or not layers:
        raise ValueError(f"layers: expected a non-empty list of parameter dicts or (fw, bw) pairs, "
                         f"got {layers!r}")
    for k, layer in enumerate(layers):
        if _is_pair(layer) and (len(layer) != 2 or not all(isinstance(p, dict) for p in layer)):
            raise ValueError(f"layers[{k}]: expected a parameter dict or a pair (params_fw, params_bw), "
                             f"got a sequence of length {len(layer)}")
        if not _is_pair(layer) and not isinstance(layer, dict):
            raise ValueError(f"layers[{k}]: expected a parameter dict or a pair, got {type(layer).__name__}")


def _check_stacked(name: str, cell, state, dims: dict, src: dict) -> None:
    """``state`` must be (S, B, H), or a tuple of those when the cell's state has several parts.

    Parts may be None (only for gradients: "no extra gradient on this part").
    """
    names = state_names(cell)
    if len(names) == 1:
        check_shape(name, state, "S B H", dims, src)
        return
    # One width letter per part: the LSTM's h and c are both H wide, the SCRN's s and the LMU's m
    # are N wide (the letters of their chapters).
    if not isinstance(state, (tuple, list)) or len(state) != len(names):
        raise ValueError(f"{name}: expected a tuple ({', '.join(names)}) of (S, B, H) arrays for "
                         f"this cell, got {type(state).__name__}")
    for k, part in enumerate(state):
        if part is not None:
            check_shape(f"{name}[{k}]", part, "S B " + _PART_WIDTH.get(names[k], "H"), dims, src)


def _slot(cell, state, s: int):
    """The state of slot s, in the cell's own convention (an array, or a tuple of them)."""
    if state is None:
        return None
    if len(state_names(cell)) == 1:
        return state[s]
    return tuple(None if part is None else part[s] for part in state)


def _stack(cell, xp, states: list, name: str):
    """Per-slot states -> torch's stacked layout (S, B, H) (or a tuple of them)."""
    def stack(arrays):
        shapes = {tuple(a.shape) for a in arrays}
        if len(shapes) > 1:
            raise ValueError(f"{name}: expected every layer to have the same hidden size H (torch's "
                             f"stacked layout), got states of shapes {sorted(shapes)}")
        return xp.stack(arrays, axis=0)

    if len(state_names(cell)) == 1:
        return stack(states)
    return tuple(stack([s[k] for s in states]) for k in range(len(state_names(cell))))


def _cell_name(cell) -> str:
    return getattr(cell, "__name__", type(cell).__name__)


def _forward_cell(cell, params, x, state, return_cache):
    if not return_cache:
        y, last = cell.forward(params, x, state)
        return y, last, None
    if not callable(getattr(cell, "backward", None)):
        raise ValueError(f"cell: {_cell_name(cell)} has no hand-derived backward, so a stack of it "
                         "cannot return a cache for backward_deep; train it with torch autograd "
                         "(rnnkit.training.seqclass) or call forward_deep without return_cache")
    y, last, cache = cell.forward(params, x, state, return_cache=True)
    return y, last, cache


def _bidirectional(cell, params_fw, params_bw, x, s_fw, s_bw, return_cache):
    """Equation (4.2): returns y (B, L, H_fw + H_bw), [final fw state, final bw state], cache."""
    xp = xp_of(x)
    y_fw, last_fw, cache_fw = _forward_cell(cell, params_fw, x, s_fw, return_cache)
    y_bw, last_bw, cache_bw = _forward_cell(cell, params_bw, xp.flip(x, axis=1), s_bw, return_cache)
    y = xp.concat([y_fw, xp.flip(y_bw, axis=1)], axis=-1)                      # (B, L, 2H)
    cache = BidirectionalCache(cache_fw, cache_bw, int(y_fw.shape[-1])) if return_cache else None
    return y, [last_fw, last_bw], cache


def _bidirectional_backward(cell, params_fw, params_bw, dy, cache, ds_fw, ds_bw):
    """Equation (4.4): returns (grads_fw, grads_bw), dx, [dstate0 fw, dstate0 bw]."""
    xp = xp_of(dy)
    H = cache.H_fw
    g_fw, dx_fw, d0_fw = cell.backward(params_fw, dy[..., :H], cache.fw, ds_fw)
    g_bw, dx_bw, d0_bw = cell.backward(params_bw, xp.flip(dy[..., H:], axis=1), cache.bw, ds_bw)
    return (g_fw, g_bw), dx_fw + xp.flip(dx_bw, axis=1), [d0_fw, d0_bw]


def forward_bidirectional(cell, params_fw, params_bw, x, state=None, return_cache: bool = False):
    """A bidirectional layer, equation (4.2), like torch's ``bidirectional=True``.

    Args:
        cell: the cell module (rnnkit.elman, rnnkit.gru, rnnkit.lstm, ``lstm.cell(variant)``...).
        params_fw, params_bw: the two cells' parameters.  x: (B, L, D).
        state: initial states (2, B, H) (a tuple of them for LSTM), forward first; zeros if None.
        return_cache: also return the ``BidirectionalCache``.
    Returns:
        y (B, L, 2H) = [forward h_t | backward h_t], final states (2, B, H) (or a tuple)[, cache].
        The backward cell's final state is the one after reading x_1, as in torch's h_n.
    """
    dims, src = {"S": 2}, {"S": "the two directions"}
    check_shape("x", x, "B L D", dims, src)
    if state is not None:
        _check_stacked("state", cell, state, dims, src)
    y, lasts, cache = _bidirectional(cell, params_fw, params_bw, x, _slot(cell, state, 0),
                                     _slot(cell, state, 1), return_cache)
    state_n = _stack(cell, xp_of(x), lasts, "params_bw")
    return (y, state_n, cache) if return_cache else (y, state_n)


def backward_bidirectional(cell, params_fw, params_bw, dy, cache: BidirectionalCache, dstate=None):
    """Backward of ``forward_bidirectional``, equation (4.4).

    Args:
        dy: (B, L, 2H) gradient on y.  cache: from ``forward_bidirectional(..., return_cache=True)``.
        dstate: gradient on the final states, (2, B, H) (a tuple for LSTM, parts may be None).
    Returns:
        (grads_fw, grads_bw) keyed like the parameters; dx (B, L, D); dstate0 like ``state``.
    """
    dims, src = {"S": 2}, {"S": "the two directions"}
    check_shape("dy", dy, "B L Y", dims, src)
    if not isinstance(cache, BidirectionalCache):
        raise ValueError(f"cache: expected a BidirectionalCache, got {type(cache).__name__}")
    dims["H"], src["H"] = cache.H_fw, "cache"
    if dstate is not None:
        _check_stacked("dstate", cell, dstate, dims, src)
    grads, dx, d0 = _bidirectional_backward(cell, params_fw, params_bw, dy, cache,
                                            _slot(cell, dstate, 0), _slot(cell, dstate, 1))
    return grads, dx, _stack(cell, xp_of(dy), d0, "dstate0")


def forward_deep(cell, layers: list, x, state=None, return_cache: bool = False):
    """A stack of layers, equation (4.1); pairs in ``layers`` are bidirectional layers (4.2).

    Args:
        cell: the cell module.  layers: bottom first, each a parameter dict or a pair (fw, bw).
        x: (B, L, D).  state: initial states (S, B, H), S = one slot per layer and direction
            (a tuple of such arrays for LSTM); zeros if None.
        return_cache: also return the ``DeepCache``.
    Returns:
        the top layer's output (B, L, H) (or (B, L, 2H) if it is bidirectional), the final states
        (S, B, H) (or a tuple) in torch's h_n order[, cache].
    """
    _check_layers(layers)
    dims, src = {"S": _n_slots(layers)}, {"S": "layers"}
    check_shape("x", x, "B L D", dims, src)
    if state is not None:
        _check_stacked("state", cell, state, dims, src)
    y, lasts, caches, s = x, [], [], 0
    for layer in layers:
        if _is_pair(layer):
            y, last, cache = _bidirectional(cell, layer[0], layer[1], y, _slot(cell, state, s),
                                            _slot(cell, state, s + 1), return_cache)
            lasts += last
            s += 2
        else:
            y, last, cache = _forward_cell(cell, layer, y, _slot(cell, state, s), return_cache)
            lasts.append(last)
            s += 1
        caches.append(cache)
    state_n = _stack(cell, xp_of(x), lasts, "layers")
    return (y, state_n, DeepCache(caches)) if return_cache else (y, state_n)


def backward_deep(cell, layers: list, dy, cache: DeepCache, dstate=None,
                  truncate: int | None = None):
    """Backward of ``forward_deep``, equations (4.3)-(4.4), top layer first.

    Args:
        dy: gradient on the top layer's output (B, L, H) (or (B, L, 2H)).
        cache: from ``forward_deep(..., return_cache=True)``.
        dstate: gradient on the final states, (S, B, H) (a tuple for LSTM, parts may be None).
        truncate: truncated BPTT every k steps in every layer (what running the stack in chunks of k
            with all states detached gives); only for stacks without bidirectional layers, whose
            backward cell would need the future of the chunk.
    Returns:
        grads, a list like ``layers`` (pairs for bidirectional layers); dx (B, L, D); dstate0 like
        ``state``.
    """
    _check_layers(layers)
    if not isinstance(cache, DeepCache) or len(cache.layers) != len(layers):
        raise ValueError(f"cache: expected the DeepCache of forward_deep over these {len(layers)} "
                         f"layers, got {type(cache).__name__}")
    check_positive_int("truncate", truncate, allow_none=True)
    if truncate is not None and any(_is_pair(layer) for layer in layers):
        raise ValueError(f"truncate: expected None for a stack with bidirectional layers, got {truncate}")
    dims, src = {"S": _n_slots(layers)}, {"S": "layers"}
    check_shape("dy", dy, "B L Y", dims, src)
    if not callable(getattr(cell, "backward", None)):
        raise ValueError(f"cell: {_cell_name(cell)} has no hand-derived backward; train it with "
                         "torch autograd (rnnkit.training.seqclass)")
    # The slots' widths are checked against each other here and against each layer by the
    # cell's own backward (a cell's output need not be as wide as its state: the LRU's is D).
    if dstate is not None:
        _check_stacked("dstate", cell, dstate, dims, src)
    grads, d0s, s = [], [], dims["S"]
    for layer, layer_cache in zip(reversed(layers), reversed(cache.layers)):
        if _is_pair(layer):
            s -= 2
            g, dy, d0 = _bidirectional_backward(cell, layer[0], layer[1], dy, layer_cache,
                                                _slot(cell, dstate, s),
                                                _slot(cell, dstate, s + 1))
        else:
            s -= 1
            options = {} if truncate is None else {"truncate": truncate}
            g, dy, d0 = cell.backward(layer, dy, layer_cache, _slot(cell, dstate, s),
                                      **options)                               # (4.3)
            d0 = [d0]
        grads.append(g)
        d0s[:0] = d0
    return grads[::-1], dy, _stack(cell, xp_of(dy), d0s, "dstate0")


def from_torch(module):
    """The cell and the ``layers`` list of a ``torch.nn.RNN``, ``LSTM`` or ``GRU`` (any num_layers,
    bidirectional or not).

    Each (layer, direction) is copied into a one-layer torch module of the same kind (its
    ``weight_ih_l{k}_reverse`` and so on becoming ``weight_ih_l0``) and converted by the cell's own
    ``from_torch``, so the bias folding and gate order are defined in one place.

    Returns:
        (cell, layers): rnnkit.elman, rnnkit.lstm or rnnkit.gru, and a list with one parameter dict
        per layer, or one pair (fw, bw) per layer if the module is bidirectional.
    """
    import torch  # noqa: PLC0415

    from . import elman, gru, lstm  # noqa: PLC0415

    cells = {torch.nn.RNN: elman, torch.nn.LSTM: lstm, torch.nn.GRU: gru}
    if type(module) not in cells:
        raise ValueError(f"module: expected torch.nn.RNN, LSTM or GRU, got {type(module).__name__}")
    cell = cells[type(module)]
    if getattr(module, "proj_size", 0):
        raise ValueError(f"module.proj_size: expected 0, got {module.proj_size}")
    suffixes = ("", "_reverse") if module.bidirectional else ("",)
    names = ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if module.bias else ())
    extra = {"nonlinearity": module.nonlinearity} if type(module) is torch.nn.RNN else {}
    layers = []
    for k in range(module.num_layers):
        D = module.input_size if k == 0 else module.hidden_size * len(suffixes)
        directions = []
        for suffix in suffixes:
            single = type(module)(D, module.hidden_size, num_layers=1, bias=module.bias,
                                  batch_first=True, dtype=module.weight_ih_l0.dtype, **extra)
            with torch.no_grad():
                for name in names:
                    getattr(single, f"{name}_l0").copy_(getattr(module, f"{name}_l{k}{suffix}"))
            directions.append(cell.from_torch(single)[0])
        layers.append(tuple(directions) if module.bidirectional else directions[0])
    return cell, layers
