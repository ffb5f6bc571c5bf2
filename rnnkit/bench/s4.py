"""Chapter 13 benchmark: convolution versus recurrence for S4 and S4D, over the length L, float32.

Forms timed (all map u (B, L, H) to y (B, L, H) from a zero state, parameters given):

    S4D conv        s4d.forward_conv: Vandermonde kernel (13.13), O(H N L), + FFT conv (13.15)
    S4D recurrent   s4d.forward: the diagonal recurrence (13.14), L sequential steps, O(B H N) each
    S4 conv         s4.forward_conv on C~-form parameters (what S4 trains): one Cauchy + Woodbury
                    evaluation at the roots of unity (13.5)-(13.9) + FFT, no N x N work
                    (recordings before the C~ form, 2026-11-26, timed the C-form kernel, which
                    adds C~ = C (I - A_bar^L) by repeated squaring, O(N^3 log L))
    S4 recurrent    s4.forward: the dense N x N bilinear recurrence, O(B H N^2) per step
    naive kernel    lmu.fft_conv(s4.kernel_naive(...)): the kernel by L products with A_bar
                    (13.1), the reference the fast kernels are tested against, + FFT conv

Implementations ("impl"): numpy (the reference), cupy and torch-cuda (the same source on the GPU,
moved by ``rnnkit.core.backend.to_backend``; skipped where there is no GPU). torch-cpu is not in the
default set (it runs the same source as numpy with a larger per-step overhead, and doubles the CPU
time); pass ``backends={"torch-cpu": True}`` to include it.

Configuration: B=4, H=32, N=32 (16 complex modes per channel), L from 16 to 16384. Before timing
each L, the convolutional outputs are compared with the recurrent ones (float32: rtol 1e-3 of the
largest output; the S4 recurrence is skipped above L=8192 where one call takes seconds, and then
S4 conv is compared with the naive kernel instead).
"""
from __future__ import annotations

import math
import time

import numpy as np

from .. import bench, lmu, s4, s4d
from ..core.backend import to_backend, to_numpy

__all__ = ["run", "CONFIG", "SWEEP_L", "QUICK_L", "FORMS", "S4_RECURRENT_MAX_L", "KERNEL_FORMS",
           "kernel_costs", "growth_exponent"]

CONFIG = {"B": 4, "H": 32, "N": 32}
SWEEP_L = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
QUICK_L = (64, 256, 1024)
S4_RECURRENT_MAX_L = 8192
FORMS = ("S4D conv", "S4D recurrent", "S4 conv", "S4 recurrent", "naive kernel")
FULL_REPEAT = {"warmup": 1, "repeat": 5}
QUICK_REPEAT = {"warmup": 1, "repeat": 3}
RTOL = 1e-3          # float32, relative to max |y|
_IMPLS = ("numpy", "torch-cpu", "cupy", "torch-cuda")
_DEFAULT = {"numpy": True, "torch-cpu": False, "cupy": True, "torch-cuda": True}


def _problem(B: int, L: int, H: int, N: int, seed: int = 0):
    """float32 S4 and S4D (S4D-Inv) parameters and an input, NumPy."""
    rng = np.random.default_rng(seed)
    p_s4 = s4.init(rng, H, N, dtype=np.float32)
    p_s4d = s4d.init(rng, H, N, dtype=np.float32)
    u = rng.standard_normal((B, L, H)).astype(np.float32)       # (B, L, H)
    return p_s4, p_s4d, u


def _move(obj, impl: str):
    if impl in ("numpy", "cupy"):
        return to_backend(obj, impl)
    return to_backend(obj, "torch", "cpu" if impl == "torch-cpu" else "cuda")


def _fns(p_s4, p_s4d, u, L: int) -> dict:
    """The timed closures, one per form, on whatever backend the arrays live on."""
    p_ct = s4.to_ctilde(p_s4, L)           # the same layer in the trained C~ form (not timed)
    fns = {"S4D conv": lambda: s4d.forward_conv(p_s4d, u),
           "S4D recurrent": lambda: s4d.forward(p_s4d, u)[0],
           "S4 conv": lambda: s4.forward_conv(p_ct, u),
           "S4 recurrent": lambda: s4.forward(p_s4, u)[0],
           "naive kernel": lambda: lmu.fft_conv(s4.kernel_naive(p_s4, L), u) + p_s4["D"] * u}
    if L > S4_RECURRENT_MAX_L:
        del fns["S4 recurrent"]
    return fns


def _check_agree(impl: str, L: int, fns: dict) -> None:
    """Convolution equals recurrence (S4D, S4) and the fast S4 kernel equals the naive one."""
    out = {form: to_numpy(fn()) for form, fn in fns.items()}
    pairs = [("S4D conv", "S4D recurrent"), ("S4 conv", "naive kernel")]
    if "S4 recurrent" in out:
        pairs.append(("S4 conv", "S4 recurrent"))
    for a, b in pairs:
        err = np.max(np.abs(out[a] - out[b])) / np.max(np.abs(out[b]))
        if not err < RTOL:
            raise AssertionError(f"{impl}, L={L}: {a} and {b} differ by {err:.2e} of max |y| "
                                 f"(float32 tolerance {RTOL})")


def run(quick: bool = False, *, backends: dict | None = None, lengths=None) -> list[dict]:
    """Time every form on every available implementation over L; return the records.

    Args:
        quick: a small sweep (L in QUICK_L) with fewer repeats, for running live in a notebook.
        backends: {impl: bool} to run; defaults to numpy, cupy and torch-cuda where available.
        lengths: override the L values swept.
    Returns:
        records (see ``rnnkit.bench``) with params B, L, H, N, dtype (and threads for torch-cpu).
    """
    avail = bench.available_backends()
    wanted = _DEFAULT if backends is None else backends
    impls = [i for i in _IMPLS if wanted.get(i) and avail.get(i)]
    repeat = QUICK_REPEAT if quick else FULL_REPEAT
    records = []
    for L in lengths if lengths is not None else (QUICK_L if quick else SWEEP_L):
        host = _problem(CONFIG["B"], L, CONFIG["H"], CONFIG["N"])
        for impl in impls:
            fns = _fns(*(_move(x, impl) for x in host), L)
            _check_agree(impl, L, fns)
            config = {**CONFIG, "L": L, "dtype": "float32"}
            if impl == "torch-cpu":
                import torch  # noqa: PLC0415

                config["threads"] = torch.get_num_threads()
            for form, fn in fns.items():
                timing = bench.time_fn(fn, sync=bench.sync_for(impl), **repeat)
                records.append(bench.make_record(impl, form, config, timing))
    return records


# --------------------------------------------------------------------------- kernel cost over N, L
KERNEL_FORMS = ("S4 kernel (C~ form)", "S4 kernel (C form)", "S4D kernel", "naive kernel")


def _kernel_fns(H: int, N: int, L: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    p_c = s4.init(rng, H, N)
    p_ct = s4.to_ctilde(p_c, L)
    p_d = s4d.init(rng, H, N, init="inv")
    return {"S4 kernel (C~ form)": lambda: s4.kernel(p_ct, L),
            "S4 kernel (C form)": lambda: s4.kernel_cform(p_c, L),
            "S4D kernel": lambda: s4d.kernel(p_d, L),
            "naive kernel": lambda: s4.kernel_naive(p_c, L)}


def _cpu_time(fn, repeat: int, min_s: float) -> float:
    """Min over ``repeat`` of the CPU time (``time.process_time``) per call, each repeat running
    the call often enough to last at least ``min_s`` seconds."""
    c0 = time.process_time()
    fn()
    first = max(time.process_time() - c0, 1e-6)
    number = max(1, math.ceil(min_s / first))
    best = math.inf
    for _ in range(repeat):
        c0 = time.process_time()
        for _ in range(number):
            fn()
        best = min(best, (time.process_time() - c0) / number)
    return best


def kernel_costs(Ns=(16, 32, 64, 128, 256), Ls=(256, 1024, 4096, 16384), *, N_at: int = 64,
                 L_at: int = 1024, H: int = 2, repeat: int = 3, min_s: float = 0.01,
                 skip=None) -> list[dict]:
    """CPU time of one kernel call (H channels, float64) over N at L = L_at and over L at
    N = N_at, for every form of ``KERNEL_FORMS``: records {"form", "N", "L", "sweep", "cpu_s"}.

    ``skip(form, N, L) -> bool`` leaves out slow points. CPU time, not wall time: the other
    processes of a shared machine slow the wall clock more than the CPU time, but both are noisy;
    read orders of growth, not small ratios.
    """
    records = []
    for sweep, points in (("N", [(N, L_at) for N in Ns]), ("L", [(N_at, L) for L in Ls])):
        for N, L in points:
            for form, fn in _kernel_fns(H, N, L).items():
                if skip is not None and skip(form, N, L):
                    continue
                records.append({"form": form, "N": N, "L": L, "sweep": sweep,
                                "cpu_s": _cpu_time(fn, repeat, min_s)})
    return records


def growth_exponent(records: list[dict], form: str, sweep: str, last: int = 3) -> float:
    """The log-log slope of CPU time against N (or L) over the ``last`` largest sizes of a sweep:
    time ~ size^slope there (least squares)."""
    pts = sorted((r[sweep], r["cpu_s"]) for r in records if r["form"] == form and r["sweep"] == sweep)
    x, y = np.log([p[0] for p in pts[-last:]]), np.log([p[1] for p in pts[-last:]])
    return float(np.polyfit(x, y, 1)[0])
