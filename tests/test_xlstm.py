"""Tests for rnnkit.xlstm: sLSTM and mLSTM against loops written from the paper, forms agree,
the stabiliser survives inputs that overflow the naive form, the block's step == forward."""
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rnnkit import xlstm as X
from rnnkit.core.testing import assert_close

RTOL = 1e-11   # float64; the forms reorder sums of exponentials


def mlstm_inputs(rng, B=2, NH=2, L=11, dk=3, dv=4, scale_i=3.0):
    return (rng.standard_normal((B, NH, L, dk)), rng.standard_normal((B, NH, L, dk)),
            rng.standard_normal((B, NH, L, dv)), scale_i * rng.standard_normal((B, NH, L)),
            2 * rng.standard_normal((B, NH, L)))


def paper_mlstm(q, k, v, i_pre, f_pre):
    """Beck et al. 2024, eqs. (19)-(27) without stabiliser, column form C (dv, dk), sigmoid f."""
    B, NH, L, dk = q.shape
    out = np.zeros(v.shape)
    for b in range(B):
        for h in range(NH):
            C, n = np.zeros((v.shape[-1], dk)), np.zeros(dk)
            for t in range(L):
                f, i = 1 / (1 + np.exp(-f_pre[b, h, t])), np.exp(i_pre[b, h, t])
                C = f * C + i * np.outer(v[b, h, t], k[b, h, t])
                n = f * n + i * k[b, h, t]
                out[b, h, t] = C @ q[b, h, t] / max(abs(n @ q[b, h, t]), 1.0)
    return out


def paper_slstm(p, x, forget):
    """Beck et al. 2024, eqs. (8)-(14) without stabiliser, one unit at a time."""
    B, L, _ = x.shape
    H = p["R"].shape[0]
    out = np.zeros((B, L, H))
    for b in range(B):
        c, n, h = np.zeros(H), np.zeros(H), np.zeros(H)
        for t in range(L):
            pre = x[b, t] @ p["W"] + h @ p["R"] + p["b"]
            z, i, f, o = np.tanh(pre[:H]), np.exp(pre[H:2 * H]), pre[2 * H:3 * H], pre[3 * H:]
            f = np.exp(f) if forget == "exp" else 1 / (1 + np.exp(-f))
            c, n = f * c + i * z, f * n + i
            h = 1 / (1 + np.exp(-o)) * c / n
            out[b, t] = h
    return out


@pytest.mark.parametrize("form,chunk", [("recurrent", 1), ("parallel", 1), ("chunkwise", 1),
                                        ("chunkwise", 3), ("chunkwise", 4), ("chunkwise", 32)])
def test_mlstm_forms_match_paper(form, chunk):
    rng = np.random.default_rng(0)
    args = mlstm_inputs(rng)
    h, state = X.mlstm(*args, form=form, chunk_size=chunk)
    assert_close(f"mLSTM {form} C={chunk}", paper_mlstm(*args), h, rtol=RTOL)
    _, ref_state = X.mlstm(*args)
    for name, a, b in zip(("C", "n", "m"), ref_state, state):
        assert_close(f"state {name}", a, b, rtol=RTOL)


def test_mlstm_state_carry_and_length_one():
    rng = np.random.default_rng(1)
    args = mlstm_inputs(rng, L=9)
    h, s = X.mlstm(*args, form="chunkwise", chunk_size=4)
    h1, s1 = X.mlstm(*(a[:, :, :5] for a in args), form="parallel")
    h2, s2 = X.mlstm(*(a[:, :, 5:] for a in args), form="chunkwise", chunk_size=2, state=s1)
    assert_close("carried", h, np.concatenate([h1, h2], axis=2), rtol=RTOL)
    one = tuple(a[:, :, :1] for a in args)
    assert_close("L=1", X.mlstm(*one)[0], X.mlstm(*one, form="chunkwise", chunk_size=5)[0], rtol=RTOL)


def test_mlstm_stabiliser_survives_overflow():
    """i~ = 100 overflows exp in float32 (max ~ 3.4e38 = e^88.7): the naive form gives NaN, the
    stabilised forms give the same finite answer as float64 (where e^100 is still finite)."""
    rng = np.random.default_rng(2)
    q, k, v, i_pre, f_pre = mlstm_inputs(rng)
    i_pre = i_pre + 100.0
    ref = paper_mlstm(q, k, v, i_pre, f_pre)                # float64: e^103 is representable
    f32 = [a.astype(np.float32) for a in (q, k, v, i_pre, f_pre)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        naive = X.mlstm(*f32, stabilize=False)[0]
    assert not np.isfinite(naive).all()
    for form in X.MLSTM_FORMS:
        got = X.mlstm(*f32, form=form, chunk_size=4)[0]
        assert got.dtype == np.float32
        assert_close(f"stabilised {form} in float32", ref, got, rtol=1e-4)


@pytest.mark.parametrize("forget", ["sigmoid", "exp"])
def test_slstm_matches_paper_and_stabiliser(forget):
    rng = np.random.default_rng(3)
    p = X.slstm_init(rng, 3, 5)
    x = rng.standard_normal((2, 6, 3))
    h, _ = X.slstm_forward(p, x, forget=forget)
    assert_close("sLSTM vs paper", paper_slstm(p, x, forget), h, rtol=1e-12)
    hs, state = [], None
    for t in range(6):
        h_t, state = X.slstm_step(p, x[:, t], state, forget=forget)
        hs.append(h_t)
    assert_close("step == forward", h, np.stack(hs, 1), rtol=0)
    # overflow: a large input-gate bias (i~ ~ 120) kills the naive float32 cell, not the stabilised one
    p32 = {k_: v_.astype(np.float32) for k_, v_ in p.items()}
    p32["b"][5:10] += 120.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        naive, _ = X.slstm_forward(p32, x.astype(np.float32), forget=forget, stabilize=False)
    stab, _ = X.slstm_forward(p32, x.astype(np.float32), forget=forget)
    p64 = dict(p)
    p64["b"] = p["b"].copy()
    p64["b"][5:10] += 120.0
    assert not np.isfinite(naive).all()
    assert_close("stabilised float32 vs float64", paper_slstm(p64, x, forget), stab, rtol=1e-4)


def test_block_step_forward_forms_and_torch():
    rng = np.random.default_rng(4)
    params, x, _ = X.example(rng)
    y, s = X.forward(params, x)
    ys, st_ = [], None
    for t in range(x.shape[1]):
        y_t, st_ = X.step(params, x[:, t], st_)
        ys.append(y_t)
    assert_close("step loop", y, np.stack(ys, 1), rtol=1e-13)
    for name in X.FORMS:
        kw = {"chunk_size": 3} if name == "forward_chunkwise" else {}
        assert_close(name, y, getattr(X, name)(params, x, **kw)[0], rtol=RTOL)
    tp = {k_: torch.tensor(v_, requires_grad=True) for k_, v_ in params.items()}
    xt = torch.tensor(x)
    a = X.forward(tp, xt)[0].square().sum()
    ga = torch.autograd.grad(a, list(tp.values()))
    b = X.forward_chunkwise(tp, xt, chunk_size=3)[0].square().sum()
    gb = torch.autograd.grad(b, list(tp.values()))
    for name, u, w in zip(tp, ga, gb):
        assert torch.isfinite(w).all()
        assert_close(f"d{name} chunkwise vs recurrent", u, w, rtol=1e-10)
    y32, _ = X.forward(*X.example(rng, dtype=np.float32)[:2])
    assert y32.dtype == np.float32


def paper_mlstm_block(p, x):
    """The small mLSTM block token by token, from Beck et al. 2024 (Figure 10, pre-up-projection,
    without the causal convolution, as the module documents) and eqs. (19)-(27) unstabilised:
    LN, up-projection, heads, exponential input gate, sigmoid forget gate, per-head norm, skip,
    swish output gate, down-projection, residual."""
    def ln(z, w, b=0.0):
        return (z - z.mean()) / np.sqrt(z.var() + 1e-5) * w + b

    B, L, D = x.shape
    NH, E = p["b_i"].shape[0], p["W_up"].shape[1]
    dh = E // NH
    out = np.zeros_like(x)
    for b in range(B):
        C, n = np.zeros((NH, dh, dh)), np.zeros((NH, dh))                 # column form C (dv, dk)
        for t in range(L):
            u = ln(x[b, t], p["ln_w"], p["ln_b"])
            xm, z = u @ p["W_up"], u @ p["W_z"]
            q, k, v = xm @ p["W_q"], xm @ p["W_k"] / np.sqrt(dh), xm @ p["W_v"]
            i_g = np.exp(xm @ p["W_i"] + p["b_i"])
            f_g = 1 / (1 + np.exp(-(xm @ p["W_f"] + p["b_f"])))
            h = np.zeros(E)
            for j in range(NH):
                sl = slice(j * dh, (j + 1) * dh)
                C[j] = f_g[j] * C[j] + i_g[j] * np.outer(v[sl], k[sl])
                n[j] = f_g[j] * n[j] + i_g[j] * k[sl]
                h_j = C[j] @ q[sl] / max(abs(n[j] @ q[sl]), 1.0)
                h[sl] = ln(h_j, p["hn_w"][sl])
            h = h + p["skip"] * xm
            out[b, t] = x[b, t] + (h * z / (1 + np.exp(-z))) @ p["W_down"]
    return out


def test_block_matches_paper_loop():
    rng = np.random.default_rng(7)
    params = X.init(rng, 4, n_heads=2)
    x = rng.standard_normal((2, 7, 4))
    ref = paper_mlstm_block(params, x)
    assert_close("block forward vs the paper, token by token", ref, X.forward(params, x)[0], rtol=1e-11)
    assert_close("forward_parallel", ref, X.forward_parallel(params, x)[0], rtol=1e-11)
    assert_close("forward_chunkwise C=3", ref, X.forward_chunkwise(params, x, chunk_size=3)[0], rtol=1e-11)
    assert_close("L = 1", paper_mlstm_block(params, x[:, :1]), X.forward(params, x[:, :1])[0], rtol=1e-11)


def test_bad_inputs():
    rng = np.random.default_rng(5)
    q, k, v, i_pre, f_pre = mlstm_inputs(rng)
    with pytest.raises(ValueError, match="f_pre"):
        X.mlstm(q, k, v, i_pre, f_pre[:, :, :-1])
    with pytest.raises(ValueError, match="L >= 1"):
        X.mlstm(*(a[:, :, :0] for a in (q, k, v, i_pre, f_pre)))
    with pytest.raises(ValueError, match="form"):
        X.mlstm(q, k, v, i_pre, f_pre, form="scan")
    with pytest.raises(ValueError, match="stabilize"):
        X.mlstm(q, k, v, i_pre, f_pre, form="parallel", stabilize=False)
    with pytest.raises(ValueError, match="forget"):
        X.mlstm(q, k, v, i_pre, f_pre, forget="tanh")
    with pytest.raises(ValueError, match="floating"):
        X.mlstm(q.astype(np.int32), k, v, i_pre, f_pre)
    params, x, _ = X.example(rng)
    with pytest.raises(ValueError, match="x"):
        X.forward(params, x[:, :, :3])
    with pytest.raises(ValueError, match="L >= 1"):
        X.forward(params, x[:, :0])
    with pytest.raises(ValueError, match="params"):
        X.forward({k_: v_ for k_, v_ in params.items() if k_ != "W_q"}, x)
    with pytest.raises(ValueError, match="x"):
        X.slstm_forward(X.slstm_init(rng, 3, 4), x)


def test_slstm_length_one_carried_state_and_bad_states():
    rng = np.random.default_rng(6)
    p = X.slstm_init(rng, 3, 4)
    x = rng.standard_normal((2, 7, 3))
    h, _ = X.slstm_forward(p, x)
    assert_close("L = 1 vs paper", paper_slstm(p, x[:, :1], "sigmoid"), X.slstm_forward(p, x[:, :1])[0],
                 rtol=1e-12)
    h1, s1 = X.slstm_forward(p, x[:, :3])
    h2, _ = X.slstm_forward(p, x[:, 3:], s1)
    assert_close("carried state", h, np.concatenate([h1, h2], axis=1), rtol=1e-13)
    with pytest.raises(ValueError, match="state.m"):
        X.slstm_forward(p, x, X.SState(s1.c, s1.n, s1.m[:, :-1], s1.h))
    with pytest.raises(ValueError, match="state.h"):
        X.slstm_step(p, x[:, 0], X.SState(s1.c, s1.n, s1.m, s1.h[:1]))
    q, k, v, i_pre, f_pre = mlstm_inputs(rng)
    _, ms = X.mlstm(q, k, v, i_pre, f_pre)
    with pytest.raises(ValueError, match="state.n"):
        X.mlstm(q, k, v, i_pre, f_pre, state=X.MState(ms.C, ms.n[..., :-1], ms.m))
    with pytest.raises(ValueError, match="state.m"):
        X.mlstm(q, k, v, i_pre, f_pre, state=X.MState(ms.C, ms.n, ms.m[:1]))


@given(L=st.integers(1, 10), chunk=st.integers(1, 6), NH=st.integers(1, 2), B=st.integers(1, 2))
def test_property_mlstm_forms(L, chunk, NH, B):
    rng = np.random.default_rng(L * 11 + chunk)
    args = mlstm_inputs(rng, B=B, NH=NH, L=L)
    ref = X.mlstm(*args)[0]
    assert_close("chunkwise", ref, X.mlstm(*args, form="chunkwise", chunk_size=chunk)[0], rtol=RTOL)
    assert_close("parallel", ref, X.mlstm(*args, form="parallel")[0], rtol=RTOL)
