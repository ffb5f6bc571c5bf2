"""Chapter 16 benchmark: the three forms of retention over the length L, float32.

Forms timed (all map (q, k, v, gamma) to o (B, H, L, dv)):

    recurrent    the loop (16.6): L steps of O(B H dk dv)
    parallel     (16.7): the (L, L) score matrix with the decay mask, O(B H L^2 d) work and memory
                 (timed up to L = 4096)
    chunkwise    (16.8) with C = 64: L / C chunks of O(C^2 d + C dk dv)

Configuration: B=1, H=4, dk=dv=32, gamma_h = 1 - 2^(-5-h), L from 128 to 8192. Before timing
each L the forms are compared with the chunkwise one (float32: rtol 1e-4 of max |o|). Only
numpy by default (GPU backends where present).
"""
from __future__ import annotations

import numpy as np

from .. import bench, retnet
from ..core.backend import to_backend, to_numpy

__all__ = ["run", "CONFIG", "SWEEP_L", "QUICK_L", "FORMS", "CHUNK", "PARALLEL_MAX_L"]

CONFIG = {"B": 1, "H": 4, "dk": 32, "dv": 32}
SWEEP_L = (128, 512, 2048, 8192)
QUICK_L = (64, 256)
FORMS = retnet.RETENTION_FORMS
RTOL = 1e-4
CHUNK = 64
PARALLEL_MAX_L = 4096
_IMPLS = ("numpy", "cupy", "torch-cuda")


def _problem(L: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    B, H, dk, dv = (CONFIG[c] for c in ("B", "H", "dk", "dv"))
    f = np.float32
    q, k = (rng.standard_normal((B, H, L, dk)).astype(f) / np.sqrt(dk) for _ in range(2))
    v = rng.standard_normal((B, H, L, dv)).astype(f)
    return q, k, v, retnet.gammas(np, H, q)


def run(quick: bool = False, *, lengths=None) -> list[dict]:
    """Time every form over L on every available implementation; return the records."""
    avail = bench.available_backends()
    records = []
    for L in lengths if lengths is not None else (QUICK_L if quick else SWEEP_L):
        host = _problem(L)
        for impl in [i for i in _IMPLS if avail.get(i)]:
            args = [to_backend(a, impl) if impl != "torch-cuda" else to_backend(a, "torch", "cuda")
                    for a in host]
            forms = [f for f in FORMS if f != "parallel" or L <= PARALLEL_MAX_L]
            fns = {form: (lambda form=form: retnet.retention(*args, form=form, chunk_size=CHUNK)[0])
                   for form in forms}
            ref = to_numpy(fns["chunkwise"]())
            for form in forms:
                err = np.max(np.abs(to_numpy(fns[form]()) - ref)) / np.max(np.abs(ref))
                if not err < RTOL:
                    raise AssertionError(f"{impl}, L={L}: {form} differs from chunkwise by {err:.1e}")
            for form, fn in fns.items():
                timing = bench.time_fn(fn, sync=bench.sync_for(impl), warmup=1,
                                       repeat=3 if quick else 5)
                records.append(bench.make_record(impl, form, {**CONFIG, "L": L, "dtype": "float32"},
                                                 timing))
    return records
