"""Tests for rnnkit.gru: forms agree, both reset placements (torch's and Cho et al.'s), gradients
three ways, truncation, bad input, shapes."""
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rnnkit import gru
from rnnkit.core.backend import to_backend
from rnnkit.core.testing import assert_close, numerical_gradient

RTOL = 1e-12  # float64 agreement between two exact implementations of the same equations
PLACEMENTS = [True, False]  # reset_after: torch's placement, Cho et al.'s


def make(rng, B=3, L=6, D=4, H=5, reset_after=True):
    params = gru.init(rng, D, H, reset_after=reset_after)
    x = rng.standard_normal((B, L, D))
    h0 = 0.5 * rng.standard_normal((B, H))
    return params, x, h0


def torch_grads(module, k=0):
    """Gradients of a one-direction torch.nn.GRU layer, keyed like rnnkit's parameters.

    b = b_ih + [b_hr, b_hz, 0]: dLoss/db is b_ih's gradient; b_hn's is the n block of b_hh's.
    """
    H = module.hidden_size
    def grad(name):
        return getattr(module, f"{name}_l{k}").grad

    return {"W_x": grad("weight_ih").T, "W_h": grad("weight_hh").T, "b": grad("bias_ih"),
            "b_hn": grad("bias_hh")[2 * H:]}


def cho_gru_naive(params, x, h0):
    """Cho et al. (2014), eq. 5-8, one sample and one unit at a time, in the paper's column form.

        r_j = sigma([W_r x]_j + [U_r h_{t-1}]_j)          z_j = sigma([W_z x]_j + [U_z h_{t-1}]_j)
        h~_j = tanh([W x]_j + [U (r * h_{t-1})]_j)        h_j = z_j h_{t-1,j} + (1 - z_j) h~_j

    plus the biases rnnkit keeps (b_r, b_z, b inside the sigmoids and the tanh).
    """
    H = h0.shape[1]
    W_r, W_z, W = (params["W_x"][:, k * H:(k + 1) * H].T for k in range(3))   # (H, D) each
    U_r, U_z, U = (params["W_h"][:, k * H:(k + 1) * H].T for k in range(3))   # (H, H) each
    b_r, b_z, b = (params["b"][k * H:(k + 1) * H] for k in range(3))
    B, L, _ = x.shape
    out = np.zeros((B, L, H))
    for s in range(B):
        h = h0[s].copy()
        for t in range(L):
            r = np.array([1 / (1 + np.exp(-(W_r[j] @ x[s, t] + U_r[j] @ h + b_r[j]))) for j in range(H)])
            z = np.array([1 / (1 + np.exp(-(W_z[j] @ x[s, t] + U_z[j] @ h + b_z[j]))) for j in range(H)])
            h_tilde = np.array([np.tanh(W[j] @ x[s, t] + U[j] @ (r * h) + b[j]) for j in range(H)])
            h = z * h + (1 - z) * h_tilde
            out[s, t] = h
    return out


@pytest.mark.parametrize("reset_after", PLACEMENTS)
def test_step_loop_equals_forward(reset_after):
    rng = np.random.default_rng(0)
    params, x, h0 = make(rng, reset_after=reset_after)
    h_all, h_last = gru.forward(params, x, h0)
    h = h0
    for t in range(x.shape[1]):
        h, _ = gru.step(params, x[:, t], h)
        assert_close(f"h_{t + 1}", h, h_all[:, t], rtol=RTOL)
    assert_close("h_last", h, h_last, rtol=RTOL)


def test_zero_initial_state_is_default():
    rng = np.random.default_rng(1)
    params, x, _ = make(rng)
    zeros = np.zeros((x.shape[0], params["W_h"].shape[0]))
    assert_close("h_all", gru.forward(params, x, zeros)[0], gru.forward(params, x)[0], rtol=0)


def test_reset_before_matches_cho_et_al_naive_loop():
    rng = np.random.default_rng(2)
    params, x, h0 = make(rng, B=2, L=5, D=3, H=4, reset_after=False)
    assert "b_hn" not in params
    assert_close("h_all vs Cho et al.", cho_gru_naive(params, x, h0), gru.forward(params, x, h0)[0],
                 rtol=RTOL)


def test_the_two_placements_differ():
    """Guard: the same weights give a different function when the reset moves (b_hn = 0)."""
    rng = np.random.default_rng(3)
    params, x, h0 = make(rng, reset_after=False)
    after = {**params, "b_hn": np.zeros(params["W_h"].shape[0])}
    assert np.max(np.abs(gru.forward(params, x, h0)[0] - gru.forward(after, x, h0)[0])) > 1e-3


@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_matches_torch_gru_with_copied_weights(num_layers):
    torch.manual_seed(0)
    module = torch.nn.GRU(4, 6, num_layers=num_layers, batch_first=True).double()
    x = torch.randn(3, 9, 4, dtype=torch.float64)
    h0 = torch.randn(num_layers, 3, 6, dtype=torch.float64)
    y_ref, hn_ref = module(x, h0)
    y = x.numpy()
    for k, params in enumerate(gru.from_torch(module)):
        y, h_last = gru.forward(params, y, h0[k].numpy())
        assert_close(f"h_n[{k}]", hn_ref[k].detach(), h_last, rtol=RTOL)
    assert_close("output", y_ref.detach(), y, rtol=RTOL)


def test_from_torch_without_bias():
    module = torch.nn.GRU(3, 4, bias=False, batch_first=True).double()
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    y_ref, _ = module(x)
    (params,) = gru.from_torch(module)
    assert_close("output", y_ref.detach(), gru.forward(params, x.numpy())[0], rtol=RTOL)


def _loss(params, x, h0, g_all, g_last):
    """A scalar loss with random weights on every output, so every gradient path is exercised."""
    h_all, h_last = gru.forward(params, x, h0)
    return float(np.sum(g_all * h_all) + np.sum(g_last * h_last))


@pytest.mark.parametrize("reset_after", PLACEMENTS)
def test_backward_matches_finite_differences(reset_after):
    rng = np.random.default_rng(4)
    params, x, h0 = make(rng, B=2, L=5, D=3, H=4, reset_after=reset_after)
    g_all, g_last = rng.standard_normal((2, 5, 4)), rng.standard_normal((2, 4))
    _, _, cache = gru.forward(params, x, h0, return_cache=True)
    grads, dx, dh0 = gru.backward(params, g_all, cache, dstate=g_last)
    assert list(grads) == list(params)
    for key in params:
        def f(value, key=key):
            return _loss({**params, key: value}, x, h0, g_all, g_last)
        # Central differences have O(eps^2) truncation error: 1e-7 relative is comfortable.
        assert_close(f"d{key}", numerical_gradient(f, params[key]), grads[key], rtol=1e-7)
    assert_close("dx", numerical_gradient(lambda v: _loss(params, v, h0, g_all, g_last), x), dx, rtol=1e-7)
    assert_close("dh0", numerical_gradient(lambda v: _loss(params, x, v, g_all, g_last), h0), dh0, rtol=1e-7)


@pytest.mark.parametrize("reset_after", PLACEMENTS)
def test_backward_matches_torch_autograd_on_the_same_source(reset_after):
    """Run rnnkit.gru.forward itself on torch tensors and let autograd differentiate it."""
    rng = np.random.default_rng(5)
    params, x, h0 = make(rng, B=4, L=12, D=3, H=6, reset_after=reset_after)
    g_all = rng.standard_normal((4, 12, 6))
    tparams = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    tx, th0 = torch.tensor(x, requires_grad=True), torch.tensor(h0, requires_grad=True)
    h_all, _ = gru.forward(tparams, tx, th0)
    (h_all * torch.tensor(g_all)).sum().backward()
    _, _, cache = gru.forward(params, x, h0, return_cache=True)
    grads, dx, dh0 = gru.backward(params, g_all, cache)
    for key in params:
        assert_close(f"d{key}", tparams[key].grad, grads[key], rtol=RTOL)
    assert_close("dx", tx.grad, dx, rtol=RTOL)
    assert_close("dh0", th0.grad, dh0, rtol=RTOL)


def test_backward_matches_torch_nn_gru():
    torch.manual_seed(1)
    module = torch.nn.GRU(3, 5, batch_first=True).double()
    x = torch.randn(4, 10, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(1, 4, 5, dtype=torch.float64, requires_grad=True)
    y, hn = module(x, h0)
    g_all, g_last = torch.randn_like(y), torch.randn_like(hn[0])
    ((y * g_all).sum() + (hn[0] * g_last).sum()).backward()
    (params,) = gru.from_torch(module)
    _, _, cache = gru.forward(params, x.detach().numpy(), h0[0].detach().numpy(), return_cache=True)
    grads, dx, dh0 = gru.backward(params, g_all.numpy(), cache, g_last.numpy())
    for key, ref in torch_grads(module).items():
        assert_close(f"d{key}", ref, grads[key], rtol=RTOL)
    assert_close("dx", x.grad, dx, rtol=RTOL)
    assert_close("dh0", h0.grad[0], dh0, rtol=RTOL)


@pytest.mark.parametrize("k", [1, 2, 3, 7, 50])
def test_truncated_backward_equals_chunks_with_detached_state(k):
    """truncate=k must equal torch.nn.GRU's autograd through chunks of k, state detached."""
    torch.manual_seed(2)
    module = torch.nn.GRU(3, 4, batch_first=True).double()
    x = torch.randn(2, 10, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(1, 2, 4, dtype=torch.float64, requires_grad=True)
    g_all = torch.randn(2, 10, 4, dtype=torch.float64)
    h, outs = h0, []
    for start in range(0, 10, k):
        y, h = module(x[:, start:start + k], h if start == 0 else h.detach())
        outs.append(y)
    (torch.cat(outs, dim=1) * g_all).sum().backward()
    (params,) = gru.from_torch(module)
    _, _, cache = gru.forward(params, x.detach().numpy(), h0[0].detach().numpy(), return_cache=True)
    grads, dx, dh0 = gru.backward(params, g_all.numpy(), cache, truncate=k)
    for key, ref in torch_grads(module).items():
        assert_close(f"d{key} (truncate={k})", ref, grads[key], rtol=RTOL)
    assert_close("dx", x.grad, dx, rtol=RTOL)
    assert_close("dh0", h0.grad[0], dh0, rtol=RTOL)


def test_truncated_backward_of_cho_placement():
    """The same chunking check (k=3) on the same source for the placement torch does not have."""
    rng = np.random.default_rng(6)
    params, x, h0 = make(rng, B=2, L=8, D=3, H=4, reset_after=False)
    g_all = rng.standard_normal((2, 8, 4))
    tparams = {key: torch.tensor(v, requires_grad=True) for key, v in params.items()}
    tx = torch.tensor(x, requires_grad=True)
    h, outs = torch.tensor(h0), []
    for start in range(0, 8, 3):
        y, h = gru.forward(tparams, tx[:, start:start + 3], h.detach())
        outs.append(y)
    (torch.cat(outs, dim=1) * torch.tensor(g_all)).sum().backward()
    _, _, cache = gru.forward(params, x, h0, return_cache=True)
    grads, dx, _ = gru.backward(params, g_all, cache, truncate=3)
    for key in params:
        assert_close(f"d{key} (truncate=3)", tparams[key].grad, grads[key], rtol=RTOL)
    assert_close("dx", tx.grad, dx, rtol=RTOL)


def test_truncation_changes_the_gradient():
    """Guard against a truncate flag that does nothing: k=1 must differ from full BPTT."""
    rng = np.random.default_rng(7)
    params, x, h0 = make(rng, L=8)
    _, _, cache = gru.forward(params, x, h0, return_cache=True)
    g = np.ones((3, 8, 5))
    full = gru.backward(params, g, cache)[0]["W_h"]
    cut = gru.backward(params, g, cache, truncate=1)[0]["W_h"]
    assert np.max(np.abs(full - cut)) > 1e-3


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reset_after", PLACEMENTS)
def test_huge_inputs_raise_no_overflow_warning(dtype, reset_after):
    rng = np.random.default_rng(8)
    params = gru.init(rng, 3, 4, reset_after=reset_after, dtype=dtype)
    x = (1e4 * rng.standard_normal((2, 5, 3))).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h_all, _, cache = gru.forward(params, x, return_cache=True)
        grads, dx, _ = gru.backward(params, np.ones_like(h_all), cache)
    assert np.all(np.isfinite(h_all)) and np.all(np.isfinite(dx))
    assert all(np.all(np.isfinite(v)) for v in grads.values())


@pytest.mark.parametrize("reset_after", PLACEMENTS)
def test_float32_stays_float32(reset_after):
    rng = np.random.default_rng(9)
    params = gru.init(rng, 3, 4, reset_after=reset_after, dtype=np.float32)
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    h_all, h, cache = gru.forward(params, x, return_cache=True)
    grads, dx, dh0 = gru.backward(params, np.ones_like(h_all), cache)
    assert all(a.dtype == np.float32 for a in (h_all, h, dx, dh0))
    assert all(g.dtype == np.float32 for g in grads.values())


# ---- bad input: every public entry names the argument, the expected shape and the given one ----

def test_bad_inputs_raise_clear_errors():
    rng = np.random.default_rng(10)
    params, x, h0 = make(rng, B=3, L=6, D=4, H=5)
    with pytest.raises(ValueError, match=r"x: expected 3 dimensions \(B, L, D=4\), got shape \(6, 4\)"):
        gru.forward(params, x[0])
    with pytest.raises(ValueError, match=r"x: expected shape \(B=3, L=6, D=4\) \(from params\['W_x'\]\)"):
        gru.forward(params, rng.standard_normal((3, 6, 7)))
    with pytest.raises(ValueError, match=r"state: expected shape \(B=3, H=5\)"):
        gru.forward(params, x, np.zeros((2, 5)))
    with pytest.raises(ValueError, match="x: expected a floating-point array, got dtype int64"):
        gru.forward(params, np.ones((3, 6, 4), dtype=np.int64))
    with pytest.raises(ValueError, match="params: expected keys W_x, W_h, b .*, missing 'W_h'"):
        gru.forward({"W_x": params["W_x"], "b": params["b"]}, x)
    with pytest.raises(ValueError, match=r"params\['W_h'\]: expected shape \(H, 3H\) \(gates r, z, n\), "
                                         r"got \(5, 20\)"):
        gru.forward({**params, "W_h": np.zeros((5, 20))}, x)
    with pytest.raises(ValueError, match=r"params\['b_hn'\]: expected shape \(H=5\)"):
        gru.forward({**params, "b_hn": np.zeros(4)}, x)
    with pytest.raises(ValueError, match=r"state: expected shape \(B=3, H=5\)"):
        gru.step(params, x[:, 0], np.zeros((3, 2)))
    _, _, cache = gru.forward(params, x, return_cache=True)
    with pytest.raises(ValueError, match=r"dh_all: expected shape \(B=3, L=6, H=5\)"):
        gru.backward(params, np.zeros((3, 5, 5)), cache)
    with pytest.raises(ValueError, match=r"dstate: expected shape \(B=3, H=5\)"):
        gru.backward(params, np.zeros((3, 6, 5)), cache, np.zeros((3, 4)))
    with pytest.raises(ValueError, match="truncate: expected a positive integer, got 0"):
        gru.backward(params, np.zeros((3, 6, 5)), cache, truncate=0)
    cho = {k: v for k, v in params.items() if k != "b_hn"}
    with pytest.raises(ValueError, match="cache: comes from a GRU with the other reset placement"):
        gru.backward(cho, np.zeros((3, 6, 5)), cache)
    with pytest.raises(ValueError, match="D: expected a positive integer, got 0"):
        gru.init(rng, 0, 5)
    with pytest.raises(ValueError, match="module: expected torch.nn.GRU, got LSTM"):
        gru.from_torch(torch.nn.LSTM(2, 3))
    with pytest.raises(ValueError, match="module.bidirectional: expected False"):
        gru.from_torch(torch.nn.GRU(2, 3, bidirectional=True))


# ---- properties over shapes, including batch 1 and length 1 ----

@given(B=st.integers(1, 4), L=st.integers(1, 7), D=st.integers(1, 5), H=st.integers(1, 6),
       reset_after=st.booleans(), seed=st.integers(0, 2**16))
def test_shapes_and_gradient_property(B, L, D, H, reset_after, seed):
    rng = np.random.default_rng(seed)
    params, x, h0 = make(rng, B, L, D, H, reset_after=reset_after)
    h_all, h_last, cache = gru.forward(params, x, h0, return_cache=True)
    assert h_all.shape == (B, L, H) and h_last.shape == (B, H)
    assert_close("h_last is the last step", h_all[:, -1], h_last, rtol=0)
    tparams = to_backend(params, "torch")
    for v in tparams.values():
        v.requires_grad_(True)
    th, _ = gru.forward(tparams, torch.tensor(x), torch.tensor(h0))
    th.sum().backward()
    grads, dx, dh0 = gru.backward(params, np.ones_like(h_all), cache)
    assert dx.shape == (B, L, D) and dh0.shape == (B, H)
    for key in params:
        assert_close(f"d{key}", tparams[key].grad, grads[key], rtol=1e-11)


@given(B=st.integers(1, 3), L=st.integers(1, 6), D=st.integers(1, 4), H=st.integers(1, 5),
       seed=st.integers(0, 2**16))
def test_torch_parity_property(B, L, D, H, seed):
    torch.manual_seed(seed)
    module = torch.nn.GRU(D, H, batch_first=True).double()
    x = torch.randn(B, L, D, dtype=torch.float64)
    y_ref, hn = module(x)
    (params,) = gru.from_torch(module)
    y, h = gru.forward(params, x.numpy())
    assert_close("output", y_ref.detach(), y, rtol=RTOL)
    assert_close("h_n", hn[0].detach(), h, rtol=RTOL)


@pytest.mark.gpu
@pytest.mark.parametrize("reset_after", PLACEMENTS)
def test_cupy_runs_the_same_source(reset_after):
    import cupy

    rng = np.random.default_rng(11)
    params, x, h0 = make(rng, reset_after=reset_after)
    ref = gru.forward(params, x, h0)[0]
    got = gru.forward(to_backend(params, "cupy"), cupy.asarray(x), cupy.asarray(h0))[0]
    assert isinstance(got, cupy.ndarray)
    assert_close("h_all on CuPy", ref, got, rtol=1e-12)
