"""Chapter 3 benchmark: the GRU in rnnkit against ``torch.nn.GRU``, float32.

Forms timed (loss = sum of all outputs, so dLoss/dh_t = 1 for every t):

    forward           h_all, h_L = forward(params, x)                    (3.1)-(3.5) for t = 1..L
    forward+backward  forward with a cache, then backward(params, 1, cache)    (3.6)-(3.10)

Implementations ("impl" in the records):

    numpy       rnnkit.gru on NumPy arrays, reset_after=True (torch's placement, (3.4a))
    torch-cpu   torch.nn.GRU(D, H, batch_first=True), torch.no_grad for the forward, autograd
                for the backward (x requires grad, so dx is computed as rnnkit does)
    cupy        rnnkit.gru on CuPy arrays: the same source, moved by rnnkit.core.backend.to_backend
    torch-cuda  torch.nn.GRU on CUDA (cuDNN)

Configurations: the headline B=32, L=512, D=H=256, and a sweep over L at B=32, D=H=256.
Both sides get the same weights (``gru.init`` then copied into torch's layout), and before timing
each configuration the outputs and gradients are compared (float32: rtol 1e-4 on outputs, 1e-3
on gradients). torch keeps its default thread count, reported as params["threads"].
"""
from __future__ import annotations

import numpy as np

from .. import bench, gru
from ..core.interop import to_torch
from . import cells

__all__ = ["run", "HEADLINE", "SWEEP_L", "QUICK_L"]

HEADLINE = {"B": 32, "L": 512, "D": 256, "H": 256}
SWEEP_L = (64, 128, 256, 512, 1024)
QUICK_L = (32, 64, 128)
FULL_REPEAT = {"warmup": 2, "repeat": 7}
QUICK_REPEAT = {"warmup": 1, "repeat": 3}
RTOL_OUT, RTOL_GRAD = 1e-4, 1e-3   # float32, L up to 1024


def _problem(B: int, L: int, D: int, H: int, seed: int = 0):
    """float32 parameters (reset_after, torch's GRU) and inputs, NumPy."""
    rng = np.random.default_rng(seed)
    params = gru.init(rng, D, H, reset_after=True, dtype=np.float32)
    x = rng.standard_normal((B, L, D)).astype(np.float32)    # (B, L, D)
    return params, x


def _rnnkit_fns(params, x, backend: str):
    """forward and forward+backward closures for rnnkit on ``backend`` ("numpy" or "cupy")."""
    return cells.rnnkit_fns(gru, params, x, backend)


def _torch_fns(params, x, device: str):
    """forward and forward+backward closures for torch.nn.GRU on ``device``, rnnkit's weights."""
    return cells.torch_fns(to_torch(gru, params).to(device), x, device)


def _torch_grads(net, H: int) -> dict:
    """torch's parameter gradients under rnnkit's names."""
    return {"W_x": net.weight_ih_l0.grad.T, "W_h": net.weight_hh_l0.grad.T,
            "b": net.bias_ih_l0.grad, "b_hn": net.bias_hh_l0.grad[2 * H:]}


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
