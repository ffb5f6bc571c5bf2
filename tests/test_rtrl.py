"""Tests for rnnkit.rtrl: RTRL's gradient equals BPTT's, torch autograd's and finite differences;
its sensitivities are the Jacobians dh_t/dtheta; online training; bad input; shapes."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnkit import elman, rtrl
from rnnkit.training import layers
from rnnkit.core.backend import to_backend
from rnnkit.tasks import delayed_recall
from rnnkit.core.testing import assert_close, numerical_gradient

RTOL = 1e-12   # float64: two exact algorithms for the same sum, only summation order differs


def make(rng, B=3, L=6, D=4, H=5):
    params = elman.init(rng, D, H)
    x = rng.standard_normal((B, L, D))
    h0 = 0.5 * rng.standard_normal((B, H))
    g = rng.standard_normal((B, L, H))           # dLoss/dh_t from the outputs
    return params, x, h0, g


def bptt(params, x, h0, g):
    _, _, cache = elman.forward(params, x, h0, return_cache=True)
    return elman.backward(params, g, cache)[0]


def test_gradient_equals_bptt():
    params, x, h0, g = make(np.random.default_rng(0))
    got, h_all = rtrl.gradients(params, x, g, h0)
    ref = bptt(params, x, h0, g)
    for k in params:
        assert_close(f"d{k}", ref[k], got[k], rtol=RTOL)
    assert_close("h_all", elman.forward(params, x, h0)[0], h_all, rtol=RTOL)


def test_gradient_equals_torch_autograd():
    params, x, h0, g = make(np.random.default_rng(1))
    tp = {k: v.requires_grad_(True) for k, v in to_backend(params, "torch").items()}
    h_all, _ = elman.forward(tp, torch.tensor(x), torch.tensor(h0))
    (h_all * torch.tensor(g)).sum().backward()
    got, _ = rtrl.gradients(params, x, g, h0)
    for k in params:
        assert_close(f"d{k}", tp[k].grad.numpy(), got[k], rtol=1e-11)


def test_gradient_equals_finite_differences():
    params, x, h0, g = make(np.random.default_rng(2), B=2, L=4, D=3, H=3)
    got, _ = rtrl.gradients(params, x, g, h0)
    for k in params:
        def loss(value, k=k):
            p = dict(params, **{k: value})
            return float(np.sum(elman.forward(p, x, h0)[0] * g))
        assert_close(f"d{k} vs finite differences", numerical_gradient(loss, params[k].copy()),
                     got[k], rtol=1e-6)


def test_sensitivities_are_the_jacobians_of_h_t():
    """S_t[b, k, i, j] = dh_t[b, k]/dtheta[i, j]: compare with central differences of h_t."""
    rng = np.random.default_rng(3)
    params, x, h0, _ = make(rng, B=2, L=3, D=2, H=3)
    S = rtrl.init_sensitivities(params, 2)
    h = h0
    for t in range(3):
        h, S = rtrl.step(params, x[:, t], h, S)
    eps = 1e-6
    for k in params:
        num = np.zeros(S._asdict()[k].shape)
        for idx in np.ndindex(params[k].shape):
            hp = {}
            for sign in (1, -1):
                p = {n: v.copy() for n, v in params.items()}
                p[k][idx] += sign * eps
                hp[sign] = elman.forward(p, x, h0)[1]       # h_3 (B, H)
            num[(slice(None), slice(None), *idx)] = (hp[1] - hp[-1]) / (2 * eps)
        assert_close(f"S_3[{k}]", num, S._asdict()[k], rtol=1e-7)


def test_a_broken_recursion_is_caught():
    """The equality test can fail: dropping the W_hh propagation term of (8.2) breaks it."""
    params, x, h0, g = make(np.random.default_rng(4))
    zero_rec = dict(params, W_hh=np.zeros_like(params["W_hh"]))
    got, _ = rtrl.gradients(zero_rec, x, g, h0)
    with pytest.raises(AssertionError):
        assert_close("dW_xh", bptt(params, x, h0, g)["W_xh"], got["W_xh"], rtol=RTOL)


def test_state_size_is_independent_of_length_and_cubic_in_H():
    assert rtrl.state_size(D=4, H=8) == {"rtrl": 8 * (4 * 8 + 64 + 8), "bptt_per_step": 8}
    S = rtrl.init_sensitivities(elman.init(np.random.default_rng(0), 4, 8), 1)
    assert sum(s.size for s in S) == rtrl.state_size(4, 8)["rtrl"]


def test_online_training_with_zero_learning_rate_scores_the_fixed_network():
    rng = np.random.default_rng(5)
    params, readout = elman.init(rng, 2, 4), layers.linear_init(rng, 4, 2)
    x, y = delayed_recall(rng, 3, 20, 2)
    h_all, _ = elman.forward(params, x)
    z = layers.linear(readout, h_all)
    expected = [layers.softmax_cross_entropy(z[:, t], y[:, t])[0] for t in range(20)]
    for method, k in (("rtrl", 1), ("tbptt", 3)):
        res = rtrl.train_online(params, readout, x, y, lr=0.0, method=method, truncate=k)
        assert_close(f"{method} losses", np.array(expected), res.losses, rtol=1e-12)
        assert_close(f"{method} params unchanged", params["W_hh"], res.params["W_hh"], rtol=0)


def test_online_rtrl_learns_a_lag_that_a_shorter_window_cannot():
    """Delayed recall at lag 3: RTRL (no window) learns it; truncated BPTT with a window of 3
    steps (t-2..t) never sees the input that matters and stays near chance (ln 2 nats)."""
    rng = np.random.default_rng(6)
    x, y = delayed_recall(rng, 8, 2000, 3)
    results = {}
    for method, k in (("rtrl", 1), ("tbptt", 3)):
        r = np.random.default_rng(1)
        params, readout = elman.init(r, 2, 8), layers.linear_init(r, 8, 2)
        results[method] = rtrl.train_online(params, readout, x, y, 0.05, method, k).losses[-300:].mean()
    assert results["rtrl"] < 0.1, results
    assert results["tbptt"] > 0.6, results


@pytest.mark.parametrize("kwargs, name", [
    ({"x": np.zeros((2, 5))}, "x"),
    ({"dh_all": np.zeros((2, 5, 7))}, "dh_all"),
    ({"h0": np.zeros((3, 4))}, "h0"),
    ({"x": np.zeros((2, 5, 3), dtype=np.int64)}, "x"),
])
def test_gradients_bad_input(kwargs, name):
    params = elman.init(np.random.default_rng(0), 3, 4)
    args = {"x": np.zeros((2, 5, 3)), "dh_all": np.zeros((2, 5, 4)), "h0": None}
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        rtrl.gradients(params, args["x"], args["dh_all"], args["h0"])


def test_step_and_online_bad_input():
    params = elman.init(np.random.default_rng(0), 3, 4)
    S = rtrl.init_sensitivities(params, 2)
    with pytest.raises(ValueError, match="S_prev.W_hh"):
        rtrl.step(params, np.zeros((2, 3)), np.zeros((2, 4)), S._replace(W_hh=np.zeros((2, 4, 4))))
    readout = layers.linear_init(np.random.default_rng(0), 4, 2)
    x, y = np.zeros((2, 5, 3)), np.zeros((2, 5), dtype=int)
    with pytest.raises(ValueError, match="method"):
        rtrl.train_online(params, readout, x, y, 0.1, method="uoro")
    with pytest.raises(ValueError, match="truncate"):
        rtrl.train_online(params, readout, x, y, 0.1, method="tbptt", truncate=0)
    with pytest.raises(ValueError, match="y"):
        rtrl.train_online(params, readout, x, np.zeros((2, 4), dtype=int), 0.1)
    with pytest.raises(ValueError, match="B"):
        rtrl.init_sensitivities(params, 0)


@settings(max_examples=25, deadline=None)
@given(B=st.integers(1, 3), L=st.integers(1, 5), D=st.integers(1, 3), H=st.integers(1, 4),
       seed=st.integers(0, 2**16))
def test_equals_bptt_for_any_shape(B, L, D, H, seed):
    params, x, h0, g = make(np.random.default_rng(seed), B, L, D, H)
    got, h_all = rtrl.gradients(params, x, g, h0)
    assert h_all.shape == (B, L, H)
    ref = bptt(params, x, h0, g)
    for k in params:
        assert got[k].shape == params[k].shape
        assert_close(f"d{k}", ref[k], got[k], rtol=1e-10, atol=1e-14)


def test_runs_on_torch_tensors():
    params, x, h0, g = make(np.random.default_rng(7))
    got, _ = rtrl.gradients(to_backend(params, "torch"), torch.tensor(x), torch.tensor(g),
                            torch.tensor(h0))
    ref = bptt(params, x, h0, g)
    for k in params:
        assert_close(f"d{k} (torch)", ref[k], got[k].numpy(), rtol=RTOL)


@pytest.mark.gpu
def test_cupy_matches_numpy():
    params, x, h0, g = make(np.random.default_rng(8))
    got, _ = rtrl.gradients(to_backend(params, "cupy"), to_backend(x, "cupy"),
                            to_backend(g, "cupy"), to_backend(h0, "cupy"))
    ref = bptt(params, x, h0, g)
    for k in params:
        assert_close(f"d{k} (cupy)", ref[k], got[k].get(), rtol=1e-10)
