"""Tests for rnnkit.titans: the linear memory (recurrent, chunked) and the MLP memory against loops
written from the Titans paper's equations (eqs. 9-14, sec. 3.2), the delta-rule reduction, the
hand gradient of the deep memory against torch autograd and finite differences, the three
architectures, bad input."""
import numpy as np
import pytest
import torch

from rnnkit import deltanet as dn
from rnnkit import titans as T
from rnnkit.core.testing import assert_close, numerical_gradient

RTOL = 1e-12     # float64; the forms differ by the order of a few sums


def make(rng, B=2, H=2, L=11, dk=4, dv=3):
    q = rng.standard_normal((B, H, L, dk))
    k = dn.l2_normalize(rng.standard_normal((B, H, L, dk)))
    v = rng.standard_normal((B, H, L, dv))
    theta = rng.uniform(0.0, 0.5, (B, H, L))
    eta = rng.uniform(0.0, 0.9, (B, H, L))
    alpha = rng.uniform(0.0, 0.2, (B, H, L))
    M0 = rng.standard_normal((B, H, dk, dv)) * 0.3
    S0 = rng.standard_normal((B, H, dk, dv)) * 0.1
    return q, k, v, theta, eta, alpha, M0, S0


def paper_loop(q, k, v, theta, eta, alpha, M0, S0, chunk=1):
    """Titans eqs. (13)-(14) per sequence and head, column-free row form; with chunk > 1 the
    gradient of every token of a chunk is taken at the memory the chunk starts from (sec. 3.2)."""
    B, H, L, _ = q.shape
    o = np.zeros(v.shape)
    for b in range(B):
        for h in range(H):
            M, S = M0[b, h].copy(), S0[b, h].copy()
            for t in range(L):
                if t % chunk == 0:
                    M_start = M.copy()
                kt, vt = k[b, h, t][None], v[b, h, t][None]                   # (1, dk), (1, dv)
                grad = 2 * kt.T @ (kt @ M_start - vt)                         # d/dM ||k M - v||^2
                S = eta[b, h, t] * S - theta[b, h, t] * grad                  # surprise
                M = (1 - alpha[b, h, t]) * M + S                              # forgetting
                o[b, h, t] = q[b, h, t] @ M
    return o, M


@pytest.mark.parametrize("chunk", [1, 2, 3, 4, 11, 16])
@pytest.mark.parametrize("method", ["hillis_steele", "sequential", "chunked"])
def test_linear_memory_matches_paper_loop(chunk, method):
    rng = np.random.default_rng(0)
    q, k, v, th, et, al, M0, S0 = make(rng)
    st = T.MemoryState((M0,), (S0,))
    ref_rec, _ = paper_loop(q, k, v, th, et, al, M0, S0)
    o, _ = T.linear_memory(q, k, v, th, et, al, state=st)
    assert_close("recurrent", ref_rec, o, rtol=RTOL)
    ref, _ = paper_loop(q, k, v, th, et, al, M0, S0, chunk=chunk)
    o, s = T.linear_memory(q, k, v, th, et, al, form="chunked", chunk_size=chunk, state=st,
                           scan_method=method)
    assert_close(f"chunked C={chunk}", ref, o, rtol=RTOL)
    if chunk == 1:
        assert_close("chunk 1 == recurrent", ref_rec, o, rtol=RTOL)
    elif chunk >= 3:
        assert np.abs(ref_rec - o).max() > 1e-3      # a different model for larger chunks


def test_final_state_continues_the_sequence():
    rng = np.random.default_rng(1)
    q, k, v, th, et, al, _, _ = make(rng, L=10)
    o, _ = T.linear_memory(q, k, v, th, et, al)
    o1, s1 = T.linear_memory(q[:, :, :6], k[:, :, :6], v[:, :, :6], th[..., :6], et[..., :6], al[..., :6])
    o2, _ = T.linear_memory(q[:, :, 6:], k[:, :, 6:], v[:, :, 6:], th[..., 6:], et[..., 6:], al[..., 6:],
                            state=s1)
    assert_close("split", o, np.concatenate([o1, o2], axis=2), rtol=RTOL)


def test_no_momentum_no_decay_is_the_delta_rule_with_beta_two_theta():
    rng = np.random.default_rng(2)
    q, k, v, th, _, _, M0, _ = make(rng)
    z = np.zeros_like(th)
    o, s = T.linear_memory(q, k, v, th, z, z, state=T.MemoryState((M0,), (np.zeros_like(M0),)))
    for form in dn.FORMS:
        ref, S = dn.delta_rule(q, k, v, 2 * th, form=form, chunk_size=4, state=M0)
        assert_close(f"delta rule {form}", ref, o, rtol=RTOL)
        assert_close("state", S, s.M[0], rtol=RTOL)
    bad, _ = dn.delta_rule(q, k, v, th, state=M0)       # beta = theta is not it
    assert np.abs(bad - o).max() > 1e-2


def mlp_paper_loop(q, k, v, theta, eta, alpha, W1, W2, act, chunk=1):
    """The deep memory: Titans eqs. (13)-(14) for each of W1, W2 (torch autograd per token, one
    sequence and head at a time), gradients of a chunk at its first memory."""
    B, H, L, _ = q.shape
    o = np.zeros(v.shape)
    for b in range(B):
        for h in range(H):
            P = [torch.tensor(W1[h]), torch.tensor(W2[h])]
            S = [torch.zeros_like(p) for p in P]
            for t in range(L):
                if t % chunk == 0:
                    start = [p.clone().requires_grad_(True) for p in P]
                kt, vt = torch.tensor(k[b, h, t]), torch.tensor(v[b, h, t])
                loss = ((act(kt @ start[0]) @ start[1] - vt) ** 2).sum()
                grads = torch.autograd.grad(loss, start)
                S = [eta[b, h, t] * s - theta[b, h, t] * g for s, g in zip(S, grads)]
                P = [(1 - alpha[b, h, t]) * p + s for p, s in zip(P, S)]
                o[b, h, t] = (act(torch.tensor(q[b, h, t]) @ P[0]) @ P[1]).numpy()
    return o


ACTS = {"silu": torch.nn.functional.silu,
        "gelu": lambda x: torch.nn.functional.gelu(x, approximate="tanh")}


@pytest.mark.parametrize("activation", ["silu", "gelu"])
@pytest.mark.parametrize("chunk", [1, 4])
def test_mlp_memory_matches_paper_loop(activation, chunk):
    rng = np.random.default_rng(3)
    q, k, v, th, et, al, _, _ = make(rng, L=9)
    p = {"W1": rng.standard_normal((2, 4, 6)) * 0.5, "W2": rng.standard_normal((2, 6, 3)) * 0.5}
    ref = mlp_paper_loop(q, k, v, th, et, al, p["W1"], p["W2"], ACTS[activation], chunk)
    form = "recurrent" if chunk == 1 else "chunked"
    o, _ = T.mlp_memory(q, k, v, th, et, al, p, activation=activation, form=form, chunk_size=chunk)
    assert_close(f"mlp {activation} C={chunk}", ref, o, rtol=RTOL)
    if chunk == 1:
        tt = lambda a: torch.tensor(a)   # noqa: E731
        o_ag, _ = T.mlp_memory(*map(tt, (q, k, v, th, et, al)), {n: tt(a) for n, a in p.items()},
                               activation=activation, grad="autograd")
        assert isinstance(o_ag, torch.Tensor)
        assert_close("autograd inner step", ref, o_ag.numpy(), rtol=RTOL)


def test_mlp_hand_gradient_against_finite_differences():
    rng = np.random.default_rng(4)
    W1, W2 = rng.standard_normal((1, 1, 3, 5)), rng.standard_normal((1, 1, 5, 2))
    k, v = rng.standard_normal((1, 1, 1, 3)), rng.standard_normal((1, 1, 1, 2))
    g1, g2 = T.mlp_grads(W1, W2, k, v, "silu")

    def loss1(w):
        h = k[0, 0, 0] @ w
        return float(((h / (1 + np.exp(-h))) @ W2[0, 0] - v[0, 0, 0]) @ ((h / (1 + np.exp(-h))) @ W2[0, 0] - v[0, 0, 0]))

    def loss2(w):
        h = k[0, 0, 0] @ W1[0, 0]
        e = (h / (1 + np.exp(-h))) @ w - v[0, 0, 0]
        return float(e @ e)

    assert_close("dW1", numerical_gradient(loss1, W1[0, 0].copy()), g1[0, 0, 0], rtol=1e-6)
    assert_close("dW2", numerical_gradient(loss2, W2[0, 0].copy()), g2[0, 0, 0], rtol=1e-6)


def test_outer_gradients_flow_through_the_inner_loop():
    """Autograd through the chunked and recurrent forms at chunk 1 gives the same outer gradient."""
    rng = np.random.default_rng(5)
    args = [torch.tensor(a, requires_grad=True) for a in make(rng, L=6)[:6]]
    grads = []
    for form in ("recurrent", "chunked"):
        o, _ = T.linear_memory(*args, form=form, chunk_size=1)
        grads.append(torch.autograd.grad((o ** 2).sum(), args))
    for a, b in zip(*grads):
        assert_close("outer grad", a.numpy(), b.numpy(), rtol=RTOL)


def test_torch_stays_torch_and_float32_kept():
    rng = np.random.default_rng(6)
    args = [torch.tensor(a, dtype=torch.float32) for a in make(rng)[:6]]
    o, s = T.linear_memory(*args, form="chunked", chunk_size=4)
    assert isinstance(o, torch.Tensor) and o.dtype == torch.float32
    assert isinstance(s.M[0], torch.Tensor)
    o32, _ = T.linear_memory(*[a.numpy() for a in args])
    assert o32.dtype == np.float32


def test_window_attention_against_a_loop():
    rng = np.random.default_rng(7)
    q, k, v = (rng.standard_normal((1, 2, 9, 4)) for _ in range(3))
    o = T.sliding_window_attention(q, k, v, window=3, n_persist=2)
    for t in range(9):
        keys = sorted(set(range(max(0, t - 2), t + 1)) | set(range(min(2, t + 1))))
        s = np.einsum("hd,hsd->hs", q[0, :, t], k[0][:, keys]) / 2.0      # sqrt(d) = 2
        w = np.exp(s - s.max(-1, keepdims=True))
        w /= w.sum(-1, keepdims=True)
        assert_close(f"swa t={t}", np.einsum("hs,hsd->hd", w, v[0][:, keys]), o[0, :, t], rtol=1e-12)


@pytest.mark.parametrize("kind", T.KINDS)
def test_architectures_run_and_are_causal(kind):
    rng = np.random.default_rng(8)
    p = T.init_layer(rng, 8, kind=kind, n_persist=3)
    x = rng.standard_normal((2, 12, 8))
    y = T.titans_layer(p, x, kind=kind, window=4, segment=4, chunk_size=4)
    assert y.shape == x.shape and np.isfinite(y).all()
    x2 = x.copy()
    x2[:, 9:] += 1.0                                        # change the future only
    y2 = T.titans_layer(p, x2, kind=kind, window=4, segment=4, chunk_size=4)
    cut = 8 if kind == "mac" else 9                         # MAC: causal up to its segment
    assert_close("past unchanged", y[:, :cut], y2[:, :cut], rtol=1e-12)
    assert np.abs(y[:, 9:] - y2[:, 9:]).max() > 1e-6
    yt = T.titans_layer({n: torch.tensor(a) for n, a in p.items()}, torch.tensor(x), kind=kind,
                        window=4, segment=4, chunk_size=4)
    assert_close("torch", y, yt.numpy(), rtol=1e-12)


def test_bad_input():
    rng = np.random.default_rng(9)
    q, k, v, th, et, al, _, _ = make(rng)
    with pytest.raises(ValueError, match=r"k: expected shape .*got \(2, 2, 11, 5\)"):
        T.linear_memory(q, np.zeros((2, 2, 11, 5)), v, th, et, al)
    with pytest.raises(ValueError, match="eta: expected shape"):
        T.linear_memory(q, k, v, th, et[:, :, :3], al)
    with pytest.raises(ValueError, match="L >= 1"):
        T.linear_memory(q[:, :, :0], k[:, :, :0], v[:, :, :0], th[..., :0], et[..., :0], al[..., :0])
    with pytest.raises(ValueError, match="form: expected one of"):
        T.linear_memory(q, k, v, th, et, al, form="parallel")
    with pytest.raises(ValueError, match="chunk_size: expected a positive integer"):
        T.linear_memory(q, k, v, th, et, al, form="chunked", chunk_size=0)
    with pytest.raises(ValueError, match="theta: expected a floating-point array"):
        T.linear_memory(q, k, v, th.astype(int), et, al)
    with pytest.raises(ValueError, match=r"state.M\[0\]: expected"):
        T.linear_memory(q, k, v, th, et, al, state=T.MemoryState((np.zeros((2, 2, 3, 3)),),
                                                                 (np.zeros((2, 2, 4, 3)),)))
    p = {"W1": np.zeros((2, 4, 5)), "W2": np.zeros((2, 6, 3))}
    with pytest.raises(ValueError, match=r"params\['W2'\]: expected shape"):
        T.mlp_memory(q, k, v, th, et, al, p)
    with pytest.raises(ValueError, match="grad: 'autograd' needs torch"):
        T.mlp_memory(q, k, v, th, et, al, {"W1": np.zeros((2, 4, 5)), "W2": np.zeros((2, 5, 3))},
                     grad="autograd")
    with pytest.raises(ValueError, match="kind: expected one of"):
        T.titans_layer(T.init_layer(rng, 8), rng.standard_normal((1, 4, 8)), kind="mem")
