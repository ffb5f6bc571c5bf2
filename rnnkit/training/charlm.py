"""A character-level language model around any recurrent cell: one-hot input, cell, readout.

    x_t = onehot(c_t)                       (B, V)
    h_1..h_L = cell.forward(x_1..x_L)       (B, L, H)   the cell's own equations
    z_t = h_t W_hy + b_y                    (1.8)
    loss = mean_t -log softmax(z_t)[c_{t+1}] (1.9)

The cell is any model module of rnnkit/PROTOCOL.md (``rnnkit.core.registry.models()``; a cell with
options is passed bound, ``registry.bind(rnnkit.scrn, alpha=0.9)``): ``init(rng, V, H, ...)`` and
``forward(params, x, state)`` are all that ``evaluate`` and ``sample`` need, and
``loss_and_grads`` also needs the cell's hand-derived ``backward`` (elman, lstm, gru, mingru, lru;
train the others with torch autograd, ``rnnkit.training.seqclass``). The readout reads the cell's output,
whatever its width (H for most cells, D = V for the LRU, H + N for the SCRN). Parameters are a
nested dict ``{"cell": ..., "readout": ...}``.

Reference: A. Karpathy, J. Johnson and L. Fei-Fei, "Visualizing and Understanding Recurrent
Networks", 2015 (the char-rnn experiments this chapter follows in miniature).
"""
from __future__ import annotations

import math
from types import ModuleType

import numpy as np

from . import layers
from ..core.checks import check_positive_int, check_shape

__all__ = ["init", "one_hot", "loss_and_grads", "evaluate", "sample"]


def init(rng: np.random.Generator, cell: ModuleType, V: int, H: int, **cell_kwargs) -> dict:
    """Parameters for a vocabulary of V characters and a cell of H hidden units.

    ``cell_kwargs`` go to ``cell.init`` (the SCRN's context size N, say). The readout's input
    width is that of the cell's output, found by running the cell on one step.
    """
    check_positive_int("V", V)
    params = cell.init(rng, V, H, **cell_kwargs)
    dtype = next(iter(params.values())).dtype
    y, _ = cell.forward(params, np.zeros((1, 1, V), dtype=dtype))
    return {"cell": params, "readout": layers.linear_init(rng, int(y.shape[-1]), V)}


def one_hot(ids: np.ndarray, V: int, dtype=np.float64) -> np.ndarray:
    """(B, L) integer ids -> (B, L, V) one-hot rows."""
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() >= V):
        raise ValueError(f"ids: expected values in [0, {V}), got [{ids.min()}, {ids.max()}]")
    return np.eye(V, dtype=dtype)[ids]


def loss_and_grads(cell: ModuleType, params: dict, x_ids: np.ndarray, y_ids: np.ndarray, state=None):
    """Mean next-character cross-entropy (nats) and its gradient by BPTT.

    Args:
        x_ids, y_ids: (B, L) input characters and the characters that follow them.
        state: the cell's initial state (None for zeros).
    Returns:
        loss (float), grads (nested like params), state_last (to carry into the next window).
    """
    dims = check_shape("x_ids", x_ids, "B L")
    check_shape("y_ids", y_ids, "B L", dims)
    if not callable(getattr(cell, "backward", None)):
        raise ValueError(f"cell: {getattr(cell, '__name__', cell)} has no hand-derived backward; "
                         "train it with torch autograd (rnnkit.training.seqclass), or evaluate/sample it here")
    V = params["readout"]["W_hy"].shape[1]
    x = one_hot(x_ids, V, dtype=params["readout"]["W_hy"].dtype)      # (B, L, V)
    h_all, state_last, cache = cell.forward(params["cell"], x, state, return_cache=True)
    z = layers.linear(params["readout"], h_all)                         # (B, L, V)
    loss, dz = layers.softmax_cross_entropy(z, y_ids)
    readout_grads, dh_all = layers.linear_backward(params["readout"], dz, h_all)
    cell_grads, _, _ = cell.backward(params["cell"], dh_all, cache)
    return loss, {"cell": cell_grads, "readout": readout_grads}, state_last


def evaluate(cell: ModuleType, params: dict, ids: np.ndarray, L: int = 256) -> float:
    """Mean cross-entropy in bits per character over a long id sequence, carried across windows."""
    check_positive_int("L", L)
    ids = np.asarray(ids)
    V = params["readout"]["W_hy"].shape[1]
    state, total, count = None, 0.0, 0
    for start in range(0, len(ids) - 1, L):
        x_ids = ids[start:start + L][None, :]
        y_ids = ids[start + 1:start + L + 1][None, :]
        x_ids = x_ids[:, :y_ids.shape[1]]
        h_all, state = cell.forward(params["cell"], one_hot(x_ids, V), state)
        loss, _ = layers.softmax_cross_entropy(layers.linear(params["readout"], h_all), y_ids)
        total += loss * y_ids.size
        count += y_ids.size
    return total / count / math.log(2)


def sample(cell: ModuleType, params: dict, rng: np.random.Generator, prime_ids, n: int,
           temperature: float = 1.0) -> np.ndarray:
    """Generate n characters after reading ``prime_ids``, sampling softmax(z / temperature).

    Temperature below 1 sharpens the distribution (safer, more repetitive text), above 1
    flattens it; temperature -> 0 is greedy decoding.
    """
    check_positive_int("n", n)
    if not temperature > 0:
        raise ValueError(f"temperature: expected a positive number, got {temperature}")
    prime_ids = np.asarray(prime_ids)
    if prime_ids.ndim != 1 or prime_ids.size == 0:
        raise ValueError(f"prime_ids: expected a non-empty 1-D id sequence, got shape {prime_ids.shape}")
    V = params["readout"]["W_hy"].shape[1]
    h_all, state = cell.forward(params["cell"], one_hot(prime_ids[None, :], V), None)
    z = layers.linear(params["readout"], h_all[:, -1])                  # (1, V)
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        logp = layers.log_softmax(z[0] / temperature)
        p = np.exp(logp)
        out[i] = rng.choice(V, p=p / p.sum())
        h_all, state = cell.forward(params["cell"], one_hot(out[i:i + 1][None, :], V), state)
        z = layers.linear(params["readout"], h_all[:, -1])
    return out
