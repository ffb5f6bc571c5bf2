"""Chapter 15 benchmark: the three forms of SSD over the length L, float32.

Forms timed (all map (x, dt, A, B, C) to y (B, L, H, P)):

    recurrent   the loop over t: L steps of O(B H P N), the generation form
    quadratic   y = M (dt x) with the L x L semiseparable matrix written out: O(B H L^2 (N + P))
    chunked     the SSD algorithm with T = 64 (the CPU-sized chunk): O(B H L T (N + P)) in matrix
                products plus L / T state passes of O(B H P N)

Configuration: B=2, H=8, P=16, N=16 (a Mamba-2 layer of width 64, expand 2), L from 64 to 4096
(quadratic up to 1024, where M holds B H L^2 = 17M numbers). Forms are compared with the recurrent one before timing (float32, rtol 1e-4).
"""
from __future__ import annotations

import numpy as np

from .. import bench, mamba2
from ..core.backend import to_backend, to_numpy

__all__ = ["run", "CONFIG", "SWEEP_L", "QUICK_L", "FORMS", "CHUNK", "QUADRATIC_MAX_L"]

CONFIG = {"B": 2, "H": 8, "P": 16, "N": 16}
SWEEP_L = (64, 256, 1024, 4096)
QUICK_L = (64, 256)
FORMS = mamba2.SSD_FORMS
CHUNK = 64
QUADRATIC_MAX_L = 1024
RTOL = 1e-4
_IMPLS = ("numpy", "cupy", "torch-cuda")


def _problem(L: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    B, H, P, N = CONFIG["B"], CONFIG["H"], CONFIG["P"], CONFIG["N"]
    f = np.float32
    return (rng.standard_normal((B, L, H, P)).astype(f),
            np.exp(rng.uniform(np.log(1e-3), np.log(1e-1), (B, L, H))).astype(f),
            -rng.uniform(1, 16, H).astype(f),
            rng.standard_normal((B, L, H, N)).astype(f) / 4, rng.standard_normal((B, L, H, N)).astype(f) / 4)


def run(quick: bool = False, *, lengths=None) -> list[dict]:
    """Time every form over L on every available implementation; return the records."""
    avail = bench.available_backends()
    records = []
    for L in lengths if lengths is not None else (QUICK_L if quick else SWEEP_L):
        host = _problem(L)
        for impl in [i for i in _IMPLS if avail.get(i)]:
            args = [to_backend(a, impl) if impl != "torch-cuda" else to_backend(a, "torch", "cuda")
                    for a in host]
            forms = [f for f in FORMS if f != "quadratic" or L <= QUADRATIC_MAX_L]
            fns = {form: (lambda form=form: mamba2.ssd(*args, form=form, chunk_size=CHUNK))
                   for form in forms}
            ref = to_numpy(fns["recurrent"]())
            for form in forms[1:]:
                err = np.max(np.abs(to_numpy(fns[form]()) - ref)) / np.max(np.abs(ref))
                if not err < RTOL:
                    raise AssertionError(f"{impl}, L={L}: {form} differs from recurrent by {err:.1e}")
            for form, fn in fns.items():
                timing = bench.time_fn(fn, sync=bench.sync_for(impl), warmup=1,
                                       repeat=3 if quick else 5)
                records.append(bench.make_record(impl, form, {**CONFIG, "L": L, "dtype": "float32"},
                                                 timing))
    return records
