"""Tests for rnnkit.mamba2: SSD's recurrent, quadratic and chunked forms against a loop from the
paper and each other (L = 1, L not a multiple of the chunk), the semiseparable matrix, gradients
of the chunked form, the block's step == forward, backends, bad inputs."""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rnnkit import mamba2
from rnnkit.core.backend import to_backend
from rnnkit.core.testing import assert_close, numerical_gradient

RTOL = 1e-12    # float64; the quadratic and chunked forms sum the same terms in another order


def problem(rng, B=2, L=9, H=3, P=2, N=4, h0=True):
    x = rng.standard_normal((B, L, H, P))
    dt = np.exp(rng.standard_normal((B, L, H)) - 1.0)
    A = -np.exp(rng.standard_normal(H))
    Bm, Cm = rng.standard_normal((B, L, H, N)), rng.standard_normal((B, L, H, N))
    return (x, dt, A, Bm, Cm), {"state": rng.standard_normal((B, H, P, N)) if h0 else None}


def paper_ssd(x, dt, A, B, C, state=None):
    """Dao & Gu 2024, (15.1) as scalar-head loops: h (P, N) = exp(dt A) h + dt x B^T, y = h C."""
    Bsz, L, H, P = x.shape
    y = np.zeros_like(x)
    for b in range(Bsz):
        for h in range(H):
            S = np.zeros((P, B.shape[-1])) if state is None else state[b, h].copy()
            for t in range(L):
                S = np.exp(dt[b, t, h] * A[h]) * S + dt[b, t, h] * np.outer(x[b, t, h], B[b, t, h])
                y[b, t, h] = S @ C[b, t, h]
    return y


@pytest.mark.parametrize("L", [1, 2, 9, 16])
@pytest.mark.parametrize("form", mamba2.SSD_FORMS)
def test_forms_match_paper_loop(form, L):
    args, kw = problem(np.random.default_rng(L), L=L)
    assert_close(f"{form}", paper_ssd(*args, **kw), mamba2.ssd(*args, **kw, form=form), rtol=RTOL)


@pytest.mark.parametrize("T", [1, 2, 4, 5, 9, 30])
def test_chunked_any_chunk_size_and_last_state(T):
    args, kw = problem(np.random.default_rng(2))
    y_ref, h_ref = mamba2.ssd(*args, **kw, return_state=True)
    for form, kwf in (("chunked", {"chunk_size": T}), ("quadratic", {})):
        y, h = mamba2.ssd(*args, **kw, form=form, return_state=True, **kwf)
        assert_close(f"{form} y", y_ref, y, rtol=RTOL)
        assert_close(f"{form} h_L", h_ref, h, rtol=RTOL)


@given(B=st.integers(1, 2), L=st.integers(1, 14), H=st.integers(1, 3), P=st.integers(1, 3),
       N=st.integers(1, 4), T=st.integers(1, 8), seed=st.integers(0, 10_000))
def test_forms_agree_property(B, L, H, P, N, T, seed):
    args, kw = problem(np.random.default_rng(seed), B=B, L=L, H=H, P=P, N=N)
    ref = mamba2.ssd(*args, **kw)
    assert_close("quadratic", ref, mamba2.ssd(*args, **kw, form="quadratic"), rtol=RTOL)
    assert_close("chunked", ref, mamba2.ssd(*args, **kw, form="chunked", chunk_size=T), rtol=RTOL)


def test_semiseparable_matrix_entries_and_rank():
    """M_ts = C_t . B_s exp(sum_{s<r<=t} dt_r A) below the diagonal, 0 above; every block below
    the diagonal has rank <= N (the defining property of an N-semiseparable matrix)."""
    args, _ = problem(np.random.default_rng(3), B=1, L=10, H=1, N=2)
    x, dt, A, B, C = args
    M = mamba2.ssd_matrix(dt, A, B, C)[0, 0]
    for t in range(10):
        for s in range(10):
            want = C[0, t, 0] @ B[0, s, 0] * np.exp(dt[0, s + 1:t + 1, 0].sum() * A[0]) if s <= t else 0.0
            assert abs(M[t, s] - want) <= 1e-13 * max(1.0, abs(want))
    for k in range(1, 10):
        assert np.linalg.matrix_rank(M[k:, :k], tol=1e-10) <= 2
    seg = mamba2.segsum(np.log(np.array([0.5, 0.25, 2.0])))
    assert_close("segsum", np.log(np.array([[1, 1, 1], [0.25, 1, 1], [0.5, 2, 1]])),
                 np.where(np.isinf(seg), 0.0, seg), rtol=1e-15)
    assert np.all(np.isneginf(seg[np.triu_indices(3, 1)]))


def test_chunked_no_overflow_with_large_decay():
    args, kw = problem(np.random.default_rng(4), L=12)
    x, dt, A, B, C = args
    dt = dt * 1e3
    with np.errstate(over="raise", invalid="raise"):
        for form in ("quadratic", "chunked"):
            y = mamba2.ssd(x, dt, A, B, C, **kw, form=form, chunk_size=5)
            assert_close(form, mamba2.ssd(x, dt, A, B, C, **kw), y, rtol=RTOL)


def test_chunked_gradients_vs_finite_differences_and_recurrent_autograd():
    """torch autograd through the chunked form equals finite differences of the NumPy recurrent
    form, and autograd through the recurrent form."""
    rng = np.random.default_rng(5)
    args, kw = problem(rng, B=1, L=7, H=2, P=2, N=2)
    dy = rng.standard_normal(args[0].shape)
    grads = {}
    for form in ("chunked", "recurrent"):
        t = [torch.tensor(a, requires_grad=True) for a in args]
        (mamba2.ssd(*t, state=torch.tensor(kw["state"]), form=form, chunk_size=3)
         * torch.tensor(dy)).sum().backward()
        grads[form] = [a.grad.numpy() for a in t]
    for i, name in enumerate(("x", "dt", "A", "B", "C")):
        def f(v, i=i):
            a = list(args)
            a[i] = v
            return float(np.sum(mamba2.ssd(*a, **kw) * dy))
        assert_close(f"d{name} fd", numerical_gradient(f, args[i]), grads["chunked"][i], rtol=1e-6)
        assert_close(f"d{name} autograd", grads["recurrent"][i], grads["chunked"][i], rtol=1e-11)


# --------------------------------------------------------------------------- the block
@pytest.mark.parametrize("L", [1, 6, 11])
def test_block_step_equals_forward(L):
    rng = np.random.default_rng(6)
    params = mamba2.init(rng, 4, N=3, head_dim=2, n_groups=2, d_conv=3, dt_min=0.1, dt_max=1.0)
    x = rng.standard_normal((2, L, 4))
    state, ys = None, []
    for t in range(L):
        y_t, state = mamba2.step(params, x[:, t], state)
        ys.append(y_t)
    for form in ("forward", "forward_quadratic", "forward_chunked"):
        y, s = getattr(mamba2, form)(params, x)
        assert_close(f"{form} y", np.stack(ys, 1), y, rtol=1e-11)
        for name, a, b in zip(mamba2.Mamba2State._fields, state, s):
            assert_close(f"{form} {name}", a, b, rtol=1e-11)


def test_block_groups_share_B_C():
    """With G = 1 and heads that receive identical x-projections, all heads see the same B, C."""
    p = mamba2.init(np.random.default_rng(7), 4, N=3, head_dim=2, n_groups=1)
    assert p["W_B"].shape == (4, 1, 3) and p["A_log"].shape == (4,)
    y, s = mamba2.forward_chunked(p, np.random.default_rng(8).standard_normal((1, 9, 4)), chunk_size=4)
    assert s.ssm.shape == (1, 4, 2, 3) and y.shape == (1, 9, 4)


def test_torch_and_float32():
    params, x, _ = mamba2.example(np.random.default_rng(9), dtype=np.float32)
    y, s = mamba2.forward(params, x)
    assert y.dtype == np.float32 and s.ssm.dtype == np.float32
    yt, _ = mamba2.forward_chunked(to_backend(params, "torch"), to_backend(x, "torch"), chunk_size=3)
    assert isinstance(yt, torch.Tensor)
    assert_close("torch vs numpy", y, yt, rtol=1e-5)


def test_bad_inputs():
    args, kw = problem(np.random.default_rng(10))
    x, dt, A, B, C = args
    with pytest.raises(ValueError, match="dt"):
        mamba2.ssd(x, dt[..., :2], A, B, C)
    with pytest.raises(ValueError, match="A"):
        mamba2.ssd(x, dt, A[:2], B, C)
    with pytest.raises(ValueError, match="C"):
        mamba2.ssd(x, dt, A, B, C[:, :-1])
    with pytest.raises(ValueError, match="L >= 1"):
        mamba2.ssd(x[:, :0], dt[:, :0], A, B[:, :0], C[:, :0])
    with pytest.raises(ValueError, match="x: expected a floating"):
        mamba2.ssd(x.astype(np.int32), dt, A, B, C)
    with pytest.raises(ValueError, match="form"):
        mamba2.ssd(x, dt, A, B, C, form="attention")
    with pytest.raises(ValueError, match="chunk_size"):
        mamba2.ssd(x, dt, A, B, C, form="chunked", chunk_size=-1)
    with pytest.raises(ValueError, match="head_dim"):
        mamba2.init(np.random.default_rng(0), 4, head_dim=3)
    params, xb, _ = mamba2.example(np.random.default_rng(0))
    with pytest.raises(ValueError, match="x"):
        mamba2.forward(params, xb[..., :2])
    with pytest.raises(ValueError, match="state"):
        mamba2.step(params, xb[:, 0], (1, 2))


def test_benchmark_quick_records_every_form():
    from rnnkit.bench import mamba2 as bench_mamba2
    records = bench_mamba2.run(quick=True, lengths=(32,))
    assert sorted(r["form"] for r in records if r["impl"] == "numpy") == sorted(mamba2.SSD_FORMS)
