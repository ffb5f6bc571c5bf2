"""Tests for rnnkit.transformer: causal softmax attention and FoX against loops written from the
papers, the KV cache (step == forward, the state grows by one row per token), torch autograd, bad
inputs. The module has no fixed-size state, so it is outside tests/test_contract.py."""
import numpy as np
import pytest
import torch

from rnnkit import transformer as tf
from rnnkit.core.testing import assert_close

RTOL = 1e-12


def make(rng, B=2, H=2, L=7, dk=4, dv=3):
    q, k = rng.standard_normal((2, B, H, L, dk))
    v = rng.standard_normal((B, H, L, dv))
    log_f = np.log(1 / (1 + np.exp(-rng.standard_normal((B, H, L)) - 1)))
    return q, k, v, log_f


def paper_loop(q, k, v, log_f=None):
    """Vaswani et al. eq. (1) with a causal mask; FoX (Lin et al. 2025, eq. 4-5): the weight of
    key j for query i is exp(q_i . k_j) prod_{l=j+1}^{i} f_l, normalised over j <= i."""
    B, H, L, _ = q.shape
    o = np.zeros(v.shape)
    for b in range(B):
        for h in range(H):
            for i in range(L):
                w = np.array([np.exp(q[b, h, i] @ k[b, h, j])
                              * (1.0 if log_f is None else np.prod(np.exp(log_f[b, h, j + 1:i + 1])))
                              for j in range(i + 1)])
                o[b, h, i] = (w / w.sum()) @ v[b, h, :i + 1]
    return o


@pytest.mark.parametrize("fox", [False, True])
@pytest.mark.parametrize("L", [1, 7])
def test_forms_match_paper(fox, L):
    rng = np.random.default_rng(0)
    q, k, v, log_f = make(rng, L=L)
    log_f = log_f if fox else None
    ref = paper_loop(q, k, v, log_f)
    for form in tf.ATTENTION_FORMS:
        o, cache = tf.softmax_attention(q, k, v, log_f=log_f, form=form)
        assert_close(f"{form} fox={fox}", ref, o, rtol=RTOL)
        assert cache.K.shape == (2, 2, L, 4)


@pytest.mark.parametrize("fox", [False, True])
def test_cache_continues(fox):
    """Attention over a prefix, then the rest against the cache, equals one call."""
    rng = np.random.default_rng(1)
    q, k, v, log_f = make(rng, L=9)
    lf = log_f if fox else None
    o, cache = tf.softmax_attention(q, k, v, log_f=lf)
    o1, c1 = tf.softmax_attention(q[:, :, :4], k[:, :, :4], v[:, :, :4],
                                  log_f=None if lf is None else lf[:, :, :4], form="recurrent")
    o2, c2 = tf.softmax_attention(q[:, :, 4:], k[:, :, 4:], v[:, :, 4:],
                                  log_f=None if lf is None else lf[:, :, 4:], state=c1)
    assert_close("o", o, np.concatenate([o1, o2], 2), rtol=RTOL)
    for a, b in zip(cache, c2):
        assert_close("cache", a, b, rtol=RTOL)


@pytest.mark.parametrize("fox", [False, True])
def test_layer_step_equals_forward_and_state_grows(fox):
    rng = np.random.default_rng(2)
    params = tf.init(rng, 8, n_heads=2, forget_gate=fox)
    x = rng.standard_normal((2, 6, 8))
    y, cache = tf.forward(params, x)
    y_rec, _ = tf.forward(params, x, form="recurrent")
    assert_close("forms", y, y_rec, rtol=RTOL)
    state, ys = None, []
    for t in range(6):
        yt, state = tf.step(params, x[:, t], state)
        assert state.K.shape == (2, 2, t + 1, 4)          # one row per token: the state grows
        ys.append(yt)
    assert_close("step == forward", y, np.stack(ys, 1), rtol=RTOL)
    for a, b in zip(cache, state):
        assert_close("cache", a, b, rtol=RTOL)
    ya, sa = tf.forward(params, x[:, :3])
    yb, _ = tf.forward(params, x[:, 3:], sa)
    assert_close("forward in two calls", y, np.concatenate([ya, yb], 1), rtol=RTOL)


def test_layer_matches_a_direct_transcription():
    """Pre-norm layer without FoX: x + MHA(LN(x)) with rotated q, k and 1/sqrt(d) scaling."""
    from rnnkit.retnet import rotate
    rng = np.random.default_rng(3)
    params = tf.init(rng, 6, n_heads=3)
    x = rng.standard_normal((1, 5, 6))
    u = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    out = x.copy()
    pos = np.arange(5.0)
    for h in range(3):
        q = rotate(u[0] @ params["W_Q"][:, h], pos) / np.sqrt(2)
        k = rotate(u[0] @ params["W_K"][:, h], pos)
        v = u[0] @ params["W_V"][:, h]
        s = q @ k.T + np.triu(np.full((5, 5), -np.inf), 1)
        a = np.exp(s - s.max(1, keepdims=True))
        out[0] += (a / a.sum(1, keepdims=True)) @ v @ params["W_O"][h]
    assert_close("layer", out, tf.forward(params, x)[0], rtol=RTOL)


def test_forget_gate_one_is_plain_attention():
    rng = np.random.default_rng(4)
    q, k, v, log_f = make(rng)
    a, _ = tf.softmax_attention(q, k, v, log_f=0 * log_f)
    b, _ = tf.softmax_attention(q, k, v)
    assert_close("f = 1", b, a, rtol=RTOL)


def test_torch_stays_torch_and_autograd_flows():
    rng = np.random.default_rng(5)
    q, k, v, log_f = make(rng, B=1, L=5)
    grads = {}
    for form in tf.ATTENTION_FORMS:
        T = [torch.tensor(a, requires_grad=True) for a in (q, k, v, log_f)]
        o, cache = tf.softmax_attention(*T[:3], log_f=T[3], form=form)
        assert isinstance(o, torch.Tensor) and isinstance(cache.K, torch.Tensor)
        (o ** 2).sum().backward()
        grads[form] = [t.grad.numpy() for t in T]
        assert all(np.all(np.isfinite(g)) for g in grads[form])
    for i in range(4):
        assert_close(f"grad {i}", grads["recurrent"][i], grads["parallel"][i], rtol=1e-12)


def test_bad_inputs():
    rng = np.random.default_rng(6)
    q, k, v, log_f = make(rng)
    with pytest.raises(ValueError, match="k"):
        tf.softmax_attention(q, k[..., :-1], v)
    with pytest.raises(ValueError, match="L >= 1"):
        tf.softmax_attention(q[:, :, :0], k[:, :, :0], v[:, :, :0])
    with pytest.raises(ValueError, match="log_f"):
        tf.softmax_attention(q, k, v, log_f=log_f[:, :1])
    with pytest.raises(ValueError, match="form"):
        tf.softmax_attention(q, k, v, form="chunkwise")
    with pytest.raises(ValueError, match="floating"):
        tf.softmax_attention(q, k, v.astype(np.int64))
    with pytest.raises(ValueError, match="state"):
        tf.softmax_attention(q, k, v, state=(q,))
    params = tf.init(rng, 8, n_heads=2)
    with pytest.raises(ValueError, match="x"):
        tf.forward(params, rng.standard_normal((2, 3, 5)))
    with pytest.raises(ValueError, match="d_head"):
        tf.init(rng, 6, n_heads=2)
