"""torch modules from rnnkit parameters: ``to_torch``, the inverse of ``rnnkit.stack.from_torch``.

``stack.from_torch(module)`` reads a ``torch.nn.RNN``/``LSTM``/``GRU`` into ``(cell, layers)``;
``to_torch(cell, layers)`` builds the torch module back, so that

    cell, layers = stack.from_torch(to_torch(cell, layers))      # the same layers again

and the benchmarks, the GPU run and the tests that compare a cell with its torch peer copy weights
in one place instead of each writing the transposes and the bias split by hand.

The layouts (chapters 1-3): rnnkit multiplies row vectors, x_t W (W of shape (D, G)); torch stores
W^T (G, D) and two biases b_ih and b_hh. rnnkit's single bias goes into b_ih and b_hh is zero,
except for the GRU's b_hn, which sits inside the reset (3.4a) and is the n block of b_hh.
Only the cells torch has are convertible: Elman (tanh), the LSTM's "vanilla" variant, the
reset_after GRU; anything else raises a ValueError that says so.
"""
from __future__ import annotations

import numpy as np

__all__ = ["to_torch"]


def _torch_weights(cell_name: str, params: dict, H: int):
    """(weight_ih, weight_hh, bias_ih, bias_hh) of one layer and direction, NumPy, torch's layout."""
    if cell_name == "elman":
        W_x, W_h, b = params["W_xh"], params["W_hh"], params["b_h"]
        b_hh = np.zeros_like(b)
    elif cell_name == "lstm":
        W_x, W_h, b = params["W_x"], params["W_h"], params["b"]
        b_hh = np.zeros_like(b)
    else:
        if "b_hn" not in params:
            raise ValueError("layers: expected a reset_after GRU (with 'b_hn'); torch has no GRU with the "
                             "reset before the product (3.4b)")
        W_x, W_h, b = params["W_x"], params["W_h"], params["b"]
        b_hh = np.concatenate([np.zeros(2 * H, dtype=b.dtype), params["b_hn"]])
    return W_x.T, W_h.T, b, b_hh


def to_torch(cell, layers, *, bidirectional: bool | None = None):
    """A batch_first ``torch.nn.RNN``/``LSTM``/``GRU`` holding rnnkit ``layers``.

    Args:
        cell: rnnkit.elman, rnnkit.lstm or rnnkit.gru (or a cell bound with ``registry.bind``).
        layers: one parameter dict, a list of them (one per layer), or for a bidirectional stack a
            list of (forward, backward) pairs, as ``stack.from_torch`` returns them. NumPy arrays.
        bidirectional: inferred from ``layers`` when None.
    Returns:
        the torch module, float64 if the parameters are float64 else float32, on the CPU.
    """
    import torch  # noqa: PLC0415

    name = getattr(cell, "__name__", "").replace("rnnkit.", "").split("(")[0]
    name = {"lstm.cell": "lstm"}.get(name, name)
    modules = {"elman": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
    if name not in modules:
        raise ValueError(f"cell: expected rnnkit.elman, rnnkit.lstm or rnnkit.gru (the cells torch has), "
                         f"got {getattr(cell, '__name__', cell)!r}")
    if getattr(cell, "variant", "vanilla") != "vanilla":
        raise ValueError(f"cell: expected the LSTM variant 'vanilla' (torch's), got {cell.variant!r}")
    if isinstance(layers, dict):
        layers = [layers]
    if not layers:
        raise ValueError("layers: expected at least one layer, got []")
    if bidirectional is None:
        bidirectional = isinstance(layers[0], (tuple, list))
    first = layers[0][0] if bidirectional else layers[0]
    W_x0 = first["W_xh"] if name == "elman" else first["W_x"]
    W_h0 = first["W_hh"] if name == "elman" else first["W_h"]
    H, D = W_h0.shape[0], W_x0.shape[0]
    dtype = torch.float64 if W_x0.dtype == np.float64 else torch.float32
    module = modules[name](D, H, num_layers=len(layers), batch_first=True, bidirectional=bidirectional,
                           dtype=dtype)
    suffixes = ("", "_reverse") if bidirectional else ("",)
    with torch.no_grad():
        for k, layer in enumerate(layers):
            directions = layer if bidirectional else (layer,)
            if len(directions) != len(suffixes):
                raise ValueError(f"layers[{k}]: expected a (forward, backward) pair, got {len(directions)} dicts")
            for params, suffix in zip(directions, suffixes):
                for part, value in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"),
                                       _torch_weights(name, params, H)):
                    target = getattr(module, f"{part}_l{k}{suffix}")
                    if tuple(target.shape) != value.shape:
                        raise ValueError(f"layers[{k}]: expected {part} of torch shape {tuple(target.shape)}, "
                                         f"got {value.shape}")
                    target.copy_(torch.from_numpy(np.ascontiguousarray(value)))
    return module
