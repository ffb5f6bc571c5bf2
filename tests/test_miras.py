"""Tests for rnnkit.miras: every rule of the family (l2, l_p, Huber biases with retention; ATLAS's
Omega rule; Longhorn's implicit step) against a naive loop written from its paper, chunked forms,
the reductions (Omega with c = 1 is l2; l2 is Titans without momentum; Longhorn is a gated delta
rule and solves its proximal problem), polynomial features, bad input."""
import numpy as np
import pytest
import torch

from rnnkit import deltanet as dn
from rnnkit import miras
from rnnkit import titans as T
from rnnkit.core.testing import assert_close

RTOL = 1e-12     # float64


def make(rng, B=2, H=2, L=11, dk=4, dv=3):
    q = rng.standard_normal((B, H, L, dk))
    k = dn.l2_normalize(rng.standard_normal((B, H, L, dk)))
    v = rng.standard_normal((B, H, L, dv))
    theta = rng.uniform(0.0, 0.5, (B, H, L))
    alpha = rng.uniform(0.0, 0.2, (B, H, L))
    M0 = rng.standard_normal((B, H, dk, dv)) * 0.3
    return q, k, v, theta, alpha, M0


def grad_of(bias, e, p=3.0, delta=1.0):
    """d/de of the attentional bias (Miras eqs. for l_p and Huber), by the definitions."""
    if bias == "l2":
        return 2 * e
    if bias == "lp":
        return p * np.abs(e) ** (p - 1) * np.sign(e)
    return np.where(np.abs(e) <= delta, e, delta * np.sign(e))


def naive(q, k, v, theta, alpha, M0, bias="l2", window=1, gamma=None, chunk=1, p=3.0, delta=1.0):
    """M_t = (1 - alpha_t) M_{t-1} - theta_t grad_M sum_{i=t-c+1}^t gamma_i l(M; k_i, v_i) at the
    memory the chunk starts from (chunk = 1: M_{t-1}), o_t = q_t M_t."""
    B, H, L, _ = q.shape
    gamma = np.ones((B, H, L)) if gamma is None else gamma
    o, M_out = np.zeros(v.shape), np.zeros(M0.shape)
    for b in range(B):
        for h in range(H):
            M = M0[b, h].copy()
            for t in range(L):
                if t % chunk == 0:
                    Ms = M.copy()
                G = np.zeros_like(M)
                for i in range(max(0, t - window + 1), t + 1):
                    e = k[b, h, i] @ Ms - v[b, h, i]
                    G += gamma[b, h, i] * np.outer(k[b, h, i], grad_of(bias, e, p, delta))
                M = (1 - alpha[b, h, t]) * M - theta[b, h, t] * G
                o[b, h, t] = q[b, h, t] @ M
            M_out[b, h] = M
    return o, M_out


@pytest.mark.parametrize("bias", miras.BIASES)
@pytest.mark.parametrize("chunk", [1, 3, 16])
def test_biases_match_naive_loop(bias, chunk):
    rng = np.random.default_rng(0)
    q, k, v, th, al, M0 = make(rng)
    v = 2 * v                                     # errors beyond the Huber threshold too
    ref, M_ref = naive(q, k, v, th, al, M0, bias, chunk=chunk, p=3.0, delta=0.5)
    form = "recurrent" if chunk == 1 else "chunked"
    o, M = miras.online_memory(q, k, v, th, al, rule=bias, p=3.0, delta=0.5, form=form,
                               chunk_size=chunk, state=M0)
    assert_close(f"{bias} C={chunk}", ref, o, rtol=RTOL)
    assert_close("memory", M_ref, M, rtol=RTOL)
    if chunk == 1:
        o2, _ = miras.online_memory(q, k, v, th, al, rule=bias, p=3.0, delta=0.5, form="chunked",
                                    chunk_size=1, state=M0)
        assert_close("chunk 1 == recurrent", o, o2, rtol=RTOL)


def test_huber_is_half_l2_for_small_errors_and_clipped_for_large():
    rng = np.random.default_rng(1)
    q, k, v, th, al, M0 = make(rng, L=1)
    M = np.zeros_like(M0)
    g_h = miras.bias_grad(M, k, v, "huber", delta=100.0)
    assert_close("huber = l2 / 2", miras.bias_grad(M, k, v, "l2") / 2, g_h, rtol=RTOL)
    g_c = miras.bias_grad(M, k, 1e3 * v, "huber", delta=0.1)
    assert np.abs(g_c).max() <= 0.1 + 1e-15                # |k_i| <= 1, clip at delta


@pytest.mark.parametrize("window", [1, 2, 3, 5])
@pytest.mark.parametrize("chunk", [1, 2, 4])
def test_omega_rule_matches_naive_loop(window, chunk):
    rng = np.random.default_rng(2)
    q, k, v, th, al, M0 = make(rng)
    th = th / window
    gamma = rng.uniform(0.5, 1.0, th.shape)
    ref, _ = naive(q, k, v, th, al, M0, "l2", window=window, gamma=gamma, chunk=chunk)
    form = "recurrent" if chunk == 1 else "chunked"
    o, _ = miras.online_memory(q, k, v, th, al, rule="omega", window=window, gamma=gamma,
                               form=form, chunk_size=chunk, state=M0)
    assert_close(f"omega c={window} C={chunk}", ref, o, rtol=RTOL)


def test_reductions_omega_one_is_l2_and_l2_is_titans_without_momentum():
    rng = np.random.default_rng(3)
    q, k, v, th, al, M0 = make(rng)
    o_l2, _ = miras.online_memory(q, k, v, th, al, rule="l2", state=M0)
    o_om, _ = miras.online_memory(q, k, v, th, al, rule="omega", window=1, state=M0)
    assert_close("omega c=1", o_l2, o_om, rtol=RTOL)
    o_t, _ = T.linear_memory(q, k, v, th, np.zeros_like(th), al,
                             state=T.MemoryState((M0,), (np.zeros_like(M0),)))
    assert_close("titans eta=0", o_l2, o_t, rtol=RTOL)


def test_longhorn_solves_its_implicit_problem():
    """Longhorn eq. (8): M_t = argmin ||M - M'||^2 + theta ||k M - v||^2, solved here with a
    linear solve of the normal equations (I + theta k^T k) M = M' + theta k^T v."""
    rng = np.random.default_rng(4)
    q, k, v, th, al, M0 = make(rng)
    k = 1.5 * k                                   # unnormalised keys: eps differs from theta
    th = 3 * th                                   # large steps: an explicit step would overshoot
    B, H, L, dk = k.shape
    ref = np.zeros(v.shape)
    for b in range(B):
        for h in range(H):
            M = M0[b, h].copy()
            for t in range(L):
                kt, vt = k[b, h, t][None], v[b, h, t][None]
                Mp = (1 - al[b, h, t]) * M
                M = np.linalg.solve(np.eye(dk) + th[b, h, t] * kt.T @ kt, Mp + th[b, h, t] * kt.T @ vt)
                ref[b, h, t] = q[b, h, t] @ M
    for form in ("recurrent", "chunkwise"):
        o, _ = miras.online_memory(q, k, v, th, al, rule="longhorn", form=form, chunk_size=4,
                                   state=M0)
        assert_close(f"longhorn {form}", ref, o, rtol=1e-11)


def test_polynomial_features_kernel():
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((2, 3, 4))
    for degree in (1, 2, 3):
        fx, fy = miras.polynomial_features(x, degree), miras.polynomial_features(y, degree)
        assert fx.shape == (3, sum(4 ** n for n in range(1, degree + 1)))
        s = np.einsum("ld,ld->l", x, y)
        want = sum(s ** n / np.prod(np.arange(1, n + 1)) for n in range(1, degree + 1))
        assert_close(f"kernel degree {degree}", want, np.einsum("ld,ld->l", fx, fy), rtol=RTOL)


def test_torch_stays_torch():
    rng = np.random.default_rng(6)
    args = [torch.tensor(a) for a in make(rng)[:5]]
    for rule in miras.RULES:
        o, M = miras.online_memory(*args, rule=rule, form="chunkwise" if rule == "longhorn" else "chunked",
                                   chunk_size=4)
        assert isinstance(o, torch.Tensor) and isinstance(M, torch.Tensor)


def test_bad_input():
    rng = np.random.default_rng(7)
    q, k, v, th, al, M0 = make(rng)
    with pytest.raises(ValueError, match=r"alpha: expected shape .*got \(2, 2, 4\)"):
        miras.online_memory(q, k, v, th, al[..., :4])
    with pytest.raises(ValueError, match="L >= 1"):
        miras.online_memory(q[:, :, :0], k[:, :, :0], v[:, :, :0], th[..., :0], al[..., :0])
    with pytest.raises(ValueError, match="rule: expected one of"):
        miras.online_memory(q, k, v, th, al, rule="l1")
    with pytest.raises(ValueError, match="p: expected an exponent"):
        miras.online_memory(q, k, v, th, al, rule="lp", p=0.5)
    with pytest.raises(ValueError, match="delta: expected a threshold"):
        miras.online_memory(q, k, v, th, al, rule="huber", delta=0.0)
    with pytest.raises(ValueError, match="window: expected a positive integer"):
        miras.online_memory(q, k, v, th, al, rule="omega", window=0)
    with pytest.raises(ValueError, match=r"gamma: expected shape"):
        miras.online_memory(q, k, v, th, al, rule="omega", gamma=th[:1])
    with pytest.raises(ValueError, match="form: expected 'recurrent' or 'chunkwise'"):
        miras.online_memory(q, k, v, th, al, rule="longhorn", form="chunked")
    with pytest.raises(ValueError, match=r"state: expected shape"):
        miras.online_memory(q, k, v, th, al, state=M0[..., :2])
