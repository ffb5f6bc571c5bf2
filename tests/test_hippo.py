"""Tests for rnnkit.hippo: closed-form (A, B) against the defining projections, online compression."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rnnkit import hippo
from rnnkit.discretize import METHODS
from rnnkit.core.testing import assert_close

THETA = 1.5


def smooth(x):
    return np.sin(3 * x) + 0.5 * x * np.cos(7 * x)


def derivative(F, t, h=1e-3):
    """Five-point central difference: truncation O(h^4) ~ 1e-12, rounding ~ 1e-13 / h."""
    return (-F(t + 2 * h) + 8 * F(t + h) - 8 * F(t - h) + F(t - 2 * h)) / (12 * h)


def rhs(measure, N, t, f):
    A, B = hippo.transition(measure, N, THETA)
    c = hippo.project(f, measure, N, t, THETA)
    out = -A @ c + B * f(np.array([t]))[0]                   # (12.2)
    return out / t if measure == "legs" else out             # (12.3)


@pytest.mark.parametrize("measure", hippo.MEASURES)
@pytest.mark.parametrize("N", [1, 4, 8])
def test_closed_form_matrices_satisfy_the_projection_ode(measure, N):
    """d/dt of the quadrature projection (12.1) equals -A c + B f with the closed-form A, B."""
    # LegT is exact for polynomials of degree < N on the window (its derivation approximates the
    # value leaving the window by the reconstruction), LagT and LegS for every signal.
    f = np.polynomial.Polynomial([0.3, -1.0, 0.5, 0.2, -0.1, 0.05, 0.02, -0.01][:N])
    f = f if measure == "legt" else smooth
    t = 3.0                                                  # > THETA: LegT's window lies in [0, t]
    F = lambda s: hippo.project(f, measure, N, s, THETA)     # noqa: E731
    dc = derivative(F, t)
    assert_close(f"{measure} dc/dt", dc, rhs(measure, N, t, f), rtol=1e-8, atol=1e-10)


def test_legt_is_only_approximate_for_non_polynomials():
    """The LegT residual is not zero for a smooth signal but shrinks quickly with N."""
    t, errs = 3.0, []
    for N in (4, 8, 12):
        F = lambda s, N=N: hippo.project(smooth, "legt", N, s, THETA)  # noqa: E731
        errs.append(np.max(np.abs(derivative(F, t) - rhs("legt", N, t, smooth))))
    assert errs[0] > 1e-3 and errs[0] > errs[1] > errs[2]


def test_matrix_structure():
    A, B = hippo.transition("legs", 6)
    assert_close("LegS eigenvalues are 1..N", np.arange(1.0, 7.0), np.sort(np.linalg.eigvals(A).real),
                 rtol=1e-12)
    assert np.all(np.triu(A, 1) == 0)
    # A constant signal is a fixed point: A e_0 = B, so f = 1 keeps c = e_0 (LegS and LegT alike).
    assert_close("LegS A e0", B, A[:, 0], rtol=0)
    A, B = hippo.transition("legt", 5, theta=2.0)
    assert_close("LegT A e0 (constant)", B, A[:, 0], rtol=0)
    assert_close("LegT N=1", np.array([[0.5]]), hippo.transition("legt", 1, theta=2.0)[0], rtol=0)
    A, B = hippo.transition("lagt", 4)
    assert_close("LagT", np.tril(np.ones((4, 4))), A, rtol=0)
    assert_close("LagT B", np.ones(4), B, rtol=0)


@pytest.mark.parametrize("measure", hippo.MEASURES)
def test_project_inverts_reconstruct(measure):
    """The basis is orthogonal for the measure: projecting sum_n c_n p_n gives back c."""
    rng = np.random.default_rng(0)
    N, t = 6, 2.5
    c = rng.standard_normal(N)
    if measure == "lagt":  # the Laguerre measure reaches to -inf: check orthonormality directly
        x, w = np.polynomial.laguerre.laggauss(40)
        G = hippo.basis("lagt", N, 0.0, -x)
        assert_close("Laguerre Gram", np.eye(N), (G * w[:, None]).T @ G, rtol=1e-12, atol=1e-12)
        return
    f = lambda x: hippo.reconstruct(c, measure, t, x, THETA)  # noqa: E731
    assert_close(f"{measure} projection", c, hippo.project(f, measure, N, t, THETA), rtol=1e-12)


def test_legs_timescale_invariance():
    N, dt, L = 12, 1e-3, 2000
    g = lambda x: smooth(2 * x)  # noqa: E731
    for t in (0.3, 1.0, 2.0):    # exact projections: c^g(t) = c^f(2t)
        assert_close(f"c at {t}", hippo.project(smooth, "legs", N, 2 * t),
                     hippo.project(g, "legs", N, t), rtol=1e-12)
    # Online, from samples at the step midpoints: g's coefficient after step k (time (k+1) dt)
    # against f's after step 2k+1 (time 2 (k+1) dt); the two runs see different samples.
    tk = dt * np.arange(1, 2 * L + 1) - dt / 2
    c_f = hippo.compress(smooth(tk), "legs", N, dt)
    c_g = hippo.compress(g(tk[:L]), "legs", N, dt)
    assert_close("online LegS", c_f[1::2][L // 10:], c_g[L // 10:], rtol=1e-4)


def midpoint_samples(L, T=3.0):
    dt = T / L
    return smooth(dt * np.arange(1, L + 1) - dt / 2), dt


@pytest.mark.parametrize("measure", hippo.MEASURES)
@pytest.mark.parametrize("method", ["bilinear", "zoh"])
def test_compress_converges_second_order(measure, method):
    """Samples at the step midpoints: halving dt quarters the error (bilinear and ZOH).

    The limit is the projection for LegS and LagT; for LegT (not exact for this signal) it is the
    solution of the ODE (12.2), taken from a run with a 32 times smaller step.
    """
    N, T = 10, 3.0
    def last(L):
        samples, dt = midpoint_samples(L, T)
        return hippo.compress(samples, measure, N, dt, THETA, method)[-1]

    ref = last(9600) if measure == "legt" else hippo.project(smooth, measure, N, T, THETA)
    errs = [np.max(np.abs(last(L) - ref)) for L in (300, 600)]
    assert 3.5 < errs[0] / errs[1] < 4.5, errs
    assert errs[1] < 1e-3


def test_compress_is_first_order_with_end_of_step_samples():
    N, T, errs = 10, 3.0, []
    ref = hippo.project(smooth, "lagt", N, T)
    for L in (300, 600):
        dt = T / L
        c = hippo.compress(smooth(dt * np.arange(1, L + 1)), "lagt", N, dt)
        errs.append(np.max(np.abs(c[-1] - ref)))
    assert 1.8 < errs[0] / errs[1] < 2.2, errs


@pytest.mark.parametrize("method", METHODS)
def test_legs_represents_a_constant_exactly(method):
    c = hippo.compress(np.full(50, 2.5), "legs", 8, 0.1, method=method)
    ref = np.zeros((50, 8))
    ref[:, 0] = 2.5
    assert_close("c", ref, c, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("measure", ["legs", "legt"])
def test_reconstruction_error_decreases_with_N(measure):
    T, L = 3.0, 3000
    dt = T / L
    samples = smooth(dt * np.arange(1, L + 1) - dt / 2)
    lo = T - THETA if measure == "legt" else 0.0
    x = np.linspace(lo, T, 400)
    online, ideal = [], []
    for N in (4, 8, 16, 32):
        c = hippo.compress(samples, measure, N, dt, THETA)[-1]
        online.append(np.max(np.abs(hippo.reconstruct(c, measure, T, x, THETA) - smooth(x))))
        c = hippo.project(smooth, measure, N, T, THETA)
        ideal.append(np.max(np.abs(hippo.reconstruct(c, measure, T, x, THETA) - smooth(x))))
    assert all(a > b for a, b in zip(ideal, ideal[1:])), ideal
    assert ideal[-1] < 1e-8
    assert all(a > b for a, b in zip(online[:3], online[1:3])), online   # until dt limits it
    assert online[-1] < 1e-3


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="measure: expected one of .*, got 'fourier'"):
        hippo.transition("fourier", 4)
    with pytest.raises(ValueError, match="N: expected a positive integer, got 0"):
        hippo.transition("legs", 0)
    with pytest.raises(ValueError, match="theta: expected a positive window length, got -1"):
        hippo.transition("legt", 4, theta=-1)
    with pytest.raises(ValueError, match=r"f_samples: expected 1 dimensions \(L\), got shape \(2, 3\)"):
        hippo.compress(np.zeros((2, 3)), "legs", 4, 0.1)
    with pytest.raises(ValueError, match="f_samples: expected a floating-point array, got dtype int64"):
        hippo.compress(np.zeros(3, dtype=np.int64), "legs", 4, 0.1)
    with pytest.raises(ValueError, match="method: expected one of"):
        hippo.compress(np.zeros(3), "legs", 4, 0.1, method="rk4")
    with pytest.raises(ValueError, match=r"c: expected 1 dimensions \(N\), got shape \(2, 4\)"):
        hippo.reconstruct(np.zeros((2, 4)), "legs", 1.0, np.zeros(3))
    with pytest.raises(ValueError, match="t: expected t > 0"):
        hippo.project(np.sin, "legs", 4, 0.0)
    with pytest.raises(ValueError, match=r"f\(x\): expected shape \(Q=200\), got \(1,\)"):
        hippo.project(lambda x: np.ones(1), "legs", 4, 1.0)


@given(measure=st.sampled_from(hippo.MEASURES), N=st.integers(1, 6), L=st.integers(1, 8),
       method=st.sampled_from(METHODS), seed=st.integers(0, 2**16))
def test_compress_shapes_and_linearity_property(measure, N, L, method, seed):
    rng = np.random.default_rng(seed)
    f, g = rng.standard_normal(L), rng.standard_normal(L)
    c_f = hippo.compress(f, measure, N, 0.1, method=method)
    c_g = hippo.compress(g, measure, N, 0.1, method=method)
    assert c_f.shape == (L, N)
    assert_close("linear in f", 2 * c_f - 3 * c_g,
                 hippo.compress(2 * f - 3 * g, measure, N, 0.1, method=method), rtol=1e-12)
