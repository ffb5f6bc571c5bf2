"""Tests for rnnkit.linear_attention: linear attention, GLA and HGRN2 in every form against naive
loops written from the papers' equations, chunk sizes 1 .. L + 3, L = 1, the stable chunkwise GLA
under strong decay, torch autograd, bad inputs."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnkit import linear_attention as la
from rnnkit.core.testing import assert_close, numerical_gradient

RTOL = 1e-12     # float64: the forms sum the same products in different orders (a few ulps)


def make(rng, B=2, H=2, L=9, dk=3, dv=4, g_max=1.0):
    q, k = rng.standard_normal((2, B, H, L, dk))
    v = rng.standard_normal((B, H, L, dv))
    g = -rng.uniform(0.0, g_max, (B, H, L, dk))
    S0 = rng.standard_normal((B, H, dk, dv))
    return q, k, v, g, S0


def katharopoulos_loop(q, k, v, phi, normalize, S0=None, z0=None):
    """Katharopoulos et al. 2020 eq. (4)/(6) with causal masking (eq. 8-9), one output at a time:
    V'_i = phi(Q_i)^T sum_{j<=i} phi(K_j) V_j^T / phi(Q_i)^T sum_{j<=i} phi(K_j), no state used."""
    B, H, L, _ = q.shape
    o = np.zeros(v.shape)
    for b in range(B):
        for h in range(H):
            for i in range(L):
                fq = phi(q[b, h, i])
                num = sum((fq @ phi(k[b, h, j])) * v[b, h, j] for j in range(i + 1))
                den = sum(fq @ phi(k[b, h, j]) for j in range(i + 1))
                if S0 is not None:
                    num = num + fq @ S0[b, h]
                    den = den + fq @ z0[b, h]
                o[b, h, i] = num / den if normalize else num
    return o


def gla_loop(q, k, v, g, S0):
    """GLA (Yang et al. 2024, eq. 3): S_t = (alpha_t^T 1) * S_{t-1} + k_t^T v_t, o_t = q_t S_t,
    alpha_t = exp(g_t); per batch and head, S (dk, dv)."""
    B, H, L, dk = q.shape
    o = np.zeros(v.shape)
    S_out = np.zeros(S0.shape)
    for b in range(B):
        for h in range(H):
            S = S0[b, h].copy()
            for t in range(L):
                alpha = np.exp(g[b, h, t])[:, None] @ np.ones((1, v.shape[-1]))
                S = alpha * S + np.outer(k[b, h, t], v[b, h, t])
                o[b, h, t] = q[b, h, t] @ S
            S_out[b, h] = S
    return o, S_out


def hgrn2_loop(o_gate, i, f, S0):
    """HGRN2 (Qin et al. 2024, eq. 4): h_t = Diag(f_t) h_{t-1} + (1 - f_t) (x) i_t, y_t = o_t h_t."""
    B, H, L, _ = o_gate.shape
    y = np.zeros(i.shape)
    for b in range(B):
        for h in range(H):
            S = S0[b, h].copy()
            for t in range(L):
                S = np.diag(f[b, h, t]) @ S + np.outer(1 - f[b, h, t], i[b, h, t])
                y[b, h, t] = o_gate[b, h, t] @ S
    return y


PHI = {None: lambda x: x, "elu1": lambda x: np.where(x > 0, x + 1, np.exp(x)),
       "relu": lambda x: np.maximum(x, 0)}


@pytest.mark.parametrize("fmap, normalize", [(None, False), ("elu1", False), ("relu", False),
                                             ("elu1", True)])   # the normaliser needs phi > 0
def test_linear_attention_forms_match_paper(fmap, normalize):
    rng = np.random.default_rng(0)
    q, k, v, _, S0 = make(rng, L=7)
    phi = PHI[fmap]
    z0 = np.abs(rng.standard_normal(S0.shape[:-1])) + 1.0
    state = np.concatenate([np.abs(S0), z0[..., None]], -1) if normalize else S0
    ref = katharopoulos_loop(q, k, v, phi, normalize, state[..., :S0.shape[-1]], z0)
    L = q.shape[2]
    for form in la.FORMS:
        for C in (range(1, L + 4) if form == "chunkwise" else [16]):
            o, S = la.linear_attention(q, k, v, feature_map=fmap, normalize=normalize, form=form,
                                       chunk_size=C, state=state)
            assert_close(f"{form} C={C}", ref, o, rtol=RTOL)
            fk = phi(k)
            S_ref = np.einsum("bhlk,bhlv->bhkv", fk, v) + state[..., :S0.shape[-1]]
            assert_close(f"S {form} C={C}", S_ref, S[..., :S0.shape[-1]], rtol=RTOL)
            if normalize:
                assert_close("z", z0 + fk.sum(2), S[..., -1], rtol=RTOL)


def test_feature_maps():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((2, 5, 3))
    assert_close("elu1", torch.nn.functional.elu(torch.tensor(x)).numpy() + 1,
                 la.feature(x, "elu1"), rtol=1e-15)
    px, py = la.feature(x, "taylor2"), la.feature(y, "taylor2")
    assert px.shape == (5, 1 + 3 + 9)
    dot = np.sum(x * y, -1)
    assert_close("taylor2 kernel", 1 + dot + dot ** 2 / 2, np.sum(px * py, -1), rtol=1e-13)
    with pytest.raises(ValueError, match="feature_map"):
        la.feature(x, "cosine")


def test_taylor_feature_map_forms_agree():
    rng = np.random.default_rng(2)
    q, k, v, _, _ = make(rng, L=6)
    ref = la.linear_attention(q, k, v, feature_map="taylor2", normalize=True)
    for form in la.FORMS:
        o, S = la.linear_attention(q, k, v, feature_map="taylor2", normalize=True, form=form,
                                   chunk_size=4)
        assert_close(form, ref[0], o, rtol=RTOL)
        assert S.shape == (2, 2, 1 + 3 + 9, 4 + 1)


@pytest.mark.parametrize("L", [1, 2, 9])
def test_gla_forms_match_paper(L):
    rng = np.random.default_rng(3)
    q, k, v, g, S0 = make(rng, L=L)
    ref_o, ref_S = gla_loop(q, k, v, g, S0)
    for form in la.FORMS:
        sizes = [(C, c) for C in range(1, L + 4) for c in (1, 2, 3, C)] if form == "chunkwise" \
            else [(16, 4)]
        for C, c in sizes:
            o, S = la.gla(q, k, v, g, form=form, chunk_size=C, sub_chunk=c, state=S0)
            assert_close(f"gla o {form} C={C} c={c}", ref_o, o, rtol=RTOL)
            assert_close(f"gla S {form} C={C} c={c}", ref_S, S, rtol=RTOL)


def test_gla_with_zero_decay_is_linear_attention():
    rng = np.random.default_rng(4)
    q, k, v, g, S0 = make(rng)
    a = la.gla(q, k, v, 0 * g, form="chunkwise", chunk_size=4, state=S0)
    b = la.linear_attention(q, k, v, state=S0)
    assert_close("o", b[0], a[0], rtol=RTOL)


def test_gla_chunkwise_survives_strong_decay():
    """g = -50 per step: exp(-b) of the naive factorisation overflows after 15 steps (float64),
    the secondary-chunked form takes only exponents <= 0 and matches the loop."""
    rng = np.random.default_rng(5)
    q, k, v, _, S0 = make(rng, L=40)
    g = np.full(q.shape, -50.0)
    ref_o, ref_S = gla_loop(q, k, v, g, S0)
    with np.errstate(over="ignore", invalid="ignore"):
        o, S = la.gla(q, k, v, g, form="chunkwise", chunk_size=32, sub_chunk=4, state=S0)
        b = np.cumsum(g[:, :, :32], axis=2)
        naive = (q[:, :, :32] * np.exp(b)) @ np.swapaxes(k[:, :, :32] * np.exp(-b), -1, -2)
    assert not np.all(np.isfinite(naive)), "the naive factorisation should break at g = -50"
    assert np.all(np.isfinite(o)) and np.all(np.isfinite(S))
    assert_close("o", ref_o, o, rtol=RTOL)
    assert_close("S", ref_S, S, rtol=RTOL)
    o32, _ = la.gla(*(a.astype(np.float32) for a in (q, k, v, g)), form="chunkwise",
                    chunk_size=32, state=S0.astype(np.float32))
    assert o32.dtype == np.float32 and np.all(np.isfinite(o32))
    assert_close("float32", ref_o, o32, rtol=1e-5)


@pytest.mark.parametrize("form", la.FORMS)
def test_hgrn2_matches_paper(form):
    rng = np.random.default_rng(6)
    q, _, v, g, S0 = make(rng, L=8)
    ref = hgrn2_loop(q, v, np.exp(g), S0)
    o, _ = la.hgrn2(q, v, g, form=form, chunk_size=3, sub_chunk=2, state=S0)
    assert_close(f"hgrn2 {form}", ref, o, rtol=RTOL)


def test_state_carries_over_between_calls():
    rng = np.random.default_rng(7)
    q, k, v, g, S0 = make(rng, L=10)
    o, S = la.gla(q, k, v, g, form="chunkwise", chunk_size=4, state=S0)
    o1, S1 = la.gla(q[:, :, :6], k[:, :, :6], v[:, :, :6], g[:, :, :6], form="parallel", state=S0)
    o2, S2 = la.gla(q[:, :, 6:], k[:, :, 6:], v[:, :, 6:], g[:, :, 6:], state=S1)
    assert_close("o", o, np.concatenate([o1, o2], axis=2), rtol=RTOL)
    assert_close("S", S, S2, rtol=RTOL)


@pytest.mark.parametrize("op", ["linear_attention", "gla"])
def test_torch_stays_torch_and_autograd_flows(op):
    rng = np.random.default_rng(8)
    q, k, v, g, S0 = make(rng, B=1, L=5, dk=2, dv=2)
    args = [q, k, v] + ([g] if op == "gla" else [])
    w = rng.standard_normal(v.shape)
    fn = getattr(la, op)
    kw = {"feature_map": "elu1"} if op == "linear_attention" else {}

    def loss_np(x):
        return float(np.sum(fn(x, *args[1:], form="chunkwise", chunk_size=2, **kw)[0] * w))

    grads = {}
    for form in la.FORMS:
        T = [torch.tensor(a, requires_grad=True) for a in args]
        o, S = fn(*T, form=form, chunk_size=2, **kw)
        assert isinstance(o, torch.Tensor) and isinstance(S, torch.Tensor)
        (o * torch.tensor(w)).sum().backward()
        grads[form] = [t.grad.numpy() for t in T]
    for form in la.FORMS:
        for i, gr in enumerate(grads[form]):
            assert_close(f"{op} {form} grad {i}", grads["recurrent"][i], gr, rtol=1e-11)
    assert_close("dq vs finite differences", numerical_gradient(loss_np, q), grads["chunkwise"][0],
                 rtol=1e-7)


def test_float32_stays_float32():
    rng = np.random.default_rng(9)
    q, k, v, g, _ = make(rng)
    for form in la.FORMS:
        o, S = la.gla(*(a.astype(np.float32) for a in (q, k, v, g)), form=form, chunk_size=4)
        assert o.dtype == np.float32 and S.dtype == np.float32


def test_bad_inputs():
    rng = np.random.default_rng(10)
    q, k, v, g, S0 = make(rng)
    with pytest.raises(ValueError, match="k"):
        la.linear_attention(q, k[..., :-1], v)
    with pytest.raises(ValueError, match="v"):
        la.linear_attention(q, k, v[:, :, :-1])
    with pytest.raises(ValueError, match="L >= 1"):
        la.linear_attention(q[:, :, :0], k[:, :, :0], v[:, :, :0])
    with pytest.raises(ValueError, match="floating"):
        la.gla(q.astype(np.int64), k, v, g)
    with pytest.raises(ValueError, match="form"):
        la.gla(q, k, v, g, form="fused")
    with pytest.raises(ValueError, match="chunk_size"):
        la.gla(q, k, v, g, form="chunkwise", chunk_size=0)
    with pytest.raises(ValueError, match="sub_chunk"):
        la.gla(q, k, v, g, form="chunkwise", sub_chunk=-1)
    with pytest.raises(ValueError, match="g"):
        la.gla(q, k, v, g[..., :1])
    with pytest.raises(ValueError, match="state"):
        la.gla(q, k, v, g, state=S0[..., :-1])
    with pytest.raises(ValueError, match="state"):
        la.linear_attention(q, k, v, normalize=True, feature_map="elu1", state=S0)
    with pytest.raises(ValueError, match="log_f"):
        la.hgrn2(q, v, g[:, :, :-1])


@settings(max_examples=40, deadline=None)
@given(B=st.integers(1, 2), H=st.integers(1, 2), L=st.integers(1, 12), dk=st.integers(1, 4),
       dv=st.integers(1, 3), C=st.integers(1, 14), c=st.integers(1, 5))
def test_property_gla_forms_agree(B, H, L, dk, dv, C, c):
    rng = np.random.default_rng(L * 31 + C * 7 + c)
    q, k, v, g, S0 = make(rng, B, H, L, dk, dv, g_max=3.0)
    ref = la.gla(q, k, v, g, state=S0)
    for form in ("parallel", "chunkwise"):
        o, S = la.gla(q, k, v, g, form=form, chunk_size=C, sub_chunk=c, state=S0)
        assert_close(f"o {form}", ref[0], o, rtol=1e-11)
        assert_close(f"S {form}", ref[1], S, rtol=1e-11)
