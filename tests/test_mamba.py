"""Tests for rnnkit.mamba: the selective scan against a loop from the paper, its forms and its
hand backward (finite differences, torch autograd, and the linear map written out as a matrix),
the block's step == forward, backends, bad inputs; and the selective-copy tasks."""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rnnkit import mamba
from rnnkit.core.backend import to_backend
from rnnkit.tasks import selective_copy
from rnnkit.core.testing import assert_close, numerical_gradient

RTOL = 1e-12        # float64, the same recurrence evaluated in another order
RTOL_FD = 1e-6      # central differences with eps = 1e-6


def problem(rng, B=2, L=9, D=3, N=4, gate=True, skip=True, h0=True):
    u = rng.standard_normal((B, L, D))
    delta = np.exp(rng.standard_normal((B, L, D)) - 1.0)
    A = -np.exp(rng.standard_normal((D, N)))
    Bm, Cm = rng.standard_normal((B, L, N)), rng.standard_normal((B, L, N))
    kw = {"D": rng.standard_normal(D) if skip else None, "z": rng.standard_normal((B, L, D)) if gate else None,
          "state": rng.standard_normal((B, D, N)) if h0 else None}
    return (u, delta, A, Bm, Cm), kw


def paper_s6(u, delta, A, B, C, D=None, z=None, state=None):
    """Gu & Dao 2023, Algorithm 2 / selective_scan_ref: scalar loops over batch, channel, time."""
    Bsz, L, Dd = u.shape
    N = A.shape[1]
    y = np.zeros((Bsz, L, Dd))
    for b in range(Bsz):
        for d in range(Dd):
            h = np.zeros(N) if state is None else state[b, d].copy()
            for t in range(L):
                h = np.exp(delta[b, t, d] * A[d]) * h + delta[b, t, d] * B[b, t] * u[b, t, d]
                y[b, t, d] = C[b, t] @ h + (0.0 if D is None else D[d] * u[b, t, d])
                if z is not None:
                    y[b, t, d] *= z[b, t, d] / (1 + np.exp(-z[b, t, d]))
    return y


@pytest.mark.parametrize("L", [1, 2, 9, 16])
@pytest.mark.parametrize("form", mamba.SCAN_FORMS)
def test_forms_match_paper_loop(form, L):
    args, kw = problem(np.random.default_rng(L), L=L)
    assert_close(f"{form} vs paper", paper_s6(*args, **kw), mamba.selective_scan(*args, **kw, form=form),
                 rtol=RTOL)


@pytest.mark.parametrize("T", [1, 2, 4, 5, 9, 30])
def test_chunked_any_chunk_size_and_last_state(T):
    """L = 9 is not a multiple of 2, 4, 5; T > L is one padded chunk."""
    args, kw = problem(np.random.default_rng(3))
    y_ref, h_ref = mamba.selective_scan(*args, **kw, return_state=True)
    y, h = mamba.selective_scan(*args, **kw, form="chunked", chunk_size=T, return_state=True)
    assert_close("y", y_ref, y, rtol=RTOL)
    assert_close("h_L", h_ref, h, rtol=RTOL)


def test_chunked_no_overflow_with_large_decay():
    """delta A of -1e3 per step: exp of S_t - S_s above the diagonal would overflow if not masked."""
    args, kw = problem(np.random.default_rng(4), L=12)
    u, delta, A, B, C = args
    delta = delta * 1e3
    with np.errstate(over="raise", invalid="raise"):
        y = mamba.selective_scan(u, delta, A, B, C, **kw, form="chunked", chunk_size=6)
    assert_close("chunked, large delta", mamba.selective_scan(u, delta, A, B, C, **kw), y, rtol=RTOL)


@given(B=st.integers(1, 3), L=st.integers(1, 12), D=st.integers(1, 3), N=st.integers(1, 4),
       T=st.integers(1, 7), seed=st.integers(0, 10_000))
def test_forms_agree_property(B, L, D, N, T, seed):
    args, kw = problem(np.random.default_rng(seed), B=B, L=L, D=D, N=N)
    ref = mamba.selective_scan(*args, **kw)
    assert_close("scan", ref, mamba.selective_scan(*args, **kw, form="scan"), rtol=RTOL)
    assert_close("chunked", ref, mamba.selective_scan(*args, **kw, form="chunked", chunk_size=T),
                 rtol=RTOL)


# --------------------------------------------------------------------------- backward
NAMES = ("u", "delta", "A", "B", "C")


def _loss(args, kw, dy, dstate):
    y, h = mamba.selective_scan(*args, **kw, return_state=True)
    return float(np.sum(y * dy) + np.sum(h * dstate))


@pytest.mark.parametrize("gate", [True, False])
def test_backward_vs_finite_differences(gate):
    rng = np.random.default_rng(5)
    args, kw = problem(rng, B=2, L=5, D=2, N=3, gate=gate)
    dy, dstate = rng.standard_normal((2, 5, 2)), rng.standard_normal((2, 2, 3))
    grads = mamba.selective_scan_backward(dy, *args, **kw, dstate=dstate)
    for i, name in enumerate(NAMES):
        def f(v, i=i):
            a = list(args)
            a[i] = v
            return _loss(a, kw, dy, dstate)
        assert_close(f"d{name}", numerical_gradient(f, args[i]), grads[name], rtol=RTOL_FD)
    for name in [k for k in ("D", "z", "state") if kw[k] is not None]:
        def g(v, name=name):
            return _loss(args, {**kw, name: v}, dy, dstate)
        assert_close(f"d{name}", numerical_gradient(g, kw[name]), grads[name], rtol=RTOL_FD)


@pytest.mark.parametrize("method", ["sequential", "blelloch", "chunked"])
def test_backward_vs_torch_autograd(method):
    rng = np.random.default_rng(6)
    args, kw = problem(rng, L=11)
    dy, dstate = rng.standard_normal((2, 11, 3)), rng.standard_normal((2, 3, 4))
    grads = mamba.selective_scan_backward(dy, *args, **kw, dstate=dstate, method=method)
    targs = [torch.tensor(a, requires_grad=True) for a in args]
    tkw = {k: torch.tensor(v, requires_grad=True) for k, v in kw.items()}
    y, h = mamba.selective_scan(*targs, **tkw, form="scan", return_state=True)
    ((y * torch.tensor(dy)).sum() + (h * torch.tensor(dstate)).sum()).backward()
    for name, t in list(zip(NAMES, targs)) + list(tkw.items()):
        assert_close(f"d{name}", t.grad.numpy(), grads[name], rtol=1e-11)


def test_backward_du_is_transpose_of_the_materialised_map():
    """Third route: for fixed delta, B, C, z the map u -> y is linear, y = M u with
    M[t, s] = C_t exp(sum_{r=s+1}^t delta_r A) delta_s B_s (+ D on the diagonal), times silu(z_t):
    so du = M^T dy, computed from the matrix written out entry by entry."""
    rng = np.random.default_rng(7)
    args, kw = problem(rng, B=1, L=6, D=2, N=3, h0=False)
    u, delta, A, B, C = args
    dy = rng.standard_normal(u.shape)
    L, Dd = u.shape[1], u.shape[2]
    gate = kw["z"] / (1 + np.exp(-kw["z"]))
    du = np.zeros_like(u)
    for d in range(Dd):
        M = np.zeros((L, L))
        for t in range(L):
            for s in range(t + 1):
                decay = np.exp(delta[0, s + 1:t + 1, d].sum() * A[d])          # (N,)
                M[t, s] = C[0, t] @ (decay * delta[0, s, d] * B[0, s])
            M[t, t] += kw["D"][d]
        M = gate[0, :, d, None] * M
        assert_close("y = M u", mamba.selective_scan(*args, **kw)[0, :, d], M @ u[0, :, d], rtol=RTOL)
        du[0, :, d] = M.T @ dy[0, :, d]
    assert_close("du", du, mamba.selective_scan_backward(dy, *args, **kw)["u"], rtol=RTOL)


# --------------------------------------------------------------------------- the block
def _loop(params, x, state=None):
    ys = []
    for t in range(x.shape[1]):
        y_t, state = mamba.step(params, x[:, t], state)
        ys.append(y_t)
    return np.stack(ys, axis=1), state


@pytest.mark.parametrize("L", [1, 5, 13])
def test_block_step_equals_forward(L):
    rng = np.random.default_rng(8)
    params = mamba.init(rng, 4, N=3, d_conv=3, dt_min=0.1, dt_max=1.0)
    x = rng.standard_normal((2, L, 4))
    y_loop, s_loop = _loop(params, x)
    for form in ("forward", "forward_scan", "forward_chunked"):
        y, s = getattr(mamba, form)(params, x)
        assert_close(f"{form} y", y_loop, y, rtol=RTOL)
        assert_close(f"{form} conv cache", s_loop.conv, s.conv, rtol=RTOL)
        assert_close(f"{form} ssm state", s_loop.ssm, s.ssm, rtol=RTOL)


def test_block_state_carries_over_and_cache_is_constant():
    rng = np.random.default_rng(9)
    params = mamba.init(rng, 4, N=3, dt_min=0.1, dt_max=1.0)
    x = rng.standard_normal((2, 12, 4))
    y, _ = mamba.forward(params, x)
    y1, s1 = mamba.forward(params, x[:, :5])
    y2, s2 = mamba.forward_chunked(params, x[:, 5:], s1, chunk_size=3)
    assert_close("split", y, np.concatenate([y1, y2], axis=1), rtol=RTOL)
    assert [a.shape for a in s1] == [a.shape for a in s2] == [(2, 3, 8), (2, 8, 3)]


def test_block_against_paper_loop():
    """The block written out from Figure 3 with the paper-loop S6 (no rnnkit.mamba helpers)."""
    rng = np.random.default_rng(10)
    p = mamba.init(rng, 3, N=2, d_conv=3, dt_min=0.1, dt_max=1.0)
    x = rng.standard_normal((1, 6, 3))
    E, R, N = 6, 1, 2
    xz = x @ p["W_in"]
    xi, z = xz[..., :E], xz[..., E:]
    xpad = np.concatenate([np.zeros((1, 2, E)), xi], axis=1)
    xc = np.stack([p["conv_b"] + sum(p["conv_w"][k] * xpad[:, t + k] for k in range(3))
                   for t in range(6)], axis=1)
    xc = xc / (1 + np.exp(-xc))
    proj = xc @ p["W_x"]
    delta = np.log1p(np.exp(proj[..., :R] @ p["W_dt"] + p["b_dt"]))
    y = paper_s6(xc, delta, -np.exp(p["A_log"]), proj[..., R:R + N], proj[..., R + N:], p["D"], z)
    assert_close("block", y @ p["W_out"], mamba.forward(p, x)[0], rtol=RTOL)


def test_init_matches_paper():
    p = mamba.init(np.random.default_rng(0), 32, N=16, dt_min=1e-3, dt_max=1e-1)
    assert p["W_in"].shape == (32, 128) and p["W_x"].shape == (64, 2 + 32)
    assert_close("A = -(1..N) (S4D-real)", np.tile(-np.arange(1.0, 17), (64, 1)), -np.exp(p["A_log"]))
    dt = np.log1p(np.exp(p["b_dt"]))
    assert 1e-3 <= dt.min() and dt.max() <= 1e-1


def test_torch_and_float32():
    rng = np.random.default_rng(11)
    params, x, _ = mamba.example(rng, dtype=np.float32)
    y, s = mamba.forward(params, x)
    assert y.dtype == np.float32 and s.ssm.dtype == np.float32
    yt, st_ = mamba.forward_scan(to_backend(params, "torch"), to_backend(x, "torch"))
    assert isinstance(yt, torch.Tensor) and isinstance(st_.ssm, torch.Tensor)
    assert_close("torch vs numpy", y, yt, rtol=1e-5)


# --------------------------------------------------------------------------- bad input
def test_bad_inputs():
    args, kw = problem(np.random.default_rng(12))
    u, delta, A, B, C = args
    with pytest.raises(ValueError, match="delta"):
        mamba.selective_scan(u, delta[:, :-1], A, B, C)
    with pytest.raises(ValueError, match="A"):
        mamba.selective_scan(u, delta, A.T, B, C)
    with pytest.raises(ValueError, match="C"):
        mamba.selective_scan(u, delta, A, B, C[..., :2])
    with pytest.raises(ValueError, match="u: expected a floating"):
        mamba.selective_scan(u.astype(int), delta, A, B, C)
    with pytest.raises(ValueError, match="L >= 1"):
        mamba.selective_scan(u[:, :0], delta[:, :0], A, B[:, :0], C[:, :0])
    with pytest.raises(ValueError, match="form"):
        mamba.selective_scan(u, delta, A, B, C, form="fast")
    with pytest.raises(ValueError, match="chunk_size"):
        mamba.selective_scan(u, delta, A, B, C, form="chunked", chunk_size=0)
    params, x, _ = mamba.example(np.random.default_rng(0))
    with pytest.raises(ValueError, match="x"):
        mamba.forward(params, x[..., :3])
    with pytest.raises(ValueError, match="L >= 1"):
        mamba.forward(params, x[:, :0])
    with pytest.raises(ValueError, match="state.ssm"):
        mamba.step(params, x[:, 0], mamba.MambaState(np.zeros((2, 2, 8)), np.zeros((2, 8, 4))))
    with pytest.raises(ValueError, match="missing 'A_log'"):
        mamba.forward({k: v for k, v in params.items() if k != "A_log"}, x)
    with pytest.raises(ValueError, match="dt_min"):
        mamba.init(np.random.default_rng(0), 4, dt_min=0.2, dt_max=0.1)


# --------------------------------------------------------------------------- tasks
def test_selective_copying():
    x, y = selective_copy.selective_copying(np.random.default_rng(0), 50, L=20, n_memorize=5, n_tokens=6)
    assert x.shape == (50, 25) and y.shape == (50, 5)
    assert np.all(x[:, 20:] == 7) and np.all((y >= 1) & (y <= 6))
    for row, target in zip(x, y):
        data = row[:20][row[:20] > 0]
        assert np.array_equal(data, target)       # in order, exactly n_memorize of them
    with pytest.raises(ValueError, match="n_memorize"):
        selective_copy.selective_copying(np.random.default_rng(0), 2, L=3, n_memorize=4)


def test_induction_heads():
    x, y = selective_copy.induction_heads(np.random.default_rng(1), 200, L=12, n_tokens=5)
    assert x.shape == (200, 12) and y.shape == (200,)
    for row, target in zip(x, y):
        where = np.flatnonzero(row == 6)
        assert len(where) == 2 and where[1] == 11 and where[0] < 10
        assert row[where[0] + 1] == target
    assert abs(np.mean(y == 1) - selective_copy.chance_accuracy(5)) < 0.1
    with pytest.raises(ValueError, match="rng"):
        selective_copy.induction_heads(0, 2)


# --------------------------------------------------------------------------- benchmark, experiment
def test_benchmark_quick_records_every_form():
    from rnnkit.bench import mamba as bench_mamba
    records = bench_mamba.run(quick=True, lengths=(32,))
    assert sorted(r["form"] for r in records if r["impl"] == "numpy") == sorted(mamba.SCAN_FORMS)
    assert all(r["params"]["L"] == 32 and r["median_s"] > 0 for r in records)


def test_experiment_models_have_matched_sizes_and_train():
    from rnnkit.experiments import mamba as exp
    out = {kind: exp.train(kind, "induction", W=8, N=4, n_layers=1, steps=3, batch=4, lr=1e-2, seed=0,
                           task_cfg={"L": 8, "n_tokens": 4}, n_test=16, extrapolate=(1, 2))
           for kind in ("mamba", "s4d")}
    gap = abs(out["mamba"]["n_params"] - out["s4d"]["n_params"]) / out["mamba"]["n_params"]
    assert gap < 0.05, out
    for r in out.values():
        assert set(r["test_acc_by_length"]) == {"1", "2"} and np.isfinite(r["final_loss"])
    r2 = exp.train("mamba2", "copy", W=8, N=4, n_layers=1, steps=2, batch=4, lr=1e-2, seed=0,
                   task_cfg={"L": 8, "n_memorize": 2, "n_tokens": 4}, n_test=8)
    assert 0.0 <= r2["test_acc"] <= 1.0 and np.isfinite(r2["final_loss"])
    with pytest.raises(ValueError, match="size"):
        exp.run("huge")
    with pytest.raises(ValueError, match="kind"):
        exp.build("lstm", np.random.default_rng(0), 6, 8, 4, 1)
