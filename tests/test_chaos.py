"""Tests for rnnkit.tasks.chaos: Lorenz and Mackey-Glass against scipy's solve_ivp (the delay
equation by the method of steps), fourth-order convergence, sampling, bad input, valid time."""
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from rnnkit.tasks.chaos import LORENZ_LYAPUNOV, lorenz, mackey_glass, valid_time
from rnnkit.core.testing import assert_close


def lorenz_rhs(t, s, sigma=10.0, rho=28.0, b=8.0 / 3.0):
    x, y, z = s
    return [sigma * (y - x), x * (rho - z) - y, x * y - b * z]


def test_lorenz_matches_solve_ivp():
    """Two time units (under two Lyapunov times: errors grow by at most e^{0.9 * 2} ~ 6)."""
    dt, n = 0.001, 2001
    ours = lorenz(n, dt=dt, x0=(1.0, 2.0, 3.0))
    t = dt * np.arange(n)
    ref = solve_ivp(lorenz_rhs, (0, t[-1]), [1.0, 2.0, 3.0], t_eval=t, method="DOP853",
                    rtol=1e-13, atol=1e-12).y.T
    assert_close("lorenz vs solve_ivp", ref, ours, rtol=5e-9)   # RK4 at dt=1e-3 gives 1.3e-9


def test_lorenz_is_fourth_order():
    ref = lorenz(2, dt=0.5 / 400, sample_every=400)[1]
    errs = [np.abs(lorenz(2, dt=0.5 / k, sample_every=k)[1] - ref).max() for k in (25, 50)]
    assert 12 < errs[0] / errs[1] < 20                          # 2^4 = 16


def test_lorenz_batch_sampling_and_discard():
    x0 = np.array([[1.0, 1.0, 1.0], [-2.0, 3.0, 20.0]])
    batch = lorenz(30, dt=0.01, sample_every=2, x0=x0, discard=5)
    assert batch.shape == (2, 30, 3)
    for i in range(2):
        single = lorenz(35, dt=0.01, sample_every=2, x0=x0[i])
        assert_close(f"trajectory {i}", single[5:], batch[i], rtol=1e-14)


def mackey_glass_method_of_steps(t_end, tau=17.0, beta=0.2, gamma=0.1, p=10.0, x0=1.2):
    """The delay equation as a sequence of ODEs: on [k tau, (k+1) tau] the delayed value is the
    previous piece's dense output (constant x0 on [-tau, 0])."""
    pieces = [lambda t: np.full_like(np.asarray(t, float), x0)]
    start, x = 0.0, x0
    while start < t_end:
        past = pieces[-1]
        sol = solve_ivp(lambda t, y, past=past, s=start: [beta * past(t - tau) / (1 + past(t - tau) ** p)
                                                          - gamma * y[0]],
                        (start, start + tau), [x], method="DOP853", rtol=1e-12, atol=1e-13,
                        dense_output=True)
        pieces.append(lambda t, sol=sol: sol.sol(t)[0])
        start, x = start + tau, sol.y[0, -1]

    def value(t):
        k = min(int(t // tau), len(pieces) - 2)
        return pieces[k + 1](t)
    return value


def test_mackey_glass_matches_method_of_steps():
    ours = mackey_glass(120, dt=0.1)                            # t = 0, 1, ..., 119 (7 delays)
    ref_fn = mackey_glass_method_of_steps(120.0)
    ref = np.array([float(ref_fn(t)) for t in range(120)])
    assert_close("mackey-glass vs solve_ivp", ref, ours, rtol=1e-8)


def test_mackey_glass_is_fourth_order():
    """Halving h divides the error by 16, across the derivative jumps at t = 0, tau, 2 tau."""
    a, b, c = (mackey_glass(100, dt=dt) for dt in (0.1, 0.05, 0.025))
    ratio = np.abs(a - c).max() / np.abs(b - c).max()
    assert 14 < ratio < 20                                        # (1 - 4^-4) / (2^-4 - 4^-4) = 17


def test_mackey_glass_sampling_and_discard():
    fine = mackey_glass(400, dt=0.1, sample_every=0.5)
    assert_close("sample_every", fine[::2], mackey_glass(200, dt=0.1), rtol=0.0)
    assert_close("discard", mackey_glass(150, dt=0.1)[50:], mackey_glass(100, discard=50.0),
                 rtol=0.0)
    s = mackey_glass(3000, discard=500)
    assert 0.2 < s.min() and s.max() < 1.5 and s.std() > 0.15   # the tau=17 chaotic attractor


def test_bad_input_raises():
    with pytest.raises(ValueError, match="dt"):
        mackey_glass(10, dt=0.3)
    with pytest.raises(ValueError, match="tau"):
        mackey_glass(10, tau=-1.0)
    with pytest.raises(ValueError, match="n"):
        mackey_glass(0)
    with pytest.raises(ValueError, match="x0"):
        lorenz(5, x0=(1.0, 2.0))
    with pytest.raises(ValueError, match="dt"):
        lorenz(5, dt=0.0)
    with pytest.raises(ValueError, match="y_pred"):
        valid_time(np.zeros((5, 3)), np.zeros((4, 3)))


def test_valid_time():
    y = np.ones((10, 2))
    pred = y.copy()
    pred[6:] += 1.0                                               # error norm sqrt(2)/sqrt(2) = 1
    assert valid_time(y, pred) == 6
    assert valid_time(y, y) == 10
    assert 0.9 < LORENZ_LYAPUNOV < 0.91
