"""Chapter 17 benchmark: the delta rule's recurrent loop against its chunkwise (WY) form, as L grows.

One forward pass of ``rnnkit.deltanet.delta_rule`` (float32, B = 8, H = 4 heads, dk = dv = 64),
L from 64 to 1024 (QUICK_L for a live notebook run), forms:

    recurrent        L rank-one updates of the (dk, dv) state, one after another (17.1)
    chunkwise C=16   L / C chunks: a (C, C) triangular solve and matrix products per chunk (17.3)
    chunkwise C=64   the same with larger chunks (fewer sequential steps, more work per chunk)

Implementations: numpy, torch-cpu, and cupy / torch-cuda where a GPU is present. Before timing
each L the chunkwise outputs are checked against the recurrent one (float32, rtol 1e-3: the two
orders of summation differ by a few ulps of sums of L terms). The paper's claim (Yang et al.
2024, Figure 3) is about GPU kernels: the chunkwise form turns L sequential rank-one updates into
L / C matrix multiplications, which a GPU runs far faster; on a CPU the gain is smaller.
"""
from __future__ import annotations

import numpy as np

from .. import bench, deltanet
from ..core.backend import to_backend, to_numpy
from ..core.testing import assert_close

__all__ = ["run", "FORMS", "CONFIG", "SWEEP_L", "QUICK_L"]

CONFIG = {"B": 8, "H": 4, "dk": 64, "dv": 64}
SWEEP_L = (64, 256, 1024)
QUICK_L = (64, 256)
FORMS = ("recurrent", "chunkwise C=16", "chunkwise C=64")
_IMPLS = ("numpy", "torch-cpu", "cupy", "torch-cuda")
RTOL = 1e-3


def _problem(L: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    B, H, dk, dv = CONFIG["B"], CONFIG["H"], CONFIG["dk"], CONFIG["dv"]
    q = rng.standard_normal((B, H, L, dk)).astype(np.float32) / np.float32(np.sqrt(dk))
    k = deltanet.l2_normalize(rng.standard_normal((B, H, L, dk))).astype(np.float32)
    v = rng.standard_normal((B, H, L, dv)).astype(np.float32)
    beta = rng.uniform(0, 1, (B, H, L)).astype(np.float32)
    return q, k, v, beta


def _fns(impl: str, host):
    backend = {"numpy": "numpy", "cupy": "cupy", "torch-cpu": "torch", "torch-cuda": "torch"}[impl]
    device = "cuda" if impl == "torch-cuda" else None
    args = [to_backend(a, backend, device) for a in host]
    return {"recurrent": lambda: deltanet.delta_rule(*args)[0],
            "chunkwise C=16": lambda: deltanet.delta_rule(*args, form="chunkwise", chunk_size=16)[0],
            "chunkwise C=64": lambda: deltanet.delta_rule(*args, form="chunkwise", chunk_size=64)[0]}


def run(quick: bool = False, *, lengths=None) -> list[dict]:
    """Time every form on every available implementation over L; return the records."""
    avail = bench.available_backends()
    impls = [i for i in _IMPLS if avail.get(i)]
    repeat = {"warmup": 1, "repeat": 3}
    records = []
    for L in lengths if lengths is not None else (QUICK_L if quick else SWEEP_L):
        host = _problem(L)
        for impl in impls:
            fns = _fns(impl, host)
            ref = to_numpy(fns["recurrent"]())
            for form in FORMS[1:]:
                assert_close(f"{impl} {form} L={L}", ref, to_numpy(fns[form]()), rtol=RTOL)
            for form, fn in fns.items():
                timing = bench.time_fn(fn, sync=bench.sync_for(impl), **repeat)
                records.append(bench.make_record(impl, form, {**CONFIG, "L": L,
                                                              "dtype": "float32"}, timing))
    return records
