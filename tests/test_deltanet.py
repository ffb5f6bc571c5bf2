"""Tests for rnnkit.deltanet: the delta rule, Gated DeltaNet and DeltaProduct against naive loops
written from the papers' equations, chunkwise vs recurrent, the hand backward, bad inputs."""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rnnkit import deltanet as dn
from rnnkit.core.testing import assert_close, numerical_gradient

RTOL = 1e-12     # float64; chunkwise and recurrent differ by a few ulps (triangular solve)


def make(rng, B=2, H=2, L=9, dk=4, dv=3, nh=None, beta_max=2.0):
    q = rng.standard_normal((B, H, L, dk))
    kshape = (B, H, L, dk) if nh is None else (B, H, L, nh, dk)
    vshape = (B, H, L, dv) if nh is None else (B, H, L, nh, dv)
    bshape = (B, H, L) if nh is None else (B, H, L, nh)
    k = dn.l2_normalize(rng.standard_normal(kshape))
    v = rng.standard_normal(vshape)
    beta = beta_max / (1 + np.exp(-rng.standard_normal(bshape)))
    g = -rng.uniform(0.0, 1.0, (B, H, L))
    S0 = rng.standard_normal((B, H, dk, dv))
    return q, k, v, beta, g, S0


def paper_loop(q, k, v, beta, g=None, S0=None):
    """Yang et al. 2024 eq. (1) / Gated DeltaNet eq. (10), column form S in (dv, dk) as in the
    papers: S_t = S_{t-1} (alpha_t (I - beta_t k_t k_t^T)) + beta_t v_t k_t^T, o_t = S_t q_t."""
    B, H, L, dk = q.shape
    dv = v.shape[-1]
    o = np.zeros((B, H, L, dv))
    S_out = np.zeros((B, H, dk, dv))
    for b in range(B):
        for h in range(H):
            S = np.zeros((dv, dk)) if S0 is None else S0[b, h].T.copy()
            for t in range(L):
                kt, vt = k[b, h, t][:, None], v[b, h, t][:, None]
                alpha = 1.0 if g is None else np.exp(g[b, h, t])
                S = S @ (alpha * (np.eye(dk) - beta[b, h, t] * kt @ kt.T)) + beta[b, h, t] * vt @ kt.T
                o[b, h, t] = S @ q[b, h, t]
            S_out[b, h] = S.T
    return o, S_out


def product_loop(q, k, v, beta, S0):
    """DeltaProduct (Siems et al. 2025, eq. 2): n_h Householder steps per token."""
    B, H, L, nh, dk = k.shape
    o = np.zeros((B, H, L, v.shape[-1]))
    for b in range(B):
        for h in range(H):
            S = S0[b, h].copy()
            for t in range(L):
                for j in range(nh):
                    kt = k[b, h, t, j][None]
                    S = (np.eye(dk) - beta[b, h, t, j] * kt.T @ kt) @ S + beta[b, h, t, j] * kt.T @ v[b, h, t, j][None]
                o[b, h, t] = q[b, h, t] @ S
    return o


@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("chunk", [1, 2, 4, 9, 32])
def test_forms_match_paper_loop(gated, chunk):
    rng = np.random.default_rng(0)
    q, k, v, beta, g, S0 = make(rng)
    ref_o, ref_S = paper_loop(q, k, v, beta, g if gated else None, S0)
    for form in dn.FORMS:
        if gated:
            o, S = dn.gated_delta_rule(q, k, v, g, beta, form=form, chunk_size=chunk, state=S0)
        else:
            o, S = dn.delta_rule(q, k, v, beta, form=form, chunk_size=chunk, state=S0)
        assert_close(f"o {form} C={chunk}", ref_o, o, rtol=RTOL)
        assert_close(f"S {form} C={chunk}", ref_S, S, rtol=RTOL)


def test_length_one_and_zero_state():
    rng = np.random.default_rng(1)
    q, k, v, beta, g, _ = make(rng, L=1)
    o, S = dn.delta_rule(q, k, v, beta, form="chunkwise", chunk_size=4)
    # one token from S = 0: S_1 = beta k^T v, o = beta (q.k) v
    ref = (beta * np.sum(q * k, -1))[..., None] * v
    assert_close("o at L=1", ref, o, rtol=RTOL)
    assert_close("S at L=1", beta[:, :, 0, None, None] * k[:, :, 0, :, None] * v[:, :, 0, None, :],
                 S, rtol=RTOL)


def test_gated_with_zero_gate_is_delta_rule():
    rng = np.random.default_rng(2)
    q, k, v, beta, g, S0 = make(rng, L=11)
    a = dn.delta_rule(q, k, v, beta, form="chunkwise", chunk_size=3, state=S0)
    b = dn.gated_delta_rule(q, k, v, 0 * g, beta, form="chunkwise", chunk_size=3, state=S0)
    assert_close("o", a[0], b[0], rtol=RTOL)


def test_chunked_state_carries_over():
    """Running two halves with the state handed over equals one run."""
    rng = np.random.default_rng(3)
    q, k, v, beta, g, S0 = make(rng, L=10)
    o, S = dn.gated_delta_rule(q, k, v, g, beta, form="chunkwise", chunk_size=4, state=S0)
    o1, S1 = dn.gated_delta_rule(q[:, :, :6], k[:, :, :6], v[:, :, :6], g[:, :, :6], beta[:, :, :6],
                                 form="chunkwise", chunk_size=4, state=S0)
    o2, S2 = dn.gated_delta_rule(q[:, :, 6:], k[:, :, 6:], v[:, :, 6:], g[:, :, 6:], beta[:, :, 6:],
                                 form="recurrent", state=S1)
    assert_close("o", o, np.concatenate([o1, o2], axis=2), rtol=RTOL)
    assert_close("S", S, S2, rtol=RTOL)


def test_delta_rule_is_a_gradient_step():
    """(17.1) is S - beta grad_S (1/2)||k S - v||^2: the same numbers from finite differences."""
    rng = np.random.default_rng(4)
    S = rng.standard_normal((4, 3))
    k, v, beta = dn.l2_normalize(rng.standard_normal(4)), rng.standard_normal(3), 0.7
    grad = numerical_gradient(lambda s: 0.5 * np.sum((k @ s - v) ** 2), S)
    q0 = np.zeros((1, 1, 1, 4))
    _, S1 = dn.delta_rule(q0, k[None, None, None], v[None, None, None],
                          np.full((1, 1, 1), beta), state=S[None, None])
    assert_close("one delta step", S - beta * grad, S1[0, 0], rtol=1e-8)


def test_exact_retrieval_with_orthonormal_keys():
    """With beta = 1 and orthonormal keys, q = k_i reads back v_i exactly, even after overwriting."""
    rng = np.random.default_rng(5)
    dk = 4
    K = np.linalg.qr(rng.standard_normal((dk, dk)))[0]
    keys = np.concatenate([K, K[:2]])                 # keys 0, 1 written twice (new values)
    vals = rng.standard_normal((6, 3))
    o, S = dn.delta_rule(np.zeros((1, 1, 6, dk)), keys[None, None], vals[None, None],
                         np.ones((1, 1, 6)))
    assert_close("k_0 S", vals[4], K[0] @ S[0, 0], rtol=1e-12)
    assert_close("k_3 S", vals[3], K[3] @ S[0, 0], rtol=1e-12)


@pytest.mark.parametrize("chunk", [1, 3, 8])
def test_deltaproduct(chunk):
    rng = np.random.default_rng(6)
    q, k, v, beta, g, S0 = make(rng, L=7, nh=3)
    ref = product_loop(q, k, v, beta, S0)
    for form in dn.FORMS:
        o, _ = dn.deltaproduct(q, k, v, beta, form=form, chunk_size=chunk, state=S0)
        assert_close(f"deltaproduct {form}", ref, o, rtol=RTOL)
    # one Householder step per token is the delta rule
    o1, _ = dn.deltaproduct(q, k[:, :, :, :1], v[:, :, :, :1], beta[..., :1], g=g, state=S0)
    o2, _ = dn.gated_delta_rule(q, k[:, :, :, 0], v[:, :, :, 0], g, beta[..., 0], state=S0)
    assert_close("n_h = 1", o2, o1, rtol=RTOL)
    o3, _ = dn.deltaproduct(q, k, v, beta, g=g, form="chunkwise", chunk_size=chunk, state=S0)
    o4, _ = dn.deltaproduct(q, k, v, beta, g=g, state=S0)
    assert_close("gated deltaproduct", o4, o3, rtol=RTOL)


@pytest.mark.parametrize("gated", [False, True])
def test_backward_vs_autograd_and_finite_differences(gated):
    rng = np.random.default_rng(7)
    q, k, v, beta, g, S0 = make(rng, B=1, H=2, L=5, dk=3, dv=2)
    g = g if gated else None
    do = rng.standard_normal((1, 2, 5, 2))
    dSL = rng.standard_normal((1, 2, 3, 2))
    grads = dn.delta_rule_backward(q, k, v, beta, do, g=g, state=S0, dstate=dSL)
    args = {"q": q, "k": k, "v": v, "beta": beta, "g": g, "S0": S0}

    def loss(a):
        o, S = dn.gated_delta_rule(a["q"], a["k"], a["v"], a["g"], a["beta"], state=a["S0"],
                                   form="chunkwise", chunk_size=2)
        return (o * do).sum() + (S * dSL).sum()

    T = {n: (None if a is None else torch.tensor(a, requires_grad=True)) for n, a in args.items()}
    lt = dn.gated_delta_rule(T["q"], T["k"], T["v"], T["g"], T["beta"], state=T["S0"],
                             form="chunkwise", chunk_size=2)
    ((lt[0] * torch.tensor(do)).sum() + (lt[1] * torch.tensor(dSL)).sum()).backward()
    names = {"q": "dq", "k": "dk", "v": "dv", "beta": "dbeta", "g": "dg", "S0": "dstate"}
    for name, field in names.items():
        if args[name] is None:
            assert getattr(grads, field) is None
            continue
        hand = getattr(grads, field)
        assert_close(f"{field} vs autograd", T[name].grad.numpy(), hand, rtol=1e-12)

        def f(x, name=name):
            return loss({**args, name: x})
        assert_close(f"{field} vs finite differences", numerical_gradient(f, args[name]), hand,
                     rtol=1e-7)


def test_torch_and_float32_in_give_the_same_out():
    rng = np.random.default_rng(8)
    q, k, v, beta, g, S0 = make(rng)
    o, S = dn.gated_delta_rule(*(a.astype(np.float32) for a in (q, k, v, g, beta)),
                               form="chunkwise", chunk_size=4)
    assert o.dtype == np.float32 and S.dtype == np.float32
    ot, _ = dn.gated_delta_rule(*(torch.tensor(a) for a in (q, k, v, g, beta)), form="chunkwise",
                                chunk_size=4)
    assert isinstance(ot, torch.Tensor)
    assert_close("torch", dn.gated_delta_rule(q, k, v, g, beta)[0], ot, rtol=RTOL)


def test_bad_inputs():
    rng = np.random.default_rng(9)
    q, k, v, beta, g, S0 = make(rng)
    with pytest.raises(ValueError, match="beta"):
        dn.delta_rule(q, k, v, beta[:, :, :-1])
    with pytest.raises(ValueError, match="k"):
        dn.delta_rule(q, k[..., :-1], v, beta)
    with pytest.raises(ValueError, match="L >= 1"):
        dn.delta_rule(q[:, :, :0], k[:, :, :0], v[:, :, :0], beta[:, :, :0])
    with pytest.raises(ValueError, match="floating"):
        dn.delta_rule(q.astype(np.int64), k, v, beta)
    with pytest.raises(ValueError, match="form"):
        dn.delta_rule(q, k, v, beta, form="parallel")
    with pytest.raises(ValueError, match="chunk_size"):
        dn.delta_rule(q, k, v, beta, form="chunkwise", chunk_size=0)
    with pytest.raises(ValueError, match="state"):
        dn.delta_rule(q, k, v, beta, state=S0[:, :, :, :-1])
    with pytest.raises(ValueError, match="g"):
        dn.gated_delta_rule(q, k, v, g[:, :1], beta)


@pytest.mark.parametrize("gated", [False, True])
def test_wy_factors_against_the_product_of_transitions(gated):
    """(17.3)/(17.6) for one chunk: I - K^T W is the product of the chunk's transitions
    (exp(g_r) times (I - beta_r k_r^T k_r), the decays rescaled to the chunk's end as in (17.6)),
    and K^T U is the state the chunk writes from S_0 = 0."""
    rng = np.random.default_rng(10)
    C, dk, dv = 6, 4, 3
    k = dn.l2_normalize(rng.standard_normal((C, dk)))
    v, beta = rng.standard_normal((C, dv)), rng.uniform(0, 2, C)
    g = -rng.uniform(0, 1, C) if gated else None
    W, U, G = dn.wy_factors(k, v, beta, g)
    P, H = np.eye(dk), np.zeros((dk, dv))
    for r in range(C):
        a = 1.0 if g is None else np.exp(g[r])
        T = np.eye(dk) - beta[r] * np.outer(k[r], k[r])
        P, H = T @ (a * P), T @ (a * H) + beta[r] * np.outer(k[r], v[r])
    if gated:
        # (17.6): S_C = exp(G_C) S_0 + (exp(G_C - G) K)^T (U - W S_0)
        Kend = np.exp(G[-1] - G)[:, None] * k
        assert_close("P_C", P, np.exp(G[-1]) * np.eye(dk) - Kend.T @ W, rtol=1e-13)
        assert_close("H_C", H, Kend.T @ U, rtol=1e-13)
    else:
        assert G is None
        assert_close("P_C = I - K^T W", P, np.eye(dk) - k.T @ W, rtol=1e-13)
        assert_close("H_C = K^T U", H, k.T @ U, rtol=1e-13)


def test_deltaproduct_length_one_and_bad_inputs():
    rng = np.random.default_rng(11)
    q, k, v, beta, g, S0 = make(rng, L=1, nh=2)
    ref = product_loop(q, k, v, beta, S0)
    assert_close("L = 1", ref, dn.deltaproduct(q, k, v, beta, form="chunkwise", chunk_size=4,
                                              state=S0)[0], rtol=RTOL)
    q, k, v, beta, g, S0 = make(rng, L=5, nh=2)
    with pytest.raises(ValueError, match="beta"):
        dn.deltaproduct(q, k, v, beta[..., :1])
    with pytest.raises(ValueError, match="v"):
        dn.deltaproduct(q, k, v[:, :, :, :1], beta)
    with pytest.raises(ValueError, match="k"):
        dn.deltaproduct(q, k[:, :, :, 0], v, beta)
    with pytest.raises(ValueError, match="form"):
        dn.deltaproduct(q, k, v, beta, form="parallel")
    with pytest.raises(ValueError, match="L >= 1"):
        dn.deltaproduct(*(a[:, :, :0] for a in (q, k, v, beta)))


def test_backward_bad_inputs():
    rng = np.random.default_rng(12)
    q, k, v, beta, g, S0 = make(rng)
    do = rng.standard_normal(v.shape)
    with pytest.raises(ValueError, match="do"):
        dn.delta_rule_backward(q, k, v, beta, do[:, :, :-1])
    with pytest.raises(ValueError, match="g"):
        dn.delta_rule_backward(q, k, v, beta, do, g=g[..., :-1])


@given(B=st.integers(1, 2), H=st.integers(1, 2), L=st.integers(1, 12), dk=st.integers(1, 4),
       dv=st.integers(1, 3), chunk=st.integers(1, 7), gated=st.booleans())
def test_property_forms_agree(B, H, L, dk, dv, chunk, gated):
    rng = np.random.default_rng(L * 7 + chunk)
    q, k, v, beta, g, S0 = make(rng, B, H, L, dk, dv)
    g = g if gated else 0 * g
    a = dn.gated_delta_rule(q, k, v, g, beta, state=S0)
    b = dn.gated_delta_rule(q, k, v, g, beta, form="chunkwise", chunk_size=chunk, state=S0)
    assert_close("o", a[0], b[0], rtol=1e-11)
    assert_close("S", a[1], b[1], rtol=1e-11)


def test_delta_lm_experiment_matches_widths_and_picks_the_rate_per_model():
    """experiments.delta_lm (chapter 17) at its tiny size: every model's width is the one whose
    parameter count is nearest the LSTM's, the rate is the best mean validation loss over the
    seeds, and torch's thread count is as it was."""
    import torch

    from rnnkit.experiments import delta_lm as E
    from rnnkit.tasks import text

    threads = torch.get_num_threads()
    out = E.run("tiny")
    assert torch.get_num_threads() == threads
    cfg, models = out["config"], out["figures"]["models"]
    V = text.load_corpus("genesis").V
    assert set(models) == set(E.MODELS)
    for name, m in models.items():
        expected_D = cfg["H_lstm"] if name == "LSTM" else E.matched_width(name, V, cfg["target_params"],
                                                                          cfg["n_heads"])
        assert m["D"] == expected_D
        means = {float(lr): np.mean(v) for lr, v in m["all_lrs"].items()}
        assert m["lr"] == min(means, key=means.get) and m["val_loss"] == m["all_lrs"][str(m["lr"])]
        assert len(m["val_loss"]) == len(cfg["seeds"]) and np.all(np.isfinite(m["val_loss"]))
        assert len(m["curve"]) == cfg["steps"]
    assert models["LSTM"]["n_params"] == cfg["target_params"]
    with pytest.raises(ValueError, match="size"):
        E.run("huge")
