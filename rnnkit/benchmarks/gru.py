"""Chapter 3 benchmark: the GRU in rnnkit against ``torch.nn.GRU``, float32.

Forms timed (loss = sum of all outputs, so dLoss/dh_t = 1 for every t):

    forward           h_all, h_L = forward(params, x)                    (3.1)-(3.5) for t = 1..L
    forward+backward  forward with a cache, then backward(params, 1, cache)    (3.6)-(3.10)

Implementations ("impl" in the records):

    numpy       rnnkit.gru on NumPy arrays, reset_after=True (torch's placement, (3.4a))
    torch-cpu   torch.nn.GRU(D, H, batch_first=True), torch.no_grad for the forward, autograd
                for the backward (x requires grad, so dx is computed as rnnkit does)
    cupy        rnnkit.gru on CuPy arrays: the same source, moved by rnnkit.backend.to_backend
    torch-cuda  torch.nn.GRU on CUDA (cuDNN)

Configurations: the headline B=32, L=512, D=H=256, and a sweep over L at B=32, D=H=256.
Both sides get the same weights (``gru.init`` then copied into torch's layout), and before timing
each configuration the outputs and gradients are compared (float32: rtol 1e-4 on outputs, 1e-3
on gradients). torch keeps its default thread count, reported as params["threads"].
"""
from __future__ import annotations

import numpy as np

from .. import bench, gru
from ..backend import to_backend, to_numpy
from ..testing import assert_close

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
    p, xb = to_backend(params, backend), to_backend(x, backend)
    h_all, _ = gru.forward(p, xb)
    dh_all = h_all * 0 + 1                                   # (B, L, H) dLoss/dh_t = 1

    def fwd():
        return gru.forward(p, xb)

    def fwd_bwd():
        _, _, cache = gru.forward(p, xb, return_cache=True)
        return gru.backward(p, dh_all, cache)

    return fwd, fwd_bwd


def _torch_fns(params, x, device: str):
    """forward and forward+backward closures for torch.nn.GRU on ``device``, rnnkit's weights."""
    import torch  # noqa: PLC0415

    D, H = params["W_x"].shape[0], params["W_h"].shape[0]
    rnn = torch.nn.GRU(D, H, batch_first=True).to(device)
    with torch.no_grad():   # torch stores W^T; b_ih + [b_hr, b_hz, 0] = b and b_hh's n block = b_hn
        rnn.weight_ih_l0.copy_(torch.from_numpy(params["W_x"].T.copy()))
        rnn.weight_hh_l0.copy_(torch.from_numpy(params["W_h"].T.copy()))
        rnn.bias_ih_l0.copy_(torch.from_numpy(params["b"]))
        rnn.bias_hh_l0.zero_()
        rnn.bias_hh_l0[2 * H:] = torch.from_numpy(params["b_hn"])
    xt = torch.from_numpy(x).to(device)
    xg = xt.clone().requires_grad_(True)

    def fwd():
        with torch.no_grad():
            return rnn(xt)

    def fwd_bwd():
        rnn.zero_grad(set_to_none=True)
        xg.grad = None
        out, _ = rnn(xg)
        out.sum().backward()
        return rnn, xg

    return fwd, fwd_bwd


def _check_agree(impl: str, fwd, fwd_bwd, ref_fwd, ref_fwd_bwd) -> None:
    """Compare an implementation's outputs and gradients with rnnkit on NumPy."""
    h_ref, _ = ref_fwd()
    grads_ref, dx_ref, _ = ref_fwd_bwd()
    h, _ = fwd()
    if impl.startswith("torch"):
        rnn, xg = fwd_bwd()
        H = h_ref.shape[-1]
        grads = {"W_x": rnn.weight_ih_l0.grad.T, "W_h": rnn.weight_hh_l0.grad.T,
                 "b": rnn.bias_ih_l0.grad, "b_hn": rnn.bias_hh_l0.grad[2 * H:]}
        dx = xg.grad
    else:
        grads, dx, _ = fwd_bwd()
    assert_close(f"{impl} h_all", h_ref, to_numpy(h), rtol=RTOL_OUT)
    for key in ("W_x", "W_h", "b", "b_hn"):
        assert_close(f"{impl} d{key}", grads_ref[key], to_numpy(grads[key]), rtol=RTOL_GRAD)
    assert_close(f"{impl} dx", dx_ref, to_numpy(dx), rtol=RTOL_GRAD)


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
