"""rnnkit.kernels: the CUDA sources compile (CPU, needs nvcc), inputs are checked (CPU), and on a
GPU every kernel equals the NumPy reference (marked ``gpu``), lengths off the tile size included.
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from rnnkit import elman, gru, kernels, lstm, mamba, scan
from rnnkit.kernels import benchmark as gpu_benchmark

NVCC = shutil.which("nvcc")


# ------------------------------------------------------------------ CPU: sources and inputs
@pytest.mark.skipif(NVCC is None, reason="nvcc (the CUDA compiler) is not on PATH")
def test_every_source_compiles_for_float32_and_float64():
    sizes = kernels.compile_check()
    assert set(sizes) == {f"{f}:{d}" for f in kernels.SOURCES.values() for d in ("float32", "float64")}
    assert all(n > 1000 for n in sizes.values()), sizes      # real PTX, not an empty module


@pytest.mark.skipif(NVCC is None, reason="nvcc (the CUDA compiler) is not on PATH")
def test_compile_check_reports_a_broken_source(tmp_path, monkeypatch):
    for file in kernels.SOURCES.values():
        (tmp_path / file).write_text((kernels.HERE / file).read_text())
    broken = (tmp_path / "linear_scan.cu").read_text().replace("out.a = right.a * left.a;", "out.a = right.a *;")
    (tmp_path / "linear_scan.cu").write_text(broken)
    monkeypatch.setattr(kernels, "HERE", tmp_path)
    with pytest.raises(RuntimeError, match="linear_scan.cu"):
        kernels.compile_check()


def test_compile_check_without_nvcc_says_so(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(FileNotFoundError, match="nvcc: the CUDA compiler is not on PATH"):
        kernels.compile_check()


def test_source_names():
    assert "__global__" in kernels.source("linear_scan")
    with pytest.raises(ValueError, match="name: expected one of"):
        kernels.source("flash_attention")


def test_numpy_inputs_are_refused_with_a_clear_error():
    a = np.ones((2, 5))
    with pytest.raises(ValueError, match="a: expected a CuPy array"):
        kernels.linear_scan(a, a)
    with pytest.raises(ValueError, match="u: expected a CuPy array"):
        kernels.selective_scan(np.ones((1, 3, 2)), np.ones((1, 3, 2)), np.ones((2, 4)),
                               np.ones((1, 3, 4)), np.ones((1, 3, 4)))
    params = elman.init(np.random.default_rng(0), 2, 3)
    with pytest.raises(ValueError, match="expected a CuPy array"):
        kernels.elman_forward(params, np.ones((1, 3, 2)))


def test_the_gpu_plan_and_its_arithmetic():
    cases = gpu_benchmark.plan()
    groups = {c["group"] for c in cases}
    assert groups == {"linear scan", "selective scan", "elman", "lstm", "gru", "retention"}
    assert len(gpu_benchmark.plan(quick=True)) < len(cases)
    assert gpu_benchmark.scan_bytes(10, 100) == 3 * 10 * 100 * 4
    assert gpu_benchmark.selective_scan_bytes(1, 2, 3, 4) == (4 * 6 + 2 * 8) * 4
    # one chunk of C = 2 tokens, dk = dv = 1: scores 2 + scores x V 2 + Q R 1 + K^T V 1 per token
    assert gpu_benchmark.retention_flops(1, 1, 2, 1, 1, 2) == 2 * 2 * (2 + 2 + 2)
    assert gpu_benchmark.spec_bandwidth("NVIDIA H100 80GB HBM3") == 3.35e12
    assert gpu_benchmark.spec_bandwidth("NVIDIA H200") == 4.8e12
    assert gpu_benchmark.spec_bandwidth("NVIDIA H100 PCIe") == 2.0e12
    assert gpu_benchmark.spec_bandwidth(None) is None


def test_gpu_command_refuses_without_a_device(monkeypatch):
    import rnnkit.core.backend

    monkeypatch.setattr(rnnkit.core.backend, "gpu_available", lambda: False)
    with pytest.raises(SystemExit, match="no usable CUDA device"):
        gpu_benchmark.main()


# ------------------------------------------------------------------ GPU: kernels == reference
@pytest.fixture
def cp():
    return pytest.importorskip("cupy")


@pytest.mark.gpu
@pytest.mark.parametrize("L", [1, 5, 1023, 1024, 1025, 5000])
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 1e-4)])
def test_linear_scan_kernel_equals_the_loop(cp, L, dtype, rtol):
    rng = np.random.default_rng(L)
    a = rng.uniform(0.5, 1.0, (3, L, 2)).astype(dtype)
    b = rng.standard_normal((3, L, 2)).astype(dtype)
    h0 = rng.standard_normal((3, 2)).astype(dtype)
    ref = scan.linear_scan(a, b, h0, method="sequential")
    got = cp.asnumpy(kernels.linear_scan(cp.asarray(a), cp.asarray(b), cp.asarray(h0)))
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol)
    got0 = cp.asnumpy(kernels.linear_scan(cp.asarray(a), cp.asarray(b)))
    np.testing.assert_allclose(got0, scan.linear_scan(a, b, method="sequential"), rtol=rtol, atol=rtol)


@pytest.mark.gpu
@pytest.mark.parametrize("L", [1, 7, 300])
def test_selective_scan_kernel_equals_the_reference(cp, L):
    rng = np.random.default_rng(1)
    Bsz, D, N = 2, 40, 16
    u, z = rng.standard_normal((Bsz, L, D)), rng.standard_normal((Bsz, L, D))
    delta = rng.uniform(0.01, 0.5, (Bsz, L, D))
    A = -rng.uniform(0.5, 4, (D, N))
    Bm, Cm, Ds = rng.standard_normal((Bsz, L, N)), rng.standard_normal((Bsz, L, N)), rng.standard_normal(D)
    h0 = rng.standard_normal((Bsz, D, N))
    y_ref, h_ref = mamba.selective_scan(u, delta, A, Bm, Cm, Ds, z, state=h0, return_state=True)
    y, h = kernels.selective_scan(*(cp.asarray(t) for t in (u, delta, A, Bm, Cm, Ds, z, h0)))
    np.testing.assert_allclose(cp.asnumpy(y), y_ref, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(cp.asnumpy(h), h_ref, rtol=1e-11, atol=1e-11)
    y2, _ = kernels.selective_scan(*(cp.asarray(t) for t in (u, delta, A, Bm, Cm)))
    np.testing.assert_allclose(cp.asnumpy(y2), mamba.selective_scan(u, delta, A, Bm, Cm), rtol=1e-11, atol=1e-11)


@pytest.mark.gpu
@pytest.mark.parametrize("H", [1, 33, 256])
def test_rnn_kernels_equal_the_reference(cp, H):
    rng = np.random.default_rng(H)
    Bsz, L, D = 3, 37, 5
    x = rng.standard_normal((Bsz, L, D))
    h0, c0 = rng.standard_normal((Bsz, H)), rng.standard_normal((Bsz, H))
    g = lambda t: cp.asarray(t)  # noqa: E731
    gp = lambda p: {k: cp.asarray(v) for k, v in p.items()}  # noqa: E731
    p = elman.init(rng, D, H)
    y_ref, h_ref = elman.forward(p, x, h0)
    y, h = kernels.elman_forward(gp(p), g(x), g(h0))
    np.testing.assert_allclose(cp.asnumpy(y), y_ref, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(cp.asnumpy(h), h_ref, rtol=1e-11, atol=1e-12)
    p = lstm.init(rng, D, H)
    y_ref, (h_ref, c_ref) = lstm.forward(p, x, (h0, c0))
    y, (h, c) = kernels.lstm_forward(gp(p), g(x), (g(h0), g(c0)))
    np.testing.assert_allclose(cp.asnumpy(y), y_ref, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(cp.asnumpy(c), c_ref, rtol=1e-11, atol=1e-12)
    p = gru.init(rng, D, H, reset_after=True)
    y_ref, h_ref = gru.forward(p, x, h0)
    y, h = kernels.gru_forward(gp(p), g(x), g(h0))
    np.testing.assert_allclose(cp.asnumpy(y), y_ref, rtol=1e-11, atol=1e-12)
    y_ref0, _ = gru.forward(p, x)
    np.testing.assert_allclose(cp.asnumpy(kernels.gru_forward(gp(p), g(x))[0]), y_ref0, rtol=1e-11, atol=1e-12)


@pytest.mark.gpu
@pytest.mark.parametrize("L, C", [(1, 64), (37, 16), (64, 64), (300, 64), (129, 7)])
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-11), (np.float32, 2e-4)])
def test_retention_kernel_equals_the_reference(cp, L, C, dtype, rtol):
    from rnnkit import retnet

    rng = np.random.default_rng(L * C)
    Bsz, H, dk, dv = 2, 3, 32, 48
    q, k = (rng.standard_normal((Bsz, H, L, dk)).astype(dtype) / np.sqrt(dk) for _ in range(2))
    v = rng.standard_normal((Bsz, H, L, dv)).astype(dtype)
    gamma = np.array([1.0, 0.97, 0.5], dtype=dtype)
    state = rng.standard_normal((Bsz, H, dk, dv)).astype(dtype)
    for s0 in (None, state):
        o_ref, s_ref = retnet.retention(q, k, v, gamma, form="recurrent", state=s0)
        o, s = kernels.retention_chunkwise(*(cp.asarray(t) for t in (q, k, v, gamma)), chunk_size=C,
                                           state=None if s0 is None else cp.asarray(s0))
        np.testing.assert_allclose(cp.asnumpy(o), o_ref, rtol=rtol, atol=rtol)
        np.testing.assert_allclose(cp.asnumpy(s), s_ref, rtol=rtol, atol=rtol)


def test_retention_kernel_refuses_bad_input(monkeypatch):
    with pytest.raises(ValueError, match="q: expected a CuPy array"):
        kernels.retention_chunkwise(np.ones((1, 1, 3, 2)), np.ones((1, 1, 3, 2)), np.ones((1, 1, 3, 2)), np.ones(1))


# ------------------------------------------------------------------ CPU: kernels emulated serially
# A kernel whose threads cooperate only through loops that stride by blockDim.x (no warp shuffles,
# no barrier inside a data-dependent loop) computes the same thing with ONE thread per block: that
# thread walks every strided index itself, and __syncthreads() between two phases is then a no-op.
# Compiled as C++ with the few CUDA words defined below and launched block by block from ctypes,
# such a kernel is checked against the NumPy reference on a CPU machine: its index arithmetic,
# chunk boundaries and null-pointer options, not its parallel speed (atomicAdd becomes +=). (linear_scan.cu uses warp
# shuffles and rnn_sequence.cu a barrier per time step across H threads: those need the GPU.)
_EMULATION_HEADER = r"""
#include <algorithm>
#include <cmath>
using std::min; using std::max; using std::pow; using std::exp;
struct dim3 { unsigned x, y, z; };
extern "C" { dim3 blockIdx, threadIdx, blockDim, gridDim; }
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __syncthreads()
#define atomicAdd(address, value) (*(address) += (value))
"""
GXX = shutil.which("g++")


def _emulated(source_name: str, dtype: str, tmp_path):
    """The kernel file compiled for the CPU: (ctypes library, launch(name, grid, *args))."""
    import ctypes
    import subprocess

    src, header = tmp_path / f"{source_name}.cpp", tmp_path / "cuda_emulation.h"
    header.write_text(_EMULATION_HEADER)
    src.write_text(kernels.source(source_name))
    lib_path = tmp_path / f"{source_name}_{dtype}.so"
    ctype = {"float32": "float", "float64": "double"}[dtype]
    proc = subprocess.run([GXX, "-O1", "-shared", "-fPIC", "-x", "c++", "-include", str(header),
                           f"-DSCALAR_T={ctype}", str(src), "-o", str(lib_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lib = ctypes.CDLL(str(lib_path))

    class Dim3(ctypes.Structure):
        _fields_ = [("x", ctypes.c_uint), ("y", ctypes.c_uint), ("z", ctypes.c_uint)]

    block_idx, thread_idx = Dim3.in_dll(lib, "blockIdx"), Dim3.in_dll(lib, "threadIdx")
    Dim3.in_dll(lib, "blockDim").x, thread_idx.x = 1, 0
    Dim3.in_dll(lib, "blockDim").y = Dim3.in_dll(lib, "blockDim").z = 1

    def arg(a):
        if a is None:
            return ctypes.c_void_p(0)
        if isinstance(a, np.ndarray):
            assert a.flags.c_contiguous and a.dtype == np.dtype(dtype)
            return a.ctypes.data_as(ctypes.c_void_p)
        return a  # a ctypes scalar (c_int, c_longlong)

    def launch(name, grid, *args):
        fn = getattr(lib, name)
        cargs = [arg(a) for a in args]
        for by in range(grid[1] if len(grid) > 1 else 1):
            for bx in range(grid[0]):
                block_idx.x, block_idx.y, block_idx.z = bx, by, 0
                fn(*cargs)

    return launch


@pytest.mark.skipif(GXX is None, reason="g++ is not on PATH")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("L, C, with_state", [(1, 4, False), (13, 4, True), (16, 16, False), (37, 64, True)])
def test_retention_kernel_emulated_on_the_cpu_equals_the_numpy_chunkwise_form(tmp_path, dtype, L, C, with_state):
    import ctypes

    from rnnkit import retnet

    rng = np.random.default_rng(L + C)
    Bsz, H, dk, dv = 2, 3, 5, 4
    q, k = (rng.standard_normal((Bsz, H, L, dk)).astype(dtype) for _ in range(2))
    v = rng.standard_normal((Bsz, H, L, dv)).astype(dtype)
    gamma = np.array([1.0, 0.9, 0.5], dtype=dtype)          # gamma = 1 (no decay) included
    state = rng.standard_normal((Bsz, H, dk, dv)).astype(dtype) if with_state else None
    o_ref, s_ref = retnet.retention(q, k, v, gamma, form="recurrent", state=state)

    launch = _emulated("retention_chunkwise", dtype, tmp_path)
    n_chunks = -(-L // C)
    U = np.zeros((Bsz, H, n_chunks, dk, dv), dtype=dtype)
    R_in, s_out = np.zeros_like(U), np.zeros((Bsz, H, dk, dv), dtype=dtype)
    o = np.full((Bsz, H, L, dv), np.nan, dtype=dtype)      # every entry must be written
    sizes = (ctypes.c_int(H), ctypes.c_longlong(L), ctypes.c_int(dk), ctypes.c_int(dv), ctypes.c_int(C),
             ctypes.c_int(n_chunks))
    launch("retention_chunk_update", (n_chunks, Bsz * H), k, v, gamma, U, *sizes)
    # the state pass is one thread per (b, h, d, e): emulated as that many blocks of one thread
    launch("retention_state_pass", (Bsz * H * dk * dv,), U, gamma, state, R_in, s_out,
           ctypes.c_int(Bsz * H), *sizes)
    launch("retention_chunk_output", (n_chunks, Bsz * H), q, k, v, gamma, R_in, o, *sizes)
    rtol = 1e-12 if dtype == "float64" else 2e-4
    np.testing.assert_allclose(o, o_ref, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(s_out, s_ref, rtol=rtol, atol=rtol)


@pytest.mark.skipif(GXX is None, reason="g++ is not on PATH")
@pytest.mark.parametrize("with_options", [False, True])
def test_selective_scan_kernel_emulated_on_the_cpu_equals_the_numpy_loop(tmp_path, with_options):
    import ctypes

    rng = np.random.default_rng(3)
    Bsz, L, D, N = 2, 7, 3, 4
    u, z = rng.standard_normal((Bsz, L, D)), rng.standard_normal((Bsz, L, D))
    delta = np.log1p(np.exp(rng.standard_normal((Bsz, L, D))))      # softplus: positive steps
    A = -np.exp(rng.standard_normal((D, N)))
    Bm, Cm = rng.standard_normal((Bsz, L, N)), rng.standard_normal((Bsz, L, N))
    Ds, h0 = rng.standard_normal(D), rng.standard_normal((Bsz, D, N))
    opt = (lambda a: a) if with_options else (lambda a: None)
    y_ref, h_ref = mamba.selective_scan(u, delta, A, Bm, Cm, opt(Ds), opt(z), form="sequential",
                                        return_state=True, state=opt(h0))
    launch = _emulated("selective_scan", "float64", tmp_path)
    y, h_last = np.full_like(u, np.nan), np.full((Bsz, D, N), np.nan)
    launch("selective_scan", (D, Bsz), u, delta, A, Bm, Cm, opt(Ds), opt(z), opt(h0), y, h_last,
           ctypes.c_int(Bsz), ctypes.c_longlong(L), ctypes.c_int(D), ctypes.c_int(N))
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h_last, h_ref, rtol=1e-12, atol=1e-12)


def _selective_problem(rng, Bsz, L, D, N):
    u, z = rng.standard_normal((Bsz, L, D)), rng.standard_normal((Bsz, L, D))
    delta = np.log1p(np.exp(rng.standard_normal((Bsz, L, D))))      # softplus: positive steps
    A = -np.exp(rng.standard_normal((D, N)))
    Bm, Cm = rng.standard_normal((Bsz, L, N)), rng.standard_normal((Bsz, L, N))
    return u, delta, A, Bm, Cm, rng.standard_normal(D), z, rng.standard_normal((Bsz, D, N))


@pytest.mark.skipif(GXX is None, reason="g++ is not on PATH")
@pytest.mark.parametrize("L", [1, 16, 37])                 # one step, one full chunk, a partial chunk
@pytest.mark.parametrize("with_options", [False, True])
def test_selective_scan_backward_kernel_emulated_on_the_cpu_equals_the_numpy_backward(tmp_path, L, with_options):
    import ctypes

    rng = np.random.default_rng(L)
    Bsz, D, N = 2, 3, 4
    u, delta, A, Bm, Cm, Ds, z, h0 = _selective_problem(rng, Bsz, L, D, N)
    dy, dstate = rng.standard_normal((Bsz, L, D)), rng.standard_normal((Bsz, D, N))
    opt = (lambda a: a) if with_options else (lambda a: None)
    ref = mamba.selective_scan_backward(dy, u, delta, A, Bm, Cm, opt(Ds), opt(z), state=opt(h0),
                                        dstate=opt(dstate))
    launch = _emulated("selective_scan", "float64", tmp_path)
    n_ck = -(-L // kernels.BWD_CHUNK)
    ck = np.zeros((Bsz, D, n_ck, N))
    got = {"u": np.full_like(u, np.nan), "delta": np.full_like(u, np.nan), "A": np.zeros_like(A),
           "B": np.zeros_like(Bm), "C": np.zeros_like(Cm)}
    if with_options:
        got |= {"D": np.zeros_like(Ds), "z": np.full_like(z, np.nan), "state": np.full_like(h0, np.nan)}
    launch("selective_scan_backward", (D, Bsz), dy, u, delta, A, Bm, Cm, opt(Ds), opt(z), opt(h0),
           opt(dstate), ck, got["u"], got["delta"], got["A"], got["B"], got["C"], got.get("D"),
           got.get("z"), got.get("state"), ctypes.c_int(Bsz), ctypes.c_longlong(L), ctypes.c_int(D),
           ctypes.c_int(N))
    assert set(got) == set(ref)
    for key in ref:
        np.testing.assert_allclose(got[key], ref[key], rtol=1e-11, atol=1e-11, err_msg=key)


@pytest.mark.gpu
@pytest.mark.parametrize("L", [1, 16, 300])
def test_selective_scan_backward_kernel_equals_the_reference(cp, L):
    rng = np.random.default_rng(L)
    u, delta, A, Bm, Cm, Ds, z, h0 = _selective_problem(rng, 2, L, 40, 16)
    dy, dstate = rng.standard_normal(u.shape), rng.standard_normal(h0.shape)
    ref = mamba.selective_scan_backward(dy, u, delta, A, Bm, Cm, Ds, z, state=h0, dstate=dstate)
    got = kernels.selective_scan_backward(*(cp.asarray(t) for t in (dy, u, delta, A, Bm, Cm, Ds, z, h0, dstate)))
    for key in ref:
        np.testing.assert_allclose(cp.asnumpy(got[key]), ref[key], rtol=1e-10, atol=1e-10, err_msg=key)


def test_gpu_run_records_a_failing_case_and_goes_on(monkeypatch):
    """One kernel disagreeing with the reference must not cost the rest of a lent device's minutes."""
    from rnnkit import bench

    monkeypatch.setattr(gpu_benchmark, "_gpu_tests", lambda: {"summary": "skipped here"})
    monkeypatch.setattr(gpu_benchmark, "copy_bandwidth", lambda nbytes: 1e12)
    monkeypatch.setattr(gpu_benchmark, "plan", lambda quick: [{"group": "linear scan", "params": {"C": 1, "L": 2}},
                                                              {"group": "retention", "params": {"L": 3}}])

    def broken(*args):
        raise AssertionError("kernels.linear_scan: relative error 1e+00 > 1e-03; not timing a wrong kernel")

    timing = bench.time_fn(lambda: None, warmup=0, repeat=1)
    monkeypatch.setattr(gpu_benchmark, "_scan_records", broken)
    monkeypatch.setattr(gpu_benchmark, "_retention_records",
                        lambda case, quick: [bench.make_record("kernel", "retention chunkwise", case["params"], timing)])
    out = gpu_benchmark.run(quick=True)
    assert [f["group"] for f in out["failed_cases"]] == ["linear scan"]
    assert "relative error" in out["failed_cases"][0]["error"]
    assert len(out["records"]) == 1          # the retention case still ran
