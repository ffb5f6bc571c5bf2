"""Tests for rnnkit.retnet: retention in its three forms against the paper's recurrence, the decay
mask, chunk sizes 1 .. L + 3 and L = 1, the multi-scale retention layer against a complex-number
transcription of the paper, step == forward across calls, torch autograd, bad inputs."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnkit import retnet as rn
from rnnkit.core.testing import assert_close

RTOL = 1e-12     # float64; the forms sum the same products in different orders


def make(rng, B=2, H=3, L=9, dk=4, dv=3):
    q, k = rng.standard_normal((2, B, H, L, dk))
    v = rng.standard_normal((B, H, L, dv))
    gamma = np.array([0.97, 0.8, 0.5, 1.0, 0.9][:H])
    S0 = rng.standard_normal((B, H, dk, dv))
    return q, k, v, gamma, S0


def paper_recurrence(q, k, v, gamma, S0):
    """Sun et al. 2023, eq. (1)-(2) per head: s_n = gamma s_{n-1} + K_n^T v_n, o_n = Q_n s_n."""
    B, H, L, _ = q.shape
    o = np.zeros(v.shape)
    S_out = np.zeros(S0.shape)
    for b in range(B):
        for h in range(H):
            s = S0[b, h].copy()
            for n in range(L):
                s = gamma[h] * s + np.outer(k[b, h, n], v[b, h, n])
                o[b, h, n] = q[b, h, n] @ s
            S_out[b, h] = s
    return o, S_out


@pytest.mark.parametrize("L", [1, 2, 9])
def test_forms_match_paper(L):
    rng = np.random.default_rng(0)
    q, k, v, gamma, S0 = make(rng, L=L)
    ref_o, ref_S = paper_recurrence(q, k, v, gamma, S0)
    for form in rn.RETENTION_FORMS:
        for C in (range(1, L + 4) if form == "chunkwise" else [16]):
            o, S = rn.retention(q, k, v, gamma, form=form, chunk_size=C, state=S0)
            assert_close(f"o {form} C={C}", ref_o, o, rtol=RTOL)
            assert_close(f"S {form} C={C}", ref_S, S, rtol=RTOL)


def test_decay_mask_is_eq_5():
    """D_nm = gamma^(n-m) for n >= m, else 0 (eq. 5), entry by entry."""
    gamma = np.array([0.9, 0.5])
    D = rn.decay_mask(gamma, 5)
    for h in range(2):
        for n in range(5):
            for m in range(5):
                assert D[h, n, m] == (gamma[h] ** (n - m) if n >= m else 0.0)


def test_parallel_form_is_masked_attention():
    """From zero state, O = (Q K^T * D) V (eq. 5), no state term."""
    rng = np.random.default_rng(1)
    q, k, v, gamma, _ = make(rng, L=6)
    o, _ = rn.retention(q, k, v, gamma, form="parallel")
    ref = np.einsum("bhnm,bhmv->bhnv", np.einsum("bhnd,bhmd->bhnm", q, k) * rn.decay_mask(gamma, 6), v)
    assert_close("parallel", ref, o, rtol=RTOL)


def test_gammas_and_rotation():
    g = rn.gammas(np, 4, np.zeros(1))
    assert_close("gamma_h = 1 - 2^(-5-h)", np.array([1 - 1 / 32, 1 - 1 / 64, 1 - 1 / 128, 1 - 1 / 256]),
                 g, rtol=1e-15)
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((2, 6))
    dots = [np.dot(rn.rotate(a[None], np.array([n + 3.0]))[0], rn.rotate(b[None], np.array([3.0]))[0])
            for n in range(4)]
    dots2 = [np.dot(rn.rotate(a[None], np.array([n + 10.0]))[0], rn.rotate(b[None], np.array([10.0]))[0])
             for n in range(4)]
    assert_close("relative position only", np.array(dots), np.array(dots2), rtol=1e-13)


def paper_msr(params, x):
    """Section 2.1-2.2 written with complex numbers: Q_n = (X W_Q)_n e^{i n theta},
    K_m = (X W_K)_m e^{i m theta} / sqrt(d), o_n = sum_{m<=n} gamma^(n-m) Re(Q_n K_m^dagger) v_m,
    Y = GroupNorm(o) per head, MSR = (swish(X W_G) * Y) W_O. Pairs (2i, 2i+1) are one complex number."""
    B, L, D = x.shape
    _, H, dk = params["W_Q"].shape
    theta = 10000.0 ** (-2 * np.arange(dk // 2) / dk)
    gamma = 1 - 2.0 ** (-5 - np.arange(H))
    out = np.zeros((B, L, D))
    for b in range(B):
        heads = []
        for h in range(H):
            qr, kr = x[b] @ params["W_Q"][:, h], x[b] @ params["W_K"][:, h]
            v = x[b] @ params["W_V"][:, h]
            Q = (qr[:, 0::2] + 1j * qr[:, 1::2]) * np.exp(1j * np.arange(L)[:, None] * theta)
            K = (kr[:, 0::2] + 1j * kr[:, 1::2]) * np.exp(1j * np.arange(L)[:, None] * theta) / np.sqrt(dk)
            o = np.zeros((L, v.shape[1]))
            for n in range(L):
                for m in range(n + 1):
                    o[n] += gamma[h] ** (n - m) * np.real(Q[n] @ np.conj(K[m])) * v[m]
            o = (o - o.mean(-1, keepdims=True)) / np.sqrt(o.var(-1, keepdims=True) + 1e-5)
            z = x[b] @ params["W_G"][:, h]
            heads.append(z / (1 + np.exp(-z)) * o)
        out[b] = sum(heads[h] @ params["W_O"][h] for h in range(H))
    return out


@pytest.mark.parametrize("fn", ["forward", "forward_parallel", "forward_chunkwise"])
def test_layer_matches_paper(fn):
    rng = np.random.default_rng(3)
    params = rn.init(rng, 8, n_heads=2, dk=4, dv=3)
    x = rng.standard_normal((2, 7, 8))
    y, state = getattr(rn, fn)(params, x)
    assert_close(fn, paper_msr(params, x), y, rtol=1e-11)
    assert_close("position", np.full(2, 7.0), state.pos, rtol=0)


def test_step_continues_forward():
    """forward on the first 5 tokens, then step on the rest, equals forward on all of them."""
    rng = np.random.default_rng(4)
    params, x, _ = rn.example(rng)
    y, S = rn.forward_chunkwise(params, x, chunk_size=3)
    y1, st1 = rn.forward_parallel(params, x[:, :5])
    ys = [y1]
    for t in range(5, x.shape[1]):
        yt, st1 = rn.step(params, x[:, t], st1)
        ys.append(yt[:, None])
    assert_close("step after forward", y, np.concatenate(ys, 1), rtol=1e-12)
    assert_close("state", S.S, st1.S, rtol=1e-12)


def test_torch_stays_torch_and_autograd_flows():
    rng = np.random.default_rng(5)
    q, k, v, gamma, S0 = make(rng, B=1, L=6)
    w = torch.tensor(rng.standard_normal(v.shape))
    grads = {}
    for form in rn.RETENTION_FORMS:
        T = [torch.tensor(a, requires_grad=True) for a in (q, k, v, S0)]
        o, S = rn.retention(T[0], T[1], T[2], torch.tensor(gamma), form=form, chunk_size=4, state=T[3])
        assert isinstance(o, torch.Tensor) and isinstance(S, torch.Tensor)
        ((o * w).sum() + S.sum()).backward()
        grads[form] = [t.grad.numpy() for t in T]
    for form in rn.RETENTION_FORMS:
        for i in range(4):
            assert_close(f"{form} grad {i}", grads["recurrent"][i], grads[form][i], rtol=1e-12)


def test_float32_stays_float32():
    rng = np.random.default_rng(6)
    q, k, v, gamma, _ = make(rng)
    for form in rn.RETENTION_FORMS:
        o, S = rn.retention(*(a.astype(np.float32) for a in (q, k, v, gamma)), form=form, chunk_size=4)
        assert o.dtype == np.float32 and S.dtype == np.float32


def test_bad_inputs():
    rng = np.random.default_rng(7)
    q, k, v, gamma, S0 = make(rng)
    with pytest.raises(ValueError, match="gamma"):
        rn.retention(q, k, v, gamma[:2])
    with pytest.raises(ValueError, match="k"):
        rn.retention(q, k[..., :-1], v, gamma)
    with pytest.raises(ValueError, match="L >= 1"):
        rn.retention(q[:, :, :0], k[:, :, :0], v[:, :, :0], gamma)
    with pytest.raises(ValueError, match="floating"):
        rn.retention(q, k, v.astype(np.int32), gamma)
    with pytest.raises(ValueError, match="form"):
        rn.retention(q, k, v, gamma, form="conv")
    with pytest.raises(ValueError, match="chunk_size"):
        rn.retention(q, k, v, gamma, form="chunkwise", chunk_size=0)
    with pytest.raises(ValueError, match="state"):
        rn.retention(q, k, v, gamma, state=S0[:1])
    with pytest.raises(ValueError, match="dk"):
        rn.init(rng, 6, n_heads=2, dk=3)
    params, x, _ = rn.example(rng)
    with pytest.raises(ValueError, match="x"):
        rn.forward(params, x[..., :-1])
    with pytest.raises(ValueError, match="state"):
        rn.forward(params, x, state=(S0,))


@settings(max_examples=40, deadline=None)
@given(B=st.integers(1, 2), H=st.integers(1, 3), L=st.integers(1, 12), dk=st.integers(1, 4),
       dv=st.integers(1, 3), C=st.integers(1, 14))
def test_property_forms_agree(B, H, L, dk, dv, C):
    rng = np.random.default_rng(L * 13 + C)
    q, k, v, gamma, S0 = make(rng, B, H, L, dk, dv)
    ref = rn.retention(q, k, v, gamma, state=S0)
    for form in ("parallel", "chunkwise"):
        o, S = rn.retention(q, k, v, gamma, form=form, chunk_size=C, state=S0)
        assert_close(f"o {form}", ref[0], o, rtol=1e-11)
        assert_close(f"S {form}", ref[1], S, rtol=1e-11)


def test_benchmark_quick_mode_records_every_form():
    from rnnkit.bench import retnet as bench_retnet
    records = bench_retnet.run(lengths=(40,), quick=True)
    forms = {r["form"] for r in records if r["impl"] == "numpy"}
    assert forms == set(rn.RETENTION_FORMS)
    assert all(r["params"]["L"] == 40 and r["min_s"] > 0 for r in records)
