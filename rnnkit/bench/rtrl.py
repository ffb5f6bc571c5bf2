"""Chapter 8 benchmark: RTRL against BPTT for the gradient of one sequence, time and memory.

Both compute dLoss/dtheta for the Elman cell on the same (B, L, D) input with the same g_t
(every g_t = 1: the loss is the sum of all hidden states):

    bptt   h_all = elman.forward(...) with its cache, then elman.backward    (1.1)-(1.7)
    rtrl   rtrl.step + rtrl.accumulate in a loop: h_t and S_t = dh_t/dtheta carried forward,
           nothing from earlier steps kept (as an online learner runs it)   (8.1)-(8.5)

Each record holds the median time of one gradient and, measured with ``tracemalloc`` in a
separate untimed call, ``peak_bytes``: the largest amount of memory NumPy allocated during it
(RTRL's sensitivities, BPTT's stored activations and the gradient buffers). Two sweeps at
B=1, D=8, float64 (the precision of chapter 8's equality check):

    over H (L = 64):      RTRL's work grows like H^4 and its memory like H^3; BPTT's work like
                          H^2, which at these small H (B = 1) hides under the per-step overhead:
                          its recorded time stays nearly flat
    over L (H = 16):      BPTT's memory grows like L, RTRL's stays flat

Implementations: "numpy" always, "cupy" (the same source) where a GPU is usable; memory is
measured for NumPy only (``tracemalloc`` does not see device memory).
"""
from __future__ import annotations

import tracemalloc

import numpy as np

from .. import bench, elman, rtrl
from ..core.backend import to_backend, xp_of
from ..core.testing import assert_close

__all__ = ["run", "SWEEP_H", "SWEEP_L", "QUICK_H", "QUICK_L", "B", "D"]

B, D = 1, 8
SWEEP_H, H_FIXED_L = (4, 8, 16, 32, 48, 64), 64
SWEEP_L, L_FIXED_H = (16, 64, 256, 1024, 4096), 16
QUICK_H, QUICK_L = (4, 8, 16), (16, 64, 256)
FULL_REPEAT = {"warmup": 1, "repeat": 5}
QUICK_REPEAT = {"warmup": 1, "repeat": 3}


def _problem(L: int, H: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    params = elman.init(rng, D, H)
    x = rng.standard_normal((B, L, D))                  # (B, L, D)
    return params, x, np.ones((B, L, H))                # g_t = 1 for every t


def _fns(params, x, g, backend: str):
    p, xb, gb = to_backend(params, backend), to_backend(x, backend), to_backend(g, backend)

    def bptt():
        _, _, cache = elman.forward(p, xb, return_cache=True)
        return elman.backward(p, gb, cache)[0]

    def rtrl_grads():
        # (8.1)-(8.5) as an online learner runs them: nothing from past steps is kept
        # (rtrl.gradients also returns h_all, which would add BPTT-like O(L H) memory).
        xp = xp_of(xb)
        S, h = rtrl.init_sensitivities(p, B), xp.zeros((B, p["W_hh"].shape[0]), dtype=xb.dtype)
        grads = {k: v * 0 for k, v in p.items()}
        for t in range(xb.shape[1]):
            h, S = rtrl.step(p, xb[:, t, :], h, S)
            for k, v in rtrl.accumulate(S, gb[:, t, :]).items():
                grads[k] = grads[k] + v
        return grads

    return {"bptt": bptt, "rtrl": rtrl_grads}


def _peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _measure(L: int, H: int, impls: list, repeat: dict, sweep: str) -> list[dict]:
    params, x, g = _problem(L, H)
    records = []
    for impl in impls:
        fns = _fns(params, x, g, impl)
        ref, got = _fns(params, x, g, "numpy")["bptt"](), fns["rtrl"]()
        for k in ref:     # the two methods compute the same gradient (float64, rtol 1e-9)
            assert_close(f"rtrl vs bptt {k} ({impl}, L={L}, H={H})", ref[k], got[k], rtol=1e-9)
        for form, fn in fns.items():
            timing = bench.time_fn(fn, sync=bench.sync_for(impl), **repeat)
            rec = bench.make_record(impl, form, {"B": B, "L": L, "D": D, "H": H,
                                                 "dtype": "float64", "sweep": sweep}, timing)
            if impl == "numpy":
                rec["peak_bytes"] = _peak_bytes(fn)
            records.append(rec)
    return records


def run(quick: bool = False, *, backends: dict | None = None) -> list[dict]:
    """Both sweeps on every available implementation ("numpy", "cupy"); returns the records."""
    backends = bench.available_backends() if backends is None else backends
    impls = [impl for impl in ("numpy", "cupy") if backends.get(impl)]
    repeat = QUICK_REPEAT if quick else FULL_REPEAT
    records = []
    for H in (QUICK_H if quick else SWEEP_H):
        records += _measure(H_FIXED_L, H, impls, repeat, "H")
    for L in (QUICK_L if quick else SWEEP_L):
        records += _measure(L, L_FIXED_H, impls, repeat, "L")
    return records
