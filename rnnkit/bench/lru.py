"""Chapter 10 benchmark: the LRU layer, sequential form against the chunked parallel scan, float32.

Forms timed ("form" in the records is "<pass> <method>"):

    forward <method>            y, x_L = lru.forward (method "sequential") or
                                lru.forward_scan(..., method="chunked")          (10.10)-(10.11)
    forward+backward <method>   the same with a cache, then lru.backward with the reverse scan
                                run by the same method                            (10.12)-(10.15)

Implementations ("impl"): numpy (the reference) and cupy (the same source on a GPU, skipped where
no device). Before timing, every form's output is compared with the sequential NumPy one (float32:
rtol 1e-3 on y, since a chunked scan re-brackets sums of up to L terms).

Configurations (ring r in [0.9, 0.999]), L swept over SWEEP_L (QUICK_L in quick mode):

    wide    B=8, D=64, N=128: 1,024 complex state entries per step, so each sequential step is
            already a sizeable vectorised operation and the scan's extra work shows;
    narrow  B=1, D=4,  N=16:  16 entries per step, so the sequential loop is all per-step overhead
            and the scan's ~3 sqrt(L) steps instead of L pay off.
"""
from __future__ import annotations

import numpy as np

from .. import bench, lru
from ..core.backend import to_backend, to_numpy

__all__ = ["run", "CONFIGS", "SWEEP_L", "QUICK_L", "METHODS"]

CONFIGS = ({"B": 8, "D": 64, "N": 128}, {"B": 1, "D": 4, "N": 16})
SWEEP_L = (64, 256, 1024, 4096)
QUICK_L = (64, 256)
METHODS = ("sequential", "chunked")
FULL_REPEAT = {"warmup": 1, "repeat": 5}
QUICK_REPEAT = {"warmup": 1, "repeat": 3}
RTOL = 1e-3


def _problem(config: dict, L: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    params = lru.init(rng, config["D"], config["N"], r_min=0.9, r_max=0.999, dtype=np.float32)
    u = rng.standard_normal((config["B"], L, config["D"])).astype(np.float32)   # (B, L, D)
    return params, u


def _fns(params, u, method: str):
    """forward and forward+backward closures for one method."""
    def forward():
        if method == "sequential":
            return lru.forward(params, u)
        return lru.forward_scan(params, u, method=method)

    def forward_backward():
        if method == "sequential":
            y, _, cache = lru.forward(params, u, return_cache=True)
        else:
            y, _, cache = lru.forward_scan(params, u, method=method, return_cache=True)
        return lru.backward(params, y, cache, method=method)   # loss = |y|^2 / 2, so dy = y

    return forward, forward_backward


def run(quick: bool = False, *, backends: dict | None = None, lengths=None,
        configs=CONFIGS) -> list[dict]:
    """Time both passes of both methods on every available implementation; return the records.

    Args:
        quick: the short sweep QUICK_L with fewer repeats (for a live run in the notebook).
        backends: {impl: bool}, defaults to ``bench.available_backends()``; only "numpy" and "cupy"
            are used.  lengths: override the L values.  configs: the (B, D, N) dicts to run.
    Returns:
        records with params B, L, D, N, dtype.
    """
    backends = bench.available_backends() if backends is None else backends
    impls = [impl for impl in ("numpy", "cupy") if backends.get(impl)]
    repeat = QUICK_REPEAT if quick else FULL_REPEAT
    records = []
    for config, L in ((c, L) for c in configs
                      for L in (lengths if lengths is not None else (QUICK_L if quick else SWEEP_L))):
        params, u = _problem(config, L)
        y_ref = lru.forward(params, u)[0]
        for impl in impls:
            p, x = (params, u) if impl == "numpy" else (to_backend(params, "cupy"), to_backend(u, "cupy"))
            for method in METHODS:
                fwd, fwd_bwd = _fns(p, x, method)
                y = to_numpy(fwd()[0])
                err = float(np.max(np.abs(y - y_ref)) / np.max(np.abs(y_ref)))
                if not err < RTOL:
                    raise AssertionError(f"lru benchmark: {impl} {method} differs from the "
                                         f"sequential NumPy output by {err:.1e} at L={L}")
                record_params = {**config, "L": L, "dtype": "float32"}
                for form, fn in (("forward", fwd), ("forward+backward", fwd_bwd)):
                    timing = bench.time_fn(fn, sync=bench.sync_for(impl), **repeat)
                    records.append(bench.make_record(impl, f"{form} {method}", record_params, timing))
    return records
