"""Chapter 4 benchmark: the cost of depth and bidirectionality, rnnkit.stack against torch, float32.

A stack of K layers runs K cells one after the other, (4.1), so its cost should be about K times
one layer's; a bidirectional layer runs two cells over the same input, (4.2), about twice one
cell's (torch may overlap nothing here either: on a CPU its two directions run in turn). This
benchmark measures both, for the GRU and the LSTM:

    forward           y, h_n = forward_deep(cell, layers, x)                  (4.1)-(4.2)
    forward+backward  forward with a cache, then backward_deep(cell, layers, 1, cache)   (4.3)-(4.4)

(loss = sum of the top layer's outputs, so dLoss/dy_t = 1 for every t).

Implementations ("impl" in the records):

    numpy       rnnkit.stack over rnnkit.gru / rnnkit.lstm on NumPy arrays
    torch-cpu   torch.nn.GRU / nn.LSTM(D, H, num_layers=K, bidirectional=..., batch_first=True);
                torch.no_grad for the forward, autograd for the backward (x requires grad)

Layouts ``LAYOUTS``: K = 1, 2, 4 unidirectional layers and K = 1, 2 bidirectional ones, each at
B = 32, D = H = 128, for L in ``SWEEP_L``. The torch module is built first (seeded) and its
weights copied into rnnkit by ``stack.from_torch``, so both sides compute the same network; before
timing each configuration the outputs and the gradients of x and of the bottom layer's input
matrix are compared (float32: rtol 1e-4 on outputs, 1e-3 on gradients). torch keeps its default
thread count, reported as params["threads"].
"""
from __future__ import annotations

import numpy as np

from .. import bench, gru, lstm, stack
from ..core.testing import assert_close

__all__ = ["run", "LAYOUTS", "SWEEP_L", "QUICK_L", "CELLS"]

B, D, H = 32, 128, 128
LAYOUTS = ((1, False), (2, False), (4, False), (1, True), (2, True))   # (K layers, bidirectional)
QUICK_LAYOUTS = ((1, False), (2, False), (1, True))
CELLS = ("gru", "lstm")
SWEEP_L = (64, 256)
QUICK_L = (16,)
FULL_REPEAT = {"warmup": 2, "repeat": 7}
QUICK_REPEAT = {"warmup": 1, "repeat": 3}
RTOL_OUT, RTOL_GRAD = 1e-4, 1e-3   # float32, L up to 256, four layers


def _problem(cell_name: str, K: int, bidirectional: bool, L: int, seed: int = 0):
    """A float32 torch module, the same weights as rnnkit layers, and NumPy inputs (B, L, D)."""
    import torch  # noqa: PLC0415

    torch.manual_seed(seed)
    kind = {"gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[cell_name]
    net = kind(D, H, num_layers=K, bidirectional=bidirectional, batch_first=True)
    cell, layers = stack.from_torch(net)
    assert cell is {"gru": gru, "lstm": lstm}[cell_name]
    x = np.random.default_rng(seed).standard_normal((B, L, D)).astype(np.float32)
    return net, cell, layers, x


def _rnnkit_fns(cell, layers, x):
    y, _ = stack.forward_deep(cell, layers, x)
    dy = np.ones_like(y)                                   # (B, L, H) or (B, L, 2H)

    def fwd():
        return stack.forward_deep(cell, layers, x)

    def fwd_bwd():
        _, _, cache = stack.forward_deep(cell, layers, x, return_cache=True)
        return stack.backward_deep(cell, layers, dy, cache)

    return fwd, fwd_bwd


def _check_agree(fwd, fwd_bwd, ref_fwd, ref_fwd_bwd) -> None:
    """torch against rnnkit: the top outputs, dx, and the bottom forward cell's dW_x."""
    y_ref, _ = ref_fwd()
    grads_ref, dx_ref, _ = ref_fwd_bwd()
    y, _ = fwd()
    net, xg = fwd_bwd()
    bottom = grads_ref[0][0] if isinstance(grads_ref[0], (list, tuple)) else grads_ref[0]
    assert_close("torch-cpu y", y_ref, y.numpy(), rtol=RTOL_OUT)
    assert_close("torch-cpu dx", dx_ref, xg.grad.numpy(), rtol=RTOL_GRAD)
    assert_close("torch-cpu dW_x (layer 1)", bottom["W_x"], net.weight_ih_l0.grad.T.numpy(),
                 rtol=RTOL_GRAD)


def run(quick: bool = False, *, backends: dict | None = None, lengths=None, layouts=None,
        cells=CELLS) -> list[dict]:
    """Time rnnkit.stack and torch over the layouts and lengths; return the records.

    Args:
        quick: L in QUICK_L, three layouts, fewer repeats, for a notebook or a test.
        backends: {impl: bool}; defaults to ``bench.available_backends()`` (only "numpy" and
            "torch-cpu" are timed here: the stack runs the cells' loops, which chapter 2 and 3's
            benchmarks already time on GPUs).
        lengths, layouts, cells: override the sweep.
    Returns:
        records (see ``rnnkit.bench``) with params cell, K, bidirectional, B, L, D, H, dtype
        (and threads for torch-cpu).
    """
    from . import cells as shared  # noqa: PLC0415

    backends = bench.available_backends() if backends is None else backends
    impls = [i for i in ("numpy", "torch-cpu") if backends.get(i)]
    lengths = lengths if lengths is not None else (QUICK_L if quick else SWEEP_L)
    layouts = layouts if layouts is not None else (QUICK_LAYOUTS if quick else LAYOUTS)
    repeat = QUICK_REPEAT if quick else FULL_REPEAT
    records = []
    for cell_name in cells:
        for K, bidirectional in layouts:
            for L in lengths:
                net, cell, layers, x = _problem(cell_name, K, bidirectional, L)
                ref = _rnnkit_fns(cell, layers, x)
                config = {"cell": cell_name, "K": K, "bidirectional": bidirectional, "B": B,
                          "L": L, "D": D, "H": H, "dtype": "float32"}
                for impl in impls:
                    if impl == "numpy":
                        fns, cfg = ref, config
                    else:
                        import torch  # noqa: PLC0415

                        fns = shared.torch_fns(net, x, "cpu")
                        if "numpy" in impls:
                            _check_agree(*fns, *ref)
                        cfg = {**config, "threads": torch.get_num_threads()}
                    for form, fn in zip(("forward", "forward+backward"), fns):
                        timing = bench.time_fn(fn, **repeat)
                        records.append(bench.make_record(impl, form, cfg, timing))
    return records
