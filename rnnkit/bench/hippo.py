"""Chapter 12 benchmark: the Legendre Memory Unit (rnnkit.lmu) on every backend, float32.

The LMU at the size of its paper's psMNIST model (D=1, H=212, N=256, theta=L), with
``torch.nn.LSTM`` of the same H as a familiar yardstick. Forms timed ("form" in the records):

    LMU forward               h_all, state = lmu.forward(params, x)          (12.16)-(12.18)
    LMU forward+backward      the same on torch tensors, then autograd of sum(h_all)
                              (torch backends only: the LMU has no hand-written backward)
    nn.LSTM forward           torch.nn.LSTM(D, H, batch_first=True), no_grad
    nn.LSTM forward+backward  autograd of the sum of its outputs

Implementations ("impl"): numpy and cupy run the LMU's forward only; torch-cpu and torch-cuda run
the same rnnkit source on torch tensors (and nn.LSTM). Before timing, every LMU backend's output
is compared with NumPy's (float32, rtol 1e-4). torch keeps its default thread count, reported as
params["threads"].
"""
from __future__ import annotations

import numpy as np

from .. import bench, lmu
from ..core.backend import to_backend, to_numpy
from ..core.testing import assert_close

__all__ = ["run", "HEADLINE", "SWEEP_L", "QUICK_L"]

HEADLINE = {"B": 32, "D": 1, "H": 212, "N": 256}
SWEEP_L = (64, 128, 256, 512)
QUICK_L = (32, 64)
FULL_REPEAT = {"warmup": 1, "repeat": 3}
QUICK_REPEAT = {"warmup": 1, "repeat": 3}
RTOL_OUT = 1e-4   # float32 against float32 NumPy, L up to 784


def _problem(B: int, L: int, D: int, H: int, N: int, seed: int = 0):
    """float32 LMU parameters (theta = L) and inputs, NumPy."""
    rng = np.random.default_rng(seed)
    params = lmu.init(rng, D, H, N, theta=float(L), dtype=np.float32)
    params["e_m"] = (0.1 * rng.standard_normal(N)).astype(np.float32)   # use the memory feedback
    x = rng.standard_normal((B, L, D)).astype(np.float32)                # (B, L, D)
    return params, x


def _lmu_fns(params, x, impl: str):
    """(forward, forward+backward or None) closures of rnnkit.lmu on ``impl``."""
    if impl in ("numpy", "cupy"):
        p, xb = to_backend(params, impl), to_backend(x, impl)
        return (lambda: lmu.forward(p, xb)), None
    import torch  # noqa: PLC0415

    device = "cpu" if impl == "torch-cpu" else "cuda"
    p, xb = to_backend(params, "torch", device), to_backend(x, "torch", device)
    trainable = [v.requires_grad_(True) for k, v in p.items() if k not in ("A_bar", "B_bar")]

    def fwd():
        with torch.no_grad():
            return lmu.forward(p, xb)

    def fwd_bwd():
        for v in trainable:
            v.grad = None
        h_all, _ = lmu.forward(p, xb)
        h_all.sum().backward()

    return fwd, fwd_bwd


def _lstm_fns(D: int, H: int, x, impl: str):
    """forward and forward+backward closures of torch.nn.LSTM(D, H) on the same input."""
    import torch  # noqa: PLC0415

    device = "cpu" if impl == "torch-cpu" else "cuda"
    torch.manual_seed(0)
    net = torch.nn.LSTM(D, H, batch_first=True).to(device)
    xt = torch.from_numpy(x).to(device)

    def fwd():
        with torch.no_grad():
            return net(xt)

    def fwd_bwd():
        net.zero_grad(set_to_none=True)
        net(xt)[0].sum().backward()

    return fwd, fwd_bwd


def run(quick: bool = False, *, backends: dict | None = None, lengths=None) -> list[dict]:
    """Time the LMU on every available backend (and nn.LSTM on torch) over L; return the records.

    Args:
        quick: L in QUICK_L with fewer repeats, for running live in a notebook.
        backends: {impl: bool}; defaults to ``bench.available_backends()``.
        lengths: override the L values swept.
    Returns:
        records with params B, L, D, H, N, dtype (and threads for torch-cpu).
    """
    backends = bench.available_backends() if backends is None else backends
    impls = [i for i in (*bench.CPU_IMPLS, *bench.GPU_IMPLS) if backends.get(i)]
    repeat = QUICK_REPEAT if quick else FULL_REPEAT
    B, D, H, N = HEADLINE["B"], HEADLINE["D"], HEADLINE["H"], HEADLINE["N"]
    records = []
    for L in (lengths if lengths is not None else (QUICK_L if quick else SWEEP_L)):
        params, x = _problem(B, L, D, H, N)
        h_ref, _ = lmu.forward(params, x)
        for impl in impls:
            fwd, fwd_bwd = _lmu_fns(params, x, impl)
            assert_close(f"{impl} LMU h_all", h_ref, to_numpy(fwd()[0]), rtol=RTOL_OUT)
            forms = [("LMU forward", fwd), ("LMU forward+backward", fwd_bwd)]
            if impl.startswith("torch"):
                forms += list(zip(("nn.LSTM forward", "nn.LSTM forward+backward"),
                                  _lstm_fns(D, H, x, impl)))
            config = {"B": B, "L": L, "D": D, "H": H, "N": N, "dtype": "float32"}
            if impl == "torch-cpu":
                import torch  # noqa: PLC0415

                config["threads"] = torch.get_num_threads()
            for form, fn in forms:
                if fn is None:
                    continue
                timing = bench.time_fn(fn, sync=bench.sync_for(impl), **repeat)
                records.append(bench.make_record(impl, form, config, timing))
    return records
