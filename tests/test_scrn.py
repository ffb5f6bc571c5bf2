"""Tests for rnnkit.scrn: forms agree (step loop, sequence, closed-form context), the paper's
equations as a naive loop, gradients (torch autograd on the same source vs finite differences),
bad input, shapes."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnkit import scrn
from rnnkit.core.backend import to_backend
from rnnkit.core.testing import assert_close, numerical_gradient

RTOL = 1e-12  # float64 agreement between two exact implementations of the same equations


def make(rng, B=3, L=6, D=4, H=5, N=3):
    params = scrn.init(rng, D, H, N)
    x = rng.standard_normal((B, L, D))
    state = (0.5 * rng.standard_normal((B, H)), 0.5 * rng.standard_normal((B, N)))
    return params, x, state


def scrn_naive(params, x, h0, s0, alpha):
    """Mikolov et al. (2015), section 3, one sample and one unit at a time, column form:

        s_t = (1 - alpha) B x_t + alpha s_{t-1},   h_t = sigma(P s_t + A x_t + R h_{t-1})

    with B = W_xs^T, P = W_sh^T, A = W_xh^T, R = W_hh^T, plus rnnkit's bias b_h in the sigmoid.
    """
    Bm, P, A, R = params["W_xs"].T, params["W_sh"].T, params["W_xh"].T, params["W_hh"].T
    b = params["b_h"]
    n_batch, L, _ = x.shape
    H, N = R.shape[0], Bm.shape[0]
    out = np.zeros((n_batch, L, H + N))
    for i in range(n_batch):
        h, s = h0[i].copy(), s0[i].copy()
        for t in range(L):
            s = np.array([(1 - alpha) * Bm[j] @ x[i, t] + alpha * s[j] for j in range(N)])
            h = np.array([1 / (1 + np.exp(-(P[j] @ s + A[j] @ x[i, t] + R[j] @ h + b[j])))
                          for j in range(H)])
            out[i, t] = np.concatenate([h, s])
    return out


def test_step_loop_equals_forward():
    rng = np.random.default_rng(0)
    params, x, state = make(rng)
    y_all, (h_last, s_last) = scrn.forward(params, x, state, alpha=0.9)
    st_ = state
    for t in range(x.shape[1]):
        y, st_ = scrn.step(params, x[:, t], st_, alpha=0.9)
        assert_close(f"y_{t + 1}", y, y_all[:, t], rtol=RTOL)
    assert_close("h_last", st_[0], h_last, rtol=RTOL)
    assert_close("s_last", st_[1], s_last, rtol=RTOL)


def test_matches_the_papers_equations_naive_loop():
    rng = np.random.default_rng(1)
    params, x, (h0, s0) = make(rng, B=2, L=5, D=3, H=4, N=2)
    for alpha in (0.95, 0.5):
        assert_close(f"y_all, alpha={alpha}", scrn_naive(params, x, h0, s0, alpha),
                     scrn.forward(params, x, (h0, s0), alpha=alpha)[0], rtol=RTOL)


@pytest.mark.parametrize("with_s0", [False, True])
def test_context_closed_form_equals_the_loop(with_s0):
    rng = np.random.default_rng(2)
    params, x, (h0, s0) = make(rng, L=40)
    state = (h0, s0) if with_s0 else None
    y_all, _ = scrn.forward(params, x, state, alpha=0.95)
    s_par = scrn.context_parallel(params, x, s0 if with_s0 else None, alpha=0.95)
    # Different summation orders of the same 40 terms: round-off of order 1e-15 relative.
    assert_close("s_all", y_all[..., params["W_hh"].shape[0]:], s_par, rtol=1e-13)


def test_alpha_extremes():
    """alpha = 0: s_t = x_t W_xs (no memory); alpha = 1: s_t = s_0, the context never changes."""
    rng = np.random.default_rng(3)
    params, x, (h0, s0) = make(rng)
    H = params["W_hh"].shape[0]
    assert_close("alpha=0", x @ params["W_xs"], scrn.forward(params, x, alpha=0.0)[0][..., H:], rtol=RTOL)
    s_all = scrn.forward(params, x, (h0, s0), alpha=1.0)[0][..., H:]
    assert_close("alpha=1", np.broadcast_to(s0[:, None], s_all.shape), s_all, rtol=0)


def test_numpy_and_torch_backends_agree():
    rng = np.random.default_rng(4)
    params, x, state = make(rng)
    y_np, _ = scrn.forward(params, x, state)
    y_t, _ = scrn.forward(to_backend(params, "torch"), to_backend(x, "torch"), to_backend(state, "torch"))
    assert isinstance(y_t, torch.Tensor)
    assert_close("y_all torch", y_np, y_t, rtol=RTOL)
    assert_close("context_parallel torch", scrn.context_parallel(params, x),
                 scrn.context_parallel(to_backend(params, "torch"), to_backend(x, "torch")), rtol=RTOL)


def test_autograd_on_the_same_source_matches_finite_differences():
    rng = np.random.default_rng(5)
    params, x, (h0, s0) = make(rng, B=2, L=5, D=3, H=4, N=2)
    G = rng.standard_normal((2, 5, 6))

    def loss(p, x_, s0_):
        return float(np.sum(G * scrn.forward(p, x_, (h0, s0_), alpha=0.8)[0]))

    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    tx, ts0 = torch.tensor(x, requires_grad=True), torch.tensor(s0, requires_grad=True)
    (scrn.forward(tp, tx, (torch.tensor(h0), ts0), alpha=0.8)[0] * torch.tensor(G)).sum().backward()
    for key in params:
        fd = numerical_gradient(lambda v, key=key: loss({**params, key: v}, x, s0), params[key])
        # central differences, eps = 1e-6: truncation error ~1e-10 relative, well inside 1e-7
        assert_close(f"d{key}", fd, tp[key].grad, rtol=1e-7)
    assert_close("dx", numerical_gradient(lambda v: loss(params, v, s0), x), tx.grad, rtol=1e-7)
    assert_close("ds0", numerical_gradient(lambda v: loss(params, x, v), s0), ts0.grad, rtol=1e-7)


def test_bad_inputs_raise_clear_errors():
    rng = np.random.default_rng(6)
    params, x, (h0, s0) = make(rng)
    with pytest.raises(ValueError, match=r"x: expected 3 dimensions \(B, L, D=4\), got shape \(6, 4\)"):
        scrn.forward(params, x[0])
    with pytest.raises(ValueError, match="x: expected a floating-point array, got dtype int64"):
        scrn.forward(params, x.astype(np.int64))
    with pytest.raises(ValueError, match="params: expected keys W_xs, W_sh, W_xh, W_hh, b_h, missing 'W_sh'"):
        scrn.forward({k: v for k, v in params.items() if k != "W_sh"}, x)
    with pytest.raises(ValueError, match=r"params\['W_sh'\]: expected shape \(N=3, H\)"):
        scrn.forward({**params, "W_sh": np.zeros((2, 5))}, x)
    with pytest.raises(ValueError, match=r"state\[1\]: expected shape \(B=3, N=3\)"):
        scrn.forward(params, x, (h0, s0[:, :2]))
    with pytest.raises(ValueError, match=r"state: expected a pair \(h, s\)"):
        scrn.step(params, x[:, 0], h0)
    with pytest.raises(ValueError, match=r"alpha: expected a number in \[0, 1\], got 1.5"):
        scrn.forward(params, x, alpha=1.5)
    with pytest.raises(ValueError, match=r"N: expected a positive integer, got 0"):
        scrn.init(rng, 4, 5, 0)
    with pytest.raises(ValueError, match=r"s0: expected shape \(B=3, N=3\)"):
        scrn.context_parallel(params, x, s0[:1])


@settings(deadline=None, max_examples=30)
@given(B=st.integers(1, 3), L=st.integers(1, 6), D=st.integers(1, 4), H=st.integers(1, 5),
       N=st.integers(1, 4), alpha=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_shapes_and_forms_agree_for_any_size(B, L, D, H, N, alpha, seed):
    rng = np.random.default_rng(seed)
    params, x, state = make(rng, B, L, D, H, N)
    y_all, (h, s) = scrn.forward(params, x, state, alpha=alpha)
    assert y_all.shape == (B, L, H + N) and h.shape == (B, H) and s.shape == (B, N)
    assert_close("s_all", y_all[..., H:], scrn.context_parallel(params, x, state[1], alpha=alpha), rtol=1e-12,
                 atol=1e-15)
    y_step, _ = scrn.step(params, x[:, -1], (y_all[:, -2, :H], y_all[:, -2, H:]) if L > 1 else state,
                          alpha=alpha)
    assert_close("last step", y_all[:, -1], y_step, rtol=RTOL)


@pytest.mark.parametrize("alpha", [0.95, 0.5])
def test_recurrent_matrix_is_one_step_and_its_jacobian_has_N_eigenvalues_alpha(alpha):
    """[a_t | s_t] = [h_{t-1} | s_{t-1}] M + input terms, with M = [[W_hh, 0], [alpha W_sh, alpha I]]
    (the alpha on W_sh comes from substituting (6.1) into (6.2)); the step's Jacobian is
    diag(h(1-h) | 1) M^T, block-triangular with N eigenvalues exactly alpha."""
    rng = np.random.default_rng(11)
    B, D, H, N = 2, 3, 5, 4
    p = scrn.init(rng, D, H, N)
    x_t = rng.standard_normal((B, D))
    h_prev, s_prev = rng.uniform(0.1, 0.9, (B, H)), rng.standard_normal((B, N))
    M = scrn.recurrent_matrix(p, alpha=alpha)
    assert M.shape == (H + N, H + N)
    pre = np.concatenate([h_prev, s_prev], axis=1) @ M              # (B, H + N)
    u = (1 - alpha) * x_t @ p["W_xs"]
    a = pre[:, :H] + u @ p["W_sh"] + x_t @ p["W_xh"] + p["b_h"]
    _, (h, s) = scrn.step(p, x_t, (h_prev, s_prev), alpha=alpha)
    assert_close("h_t from M", 1 / (1 + np.exp(-a)), h, rtol=1e-13)
    assert_close("s_t from M", pre[:, H:] + u, s, rtol=1e-13)
    # Jacobian of one step by autograd, one sentence
    tp = {k: torch.tensor(v) for k, v in p.items()}
    tx = torch.tensor(x_t[:1])

    def f(state):
        return scrn.step(tp, tx, (state[None, :H], state[None, H:]), alpha=alpha)[0][0]

    state0 = torch.tensor(np.concatenate([h_prev[0], s_prev[0]]))
    J = torch.autograd.functional.jacobian(f, state0).numpy()         # (H + N, H + N)
    deriv = np.concatenate([h[0] * (1 - h[0]), np.ones(N)])
    assert_close("J = diag(f') M^T", deriv[:, None] * M.T, J, rtol=1e-12)
    eig = np.linalg.eigvals(J)
    assert np.sum(np.abs(eig - alpha) < 1e-12) == N
    sv = np.linalg.svd(J, compute_uv=False)
    assert np.sum(np.abs(sv - alpha) < 1e-6) < N                      # singular values are not alpha
