"""Chapter 1 benchmark: the Elman RNN in rnnkit against ``torch.nn.RNN``, float32.

Forms timed (loss = sum of all outputs, so dLoss/dh_t = 1 for every t):

    forward           h_all, h_L = forward(params, x)                    (1.1)-(1.2) for t = 1..L
    forward+backward  forward with a cache, then backward(params, 1, cache)    (1.3)-(1.7)

Implementations ("impl" in the records):

    numpy       rnnkit.elman on NumPy arrays (the book's reference code)
    torch-cpu   torch.nn.RNN(D, H, batch_first=True), torch.no_grad for the forward, autograd
                for the backward (x requires grad, so dx is computed as rnnkit does)
    cupy        rnnkit.elman on CuPy arrays: the same source, moved by rnnkit.core.backend.to_backend
    torch-cuda  torch.nn.RNN on CUDA (cuDNN)

Configurations: the headline B=32, L=512, D=H=256, and a sweep over L at B=32, D=H=256.
Both sides get the same weights, and before timing each configuration the outputs and gradients
are compared (float32: rtol 1e-4 on outputs, 1e-3 on gradients), so the two compute the same
thing. torch keeps its default thread count, reported as params["threads"].

``forward_breakdown`` splits the NumPy forward and backward into their parts (the hoisted
input product, the L small recurrent products, the elementwise work) to show where time goes.
"""
from __future__ import annotations

import numpy as np

from .. import bench, elman
from ..core.interop import to_torch
from . import cells

__all__ = ["run", "HEADLINE", "SWEEP_L", "QUICK_L", "forward_breakdown"]

HEADLINE = {"B": 32, "L": 512, "D": 256, "H": 256}
SWEEP_L = (64, 128, 256, 512, 1024)
QUICK_L = (32, 64, 128)
FULL_REPEAT = {"warmup": 2, "repeat": 7}
QUICK_REPEAT = {"warmup": 1, "repeat": 3}
RTOL_OUT, RTOL_GRAD = 1e-4, 1e-3   # float32, L up to 1024: observed errors are ~1e-6 and ~1e-5


def _problem(B: int, L: int, D: int, H: int, seed: int = 0):
    """float32 parameters and inputs, NumPy."""
    rng = np.random.default_rng(seed)
    params = elman.init(rng, D, H, dtype=np.float32)
    x = rng.standard_normal((B, L, D)).astype(np.float32)    # (B, L, D)
    return params, x


def _rnnkit_fns(params, x, backend: str):
    """forward and forward+backward closures for rnnkit on ``backend`` ("numpy" or "cupy")."""
    return cells.rnnkit_fns(elman, params, x, backend)


def _torch_fns(params, x, device: str):
    """forward and forward+backward closures for torch.nn.RNN on ``device``, rnnkit's weights."""

    return cells.torch_fns(to_torch(elman, params).to(device), x, device)


def _torch_grads(net, H: int) -> dict:
    """torch's parameter gradients under rnnkit's names."""
    return {"W_xh": net.weight_ih_l0.grad.T, "W_hh": net.weight_hh_l0.grad.T,
            "b_h": net.bias_ih_l0.grad}


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


def forward_breakdown(B: int = 32, L: int = 512, D: int = 256, H: int = 256, *,
                      repeat: int = 7) -> dict:
    """Where the NumPy forward and backward spend their time, median seconds per call.

    Each part is timed on its own, exactly as ``rnnkit.elman`` computes it:

        forward            the whole rnnkit.elman.forward
        input_product      x W_xh + b_h for all t at once: (B*L, D) @ (D, H)
        recurrent_matmuls  L products h_{t-1} W_hh: (B, H) @ (H, H), the sequential part
        step_elementwise   L times tanh(xw[:, t, :] + .): slicing, add, tanh
        stack              stacking the L states into (B, L, H)
        backward           the whole rnnkit.elman.backward
        bwd_dW_hh_steps    L products h_{t-1}^T da_t plus the running sum (as backward does)
        bwd_dW_hh_once     the same sum as one (H, B*L) @ (B*L, H) product
        bwd_dh_matmuls     L products da_t W_hh^T
    """
    params, x = _problem(B, L, D, H)
    W_hh = params["W_hh"]
    timed = {"warmup": 2, "repeat": repeat}
    h_all, _, cache = elman.forward(params, x, return_cache=True)
    xw = x @ params["W_xh"] + params["b_h"]                  # (B, L, H)
    mm = h_all[:, 0, :] @ W_hh                               # (B, H)
    states = [np.ascontiguousarray(h_all[:, t, :]) for t in range(L)]   # L x (B, H)
    ones = np.ones_like(h_all)
    h_flat = np.ascontiguousarray(h_all.reshape(B * L, H))
    da_flat = h_flat * 0.5                                   # stands in for da, same shape

    def recurrent():
        for t in range(L):
            states[t] @ W_hh

    def elementwise():
        for t in range(L):
            np.tanh(xw[:, t, :] + mm)

    def dW_steps():
        dW = np.zeros((H, H), np.float32)
        for t in range(L):
            dW = dW + states[t].T @ states[t]

    def dh_matmuls():
        for t in range(L):
            states[t] @ W_hh.T

    parts = {
        "forward": lambda: elman.forward(params, x),
        "input_product": lambda: x @ params["W_xh"] + params["b_h"],
        "recurrent_matmuls": recurrent,
        "step_elementwise": elementwise,
        "stack": lambda: np.stack(states, axis=1),
        "backward": lambda: elman.backward(params, ones, cache),
        "bwd_dW_hh_steps": dW_steps,
        "bwd_dW_hh_once": lambda: h_flat.T @ da_flat,
        "bwd_dh_matmuls": dh_matmuls,
    }
    return {name: bench.time_fn(fn, **timed).median_s for name, fn in parts.items()}
