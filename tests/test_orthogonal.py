"""Tests for rnnkit.orthogonal: W_hh is orthogonal at init and stays orthogonal after optimiser
steps, the Cayley map against an explicit inverse and rotations, norm preservation, the paper's
equations as a naive loop, gradients (torch autograd on the same source vs finite differences),
bad input, shapes."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnkit import orthogonal as orth
from rnnkit.training import train
from rnnkit.core.backend import to_backend
from rnnkit.core.testing import assert_close, numerical_gradient

RTOL = 1e-12  # float64 agreement between two exact implementations of the same equations


def make(rng, B=3, L=6, D=4, H=6):
    params = orth.init(rng, D, H)
    params["K"] = params["K"] + 0.3 * rng.standard_normal((H, H))   # a generic, full K
    x = rng.standard_normal((B, L, D))
    h0 = 0.5 * rng.standard_normal((B, H))
    return params, x, h0


def orthogonality_error(W):
    W = np.asarray(W.detach() if isinstance(W, torch.Tensor) else W)
    return float(np.max(np.abs(W.T @ W - np.eye(W.shape[0]))))


def orthogonal_rnn_naive(params, x, h0, nonlinearity):
    """The recurrence written from the papers, one sample and one unit at a time, column form:

        A = K - K^T,  W = (I + A)^{-1} (I - A)  (explicit inverse; Helfrich et al. 2018, eq. 2),
        h_t = modReLU(W^T h_{t-1} + W_xh^T x_t)  with modReLU(a) = sign(a) max(|a| + b, 0)
        (Arjovsky et al. 2016, eq. 8, for real a).
    """
    H = params["K"].shape[0]
    A = params["K"] - params["K"].T
    W = np.linalg.inv(np.eye(H) + A) @ (np.eye(H) - A)
    U, b = params["W_xh"].T, params["b"]
    n_batch, L, _ = x.shape
    out = np.zeros((n_batch, L, H))
    for i in range(n_batch):
        h = h0[i].copy()
        for t in range(L):
            a = np.array([W[:, j] @ h + U[j] @ x[i, t] for j in range(H)])
            if nonlinearity == "modrelu":
                h = np.array([np.sign(a[j]) * max(abs(a[j]) + b[j], 0.0) for j in range(H)])
            else:
                h = np.tanh(a + b)
            out[i, t] = h
    return out


@pytest.mark.parametrize("H", [1, 2, 5, 16])
def test_init_is_an_orthogonal_rotation(H):
    rng = np.random.default_rng(H)
    params = orth.init(rng, 3, H)
    W = orth.recurrent_matrix(params)
    assert orthogonality_error(W) < 1e-14
    assert np.linalg.det(W) == pytest.approx(1.0, abs=1e-12)        # a rotation: the Cayley image is in SO(H)
    # 2 x 2 blocks of angle theta = 2 arctan(a): cos theta on the diagonal.
    a = params["K"][2 * np.arange(H // 2), 2 * np.arange(H // 2) + 1]
    assert_close("cos theta", np.cos(2 * np.arctan(a)), np.diag(W)[: 2 * (H // 2)][::2], rtol=1e-13)
    assert np.all((a >= 0) & (a <= 1))                               # theta in [0, pi/2]


def test_cayley_matches_explicit_inverse_and_is_orthogonal_for_any_K():
    rng = np.random.default_rng(1)
    for scale in (0.1, 1.0, 10.0):
        K = scale * rng.standard_normal((7, 7))
        A = orth.skew(K)
        assert_close("A^T = -A", -A, A.T, rtol=0)
        W = orth.cayley(A)
        ref = np.linalg.inv(np.eye(7) + A) @ (np.eye(7) - A)
        assert_close(f"Cayley, scale {scale}", ref, W, rtol=1e-12)
        assert orthogonality_error(W) < 1e-13
        assert np.min(np.abs(np.linalg.eigvals(W) + 1)) > 1e-8       # -1 is never an eigenvalue


def test_orthogonality_is_preserved_by_optimiser_updates():
    """Adam steps on K with gradients from torch autograd: W_hh stays orthogonal to 1e-12."""
    rng = np.random.default_rng(2)
    params, x, _ = make(rng, B=8, L=10, D=4, H=12)
    target = rng.standard_normal((8, 12))
    opt = train.Adam(lr=0.05)
    errors = []
    for _ in range(30):
        tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
        h_all, _ = orth.forward(tp, torch.tensor(x))
        ((h_all[:, -1] - torch.tensor(target)) ** 2).mean().backward()
        opt.step(params, {k: v.grad.numpy() for k, v in tp.items()})
        errors.append(orthogonality_error(orth.recurrent_matrix(params)))
    moved = np.max(np.abs(params["K"] - make(np.random.default_rng(2), B=8, L=10, D=4, H=12)[0]["K"]))
    assert moved > 0.5                                    # K really changed
    assert max(errors) < 1e-12


@pytest.mark.parametrize("nonlinearity", ["modrelu", "tanh"])
def test_matches_the_papers_equations_naive_loop(nonlinearity):
    rng = np.random.default_rng(3)
    params, x, h0 = make(rng, B=2, L=5, D=3, H=4)
    assert_close("h_all", orthogonal_rnn_naive(params, x, h0, nonlinearity),
                 orth.forward(params, x, h0, nonlinearity=nonlinearity)[0], rtol=1e-12)


def test_step_loop_equals_forward():
    rng = np.random.default_rng(4)
    params, x, h0 = make(rng)
    h_all, h_last = orth.forward(params, x, h0)
    h = h0
    for t in range(x.shape[1]):
        h, _ = orth.step(params, x[:, t], h)
        assert_close(f"h_{t + 1}", h, h_all[:, t], rtol=RTOL)
    assert_close("h_last", h, h_last, rtol=RTOL)


def test_linear_recurrence_preserves_state_and_gradient_norms():
    """With no input and no bias, h_t = h_{t-1} W_hh: ||h_t|| = ||h_0||, and the gradient
    dL/dh_0 = dL/dh_L (W_hh^T)^L has the norm of dL/dh_L, for any lag."""
    rng = np.random.default_rng(5)
    params, _, _ = make(rng, H=10)
    params["b"] = np.zeros(10)
    x = np.zeros((2, 300, 4))
    h0 = torch.tensor(rng.standard_normal((2, 10)), requires_grad=True)
    tp = to_backend(params, "torch")
    h_all, h_last = orth.forward(tp, torch.tensor(x), h0, nonlinearity="linear")
    norms = h_all.detach().norm(dim=-1)
    assert_close("||h_t||", h0.detach().norm(dim=-1)[:, None].expand(2, 300), norms, rtol=1e-12)
    g = torch.tensor(rng.standard_normal((2, 10)))
    (h_last * g).sum().backward()
    assert_close("||dL/dh_0||", g.norm(dim=-1), h0.grad.norm(dim=-1), rtol=1e-12)


def test_modrelu_values():
    a, b = np.array([-2.0, -0.5, 0.0, 0.3, 3.0]), np.array([-1.0, -1.0, 0.5, 0.1, 0.5])
    assert_close("modrelu", np.array([-1.0, 0.0, 0.0, 0.4, 3.5]), orth.modrelu(np, a, b), rtol=0)


def test_numpy_and_torch_backends_agree():
    rng = np.random.default_rng(6)
    params, x, h0 = make(rng)
    ref = orth.forward(params, x, h0)[0]
    got = orth.forward(to_backend(params, "torch"), to_backend(x, "torch"), to_backend(h0, "torch"))[0]
    assert isinstance(got, torch.Tensor)
    assert_close("h_all torch", ref, got, rtol=1e-12)


@pytest.mark.parametrize("nonlinearity", ["modrelu", "tanh"])
def test_autograd_on_the_same_source_matches_finite_differences(nonlinearity):
    rng = np.random.default_rng(7)
    params, x, h0 = make(rng, B=2, L=5, D=3, H=4)
    params["b"] = np.full(4, 0.2)       # keep |a| + b away from the modReLU kink at 0
    G = rng.standard_normal((2, 5, 4))

    def loss(p, x_, h0_):
        return float(np.sum(G * orth.forward(p, x_, h0_, nonlinearity=nonlinearity)[0]))

    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    tx, th0 = torch.tensor(x, requires_grad=True), torch.tensor(h0, requires_grad=True)
    (orth.forward(tp, tx, th0, nonlinearity=nonlinearity)[0] * torch.tensor(G)).sum().backward()
    for key in params:
        fd = numerical_gradient(lambda v, key=key: loss({**params, key: v}, x, h0), params[key])
        assert_close(f"d{key}", fd, tp[key].grad, rtol=1e-7)   # central differences, eps = 1e-6
    assert_close("dx", numerical_gradient(lambda v: loss(params, v, h0), x), tx.grad, rtol=1e-7)
    assert_close("dh0", numerical_gradient(lambda v: loss(params, x, v), h0), th0.grad, rtol=1e-7)


def test_bad_inputs_raise_clear_errors():
    rng = np.random.default_rng(8)
    params, x, h0 = make(rng)
    with pytest.raises(ValueError, match=r"x: expected 3 dimensions \(B, L, D=4\), got shape \(6, 4\)"):
        orth.forward(params, x[0])
    with pytest.raises(ValueError, match="x: expected a floating-point array, got dtype int64"):
        orth.forward(params, x.astype(np.int64))
    with pytest.raises(ValueError, match="params: expected keys K, W_xh, b, missing 'K'"):
        orth.forward({k: v for k, v in params.items() if k != "K"}, x)
    with pytest.raises(ValueError, match=r"params\['K'\]: expected 2 dimensions"):
        orth.forward({**params, "K": np.zeros(6)}, x)
    with pytest.raises(ValueError, match=r"nonlinearity: expected one of 'modrelu', 'tanh', 'linear', got 'relu'"):
        orth.forward(params, x, nonlinearity="relu")
    with pytest.raises(ValueError, match=r"state: expected shape \(B=3, H=6\)"):
        orth.forward(params, x, h0[:, :2])
    with pytest.raises(ValueError, match=r"W_hh: expected shape \(H=6, H=6\)"):
        orth.step(params, x[:, 0], h0, W_hh=np.eye(5))
    with pytest.raises(ValueError, match=r"A: expected shape \(H=3, H=3\) \(from A\), got \(3, 4\)"):
        orth.cayley(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"max_angle: expected a number in \(0, pi\)"):
        orth.init(rng, 3, 4, max_angle=4.0)


@settings(deadline=None, max_examples=30)
@given(B=st.integers(1, 3), L=st.integers(1, 6), D=st.integers(1, 4), H=st.integers(1, 6),
       seed=st.integers(0, 2**16))
def test_shapes_and_orthogonality_for_any_size(B, L, D, H, seed):
    rng = np.random.default_rng(seed)
    params, x, h0 = make(rng, B, L, D, H)
    h_all, h_last = orth.forward(params, x, h0)
    assert h_all.shape == (B, L, H) and h_last.shape == (B, H)
    assert orthogonality_error(orth.recurrent_matrix(params)) < 1e-13
    h_prev = h_all[:, -2] if L > 1 else h0
    assert_close("last step", h_all[:, -1], orth.step(params, x[:, -1], h_prev)[0], rtol=RTOL)
