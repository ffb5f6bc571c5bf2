"""Tests for rnnkit.discretize: analytic ODE solutions, convergence orders, stability, expm."""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rnnkit import discretize as dz
from rnnkit.core.testing import assert_close

# A stable 3x3 system with a known eigendecomposition A = V diag(lam) V^{-1}: one real mode and
# one oscillating pair, so every formula below is analytic (no matrix exponential involved).
LAM = np.array([-0.7, -0.3 + 2.0j, -0.3 - 2.0j])
_R = np.array([[1.0, 0.4, -0.2], [0.3, 1.0, 0.5], [-0.6, 0.2, 1.0]])
V = np.stack([_R[:, 0], _R[:, 1] + 1j * _R[:, 2], _R[:, 1] - 1j * _R[:, 2]], axis=1)
V_INV = np.linalg.inv(V)
A = (V * LAM) @ V_INV
A = A.real                                              # real by construction (conjugate pair)
B = np.array([1.0, -0.5, 0.25])
X0 = np.array([0.3, -1.0, 0.8])
OMEGA = 1.7                                             # input u(t) = cos(OMEGA t)


def expm_analytic(t):
    return ((V * np.exp(LAM * t)) @ V_INV).real


def exact_solution(t):
    """x(t) for x' = A x + B cos(OMEGA t), x(0) = X0: homogeneous part plus the particular
    solution x_p(t) = Re((i OMEGA - A)^{-1} B exp(i OMEGA t))."""
    g = np.linalg.solve(1j * OMEGA * np.eye(3) - A, B)
    x_p = lambda s: (g * np.exp(1j * OMEGA * s)).real  # noqa: E731
    return expm_analytic(t) @ (X0 - x_p(0.0)) + x_p(t)


def run(method, dt, T=2.0):
    """The recurrence with u_k sampled where each method expects it (see the module docstring)."""
    A_bar, B_bar = dz.discretize(A, B, dt, method)
    u = lambda s: np.cos(OMEGA * s)  # noqa: E731
    x = X0.copy()
    for k in range(1, int(round(T / dt)) + 1):
        t0, t1 = (k - 1) * dt, k * dt
        u_k = {"forward_euler": u(t0), "backward_euler": u(t1),
               "bilinear": (u(t0) + u(t1)) / 2, "zoh": u((t0 + t1) / 2)}[method]
        x = A_bar @ x + B_bar * u_k
    return np.max(np.abs(x - exact_solution(T)))


@pytest.mark.parametrize("method, order", [("forward_euler", 1), ("backward_euler", 1),
                                           ("bilinear", 2), ("zoh", 2)])
def test_convergence_order_against_the_analytic_solution(method, order):
    errors = [run(method, dt) for dt in (0.02, 0.01, 0.005)]
    observed = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    # Halving dt divides the error by 2^order; 0.15 absorbs the pre-asymptotic terms.
    assert np.all(np.abs(observed - order) < 0.15), (method, errors, observed)
    assert errors[-1] < (0.1 if order == 1 else 1e-3)


def test_zoh_is_exact_for_piecewise_constant_input():
    rng = np.random.default_rng(0)
    dt, u = 0.3, rng.standard_normal(20)
    A_bar, B_bar = dz.zoh(A, B, dt)
    # Exact one-step map from the eigendecomposition: exp(dt A) and A^{-1}(exp(dt A) - I) B.
    E = expm_analytic(dt)
    G = ((V * ((np.exp(LAM * dt) - 1) / LAM)) @ V_INV).real @ B
    assert_close("A_bar", E, A_bar, rtol=1e-13)
    assert_close("B_bar", G, B_bar, rtol=1e-13)
    x_num, x_ref = X0.copy(), X0.copy()
    for u_k in u:
        x_num = A_bar @ x_num + B_bar * u_k
        x_ref = E @ x_ref + G * u_k
    assert_close("x_L", x_ref, x_num, rtol=1e-12)


def test_expm_known_cases():
    theta = 0.9
    rot = dz.expm(np.array([[0.0, -theta], [theta, 0.0]]))
    assert_close("rotation", np.array([[np.cos(theta), -np.sin(theta)],
                                       [np.sin(theta), np.cos(theta)]]), rot, rtol=1e-15)
    assert_close("zero", np.eye(4), dz.expm(np.zeros((4, 4))), rtol=0)
    d = np.array([-30.0, -1.0, 0.5, 3.0])                 # large norm: many squarings
    assert_close("diagonal", np.diag(np.exp(d)), dz.expm(np.diag(d)), rtol=1e-13)
    assert_close("nilpotent", np.array([[1.0, 2.0], [0.0, 1.0]]),
                 dz.expm(np.array([[0.0, 2.0], [0.0, 0.0]])), rtol=1e-15)


def test_expm_matches_eigendecomposition_complex_and_batched():
    rng = np.random.default_rng(1)
    M = rng.standard_normal((3, 5, 5)) * 2 + 1j * rng.standard_normal((3, 5, 5))
    w, U = np.linalg.eig(M)
    ref = (U * np.exp(w)[:, None, :]) @ np.linalg.inv(U)
    assert_close("expm", ref, dz.expm(M), rtol=1e-12)


@pytest.mark.parametrize("method", dz.METHODS)
def test_eigenvalue_map_gives_the_eigenvalues_of_A_bar(method):
    dt = 0.37
    A_bar, _ = dz.discretize(A, B, dt, method)
    z = np.sort_complex(np.linalg.eigvals(A_bar))
    assert_close("eig(A_bar)", np.sort_complex(dz.eigenvalue_map(LAM, dt, method)), z, rtol=1e-12)


def test_stability_bilinear_zoh_backward_keep_the_left_half_plane_forward_euler_does_not():
    re = -np.logspace(-3, 3, 40)
    im = np.concatenate([[0.0], np.logspace(-2, 3, 40)])
    lam = (re[:, None] + 1j * im[None, :]).ravel()     # stable continuous eigenvalues
    for dt in (1e-3, 0.1, 1.0, 10.0):
        for method in ("backward_euler", "bilinear", "zoh"):
            assert np.all(np.abs(dz.eigenvalue_map(lam, dt, method)) < 1), (method, dt)
        assert np.any(np.abs(dz.eigenvalue_map(lam, dt, "forward_euler")) > 1), dt
    # A concrete instance: lambda = -3, dt = 1 -> z = -2 (unstable), and a slow oscillation
    # lambda = -0.01 + 10i with dt = 0.1: |1 + dt lambda| = |0.999 + i| > 1.
    assert abs(dz.eigenvalue_map(-3.0, 1.0, "forward_euler")) == 2.0
    assert abs(dz.eigenvalue_map(-0.01 + 10j, 0.1, "forward_euler")) > 1.4
    # Bilinear maps the imaginary axis onto the unit circle and the right half-plane outside.
    assert_close("|z| on the axis", np.ones(5), np.abs(dz.eigenvalue_map(1j * np.arange(5.0), 0.3)),
                 rtol=1e-15)
    assert np.all(np.abs(dz.eigenvalue_map(0.5 + 1j * np.arange(5.0), 0.3)) > 1)


def test_gbt_endpoints_and_batched_dt():
    rng = np.random.default_rng(2)
    A_h = rng.standard_normal((4, 3, 3))
    B_h = rng.standard_normal((4, 3))
    dt = np.array([0.01, 0.1, 0.5, 1.0])
    for alpha, method in ((0.0, "forward_euler"), (1.0, "backward_euler"), (0.5, "bilinear")):
        ref = dz.discretize(A_h, B_h, dt, method)
        got = dz.gbt(A_h, B_h, dt, alpha)
        assert_close(f"{method} A_bar", ref[0], got[0], rtol=0)
        assert_close(f"{method} B_bar", ref[1], got[1], rtol=0)
    for method in dz.METHODS:
        A_bar, B_bar = dz.discretize(A_h, B_h, dt, method)
        for h in range(4):
            a, b = dz.discretize(A_h[h], B_h[h], float(dt[h]), method)
            assert_close(f"{method} channel {h}", a, A_bar[h], rtol=1e-14)
            assert_close(f"{method} channel {h}", b, B_bar[h], rtol=1e-14)
    # One shared (A, B) with H steps broadcasts to H systems.
    A_bar, B_bar = dz.zoh(A, B, dt)
    assert A_bar.shape == (4, 3, 3) and B_bar.shape == (4, 3)
    assert_close("shared A", dz.zoh(A, B, 0.5)[0], A_bar[2], rtol=1e-14)


def test_bilinear_on_torch_matches_numpy():
    ref = dz.bilinear(A, B, 0.2)
    got = dz.bilinear(torch.tensor(A), torch.tensor(B), 0.2)
    assert isinstance(got[0], torch.Tensor)
    assert_close("A_bar", ref[0], got[0], rtol=1e-14)
    assert_close("B_bar", ref[1], got[1], rtol=1e-14)
    assert_close("zoh", dz.zoh(A, B, 0.2)[0], dz.zoh(torch.tensor(A), torch.tensor(B), 0.2)[0],
                 rtol=1e-14)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=r"A: expected shape \(N, N\) or \(H, N, N\), got \(3,\)"):
        dz.bilinear(B, B, 0.1)
    with pytest.raises(ValueError, match=r"A: expected shape \(N=3, N=3\) \(from A\), got \(3, 2\)"):
        dz.zoh(A[:, :2], B, 0.1)
    with pytest.raises(ValueError, match=r"B: expected shape \(N=3\) \(from A\), got \(2,\)"):
        dz.bilinear(A, B[:2], 0.1)
    with pytest.raises(ValueError, match="dt: expected positive step sizes"):
        dz.forward_euler(A, B, 0.0)
    with pytest.raises(ValueError, match=r"dt: expected shape \(H=2\) \(from B\), got \(3,\)"):
        dz.bilinear(A, np.ones((2, 3)), np.ones(3))
    with pytest.raises(ValueError, match=r"dt: expected a number or shape \(H,\)"):
        dz.bilinear(A, B, np.ones((2, 2)))
    with pytest.raises(ValueError, match="method: expected one of"):
        dz.discretize(A, B, 0.1, "rk4")
    with pytest.raises(ValueError, match="method: expected one of"):
        dz.eigenvalue_map(LAM, 0.1, "rk4")
    with pytest.raises(ValueError, match=r"alpha: expected a number in \[0, 1\], got 2"):
        dz.gbt(A, B, 0.1, 2)
    with pytest.raises(ValueError, match=r"M: expected shape \(..., n, n\), got \(2, 3\)"):
        dz.expm(np.ones((2, 3)))
    with pytest.raises(ValueError, match="M: expected finite entries"):
        dz.expm(np.full((2, 2), np.nan))


@given(N=st.integers(1, 5), H=st.integers(1, 3), method=st.sampled_from(dz.METHODS),
       seed=st.integers(0, 2**16))
def test_one_step_property(N, H, method, seed):
    """For any stable diagonal system the discretisation acts mode by mode as (12.15) says."""
    rng = np.random.default_rng(seed)
    lam = -rng.uniform(0.1, 3.0, size=(H, N))
    A_h = np.stack([np.diag(l) for l in lam])
    B_h = rng.standard_normal((H, N))
    dt = rng.uniform(0.01, 1.0, size=H)
    A_bar, B_bar = dz.discretize(A_h, B_h, dt, method)
    assert A_bar.shape == (H, N, N) and B_bar.shape == (H, N)
    z = dz.eigenvalue_map(lam, dt[:, None], method)
    assert_close("diag(A_bar)", z, np.diagonal(A_bar, axis1=-2, axis2=-1), rtol=1e-13)
    assert np.all(np.abs(z) < 1) or method == "forward_euler"
    # Fixed point: a constant input u = 1 gives x = -A^{-1} B for every method (consistency).
    x_inf = np.linalg.solve(np.eye(N) - A_bar, B_bar[..., None])[..., 0]
    assert_close("steady state", -B_h / lam, x_inf, rtol=1e-10)
