"""Tests for rnnkit.mingru: minGRU and minLSTM against the paper's equations, forms, gradients."""
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rnnkit import mingru
from rnnkit.core.backend import to_backend
from rnnkit.core.testing import assert_close, numerical_gradient

RTOL = 1e-12      # float64, two exact forms of the same recurrence
RTOL_LOG = 1e-11  # the log-space form goes through exp(log(.)): a few ulps more per step
METHODS = ("log", "sequential", "hillis_steele", "blelloch", "chunked")


def make(rng, B=2, L=7, D=3, H=4, lstm=False):
    params = (mingru.minlstm_init if lstm else mingru.init)(rng, D, H)
    x = rng.standard_normal((B, L, D))
    h0 = rng.uniform(0.1, 1.5, (B, H))          # positive: the states of both models stay positive
    return params, x, h0


def sig(v):
    return 1.0 / (1.0 + np.exp(-v))


def paper_g(v):
    return np.where(v >= 0, v + 0.5, sig(v))


def paper_mingru(params, x, h0):
    """Feng et al. 2024, section 3.1 with g from Appendix B, as a plain loop over the batch and time."""
    B, L, _ = x.shape
    h_all = np.zeros((B, L, params["b_z"].shape[0]))
    for i in range(B):
        h = h0[i]
        for t in range(L):
            z = sig(x[i, t] @ params["W_z"] + params["b_z"])
            h_tilde = paper_g(x[i, t] @ params["W_h"] + params["b_h"])
            h = (1 - z) * h + z * h_tilde
            h_all[i, t] = h
    return h_all


def paper_minlstm(params, x, h0):
    """Feng et al. 2024, section 3.2: normalised forget and input gates."""
    B, L, _ = x.shape
    h_all = np.zeros((B, L, params["b_f"].shape[0]))
    for i in range(B):
        h = h0[i]
        for t in range(L):
            f = sig(x[i, t] @ params["W_f"] + params["b_f"])
            i_gate = sig(x[i, t] @ params["W_i"] + params["b_i"])
            h_tilde = paper_g(x[i, t] @ params["W_h"] + params["b_h"])
            h = f / (f + i_gate) * h + i_gate / (f + i_gate) * h_tilde
            h_all[i, t] = h
    return h_all


def test_g_and_log_g():
    p = np.array([-800.0, -30.0, -1.0, -1e-12, 0.0, 1e-12, 2.0, 1e6])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")              # the reference's exp(800) overflows, fine
        assert_close("g", paper_g(p), mingru.g(p), rtol=1e-15)
    assert_close("log g", np.log(paper_g(p[1:])), mingru.log_g(p[1:]), rtol=1e-15)
    assert mingru.log_g(p)[0] == -800.0               # log sigma(-800) = -800, not log(0)


@pytest.mark.parametrize("lstm", [False, True])
def test_forward_matches_the_papers_loop(lstm):
    rng = np.random.default_rng(0)
    params, x, h0 = make(rng, B=3, L=9, lstm=lstm)
    ref = (paper_minlstm if lstm else paper_mingru)(params, x, h0)
    fwd = mingru.minlstm_forward if lstm else mingru.forward
    assert_close("h_all", ref, fwd(params, x, h0)[0], rtol=RTOL)


@pytest.mark.parametrize("lstm", [False, True])
def test_step_loop_equals_forward(lstm):
    rng = np.random.default_rng(1)
    params, x, h0 = make(rng, lstm=lstm)
    step = mingru.minlstm_step if lstm else mingru.step
    h_all, h_last = (mingru.minlstm_forward if lstm else mingru.forward)(params, x, h0)
    h = h0
    for t in range(x.shape[1]):
        h, _ = step(params, x[:, t], h)
        assert_close(f"h_{t + 1}", h_all[:, t], h, rtol=RTOL)
    assert_close("h_last", h_last, h, rtol=0)


@given(B=st.integers(1, 3), L=st.integers(1, 25), D=st.integers(1, 4), H=st.integers(1, 5),
       lstm=st.booleans(), zero_h0=st.booleans(), seed=st.integers(0, 2**16))
def test_parallel_forms_equal_sequential_form(B, L, D, H, lstm, zero_h0, seed):
    rng = np.random.default_rng(seed)
    params, x, h0 = make(rng, B, L, D, H, lstm)
    h0 = None if zero_h0 else h0
    fwd, scan = ((mingru.minlstm_forward, mingru.minlstm_forward_scan) if lstm
                 else (mingru.forward, mingru.forward_scan))
    ref, ref_last = fwd(params, x, h0)
    assert ref.shape == (B, L, H) and ref_last.shape == (B, H)
    for method in METHODS:
        h_all, h_last = scan(params, x, h0, method=method)
        assert_close(f"h_all ({method})", ref, h_all, rtol=RTOL_LOG if method == "log" else RTOL)
        assert_close(f"h_last ({method})", ref_last, h_last, rtol=RTOL_LOG)


@pytest.mark.parametrize("lstm", [False, True])
def test_log_form_is_stable_with_saturated_gates(lstm):
    """Pre-activations of size ~1e3 saturate every gate: sigma = 0 or 1 exactly in float64.

    The linear-space candidate b_t = z_t h~_t and f', i' are then computed from log-gates that
    stay finite, and the log-space scan must neither warn nor produce NaN over a long sequence.
    """
    rng = np.random.default_rng(2)
    params, x, h0 = make(rng, B=2, L=3000, D=3, H=4, lstm=lstm)
    params = {k: 300.0 * v for k, v in params.items()}
    fwd, scan = ((mingru.minlstm_forward, mingru.minlstm_forward_scan) if lstm
                 else (mingru.forward, mingru.forward_scan))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h_log, _ = scan(params, x, h0)
        h_seq, _ = fwd(params, x, h0)
    assert np.all(np.isfinite(h_log)) and np.all(h_log > 0)
    # Relative to each state's size: states range over many orders of magnitude here.
    assert np.max(np.abs(h_log - h_seq) / h_seq) < 1e-10


def test_log_form_needs_positive_h0_but_linear_forms_do_not():
    rng = np.random.default_rng(3)
    params, x, h0 = make(rng)
    with pytest.raises(ValueError, match="state: the log-space form needs h0 > 0"):
        mingru.forward_scan(params, x, -h0)
    with pytest.raises(ValueError, match="state: the log-space form needs h0 > 0"):
        mingru.minlstm_forward_scan(mingru.minlstm_init(rng, 3, 4), x, np.zeros_like(h0))
    assert_close("negative h0", mingru.forward(params, x, -h0)[0],
                 mingru.forward_scan(params, x, -h0, method="blelloch")[0], rtol=RTOL)


# ---- minGRU gradients three ways ----

def _loss(params, x, h0, w, w_last):
    h_all, h_last = mingru.forward(params, x, h0)
    return float(np.sum(w * h_all) + np.sum(w_last * h_last))


def test_backward_matches_finite_differences():
    rng = np.random.default_rng(4)
    params, x, h0 = make(rng, B=2, L=6, D=3, H=4)
    x[0, 0, :] = 0.0                             # p = b_h there: cover both branches of g'
    w, w_last = rng.standard_normal((2, 6, 4)), rng.standard_normal((2, 4))
    _, _, cache = mingru.forward(params, x, h0, return_cache=True)
    grads, dx, dh0 = mingru.backward(params, w, cache, dstate=w_last)
    for key in params:
        def f(value, key=key):
            return _loss({**params, key: value}, x, h0, w, w_last)
        # Central differences (eps 1e-6) on a loss of size ~1: 1e-7 relative. g has a kink in
        # its second derivative at p = 0 only, which no p here is within eps of.
        assert_close(f"d{key}", numerical_gradient(f, params[key]), grads[key], rtol=1e-7)
    assert_close("dx", numerical_gradient(lambda v: _loss(params, v, h0, w, w_last), x), dx, rtol=1e-7)
    assert_close("dh0", numerical_gradient(lambda v: _loss(params, x, v, w, w_last), h0), dh0,
                 rtol=1e-7)


@pytest.mark.parametrize("method", ["log", "sequential", "chunked"])
def test_backward_matches_torch_autograd_on_the_same_source(method):
    """Autograd through forward_scan itself (log space: torch.logcumsumexp) on torch tensors."""
    rng = np.random.default_rng(5)
    params, x, h0 = make(rng, B=3, L=12, D=3, H=5)
    w = rng.standard_normal((3, 12, 5))
    tparams = to_backend(params, "torch")
    for v in tparams.values():
        v.requires_grad_(True)
    tx, th0 = torch.tensor(x, requires_grad=True), torch.tensor(h0, requires_grad=True)
    th, _ = mingru.forward_scan(tparams, tx, th0, method=method)
    (th * torch.tensor(w)).sum().backward()
    _, _, cache = mingru.forward(params, x, h0, return_cache=True)
    grads, dx, dh0 = mingru.backward(params, w, cache)
    for key in params:
        assert_close(f"d{key}", tparams[key].grad, grads[key], rtol=1e-10)
    assert_close("dx", tx.grad, dx, rtol=1e-10)
    assert_close("dh0", th0.grad, dh0, rtol=1e-10)


@pytest.mark.parametrize("method", ["log", "hillis_steele", "blelloch", "chunked"])
def test_backward_forms_agree(method):
    """The cache of a parallel forward and a parallel reverse scan give the loop's gradients."""
    rng = np.random.default_rng(6)
    params, x, h0 = make(rng, B=2, L=29, D=3, H=4)
    w = rng.standard_normal((2, 29, 4))
    _, _, cache_seq = mingru.forward(params, x, h0, return_cache=True)
    _, _, cache_par = mingru.forward_scan(params, x, h0, method=method, return_cache=True)
    ref, dx_ref, dh0_ref = mingru.backward(params, w, cache_seq)
    scan_method = "blelloch" if method == "log" else method
    grads, dx, dh0 = mingru.backward(params, w, cache_par, method=scan_method, chunk_size=4)
    for key in params:
        assert_close(f"d{key} ({method})", ref[key], grads[key], rtol=1e-10)
    assert_close("dx", dx_ref, dx, rtol=1e-10)
    assert_close("dh0", dh0_ref, dh0, rtol=1e-10)


def test_backward_with_zero_initial_state():
    rng = np.random.default_rng(7)
    params, x, _ = make(rng, B=2, L=4)
    w = rng.standard_normal((2, 4, 4))
    _, _, cache = mingru.forward_scan(params, x, return_cache=True)
    grads, _, dh0 = mingru.backward(params, w, cache)
    f = lambda v: float(np.sum(w * mingru.forward(params, x, v)[0]))   # noqa: E731
    assert_close("dh0 at h0 = 0", numerical_gradient(f, np.zeros((2, 4))), dh0, rtol=1e-7)
    g_ref = numerical_gradient(lambda v: float(np.sum(w * mingru.forward({**params, "W_z": v}, x)[0])),
                               params["W_z"])
    assert_close("dW_z at h0 = 0", g_ref, grads["W_z"], rtol=1e-7)


# ---- bad input ----

def test_bad_inputs_raise_clear_errors():
    rng = np.random.default_rng(8)
    params, x, h0 = make(rng, B=2, L=7, D=3, H=4)
    with pytest.raises(ValueError, match=r"x: expected 3 dimensions \(B, L, D=3\), got shape \(7, 3\)"):
        mingru.forward(params, x[0])
    with pytest.raises(ValueError, match=r"x: expected shape \(B=2, L=7, D=3\) \(from params\['W_z'\]\), got \(2, 7, 2\)"):
        mingru.forward_scan(params, x[:, :, :2])
    with pytest.raises(ValueError, match=r"state: expected shape \(B=2, H=4\)"):
        mingru.forward(params, x, h0[:, :3])
    with pytest.raises(ValueError, match=r"state: expected shape \(B=2, H=4\)"):
        mingru.step(params, x[:, 0], h0[:1])
    with pytest.raises(ValueError, match="params: expected keys W_z, b_z, W_h, b_h, missing 'b_h'"):
        mingru.forward({k: v for k, v in params.items() if k != "b_h"}, x)
    with pytest.raises(ValueError, match="params: expected keys W_f, b_f, W_i, b_i, W_h, b_h, missing 'W_f'"):
        mingru.minlstm_forward(params, x)
    with pytest.raises(ValueError, match="x: expected a floating-point array, got dtype int64"):
        mingru.forward(params, np.ones((2, 7, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="method: expected one of"):
        mingru.forward_scan(params, x, method="fast")
    _, _, cache = mingru.forward(params, x, return_cache=True)
    with pytest.raises(ValueError, match=r"dh_all: expected shape \(B=2, L=7, H=4\)"):
        mingru.backward(params, np.zeros((2, 7, 5)), cache)
    with pytest.raises(ValueError, match="H: expected a positive integer, got 0"):
        mingru.init(rng, 3, 0)


@pytest.mark.gpu
def test_cupy_runs_the_same_source():
    import cupy

    rng = np.random.default_rng(9)
    params, x, h0 = make(rng)
    ref = mingru.forward(params, x, h0)[0]
    got = mingru.forward_scan(to_backend(params, "cupy"), cupy.asarray(x), cupy.asarray(h0))[0]
    assert isinstance(got, cupy.ndarray)
    assert_close("h_all on CuPy", ref, got, rtol=RTOL_LOG)


# ---- the chapter 11 benchmark ----

def test_benchmark_quick_mode_records_every_form_and_checks_agreement():
    """rnnkit.bench.mingru on NumPy at a tiny L: one record per form, speedups computable."""
    from rnnkit.bench import mingru as mingru_bench

    records = mingru_bench.run(quick=True, backends={"numpy": True}, lengths=(4,))
    assert [(r["impl"], r["form"]) for r in records] == [("numpy", f) for f in mingru_bench.FORMS]
    assert all(r["params"]["L"] == 4 and r["median_s"] > 0 for r in records)
    ratios = mingru_bench.speedups({"records": records})
    assert list(ratios) == [("numpy", records[0]["device"])] and list(ratios.values())[0][4] > 0


def test_benchmark_torch_forms_agree_with_numpy():
    """The torch closures (nn.GRU, autograd through the loop and the log-space scan) pass the check."""
    from rnnkit.bench import mingru as mingru_bench

    p_gru, p_min, x = mingru_bench._problem(2, 6, 3, 4)
    ref = mingru_bench._hand_fns(p_gru, p_min, x, "numpy")
    mingru_bench._check("torch-cpu", mingru_bench._torch_fns(p_gru, p_min, x, "cpu"), ref)


def test_benchmark_agreement_check_catches_a_wrong_gradient():
    """The check run before timing must fail when a form's gradient is wrong."""
    from rnnkit.bench import mingru as mingru_bench

    p_gru, p_min, x = mingru_bench._problem(2, 5, 3, 4)
    ref = mingru_bench._hand_fns(p_gru, p_min, x, "numpy")
    broken = dict(ref)
    good = ref["minGRU scan"]
    broken["minGRU scan"] = lambda: ({**good()[0], "W_h": 1.01 * good()[0]["W_h"]}, good()[1])
    with pytest.raises(AssertionError, match="minGRU scan dW_h"):
        mingru_bench._check("numpy", broken, ref)
