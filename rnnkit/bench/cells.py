"""Pieces shared by the recurrent-cell benchmarks (elman, lstm, gru).

Each benchmark module only says how to build its problem and how to copy rnnkit's weights into
the torch module; the closures that are timed and the agreement check live here.
"""
from __future__ import annotations

from typing import Callable

from ..core.backend import to_backend, to_numpy
from ..core.testing import assert_close

__all__ = ["rnnkit_fns", "torch_fns", "check_agree"]


def rnnkit_fns(cell, params, x, backend: str):
    """forward and forward+backward closures for rnnkit ``cell`` on ``backend`` ("numpy" or "cupy").

    The loss is the sum of all outputs, so dLoss/dh_t = 1 for every t.
    """
    p, xb = to_backend(params, backend), to_backend(x, backend)
    h_all, _ = cell.forward(p, xb)
    dh_all = h_all * 0 + 1                                   # (B, L, H)

    def fwd():
        return cell.forward(p, xb)

    def fwd_bwd():
        _, _, cache = cell.forward(p, xb, return_cache=True)
        return cell.backward(p, dh_all, cache)

    return fwd, fwd_bwd


def torch_fns(net, x, device: str):
    """forward (no_grad) and forward+backward (autograd, dx too) closures for a torch module."""
    import torch  # noqa: PLC0415

    xt = torch.from_numpy(x).to(device)
    xg = xt.clone().requires_grad_(True)

    def fwd():
        with torch.no_grad():
            return net(xt)

    def fwd_bwd():
        net.zero_grad(set_to_none=True)
        xg.grad = None
        out, _ = net(xg)
        out.sum().backward()
        return net, xg

    return fwd, fwd_bwd


def check_agree(impl: str, fwd, fwd_bwd, ref_fwd, ref_fwd_bwd, *,
                torch_grads: Callable, rtol_out: float, rtol_grad: float) -> None:
    """Compare an implementation's outputs and gradients with rnnkit on NumPy.

    ``torch_grads(net, H)`` maps a torch module's ``.grad`` fields to rnnkit's parameter names.
    """
    h_ref, _ = ref_fwd()
    grads_ref, dx_ref, _ = ref_fwd_bwd()
    h, _ = fwd()
    if impl.startswith("torch"):
        net, xg = fwd_bwd()
        grads, dx = torch_grads(net, h_ref.shape[-1]), xg.grad
    else:
        grads, dx, _ = fwd_bwd()
    assert_close(f"{impl} h_all", h_ref, to_numpy(h), rtol=rtol_out)
    for key in grads_ref:
        assert_close(f"{impl} d{key}", grads_ref[key], to_numpy(grads[key]), rtol=rtol_grad)
    assert_close(f"{impl} dx", dx_ref, to_numpy(dx), rtol=rtol_grad)
