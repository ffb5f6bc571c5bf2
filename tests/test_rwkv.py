"""Tests for rnnkit.rwkv: the v4 WKV (stable == naive where both are finite, survives overflow),
v6 chunkwise == recurrent == a loop from the paper (from a carried state too), v7 against a loop
from the paper and reduced to the delta rule, the RWKV-4 block against a token-by-token loop from
the paper and step == forward, torch in/out, bad inputs (states included)."""
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rnnkit import deltanet, rwkv
from rnnkit.core.testing import assert_close

RTOL = 1e-12


def v4_inputs(rng, B=2, L=9, D=3):
    return (rng.uniform(0.1, 2.0, D), rng.standard_normal(D), rng.standard_normal((B, L, D)),
            rng.standard_normal((B, L, D)))


def paper_wkv4(w, u, k, v):
    """Peng et al. 2023, eq. (14), one sum per (b, t, d)."""
    B, L, D = k.shape
    out = np.zeros_like(k)
    for b in range(B):
        for t in range(L):
            for d in range(D):
                num = sum(np.exp(-(t - 1 - i) * w[d] + k[b, i, d]) * v[b, i, d] for i in range(t))
                den = sum(np.exp(-(t - 1 - i) * w[d] + k[b, i, d]) for i in range(t))
                e = np.exp(u[d] + k[b, t, d])
                out[b, t, d] = (num + e * v[b, t, d]) / (den + e)
    return out


def test_wkv4_forms_agree_with_paper():
    rng = np.random.default_rng(0)
    args = v4_inputs(rng)
    ref = paper_wkv4(*args)
    assert_close("naive", ref, rwkv.wkv4_naive(*args), rtol=RTOL)
    assert_close("stable", ref, rwkv.wkv4(*args)[0], rtol=RTOL)
    assert_close("unstabilised recurrence", ref, rwkv.wkv4(*args, stabilize=False)[0], rtol=1e-11)
    # carrying the state over a split
    o1, s1 = rwkv.wkv4(args[0], args[1], args[2][:, :4], args[3][:, :4])
    o2, _ = rwkv.wkv4(args[0], args[1], args[2][:, 4:], args[3][:, 4:], state=s1)
    assert_close("split", ref, np.concatenate([o1, o2], axis=1), rtol=RTOL)
    one = (args[0], args[1], args[2][:, :1], args[3][:, :1])
    assert_close("L = 1 is v", args[3][:, :1], rwkv.wkv4(*one)[0], rtol=RTOL)


def test_wkv4_stable_survives_overflow():
    """k ~ 100 overflows e^k in float32; the running-maximum form gives the float64 answer."""
    rng = np.random.default_rng(1)
    w, u, k, v = v4_inputs(rng)
    k = k + 100.0
    ref = paper_wkv4(w, u, k, v)
    f32 = [a.astype(np.float32) for a in (w, u, k, v)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert not np.isfinite(rwkv.wkv4_naive(*f32)).all()
        assert not np.isfinite(rwkv.wkv4(*f32, stabilize=False)[0]).all()
    got = rwkv.wkv4(*f32)[0]
    assert got.dtype == np.float32
    assert_close("stable float32", ref, got, rtol=1e-5)


def v6_inputs(rng, B=2, H=2, L=10, dk=3, dv=4):
    return (rng.standard_normal((B, H, L, dk)), rng.standard_normal((B, H, L, dk)),
            rng.standard_normal((B, H, L, dv)), -np.exp(rng.standard_normal((B, H, L, dk))),
            rng.standard_normal((H, dk)))


def paper_wkv6(r, k, v, log_w, u, S0=None):
    """Peng et al. 2024 (Finch), eq. for wkv_t: column state as in the paper, one head at a time."""
    B, H, L, dk = r.shape
    out = np.zeros(v.shape)
    for b in range(B):
        for h in range(H):
            S = np.zeros((dk, v.shape[-1])) if S0 is None else S0[b, h].copy()
            for t in range(L):
                kv = np.outer(k[b, h, t], v[b, h, t])
                out[b, h, t] = r[b, h, t] @ (np.diag(u[h]) @ kv + S)
                S = np.diag(np.exp(log_w[b, h, t])) @ S + kv
    return out


@pytest.mark.parametrize("chunk", [1, 3, 4, 16])
def test_wkv6_forms(chunk):
    rng = np.random.default_rng(2)
    args = v6_inputs(rng)
    ref = paper_wkv6(*args)
    o, S = rwkv.wkv6(*args)
    assert_close("recurrent", ref, o, rtol=RTOL)
    o2, S2 = rwkv.wkv6(*args, form="chunkwise", chunk_size=chunk)
    assert_close(f"chunkwise C={chunk}", ref, o2, rtol=RTOL)
    assert_close("state", S, S2, rtol=RTOL)


def test_wkv7_with_unit_decay_is_the_delta_rule():
    rng = np.random.default_rng(3)
    B, H, L, dk, dv = 2, 2, 7, 3, 2
    q = rng.standard_normal((B, H, L, dk))
    k = deltanet.l2_normalize(rng.standard_normal((B, H, L, dk)))
    v = rng.standard_normal((B, H, L, dv))
    beta = rng.uniform(0, 1, (B, H, L))
    ref, S_ref = deltanet.delta_rule(q, k, v, beta)
    a = np.broadcast_to(beta[..., None], k.shape)
    o, S = rwkv.wkv7(q, np.zeros_like(k), beta[..., None] * k, v, k, a)
    assert_close("v7 == delta rule", ref, o, rtol=RTOL)
    assert_close("state", S_ref, S, rtol=RTOL)


def test_block_step_forward_torch():
    rng = np.random.default_rng(4)
    params, x, _ = rwkv.example(rng)
    y, s = rwkv.forward(params, x)
    ys, st_ = [], None
    for t in range(x.shape[1]):
        y_t, st_ = rwkv.step(params, x[:, t], st_)
        ys.append(y_t)
    assert_close("step loop", y, np.stack(ys, 1), rtol=1e-13)
    y1, s1 = rwkv.forward(params, x[:, :2])
    y2, _ = rwkv.forward(params, x[:, 2:], s1)
    assert_close("carried state", y, np.concatenate([y1, y2], 1), rtol=1e-13)
    tp = {k_: torch.tensor(v_, requires_grad=True) for k_, v_ in params.items()}
    yt, _ = rwkv.forward(tp, torch.tensor(x))
    assert isinstance(yt, torch.Tensor)
    assert_close("torch", y, yt, rtol=1e-13)
    yt.square().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in tp.values())
    y32, _ = rwkv.forward(*rwkv.example(rng, dtype=np.float32)[:2])
    assert y32.dtype == np.float32


def test_bad_inputs():
    rng = np.random.default_rng(5)
    w, u, k, v = v4_inputs(rng)
    with pytest.raises(ValueError, match="u"):
        rwkv.wkv4(w, u[:-1], k, v)
    with pytest.raises(ValueError, match="L >= 1"):
        rwkv.wkv4(w, u, k[:, :0], v[:, :0])
    with pytest.raises(ValueError, match="floating"):
        rwkv.wkv4(w, u, k.astype(np.int64), v)
    args = v6_inputs(rng)
    with pytest.raises(ValueError, match="form"):
        rwkv.wkv6(*args, form="parallel")
    with pytest.raises(ValueError, match="log_w"):
        rwkv.wkv6(args[0], args[1], args[2], args[3][..., :-1], args[4])
    params, x, _ = rwkv.example(rng)
    with pytest.raises(ValueError, match="x"):
        rwkv.forward(params, x[..., :3])
    with pytest.raises(ValueError, match="params"):
        rwkv.forward({k_: v_ for k_, v_ in params.items() if k_ != "W_o"}, x)


def test_wkv6_with_initial_state_and_length_one():
    """A carried state (B, H, dk, dv) against the paper loop started from it; L = 1; a split run."""
    rng = np.random.default_rng(12)
    args = v6_inputs(rng, L=7)
    S0 = rng.standard_normal((2, 2, 3, 4))
    ref = paper_wkv6(*args, S0=S0)
    for form, chunk in (("recurrent", 1), ("chunkwise", 3), ("chunkwise", 16)):
        o, _ = rwkv.wkv6(*args, form=form, chunk_size=chunk, state=S0)
        assert_close(f"{form} C={chunk} from S0", ref, o, rtol=RTOL)
    one = [a[:, :, :1] for a in args[:4]] + [args[4]]
    assert_close("L = 1", paper_wkv6(*one, S0=S0), rwkv.wkv6(*one, form="chunkwise", state=S0)[0],
                 rtol=RTOL)
    o1, s1 = rwkv.wkv6(*[a[:, :, :4] for a in args[:4]], args[4], form="chunkwise", chunk_size=3,
                       state=S0)
    o2, _ = rwkv.wkv6(*[a[:, :, 4:] for a in args[:4]], args[4], state=s1)
    assert_close("split", ref, np.concatenate([o1, o2], axis=2), rtol=RTOL)


def paper_wkv7(r, log_w, k, v, kh, a, S0):
    """Peng et al. 2025 (RWKV-7), the wkv state in the paper's layout (dv, dk), one head at a time:
    wkv_t = wkv_{t-1} (diag(w_t) - kh_t^T (a_t * kh_t)) + v_t^T k_t,  o_t = wkv_t r_t^T."""
    B, H, L, dk = r.shape
    out = np.zeros(v.shape)
    S_out = np.zeros(S0.shape)
    for b in range(B):
        for h in range(H):
            S = S0[b, h].T.copy()                                          # (dv, dk)
            for t in range(L):
                khat = kh[b, h, t][None]                                   # (1, dk)
                G = np.diag(np.exp(log_w[b, h, t])) - khat.T @ (a[b, h, t][None] * khat)
                S = S @ G + v[b, h, t][:, None] @ k[b, h, t][None]
                out[b, h, t] = S @ r[b, h, t]
            S_out[b, h] = S.T
    return out, S_out


def v7_inputs(rng, B=2, H=2, L=8, dk=3, dv=2):
    kh = deltanet.l2_normalize(rng.standard_normal((B, H, L, dk)))
    return (rng.standard_normal((B, H, L, dk)), -np.exp(rng.standard_normal((B, H, L, dk)) - 1),
            rng.standard_normal((B, H, L, dk)), rng.standard_normal((B, H, L, dv)), kh,
            rng.uniform(0, 1, (B, H, L, dk)))


@pytest.mark.parametrize("L", [1, 8])
def test_wkv7_matches_paper_loop(L):
    """General decay, vector-valued learning rates and removal keys, from a random state."""
    rng = np.random.default_rng(13)
    args = v7_inputs(rng, L=L)
    S0 = rng.standard_normal((2, 2, 3, 2))
    ref_o, ref_S = paper_wkv7(*args, S0)
    o, S = rwkv.wkv7(*args, state=S0)
    assert_close("wkv7 o", ref_o, o, rtol=RTOL)
    assert_close("wkv7 state", ref_S, S, rtol=RTOL)


def paper_rwkv4_block(p, x):
    """Peng et al. 2023, eqs. (11)-(17), one token at a time, WKV from the sums of eq. (14):
    time mixing on LN(x) with the token shift, then channel mixing on LN(x + time mixing)."""
    def ln(z, w, b):
        return (z - z.mean()) / np.sqrt(z.var() + 1e-5) * w + b

    def sig(z):
        return 1 / (1 + np.exp(-z))

    B, L, D = x.shape
    w, u = np.exp(p["time_decay"]), p["time_first"]
    out = np.zeros_like(x)
    for b in range(B):
        prev_u, prev_c, ks, vs = np.zeros(D), np.zeros(D), [], []
        for t in range(L):
            xt = ln(x[b, t], p["ln1_w"], p["ln1_b"])
            r = sig((p["mu_r"] * xt + (1 - p["mu_r"]) * prev_u) @ p["W_r"])
            k = (p["mu_k"] * xt + (1 - p["mu_k"]) * prev_u) @ p["W_k"]
            v = (p["mu_v"] * xt + (1 - p["mu_v"]) * prev_u) @ p["W_v"]
            weights = [np.exp(-(t - 1 - i) * w + ks[i]) for i in range(t)]
            num = sum(wi * vs[i] for i, wi in enumerate(weights)) + np.exp(u + k) * v
            den = sum(weights) + np.exp(u + k)
            ks.append(k)
            vs.append(v)
            h = x[b, t] + (r * (num / den)) @ p["W_o"]
            c = ln(h, p["ln2_w"], p["ln2_b"])
            rr = sig((p["cmu_r"] * c + (1 - p["cmu_r"]) * prev_c) @ p["C_r"])
            kk = np.maximum((p["cmu_k"] * c + (1 - p["cmu_k"]) * prev_c) @ p["C_k"], 0.0)
            out[b, t] = h + rr * ((kk ** 2) @ p["C_v"])
            prev_u, prev_c = xt, c
    return out


def test_block_matches_paper_loop():
    rng = np.random.default_rng(14)
    params = rwkv.init(rng, 5)
    x = rng.standard_normal((2, 7, 5))
    assert_close("RWKV-4 block vs the paper, token by token", paper_rwkv4_block(params, x),
                 rwkv.forward(params, x)[0], rtol=1e-12)
    assert_close("L = 1", paper_rwkv4_block(params, x[:, :1]), rwkv.forward(params, x[:, :1])[0],
                 rtol=1e-12)


def test_bad_inputs_v7_and_states():
    rng = np.random.default_rng(15)
    args = v7_inputs(rng)
    with pytest.raises(ValueError, match="kh"):
        rwkv.wkv7(*args[:4], args[4][..., :-1], args[5])
    with pytest.raises(ValueError, match="L >= 1"):
        rwkv.wkv7(*(a[:, :, :0] for a in args))
    with pytest.raises(ValueError, match="state"):
        rwkv.wkv7(*args, state=np.zeros((2, 2, 3, 3)))
    with pytest.raises(ValueError, match="floating"):
        rwkv.wkv7(*args[:5], args[5].astype(np.int64))
    w, u, k, v = v4_inputs(rng)
    _, st4 = rwkv.wkv4(w, u, k, v)
    with pytest.raises(ValueError, match="state.p"):
        rwkv.wkv4(w, u, k, v, state=rwkv.WKVState(st4.a, st4.b, st4.p[:, :-1]))
    with pytest.raises(ValueError, match="state"):
        rwkv.wkv6(*v6_inputs(rng), state=np.zeros((2, 2, 4, 4)))
    with pytest.raises(ValueError, match="chunk_size"):
        rwkv.wkv6(*v6_inputs(rng), form="chunkwise", chunk_size=0)


@given(L=st.integers(1, 9), chunk=st.integers(1, 5), B=st.integers(1, 2), H=st.integers(1, 2))
def test_property_wkv6(L, chunk, B, H):
    rng = np.random.default_rng(L * 13 + chunk)
    args = v6_inputs(rng, B=B, H=H, L=L)
    assert_close("wkv6", rwkv.wkv6(*args)[0],
                 rwkv.wkv6(*args, form="chunkwise", chunk_size=chunk)[0], rtol=1e-11)
