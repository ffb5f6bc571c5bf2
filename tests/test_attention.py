"""Tests for rnnkit.attention: additive attention against a naive loop from the paper, the masked
softmax, the hand backward against finite differences and torch autograd, bad input, shapes."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnkit import attention
from rnnkit.core.backend import to_backend
from rnnkit.core.testing import assert_close, numerical_gradient

RTOL = 1e-12      # float64, two exact implementations of the same equations
RTOL_FD = 1e-6    # central differences with eps = 1e-6 on O(1) functions


def make(rng, B=3, L=5, H=4, C=6, A=3, pad=True):
    params = attention.init(rng, H, C, A)
    s_prev = rng.standard_normal((B, H))
    h_enc = rng.standard_normal((B, L, C))
    lengths = rng.integers(1, L + 1, B) if pad else np.full(B, L)
    lengths[0] = L
    mask = np.arange(L)[None, :] < lengths[:, None]              # (B, L) right padding
    return params, s_prev, h_enc, mask


def attention_naive(params, s_prev, h_enc, mask):
    """Bahdanau et al. (2015), eq. 5-6 and appendix A.1.2, one sentence and one position at a time,
    in the paper's column form: e_ij = v_a^T tanh(W_a s_{i-1} + U_a h_j), alpha = softmax_j e_ij,
    c_i = sum_j alpha_ij h_j, the sum running over the real (unmasked) positions only."""
    W_a, U_a, v = params["W_a"].T, params["U_a"].T, params["v"]      # (A, H), (A, C), (A,)
    B, L, C = h_enc.shape
    c, alpha = np.zeros((B, C)), np.zeros((B, L))
    for b in range(B):
        real = [j for j in range(L) if mask[b, j]]
        e = {j: v @ np.tanh(W_a @ s_prev[b] + U_a @ h_enc[b, j]) for j in real}
        denom = sum(np.exp(e[j]) for j in real)
        for j in real:
            alpha[b, j] = np.exp(e[j]) / denom
            c[b] += alpha[b, j] * h_enc[b, j]
    return c, alpha


def test_forward_matches_naive_loop():
    params, s_prev, h_enc, mask = make(np.random.default_rng(0))
    assert not mask.all(), "the test needs some padding"
    c, alpha = attention.forward(params, s_prev, h_enc, mask)
    c_ref, alpha_ref = attention_naive(params, s_prev, h_enc, mask)
    assert_close("alpha", alpha_ref, alpha, rtol=RTOL)
    assert_close("c", c_ref, c, rtol=RTOL)


def test_weights_sum_to_one_and_padding_gets_exactly_zero():
    params, s_prev, h_enc, mask = make(np.random.default_rng(1), B=6, L=7)
    _, alpha = attention.forward(params, s_prev, h_enc, mask)
    assert_close("sum_j alpha_ij", np.ones(6), alpha.sum(axis=1), rtol=1e-14)
    assert np.all(alpha[~mask] == 0.0) and np.all(alpha[mask] > 0.0)
    # What sits in the padded positions cannot change the result.
    h_junk = np.where(mask[:, :, None], h_enc, 1e3)
    c1, _ = attention.forward(params, s_prev, h_enc, mask)
    c2, _ = attention.forward(params, s_prev, h_junk, mask)
    assert_close("c with junk in the padding", c1, c2, rtol=0)


def test_no_mask_equals_all_ones_mask():
    params, s_prev, h_enc, _ = make(np.random.default_rng(2))
    full = np.ones(h_enc.shape[:2], dtype=bool)
    for a, b in zip(attention.forward(params, s_prev, h_enc), attention.forward(params, s_prev, h_enc, full)):
        assert_close("no mask vs full mask", a, b, rtol=0)


def test_large_energies_do_not_overflow():
    """The softmax subtracts the row maximum: energies of order 1e4 give no inf or NaN."""
    params, s_prev, h_enc, mask = make(np.random.default_rng(3))
    params = {**params, "v": params["v"] * 1e4}
    c, alpha = attention.forward(params, s_prev, h_enc, mask)
    assert np.all(np.isfinite(c)) and np.all(np.isfinite(alpha))
    assert_close("sum alpha", np.ones(len(alpha)), alpha.sum(axis=1), rtol=1e-14)


def _objective(params, s_prev, h_enc, mask, G, Ga):
    c, alpha = attention.forward(params, s_prev, h_enc, mask)
    return float(np.sum(G * c) + np.sum(Ga * alpha))


def test_backward_matches_finite_differences():
    rng = np.random.default_rng(4)
    params, s_prev, h_enc, mask = make(rng)
    G, Ga = rng.standard_normal((3, 6)), rng.standard_normal((3, 5))
    c, alpha, cache = attention.forward(params, s_prev, h_enc, mask, return_cache=True)
    grads, ds, dh = attention.backward(params, G, cache, dalpha=Ga)
    for key in params:
        num = numerical_gradient(lambda w, key=key: _objective({**params, key: w}, s_prev, h_enc, mask, G, Ga),
                                 params[key])
        assert_close(f"d{key}", num, grads[key], rtol=RTOL_FD)
    assert_close("ds_prev", numerical_gradient(lambda s: _objective(params, s, h_enc, mask, G, Ga), s_prev),
                 ds, rtol=RTOL_FD)
    assert_close("dh_enc", numerical_gradient(lambda h: _objective(params, s_prev, h, mask, G, Ga), h_enc),
                 dh, rtol=RTOL_FD)
    assert np.all(dh[~mask] == 0.0), "padding receives no gradient"


def test_backward_matches_torch_autograd_on_the_same_source():
    rng = np.random.default_rng(5)
    params, s_prev, h_enc, mask = make(rng, B=2, L=6, H=3, C=4, A=5)
    G = rng.standard_normal((2, 4))
    _, _, cache = attention.forward(params, s_prev, h_enc, mask, return_cache=True)
    grads, ds, dh = attention.backward(params, G, cache)
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    ts, th = torch.tensor(s_prev, requires_grad=True), torch.tensor(h_enc, requires_grad=True)
    c, _ = attention.forward(tp, ts, th, torch.tensor(mask))
    (torch.tensor(G) * c).sum().backward()
    for key in params:
        assert_close(f"d{key}", tp[key].grad, grads[key], rtol=RTOL)
    assert_close("ds_prev", ts.grad, ds, rtol=RTOL)
    assert_close("dh_enc", th.grad, dh, rtol=RTOL)


def test_torch_forward_equals_numpy():
    params, s_prev, h_enc, mask = make(np.random.default_rng(6))
    c, alpha = attention.forward(params, s_prev, h_enc, mask)
    t = to_backend([params, s_prev, h_enc, mask], "torch")
    c_t, alpha_t = attention.forward(*t)
    assert_close("c torch", c, c_t, rtol=RTOL)
    assert_close("alpha torch", alpha, alpha_t, rtol=RTOL)


@settings(max_examples=25, deadline=None)
@given(B=st.integers(1, 3), L=st.integers(1, 5), H=st.integers(1, 4), C=st.integers(1, 4),
       A=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_shapes_and_naive_agreement(B, L, H, C, A, seed):
    params, s_prev, h_enc, mask = make(np.random.default_rng(seed), B, L, H, C, A)
    c, alpha, cache = attention.forward(params, s_prev, h_enc, mask, return_cache=True)
    assert c.shape == (B, C) and alpha.shape == (B, L)
    c_ref, alpha_ref = attention_naive(params, s_prev, h_enc, mask)
    assert_close("c", c_ref, c, rtol=1e-12, atol=1e-14)
    grads, ds, dh = attention.backward(params, np.ones((B, C)), cache)
    assert ds.shape == (B, H) and dh.shape == (B, L, C)
    assert all(grads[k].shape == params[k].shape for k in params)


def test_L1_gives_weight_one():
    params, s_prev, h_enc, _ = make(np.random.default_rng(7), L=1, pad=False)
    c, alpha = attention.forward(params, s_prev, h_enc)
    assert np.all(alpha == 1.0)
    assert_close("c = h_1", h_enc[:, 0], c, rtol=0)


@pytest.mark.parametrize("case, match", [
    ("row of zeros", "at least one unmasked"),
    ("mask shape", "mask"),
    ("s_prev width", "s_prev"),
    ("h_enc batch", "h_enc"),
    ("integer h_enc", "floating"),
    ("missing v", "missing 'v'"),
    ("U_a rows", "U_a"),
])
def test_bad_input(case, match):
    params, s_prev, h_enc, mask = make(np.random.default_rng(8), pad=False)
    if case == "row of zeros":
        mask = mask.copy()
        mask[1] = False
    elif case == "mask shape":
        mask = mask[:, :-1]
    elif case == "s_prev width":
        s_prev = s_prev[:, :-1]
    elif case == "h_enc batch":
        h_enc = h_enc[:-1]
    elif case == "integer h_enc":
        h_enc = np.ones(h_enc.shape, dtype=np.int64)
    elif case == "missing v":
        params = {k: v for k, v in params.items() if k != "v"}
    elif case == "U_a rows":
        params = {**params, "U_a": params["U_a"][:-1]}
    with pytest.raises(ValueError, match=match):
        attention.forward(params, s_prev, h_enc, mask)


def test_backward_bad_dc_shape():
    params, s_prev, h_enc, mask = make(np.random.default_rng(9))
    _, _, cache = attention.forward(params, s_prev, h_enc, mask, return_cache=True)
    with pytest.raises(ValueError, match="dc"):
        attention.backward(params, np.ones((3, 2)), cache)
    with pytest.raises(ValueError, match="dalpha"):
        attention.backward(params, np.ones((3, 6)), cache, dalpha=np.ones((3, 4)))


# ---------------------------------------------------------------------------------------------
# Luong's multiplicative ("general") score, (5.10): e_ij = s_{i-1} W_a h_j^T.

def make_luong(rng, B=3, L=5, H=4, C=6, pad=True):
    _, s_prev, h_enc, mask = make(rng, B, L, H, C, 2, pad)
    return attention.init(rng, H, C, score="luong"), s_prev, h_enc, mask


def luong_naive(params, s_prev, h_enc, mask):
    """Luong, Pham and Manning (2015), eq. 7-8, the 'general' score in column form, one sentence
    and one position at a time: score(s, h_j) = s^T W h_j with W = W_a (H, C), alpha = softmax
    over the real positions, c = sum_j alpha_j h_j."""
    W = params["W_a"]
    B, L, C = h_enc.shape
    c, alpha = np.zeros((B, C)), np.zeros((B, L))
    for b in range(B):
        real = [j for j in range(L) if mask[b, j]]
        e = {j: float(s_prev[b] @ W @ h_enc[b, j]) for j in real}
        top = max(e.values())
        denom = sum(np.exp(e[j] - top) for j in real)
        for j in real:
            alpha[b, j] = np.exp(e[j] - top) / denom
            c[b] += alpha[b, j] * h_enc[b, j]
    return c, alpha


def test_luong_matches_naive_loop_and_padding_gets_zero():
    params, s_prev, h_enc, mask = make_luong(np.random.default_rng(20))
    assert set(params) == {"W_a"} and attention.score_of(params) == "luong" and not mask.all()
    c, alpha = attention.forward(params, s_prev, h_enc, mask)
    c_ref, alpha_ref = luong_naive(params, s_prev, h_enc, mask)
    assert_close("alpha (luong)", alpha_ref, alpha, rtol=RTOL)
    assert_close("c (luong)", c_ref, c, rtol=RTOL)
    assert np.all(alpha[~mask] == 0.0)


def test_luong_with_identity_is_the_dot_score():
    rng = np.random.default_rng(21)
    _, s_prev, h_enc, mask = make(rng, H=5, C=5)
    _, alpha = attention.forward({"W_a": np.eye(5)}, s_prev, h_enc, mask)
    e = np.einsum("bh,blh->bl", s_prev, h_enc)                       # s_{i-1} . h_j
    e = np.where(mask, e, -np.inf)
    ref = np.exp(e - e.max(1, keepdims=True))
    assert_close("dot score", ref / ref.sum(1, keepdims=True), alpha, rtol=RTOL)


def _objective_any(params, s_prev, h_enc, mask, G, Ga):
    c, alpha = attention.forward(params, s_prev, h_enc, mask)
    return float(np.sum(G * c) + np.sum(Ga * alpha))


def test_luong_backward_matches_finite_differences_and_autograd():
    rng = np.random.default_rng(22)
    params, s_prev, h_enc, mask = make_luong(rng)
    G, Ga = rng.standard_normal((3, 6)), rng.standard_normal((3, 5))
    _, _, cache = attention.forward(params, s_prev, h_enc, mask, return_cache=True)
    grads, ds, dh = attention.backward(params, G, cache, dalpha=Ga)
    num = numerical_gradient(lambda w: _objective_any({"W_a": w}, s_prev, h_enc, mask, G, Ga), params["W_a"])
    assert_close("dW_a (luong, fd)", num, grads["W_a"], rtol=RTOL_FD)
    assert_close("ds_prev (luong, fd)",
                 numerical_gradient(lambda s: _objective_any(params, s, h_enc, mask, G, Ga), s_prev), ds, rtol=RTOL_FD)
    assert_close("dh_enc (luong, fd)",
                 numerical_gradient(lambda h: _objective_any(params, s_prev, h, mask, G, Ga), h_enc), dh, rtol=RTOL_FD)
    assert np.all(dh[~mask] == 0.0), "padding receives no gradient"
    tW = torch.tensor(params["W_a"], requires_grad=True)
    ts, th = torch.tensor(s_prev, requires_grad=True), torch.tensor(h_enc, requires_grad=True)
    c, alpha = attention.forward({"W_a": tW}, ts, th, torch.tensor(mask))
    ((torch.tensor(G) * c).sum() + (torch.tensor(Ga) * alpha).sum()).backward()
    assert_close("dW_a (luong, autograd)", tW.grad, grads["W_a"], rtol=RTOL)
    assert_close("ds_prev (luong, autograd)", ts.grad, ds, rtol=RTOL)
    assert_close("dh_enc (luong, autograd)", th.grad, dh, rtol=RTOL)


def test_luong_init_and_bad_params():
    rng = np.random.default_rng(23)
    assert attention.init(rng, 3, 4, score="luong")["W_a"].shape == (3, 4)
    with pytest.raises(ValueError, match="A: Luong"):
        attention.init(rng, 3, 4, 5, score="luong")
    with pytest.raises(ValueError, match="score"):
        attention.init(rng, 3, 4, 5, score="dot-product")
    with pytest.raises(ValueError, match="A"):
        attention.init(rng, 3, 4)                                     # additive needs A
    _, s_prev, h_enc, mask = make_luong(rng)
    with pytest.raises(ValueError, match="W_a"):                      # (H, C) with C wrong
        attention.forward({"W_a": np.ones((4, 5))}, s_prev, h_enc, mask)
    with pytest.raises(ValueError, match="expected keys"):
        attention.forward({"W_b": np.ones((4, 6))}, s_prev, h_enc, mask)


# ---------------------------------------------------------------------------------------------
# Masks: booleans or exactly 0/1; no empty source (issue 14's audit).

@pytest.mark.parametrize("value", [2.0, 0.5, -1.0, np.nan])
@pytest.mark.parametrize("score", ["additive", "luong"])
def test_mask_values_other_than_0_and_1_are_refused(value, score):
    rng = np.random.default_rng(24)
    params, s_prev, h_enc, mask = make(rng, pad=False) if score == "additive" else make_luong(rng, pad=False)
    bad = mask.astype(float)
    bad[1, 2] = value
    with pytest.raises(ValueError, match="mask: expected booleans or the values 0 and 1"):
        attention.forward(params, s_prev, h_enc, bad)
    bad_int = mask.astype(np.int64)
    bad_int[0, 0] = 2
    with pytest.raises(ValueError, match="mask: expected booleans or the values 0 and 1"):
        attention.forward(params, s_prev, h_enc, bad_int)


def test_mask_of_0_1_numbers_equals_boolean_mask():
    params, s_prev, h_enc, mask = make(np.random.default_rng(25))
    ref = attention.forward(params, s_prev, h_enc, mask)
    for as_numbers in (mask.astype(np.int64), mask.astype(np.float64)):
        for a, b in zip(ref, attention.forward(params, s_prev, h_enc, as_numbers)):
            assert_close("0/1 mask vs boolean mask", a, b, rtol=0)


@pytest.mark.parametrize("score", ["additive", "luong"])
def test_empty_source_is_refused(score):
    rng = np.random.default_rng(26)
    params, s_prev, h_enc, _ = make(rng) if score == "additive" else make_luong(rng)
    with pytest.raises(ValueError, match=r"h_enc: expected at least one time step \(L >= 1\)"):
        attention.forward(params, s_prev, h_enc[:, :0])
    with pytest.raises(ValueError, match=r"at least one time step"):
        attention.forward(params, s_prev, h_enc[:, :0], np.ones((3, 0), dtype=bool))
