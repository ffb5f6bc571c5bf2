"""Tests for rnnkit.s4: DPLR form of HiPPO-LegS, fast kernel vs naive, the three views."""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rnnkit import discretize as dz
from rnnkit import hippo, lmu, s4, s4d
from rnnkit.core.backend import to_backend
from rnnkit.core.testing import assert_close

KERNEL_RTOL = 1e-10  # float64: Cauchy + Woodbury + FFT against L products by A_bar (measured ~1e-15)


def random_params(rng, H=3, N=8):
    """S4 parameters away from the HiPPO initialisation (as after training): nothing special."""
    N2 = N // 2
    cplx = lambda: rng.standard_normal((H, N2)) + 1j * rng.standard_normal((H, N2))  # noqa: E731
    return {"log_dt": rng.uniform(np.log(1e-3), np.log(0.5), size=H),
            "log_A_real": rng.normal(-0.5, 1.0, size=(H, N2)),
            "A_imag": rng.normal(0.0, 5.0, size=(H, N2)),
            "P": 0.5 * cplx(), "B": cplx(), "C": cplx(), "D": rng.standard_normal(H)}


@pytest.mark.parametrize("N", [2, 8, 32])
def test_nplr_reconstructs_hippo_legs(N):
    Lam, P, B, V = s4.nplr_legs(N)
    full = lambda v: np.concatenate([v, v.conj()], axis=-1)  # noqa: E731
    V_full = full(V)
    assert_close("V unitary", np.eye(N), V_full.conj().T @ V_full, rtol=1e-13, atol=1e-13)
    A_dplr = np.diag(full(Lam)) - np.outer(full(P), full(P).conj())
    A, B_hippo = hippo.transition("legs", N)
    assert_close("A = V (Lambda - P P^*) V^*", -A, V_full @ A_dplr @ V_full.conj().T, rtol=1e-13)
    assert_close("B = V B~", B_hippo, V_full @ full(B), rtol=1e-13)
    assert_close("Re Lambda = -1/2", np.full(N // 2, -0.5), Lam.real, rtol=1e-14)
    assert np.all(Lam.imag > 0)


@pytest.mark.parametrize("L", [1, 2, 3, 16, 17, 64, 255, 1024])
def test_fast_kernel_equals_naive_at_init(L):
    params = s4.init(np.random.default_rng(L), 3, 16)
    assert_close(f"K (L={L})", s4.kernel_naive(params, L), s4.kernel_cform(params, L), rtol=KERNEL_RTOL)


@pytest.mark.parametrize("L", [1, 5, 100, 256])
def test_fast_kernel_equals_naive_for_random_parameters(L):
    params = random_params(np.random.default_rng(100 + L))
    assert_close(f"K (L={L})", s4.kernel_naive(params, L), s4.kernel_cform(params, L), rtol=KERNEL_RTOL)


def test_fast_kernel_at_large_state_where_diagonalising_hippo_fails():
    """S4's reason to exist: the eigenvectors of HiPPO-LegS are exponentially ill-conditioned, so
    the 'diagonal' kernel C V diag(z^l) V^{-1} B_bar is garbage at N = 32, while the DPLR kernel
    (unitary V) still matches the naive one."""
    N, L, dt = 32, 200, 0.05
    A, B = hippo.transition("legs", N)
    A_bar, B_bar = dz.bilinear(-A, B, dt)
    C = np.random.default_rng(0).standard_normal(N)
    K_ref = lmu.ssm_kernel({"A_bar": A_bar[None], "B_bar": B_bar[None], "C": C[None],
                            "D": np.zeros(1)}, L)[0]
    w, V = np.linalg.eig(A_bar)
    assert np.linalg.cond(V) > 1e15
    K_eig = (((C @ V) * w ** np.arange(L)[:, None]) @ np.linalg.solve(V, B_bar)).real
    assert np.max(np.abs(K_eig - K_ref)) > np.max(np.abs(K_ref))   # error larger than the kernel
    params = s4.init(np.random.default_rng(1), 1, N)
    params["log_dt"][:] = np.log(dt)
    assert_close("S4 kernel at N=32", s4.kernel_naive(params, L), s4.kernel_cform(params, L),
                 rtol=KERNEL_RTOL)


@pytest.mark.parametrize("make", [lambda rng: s4.init(rng, 3, 16), random_params])
def test_convolutional_equals_recurrent(make):
    rng = np.random.default_rng(2)
    params = make(rng)
    u = rng.standard_normal((2, 64, 3))
    y_rec, _ = s4.forward(params, u)
    assert_close("conv == recurrent", y_rec, s4.forward_conv(params, u), rtol=1e-10)


def test_step_loop_equals_forward():
    rng = np.random.default_rng(3)
    params = s4.init(rng, 2, 8)
    u = rng.standard_normal((3, 10, 2))
    y, x_L = s4.forward(params, u)
    ssm = s4.discretize(params)
    x = np.zeros((3, 2, 8), dtype=complex)
    for k in range(10):
        y_k, x = s4.step(ssm, u[:, k], x)
        assert_close(f"y_{k}", y[:, k], y_k, rtol=1e-13)
    assert_close("x_L", x_L, x, rtol=1e-13)


def test_recurrent_view_converges_to_the_continuous_solution_second_order():
    """The continuous view: y(t) = Re(C x(t)) for x' = A x + B sin(w t), x(0) = 0, solved exactly
    with the matrix exponential; the bilinear recurrence (trapezoid input) is O(dt^2) off."""
    params = s4.init(np.random.default_rng(4), 2, 8)
    params["D"][:] = 0.0
    sys = s4.dense(params)
    w, T, errs = 3.0, 2.0, []
    for h in range(2):
        A, B, C = sys["A"][h], sys["B"][h], sys["C"][h]
        g_plus = np.linalg.solve(1j * w * np.eye(8) - A, B)
        g_minus = np.linalg.solve(-1j * w * np.eye(8) - A, B)
        x_p = lambda t: (g_plus * np.exp(1j * w * t) - g_minus * np.exp(-1j * w * t)) / 2j  # noqa
        x_T = dz.expm(T * A) @ (-x_p(0.0)) + x_p(T)
        errs_h = []
        for L in (100, 200, 400):
            dt = T / L
            p = {**params, "log_dt": np.full(2, np.log(dt))}
            t = dt * np.arange(L + 1)
            u = (np.sin(w * t[:-1]) + np.sin(w * t[1:])) / 2          # trapezoid input samples
            y, _ = s4.forward(p, np.repeat(u[None, :, None], 2, axis=2))
            errs_h.append(abs(y[0, -1, h] - (C @ x_T).real))
        errs.append(errs_h)
    ratios = np.array(errs)[:, :-1] / np.array(errs)[:, 1:]
    assert np.all((ratios > 3.6) & (ratios < 4.4)), errs


def test_s4_without_low_rank_term_is_s4d_bilinear():
    """Two independent implementations: S4 with P = 0 and S4D with the bilinear transform."""
    rng = np.random.default_rng(5)
    params = random_params(rng)
    params["P"] = np.zeros_like(params["P"])
    diag = {k: params[k] for k in ("log_dt", "log_A_real", "A_imag", "B", "C", "D")}
    assert_close("K", s4d.kernel(diag, 50, "bilinear"), s4.kernel_cform(params, 50), rtol=1e-12)


def test_runs_on_torch_with_autograd():
    rng = np.random.default_rng(6)
    params = s4.init(rng, 2, 8)
    u = rng.standard_normal((2, 16, 2))
    tparams = to_backend(params, "torch")
    tparams["log_dt"].requires_grad_(True)
    y = s4.forward_conv(tparams, torch.tensor(u))
    assert_close("torch == numpy", s4.forward_conv(params, u), y, rtol=1e-12)
    y.sum().backward()
    assert torch.isfinite(tparams["log_dt"].grad).all()


def test_init_statistics():
    params = s4.init(np.random.default_rng(7), 256, 8, dt_min=1e-3, dt_max=1e-1)
    dt = np.exp(params["log_dt"])
    assert np.all((dt >= 1e-3) & (dt <= 1e-1))
    assert params["C"].dtype == np.complex128 and params["C"].shape == (256, 4)
    assert abs(np.mean(np.abs(params["C"]) ** 2) - 1.0) < 0.1
    assert params["P"].dtype == np.complex128 and params["log_dt"].dtype == np.float64
    p32 = s4.init(np.random.default_rng(7), 2, 8, dtype=np.float32)
    assert p32["C"].dtype == np.complex64 and p32["log_dt"].dtype == np.float32


def test_bad_inputs_raise_clear_errors():
    rng = np.random.default_rng(8)
    params = s4.init(rng, 3, 8)
    u = rng.standard_normal((2, 10, 3))
    with pytest.raises(ValueError, match="N: expected an even state size"):
        s4.init(rng, 3, 7)
    with pytest.raises(ValueError, match="params: expected keys .* missing 'P'"):
        s4.kernel_cform({k: v for k, v in params.items() if k != "P"}, 10)
    with pytest.raises(ValueError, match=r"params\['B'\]: expected shape \(H=3, N2=4\)"):
        s4.forward_conv({**params, "B": params["B"][:, :3]}, u)
    with pytest.raises(ValueError, match=r"u: expected shape \(B=2, L=10, H=3\).*got \(2, 10, 2\)"):
        s4.forward_conv(params, u[..., :2])
    with pytest.raises(ValueError, match=r"u: expected 3 dimensions"):
        s4.forward(params, u[0])
    with pytest.raises(ValueError, match="u: expected a floating-point array"):
        s4.forward_conv(params, np.ones((2, 10, 3), dtype=np.int32))
    with pytest.raises(ValueError, match="L: expected a positive integer, got 0"):
        s4.kernel_cform(params, 0)
    with pytest.raises(ValueError, match=r"x_prev: expected shape \(B=2, H=3, N=8\)"):
        s4.step(s4.discretize(params), u[:, 0], np.zeros((2, 3, 4), dtype=complex))


@given(B=st.integers(1, 3), L=st.integers(1, 40), H=st.integers(1, 3),
       N=st.sampled_from([2, 4, 6, 8]), seed=st.integers(0, 2**16))
def test_views_agree_property(B, L, H, N, seed):
    rng = np.random.default_rng(seed)
    params = random_params(rng, H, N)
    u = rng.standard_normal((B, L, H))
    y_rec, x_L = s4.forward(params, u)
    assert y_rec.shape == (B, L, H) and x_L.shape == (B, H, N)
    assert_close("conv == recurrent", y_rec, s4.forward_conv(params, u), rtol=1e-9)
    assert_close("fast == naive", s4.kernel_naive(params, L), s4.kernel_cform(params, L), rtol=1e-9)


def test_benchmark_quick_mode_records_every_form_and_checks_agreement(monkeypatch):
    from rnnkit.bench import s4 as s4_bench
    records = s4_bench.run(quick=True, backends={"numpy": True}, lengths=(8,))
    assert sorted(r["form"] for r in records) == sorted(s4_bench.FORMS)
    assert all(r["impl"] == "numpy" and r["params"]["L"] == 8 and r["median_s"] > 0 for r in records)
    # a convolution that is not the recurrence's must be caught before anything is timed
    monkeypatch.setattr(s4d, "forward_conv", lambda p, u: 1.01 * s4d.forward(p, u)[0])
    with pytest.raises(AssertionError, match="S4D conv and S4D recurrent differ"):
        s4_bench.run(quick=True, backends={"numpy": True}, lengths=(8,))


# --------------------------------------------------------------------------- the C~ form
def dense_from_equations(params):
    """A = Lambda - P P^* (13.3) with the conjugate half (13.4), bilinear (12.12), per channel,
    written straight from the equations (independent of rnnkit.s4)."""
    out = []
    for h in range(params["log_dt"].shape[0]):
        lam = -np.exp(params["log_A_real"][h]) + 1j * params["A_imag"][h]
        full = lambda v: np.concatenate([v, np.conj(v)])  # noqa: E731
        Lf, Pf, Bf = full(lam), full(params["P"][h]), full(params["B"][h])
        A = np.diag(Lf) - np.outer(Pf, Pf.conj())
        dt, eye = np.exp(params["log_dt"][h]), np.eye(len(Lf))
        inv = np.linalg.inv(eye - dt / 2 * A)
        out.append((inv @ (eye + dt / 2 * A), inv @ (dt * Bf)))
    return out


def ctilde_from_equations(params, L):
    """C~ = C (I - A_bar^L) (13.5) with numpy's matrix_power, per channel."""
    Ct = []
    for h, (A_bar, _) in enumerate(dense_from_equations(params)):
        C = np.concatenate([params["C"][h], np.conj(params["C"][h])])
        Ct.append((C @ (np.eye(len(C)) - np.linalg.matrix_power(A_bar, L)))[: len(C) // 2])
    return {k: v for k, v in params.items() if k != "C"} | {"Ct": np.array(Ct)}


def kernel_from_equations(params, L):
    """K_l = Re(C A_bar^l B_bar) (13.1), l = 0..L-1, by a loop."""
    K = np.zeros((params["log_dt"].shape[0], L))
    for h, (A_bar, B_bar) in enumerate(dense_from_equations(params)):
        C = np.concatenate([params["C"][h], np.conj(params["C"][h])])
        v = B_bar
        for ell in range(L):
            K[h, ell] = (C @ v).real
            v = A_bar @ v
    return K


@pytest.mark.parametrize("L", [1, 2, 7, 64, 255, 512])
@pytest.mark.parametrize("make", [lambda rng: s4.init(rng, 3, 16), random_params])
def test_ctilde_kernel_equals_cform_kernel_and_loop(L, make):
    """kernel(C~) == the C-form kernel with C~ = C (I - A_bar^L) == K_l = C A_bar^l B_bar."""
    params = make(np.random.default_rng(200 + L))
    p_ct = ctilde_from_equations(params, L)
    K = s4.kernel(p_ct, L)
    assert_close("kernel(C~) == loop", kernel_from_equations(params, L), K, rtol=KERNEL_RTOL)
    assert_close("kernel(C~) == C-form kernel", s4.kernel_cform(params, L), K, rtol=KERNEL_RTOL)
    assert_close("to_ctilde", p_ct["Ct"], s4.to_ctilde(params, L)["Ct"], rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("L", [3, 64, 300])
def test_recovered_c_gives_the_recurrent_view_of_the_ctilde_convolution(L):
    """Train C~, recover C = C~ (I - A_bar^L)^{-1}: the recurrence equals the C~ convolution."""
    rng = np.random.default_rng(300 + L)
    p_ct = s4.init(rng, 3, 16, ctilde=True)
    p_ct["log_dt"] = rng.uniform(np.log(1e-2), np.log(0.2), size=3)   # A_bar^L far from I
    u = rng.standard_normal((2, L, 3))
    p_c = s4.recover_c(p_ct, L)
    assert set(p_c) == set(p_ct) - {"Ct"} | {"C"}
    y_rec, _ = s4.forward(p_c, u)
    assert_close("recurrent(C) == conv(C~)", y_rec, s4.forward_conv(p_ct, u), rtol=1e-9)
    assert_close("to_ctilde(recover_c(C~)) == C~", p_ct["Ct"], s4.to_ctilde(p_c, L)["Ct"],
                 rtol=1e-10, atol=1e-12)
    # recover_c is not the identity: C and C~ differ unless A_bar^L = 0
    assert np.max(np.abs(p_c["C"] - p_ct["Ct"])) > 1e-3


def test_forward_conv_shorter_input_uses_the_first_taps():
    rng = np.random.default_rng(9)
    p_ct = s4.init(rng, 2, 8, ctilde=True)
    u = rng.standard_normal((1, 20, 2))
    y = s4.forward_conv(p_ct, u, L=50)
    K = s4.kernel(p_ct, 50)[:, :20]
    assert_close("truncated kernel", lmu.fft_conv(K, u) + p_ct["D"] * u, y, rtol=1e-13)
    y_rec, _ = s4.forward(s4.recover_c(p_ct, 50), u)
    assert_close("recurrent from C recovered at L=50", y_rec, y, rtol=1e-9)
    with pytest.raises(ValueError, match="L: expected a kernel length >= the input length 20"):
        s4.forward_conv(p_ct, u, L=10)


def test_ctilde_form_is_refused_where_c_is_needed_and_vice_versa():
    rng = np.random.default_rng(10)
    p_ct = s4.init(rng, 2, 8, ctilde=True)
    u = rng.standard_normal((1, 5, 2))
    with pytest.raises(ValueError, match=r"expected the C form \(key 'C'\).*recover_c"):
        s4.forward(p_ct, u)
    with pytest.raises(ValueError, match=r"expected the C~ form \(key 'Ct'\).*to_ctilde"):
        s4.kernel(s4.recover_c(p_ct, 5), 5)
    with pytest.raises(ValueError, match=r"params\['Ct'\]: expected shape \(H=2, N2=4\)"):
        s4.kernel({**p_ct, "Ct": p_ct["Ct"][:, :3]}, 5)
    with pytest.raises(ValueError, match="L: expected a positive integer, got 0"):
        s4.recover_c(p_ct, 0)
    with pytest.raises(ValueError, match="params: expected a dict"):
        s4.kernel([1, 2], 5)


def test_ctilde_kernel_has_no_dense_matrix_and_trains_on_torch():
    """The C~ kernel's gradient through torch autograd matches central differences."""
    rng = np.random.default_rng(11)
    p_ct = s4.init(rng, 2, 8, ctilde=True)
    L = 32
    t = to_backend(p_ct, "torch")
    for v in t.values():
        v.requires_grad_(True)
    w = torch.tensor(rng.standard_normal((2, L)))
    loss = (s4.kernel(t, L) * w).sum()
    loss.backward()
    for key, idx in (("log_dt", (1,)), ("A_imag", (0, 2)), ("log_A_real", (1, 3))):
        eps = 1e-6
        p_plus = {k: v.copy() for k, v in p_ct.items()}
        p_minus = {k: v.copy() for k, v in p_ct.items()}
        p_plus[key][idx] += eps
        p_minus[key][idx] -= eps
        fd = ((s4.kernel(p_plus, L) - s4.kernel(p_minus, L)) * w.numpy()).sum() / (2 * eps)
        assert_close(f"d/d{key}", fd, t[key].grad[idx].item(), rtol=1e-6, atol=1e-8)
    # Wirtinger: torch's grad of a real loss w.r.t. complex Ct is dL/dRe + i dL/dIm
    eps, idx = 1e-6, (0, 1)
    for part, step in (("re", eps), ("im", 1j * eps)):
        p_plus, p_minus = dict(p_ct), dict(p_ct)
        p_plus["Ct"], p_minus["Ct"] = p_ct["Ct"].copy(), p_ct["Ct"].copy()
        p_plus["Ct"][idx] += step
        p_minus["Ct"][idx] -= step
        fd = ((s4.kernel(p_plus, L) - s4.kernel(p_minus, L)) * w.numpy()).sum() / (2 * eps)
        g = t["Ct"].grad[idx].item()
        assert_close(f"dCt {part}", fd, g.real if part == "re" else g.imag, rtol=1e-6, atol=1e-8)


def test_character_model_views_agree_and_sampling_runs():
    """rnnkit.experiments.s4: the C~ conv view and the recovered-C recurrent view of a 2-layer
    character model give the same log-probabilities; sampling uses the constant-size state."""
    from rnnkit.experiments import s4 as ex
    rng = np.random.default_rng(12)
    model = ex.lm_init(rng, V=7, H=4, N=6, n_layers=2)
    for blk in model["blocks"]:       # move dt up so that A_bar^L is far from I
        blk["s4"]["log_dt"] = rng.uniform(np.log(0.05), np.log(0.3), size=4)
    ids = rng.integers(0, 7, size=(2, 20))
    rec = ex.lm_recurrent(model, 20)
    assert_close("conv == recurrent logits", ex.lm_logits_conv(model, ids),
                 ex.lm_logits_recurrent(rec, ids), rtol=1e-9)
    out = ex.lm_sample(rec, [1, 2], 5, np.random.default_rng(0))
    assert len(out) == 5 and all(0 <= i < 7 for i in out)


def test_kernel_costs_measures_every_form_and_fits_a_slope():
    from rnnkit.bench import s4 as s4_bench
    rec = s4_bench.kernel_costs(Ns=(4, 8), Ls=(16, 32), N_at=4, L_at=16, repeat=1, min_s=0.0,
                                skip=lambda form, N, L: form == "naive kernel" and N == 8)
    assert {r["form"] for r in rec} == set(s4_bench.KERNEL_FORMS)
    assert len(rec) == 4 * 4 - 1 and all(r["cpu_s"] > 0 for r in rec)
    fake = [{"form": "f", "sweep": "N", "N": n, "cpu_s": 3.0 * n ** 2} for n in (2, 4, 8, 16)]
    assert abs(s4_bench.growth_exponent(fake, "f", "N") - 2.0) < 1e-12
