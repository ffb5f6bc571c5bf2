"""Tests for rnnkit.s4d: initialisations, Vandermonde kernel, conjugate symmetry, ZOH exactness."""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rnnkit import lmu, s4d
from rnnkit.core.backend import to_backend
from rnnkit.core.testing import assert_close

METHODS = ("zoh", "bilinear")


def random_params(rng, H=3, N=8):
    N2 = N // 2
    cplx = lambda: rng.standard_normal((H, N2)) + 1j * rng.standard_normal((H, N2))  # noqa: E731
    return {"log_dt": rng.uniform(np.log(1e-3), np.log(0.5), size=H),
            "log_A_real": rng.normal(-0.5, 1.0, size=(H, N2)),
            "A_imag": rng.normal(0.0, 5.0, size=(H, N2)),
            "B": cplx(), "C": cplx(), "D": rng.standard_normal(H)}


def test_initialisations():
    N = 16
    n = np.arange(N // 2)
    lin = s4d.init(np.random.default_rng(0), 2, N, init="lin")
    inv = s4d.init(np.random.default_rng(0), 2, N, init="inv")
    for p in (lin, inv):
        assert_close("Re A = -1/2", np.full((2, N // 2), -0.5), -np.exp(p["log_A_real"]), rtol=1e-15)
        assert_close("B = 1", np.ones((2, N // 2)), p["B"], rtol=0)
    assert_close("S4D-Lin", np.tile(np.pi * n, (2, 1)), lin["A_imag"], rtol=1e-15)
    assert_close("S4D-Inv", np.tile(N / np.pi * (N / (2 * n + 1) - 1), (2, 1)), inv["A_imag"],
                 rtol=1e-15)
    assert inv["A_imag"][0, 0] == pytest.approx(N / np.pi * (N - 1))     # n = 0: the fastest mode


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("init", s4d.INITS)
@pytest.mark.parametrize("L", [1, 2, 17, 256, 2048])
def test_vandermonde_kernel_equals_naive(method, init, L):
    params = s4d.init(np.random.default_rng(L), 3, 16, init=init)
    assert_close(f"K ({method}, {init}, L={L})", s4d.kernel_naive(params, L, method),
                 s4d.kernel(params, L, method), rtol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_convolutional_equals_recurrent(method):
    rng = np.random.default_rng(1)
    for params in (s4d.init(rng, 3, 16), random_params(rng)):
        u = rng.standard_normal((2, 80, 3))
        y_rec, _ = s4d.forward(params, u, method=method)
        assert_close("conv == recurrent", y_rec, s4d.forward_conv(params, u, method), rtol=1e-12)


def test_step_loop_equals_forward_with_initial_state():
    rng = np.random.default_rng(2)
    params = random_params(rng)
    u = rng.standard_normal((2, 9, 3))
    x0 = rng.standard_normal((2, 3, 4)) + 1j * rng.standard_normal((2, 3, 4))
    y, x_L = s4d.forward(params, u, x0, method="bilinear")
    ssm, x = s4d.discretize(params, "bilinear"), x0
    for k in range(9):
        y_k, x = s4d.step(ssm, u[:, k], x)
        assert_close(f"y_{k}", y[:, k], y_k, rtol=1e-13)
    assert_close("x_L", x_L, x, rtol=1e-13)


@pytest.mark.parametrize("method", METHODS)
def test_conjugate_symmetry_two_real_parts_equal_the_full_system(method):
    """Keeping N/2 modes and taking 2 Re equals the full N-mode system with the conjugates added."""
    params = random_params(np.random.default_rng(3))
    ssm = s4d.discretize(params, method)
    full = lambda v: np.concatenate([v, v.conj()], axis=-1)  # noqa: E731
    dense = {"A_bar": np.stack([np.diag(a) for a in full(ssm["A_bar"])]),
             "B_bar": full(ssm["B_bar"]), "C": full(ssm["C"]), "D": ssm["D"]}
    assert_close("K", lmu.ssm_kernel(dense, 40), s4d.kernel(params, 40, method), rtol=1e-12)


def test_zoh_kernel_is_the_integral_of_the_continuous_kernel():
    """(13.16): with ZOH, K_l = int_{l dt}^{(l+1) dt} K(t) dt exactly (Gauss-Legendre, 20 nodes)."""
    params = s4d.init(np.random.default_rng(4), 3, 8, init="lin", dt_min=0.05, dt_max=0.2)
    dt = np.exp(params["log_dt"])
    L = 30
    z, w = np.polynomial.legendre.leggauss(20)
    ref = np.zeros((3, L))
    for h in range(3):
        p_h = {k: v[h:h + 1] for k, v in params.items()}
        for ell in range(L):
            t = dt[h] * (ell + (z + 1) / 2)
            ref[h, ell] = dt[h] / 2 * w @ s4d.kernel_continuous(p_h, t)[0]
    assert_close("ZOH kernel", ref, s4d.kernel(params, L, "zoh"), rtol=1e-12)


def test_bilinear_and_zoh_agree_to_second_order():
    """Both discretise the same continuous system: their kernels differ by O(dt^2) relative."""
    params = s4d.init(np.random.default_rng(5), 1, 8, init="lin")
    diffs = []
    for dt in (0.02, 0.01):
        p = {**params, "log_dt": np.full(1, np.log(dt))}
        L = int(round(1.0 / dt))
        K_z, K_b = s4d.kernel(p, L, "zoh"), s4d.kernel(p, L, "bilinear")
        diffs.append(np.max(np.abs(K_z - K_b)) / np.max(np.abs(K_z)))
    assert 3.6 < diffs[0] / diffs[1] < 4.4, diffs


def test_runs_on_torch_with_autograd():
    rng = np.random.default_rng(6)
    params = s4d.init(rng, 2, 8)
    u = rng.standard_normal((2, 16, 2))
    tparams = to_backend(params, "torch")
    tparams["C"].requires_grad_(True)
    y = s4d.forward_conv(tparams, torch.tensor(u))
    assert_close("torch == numpy", s4d.forward_conv(params, u), y, rtol=1e-12)
    y.sum().backward()
    assert tparams["C"].grad.shape == (2, 4)


def test_bad_inputs_raise_clear_errors():
    rng = np.random.default_rng(7)
    params = s4d.init(rng, 3, 8)
    u = rng.standard_normal((2, 10, 3))
    with pytest.raises(ValueError, match="N: expected an even state size"):
        s4d.init(rng, 3, 5)
    with pytest.raises(ValueError, match="init: expected one of .*, got 'legs'"):
        s4d.init(rng, 3, 8, init="legs")
    with pytest.raises(ValueError, match="method: expected one of .*, got 'euler'"):
        s4d.kernel(params, 10, "euler")
    with pytest.raises(ValueError, match="params: expected keys .* missing 'C'"):
        s4d.forward({k: v for k, v in params.items() if k != "C"}, u)
    with pytest.raises(ValueError, match=r"params\['A_imag'\]: expected shape \(H=3, N2=4\)"):
        s4d.forward_conv({**params, "A_imag": params["A_imag"][:, :2]}, u)
    with pytest.raises(ValueError, match=r"u: expected shape \(B=2, L=10, H=3\).*got \(2, 10, 4\)"):
        s4d.forward(params, rng.standard_normal((2, 10, 4)))
    with pytest.raises(ValueError, match=r"x0: expected shape \(B=2, H=3, N2=4\)"):
        s4d.forward(params, u, np.zeros((2, 3, 8), dtype=complex))
    with pytest.raises(ValueError, match=r"x_prev: expected shape \(B=2, H=3, N2=4\)"):
        s4d.step(s4d.discretize(params), u[:, 0], np.zeros((2, 3, 3), dtype=complex))
    with pytest.raises(ValueError, match="L: expected a positive integer, got -1"):
        s4d.kernel(params, -1)


@given(B=st.integers(1, 3), L=st.integers(1, 40), H=st.integers(1, 3),
       N=st.sampled_from([2, 4, 8]), method=st.sampled_from(METHODS), seed=st.integers(0, 2**16))
def test_views_agree_property(B, L, H, N, method, seed):
    rng = np.random.default_rng(seed)
    params = random_params(rng, H, N)
    u = rng.standard_normal((B, L, H))
    y_rec, x_L = s4d.forward(params, u, method=method)
    assert y_rec.shape == (B, L, H) and x_L.shape == (B, H, N // 2)
    assert_close("conv == recurrent", y_rec, s4d.forward_conv(params, u, method), rtol=1e-10)
    assert_close("Vandermonde == naive", s4d.kernel_naive(params, L, method),
                 s4d.kernel(params, L, method), rtol=1e-10)


def test_split_and_merge_complex_round_trip_and_train_on_torch():
    rng = np.random.default_rng(9)
    params = s4d.init(rng, 2, 8)
    real = s4d.split_complex(params)
    assert set(real) == {"log_dt", "log_A_real", "A_imag", "D", "B_re", "B_im", "C_re", "C_im"}
    assert all(not np.iscomplexobj(v) for v in real.values())
    back = s4d.merge_complex(real)
    for k in params:
        assert_close(k, params[k], back[k], rtol=0)
    t = {k: torch.tensor(v, requires_grad=True) for k, v in real.items()}
    u = rng.standard_normal((1, 12, 2))
    y = s4d.forward_conv(s4d.merge_complex(t), torch.tensor(u))
    assert_close("torch split == numpy", s4d.forward_conv(params, u), y, rtol=1e-12)
    y.sum().backward()
    assert t["C_im"].grad is not None and torch.any(t["C_im"].grad != 0)
