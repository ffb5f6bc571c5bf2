"""Tests for rnnkit.lru: the paper's loop, recurrent and scan forms, gradients three ways, init."""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rnnkit import lru
from rnnkit.core.backend import to_backend
from rnnkit.core.testing import assert_close, numerical_gradient

RTOL = 1e-12  # float64, the same arithmetic re-bracketed
METHODS = ("sequential", "hillis_steele", "blelloch", "chunked")


def make(rng, B=2, L=6, D=3, N=4, **kw):
    params = lru.init(rng, D, N, **kw)
    u = rng.standard_normal((B, L, D))
    x0 = rng.standard_normal((B, N)) + 1j * rng.standard_normal((B, N))
    return params, u, x0


def paper_lru(params, u, x0):
    """Orvieto et al. 2023, Appendix A, one sequence at a time with matrices as in the paper."""
    Lambda = np.exp(-np.exp(params["nu_log"]) + 1j * np.exp(params["theta_log"]))   # (N,)
    B_norm = (params["B_re"] + 1j * params["B_im"]) * np.exp(params["gamma_log"])[:, None]
    C = params["C_re"] + 1j * params["C_im"]
    ys = np.zeros(u.shape)
    for i in range(u.shape[0]):
        x = x0[i]
        for k in range(u.shape[1]):
            x = Lambda * x + B_norm @ u[i, k]
            ys[i, k] = (C @ x).real + params["D"] * u[i, k]
    return ys


def test_forward_matches_the_papers_loop():
    rng = np.random.default_rng(0)
    params, u, x0 = make(rng, B=3, L=9)
    y, _ = lru.forward(params, u, x0)
    assert_close("y", paper_lru(params, u, x0), y, rtol=RTOL)


def test_step_loop_equals_forward():
    rng = np.random.default_rng(1)
    params, u, x0 = make(rng)
    y_all, x_last = lru.forward(params, u, x0)
    x = x0
    for k in range(u.shape[1]):
        y, x = lru.step(params, u[:, k], x)
        assert_close(f"y_{k + 1}", y_all[:, k], y, rtol=RTOL)
    assert_close("x_last", x_last, x, rtol=RTOL)


@given(B=st.integers(1, 3), L=st.integers(1, 20), D=st.integers(1, 4), N=st.integers(1, 5),
       zero_x0=st.booleans(), seed=st.integers(0, 2**16))
def test_scan_forms_equal_recurrent_form(B, L, D, N, zero_x0, seed):
    rng = np.random.default_rng(seed)
    params, u, x0 = make(rng, B, L, D, N)
    x0 = None if zero_x0 else x0
    y_ref, x_ref = lru.forward(params, u, x0)
    assert y_ref.shape == (B, L, D) and x_ref.shape == (B, N)
    for method in METHODS:
        y, x_last = lru.forward_scan(params, u, x0, method=method)
        assert_close(f"y ({method})", y_ref, y, rtol=RTOL)
        assert_close(f"x_last ({method})", x_ref, x_last, rtol=RTOL)


def test_init_ring_and_normalisation():
    rng = np.random.default_rng(2)
    params = lru.init(rng, 8, 2000, r_min=0.4, r_max=0.9, max_phase=np.pi / 10)
    lam = lru.lambda_of(params)
    assert np.all((np.abs(lam) >= 0.4) & (np.abs(lam) <= 0.9))
    assert np.all((np.angle(lam) >= 0) & (np.angle(lam) <= np.pi / 10))
    # |lambda|^2 is uniform on [r_min^2, r_max^2] (uniform on the ring's area): mean at the midpoint.
    assert abs(np.mean(np.abs(lam) ** 2) - (0.16 + 0.81) / 2) < 0.02
    assert_close("gamma", np.sqrt(1 - np.abs(lam) ** 2), np.exp(params["gamma_log"]), rtol=1e-14)


def test_normalisation_keeps_state_variance_at_one():
    """With white-noise input and gamma = sqrt(1 - |lambda|^2), E|x_k|^2 tends to ||B_n||^2 for
    every state n: the point of (10.9). Checked per state against the closed form of the variance."""
    rng = np.random.default_rng(3)
    params = lru.init(rng, 1, 3, r_min=0.9, r_max=0.99)
    params["B_re"][:], params["B_im"][:] = 1.0, 0.0
    u = rng.standard_normal((400, 300, 1))
    _, x_last = lru.forward_scan(params, u)
    var = np.mean(np.abs(x_last) ** 2, axis=0)                # (N,)
    lam2 = np.abs(lru.lambda_of(params)) ** 2
    expected = (1 - lam2**300)                                # gamma^2 sum_k |lambda|^2k
    assert np.all(np.abs(var - expected) < 0.2)


# ---- gradients three ways: finite differences, torch autograd on the same source, forms agree ----

def _loss(params, u, x0, w, w_last):
    y, x_last = lru.forward(params, u, x0)
    return float(np.sum(w * y) + np.sum(w_last.real * x_last.real + w_last.imag * x_last.imag))


def test_backward_matches_finite_differences():
    rng = np.random.default_rng(4)
    params, u, x0 = make(rng, B=2, L=5, D=2, N=3, r_min=0.5, r_max=0.95)
    w = rng.standard_normal((2, 5, 2))
    w_last = rng.standard_normal((2, 3)) + 1j * rng.standard_normal((2, 3))
    _, _, cache = lru.forward(params, u, x0, return_cache=True)
    grads, du, dx0 = lru.backward(params, w, cache, dstate=w_last)
    for key in params:
        def f(value, key=key):
            return _loss({**params, key: value}, u, x0, w, w_last)
        # Central differences (eps 1e-6) on a smooth loss of size ~1: 1e-7 relative is comfortable.
        assert_close(f"d{key}", numerical_gradient(f, params[key]), grads[key], rtol=1e-7)
    assert_close("du", numerical_gradient(lambda v: _loss(params, v, x0, w, w_last), u), du, rtol=1e-7)
    d_re = numerical_gradient(lambda v: _loss(params, u, v + 1j * x0.imag, w, w_last), x0.real)
    d_im = numerical_gradient(lambda v: _loss(params, u, x0.real + 1j * v, w, w_last), x0.imag)
    assert_close("dx0", d_re + 1j * d_im, dx0, rtol=1e-7)


@pytest.mark.parametrize("forward_form", ["forward", "forward_scan"])
def test_backward_matches_torch_autograd_on_the_same_source(forward_form):
    rng = np.random.default_rng(5)
    params, u, x0 = make(rng, B=3, L=11, D=3, N=5)
    w = rng.standard_normal((3, 11, 3))
    tparams = to_backend(params, "torch")
    for v in tparams.values():
        v.requires_grad_(True)
    tu, tx0 = torch.tensor(u, requires_grad=True), torch.tensor(x0, requires_grad=True)
    ty, _ = getattr(lru, forward_form)(tparams, tu, tx0)
    (ty * torch.tensor(w)).sum().backward()
    _, _, cache = lru.forward(params, u, x0, return_cache=True)
    grads, du, dx0 = lru.backward(params, w, cache)
    for key in params:
        assert_close(f"d{key}", tparams[key].grad, grads[key], rtol=1e-11)
    assert_close("du", tu.grad, du, rtol=1e-11)
    assert_close("dx0", tx0.grad, dx0, rtol=1e-11)


@pytest.mark.parametrize("method", METHODS)
def test_backward_forms_agree(method):
    """The cache of forward_scan and a parallel reverse scan give the sequential gradients."""
    rng = np.random.default_rng(6)
    params, u, x0 = make(rng, B=2, L=23, D=3, N=4)
    w = rng.standard_normal((2, 23, 3))
    _, _, cache_seq = lru.forward(params, u, x0, return_cache=True)
    _, _, cache_par = lru.forward_scan(params, u, x0, method=method, return_cache=True)
    ref, du_ref, dx0_ref = lru.backward(params, w, cache_seq)
    grads, du, dx0 = lru.backward(params, w, cache_par, method=method, chunk_size=5)
    for key in params:
        assert_close(f"d{key} ({method})", ref[key], grads[key], rtol=1e-11)
    assert_close("du", du_ref, du, rtol=1e-11)
    assert_close("dx0", dx0_ref, dx0, rtol=1e-11)


def test_gradients_are_real_and_shaped_like_params():
    rng = np.random.default_rng(7)
    params, u, x0 = make(rng)
    _, _, cache = lru.forward(params, u, return_cache=True)
    grads, du, dx0 = lru.backward(params, np.ones_like(u), cache)
    for key, value in params.items():
        assert grads[key].shape == value.shape and not np.iscomplexobj(grads[key]), key
    assert du.shape == u.shape and dx0.shape == x0.shape


# ---- bad input ----

def test_bad_inputs_raise_clear_errors():
    rng = np.random.default_rng(8)
    params, u, x0 = make(rng, B=2, L=6, D=3, N=4)
    with pytest.raises(ValueError, match=r"u: expected 3 dimensions \(B, L, D=3\), got shape \(6, 3\)"):
        lru.forward(params, u[0])
    with pytest.raises(ValueError, match=r"u: expected shape \(B=2, L=6, D=3\) \(from params\['B_re'\]\), got \(2, 6, 5\)"):
        lru.forward_scan(params, rng.standard_normal((2, 6, 5)))
    with pytest.raises(ValueError, match=r"state: expected shape \(B=2, N=4\)"):
        lru.forward(params, u, x0[:, :3])
    with pytest.raises(ValueError, match=r"state: expected shape \(B=2, N=4\)"):
        lru.step(params, u[:, 0], x0[:1, :2])
    with pytest.raises(ValueError, match="missing 'gamma_log'"):
        lru.forward({k: v for k, v in params.items() if k != "gamma_log"}, u)
    with pytest.raises(ValueError, match=r"params\['C_im'\]: expected shape \(D=3, N=4\)"):
        lru.forward({**params, "C_im": np.zeros((4, 3))}, u)
    with pytest.raises(ValueError, match="u: expected a floating-point array, got dtype int64"):
        lru.forward(params, np.ones((2, 6, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="a: method='log' needs real, strictly positive"):
        lru.forward_scan(params, u, method="log")
    _, _, cache = lru.forward(params, u, return_cache=True)
    with pytest.raises(ValueError, match=r"dy: expected shape \(B=2, L=6, D=3\)"):
        lru.backward(params, np.zeros((2, 5, 3)), cache)
    with pytest.raises(ValueError, match=r"r_min, r_max: expected 0 <= r_min < r_max <= 1"):
        lru.init(rng, 3, 4, r_min=0.9, r_max=0.5)
    with pytest.raises(ValueError, match="N: expected a positive integer, got 0"):
        lru.init(rng, 3, 0)


@pytest.mark.gpu
def test_cupy_runs_the_same_source():
    import cupy

    rng = np.random.default_rng(9)
    params, u, x0 = make(rng)
    ref = lru.forward(params, u, x0)[0]
    got = lru.forward_scan(to_backend(params, "cupy"), cupy.asarray(u), cupy.asarray(x0))[0]
    assert isinstance(got, cupy.ndarray)
    assert_close("y on CuPy", ref, got, rtol=1e-12)


def test_benchmark_quick_mode_runs_and_checks_agreement():
    """rnnkit/bench/lru.py on a tiny case: every form recorded once per (config, L)."""
    from rnnkit.bench import lru as lru_bench

    records = lru_bench.run(quick=True, backends={"numpy": True}, lengths=(8,),
                            configs=({"B": 1, "D": 2, "N": 3},))
    forms = sorted(r["form"] for r in records)
    assert forms == sorted(f"{p} {m}" for p in ("forward", "forward+backward")
                           for m in lru_bench.METHODS)
    assert all(r["params"] == {"B": 1, "D": 2, "N": 3, "L": 8, "dtype": "float32"} and
               r["median_s"] > 0 for r in records)
