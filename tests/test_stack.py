"""Tests for rnnkit.stack: deep and bidirectional Elman, LSTM and GRU against torch (outputs,
final states, gradients), truncation, finite differences, bad input, shapes."""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rnnkit import elman, gru, lstm, stack
from rnnkit.core.testing import assert_close, numerical_gradient

RTOL = 1e-12  # float64 agreement between two exact implementations of the same equations
KINDS = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
SHAPES = [(2, False), (3, False), (1, True), (2, True)]  # (num_layers, bidirectional)


def torch_layer_grads(module, k, suffix=""):
    """Gradients of layer k (direction ``suffix``) of a torch module, keyed like rnnkit's parameters.

    Biases are folded (b = b_ih + b_hh, or b_ih + [b_hr, b_hz, 0] for the GRU), so dLoss/db is
    b_ih's gradient and the GRU's b_hn gets the n block of b_hh's.
    """
    def grad(name):
        return getattr(module, f"{name}_l{k}{suffix}").grad

    if isinstance(module, torch.nn.RNN):
        return {"W_xh": grad("weight_ih").T, "W_hh": grad("weight_hh").T, "b_h": grad("bias_ih")}
    out = {"W_x": grad("weight_ih").T, "W_h": grad("weight_hh").T, "b": grad("bias_ih")}
    if isinstance(module, torch.nn.GRU):
        out["b_hn"] = grad("bias_hh")[2 * module.hidden_size:]
    return out


def run_torch(kind, num_layers, bidirectional, B=3, L=7, D=4, H=5, seed=0):
    """A torch module, its output and final state, and the gradients of a random scalar loss."""
    torch.manual_seed(seed)
    module = KINDS[kind](D, H, num_layers=num_layers, bidirectional=bidirectional,
                         batch_first=True).double()
    S = num_layers * (2 if bidirectional else 1)
    x = torch.randn(B, L, D, dtype=torch.float64, requires_grad=True)
    state = tuple(torch.randn(S, B, H, dtype=torch.float64, requires_grad=True)
                  for _ in range(2 if kind == "lstm" else 1))
    y, state_n = module(x, state if kind == "lstm" else state[0])
    state_n = state_n if kind == "lstm" else (state_n,)
    g_y = torch.randn_like(y)
    g_state = tuple(torch.randn_like(s) for s in state_n)
    ((y * g_y).sum() + sum((s * g).sum() for s, g in zip(state_n, g_state))).backward()
    return module, x, state, y, state_n, g_y, g_state


def as_cell_state(kind, parts):
    """A tuple of torch tensors -> the rnnkit convention: a pair for LSTM, a bare array otherwise."""
    arrays = tuple(p.detach().numpy() for p in parts)
    return arrays if kind == "lstm" else arrays[0]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("num_layers, bidirectional", SHAPES)
def test_forward_and_backward_match_torch(kind, num_layers, bidirectional):
    module, x, state, y_ref, state_n_ref, g_y, g_state = run_torch(kind, num_layers, bidirectional)
    cell, layers = stack.from_torch(module)
    assert cell is {"rnn": elman, "lstm": lstm, "gru": gru}[kind]
    assert len(layers) == num_layers and all(isinstance(p, tuple) == bidirectional for p in layers)
    y, state_n, cache = stack.forward_deep(cell, layers, x.detach().numpy(), as_cell_state(kind, state),
                                           return_cache=True)
    assert_close("output", y_ref.detach(), y, rtol=RTOL)
    for name, ref, got in zip(("h_n", "c_n"), state_n_ref, state_n if kind == "lstm" else (state_n,)):
        assert_close(name, ref.detach(), got, rtol=RTOL)
    grads, dx, dstate0 = stack.backward_deep(cell, layers, g_y.numpy(), cache, as_cell_state(kind, g_state))
    assert_close("dx", x.grad, dx, rtol=RTOL)
    for name, ref, got in zip(("dh0", "dc0"), state, dstate0 if kind == "lstm" else (dstate0,)):
        assert_close(name, ref.grad, got, rtol=RTOL)
    for k, layer_grads in enumerate(grads):
        directions = zip(("", "_reverse"), layer_grads) if bidirectional else [("", layer_grads)]
        for suffix, got in directions:
            ref = torch_layer_grads(module, k, suffix)
            assert set(got) == set(ref)
            for key in ref:
                assert_close(f"layer {k}{suffix} d{key}", ref[key], got[key], rtol=RTOL)


@pytest.mark.parametrize("kind", KINDS)
def test_forward_bidirectional_is_torch_bidirectional(kind):
    module, x, state, y_ref, state_n_ref, g_y, g_state = run_torch(kind, 1, True, seed=1)
    cell, [(p_fw, p_bw)] = stack.from_torch(module)
    y, state_n, cache = stack.forward_bidirectional(cell, p_fw, p_bw, x.detach().numpy(),
                                                    as_cell_state(kind, state), return_cache=True)
    assert_close("output", y_ref.detach(), y, rtol=RTOL)
    assert_close("h_n", state_n_ref[0].detach(), state_n[0] if kind == "lstm" else state_n, rtol=RTOL)
    (g_fw, g_bw), dx, dstate0 = stack.backward_bidirectional(cell, p_fw, p_bw, g_y.numpy(), cache,
                                                             as_cell_state(kind, g_state))
    assert_close("dx", x.grad, dx, rtol=RTOL)
    assert_close("dh0", state[0].grad, dstate0[0] if kind == "lstm" else dstate0, rtol=RTOL)
    for suffix, got in (("", g_fw), ("_reverse", g_bw)):
        for key, ref in torch_layer_grads(module, 0, suffix).items():
            assert_close(f"d{key}{suffix}", ref, got[key], rtol=RTOL)


def test_zero_initial_state_is_default():
    module = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True).double()
    cell, layers = stack.from_torch(module)
    x = np.random.default_rng(2).standard_normal((2, 5, 3))
    zeros = (np.zeros((4, 2, 4)), np.zeros((4, 2, 4)))
    assert_close("y", stack.forward_deep(cell, layers, x, zeros)[0], stack.forward_deep(cell, layers, x)[0],
                 rtol=0)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("k", [1, 3, 50])
def test_truncated_deep_backward_equals_chunks_with_detached_state(kind, k):
    """truncate=k in every layer equals torch autograd through chunks of k, all states detached."""
    torch.manual_seed(3)
    module = KINDS[kind](3, 4, num_layers=2, batch_first=True).double()
    x = torch.randn(2, 9, 3, dtype=torch.float64, requires_grad=True)
    g_y = torch.randn(2, 9, 4, dtype=torch.float64)
    state, outs = None, []
    for start in range(0, 9, k):
        if state is not None:
            state = tuple(s.detach() for s in state) if kind == "lstm" else state.detach()
        y, state = module(x[:, start:start + k], state)
        outs.append(y)
    (torch.cat(outs, dim=1) * g_y).sum().backward()
    cell, layers = stack.from_torch(module)
    _, _, cache = stack.forward_deep(cell, layers, x.detach().numpy(), return_cache=True)
    grads, dx, _ = stack.backward_deep(cell, layers, g_y.numpy(), cache, truncate=k)
    assert_close(f"dx (truncate={k})", x.grad, dx, rtol=RTOL)
    for layer, got in enumerate(grads):
        for key, ref in torch_layer_grads(module, layer).items():
            assert_close(f"layer {layer} d{key} (truncate={k})", ref, got[key], rtol=RTOL)


def test_backward_matches_finite_differences():
    """A deep bidirectional stack of a variant torch lacks (peephole LSTM), on tiny sizes."""
    rng = np.random.default_rng(4)
    cell = lstm.cell("peephole")
    layers = [(cell.init(rng, 2, 3), cell.init(rng, 2, 3)), cell.init(rng, 6, 3)]
    x = rng.standard_normal((2, 3, 2))
    g_y, g_h = rng.standard_normal((2, 3, 3)), rng.standard_normal((3, 2, 3))

    def loss(layers, x):
        y, (h_n, _) = stack.forward_deep(cell, layers, x)
        return float(np.sum(g_y * y) + np.sum(g_h * h_n))

    _, _, cache = stack.forward_deep(cell, layers, x, return_cache=True)
    grads, dx, _ = stack.backward_deep(cell, layers, g_y, cache, (g_h, None))
    assert_close("dx", numerical_gradient(lambda v: loss(layers, v), x), dx, rtol=1e-7)
    for where, params, got in ((0, layers[0][0], grads[0][0]), (0, layers[0][1], grads[0][1]),
                               (1, layers[1], grads[1])):
        for key in params:
            def f(value, params=params, key=key):
                new = {**params, key: value}
                swapped = [tuple(new if p is params else p for p in layers[0]), layers[1]]
                if where == 1:
                    swapped = [layers[0], new]
                return loss(swapped, x)
            # Central differences have O(eps^2) truncation error: 1e-7 relative is comfortable.
            assert_close(f"layer {where} d{key}", numerical_gradient(f, params[key]), got[key], rtol=1e-7)


def test_mixed_stack_composes_cells_by_hand():
    """forward_deep over [dict, pair] is the composition of the cell's own forward by hand."""
    rng = np.random.default_rng(5)
    layers = [gru.init(rng, 3, 4, reset_after=False), (gru.init(rng, 4, 4), gru.init(rng, 4, 4))]
    x = rng.standard_normal((2, 6, 3))
    y, h_n = stack.forward_deep(gru, layers, x)
    y1, h1 = gru.forward(layers[0], x)
    y_fw, h_fw = gru.forward(layers[1][0], y1)
    y_bw, h_bw = gru.forward(layers[1][1], y1[:, ::-1])
    assert_close("y", np.concatenate([y_fw, y_bw[:, ::-1]], axis=-1), y, rtol=0)
    assert_close("h_n", np.stack([h1, h_fw, h_bw]), h_n, rtol=0)


def test_state_names():
    assert stack.state_names(elman) == ("h",)
    assert stack.state_names(gru) == ("h",)
    assert stack.state_names(lstm) == ("h", "c")
    assert stack.state_names(lstm.cell("coupled")) == ("h", "c")


# ---- bad input: every public entry names the argument, the expected shape and the given one ----

def test_bad_inputs_raise_clear_errors():
    rng = np.random.default_rng(6)
    layers = [lstm.init(rng, 3, 4), lstm.init(rng, 4, 4)]
    x = rng.standard_normal((2, 5, 3))
    zeros = np.zeros((2, 2, 4))
    with pytest.raises(ValueError, match="layers: expected a non-empty list"):
        stack.forward_deep(lstm, [], x)
    with pytest.raises(ValueError, match=r"layers\[1\]: expected a parameter dict or a pair"):
        stack.forward_deep(lstm, [layers[0], (layers[1],)], x)
    with pytest.raises(ValueError, match=r"x: expected 3 dimensions \(B, L, D\), got shape \(5, 3\)"):
        stack.forward_deep(lstm, layers, x[0])
    with pytest.raises(ValueError, match=r"state: expected a tuple \(h, c\) of \(S, B, H\) arrays"):
        stack.forward_deep(lstm, layers, x, zeros)
    with pytest.raises(ValueError, match=r"state\[1\]: expected shape \(S=2, B=2, H=4\) \(from layers\), "
                                         r"got \(3, 2, 4\)"):
        stack.forward_deep(lstm, layers, x, (zeros, np.zeros((3, 2, 4))))
    with pytest.raises(ValueError, match=r"state: expected shape \(S=2, B=2, H\) "
                                         r"\(from the two directions\)"):
        stack.forward_bidirectional(gru, gru.init(rng, 3, 4), gru.init(rng, 3, 4), x, np.zeros((1, 2, 4)))
    with pytest.raises(ValueError, match=r"x: expected shape \(B=2, L=5, D=4\) \(from params\['W_x'\]\)"):
        stack.forward_deep(lstm, layers[::-1], x)
    with pytest.raises(ValueError, match="layers: expected every layer to have the same hidden size H"):
        stack.forward_deep(gru, [gru.init(rng, 3, 4), gru.init(rng, 4, 2)], x)
    _, _, cache = stack.forward_deep(lstm, layers, x, return_cache=True)
    with pytest.raises(ValueError, match=r"dh_all: expected shape \(B=2, L=5, H=4\)"):
        stack.backward_deep(lstm, layers, np.zeros((2, 5, 3)), cache)
    # The slot's width is checked by the cell's own backward (the top layer's H = 4).
    with pytest.raises(ValueError, match=r"dstate\[0\]: expected shape \(B=2, H=4\) "
                                         r"\(from params\['W_h'\]\), got \(2, 5\)"):
        stack.backward_deep(lstm, layers, np.zeros((2, 5, 4)), cache, (np.zeros((2, 2, 5)), None))
    with pytest.raises(ValueError, match="cache: expected the DeepCache of forward_deep over these 1 layers"):
        stack.backward_deep(lstm, layers[:1], np.zeros((2, 5, 4)), cache)
    with pytest.raises(ValueError, match="truncate: expected a positive integer, got 0"):
        stack.backward_deep(lstm, layers, np.zeros((2, 5, 4)), cache, truncate=0)
    pair = [(gru.init(rng, 3, 4), gru.init(rng, 3, 4))]
    _, _, cache = stack.forward_deep(gru, pair, x, return_cache=True)
    with pytest.raises(ValueError, match="truncate: expected None for a stack with bidirectional "
                                         "layers, got 2"):
        stack.backward_deep(gru, pair, np.zeros((2, 5, 8)), cache, truncate=2)
    with pytest.raises(ValueError, match="cache: expected a BidirectionalCache, got DeepCache"):
        stack.backward_bidirectional(gru, *pair[0], np.zeros((2, 5, 8)), cache)
    with pytest.raises(ValueError, match="module: expected torch.nn.RNN, LSTM or GRU, got Linear"):
        stack.from_torch(torch.nn.Linear(2, 3))
    with pytest.raises(ValueError, match="module.proj_size: expected 0, got 2"):
        stack.from_torch(torch.nn.LSTM(2, 3, proj_size=2))
    with pytest.raises(ValueError, match="module.nonlinearity: expected 'tanh', got 'relu'"):
        stack.from_torch(torch.nn.RNN(2, 3, num_layers=2, nonlinearity="relu"))


# ---- properties over shapes, including batch 1 and length 1 ----

@given(kind=st.sampled_from(list(KINDS)), num_layers=st.integers(1, 3), bidirectional=st.booleans(),
       B=st.integers(1, 3), L=st.integers(1, 5), D=st.integers(1, 4), H=st.integers(1, 4),
       seed=st.integers(0, 2**16))
def test_torch_parity_property(kind, num_layers, bidirectional, B, L, D, H, seed):
    module, x, state, y_ref, state_n_ref, g_y, g_state = run_torch(kind, num_layers, bidirectional,
                                                                   B, L, D, H, seed)
    cell, layers = stack.from_torch(module)
    y, state_n, cache = stack.forward_deep(cell, layers, x.detach().numpy(), as_cell_state(kind, state),
                                           return_cache=True)
    assert y.shape == (B, L, H * (2 if bidirectional else 1))
    assert_close("output", y_ref.detach(), y, rtol=RTOL)
    assert_close("h_n", state_n_ref[0].detach(), state_n[0] if kind == "lstm" else state_n, rtol=RTOL)
    _, dx, dstate0 = stack.backward_deep(cell, layers, g_y.numpy(), cache, as_cell_state(kind, g_state))
    assert_close("dx", x.grad, dx, rtol=1e-11)
    assert_close("dh0", state[0].grad, dstate0[0] if kind == "lstm" else dstate0, rtol=1e-11)
