"""Tests for rnnkit.ttt: TTT-Linear's per-token, mini-batch and dual forms against loops written
from Sun et al. 2024 (sec. 2.1-2.7), the delta-rule reduction, TTT-MLP hand vs autograd, bad input."""
import numpy as np
import pytest
import torch

from rnnkit import deltanet as dn
from rnnkit import ttt
from rnnkit.core.testing import assert_close

RTOL = 1e-12     # float64


def make(rng, B=2, H=2, L=10, D=6, dk=4, dv=4):
    x = rng.standard_normal((B, H, L, D))
    tQ, tK, tV = (rng.standard_normal((D, d)) / np.sqrt(D) for d in (dk, dk, dv))
    lr = rng.uniform(0.0, 0.4, (B, H, L))
    W0 = rng.standard_normal((B, H, dk, dv)) * 0.3
    return x, tQ, tK, tV, lr, W0


def paper_loop(x, tQ, tK, tV, lr, W0, b=1):
    """Sun et al. eqs. (3)-(5) and sec. 2.7: l(W; x) = ||theta_K x W - theta_V x||^2 (row form),
    W_t = W_t' - sum_{s=t'+1}^t eta_s grad l(W_t'; x_s), z_t = theta_Q x_t W_t, t' the last
    multiple of b before t."""
    B, H, L, _ = x.shape
    z, W_out = np.zeros((B, H, L, tV.shape[1])), np.zeros(W0.shape)
    for i in range(B):
        for h in range(H):
            W = W0[i, h].copy()
            for t in range(L):
                if t % b == 0:
                    W_start, acc = W.copy(), np.zeros_like(W)
                xt = x[i, h, t]
                kt, vt = (xt @ tK)[None], (xt @ tV)[None]
                acc = acc + lr[i, h, t] * 2 * kt.T @ (kt @ W_start - vt)
                W = W_start - acc
                z[i, h, t] = (xt @ tQ) @ W
            W_out[i, h] = W
    return z, W_out


@pytest.mark.parametrize("b", [1, 2, 3, 4, 10, 16])
def test_forms_match_paper_loop(b):
    rng = np.random.default_rng(0)
    x, tQ, tK, tV, lr, W0 = make(rng)
    q, k, v = x @ tQ, x @ tK, x @ tV
    ref_tok, _ = paper_loop(x, tQ, tK, tV, lr, W0)
    z, _ = ttt.ttt_linear(q, k, v, lr, state=W0)
    assert_close("per token", ref_tok, z, rtol=RTOL)
    ref, W_ref = paper_loop(x, tQ, tK, tV, lr, W0, b)
    for form in ("minibatch", "dual"):
        z, W = ttt.ttt_linear(q, k, v, lr, form=form, batch_size=b, state=W0)
        assert_close(f"{form} b={b}", ref, z, rtol=RTOL)
        assert_close(f"{form} W b={b}", W_ref, W, rtol=RTOL)
    if b >= 3:
        assert np.abs(ref - ref_tok).max() > 1e-3


def test_one_step_per_token_is_a_delta_rule():
    rng = np.random.default_rng(1)
    x, tQ, tK, tV, lr, W0 = make(rng)
    q, k, v = x @ tQ, x @ tK, x @ tV
    z, W = ttt.ttt_linear(q, k, v, lr, state=W0)
    ref, S = dn.delta_rule(q, k, v, 2 * lr, form="chunkwise", chunk_size=4, state=W0)
    assert_close("delta rule beta = 2 lr", ref, z, rtol=RTOL)
    assert_close("state", S, W, rtol=RTOL)


@pytest.mark.parametrize("form,b", [("recurrent", 1), ("minibatch", 1), ("minibatch", 4)])
def test_ttt_mlp_hand_vs_autograd_loop(form, b):
    rng = np.random.default_rng(2)
    x, tQ, tK, tV, lr, _ = make(rng, L=8)
    q, k, v = x @ tQ, dn.l2_normalize(x @ tK), x @ tV
    W1, W2 = rng.standard_normal((2, 4, 8)) * 0.5, rng.standard_normal((2, 8, 4)) * 0.5
    z, st = ttt.ttt_mlp(q, k, v, lr, {"W1": W1, "W2": W2}, form=form, batch_size=b)
    # reference: the mini-batch rule with torch autograd, one sequence and head at a time
    ref = np.zeros_like(z)
    gelu = lambda a: torch.nn.functional.gelu(a, approximate="tanh")   # noqa: E731
    for i in range(2):
        for h in range(2):
            P = [torch.tensor(W1[h]), torch.tensor(W2[h])]
            for t in range(8):
                if t % b == 0:
                    start, acc = [p.clone().requires_grad_(True) for p in P], [0, 0]
                kt, vt = torch.tensor(k[i, h, t]), torch.tensor(v[i, h, t])
                g = torch.autograd.grad(((gelu(kt @ start[0]) @ start[1] - vt) ** 2).sum(), start)
                acc = [a + lr[i, h, t] * gg for a, gg in zip(acc, g)]
                P = [s.detach() - a for s, a in zip(start, acc)]
                ref[i, h, t] = (gelu(torch.tensor(q[i, h, t]) @ P[0]) @ P[1]).numpy()
    assert_close(f"ttt-mlp {form} b={b}", ref, z, rtol=RTOL)
    if form == "recurrent":
        tt = torch.tensor
        z2, _ = ttt.ttt_mlp(tt(q), tt(k), tt(v), tt(lr), {"W1": tt(W1), "W2": tt(W2)},
                            grad="autograd")
        assert isinstance(z2, torch.Tensor)
        assert_close("autograd form", z, z2.numpy(), rtol=RTOL)


def test_layer_and_learned_lr():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 9, 8))
    for kind in ("linear", "mlp"):
        p = ttt.init_layer(rng, 8, kind=kind)
        y1, _ = ttt.ttt_layer(p, x, kind=kind, form="recurrent")
        y2, _ = ttt.ttt_layer(p, x, kind=kind, form="dual" if kind == "linear" else "minibatch",
                              batch_size=1)
        assert_close(f"layer {kind}", y1, y2, rtol=RTOL)
    lr = ttt.inner_lr(x, p["w_lr"], p["b_lr"], 1.0, 4)
    assert lr.shape == (2, 2, 9) and (lr > 0).all() and (lr < 0.25).all()
    xt = torch.tensor(x, requires_grad=True)
    pt = {n: torch.tensor(a, requires_grad=True) for n, a in ttt.init_layer(rng, 8).items()}
    y, _ = ttt.ttt_layer(pt, xt)
    y.sum().backward()
    assert pt["w_lr"].grad is not None and float(pt["w_lr"].grad.abs().sum()) > 0   # lr is learned


def test_bad_input():
    rng = np.random.default_rng(4)
    x, tQ, tK, tV, lr, W0 = make(rng)
    q, k, v = x @ tQ, x @ tK, x @ tV
    with pytest.raises(ValueError, match=r"lr: expected shape .*got \(2, 2, 9\)"):
        ttt.ttt_linear(q, k, v, lr[..., :9])
    with pytest.raises(ValueError, match="L >= 1"):
        ttt.ttt_linear(q[:, :, :0], k[:, :, :0], v[:, :, :0], lr[..., :0])
    with pytest.raises(ValueError, match="batch_size: expected a positive integer"):
        ttt.ttt_linear(q, k, v, lr, form="dual", batch_size=0)
    with pytest.raises(ValueError, match="form: expected one of"):
        ttt.ttt_linear(q, k, v, lr, form="parallel")
    with pytest.raises(ValueError, match=r"state: expected shape"):
        ttt.ttt_linear(q, k, v, lr, state=W0[:, :, :3])
    with pytest.raises(ValueError, match="form: expected 'recurrent' or 'minibatch'"):
        ttt.ttt_mlp(q, k, v, lr, {"W1": np.zeros((2, 4, 3)), "W2": np.zeros((2, 3, 4))}, form="dual")
