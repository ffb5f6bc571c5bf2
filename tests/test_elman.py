"""Tests for rnnkit.elman: forms agree, gradients three ways, torch parity, bad input, shapes."""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rnnkit import elman
from rnnkit.core.backend import to_backend
from rnnkit.core.testing import assert_close, numerical_gradient

RTOL = 1e-12  # float64 agreement between two exact implementations of the same equations


def make(rng, B=3, L=6, D=4, H=5):
    params = elman.init(rng, D, H)
    x = rng.standard_normal((B, L, D))
    h0 = 0.5 * rng.standard_normal((B, H))
    return params, x, h0


def test_step_loop_equals_forward():
    rng = np.random.default_rng(0)
    params, x, h0 = make(rng)
    h_all, h_last = elman.forward(params, x, h0)
    h = h0
    for t in range(x.shape[1]):
        h, _ = elman.step(params, x[:, t], h)
        assert_close(f"h_{t + 1}", h, h_all[:, t], rtol=RTOL)
    assert_close("h_last", h, h_last, rtol=RTOL)


def test_zero_initial_state_is_default():
    rng = np.random.default_rng(1)
    params, x, _ = make(rng)
    zeros = np.zeros((x.shape[0], params["W_hh"].shape[0]))
    assert_close("h_all", elman.forward(params, x, zeros)[0], elman.forward(params, x)[0], rtol=0)


@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_matches_torch_rnn_with_copied_weights(num_layers):
    torch.manual_seed(0)
    rnn = torch.nn.RNN(4, 6, num_layers=num_layers, batch_first=True).double()
    x = torch.randn(3, 9, 4, dtype=torch.float64)
    h0 = torch.randn(num_layers, 3, 6, dtype=torch.float64)
    y_ref, hn_ref = rnn(x, h0)
    layers = elman.from_torch(rnn)
    y, hn = elman.forward_layers(layers, x.numpy(), h0.numpy())
    assert_close("output", y_ref.detach(), y, rtol=RTOL)
    assert_close("h_n", hn_ref.detach(), hn, rtol=RTOL)


def test_from_torch_without_bias():
    rnn = torch.nn.RNN(3, 4, bias=False, batch_first=True).double()
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    y_ref, _ = rnn(x)
    (params,) = elman.from_torch(rnn)
    assert_close("output", y_ref.detach(), elman.forward(params, x.numpy())[0], rtol=RTOL)


def _loss(params, x, h0, g_all, g_last):
    """A scalar loss with random weights on every output, so every gradient path is exercised."""
    h_all, h_last = elman.forward(params, x, h0)
    return float(np.sum(g_all * h_all) + np.sum(g_last * h_last))


def test_backward_matches_finite_differences():
    rng = np.random.default_rng(2)
    params, x, h0 = make(rng, B=2, L=5, D=3, H=4)
    g_all = rng.standard_normal((2, 5, 4))
    g_last = rng.standard_normal((2, 4))
    _, _, cache = elman.forward(params, x, h0, return_cache=True)
    grads, dx, dh0 = elman.backward(params, g_all, cache, dstate=g_last)
    for key in params:
        def f(value, key=key):
            return _loss({**params, key: value}, x, h0, g_all, g_last)
        # Central differences have O(eps^2) truncation error: 1e-7 relative is comfortable.
        assert_close(f"d{key}", numerical_gradient(f, params[key]), grads[key], rtol=1e-7)
    assert_close("dx", numerical_gradient(lambda v: _loss(params, v, h0, g_all, g_last), x), dx, rtol=1e-7)
    assert_close("dh0", numerical_gradient(lambda v: _loss(params, x, v, g_all, g_last), h0), dh0, rtol=1e-7)


def test_backward_matches_torch_autograd_on_the_same_source():
    """Run rnnkit.elman.forward itself on torch tensors and let autograd differentiate it."""
    rng = np.random.default_rng(3)
    params, x, h0 = make(rng, B=4, L=12, D=3, H=6)
    g_all = rng.standard_normal((4, 12, 6))
    tparams = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    tx, th0 = torch.tensor(x, requires_grad=True), torch.tensor(h0, requires_grad=True)
    h_all, _ = elman.forward(tparams, tx, th0)
    (h_all * torch.tensor(g_all)).sum().backward()
    _, _, cache = elman.forward(params, x, h0, return_cache=True)
    grads, dx, dh0 = elman.backward(params, g_all, cache)
    for key in params:
        assert_close(f"d{key}", tparams[key].grad, grads[key], rtol=RTOL)
    assert_close("dx", tx.grad, dx, rtol=RTOL)
    assert_close("dh0", th0.grad, dh0, rtol=RTOL)


@pytest.mark.parametrize("k", [1, 2, 3, 7, 50])
def test_truncated_backward_equals_chunks_with_detached_state(k):
    """truncate=k must equal torch autograd through forward run in chunks of k, state detached."""
    rng = np.random.default_rng(4)
    params, x, h0 = make(rng, B=2, L=10, D=3, H=4)
    g_all = rng.standard_normal((2, 10, 4))
    tparams = {key: torch.tensor(v, requires_grad=True) for key, v in params.items()}
    tx = torch.tensor(x, requires_grad=True)
    th0 = torch.tensor(h0, requires_grad=True)
    h, outs = th0, []
    for start in range(0, 10, k):
        h_chunk, h = elman.forward(tparams, tx[:, start:start + k], h if start == 0 else h.detach())
        outs.append(h_chunk)
    (torch.cat(outs, dim=1) * torch.tensor(g_all)).sum().backward()
    _, _, cache = elman.forward(params, x, h0, return_cache=True)
    grads, dx, dh0 = elman.backward(params, g_all, cache, truncate=k)
    for key in params:
        assert_close(f"d{key} (truncate={k})", tparams[key].grad, grads[key], rtol=RTOL)
    assert_close("dx", tx.grad, dx, rtol=RTOL)
    assert_close("dh0", th0.grad, dh0, rtol=RTOL)


def test_truncation_changes_the_gradient():
    """Guard against a truncate flag that does nothing: k=1 must differ from full BPTT."""
    rng = np.random.default_rng(5)
    params, x, h0 = make(rng, L=8)
    _, _, cache = elman.forward(params, x, h0, return_cache=True)
    g = np.ones((3, 8, 5))
    full = elman.backward(params, g, cache)[0]["W_hh"]
    cut = elman.backward(params, g, cache, truncate=1)[0]["W_hh"]
    assert np.max(np.abs(full - cut)) > 1e-3


def test_init_spectral_radius():
    W_hh = elman.init(np.random.default_rng(6), 3, 32, spectral_radius=1.7)["W_hh"]
    assert abs(np.max(np.abs(np.linalg.eigvals(W_hh))) - 1.7) < 1e-10


def test_float32_stays_float32():
    rng = np.random.default_rng(7)
    params = elman.init(rng, 3, 4, dtype=np.float32)
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    h_all, _, cache = elman.forward(params, x, return_cache=True)
    grads, dx, _ = elman.backward(params, np.ones_like(h_all), cache)
    assert h_all.dtype == np.float32 and dx.dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads.values())


# ---- bad input: every public entry names the argument, the expected shape and the given one ----

def test_bad_inputs_raise_clear_errors():
    rng = np.random.default_rng(8)
    params, x, h0 = make(rng, B=3, L=6, D=4, H=5)
    with pytest.raises(ValueError, match=r"x: expected 3 dimensions \(B, L, D=4\), got shape \(6, 4\)"):
        elman.forward(params, x[0])
    with pytest.raises(ValueError, match=r"x: expected shape \(B=3, L=6, D=4\) \(from params\['W_xh'\]\)"):
        elman.forward(params, rng.standard_normal((3, 6, 7)))
    with pytest.raises(ValueError, match=r"state: expected shape \(B=3, H=5\)"):
        elman.forward(params, x, np.zeros((2, 5)))
    with pytest.raises(ValueError, match="x: expected a floating-point array, got dtype int64"):
        elman.forward(params, np.ones((3, 6, 4), dtype=np.int64))
    with pytest.raises(ValueError, match="params: expected keys W_xh, W_hh, b_h, missing 'b_h'"):
        elman.forward({"W_xh": params["W_xh"], "W_hh": params["W_hh"]}, x)
    with pytest.raises(ValueError, match=r"params\['W_hh'\]: expected shape \(H=5, H=5\)"):
        elman.forward({**params, "W_hh": np.zeros((5, 4))}, x)
    with pytest.raises(ValueError, match=r"state: expected shape \(B=3, H=5\)"):
        elman.step(params, x[:, 0], np.zeros((3, 2)))
    _, _, cache = elman.forward(params, x, return_cache=True)
    with pytest.raises(ValueError, match=r"dh_all: expected shape \(B=3, L=6, H=5\)"):
        elman.backward(params, np.zeros((3, 5, 5)), cache)
    with pytest.raises(ValueError, match="truncate: expected a positive integer, got 0"):
        elman.backward(params, np.zeros((3, 6, 5)), cache, truncate=0)
    with pytest.raises(ValueError, match="D: expected a positive integer, got 0"):
        elman.init(rng, 0, 5)
    with pytest.raises(ValueError, match="module: expected torch.nn.RNN, got LSTM"):
        elman.from_torch(torch.nn.LSTM(2, 3))
    with pytest.raises(ValueError, match="module.nonlinearity: expected 'tanh', got 'relu'"):
        elman.from_torch(torch.nn.RNN(2, 3, nonlinearity="relu"))
    with pytest.raises(ValueError, match="layers: expected a non-empty list"):
        elman.forward_layers([], x)


# ---- properties over shapes, including batch 1 and length 1 ----

@given(B=st.integers(1, 4), L=st.integers(1, 7), D=st.integers(1, 5), H=st.integers(1, 6),
       seed=st.integers(0, 2**16))
def test_shapes_and_torch_parity_property(B, L, D, H, seed):
    rng = np.random.default_rng(seed)
    params, x, h0 = make(rng, B, L, D, H)
    h_all, h_last, cache = elman.forward(params, x, h0, return_cache=True)
    assert h_all.shape == (B, L, H) and h_last.shape == (B, H)
    assert_close("h_last is the last step", h_all[:, -1], h_last, rtol=0)
    tparams = to_backend(params, "torch")
    for v in tparams.values():
        v.requires_grad_(True)
    th, _ = elman.forward(tparams, torch.tensor(x), torch.tensor(h0))
    th.sum().backward()
    grads, dx, dh0 = elman.backward(params, np.ones_like(h_all), cache)
    assert dx.shape == (B, L, D) and dh0.shape == (B, H)
    for key in params:
        assert_close(f"d{key}", tparams[key].grad, grads[key], rtol=1e-11)


@pytest.mark.gpu
def test_cupy_runs_the_same_source():
    import cupy

    rng = np.random.default_rng(9)
    params, x, h0 = make(rng)
    ref = elman.forward(params, x, h0)[0]
    got = elman.forward(to_backend(params, "cupy"), cupy.asarray(x), cupy.asarray(h0))[0]
    assert isinstance(got, cupy.ndarray)
    assert_close("h_all on CuPy", ref, got, rtol=1e-12)
