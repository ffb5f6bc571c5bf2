"""Tests for rnnkit.lmu: the LMU cell and memory, the LSSL's recurrent and convolutional views."""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rnnkit import hippo, lmu
from rnnkit.core.backend import to_backend
from rnnkit.core.testing import assert_close

RTOL = 1e-12  # float64, two orderings of the same arithmetic


def make_lmu(rng, B=3, L=7, D=4, H=5, N=6, theta=8.0):
    params = lmu.init(rng, D, H, N, theta)
    params["e_m"] = 0.3 * rng.standard_normal(N)        # exercise the memory feedback path too
    x = rng.standard_normal((B, L, D))
    state = lmu.LMUState(0.5 * rng.standard_normal((B, H)), rng.standard_normal((B, N)))
    return params, x, state


def test_lmu_step_loop_equals_forward():
    rng = np.random.default_rng(0)
    params, x, state0 = make_lmu(rng)
    h_all, last = lmu.forward(params, x, state0)
    state = state0
    for t in range(x.shape[1]):
        h, state = lmu.step(params, x[:, t], state)
        assert_close(f"h_{t + 1}", h_all[:, t], h, rtol=RTOL)
    assert_close("h_L", last.h, state.h, rtol=RTOL)
    assert_close("m_L", last.m, state.m, rtol=RTOL)
    zeros = lmu.LMUState(np.zeros((3, 5)), np.zeros((3, 6)))
    assert_close("zero state default", lmu.forward(params, x, zeros)[0], lmu.forward(params, x)[0],
                 rtol=0)


def test_lmu_equations_by_hand():
    """One step written out from (12.16)-(12.18), independent of the module's helper."""
    rng = np.random.default_rng(1)
    p, x, (h, m) = make_lmu(rng)
    u = x[:, 0] @ p["e_x"] + h @ p["e_h"] + m @ p["e_m"]
    m_new = np.einsum("ij,bj->bi", p["A_bar"], m) + np.outer(u, p["B_bar"])
    h_new = np.tanh(x[:, 0] @ p["W_x"] + h @ p["W_h"] + m_new @ p["W_m"])
    got_h, got = lmu.step(p, x[:, 0], lmu.LMUState(h, m))
    assert_close("m_1", m_new, got.m, rtol=RTOL)
    assert_close("h_1", h_new, got_h, rtol=RTOL)


@pytest.mark.parametrize("N", [1, 2, 5, 12])
def test_lmu_matrices_are_hippo_legt_up_to_sign_and_theta(N):
    """(12.19) in the LMU paper's form against (12.4) in HiPPO's: A / theta = -A_LegT, B / theta = B_LegT."""
    theta = 7.5
    A, B = lmu.memory_matrices(N)
    A_h, B_h = hippo.transition("legt", N, theta)
    assert_close("A / theta", -A_h, A / theta, rtol=1e-15)
    assert_close("B / theta", B_h, B / theta, rtol=1e-15)
    # The top-left 3x3 block written out from the LMU paper's equation (2), as a fixed anchor.
    if N == 5:
        assert_close("A[:3, :3]", np.array([[-1.0, -1, -1], [3, -3, -3], [-5, 5, -5]]), A[:3, :3], rtol=0)
        assert_close("B[:3]", np.array([1.0, -3, 5]), B[:3], rtol=0)


def test_lmu_memory_is_the_zoh_of_legt():
    """A_bar = exp(-A_LegT), B_bar = A^{-1}(I - exp(-A)) B, from the eigendecomposition of A."""
    N, theta = 6, 12.0
    params = lmu.init(np.random.default_rng(2), 1, 2, N, theta)
    A, B = hippo.transition("legt", N, theta)
    w, V = np.linalg.eig(-A)                                # distinct eigenvalues for N = 6
    V_inv = np.linalg.inv(V)
    assert_close("A_bar", ((V * np.exp(w)) @ V_inv).real, params["A_bar"], rtol=1e-11)
    B_bar = ((V * ((np.exp(w) - 1) / w)) @ V_inv).real @ B
    assert_close("B_bar", B_bar, params["B_bar"], rtol=1e-11)


def test_lmu_memory_remembers_the_window():
    """With u_t = x_t, the memory holds the last theta steps: u(t - r) ~ sum_i m_i P_i(2r/theta - 1)."""
    theta, L, errs = 40.0, 300, []
    t = np.arange(L)
    signal = np.sin(2 * np.pi * t / 60) + 0.5 * np.cos(2 * np.pi * t / 23)
    r = np.linspace(0.0, theta - 1, 40)
    # ZOH holds sample k over (k-1, k]: relative to the samples the memory is half a step late.
    exact = np.interp(L - 1.0 - r + 0.5, t, signal)
    for N in (4, 8, 16):
        params = lmu.init(np.random.default_rng(3), 1, 2, N, theta)
        params["e_x"][:] = 1.0
        params["e_h"][:] = 0.0
        _, state = lmu.forward(params, signal[None, :, None])
        recalled = hippo.reconstruct(state.m[0], "legt", L - 1.0, L - 1.0 - r, theta)
        errs.append(np.max(np.abs(recalled - exact)))
    # measured: 0.57, 0.065, 0.0084 (LegT is exact only for polynomials; the signal is not one)
    assert errs[0] > errs[1] > errs[2] and errs[2] < 0.015, errs


def test_lmu_runs_on_torch_and_matches_numpy():
    rng = np.random.default_rng(4)
    params, x, state = make_lmu(rng)
    ref, _ = lmu.forward(params, x, state)
    tparams = to_backend(params, "torch")
    got, _ = lmu.forward(tparams, torch.tensor(x), lmu.LMUState(*to_backend(list(state), "torch")))
    assert isinstance(got, torch.Tensor)
    assert_close("h_all", ref, got, rtol=RTOL)


# ---- LSSL ----

def make_lssl(rng, B=2, L=40, H=3, N=8, measure="legs"):
    params = lmu.lssl_init(rng, H, N, measure=measure, dt_min=0.01, dt_max=0.5)
    return params, rng.standard_normal((B, L, H))


@pytest.mark.parametrize("measure", ["legs", "legt"])
def test_lssl_recurrent_equals_convolutional(measure):
    rng = np.random.default_rng(5)
    params, u = make_lssl(rng, measure=measure)
    y_rec, _ = lmu.lssl_forward(params, u)
    assert_close("y", y_rec, lmu.lssl_forward_conv(params, u), rtol=1e-12)


def test_ssm_step_loop_equals_scan_with_initial_state():
    rng = np.random.default_rng(6)
    params, u = make_lssl(rng, L=9)
    ssm = lmu.lssl_discretize(params)
    x0 = rng.standard_normal((2, 3, 8))
    y, x_L = lmu.ssm_scan(ssm, u, x0)
    x = x0
    for k in range(9):
        y_k, x = lmu.ssm_step(ssm, u[:, k], x)
        assert_close(f"y_{k}", y[:, k], y_k, rtol=RTOL)
    assert_close("x_L", x_L, x, rtol=RTOL)
    y1, x1 = lmu.lssl_step(params, u[:, 0], x0)
    assert_close("lssl_step", y[:, 0], y1, rtol=RTOL)


def test_ssm_kernel_is_c_a_power_b():
    rng = np.random.default_rng(7)
    params, _ = make_lssl(rng)
    ssm = lmu.lssl_discretize(params)
    K = lmu.ssm_kernel(ssm, 12)
    for h in range(3):
        for ell in (0, 1, 5, 11):
            ref = ssm["C"][h] @ np.linalg.matrix_power(ssm["A_bar"][h], ell) @ ssm["B_bar"][h]
            assert_close(f"K[{h}, {ell}]", ref, K[h, ell], rtol=1e-13)


@pytest.mark.parametrize("L", [1, 2, 7, 64])
def test_fft_conv_equals_direct_convolution(L):
    rng = np.random.default_rng(8)
    K, u = rng.standard_normal((3, L)), rng.standard_normal((2, L, 3))
    ref = np.stack([[np.convolve(K[h], u[b, :, h])[:L] for h in range(3)] for b in range(2)])
    assert_close("K * u", ref.transpose(0, 2, 1), lmu.fft_conv(K, u), rtol=1e-13)


def test_lssl_init():
    params = lmu.lssl_init(np.random.default_rng(9), 64, 4, dt_min=1e-3, dt_max=1e-1)
    A, B = hippo.transition("legs", 4)
    assert_close("A", -A, params["A"], rtol=0)
    assert_close("B", B, params["B"], rtol=0)
    dt = np.exp(params["log_dt"])
    assert np.all((dt >= 1e-3) & (dt <= 1e-1))


def test_bad_inputs_raise_clear_errors():
    rng = np.random.default_rng(10)
    params, x, state = make_lmu(rng, B=3, L=7, D=4, H=5, N=6)
    with pytest.raises(ValueError, match=r"x: expected 3 dimensions \(B, L, D=4\), got shape \(7, 4\)"):
        lmu.forward(params, x[0])
    with pytest.raises(ValueError, match=r"state.m: expected shape \(B=3, N=6\)"):
        lmu.forward(params, x, lmu.LMUState(state.h, np.zeros((3, 5))))
    with pytest.raises(ValueError,
                       match=r"x_t: expected shape \(B=3, D=4\) \(from params\['e_x'\]\), got \(3, 2\)"):
        lmu.step(params, x[:, 0, :2], state)
    with pytest.raises(ValueError, match="params: expected keys .* missing 'A_bar'"):
        lmu.forward({k: v for k, v in params.items() if k != "A_bar"}, x)
    with pytest.raises(ValueError, match="x: expected a floating-point array, got dtype int64"):
        lmu.forward(params, np.ones((3, 7, 4), dtype=np.int64))
    with pytest.raises(ValueError, match="N: expected a positive integer, got 0"):
        lmu.init(rng, 4, 5, 0, 10.0)
    with pytest.raises(ValueError, match="theta: expected a positive window length, got 0"):
        lmu.init(rng, 4, 5, 3, 0.0)
    lp, u = make_lssl(rng, B=2, L=5, H=3, N=8)
    with pytest.raises(ValueError, match=r"u: expected shape \(B=2, L=5, H=3\).*got \(2, 5, 2\)"):
        lmu.lssl_forward_conv(lp, u[..., :2])
    with pytest.raises(ValueError, match=r"u: expected shape \(B=2, L=5, H=3\).*got \(2, 5, 2\)"):
        lmu.lssl_forward(lp, u[..., :2])
    with pytest.raises(ValueError, match=r"x0: expected shape \(B=2, H=3, N=8\)"):
        lmu.lssl_forward(lp, u, np.zeros((2, 3, 7)))
    with pytest.raises(ValueError, match=r"K: expected 2 dimensions \(H, L\)"):
        lmu.fft_conv(np.zeros(5), u)
    with pytest.raises(ValueError, match="L: expected a positive integer, got 0"):
        lmu.ssm_kernel(lmu.lssl_discretize(lp), 0)
    with pytest.raises(ValueError, match="dt_min, dt_max: expected 0 < dt_min <= dt_max"):
        lmu.lssl_init(rng, 3, 4, dt_min=0.1, dt_max=0.01)


@given(B=st.integers(1, 3), L=st.integers(1, 6), D=st.integers(1, 4), H=st.integers(1, 4),
       N=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_lmu_shapes_and_torch_autograd_property(B, L, D, H, N, seed):
    rng = np.random.default_rng(seed)
    params, x, state = make_lmu(rng, B, L, D, H, N, theta=4.0)
    h_all, last = lmu.forward(params, x, state)
    assert h_all.shape == (B, L, H) and last.m.shape == (B, N)
    assert_close("last step", h_all[:, -1], last.h, rtol=0)
    tparams = to_backend(params, "torch")
    tparams["W_m"].requires_grad_(True)
    th, _ = lmu.forward(tparams, torch.tensor(x), lmu.LMUState(*to_backend(list(state), "torch")))
    th.sum().backward()
    assert tparams["W_m"].grad.shape == (N, H) and torch.isfinite(tparams["W_m"].grad).all()


@given(B=st.integers(1, 3), L=st.integers(1, 12), H=st.integers(1, 3), N=st.integers(1, 6),
       seed=st.integers(0, 2**16))
def test_lssl_views_agree_property(B, L, H, N, seed):
    rng = np.random.default_rng(seed)
    params, u = make_lssl(rng, B, L, H, N)
    y_rec, x_L = lmu.lssl_forward(params, u)
    assert y_rec.shape == (B, L, H) and x_L.shape == (B, H, N)
    assert_close("conv == recurrent", y_rec, lmu.lssl_forward_conv(params, u), rtol=1e-11)


def test_benchmark_quick_mode_records_every_form():
    """rnnkit/bench/hippo.py at L=3: it checks agreement with NumPy, then times each form."""
    from rnnkit.bench import hippo as hippo_bench

    records = hippo_bench.run(quick=True, lengths=(3,), backends={"numpy": True, "torch-cpu": True})
    forms = {(r["impl"], r["form"]) for r in records}
    assert forms == {("numpy", "LMU forward"), ("torch-cpu", "LMU forward"),
                     ("torch-cpu", "LMU forward+backward"), ("torch-cpu", "nn.LSTM forward"),
                     ("torch-cpu", "nn.LSTM forward+backward")}
    assert all(r["median_s"] > 0 and r["params"]["L"] == 3 and r["params"]["N"] == 256 for r in records)
