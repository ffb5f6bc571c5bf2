"""Tests for rnnkit.esn: the reservoir against a naive loop from the equations, exact spectral
radius, the echo state property (and its failure), the ridge readout against scikit-learn and the
explicit formula, the closed loop, memory capacity (N for a linear orthogonal reservoir), residual
and deep reservoirs, torch tensors, bad input, shapes."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import Ridge

from rnnkit import esn
from rnnkit.core.testing import assert_close

RTOL = 1e-12  # float64 agreement between two exact implementations of the same equations


def naive_reservoir(params, u, x0, O=None, activation="tanh"):
    """(7.1)/(7.6) one sample, one unit at a time, column convention of Jaeger's papers:
    x_i(t) = alpha [O^T x(t-1)]_i + beta f(sum_j W_in[j, i] u_j(t) + sum_j W[j, i] x_j(t-1) + b_i)."""
    B, L, D = u.shape
    N = params["W"].shape[0]
    out = np.zeros((B, L, N))
    for s in range(B):
        x = x0[s].copy()
        for t in range(L):
            new = np.zeros(N)
            for i in range(N):
                pre = sum(params["W_in"][j, i] * u[s, t, j] for j in range(D))
                pre += sum(params["W"][j, i] * x[j] for j in range(N)) + params["b"][i]
                skip = x[i] if O is None else sum(O[j, i] * x[j] for j in range(N))
                f = np.tanh(pre) if activation == "tanh" else pre
                new[i] = params["alpha"] * skip + params["beta"] * f
            x = new
            out[s, t] = x
    return out


def make(rng, B=2, L=7, D=3, N=6, **kw):
    kw = {"spectral_radius": 0.9, "leak_rate": 0.6, "bias_scaling": 0.3, **kw}
    params = esn.init(rng, D, N, **kw)
    return params, rng.standard_normal((B, L, D)), 0.5 * rng.standard_normal((B, N))


# ----------------------------------------------------------------------------- the reservoir
@pytest.mark.parametrize("activation", ["tanh", "identity"])
def test_forward_matches_naive_loop_and_step(activation):
    rng = np.random.default_rng(0)
    params, u, x0 = make(rng)
    x_all, x_last = esn.forward(params, u, x0, activation=activation)
    assert_close("forward vs naive loop", naive_reservoir(params, u, x0, activation=activation),
                 x_all, rtol=RTOL)
    x = x0
    for t in range(u.shape[1]):
        x, _ = esn.step(params, u[:, t], x, activation=activation)
        assert_close(f"step {t}", x_all[:, t], x, rtol=RTOL)
    assert_close("x_last", x_all[:, -1], x_last, rtol=0.0)


def test_zero_initial_state_by_default():
    rng = np.random.default_rng(1)
    params, u, _ = make(rng)
    assert_close("x0=None", esn.forward(params, u, np.zeros((2, 6)))[0], esn.forward(params, u)[0],
                 rtol=0.0)


@pytest.mark.parametrize("rho, density", [(0.5, 1.0), (0.95, 0.1), (1.3, 0.05), (2.0, 1.0)])
def test_spectral_radius_is_exact(rho, density):
    params = esn.init(np.random.default_rng(2), 2, 60, spectral_radius=rho, density=density)
    got = np.max(np.abs(np.linalg.eigvals(params["W"])))
    assert abs(got - rho) < 1e-12 * rho                       # round-off of eigvals only
    if density < 1:
        assert 0 < np.mean(params["W"] != 0) < 2 * density       # sparse as asked


def test_orthogonal_reservoir_has_all_eigenvalues_on_the_circle():
    W = esn.init(np.random.default_rng(3), 1, 30, spectral_radius=0.8, orthogonal=True)["W"]
    assert_close("W W^T = rho^2 I", 0.64 * np.eye(30), W @ W.T, rtol=1e-13)
    assert_close("|eig|", np.full(30, 0.8), np.abs(np.linalg.eigvals(W)), rtol=1e-12)


def test_scale_spectral_radius_rejects_nilpotent():
    with pytest.raises(ValueError, match="spectral radius is 0"):
        esn.scale_spectral_radius(np.triu(np.ones((4, 4)), 1), 0.9)


# ------------------------------------------------------------------ echo state property
@pytest.mark.parametrize("leak_rate", [1.0, 0.3])
def test_echo_state_property_contraction(leak_rate):
    """Largest singular value s < 1: ||x_t - x'_t|| <= (1 - a + a s)^t ||x_0 - x'_0|| (tanh is
    1-Lipschitz), for the same input and any two initial states (7.4)."""
    rng = np.random.default_rng(4)
    N = 40
    params = esn.init(rng, 1, N, leak_rate=leak_rate, bias_scaling=0.2)
    params["W"] = params["W"] * (0.9 / np.linalg.norm(params["W"], 2))   # s = 0.9
    u = rng.uniform(-1, 1, (1, 200, 1))
    x0 = rng.uniform(-1, 1, (2, N))
    xa, _ = esn.forward(params, np.repeat(u, 2, axis=0), x0)
    dist = np.linalg.norm(xa[0] - xa[1], axis=-1)               # (L,)
    q = 1 - leak_rate + leak_rate * 0.9
    bound = q ** np.arange(1, 201) * np.linalg.norm(x0[0] - x0[1])
    assert np.all(dist <= bound * (1 + 1e-9) + 1e-15)
    assert dist[-1] < 1e-6


def test_echo_state_property_fails_for_large_spectral_radius():
    """rho = 3 and a weak input: two initial states stay apart (no unique echo)."""
    rng = np.random.default_rng(5)
    params = esn.init(rng, 1, 50, spectral_radius=3.0, input_scaling=0.1)
    u = np.repeat(rng.uniform(-1, 1, (1, 500, 1)), 2, axis=0)
    xa, _ = esn.forward(params, u, rng.uniform(-1, 1, (2, 50)))
    assert np.min(np.linalg.norm(xa[0, -100:] - xa[1, -100:], axis=-1)) > 0.1


# ---------------------------------------------------------------------- ridge readout
@pytest.mark.parametrize("ridge", [1e-6, 0.1, 10.0])
@pytest.mark.parametrize("with_inputs", [False, True])
def test_readout_matches_sklearn_ridge(ridge, with_inputs):
    rng = np.random.default_rng(6)
    B, L, D, N, K, washout = 3, 40, 2, 8, 2, 5
    states, inputs = rng.standard_normal((B, L, N)), rng.standard_normal((B, L, D))
    targets = rng.standard_normal((B, L, K)) + 3.0
    W_out = esn.fit_readout(states, targets, ridge=ridge, washout=washout,
                            inputs=inputs if with_inputs else None)
    X = states[:, washout:] if not with_inputs else np.concatenate([inputs, states], -1)[:, washout:]
    skl = Ridge(alpha=ridge, fit_intercept=True, solver="cholesky", tol=1e-14)
    skl.fit(X.reshape(-1, X.shape[-1]), targets[:, washout:].reshape(-1, K))
    assert_close("bias vs sklearn intercept", skl.intercept_, W_out[0], rtol=1e-9)
    assert_close("weights vs sklearn coef", skl.coef_.T, W_out[1:], rtol=1e-9)
    # the explicit formula (7.3) with an unpenalised bias: (Z^T Z + beta P)^{-1} Z^T Y
    Z = np.concatenate([np.ones(X.shape[:-1] + (1,)), X], -1).reshape(-1, X.shape[-1] + 1)
    P = np.eye(Z.shape[1])
    P[0, 0] = 0.0
    ref = np.linalg.solve(Z.T @ Z + ridge * P, Z.T @ targets[:, washout:].reshape(-1, K))
    assert_close("explicit normal equations", ref, W_out, rtol=1e-8)


def test_readout_without_ridge_is_least_squares_and_predict():
    rng = np.random.default_rng(7)
    states, targets = rng.standard_normal((2, 30, 5)), rng.standard_normal((2, 30, 1))
    W_out = esn.fit_readout(states, targets, ridge=0.0)
    Z = esn.features(states).reshape(-1, 6)
    ref = np.linalg.lstsq(Z, targets.reshape(-1, 1), rcond=None)[0]
    assert_close("ridge=0 vs lstsq", ref, W_out, rtol=1e-10)
    assert_close("predict", (Z @ ref).reshape(2, 30, 1), esn.predict(W_out, states), rtol=1e-10)


def test_readout_recovers_an_exact_linear_map():
    rng = np.random.default_rng(8)
    states = rng.standard_normal((1, 200, 6))
    W_true = rng.standard_normal((7, 2))
    W_out = esn.fit_readout(states, esn.predict(W_true, states), ridge=1e-12)
    assert_close("recovered W_out", W_true, W_out, rtol=1e-9)


def test_washout_drops_the_first_steps():
    rng = np.random.default_rng(9)
    states, targets = rng.standard_normal((2, 20, 3)), rng.standard_normal((2, 20, 1))
    garbage = targets.copy()
    garbage[:, :4] = 1e6
    assert_close("washout", esn.fit_readout(states, targets, 0.1, washout=4),
                 esn.fit_readout(states, garbage, 0.1, washout=4), rtol=1e-12)


# ------------------------------------------------------------------------- closed loop
@pytest.mark.parametrize("with_inputs", [False, True])
def test_generate_feeds_back_the_prediction(with_inputs):
    rng = np.random.default_rng(10)
    params, u, x0 = make(rng, D=2, N=9)
    W_out = 0.3 * rng.standard_normal((1 + 9 + (2 if with_inputs else 0), 2))
    got = esn.generate(params, W_out, x0, u[:, 0], 6, with_inputs=with_inputs)
    x, v = x0, u[:, 0]
    for t in range(6):
        x, _ = esn.step(params, v, x)
        v = esn.predict(W_out, x[:, None], v[:, None] if with_inputs else None)[:, 0]
        assert_close(f"closed loop step {t}", v, got[:, t], rtol=RTOL)


def test_generate_continues_a_teacher_forced_run():
    """A readout fitted to one-step prediction of a sine, run closed loop, stays on the sine."""
    rng = np.random.default_rng(11)
    s = np.sin(0.2 * np.arange(1200))[None, :, None]
    params = esn.init(rng, 1, 50, spectral_radius=0.9, input_scaling=0.5)
    x, _ = esn.forward(params, s[:, :-1])
    W_out = esn.fit_readout(x, s[:, 1:], ridge=1e-10, washout=100)
    y = esn.generate(params, W_out, x[:, 999], s[:, 1000], 100)
    assert esn.nrmse(s[0, 1001:1101, 0], y[0, :, 0]) < 1e-3


# --------------------------------------------------------------------- memory capacity
def test_memory_capacity_of_linear_orthogonal_reservoir_is_N():
    """Jaeger (2002): a linear reservoir with generic input weights has MC = N (summed over all
    delays). An orthogonal W keeps the Krylov vectors w_in W^k well conditioned; with rho = 0.7
    the memory beyond k = 5N is negligible (rho^(2k) < 1e-30), so the truncated sum must be N."""
    N = 20
    params = esn.init(np.random.default_rng(12), 1, N, spectral_radius=0.7, orthogonal=True)
    mc = esn.memory_capacity(params, np.random.default_rng(13), 5 * N, n_train=4000, n_test=2000,
                             activation="identity")
    assert np.all((mc >= 0) & (mc <= 1 + 1e-12))
    # finite test sample: each MC_k is biased up by about 1/n_test, so 101 delays add ~0.05
    assert 0.97 * N < mc.sum() < N + 0.3
    assert mc[: N // 2].min() > 0.99                                 # recent inputs recalled


def test_memory_capacity_bounded_by_N_and_lower_for_tanh():
    N = 20
    rng = np.random.default_rng(14)
    tanh_params = esn.init(rng, 1, N, spectral_radius=0.9, input_scaling=1.0)
    mc = esn.memory_capacity(tanh_params, np.random.default_rng(15), 3 * N)
    assert 1.0 < mc.sum() < N
    assert mc[0] > 0.9 and mc[-1] < 0.05


# ----------------------------------------------------------------- residual and deep
def test_residual_with_identity_is_the_leaky_reservoir():
    rng = np.random.default_rng(16)
    params, u, x0 = make(rng, leak_rate=0.3)
    res = dict(params, O=np.eye(6))
    assert_close("O = I, alpha = 1-a", esn.forward(params, u, x0)[0], esn.forward(res, u, x0)[0],
                 rtol=RTOL)


@pytest.mark.parametrize("O", ["orthogonal", "cycle"])
def test_residual_reservoir_matches_naive_loop(O):
    rng = np.random.default_rng(17)
    params = esn.init_residual(rng, 3, 6, alpha=0.7, beta=0.4, O=O, bias_scaling=0.2)
    assert_close("O orthogonal", np.eye(6), params["O"] @ params["O"].T, rtol=1e-13)
    u, x0 = rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 6))
    assert_close("residual vs naive", naive_reservoir(params, u, x0, params["O"]),
                 esn.forward(params, u, x0)[0], rtol=RTOL)


def test_deep_reservoir_is_the_composition():
    rng = np.random.default_rng(18)
    layers = esn.init_deep(rng, 2, 5, 3, inter_scaling=0.5, leak_rate=0.5)
    assert [p["W_in"].shape for p in layers] == [(2, 5), (5, 5), (5, 5)]
    assert np.abs(layers[1]["W_in"]).max() <= 0.5
    u = rng.standard_normal((2, 8, 2))
    states, lasts = esn.forward_deep(layers, u)
    x1 = esn.forward(layers[0], u)[0]
    x2 = esn.forward(layers[1], x1)[0]
    x3 = esn.forward(layers[2], x2)[0]
    assert_close("deep states", np.concatenate([x1, x2, x3], -1), states, rtol=RTOL)
    assert_close("last state of layer 3", x3[:, -1], lasts[2], rtol=RTOL)


# -------------------------------------------------------------------------- torch tensors
def test_torch_tensors_give_the_numpy_result():
    rng = np.random.default_rng(19)
    params, u, x0 = make(rng, B=2, L=30, D=2, N=7)
    targets = rng.standard_normal((2, 30, 1))
    x_np, _ = esn.forward(params, u, x0)
    W_np = esn.fit_readout(x_np, targets, ridge=1e-3, washout=3, inputs=u)
    tp = {k: torch.tensor(v) for k, v in params.items()}
    x_t, _ = esn.forward(tp, torch.tensor(u), torch.tensor(x0))
    W_t = esn.fit_readout(x_t, torch.tensor(targets), ridge=1e-3, washout=3, inputs=torch.tensor(u))
    assert isinstance(x_t, torch.Tensor) and isinstance(W_t, torch.Tensor)
    assert_close("torch states", x_np, x_t, rtol=RTOL)
    assert_close("torch readout", W_np, W_t, rtol=1e-9)


# ------------------------------------------------------------------------------ bad input
def test_bad_input_raises():
    rng = np.random.default_rng(20)
    params, u, x0 = make(rng)
    with pytest.raises(ValueError, match="leak_rate"):
        esn.init(rng, 1, 5, leak_rate=0.0)
    with pytest.raises(ValueError, match="density"):
        esn.init(rng, 1, 5, density=1.5)
    with pytest.raises(ValueError, match="activation: expected one of"):
        esn.forward(params, u, activation="relu")
    with pytest.raises(ValueError, match=r"params\['alpha'\]: expected an array"):
        esn.forward({**params, "alpha": 0.4}, u)   # options are not stored in params as floats
    with pytest.raises(ValueError, match="N"):
        esn.init(rng, 1, 0)
    with pytest.raises(ValueError, match="alpha"):
        esn.init_residual(rng, 1, 5, alpha=1.5)
    with pytest.raises(ValueError, match=r"u: expected shape .*D=3"):
        esn.forward(params, u[..., :2])
    with pytest.raises(ValueError, match="state"):
        esn.forward(params, u, x0[:, :3])
    with pytest.raises(ValueError, match="floating"):
        esn.forward(params, np.ones((2, 3, 3), dtype=int))
    with pytest.raises(ValueError, match="params"):
        esn.forward({k: v for k, v in params.items() if k != "W"}, u)
    states = rng.standard_normal((2, 10, 6))
    with pytest.raises(ValueError, match="targets"):
        esn.fit_readout(states, rng.standard_normal((2, 9, 1)))
    with pytest.raises(ValueError, match="washout"):
        esn.fit_readout(states, rng.standard_normal((2, 10, 1)), washout=10)
    with pytest.raises(ValueError, match="ridge"):
        esn.fit_readout(states, rng.standard_normal((2, 10, 1)), ridge=-1.0)
    with pytest.raises(ValueError, match="W_out"):
        esn.predict(np.zeros((5, 1)), states)
    with pytest.raises(ValueError, match="W_out"):
        esn.generate(params, np.zeros((7, 3)), x0, u[:, 0], 3, with_inputs=True)
    with pytest.raises(ValueError, match="W_in"):
        esn.memory_capacity(params, rng, 5)
    with pytest.raises(ValueError, match="layers"):
        esn.forward_deep([], u)


# ------------------------------------------------------------------------------- shapes
@settings(max_examples=25, deadline=None)
@given(B=st.integers(1, 3), L=st.integers(1, 12), D=st.integers(1, 3), N=st.integers(1, 6),
       K=st.integers(1, 2), n_layers=st.integers(1, 3))
def test_shapes(B, L, D, N, K, n_layers):
    rng = np.random.default_rng(B * 1000 + L * 100 + D * 10 + N)
    params = esn.init(rng, D, N, leak_rate=0.5)
    u = rng.standard_normal((B, L, D))
    x_all, x_last = esn.forward(params, u)
    assert x_all.shape == (B, L, N) and x_last.shape == (B, N)
    W_out = esn.fit_readout(x_all, rng.standard_normal((B, L, K)), ridge=1e-3, inputs=u)
    assert W_out.shape == (1 + D + N, K)
    assert esn.predict(W_out, x_all, u).shape == (B, L, K)
    states, lasts = esn.forward_deep(esn.init_deep(rng, D, N, n_layers), u)
    assert states.shape == (B, L, n_layers * N) and len(lasts) == n_layers
    W_gen = esn.fit_readout(x_all, rng.standard_normal((B, L, D)), ridge=1e-3)
    assert esn.generate(params, W_gen, x_last, u[:, -1], 3).shape == (B, 3, D)


# -------------------------------------------------------------------------------- benchmark
def test_benchmark_quick_mode_records():
    """rnnkit.bench.esn: tiny sizes, NumPy and torch on the CPU; the agreement check runs."""
    from rnnkit.bench import esn as esn_bench

    records = esn_bench.run(quick=True, backends={"numpy": True, "torch-cpu": True}, sizes=(5, 10))
    got = {(r["impl"], r["form"], r["params"]["N"]) for r in records}
    assert got == {(i, f, n) for i in ("numpy", "torch-cpu") for f in ("harvest", "fit") for n in (5, 10)}
    assert all(r["median_s"] > 0 and r["params"]["L"] == esn_bench.L_QUICK for r in records)
