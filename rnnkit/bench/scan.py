"""Chapter 9 benchmark: the methods of ``rnnkit.scan.linear_scan`` over a grid of L and B*D, float32.

What is timed: ``linear_scan(a, b, method=m)`` for m in ``scan.METHODS`` ("form" in the records),
on positive inputs a ~ U(0.5, 0.99), b ~ U(0.1, 1) of shape (B, L, D) so that the log-space
method runs on the same data as the others. Before timing, every method is compared with the
sequential loop on the same backend (float32: rtol 1e-3 for the linear methods; the log method's
error grows with |sum log a|, so it gets 2e-2, see ``rnnkit.scan.log_space_scan``).

Grid: ``SHAPES`` (B, D) in {(1, 1), (1, 16), (8, 64), (32, 256)} times ``LENGTHS`` L in {64, ...,
65,536}, leaving out configurations with more than ``MAX_ELEMENTS`` = 2^23 elements per array
(the Hillis-Steele scan holds several arrays of that size). Quick mode: two shapes, L up to 4,096.

Implementations ("impl"): numpy (the reference), cupy (the same source on CuPy arrays, timed with
a device sync after every call), torch-cuda (the same source on CUDA tensors). GPU backends are
skipped where none is available.

``count_work(method, L)`` counts what each method actually does: it runs ``linear_scan`` on a
NumPy subclass that counts every elementwise multiplication and every vectorised multiply call,
for one feature channel (B = D = 1). Chapter 9 compares the counts with the formulas of its
work/depth table (and tests/test_scan.py asserts them).
"""
from __future__ import annotations

import math

import numpy as np

from .. import bench, scan
from ..core.backend import to_backend, to_numpy

__all__ = ["run", "count_work", "work_formula", "SHAPES", "LENGTHS", "QUICK_SHAPES",
           "QUICK_LENGTHS", "MAX_ELEMENTS"]

SHAPES = ((1, 1), (1, 16), (8, 64), (32, 256))            # (B, D)
LENGTHS = (64, 256, 1024, 4096, 16384, 65536)
QUICK_SHAPES = ((1, 16), (8, 64))
QUICK_LENGTHS = (256, 4096)
MAX_ELEMENTS = 2 ** 23
FULL_REPEAT = {"warmup": 1, "repeat": 7}
QUICK_REPEAT = {"warmup": 1, "repeat": 3}
RTOL, RTOL_LOG = 1e-3, 2e-2


# ------------------------------------------------------------------------------ work counts
class _Counted(np.ndarray):
    """A NumPy array that counts elementwise multiplications done on it (class-level tallies)."""

    mults = 0        # scalar multiplications performed
    calls = 0        # vectorised multiply calls (one NumPy call each)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        raw = [np.asarray(x) if isinstance(x, _Counted) else x for x in inputs]
        out = getattr(ufunc, method)(*raw, **kwargs)
        if ufunc is np.multiply:
            _Counted.calls += 1
            # a reduction (np.prod) of n numbers to one does n - 1 multiplications
            _Counted.mults += out.size if method == "__call__" else raw[0].size - out.size
        return out.view(_Counted) if isinstance(out, np.ndarray) else out

    def __array_function__(self, func, types, args, kwargs):
        # concatenate, stack, broadcast_to... return plain arrays: keep counting on their results
        out = super().__array_function__(func, types, args, kwargs)
        return out.view(_Counted) if type(out) is np.ndarray else out


def count_work(method: str, L: int, chunk_size: int | None = None) -> dict:
    """Multiplications and vectorised multiply calls of ``linear_scan`` for one channel.

    Runs the library's own code (h_0 = 0, B = D = 1, so "work" is per feature channel; a batch
    of B*D channels does B*D times as much in the same number of calls).

    Returns:
        {"mults": scalar multiplications, "calls": multiply calls, "agrees": whether h matched
        the sequential loop (float64, rtol 1e-12)}.
    """
    rng = np.random.default_rng(0)
    a, b = rng.uniform(-1, 1, (1, L, 1)), rng.standard_normal((1, L, 1))
    _Counted.mults = _Counted.calls = 0
    h = scan.linear_scan(a.view(_Counted), b.view(_Counted), method=method, chunk_size=chunk_size)
    counts = {"mults": _Counted.mults, "calls": _Counted.calls}
    ref = scan.linear_scan(a, b)
    counts["agrees"] = bool(np.allclose(np.asarray(h), ref, rtol=1e-12, atol=1e-12))
    return counts


def work_formula(method: str, L: int, chunk_size: int | None = None) -> dict:
    """The counts ``count_work`` must give, from the structure of each method (chapter 9's table).

    K = ceil(log2 L) rounds or levels; the chunked scan has C = ceil(L / T) chunks of T.
        sequential     L - 1 multiplications in L - 1 calls (h_1 = b_1 needs none)
        hillis_steele  2 sum_{k<K} (L - 2^k) = 2 (K L - 2^K + 1) in 2K calls
        blelloch       levels of n = L, floor(L/2), ... > 1 elements: up-sweep 2 floor(n/2), down-sweep
                       ceil(n/2) - 1 multiplications, less the root's unused a-product:
                       3 (L - 1) - K - 1 for L = 2^K, in 3K - 1 calls
        chunked        reduce 2 (T - 1) C, carry C - 1, scan T C: 3 C T - C - 1 in 3T + C - 3 calls
    """
    if method == "sequential":
        return {"mults": L - 1, "calls": L - 1}
    if method == "hillis_steele":
        K = math.ceil(math.log2(L)) if L > 1 else 0
        return {"mults": 2 * (K * L - 2 ** K + 1), "calls": 2 * K}
    if method == "blelloch":
        mults = calls = 0
        n = L
        while n > 1:                          # one up-sweep level and its down-sweep level
            mults += 2 * (n // 2) + (n + 1) // 2 - 1
            calls += 3
            n = n // 2                        # an odd last element waits for the down-sweep
        if L > 1:                             # the root's product of all a's is not computed
            mults, calls = mults - 1, calls - 1
        return {"mults": mults, "calls": calls}
    if method == "chunked":
        T = chunk_size if chunk_size is not None else scan.default_chunk_size(L)
        C = -(-L // T)
        return {"mults": 3 * C * T - C - 1, "calls": 3 * T + C - 3}
    raise ValueError(f"method: expected one of 'sequential', 'hillis_steele', 'blelloch', "
                     f"'chunked', got {method!r}")


# ----------------------------------------------------------------------------------- timing
def _problem(B: int, L: int, D: int, seed: int = 0):
    """Positive float32 inputs (every method, 'log' included, runs on them), NumPy."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.5, 0.99, (B, L, D)).astype(np.float32)    # (B, L, D)
    b = rng.uniform(0.1, 1.0, (B, L, D)).astype(np.float32)     # (B, L, D)
    return a, b


def _move(x, impl: str):
    if impl == "cupy":
        return to_backend(x, "cupy")
    if impl == "torch-cuda":
        return to_backend(x, "torch", device="cuda")
    return x


def run(quick: bool = False, *, backends: dict | None = None, shapes=None,
        lengths=None, methods=scan.METHODS) -> list[dict]:
    """Time every method on every (B, D, L) of the grid and every available backend.

    Args:
        quick: QUICK_SHAPES x QUICK_LENGTHS with fewer repeats (for a live notebook cell).
        backends: {impl: bool}; defaults to ``bench.available_backends()``; "torch-cpu" is not
            timed (chapter 9 is about NumPy and the GPU).
        shapes, lengths, methods: override the grid.
    Returns:
        records with form = method and params B, L, D, dtype (and T for "chunked").
    """
    backends = bench.available_backends() if backends is None else backends
    impls = [impl for impl in ("numpy", "cupy", "torch-cuda") if backends.get(impl)]
    shapes = shapes if shapes is not None else (QUICK_SHAPES if quick else SHAPES)
    lengths = lengths if lengths is not None else (QUICK_LENGTHS if quick else LENGTHS)
    repeat = QUICK_REPEAT if quick else FULL_REPEAT
    records = []
    for B, D in shapes:
        for L in lengths:
            if B * L * D > MAX_ELEMENTS:
                continue
            a_np, b_np = _problem(B, L, D)
            for impl in impls:
                a, b = _move(a_np, impl), _move(b_np, impl)
                ref = to_numpy(scan.linear_scan(a, b))
                for method in methods:
                    got = to_numpy(scan.linear_scan(a, b, method=method))
                    tol = RTOL_LOG if method == "log" else RTOL
                    err = float(np.max(np.abs(got - ref) / np.abs(ref)))
                    if not err <= tol:
                        raise AssertionError(f"{impl} {method} B={B} L={L} D={D}: relative error "
                                             f"{err:.1e} against the sequential loop (> {tol})")
                    timing = bench.time_fn(lambda m=method: scan.linear_scan(a, b, method=m),
                                           sync=bench.sync_for(impl), **repeat)
                    config = {"B": B, "L": L, "D": D, "dtype": "float32"}
                    if method == "chunked":
                        config["T"] = scan.default_chunk_size(L)
                    rec = bench.make_record(impl, method, config, timing)
                    rec["max_rel_err"] = err
                    records.append(rec)
    return records
