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
    assert groups == {"linear scan", "selective scan", "elman", "lstm", "gru"}
    assert len(gpu_benchmark.plan(quick=True)) < len(cases)
    assert gpu_benchmark.scan_bytes(10, 100) == 3 * 10 * 100 * 4
    assert gpu_benchmark.selective_scan_bytes(1, 2, 3, 4) == (4 * 6 + 2 * 8) * 4
    assert gpu_benchmark.spec_bandwidth("NVIDIA H100 80GB HBM3") == 3.35e12
    assert gpu_benchmark.spec_bandwidth("NVIDIA H200") == 4.8e12
    assert gpu_benchmark.spec_bandwidth("NVIDIA H100 PCIe") == 2.0e12
    assert gpu_benchmark.spec_bandwidth(None) is None


def test_gpu_command_refuses_without_a_device(monkeypatch):
    import rnnkit.backend

    monkeypatch.setattr(rnnkit.backend, "gpu_available", lambda: False)
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
