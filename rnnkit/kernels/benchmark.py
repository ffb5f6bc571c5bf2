"""The GPU run: ``python -m rnnkit.bench --device gpu`` (or ``make bench-gpu``) on a CUDA machine.

One prepared command for the few minutes a GPU is lent. In order, it

1. runs the GPU tests (``pytest -m gpu``: the kernels against the NumPy reference, the contract
   suite on CuPy) and records their outcome;
2. measures the device-to-device copy bandwidth (the attainable roofline for memory-bound kernels);
3. times the benchmark matrix below, after checking that every implementation agrees with the
   reference on the same inputs;
4. writes ``chapters/results/gpu__<device>.json`` with the device, driver, versions, date, commit,
   the bandwidths and every record.

The matrix (float32; "cupy" is the rnnkit module itself running on CuPy arrays, one launch per
array operation; "kernel" is rnnkit.kernels; "torch-cuda" is torch's own CUDA implementation):

    linear scan     kernel vs cupy (sequential, blelloch, chunked) over channels C and length L
    selective scan  kernel vs cupy (form "scan") for B=8, D=1024, N=16 over L, forward and backward
    elman/lstm/gru  kernel vs cupy vs torch-cuda (cuDNN nn.RNN/LSTM/GRU), forward, B=32, D=H=256
    retention       kernel vs cupy (retnet.retention, form "chunkwise"), chunk 64, B=8, H=8,
                    dk=dv=64, over L; each record carries its rate in GFLOP/s of the chunkwise algorithm

For the memory-bound kernels (the two scans) each record carries the bytes it must move at least
(every input read once, every output written once), the achieved bandwidth, and its fraction of the
measured copy bandwidth and of the data sheet's (H100 SXM 3.35 TB/s, H200 4.8 TB/s). For the RNNs it
carries the ratio to cuDNN. ``plan(quick)`` lists the cases without running anything, so the matrix
can be read (and tested) on a machine without a GPU.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from .. import bench
from ..core.backend import to_backend
from ..core.interop import to_torch

__all__ = ["plan", "spec_bandwidth", "scan_bytes", "selective_scan_bytes", "retention_flops", "run",
           "main"]

REPO = Path(__file__).resolve().parents[2]
# Data-sheet HBM bandwidths, bytes/s, matched against the device name (most specific first).
SPEC_BANDWIDTH = (("H200", 4.8e12), ("H100 PCIe", 2.0e12), ("H100 NVL", 3.9e12), ("H100", 3.35e12),
                  ("A100", 2.0e12))


def spec_bandwidth(device_name: str | None) -> float | None:
    """The data sheet's memory bandwidth (bytes/s) for a device name, None when not listed."""
    for key, value in SPEC_BANDWIDTH:
        if device_name and key in device_name:
            return value
    return None


def scan_bytes(C: int, L: int, itemsize: int = 4) -> int:
    """Least traffic of the linear scan: read a and b, write h, each (C, L)."""
    return 3 * C * L * itemsize


def selective_scan_bytes(B: int, L: int, D: int, N: int, itemsize: int = 4) -> int:
    """Least traffic of S6: read u, delta, z (B, L, D) and B, C (B, L, N), write y (B, L, D)."""
    return (4 * B * L * D + 2 * B * L * N) * itemsize


def plan(quick: bool = False) -> list[dict]:
    """The benchmark cases, {"group", "params"}, in the order they run."""
    scans = ((1, 1 << 16), (64, 1 << 14), (4096, 4096), (65536, 256)) if not quick else ((64, 4096),)
    lengths = (256, 1024, 4096) if not quick else (256,)
    rnn_lengths = (64, 256, 512, 1024) if not quick else (128,)
    cases = [{"group": "linear scan", "params": {"C": C, "L": L}} for C, L in scans]
    cases += [{"group": "selective scan", "params": {"B": 8, "L": L, "D": 1024, "N": 16}} for L in lengths]
    cases += [{"group": cell, "params": {"B": 32, "L": L, "D": 256, "H": 256}}
              for cell in ("elman", "lstm", "gru") for L in rnn_lengths]
    cases += [{"group": "retention", "params": {"B": 8, "H": 8, "L": L, "dk": 64, "dv": 64, "C": 64}}
              for L in ((1024, 4096) if not quick else (256,))]
    return cases


def retention_flops(B: int, H: int, L: int, dk: int, dv: int, C: int) -> int:
    """Multiply-adds x 2 of the chunkwise form (16.8): per chunk of C tokens the C x C scores (dk
    each), scores times V (dv), Q R (dk dv per token) and the state update K^T V (dk dv per token)."""
    return 2 * B * H * L * (C * dk + C * dv + 2 * dk * dv)


def _time(fn, sync, quick):
    return bench.time_fn(fn, warmup=2, repeat=3 if quick else 10, sync=sync)


def _agree(name, ref, got, rtol):
    import cupy  # noqa: PLC0415

    ref, got = cupy.asnumpy(ref), cupy.asnumpy(got)
    err = float(np.max(np.abs(ref - got)) / max(np.max(np.abs(ref)), 1e-30))
    if not err <= rtol:
        raise AssertionError(f"{name}: relative error {err:.2e} > {rtol:.0e}; not timing a wrong kernel")
    return err


def _bandwidth_fields(nbytes, seconds, copy_bw, spec_bw):
    achieved = nbytes / seconds
    return {"bytes": nbytes, "achieved_Bps": achieved, "fraction_of_copy": achieved / copy_bw,
            "fraction_of_spec": None if spec_bw is None else achieved / spec_bw}


def copy_bandwidth(nbytes: int = 1 << 30) -> float:
    """Device-to-device copy bandwidth, bytes/s (read + write counted), minimum time of 10."""
    import cupy  # noqa: PLC0415

    src = cupy.ones(nbytes // 4, dtype=cupy.float32)
    dst = cupy.empty_like(src)
    t = bench.time_fn(lambda: dst.__setitem__(slice(None), src), warmup=2, repeat=10,
                      sync=bench.cupy_sync())
    return 2 * nbytes / t.min_s


def _scan_records(case, copy_bw, spec_bw, quick):
    import cupy  # noqa: PLC0415

    from .. import kernels, scan  # noqa: PLC0415

    C, L = case["params"]["C"], case["params"]["L"]
    rng = np.random.default_rng(0)
    a = cupy.asarray(rng.uniform(0.9, 1.0, (C, L)).astype(np.float32))     # (B=C, L) channels
    b = cupy.asarray(rng.standard_normal((C, L)).astype(np.float32))
    ref = scan.linear_scan(a, b, method="sequential")
    sync, out = bench.cupy_sync(), []
    nbytes = scan_bytes(C, L)
    err = _agree("kernels.linear_scan", ref, kernels.linear_scan(a, b), 1e-4)
    t = _time(lambda: kernels.linear_scan(a, b), sync, quick)
    out.append(bench.make_record("kernel", "linear scan", {**case["params"], "rel_err": err,
                                 **_bandwidth_fields(nbytes, t.min_s, copy_bw, spec_bw)}, t))
    for method in ("sequential", "blelloch", "chunked"):
        if method == "sequential" and L > 4096:
            continue                                  # L kernel launches per call: minutes
        t = _time(lambda m=method: scan.linear_scan(a, b, method=m), sync, quick)
        out.append(bench.make_record("cupy", f"linear scan {method}", {**case["params"],
                                     **_bandwidth_fields(nbytes, t.min_s, copy_bw, spec_bw)}, t))
    return out


def _selective_records(case, copy_bw, spec_bw, quick):
    import cupy  # noqa: PLC0415

    from .. import kernels, mamba  # noqa: PLC0415

    Bsz, L, D, N = (case["params"][k] for k in ("B", "L", "D", "N"))
    rng = np.random.default_rng(0)
    f32 = lambda *shape, lo=None, hi=None: cupy.asarray(  # noqa: E731
        (rng.uniform(lo, hi, shape) if lo is not None else rng.standard_normal(shape)).astype(np.float32))
    u, z = f32(Bsz, L, D), f32(Bsz, L, D)
    delta = f32(Bsz, L, D, lo=0.001, hi=0.1)
    A = -f32(D, N, lo=0.5, hi=N)
    Bm, Cm, Ds = f32(Bsz, L, N), f32(Bsz, L, N), f32(D)
    ref, _ = mamba.selective_scan(u, delta, A, Bm, Cm, Ds, z, form="scan", return_state=True)
    err = _agree("kernels.selective_scan", ref, kernels.selective_scan(u, delta, A, Bm, Cm, Ds, z)[0], 1e-3)
    sync, nbytes = bench.cupy_sync(), selective_scan_bytes(Bsz, L, D, N)
    t = _time(lambda: kernels.selective_scan(u, delta, A, Bm, Cm, Ds, z), sync, quick)
    out = [bench.make_record("kernel", "selective scan", {**case["params"], "rel_err": err,
                             **_bandwidth_fields(nbytes, t.min_s, copy_bw, spec_bw)}, t)]
    t = _time(lambda: mamba.selective_scan(u, delta, A, Bm, Cm, Ds, z, form="scan"), sync, quick)
    out.append(bench.make_record("cupy", "selective scan scan", {**case["params"],
                                 **_bandwidth_fields(nbytes, t.min_s, copy_bw, spec_bw)}, t))
    # the backward: reads the forward's inputs and dy, writes a gradient of each (the least traffic
    # is about twice the forward's); the kernel recomputes the states, rnnkit on CuPy stores them
    dy = f32(Bsz, L, D)
    ref_g = mamba.selective_scan_backward(dy, u, delta, A, Bm, Cm, Ds, z, method="blelloch")
    got_g = kernels.selective_scan_backward(dy, u, delta, A, Bm, Cm, Ds, z)
    err_g = max(_agree(f"kernels.selective_scan_backward d{k}", ref_g[k], got_g[k], 1e-2) for k in ref_g)
    t = _time(lambda: kernels.selective_scan_backward(dy, u, delta, A, Bm, Cm, Ds, z), sync, quick)
    out.append(bench.make_record("kernel", "selective scan backward", {**case["params"], "rel_err": err_g,
                                 **_bandwidth_fields(2 * nbytes, t.min_s, copy_bw, spec_bw)}, t))
    t = _time(lambda: mamba.selective_scan_backward(dy, u, delta, A, Bm, Cm, Ds, z, method="blelloch"),
              sync, quick)
    out.append(bench.make_record("cupy", "selective scan backward", {**case["params"],
                                 **_bandwidth_fields(2 * nbytes, t.min_s, copy_bw, spec_bw)}, t))
    return out


def _retention_records(case, quick):
    import cupy  # noqa: PLC0415

    from .. import kernels, retnet  # noqa: PLC0415

    Bsz, H, L, dk, dv, C = (case["params"][k] for k in ("B", "H", "L", "dk", "dv", "C"))
    rng = np.random.default_rng(0)
    f32 = lambda *shape, scale=1.0: cupy.asarray((rng.standard_normal(shape) * scale).astype(np.float32))  # noqa: E731
    q, k, v = f32(Bsz, H, L, dk, scale=dk ** -0.5), f32(Bsz, H, L, dk, scale=dk ** -0.5), f32(Bsz, H, L, dv)
    gamma = cupy.asarray((1 - 2.0 ** (-5 - np.arange(H))).astype(np.float32))   # RetNet's decays
    ref, _ = retnet.retention(q, k, v, gamma, form="chunkwise", chunk_size=C)
    err = _agree("kernels.retention_chunkwise", ref, kernels.retention_chunkwise(q, k, v, gamma, C)[0], 1e-3)
    sync, flops = bench.cupy_sync(), retention_flops(Bsz, H, L, dk, dv, C)
    out = []
    for impl, fn in (("kernel", lambda: kernels.retention_chunkwise(q, k, v, gamma, C)),
                     ("cupy", lambda: retnet.retention(q, k, v, gamma, form="chunkwise", chunk_size=C))):
        t = _time(fn, sync, quick)
        fields = {**case["params"], "gflops": flops / t.min_s / 1e9}
        if impl == "kernel":
            fields["rel_err"] = err
        out.append(bench.make_record(impl, "retention chunkwise", fields, t))
    return out


def _rnn_records(case, quick):
    import cupy  # noqa: PLC0415
    import torch  # noqa: PLC0415

    from .. import elman, gru, kernels, lstm  # noqa: PLC0415

    cell_name = case["group"]
    Bsz, L, D, H = (case["params"][k] for k in ("B", "L", "D", "H"))
    rng = np.random.default_rng(0)
    cell, fused = {"elman": (elman, kernels.elman_forward), "lstm": (lstm, kernels.lstm_forward),
                   "gru": (gru, kernels.gru_forward)}[cell_name]
    init_opts = {"reset_after": True} if cell_name == "gru" else {}
    params = cell.init(rng, D, H, dtype=np.float32, **init_opts)
    x = rng.standard_normal((Bsz, L, D)).astype(np.float32)
    p_gpu, x_gpu = to_backend(params, "cupy"), to_backend(x, "cupy")
    ref, _ = cell.forward(p_gpu, x_gpu)
    err = _agree(f"kernels.{cell_name}_forward", ref, fused(p_gpu, x_gpu)[0], 1e-4)
    module = to_torch(cell, params).to("cuda")
    xt = torch.from_numpy(x).to("cuda")
    with torch.no_grad():
        err_torch = _agree(f"torch {cell_name}", ref, cupy.asarray(module(xt)[0]), 1e-4)

    def torch_fwd():
        with torch.no_grad():
            return module(xt)

    sync = bench.cupy_sync()
    t_kernel = _time(lambda: fused(p_gpu, x_gpu), sync, quick)
    t_cupy = _time(lambda: cell.forward(p_gpu, x_gpu), sync, quick)
    t_torch = _time(torch_fwd, bench.torch_cuda_sync(), quick)
    common = dict(case["params"])
    return [bench.make_record("kernel", f"{cell_name} forward", {**common, "rel_err": err,
                              "ratio_to_cudnn": t_kernel.min_s / t_torch.min_s}, t_kernel),
            bench.make_record("cupy", f"{cell_name} forward", {**common,
                              "ratio_to_cudnn": t_cupy.min_s / t_torch.min_s}, t_cupy),
            bench.make_record("torch-cuda", f"{cell_name} forward", {**common, "rel_err": err_torch},
                              t_torch)]


def _gpu_tests() -> dict:
    """Run ``pytest -m gpu`` on the kernel and contract tests; the outcome for the JSON."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider",
           "tests/test_kernels.py", "tests/test_contract.py"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    tail = (proc.stdout + proc.stderr).strip().splitlines()
    return {"command": " ".join(cmd[2:]), "returncode": proc.returncode,
            "summary": tail[-1] if tail else "", "tail": tail[-30:]}


def run(quick: bool = False) -> dict:
    """Everything of the GPU run, as the dict that is saved (see the module docstring)."""
    machine = bench.machine_info()
    spec_bw = spec_bandwidth(machine.get("gpu"))
    tests = _gpu_tests()
    copy_bw = copy_bandwidth(1 << 28 if quick else 1 << 30)
    records, failures = [], []
    for case in plan(quick):
        # A case that fails (a kernel disagreeing with the reference, memory) is recorded as a
        # failure and the run goes on: the device is lent for minutes, one bug must not cost them all.
        try:
            if case["group"] == "linear scan":
                records += _scan_records(case, copy_bw, spec_bw, quick)
            elif case["group"] == "selective scan":
                records += _selective_records(case, copy_bw, spec_bw, quick)
            elif case["group"] == "retention":
                records += _retention_records(case, quick)
            else:
                records += _rnn_records(case, quick)
        except Exception as exc:  # noqa: BLE001  (recorded, and printed at the end)
            failures.append({**case, "error": f"{type(exc).__name__}: {exc}"[:2000]})
    out = bench.make_run("gpu", records, machine, quick)
    out.update({"gpu_tests": tests, "copy_bandwidth_Bps": copy_bw, "spec_bandwidth_Bps": spec_bw,
                "failed_cases": failures})
    return out


def main(quick: bool = False, results_dir: str | Path | None = None) -> Path:
    """Refuse without a GPU; otherwise run everything and write the JSON. Returns its path."""
    from ..core.backend import gpu_available  # noqa: PLC0415

    if not gpu_available():
        raise SystemExit("--device gpu: no usable CUDA device for CuPy here; this command is for the "
                         "GPU machine (see rnnkit/kernels/benchmark.py). On a CPU, "
                         "`python -m rnnkit.bench NAME` runs the CPU benchmarks.")
    out = run(quick)
    folder = Path(results_dir) if results_dir is not None else bench.default_results_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"gpu__{bench.device_tag(out['machine'])}{'__quick' if quick else ''}.json"
    path.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(f"GPU tests: {out['gpu_tests']['summary']}")
    for failure in out["failed_cases"]:
        print(f"FAILED case {failure['group']} {failure['params']}: {failure['error']}")
    print(f"copy bandwidth {out['copy_bandwidth_Bps'] / 1e12:.2f} TB/s; saved {path}")
    return path
