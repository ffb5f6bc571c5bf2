"""Chapter 2 benchmark: the LSTM in rnnkit against ``torch.nn.LSTM``, float32.

Forms timed (loss = sum of all outputs, so dLoss/dh_t = 1 for every t):

    forward           h_all, (h_L, c_L) = forward(params, x)            (2.1)-(2.7) for t = 1..L
    forward+backward  forward with a cache, then backward(params, 1, cache)   (2.9)-(2.14)

Implementations ("impl" in the records):

    numpy       rnnkit.lstm on NumPy arrays (the book's reference code)
    torch-cpu   torch.nn.LSTM(D, H, batch_first=True), torch.no_grad for the forward, autograd
                for the backward (x requires grad, so dx is computed as rnnkit does)
    cupy        rnnkit.lstm on CuPy arrays: the same source, moved by rnnkit.core.backend.to_backend
    torch-cuda  torch.nn.LSTM on CUDA (cuDNN)

Configurations: the headline B=32, L=512, D=H=256 (G = 4H = 1024 gate columns), and a sweep over
L at B=32, D=H=256. Both sides get the same weights (``rnnkit.lstm`` keeps torch's gate order
i, f, g, o, so W_ih = W_x^T, W_hh = W_h^T, b_ih = b, b_hh = 0), and before timing each
configuration the outputs and gradients are compared (float32: rtol 1e-4 on outputs, 1e-3 on
gradients). torch keeps its default thread count, reported as params["threads"].
"""
from __future__ import annotations

import numpy as np

from .. import bench, lstm
from ..core.interop import to_torch
from . import cells

__all__ = ["run", "HEADLINE", "SWEEP_L", "QUICK_L"]

HEADLINE = {"B": 32, "L": 512, "D": 256, "H": 256}
SWEEP_L = (64, 128, 256, 512, 1024)
QUICK_L = (32, 64)
FULL_REPEAT = {"warmup": 2, "repeat": 7}
QUICK_REPEAT = {"warmup": 1, "repeat": 3}
RTOL_OUT, RTOL_GRAD = 1e-4, 1e-3   # float32 round-off over L steps stays far below these


def _problem(B: int, L: int, D: int, H: int, seed: int = 0):
    """float32 parameters (variant "vanilla", forget bias 1) and inputs, NumPy."""
    rng = np.random.default_rng(seed)
    params = lstm.init(rng, D, H, dtype=np.float32)
    x = rng.standard_normal((B, L, D)).astype(np.float32)    # (B, L, D)
    return params, x


def _rnnkit_fns(params, x, backend: str):
    """forward and forward+backward closures for rnnkit on ``backend`` ("numpy" or "cupy")."""
    return cells.rnnkit_fns(lstm, params, x, backend)


def _torch_fns(params, x, device: str):
    """forward and forward+backward closures for torch.nn.LSTM on ``device``, rnnkit's weights."""

    return cells.torch_fns(to_torch(lstm, params).to(device), x, device)


def _torch_grads(net, H: int) -> dict:
    """torch's parameter gradients under rnnkit's names."""
    return {"W_x": net.weight_ih_l0.grad.T, "W_h": net.weight_hh_l0.grad.T,
            "b": net.bias_ih_l0.grad}


def _check_agree(impl: str, fwd, fwd_bwd, ref_fwd, ref_fwd_bwd) -> None:
    """Compare an implementation's outputs and gradients with rnnkit on NumPy."""
    cells.check_agree(impl, fwd, fwd_bwd, ref_fwd, ref_fwd_bwd, torch_grads=_torch_grads,
                      rtol_out=RTOL_OUT, rtol_grad=RTOL_GRAD)


def run(quick: bool = False, *, backends: dict | None = None, lengths=None) -> list[dict]:
    """Time every available implementation on the L sweep; return the records.

    Args:
        quick: a small sweep (L in QUICK_L) with fewer repeats, for running live in a notebook.
        backends: which implementations to run, {impl: bool}; defaults to
            ``bench.available_backends()`` (unavailable ones are skipped, not errors).
        lengths: override the L values swept.
    Returns:
        records (see ``rnnkit.bench``), params B, L, D, H, dtype, and threads for torch-cpu.
    """
    return bench.sweep_lengths(lengths if lengths is not None else (QUICK_L if quick else SWEEP_L),
                               _problem, _rnnkit_fns, _torch_fns, _check_agree,
                               repeat=QUICK_REPEAT if quick else FULL_REPEAT, backends=backends,
                               B=HEADLINE["B"], D=HEADLINE["D"], H=HEADLINE["H"])
