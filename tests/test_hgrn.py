"""Tests for rnnkit.hgrn: the released code's equations in torch, forms agree, lower bounds."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from rnnkit import hgrn
from rnnkit.core.backend import to_backend
from rnnkit.core.testing import assert_close

RTOL = 1e-12  # float64, the same recurrence re-bracketed
METHODS = ("sequential", "hillis_steele", "blelloch", "chunked")


def make(rng, B=2, L=7, D=3, H=5):
    params = hgrn.init(rng, D, H)
    params["ln_w"] = 1 + 0.3 * rng.standard_normal(H)   # not the identity, so that it is tested
    params["ln_b"] = 0.3 * rng.standard_normal(H)
    x = rng.standard_normal((B, L, D))
    h0 = rng.standard_normal((B, H))
    return params, x, h0


def torch_hgru(params, x, h0, lower_bound):
    """The real HGRU as the authors' Hgru1_real_1d.forward writes it, with torch's own layers."""
    p = {k: torch.tensor(v) for k, v in params.items()}
    x = torch.tensor(x)
    inp = F.silu(F.linear(x, p["W_c"].T, p["b_c"]))
    output_gate = torch.sigmoid(F.linear(x, p["W_g"].T, p["b_g"]))
    lam = lower_bound + (1 - lower_bound) * torch.sigmoid(F.linear(x, p["W_f"].T, p["b_f"]))
    inp = (1 - lam) * inp
    h, states = torch.tensor(h0), []
    for t in range(x.shape[1]):           # the scan of the released CUDA kernel, as a loop
        h = lam[:, t] * h + inp[:, t]
        states.append(h)
    state = torch.stack(states, dim=1)
    out = F.layer_norm(state * output_gate, (state.shape[-1],), p["ln_w"], p["ln_b"], eps=1e-5)
    return F.linear(out, p["W_o"].T, p["b_o"]), h


@pytest.mark.parametrize("lower_bound", [0.0, 0.7, "array"])
def test_forward_matches_the_released_code(lower_bound):
    rng = np.random.default_rng(0)
    params, x, h0 = make(rng, B=3, L=9)
    if lower_bound == "array":
        lower_bound = rng.uniform(0, 0.99, 5)
    y_ref, h_ref = torch_hgru(params, x, h0, torch.as_tensor(lower_bound, dtype=torch.float64))
    y, h_last = hgrn.forward(params, x, h0, lower_bound=lower_bound)
    assert_close("y", y_ref, y, rtol=1e-11)
    assert_close("h_last", h_ref, h_last, rtol=1e-11)


def test_step_loop_equals_forward():
    rng = np.random.default_rng(1)
    params, x, h0 = make(rng)
    y_all, h_last = hgrn.forward(params, x, h0, lower_bound=0.3)
    h = h0
    for t in range(x.shape[1]):
        y, h = hgrn.step(params, x[:, t], h, lower_bound=0.3)
        assert_close(f"y_{t + 1}", y_all[:, t], y, rtol=RTOL)
    assert_close("h_last", h_last, h, rtol=0)


@given(B=st.integers(1, 3), L=st.integers(1, 25), D=st.integers(1, 4), H=st.integers(1, 5),
       lower_bound=st.floats(0.0, 0.999), zero_h0=st.booleans(), seed=st.integers(0, 2**16))
def test_scan_forms_equal_recurrent_form(B, L, D, H, lower_bound, zero_h0, seed):
    rng = np.random.default_rng(seed)
    params, x, h0 = make(rng, B, L, D, H)
    h0 = None if zero_h0 else h0
    y_ref, h_ref = hgrn.forward(params, x, h0, lower_bound=lower_bound)
    assert y_ref.shape == (B, L, D) and h_ref.shape == (B, H)
    for method in METHODS:
        y, h_last = hgrn.forward_scan(params, x, h0, lower_bound=lower_bound, method=method)
        # LayerNorm divides by the spread of o * h over H: with H = 1 that spread is 0 and y = b_o
        # exactly; with H >= 2 it can be small, so compare y with a looser 1e-9.
        assert_close(f"y ({method})", y_ref, y, rtol=1e-9)
        assert_close(f"h_last ({method})", h_ref, h_last, rtol=RTOL)


def test_lower_bounds_increase_from_zero_and_stay_below_one():
    rng = np.random.default_rng(2)
    Gamma = 3 * rng.standard_normal((6, 8))
    gam = hgrn.lower_bounds(Gamma)
    P = np.exp(Gamma) / np.exp(Gamma).sum(axis=0)
    assert_close("gamma", np.cumsum(P, axis=0) - P[0], gam, rtol=1e-14)
    assert np.all(gam[0] == 0) and np.all(np.diff(gam, axis=0) > 0) and np.all(gam < 1)
    assert np.all(np.isfinite(hgrn.lower_bounds(np.array([[1000.0], [-1000.0], [0.0]]))))


def test_lower_bound_limits_how_fast_the_state_moves():
    """|h_t - h_{t-1}| = (1 - lambda_t) |c_t - h_{t-1}| <= (1 - gamma) |c_t - h_{t-1}|."""
    rng = np.random.default_rng(3)
    params, x, h0 = make(rng, B=4, L=30)
    gamma = 0.9
    _, h_prev = hgrn.forward(params, x[:, :-1], h0, lower_bound=gamma)
    _, h_last = hgrn.forward(params, x, h0, lower_bound=gamma)
    p_c = x[:, -1] @ params["W_c"] + params["b_c"]
    c = p_c / (1 + np.exp(-p_c))
    assert np.all(np.abs(h_last - h_prev) <= (1 - gamma) * np.abs(c - h_prev) + 1e-15)
    _, h_free = hgrn.forward(params, x, h0)          # gamma = 0 moves further, for some entry
    assert np.max(np.abs(h_free - h_prev)) > np.max(np.abs(h_last - h_prev))


def test_torch_runs_the_same_source_and_differentiates_it():
    rng = np.random.default_rng(4)
    params, x, h0 = make(rng)
    tparams = to_backend(params, "torch")
    for v in tparams.values():
        v.requires_grad_(True)
    y, _ = hgrn.forward_scan(tparams, torch.tensor(x), torch.tensor(h0), lower_bound=0.5)
    assert_close("y (torch)", hgrn.forward(params, x, h0, lower_bound=0.5)[0], y, rtol=1e-11)
    y.sum().backward()
    assert all(torch.isfinite(v.grad).all() for v in tparams.values())


def test_bad_inputs_raise_clear_errors():
    rng = np.random.default_rng(5)
    params, x, h0 = make(rng, B=2, L=7, D=3, H=5)
    with pytest.raises(ValueError, match=r"x: expected 3 dimensions \(B, L, D=3\), got shape \(7, 3\)"):
        hgrn.forward(params, x[0])
    with pytest.raises(ValueError, match=r"x: expected shape \(B=2, L=7, D=3\) \(from params\['W_c'\]\), got \(2, 7, 4\)"):
        hgrn.forward_scan(params, rng.standard_normal((2, 7, 4)))
    with pytest.raises(ValueError, match=r"state: expected shape \(B=2, H=5\)"):
        hgrn.forward(params, x, h0[:, :4])
    with pytest.raises(ValueError, match=r"state: expected shape \(B=2, H=5\)"):
        hgrn.step(params, x[:, 0], h0[:1])
    with pytest.raises(ValueError, match="missing 'ln_w'"):
        hgrn.forward({k: v for k, v in params.items() if k != "ln_w"}, x)
    with pytest.raises(ValueError, match=r"params\['W_o'\]: expected shape \(H=5, D=3\)"):
        hgrn.forward({**params, "W_o": np.zeros((3, 5))}, x)
    with pytest.raises(ValueError, match=r"lower_bound: expected values in \[0, 1\)"):
        hgrn.forward(params, x, lower_bound=1.0)
    with pytest.raises(ValueError, match=r"lower_bound: expected values in \[0, 1\)"):
        hgrn.forward_scan(params, x, lower_bound=np.full(5, -0.1))
    with pytest.raises(ValueError, match=r"lower_bound: expected shape \(H=5\)"):
        hgrn.forward(params, x, lower_bound=np.zeros(4))
    with pytest.raises(ValueError, match=r"Gamma: expected 2 dimensions \(K, H\), got shape \(3,\)"):
        hgrn.lower_bounds(np.zeros(3))
    with pytest.raises(ValueError, match="x: expected a floating-point array, got dtype int64"):
        hgrn.forward(params, np.ones((2, 7, 3), dtype=np.int64))


@pytest.mark.gpu
def test_cupy_runs_the_same_source():
    import cupy

    rng = np.random.default_rng(6)
    params, x, h0 = make(rng)
    ref = hgrn.forward(params, x, h0, lower_bound=0.5)[0]
    got = hgrn.forward_scan(to_backend(params, "cupy"), cupy.asarray(x), cupy.asarray(h0),
                            lower_bound=0.5)[0]
    assert isinstance(got, cupy.ndarray)
    assert_close("y on CuPy", ref, got, rtol=1e-11)
