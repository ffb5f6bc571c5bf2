"""Tests for rnnkit.lem: forms agree, the paper's scheme (3) as a naive loop, the official code's
cell (rewritten in torch here) with copied weights, the IMEX-Euler reading of the ODE, bounded
states, gradients (torch autograd on the same source vs finite differences), bad input, shapes."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnkit import lem
from rnnkit.core.backend import to_backend
from rnnkit.core.testing import assert_close, numerical_gradient

RTOL = 1e-12  # float64 agreement between two exact implementations of the same equations


def make(rng, B=3, L=6, D=4, H=5):
    params = lem.init(rng, D, H)
    x = rng.standard_normal((B, L, D))
    state = (0.5 * rng.standard_normal((B, H)), 0.5 * rng.standard_normal((B, H)))
    return params, x, state


def blocks(params):
    """The paper's separate matrices, column form (W_1 is (H, H) acting on a column y...)."""
    H = params["W_y"].shape[0]
    V = {k: params["V"][:, i * H:(i + 1) * H].T for i, k in enumerate(("1", "2", "z", "y"))}
    W = {k: params["W"][:, i * H:(i + 1) * H].T for i, k in enumerate(("1", "2", "z"))}
    W["y"] = params["W_y"].T
    b = {k: params["b"][i * H:(i + 1) * H] for i, k in enumerate(("1", "2", "z", "y"))}
    return V, W, b


def lem_naive(params, u, y0, z0, dt):
    """Rusch et al. (2022), equation (3), one sample and one unit at a time:

        dt_n    = dt sigma(W_1 y_{n-1} + V_1 u_n + b_1),   dtbar_n = dt sigma(W_2 y_{n-1} + V_2 u_n + b_2)
        z_n     = (1 - dt_n) z_{n-1} + dt_n tanh(W_z y_{n-1} + V_z u_n + b_z)
        y_n     = (1 - dtbar_n) y_{n-1} + dtbar_n tanh(W_y z_n + V_y u_n + b_y)
    """
    V, W, b = blocks(params)
    sig = lambda a: 1.0 / (1.0 + math.exp(-a))  # noqa: E731
    n_batch, L, _ = u.shape
    H = y0.shape[1]
    out = np.zeros((n_batch, L, H))
    for i in range(n_batch):
        y, z = y0[i].copy(), z0[i].copy()
        for n in range(L):
            un = u[i, n]
            dt_n = [dt * sig(W["1"][j] @ y + V["1"][j] @ un + b["1"][j]) for j in range(H)]
            dtb_n = [dt * sig(W["2"][j] @ y + V["2"][j] @ un + b["2"][j]) for j in range(H)]
            z = np.array([(1 - dt_n[j]) * z[j] + dt_n[j] * math.tanh(W["z"][j] @ y + V["z"][j] @ un + b["z"][j])
                          for j in range(H)])
            y = np.array([(1 - dtb_n[j]) * y[j] + dtb_n[j] * math.tanh(W["y"][j] @ z + V["y"][j] @ un + b["y"][j])
                          for j in range(H)])
            out[i, n] = y
    return out


class OfficialLEMCell(torch.nn.Module):
    """The cell of github.com/tk-rusch/LEM (psMNIST/network.py), rewritten: three linear layers,
    inp2hid chunks (dt1, dt2, z-target, y-target) in that code's naming, where dt1 drives y."""

    def __init__(self, D, H, dt):
        super().__init__()
        self.dt = dt
        self.inp2hid = torch.nn.Linear(D, 4 * H)
        self.hid2hid = torch.nn.Linear(H, 3 * H)
        self.transform_z = torch.nn.Linear(H, H)

    def forward(self, x, y, z):
        i_dt1, i_dt2, i_z, i_y = self.inp2hid(x).chunk(4, 1)
        h_dt1, h_dt2, h_y = self.hid2hid(y).chunk(3, 1)
        ms_dt_bar = self.dt * torch.sigmoid(i_dt1 + h_dt1)
        ms_dt = self.dt * torch.sigmoid(i_dt2 + h_dt2)
        z = (1.0 - ms_dt) * z + ms_dt * torch.tanh(i_y + h_y)
        y = (1.0 - ms_dt_bar) * y + ms_dt_bar * torch.tanh(self.transform_z(z) + i_z)
        return y, z


def test_step_loop_equals_forward():
    rng = np.random.default_rng(0)
    params, x, state = make(rng)
    y_all, (y_last, z_last) = lem.forward(params, x, state, dt=0.7)
    s = state
    for t in range(x.shape[1]):
        y, s = lem.step(params, x[:, t], s, dt=0.7)
        assert_close(f"y_{t + 1}", y, y_all[:, t], rtol=RTOL)
    assert_close("y_last", s[0], y_last, rtol=RTOL)
    assert_close("z_last", s[1], z_last, rtol=RTOL)


@pytest.mark.parametrize("dt", [1.0, 0.1])
def test_matches_the_papers_scheme_naive_loop(dt):
    rng = np.random.default_rng(1)
    params, x, (y0, z0) = make(rng, B=2, L=5, D=3, H=4)
    assert_close("y_all", lem_naive(params, x, y0, z0, dt), lem.forward(params, x, (y0, z0), dt=dt)[0],
                 rtol=RTOL)


def test_matches_the_official_cell_with_copied_weights():
    torch.manual_seed(0)
    D, H, dt = 3, 4, 0.5
    cell = OfficialLEMCell(D, H, dt).double()
    x = torch.randn(2, 6, D, dtype=torch.float64)
    y = z = torch.zeros(2, H, dtype=torch.float64)
    ys = []
    for t in range(6):
        y, z = cell(x[:, t], y, z)
        ys.append(y)
    # Map the official layout to ours: our blocks [1 | 2 | z | y] drive (z's step, y's step,
    # z's target, y's target); the code's (dt1, dt2, i_z, i_y) drive (y's step, z's step,
    # y's target, z's target).
    Wi, bi = cell.inp2hid.weight.detach().T, cell.inp2hid.bias.detach()
    Wh, bh = cell.hid2hid.weight.detach().T, cell.hid2hid.bias.detach()
    ci = lambda a, k: a[..., k * H:(k + 1) * H]  # noqa: E731
    params = {"V": torch.cat([ci(Wi, 1), ci(Wi, 0), ci(Wi, 3), ci(Wi, 2)], dim=1),
              "W": torch.cat([ci(Wh, 1), ci(Wh, 0), ci(Wh, 2)], dim=1),
              "W_y": cell.transform_z.weight.detach().T,
              "b": torch.cat([ci(bi, 1) + ci(bh, 1), ci(bi, 0) + ci(bh, 0), ci(bi, 3) + ci(bh, 2),
                              ci(bi, 2) + cell.transform_z.bias.detach()])}
    y_all, (y_last, z_last) = lem.forward(params, x, dt=dt)
    assert_close("y_all vs official cell", torch.stack(ys, 1).detach(), y_all, rtol=RTOL)
    assert_close("z_last vs official cell", z.detach(), z_last, rtol=RTOL)


def test_step_is_the_imex_euler_step_of_the_ode():
    """z_n = z + dt * dz/dt(y_{n-1}, z_{n-1}); y_n = y + dt * dy/dt(y_{n-1}, z_n): explicit in z's
    update, using the new z in y's update."""
    rng = np.random.default_rng(2)
    params, x, (y, z) = make(rng)
    for dt in (1.0, 0.3):
        _, (y_n, z_n) = lem.step(params, x[:, 0], (y, z), dt=dt)
        _, dz = lem.ode_rhs(params, x[:, 0], y, z)
        assert_close("z_n", z + dt * dz, z_n, rtol=1e-13)
        dy, _ = lem.ode_rhs(params, x[:, 0], y, z_n)
        assert_close("y_n", y + dt * dy, y_n, rtol=1e-13)


def test_states_stay_bounded_even_with_huge_weights_and_inputs():
    """(6.14): max(|y_n|, |z_n|) <= max(||y_0||_inf, ||z_0||_inf, 1)."""
    rng = np.random.default_rng(3)
    params, _, _ = make(rng, H=8)
    params = {k: 50 * v for k, v in params.items()}
    x = 100 * rng.standard_normal((4, 200, 4))
    for y0_scale in (0.0, 3.0):
        y0 = y0_scale * rng.standard_normal((4, 8))
        z0 = y0_scale * rng.standard_normal((4, 8))
        bound = max(np.abs(y0).max(), np.abs(z0).max(), 1.0)
        y_all, (y_L, z_L) = lem.forward(params, x, (y0, z0), dt=1.0)
        assert np.all(np.isfinite(y_all))
        assert np.abs(y_all).max() <= bound and np.abs(z_L).max() <= bound


def test_numpy_and_torch_backends_agree():
    rng = np.random.default_rng(4)
    params, x, state = make(rng)
    ref = lem.forward(params, x, state)[0]
    got = lem.forward(to_backend(params, "torch"), to_backend(x, "torch"), to_backend(state, "torch"))[0]
    assert isinstance(got, torch.Tensor)
    assert_close("y_all torch", ref, got, rtol=RTOL)


def test_autograd_on_the_same_source_matches_finite_differences():
    rng = np.random.default_rng(5)
    params, x, (y0, z0) = make(rng, B=2, L=5, D=3, H=4)
    G = rng.standard_normal((2, 5, 4))

    def loss(p, x_, z0_):
        return float(np.sum(G * lem.forward(p, x_, (y0, z0_), dt=0.6)[0]))

    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    tx, tz0 = torch.tensor(x, requires_grad=True), torch.tensor(z0, requires_grad=True)
    (lem.forward(tp, tx, (torch.tensor(y0), tz0), dt=0.6)[0] * torch.tensor(G)).sum().backward()
    for key in params:
        fd = numerical_gradient(lambda v, key=key: loss({**params, key: v}, x, z0), params[key])
        assert_close(f"d{key}", fd, tp[key].grad, rtol=1e-7)   # central differences, eps = 1e-6
    assert_close("dx", numerical_gradient(lambda v: loss(params, v, z0), x), tx.grad, rtol=1e-7)
    assert_close("dz0", numerical_gradient(lambda v: loss(params, x, v), z0), tz0.grad, rtol=1e-7)


def test_bad_inputs_raise_clear_errors():
    rng = np.random.default_rng(6)
    params, x, (y0, z0) = make(rng)
    with pytest.raises(ValueError, match=r"x: expected 3 dimensions \(B, L, D=4\), got shape \(6, 4\)"):
        lem.forward(params, x[0])
    with pytest.raises(ValueError, match="x: expected a floating-point array, got dtype int64"):
        lem.forward(params, x.astype(np.int64))
    with pytest.raises(ValueError, match="params: expected keys W_y, W, V, b, missing 'W'"):
        lem.forward({k: v for k, v in params.items() if k != "W"}, x)
    with pytest.raises(ValueError, match=r"params: expected W \(H, 3H\) and V \(D, 4H\)"):
        lem.forward({**params, "W": np.zeros((5, 10))}, x)
    with pytest.raises(ValueError, match=r"state\[1\]: expected shape \(B=3, H=5\)"):
        lem.forward(params, x, (y0, z0[:, :2]))
    with pytest.raises(ValueError, match=r"state: expected a pair \(y, z\)"):
        lem.step(params, x[:, 0], y0)
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"dt: expected a number in \(0, 1\]"):
            lem.forward(params, x, dt=bad)


@settings(deadline=None, max_examples=30)
@given(B=st.integers(1, 3), L=st.integers(1, 6), D=st.integers(1, 4), H=st.integers(1, 5),
       dt=st.floats(0.01, 1.0), seed=st.integers(0, 2**16))
def test_shapes_and_forms_agree_for_any_size(B, L, D, H, dt, seed):
    rng = np.random.default_rng(seed)
    params, x, state = make(rng, B, L, D, H)
    y_all, (y, z) = lem.forward(params, x, state, dt=dt)
    assert y_all.shape == (B, L, H) and y.shape == (B, H) and z.shape == (B, H)
    s = state
    for t in range(L):
        _, s = lem.step(params, x[:, t], s, dt=dt)
    assert_close("y_L", y, s[0], rtol=RTOL)
    assert_close("z_L", z, s[1], rtol=RTOL)
