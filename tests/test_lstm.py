"""Tests for rnnkit.lstm: forms agree, gradients three ways for every variant, torch parity,
truncation, a stable sigmoid, bad input, shapes."""
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rnnkit.training import charlm
from rnnkit import lstm
from rnnkit.core.backend import to_backend
from rnnkit.core.testing import assert_close, numerical_gradient

RTOL = 1e-12  # float64 agreement between two exact implementations of the same equations
VARIANTS = lstm.VARIANTS


def make(rng, B=3, L=6, D=4, H=5, variant="vanilla"):
    params = lstm.init(rng, D, H, variant=variant)
    x = rng.standard_normal((B, L, D))
    state = (0.5 * rng.standard_normal((B, H)), 0.5 * rng.standard_normal((B, H)))
    return params, x, state


def torch_grads(module, k=0):
    """Gradients of a one-direction torch.nn.LSTM layer, keyed like rnnkit's parameters.

    b = b_ih + b_hh, so dLoss/db equals both bias gradients; we read b_ih's.
    """
    def grad(name):
        return getattr(module, f"{name}_l{k}").grad

    return {"W_x": grad("weight_ih").T, "W_h": grad("weight_hh").T, "b": grad("bias_ih")}


@pytest.mark.parametrize("variant", VARIANTS)
def test_step_loop_equals_forward(variant):
    rng = np.random.default_rng(0)
    params, x, state = make(rng, variant=variant)
    h_all, (h_last, c_last) = lstm.forward(params, x, state, variant=variant)
    s = state
    for t in range(x.shape[1]):
        h, s = lstm.step(params, x[:, t], s, variant=variant)
        assert_close(f"h_{t + 1}", h, h_all[:, t], rtol=RTOL)
    assert_close("h_last", s[0], h_last, rtol=RTOL)
    assert_close("c_last", s[1], c_last, rtol=RTOL)


def test_zero_initial_state_is_default():
    rng = np.random.default_rng(1)
    params, x, _ = make(rng)
    zeros = np.zeros((x.shape[0], params["W_h"].shape[0]))
    assert_close("h_all", lstm.forward(params, x, (zeros, zeros))[0], lstm.forward(params, x)[0], rtol=0)


def test_variants_change_the_function():
    """Guard against a variant flag that does nothing: NFG and CIFG share their parameters."""
    rng = np.random.default_rng(2)
    params, x, state = make(rng, variant="coupled")
    nfg = lstm.forward(params, x, state, variant="no_forget_gate")[0]
    cifg = lstm.forward(params, x, state, variant="coupled")[0]
    assert np.max(np.abs(nfg - cifg)) > 1e-3


def test_init_shapes_and_forget_bias():
    rng = np.random.default_rng(3)
    shapes = {v: {k: a.shape for k, a in lstm.init(rng, 4, 5, variant=v).items()} for v in VARIANTS}
    assert shapes["vanilla"] == {"W_x": (4, 20), "W_h": (5, 20), "b": (20,)}
    for v in ("no_forget_gate", "coupled", "no_output_gate"):
        assert shapes[v] == {"W_x": (4, 15), "W_h": (5, 15), "b": (15,)}
    assert shapes["peephole"] == {**shapes["vanilla"], "p_i": (5,), "p_f": (5,), "p_o": (5,)}
    b = lstm.init(rng, 4, 5, forget_bias=2.5)["b"]
    assert np.all(b[5:10] == 2.5) and np.all(np.abs(b[:5]) <= 1 / np.sqrt(5))
    b = lstm.init(rng, 4, 5, variant="no_output_gate", forget_bias=2.5)["b"]
    assert np.all(b[5:10] == 2.5)


@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_matches_torch_lstm_with_copied_weights(num_layers):
    torch.manual_seed(0)
    module = torch.nn.LSTM(4, 6, num_layers=num_layers, batch_first=True).double()
    x = torch.randn(3, 9, 4, dtype=torch.float64)
    h0 = torch.randn(num_layers, 3, 6, dtype=torch.float64)
    c0 = torch.randn(num_layers, 3, 6, dtype=torch.float64)
    y_ref, (hn_ref, cn_ref) = module(x, (h0, c0))
    y = x.numpy()
    for k, params in enumerate(lstm.from_torch(module)):
        y, (h_last, c_last) = lstm.forward(params, y, (h0[k].numpy(), c0[k].numpy()))
        assert_close(f"h_n[{k}]", hn_ref[k].detach(), h_last, rtol=RTOL)
        assert_close(f"c_n[{k}]", cn_ref[k].detach(), c_last, rtol=RTOL)
    assert_close("output", y_ref.detach(), y, rtol=RTOL)


def test_from_torch_without_bias():
    module = torch.nn.LSTM(3, 4, bias=False, batch_first=True).double()
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    y_ref, _ = module(x)
    (params,) = lstm.from_torch(module)
    assert_close("output", y_ref.detach(), lstm.forward(params, x.numpy())[0], rtol=RTOL)


def _loss(params, x, state, g, variant):
    """A scalar loss with random weights on every output and on both final states."""
    h_all, (h_last, c_last) = lstm.forward(params, x, state, variant=variant)
    return float(np.sum(g[0] * h_all) + np.sum(g[1] * h_last) + np.sum(g[2] * c_last))


@pytest.mark.parametrize("variant", VARIANTS)
def test_backward_matches_finite_differences(variant):
    rng = np.random.default_rng(4)
    params, x, (h0, c0) = make(rng, B=2, L=4, D=3, H=3, variant=variant)
    g = (rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 3)), rng.standard_normal((2, 3)))
    _, _, cache = lstm.forward(params, x, (h0, c0), return_cache=True, variant=variant)
    grads, dx, (dh0, dc0) = lstm.backward(params, g[0], cache, dstate=(g[1], g[2]))
    assert set(grads) == set(params)
    for key in params:
        def f(value, key=key):
            return _loss({**params, key: value}, x, (h0, c0), g, variant)
        # Central differences have O(eps^2) truncation error: 1e-7 relative is comfortable.
        assert_close(f"d{key} ({variant})", numerical_gradient(f, params[key]), grads[key], rtol=1e-7)
    assert_close("dx", numerical_gradient(lambda v: _loss(params, v, (h0, c0), g, variant), x), dx, rtol=1e-7)
    assert_close("dh0", numerical_gradient(lambda v: _loss(params, x, (v, c0), g, variant), h0), dh0,
                 rtol=1e-7)
    assert_close("dc0", numerical_gradient(lambda v: _loss(params, x, (h0, v), g, variant), c0), dc0,
                 rtol=1e-7)


@pytest.mark.parametrize("variant", VARIANTS)
def test_backward_matches_torch_autograd_on_the_same_source(variant):
    """Run rnnkit.lstm.forward itself on torch tensors and let autograd differentiate it."""
    rng = np.random.default_rng(5)
    params, x, (h0, c0) = make(rng, B=4, L=12, D=3, H=6, variant=variant)
    g_all, g_c = rng.standard_normal((4, 12, 6)), rng.standard_normal((4, 6))
    tparams = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    tx, th0, tc0 = (torch.tensor(a, requires_grad=True) for a in (x, h0, c0))
    h_all, (_, c_last) = lstm.forward(tparams, tx, (th0, tc0), variant=variant)
    ((h_all * torch.tensor(g_all)).sum() + (c_last * torch.tensor(g_c)).sum()).backward()
    _, _, cache = lstm.forward(params, x, (h0, c0), return_cache=True, variant=variant)
    grads, dx, (dh0, dc0) = lstm.backward(params, g_all, cache, dstate=(None, g_c))
    for key in params:
        assert_close(f"d{key}", tparams[key].grad, grads[key], rtol=RTOL)
    assert_close("dx", tx.grad, dx, rtol=RTOL)
    assert_close("dh0", th0.grad, dh0, rtol=RTOL)
    assert_close("dc0", tc0.grad, dc0, rtol=RTOL)


def test_backward_matches_torch_nn_lstm():
    torch.manual_seed(1)
    module = torch.nn.LSTM(3, 5, batch_first=True).double()
    x = torch.randn(4, 10, 3, dtype=torch.float64, requires_grad=True)
    h0, c0 = (torch.randn(1, 4, 5, dtype=torch.float64, requires_grad=True) for _ in range(2))
    y, (hn, cn) = module(x, (h0, c0))
    g_all, g_h, g_c = torch.randn_like(y), torch.randn_like(hn[0]), torch.randn_like(cn[0])
    ((y * g_all).sum() + (hn[0] * g_h).sum() + (cn[0] * g_c).sum()).backward()
    (params,) = lstm.from_torch(module)
    _, _, cache = lstm.forward(params, x.detach().numpy(), (h0[0].detach().numpy(), c0[0].detach().numpy()),
                               return_cache=True)
    grads, dx, (dh0, dc0) = lstm.backward(params, g_all.numpy(), cache, (g_h.numpy(), g_c.numpy()))
    for key, ref in torch_grads(module).items():
        assert_close(f"d{key}", ref, grads[key], rtol=RTOL)
    assert_close("dx", x.grad, dx, rtol=RTOL)
    assert_close("dh0", h0.grad[0], dh0, rtol=RTOL)
    assert_close("dc0", c0.grad[0], dc0, rtol=RTOL)


@pytest.mark.parametrize("k", [1, 2, 3, 7, 50])
def test_truncated_backward_equals_chunks_with_detached_state(k):
    """truncate=k must equal torch.nn.LSTM's autograd through chunks of k, (h, c) detached."""
    torch.manual_seed(2)
    module = torch.nn.LSTM(3, 4, batch_first=True).double()
    x = torch.randn(2, 10, 3, dtype=torch.float64, requires_grad=True)
    h0, c0 = (torch.randn(1, 2, 4, dtype=torch.float64, requires_grad=True) for _ in range(2))
    g_all = torch.randn(2, 10, 4, dtype=torch.float64)
    state, outs = (h0, c0), []
    for start in range(0, 10, k):
        if start > 0:
            state = tuple(s.detach() for s in state)
        y, state = module(x[:, start:start + k], state)
        outs.append(y)
    (torch.cat(outs, dim=1) * g_all).sum().backward()
    (params,) = lstm.from_torch(module)
    _, _, cache = lstm.forward(params, x.detach().numpy(), (h0[0].detach().numpy(), c0[0].detach().numpy()),
                               return_cache=True)
    grads, dx, (dh0, dc0) = lstm.backward(params, g_all.numpy(), cache, truncate=k)
    for key, ref in torch_grads(module).items():
        assert_close(f"d{key} (truncate={k})", ref, grads[key], rtol=RTOL)
    assert_close("dx", x.grad, dx, rtol=RTOL)
    assert_close("dh0", h0.grad[0], dh0, rtol=RTOL)
    assert_close("dc0", c0.grad[0], dc0, rtol=RTOL)


@pytest.mark.parametrize("variant", ["peephole", "coupled", "no_output_gate"])
def test_truncated_backward_of_variants(variant):
    """The same chunking check on the same source for variants torch does not have (k=3)."""
    rng = np.random.default_rng(6)
    params, x, (h0, c0) = make(rng, B=2, L=8, D=3, H=4, variant=variant)
    g_all = rng.standard_normal((2, 8, 4))
    tparams = {key: torch.tensor(v, requires_grad=True) for key, v in params.items()}
    tx = torch.tensor(x, requires_grad=True)
    state, outs = (torch.tensor(h0), torch.tensor(c0)), []
    for start in range(0, 8, 3):
        y, state = lstm.forward(tparams, tx[:, start:start + 3], tuple(s.detach() for s in state),
                                variant=variant)
        outs.append(y)
    (torch.cat(outs, dim=1) * torch.tensor(g_all)).sum().backward()
    _, _, cache = lstm.forward(params, x, (h0, c0), return_cache=True, variant=variant)
    grads, dx, _ = lstm.backward(params, g_all, cache, truncate=3)
    for key in params:
        assert_close(f"d{key} ({variant}, truncate=3)", tparams[key].grad, grads[key], rtol=RTOL)
    assert_close("dx", tx.grad, dx, rtol=RTOL)


def test_truncation_changes_the_gradient():
    """Guard against a truncate flag that does nothing: k=1 must differ from full BPTT."""
    rng = np.random.default_rng(7)
    params, x, state = make(rng, L=8)
    _, _, cache = lstm.forward(params, x, state, return_cache=True)
    g = np.ones((3, 8, 5))
    full = lstm.backward(params, g, cache)[0]["W_h"]
    cut = lstm.backward(params, g, cache, truncate=1)[0]["W_h"]
    assert np.max(np.abs(full - cut)) > 1e-3


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_is_stable_for_huge_inputs(dtype):
    """No overflow warning (an error under pytest here) and saturated, finite gates."""
    a = np.array([-1e30, -1e4, -800.0, -100.0, 0.0, 100.0, 800.0, 1e4, 1e30], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = lstm.sigmoid(np, a)
    assert s.dtype == dtype
    # The tanh form is exact to absolute rounding (~1e-16): sigmoid(-100) = 3.7e-44 comes out 0.
    assert_close("sigmoid", np.array([0, 0, 0, 0, 0.5, 1, 1, 1, 1]), s, rtol=0, atol=1e-30)
    moderate = np.linspace(-30, 30, 121)
    # Reference 1/(1+exp(-a)) is safe for |a| <= 30; the two forms agree to rounding.
    assert_close("sigmoid vs 1/(1+exp(-a))", 1 / (1 + np.exp(-moderate)), lstm.sigmoid(np, moderate),
                 rtol=1e-15)
    rng = np.random.default_rng(8)
    for variant in VARIANTS:
        params = lstm.init(rng, 3, 4, variant=variant, dtype=dtype)
        x = (1e4 * rng.standard_normal((2, 5, 3))).astype(dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            h_all, _, cache = lstm.forward(params, x, return_cache=True, variant=variant)
            grads, dx, _ = lstm.backward(params, np.ones_like(h_all), cache)
        assert np.all(np.isfinite(h_all)) and np.all(np.isfinite(dx))
        assert all(np.all(np.isfinite(v)) for v in grads.values())


def test_float32_stays_float32():
    rng = np.random.default_rng(9)
    params = lstm.init(rng, 3, 4, variant="peephole", dtype=np.float32)
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    h_all, (h, c), cache = lstm.forward(params, x, return_cache=True, variant="peephole")
    grads, dx, (dh0, dc0) = lstm.backward(params, np.ones_like(h_all), cache)
    assert all(a.dtype == np.float32 for a in (h_all, h, c, dx, dh0, dc0))
    assert all(g.dtype == np.float32 for g in grads.values())


def test_cell_binds_the_variant_for_generic_code():
    """lstm.cell(variant) serves code that takes a cell module, e.g. the char-LM."""
    rng = np.random.default_rng(10)
    coupled = lstm.cell("coupled")
    params, x, state = make(rng, variant="coupled")
    assert_close("forward", lstm.forward(params, x, state, variant="coupled")[0],
                 coupled.forward(params, x, state)[0], rtol=0)
    assert coupled.STATE == ("h", "c")
    model = charlm.init(rng, coupled, V=7, H=5)
    assert model["cell"]["W_h"].shape == (5, 15)
    ids = rng.integers(0, 7, (2, 9))
    loss, grads, _ = charlm.loss_and_grads(coupled, model, ids[:, :-1], ids[:, 1:])
    assert np.isfinite(loss) and grads["cell"]["W_h"].shape == (5, 15)


# ---- bad input: every public entry names the argument, the expected shape and the given one ----

def test_bad_inputs_raise_clear_errors():
    rng = np.random.default_rng(11)
    params, x, (h0, c0) = make(rng, B=3, L=6, D=4, H=5)
    with pytest.raises(ValueError, match=r"x: expected 3 dimensions \(B, L, D=4\), got shape \(6, 4\)"):
        lstm.forward(params, x[0])
    with pytest.raises(ValueError, match=r"x: expected shape \(B=3, L=6, D=4\) \(from params\['W_x'\]\)"):
        lstm.forward(params, rng.standard_normal((3, 6, 7)))
    with pytest.raises(ValueError, match=r"state\[1\]: expected shape \(B=3, H=5\)"):
        lstm.forward(params, x, (h0, np.zeros((2, 5))))
    with pytest.raises(ValueError, match=r"state: expected a pair \(h, c\) of \(B, H\) arrays, got ndarray"):
        lstm.forward(params, x, h0)
    with pytest.raises(ValueError, match="x: expected a floating-point array, got dtype int64"):
        lstm.forward(params, np.ones((3, 6, 4), dtype=np.int64))
    with pytest.raises(ValueError, match="params: expected keys W_x, W_h, b for variant 'vanilla', "
                                         "missing 'b'"):
        lstm.forward({"W_x": params["W_x"], "W_h": params["W_h"]}, x)
    with pytest.raises(ValueError, match=r"params\['W_h'\]: expected shape \(H, 3H\) for variant 'coupled'"):
        lstm.forward(params, x, variant="coupled")
    with pytest.raises(ValueError, match=r"params\['W_h'\]: expected shape \(H, 4H\) for variant 'vanilla'"):
        lstm.forward(lstm.init(rng, 4, 5, variant="coupled"), x)
    with pytest.raises(ValueError, match="params: has peephole weights p_i, p_f, p_o but variant is "
                                         "'vanilla'"):
        lstm.forward(lstm.init(rng, 4, 5, variant="peephole"), x)
    with pytest.raises(ValueError, match="params: expected keys W_x, W_h, b, p_i, p_f, p_o for variant "
                                         "'peephole'"):
        lstm.forward(params, x, variant="peephole")
    with pytest.raises(ValueError, match=r"params\['b'\]: expected shape \(G=20\)"):
        lstm.forward({**params, "b": np.zeros(5)}, x)
    with pytest.raises(ValueError, match="variant: expected one of 'vanilla', .*, got 'gru'"):
        lstm.forward(params, x, variant="gru")
    with pytest.raises(ValueError, match=r"x_t: expected shape \(B=3, D=4\) \(from params\['W_x'\]\), "
                                         r"got \(3, 3\)"):
        lstm.step(params, x[:, 0, :3], (h0, c0))
    with pytest.raises(ValueError, match=r"state\[0\]: expected shape \(B=3, H=5\)"):
        lstm.step(params, x[:, 0], (np.zeros((3, 2)), c0))
    _, _, cache = lstm.forward(params, x, return_cache=True)
    with pytest.raises(ValueError, match=r"dh_all: expected shape \(B=3, L=6, H=5\)"):
        lstm.backward(params, np.zeros((3, 5, 5)), cache)
    with pytest.raises(ValueError, match=r"dstate\[1\]: expected shape \(B=3, H=5\)"):
        lstm.backward(params, np.zeros((3, 6, 5)), cache, (None, np.zeros((3, 4))))
    with pytest.raises(ValueError, match="dstate: expected a pair"):
        lstm.backward(params, np.zeros((3, 6, 5)), cache, np.zeros((3, 5)))
    with pytest.raises(ValueError, match="truncate: expected a positive integer, got 0"):
        lstm.backward(params, np.zeros((3, 6, 5)), cache, truncate=0)
    with pytest.raises(ValueError, match="H: expected a positive integer, got 0"):
        lstm.init(rng, 4, 0)
    with pytest.raises(ValueError, match="variant: expected one of"):
        lstm.cell("NFG")
    with pytest.raises(ValueError, match="module: expected torch.nn.LSTM, got GRU"):
        lstm.from_torch(torch.nn.GRU(2, 3))
    with pytest.raises(ValueError, match="module.bidirectional: expected False"):
        lstm.from_torch(torch.nn.LSTM(2, 3, bidirectional=True))
    with pytest.raises(ValueError, match="module.proj_size: expected 0, got 2"):
        lstm.from_torch(torch.nn.LSTM(2, 3, proj_size=2))


# ---- properties over shapes, including batch 1 and length 1 ----

@given(B=st.integers(1, 4), L=st.integers(1, 7), D=st.integers(1, 5), H=st.integers(1, 6),
       variant=st.sampled_from(VARIANTS), seed=st.integers(0, 2**16))
def test_shapes_and_gradient_property(B, L, D, H, variant, seed):
    rng = np.random.default_rng(seed)
    params, x, state = make(rng, B, L, D, H, variant=variant)
    h_all, (h_last, c_last), cache = lstm.forward(params, x, state, return_cache=True, variant=variant)
    assert h_all.shape == (B, L, H) and h_last.shape == (B, H) and c_last.shape == (B, H)
    assert_close("h_last is the last step", h_all[:, -1], h_last, rtol=0)
    tparams = to_backend(params, "torch")
    for v in tparams.values():
        v.requires_grad_(True)
    th, _ = lstm.forward(tparams, torch.tensor(x), tuple(map(torch.tensor, state)), variant=variant)
    th.sum().backward()
    grads, dx, (dh0, dc0) = lstm.backward(params, np.ones_like(h_all), cache)
    assert dx.shape == (B, L, D) and dh0.shape == (B, H) and dc0.shape == (B, H)
    for key in params:
        assert_close(f"d{key}", tparams[key].grad, grads[key], rtol=1e-11)


@given(B=st.integers(1, 3), L=st.integers(1, 6), D=st.integers(1, 4), H=st.integers(1, 5),
       seed=st.integers(0, 2**16))
def test_torch_parity_property(B, L, D, H, seed):
    torch.manual_seed(seed)
    module = torch.nn.LSTM(D, H, batch_first=True).double()
    x = torch.randn(B, L, D, dtype=torch.float64)
    y_ref, (hn, cn) = module(x)
    (params,) = lstm.from_torch(module)
    y, (h, c) = lstm.forward(params, x.numpy())
    assert_close("output", y_ref.detach(), y, rtol=RTOL)
    assert_close("c_n", cn[0].detach(), c, rtol=RTOL)


@pytest.mark.gpu
def test_cupy_runs_the_same_source():
    import cupy

    rng = np.random.default_rng(12)
    params, x, state = make(rng, variant="peephole")
    ref = lstm.forward(params, x, state, variant="peephole")[0]
    got = lstm.forward(to_backend(params, "cupy"), cupy.asarray(x), tuple(map(cupy.asarray, state)),
                       variant="peephole")[0]
    assert isinstance(got, cupy.ndarray)
    assert_close("h_all on CuPy", ref, got, rtol=1e-12)


def test_charlm_compare_counts_parameters_and_matches_widths():
    """The Elman-vs-LSTM language-model experiment (chapters 1-2) compares equal parameter counts."""
    from rnnkit.training import charlm
    from rnnkit import elman
    from rnnkit.experiments import charlm_compare as cc
    V = 70
    for kind, cell in (("elman", elman), ("lstm", lstm)):
        p = charlm.init(np.random.default_rng(0), cell, V, 9)
        assert cc.param_count(kind, V, 9) == sum(v.size for part in p.values() for v in part.values())
    for H_e in (64, 128):
        H_l = cc.matched_lstm_width(V, H_e)
        gap = abs(cc.param_count("lstm", V, H_l) - cc.param_count("elman", V, H_e))
        assert all(gap <= abs(cc.param_count("lstm", V, H) - cc.param_count("elman", V, H_e))
                   for H in range(1, 2 * H_e))
        assert gap < 0.02 * cc.param_count("elman", V, H_e)
    with pytest.raises(ValueError, match="size"):
        cc.run("huge")
