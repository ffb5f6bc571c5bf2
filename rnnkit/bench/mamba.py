"""Chapter 14 benchmark: the three forms of the selective scan over the length L, float32.

Forms timed (all map (u, delta, A, B, C, D, z) to y (B, L, D)):

    sequential   the loop over t (mamba-minimal's reference): L steps of O(B D N)
    scan         rnnkit.scan's tree sweep (method="blelloch": the inclusive, Brent-Kung form of
                 Blelloch's up- and down-sweep, chapter 9) on (A_bar, B_bar u): O(L) work, O(log L) rounds
    chunked      chunks of T = 16: (T, T) decay matrices per channel and state inside chunks,
                 O(B L T D N) work and memory, plus L / T state passes (timed up to L = 1024,
                 where the decay tensor already holds B L T D N = 34M numbers)

Configuration: B=2, D=64, N=16 (one Mamba layer of width 32 with expand 2), L from 64 to 4096.
Before timing each L the forms are compared with the sequential one (float32: rtol 1e-4 of max |y|).
Only numpy by default (GPU backends where present); this is the CPU, NumPy version of the
algorithm, not the paper's fused CUDA kernel, and says nothing about that kernel's speed.
"""
from __future__ import annotations

import numpy as np

from .. import bench, mamba
from ..core.backend import to_backend, to_numpy

__all__ = ["run", "CONFIG", "SWEEP_L", "QUICK_L", "FORMS", "CHUNK", "CHUNKED_MAX_L"]

CONFIG = {"B": 2, "D": 64, "N": 16}
SWEEP_L = (64, 256, 1024, 4096)
QUICK_L = (64, 256)
FORMS = mamba.SCAN_FORMS
RTOL = 1e-4
CHUNK = 16
CHUNKED_MAX_L = 1024
_IMPLS = ("numpy", "cupy", "torch-cuda")


def _problem(L: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    B, D, N = CONFIG["B"], CONFIG["D"], CONFIG["N"]
    f = np.float32
    return (rng.standard_normal((B, L, D)).astype(f),
            np.exp(rng.uniform(np.log(1e-3), np.log(1e-1), (B, L, D))).astype(f),
            -np.tile(np.arange(1, N + 1, dtype=f), (D, 1)),
            rng.standard_normal((B, L, N)).astype(f), rng.standard_normal((B, L, N)).astype(f),
            np.ones(D, f), rng.standard_normal((B, L, D)).astype(f))


def run(quick: bool = False, *, lengths=None) -> list[dict]:
    """Time every form over L on every available implementation; return the records."""
    avail = bench.available_backends()
    records = []
    for L in lengths if lengths is not None else (QUICK_L if quick else SWEEP_L):
        host = _problem(L)
        for impl in [i for i in _IMPLS if avail.get(i)]:
            args = [to_backend(a, impl) if impl != "torch-cuda" else to_backend(a, "torch", "cuda")
                    for a in host]
            forms = [f for f in FORMS if f != "chunked" or L <= CHUNKED_MAX_L]
            fns = {form: (lambda form=form: mamba.selective_scan(*args[:5], D=args[5], z=args[6],
                                                                  form=form, chunk_size=CHUNK))
                   for form in forms}
            ref = to_numpy(fns["sequential"]())
            for form in forms[1:]:
                err = np.max(np.abs(to_numpy(fns[form]()) - ref)) / np.max(np.abs(ref))
                if not err < RTOL:
                    raise AssertionError(f"{impl}, L={L}: {form} differs from sequential by {err:.1e}")
            for form, fn in fns.items():
                timing = bench.time_fn(fn, sync=bench.sync_for(impl), warmup=1,
                                       repeat=3 if quick else 5)
                records.append(bench.make_record(impl, form, {**CONFIG, "L": L, "dtype": "float32"},
                                                 timing))
    return records
