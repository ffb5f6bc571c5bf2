"""rnnkit.core.interop.to_torch: the inverse of stack.from_torch, and the same function as the cell."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnkit import elman, gru, lstm, mingru, stack
from rnnkit.core.interop import to_torch

CELLS = {"elman": (elman, {}), "lstm": (lstm, {}), "gru": (gru, {"reset_after": True})}


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("num_layers, bidirectional", [(1, False), (2, False), (2, True)])
def test_round_trip_through_from_torch(name, num_layers, bidirectional):
    cell, opts = CELLS[name]
    rng = np.random.default_rng(0)
    D, H = 3, 4
    layers = []
    for k in range(num_layers):
        d_in = D if k == 0 else H * (2 if bidirectional else 1)
        make = lambda: cell.init(rng, d_in, H, **opts)  # noqa: E731
        layers.append((make(), make()) if bidirectional else make())
    module = to_torch(cell, layers)
    assert module.bidirectional == bidirectional and module.num_layers == num_layers
    back_cell, back = stack.from_torch(module)
    assert back_cell is cell
    flat = lambda ls: [p for layer in ls for p in (layer if bidirectional else (layer,))]  # noqa: E731
    for p, q in zip(flat(layers), flat(back)):
        assert set(p) == set(q)
        for key in p:
            np.testing.assert_allclose(q[key], p[key], rtol=0, atol=1e-15, err_msg=key)


@pytest.mark.parametrize("name", CELLS)
def test_the_torch_module_computes_the_cell(name):
    cell, opts = CELLS[name]
    rng = np.random.default_rng(1)
    params = cell.init(rng, 3, 5, **opts)
    x = rng.standard_normal((2, 7, 3))
    y_ref, _ = cell.forward(params, x)
    with torch.no_grad():
        y = to_torch(cell, params)(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-13)


def test_float32_parameters_give_a_float32_module():
    params = elman.init(np.random.default_rng(0), 2, 3, dtype=np.float32)
    assert to_torch(elman, params).weight_ih_l0.dtype == torch.float32


def test_cells_torch_does_not_have_are_refused():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="reset_after GRU"):
        to_torch(gru, gru.init(rng, 2, 3, reset_after=False))
    with pytest.raises(ValueError, match="cell: expected rnnkit.elman, rnnkit.lstm or rnnkit.gru"):
        to_torch(mingru, mingru.init(rng, 2, 3))
    with pytest.raises(ValueError, match="variant 'vanilla'"):
        to_torch(lstm.cell("peephole"), lstm.init(rng, 2, 3))
    with pytest.raises(ValueError, match="layers: expected at least one layer"):
        to_torch(elman, [])
