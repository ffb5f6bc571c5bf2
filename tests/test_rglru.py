"""Tests for rnnkit.rglru: the paper's equations, recurrent and scan forms, stability near a = 1."""
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rnnkit import rglru
from rnnkit.core.backend import to_backend
from rnnkit.core.testing import assert_close

RTOL = 1e-12  # float64, the same recurrence re-bracketed
METHODS = ("sequential", "hillis_steele", "blelloch", "chunked")


def make(rng, B=2, L=7, D=4, **kw):
    params = rglru.init(rng, D, **kw)
    params["b_a"] = 0.5 * rng.standard_normal(D)      # non-zero biases, so that they are tested
    params["b_x"] = 0.5 * rng.standard_normal(D)
    x = rng.standard_normal((B, L, D))
    h0 = rng.standard_normal((B, D))
    return params, x, h0


def sig(v):
    return 1.0 / (1.0 + np.exp(-v))


def paper_rglru(params, x, h0, c=8.0):
    """De et al. 2024, equations (1)-(4), one sequence at a time, a^(c r_t) taken literally."""
    B, L, D = x.shape
    a = sig(params["Lambda"])
    h_all = np.zeros((B, L, D))
    for i in range(B):
        h = h0[i]
        for t in range(L):
            r = sig(x[i, t] @ params["W_a"] + params["b_a"])
            i_gate = sig(x[i, t] @ params["W_x"] + params["b_x"])
            a_t = a ** (c * r)
            h = a_t * h + np.sqrt(1 - a_t**2) * (i_gate * x[i, t])
            h_all[i, t] = h
    return h_all


@pytest.mark.parametrize("c", [8.0, 1.0])
def test_forward_matches_the_papers_loop(c):
    rng = np.random.default_rng(0)
    params, x, h0 = make(rng, B=3, L=9, min_rad=0.3, max_rad=0.9)
    # 1e-11: the paper's a^(c r) and sqrt(1 - a^2) differ from the log-space forms by rounding.
    assert_close("h_all", paper_rglru(params, x, h0, c), rglru.forward(params, x, h0, c=c)[0],
                 rtol=1e-11)


def test_step_loop_equals_forward():
    rng = np.random.default_rng(1)
    params, x, h0 = make(rng)
    h_all, h_last = rglru.forward(params, x, h0)
    h = h0
    for t in range(x.shape[1]):
        h, _ = rglru.step(params, x[:, t], h)
        assert_close(f"h_{t + 1}", h_all[:, t], h, rtol=RTOL)
    assert_close("h_last", h_last, h, rtol=0)


@given(B=st.integers(1, 3), L=st.integers(1, 25), D=st.integers(1, 5), zero_h0=st.booleans(),
       seed=st.integers(0, 2**16))
def test_scan_forms_equal_recurrent_form(B, L, D, zero_h0, seed):
    rng = np.random.default_rng(seed)
    params, x, h0 = make(rng, B, L, D)
    h0 = None if zero_h0 else h0
    ref, ref_last = rglru.forward(params, x, h0)
    assert ref.shape == (B, L, D) and ref_last.shape == (B, D)
    for method in METHODS:
        h_all, h_last = rglru.forward_scan(params, x, h0, method=method)
        assert_close(f"h_all ({method})", ref, h_all, rtol=RTOL)
        assert_close(f"h_last ({method})", ref_last, h_last, rtol=RTOL)


def test_init_puts_a_on_the_ring():
    params = rglru.init(np.random.default_rng(2), 2000, min_rad=0.9, max_rad=0.999)
    a = 1.0 / (1.0 + np.exp(-params["Lambda"]))
    assert np.all((a >= 0.9) & (a <= 0.999))
    assert abs(np.mean(a**2) - (0.81 + 0.998001) / 2) < 0.005   # a^2 uniform on [0.81, 0.998]
    assert np.all(params["b_a"] == 0) and np.all(params["b_x"] == 0)


def test_input_scale_is_accurate_when_a_is_close_to_one():
    """Lambda = 40 gives a = 1 - 4e-18: the literal sqrt(1 - a_t^2) is exactly 0 in float64 and the
    input is lost, while sqrt(-expm1(2 log a_t)) keeps it: 1 - a_t^2 = y - y^2/2 + ...,
    y = -2 log a_t."""
    rng = np.random.default_rng(3)
    params, x, _ = make(rng, B=1, L=3, D=4)
    params["Lambda"] = np.full(4, 40.0)
    h_all, _ = rglru.forward(params, x)
    r = sig(x[0, 0] @ params["W_a"] + params["b_a"])
    i_gate = sig(x[0, 0] @ params["W_x"] + params["b_x"])
    y = 2 * 8.0 * r * np.exp(-40.0)               # -2 log a_t, softplus(-40) = e^-40 to 1e-17
    assert_close("h_1", np.sqrt(y) * i_gate * x[0, 0], h_all[0, 0], rtol=1e-14)
    assert np.all(np.sqrt(1 - (1 / (1 + np.exp(-40.0))) ** 16) == 0.0)   # what the literal form gives


def test_saturated_gates_do_not_warn():
    rng = np.random.default_rng(4)
    params, x, h0 = make(rng, L=50)
    params = {k: 1e3 * v for k, v in params.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h_seq, _ = rglru.forward(params, x, h0)
        h_par, _ = rglru.forward_scan(params, x, h0)
    assert np.all(np.isfinite(h_seq))
    assert_close("h_all", h_seq, h_par, rtol=RTOL)


def test_torch_runs_the_same_source_and_differentiates_it():
    rng = np.random.default_rng(5)
    params, x, h0 = make(rng, L=9)
    tparams = to_backend(params, "torch")
    for v in tparams.values():
        v.requires_grad_(True)
    h_all, _ = rglru.forward_scan(tparams, torch.tensor(x), torch.tensor(h0), method="blelloch")
    assert_close("h_all (torch)", rglru.forward(params, x, h0)[0], h_all, rtol=RTOL)
    h_all.sum().backward()
    assert all(torch.isfinite(v.grad).all() for v in tparams.values())


def test_bad_inputs_raise_clear_errors():
    rng = np.random.default_rng(6)
    params, x, h0 = make(rng, B=2, L=7, D=4)
    with pytest.raises(ValueError, match=r"x: expected 3 dimensions \(B, L, D=4\), got shape \(7, 4\)"):
        rglru.forward(params, x[0])
    with pytest.raises(ValueError, match=r"x: expected shape \(B=2, L=7, D=4\) \(from params\['W_a'\]\), got \(2, 7, 3\)"):
        rglru.forward_scan(params, x[:, :, :3])
    with pytest.raises(ValueError, match=r"state: expected shape \(B=2, D=4\)"):
        rglru.forward(params, x, h0[:1])
    with pytest.raises(ValueError, match=r"state: expected shape \(B=2, D=4\)"):
        rglru.step(params, x[:, 0], h0[:, :2])
    with pytest.raises(ValueError, match="missing 'Lambda'"):
        rglru.forward({k: v for k, v in params.items() if k != "Lambda"}, x)
    with pytest.raises(ValueError, match=r"params\['Lambda'\]: expected shape \(D=4\)"):
        rglru.forward({**params, "Lambda": np.zeros(3)}, x)
    with pytest.raises(ValueError, match="x: expected a floating-point array, got dtype int64"):
        rglru.forward(params, np.ones((2, 7, 4), dtype=np.int64))
    with pytest.raises(ValueError, match="c: expected a positive number, got -8"):
        rglru.forward(params, x, c=-8)
    with pytest.raises(ValueError, match="b: method='log' needs real, strictly positive"):
        rglru.forward_scan(params, x, method="log")
    with pytest.raises(ValueError, match="min_rad, max_rad: expected 0 < min_rad < max_rad < 1"):
        rglru.init(rng, 4, min_rad=0.99, max_rad=0.9)


@pytest.mark.gpu
def test_cupy_runs_the_same_source():
    import cupy

    rng = np.random.default_rng(7)
    params, x, h0 = make(rng)
    ref = rglru.forward(params, x, h0)[0]
    got = rglru.forward_scan(to_backend(params, "cupy"), cupy.asarray(x), cupy.asarray(h0))[0]
    assert isinstance(got, cupy.ndarray)
    assert_close("h_all on CuPy", ref, got, rtol=1e-12)
