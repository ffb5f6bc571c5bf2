"""Tests for rnnkit.seq2seq: teacher forcing equals the step loop, padding is ignored, greedy and
beam search agree with each other and beam search with exhaustive search, autograd gradients
against finite differences, bad input, shapes."""
import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnkit import gru, seq2seq
from rnnkit.core.backend import to_backend
from rnnkit.training.layers import log_softmax
from rnnkit.core.testing import assert_close, numerical_gradient

RTOL = 1e-12       # float64, exact reformulations of the same computation
RTOL_FD = 1e-6     # central differences (eps = 1e-6) against autograd
BOS, EOS = 1, 2
MODES = [None, 3, "luong"]  # without attention (fixed context), additive (attention_size 3), Luong


def make(rng, B=3, L=6, T=4, V_x=7, V_y=5, E=3, H=4, A=3, pad=True):
    params = (seq2seq.init(rng, V_x, V_y, E, H, attention_score="luong") if A == "luong"
              else seq2seq.init(rng, V_x, V_y, E, H, attention_size=A))
    lengths = rng.integers(1, L + 1, B) if pad else np.full(B, L)
    lengths[0] = L
    x_mask = (np.arange(L)[None, :] < lengths[:, None]).astype(np.float64)   # (B, L)
    x_ids = rng.integers(0, V_x, (B, L)) * (x_mask > 0)
    y_out = rng.integers(0, V_y, (B, T))
    y_out[:, -1] = EOS
    y_in = np.concatenate([np.full((B, 1), BOS), y_out[:, :-1]], axis=1)
    return params, x_ids, x_mask, y_in, y_out


def decoder_loop_naive(params, x_ids, x_mask, y_in):
    """One sentence and one step at a time, from the chapter's equations: GRU encoder over the
    real tokens only, s_0 = tanh(h_L W_s + b_s), then per step the context (attention over the
    real tokens, or h_L), the decoder GRU on [y_{i-1} E_y, c_i] and the readout of [s_i, c_i]."""
    B, T = y_in.shape
    out = np.zeros((B, T, params["out"]["b_y"].shape[0]))
    for b in range(B):
        n = int(x_mask[b].sum())
        h_all, h_L = gru.forward(params["enc"], params["emb_x"][x_ids[b:b + 1, :n]])
        s = np.tanh(h_L @ params["W_s"] + params["b_s"])
        for i in range(T):
            if "attn" in params:
                a = params["attn"]
                if "v" in a:                         # additive: v^T tanh(W_a s + U_a h_j)
                    e = np.array([np.tanh(s[0] @ a["W_a"] + h_all[0, j] @ a["U_a"]) @ a["v"] for j in range(n)])
                else:                                # Luong's general score: s^T W_a h_j
                    e = np.array([s[0] @ a["W_a"] @ h_all[0, j] for j in range(n)])
                w = np.exp(e - e.max()) / np.exp(e - e.max()).sum()
                c = (w[:, None] * h_all[0]).sum(axis=0)[None]
            else:
                c = h_L
            x = np.concatenate([params["emb_y"][y_in[b, i]][None], c], axis=1)
            s, _ = gru.step(params["dec"], x, s)
            out[b, i] = (np.concatenate([s, c], axis=1) @ params["out"]["W_hy"] + params["out"]["b_y"])[0]
    return out


@pytest.mark.parametrize("A", MODES)
def test_teacher_forcing_equals_naive_loop(A):
    params, x_ids, x_mask, y_in, _ = make(np.random.default_rng(0), A=A)
    logits, alpha = seq2seq.forward(params, x_ids, x_mask, y_in)
    assert_close("logits", decoder_loop_naive(params, x_ids, x_mask, y_in), logits, rtol=RTOL)
    assert (alpha is None) == (A is None)


@pytest.mark.parametrize("A", MODES)
def test_teacher_forcing_equals_step_by_step_with_the_gold_prefix(A):
    params, x_ids, x_mask, y_in, _ = make(np.random.default_rng(1), A=A)
    logits, alpha = seq2seq.forward(params, x_ids, x_mask, y_in)
    enc = seq2seq.encode(params, x_ids, x_mask)
    s = enc.s0
    for i in range(y_in.shape[1]):
        z, s, a = seq2seq.step(params, enc, y_in[:, i], s)
        assert_close(f"logits at step {i + 1}", logits[:, i], z, rtol=RTOL)
        if A is not None:
            assert_close(f"alpha at step {i + 1}", alpha[:, i], a, rtol=RTOL)


@pytest.mark.parametrize("A", MODES)
def test_padding_is_ignored(A):
    """A padded sentence gives the same outputs as the same sentence alone, whatever the pad ids."""
    params, x_ids, x_mask, y_in, _ = make(np.random.default_rng(2), A=A)
    b = int(np.argmin(x_mask.sum(axis=1)))
    n = int(x_mask[b].sum())
    assert n < x_ids.shape[1], "the test needs a padded row"
    alone, _ = seq2seq.forward(params, x_ids[b:b + 1, :n], None, y_in[b:b + 1])
    junk = x_ids.copy()
    junk[x_mask == 0] = 6
    padded, alpha = seq2seq.forward(params, junk, x_mask, y_in)
    assert_close("padded vs alone", alone[0], padded[b], rtol=RTOL)
    if A is not None:
        assert np.all(alpha[b, :, n:] == 0.0)
        assert_close("sum alpha", np.ones(alpha.shape[:2]), alpha.sum(axis=-1), rtol=1e-14)


def test_log_likelihood_and_loss():
    params, x_ids, x_mask, y_in, y_out = make(np.random.default_rng(3))
    logits, _ = seq2seq.forward(params, x_ids, x_mask, y_in)
    logp = log_softmax(logits)
    B, T = y_out.shape
    ref = np.array([sum(logp[b, i, y_out[b, i]] for i in range(T)) for b in range(B)])
    assert_close("log p(y|x)", ref, seq2seq.log_likelihood(params, x_ids, x_mask, y_in, y_out), rtol=RTOL)
    y_mask = np.ones((B, T))
    y_mask[0, -2:] = 0
    ref_m = ref.copy()
    ref_m[0] -= logp[0, -1, y_out[0, -1]] + logp[0, -2, y_out[0, -2]]
    assert_close("masked loss", -ref_m.sum() / y_mask.sum(),
                 seq2seq.loss(params, x_ids, x_mask, y_in, y_out, y_mask), rtol=RTOL)


@pytest.mark.parametrize("A", MODES)
def test_greedy_is_argmax_of_the_step_loop_and_its_score_is_the_likelihood(A):
    params, x_ids, x_mask, _, _ = make(np.random.default_rng(4), A=A, V_y=6)
    y, logp, alpha = seq2seq.greedy_decode(params, x_ids, x_mask, bos=BOS, eos=EOS, max_len=5)
    enc = seq2seq.encode(params, x_ids, x_mask)
    s, prev = enc.s0, np.full(x_ids.shape[0], BOS)
    for i in range(5):
        z, s, _ = seq2seq.step(params, enc, prev, s)
        prev = np.argmax(z, axis=-1)
        done = (y[:, :i] == EOS).any(axis=1)
        assert np.all(y[~done, i] == prev[~done]) and np.all(y[done, i] == EOS)
        prev = y[:, i]
    for b in range(len(y)):
        out = list(y[b])
        out = out[:out.index(EOS) + 1] if EOS in out else out
        y_in = np.array([[BOS] + out[:-1]])
        ll = seq2seq.log_likelihood(params, x_ids[b:b + 1], x_mask[b:b + 1], y_in, np.array([out]))
        assert_close(f"greedy score of sentence {b}", ll, logp[b:b + 1], rtol=1e-12)


@pytest.mark.parametrize("A", MODES)
def test_beam_width_one_is_greedy(A):
    params, x_ids, x_mask, _, _ = make(np.random.default_rng(5), B=5, A=A, V_y=6)
    y, logp, _ = seq2seq.greedy_decode(params, x_ids, x_mask, bos=BOS, eos=EOS, max_len=6)
    seqs, scores = seq2seq.beam_search(params, x_ids, x_mask, bos=BOS, eos=EOS, max_len=6, K=1)
    for b, seq in enumerate(seqs):
        out = list(y[b])
        out = out[:out.index(EOS) + 1] if EOS in out else out
        assert list(seq) == out
    assert_close("beam K=1 scores", logp, scores, rtol=1e-12)


def _exhaustive(params, x_ids, x_mask, V, max_len, length_penalty):
    """Every output the search space holds: T - 1 non-EOS tokens then EOS (T <= max_len), or
    max_len non-EOS tokens (cut off); scored by teacher forcing."""
    best, best_score = None, -np.inf
    tokens = [v for v in range(V) if v != EOS]
    for T in range(1, max_len + 1):
        tails = [(EOS,)] if T < max_len else [(EOS,)] + [(v,) for v in tokens]
        for head in itertools.product(tokens, repeat=T - 1):
            for tail in tails:
                out = list(head + tail)
                ll = float(seq2seq.log_likelihood(params, x_ids, x_mask, np.array([[BOS] + out[:-1]]),
                                                  np.array([out]))[0])
                score = ll / T ** length_penalty
                if score > best_score:
                    best, best_score = out, score
    return best, best_score


@pytest.mark.parametrize("A, length_penalty", [(None, 0.0), (3, 0.0), (3, 1.0)])
def test_wide_beam_finds_the_exhaustive_argmax(A, length_penalty):
    """V = 3 output tokens, max_len = 4: 1 + 2 + 4 + 8 + 16 = 31 possible outputs; K = 27 keeps
    every prefix, so beam search must return the best of them."""
    rng = np.random.default_rng(6)
    params, x_ids, x_mask, _, _ = make(rng, B=3, V_y=3, A=A)
    params["out"]["W_hy"] *= 3.0                     # sharper distributions: a non-trivial argmax
    seqs, scores = seq2seq.beam_search(params, x_ids, x_mask, bos=BOS, eos=EOS, max_len=4, K=27,
                                       length_penalty=length_penalty)
    greedy_beats = 0
    for b in range(3):
        best, best_score = _exhaustive(params, x_ids[b:b + 1], x_mask[b:b + 1], 3, 4, length_penalty)
        assert list(seqs[b]) == best, f"sentence {b}"
        assert_close("its log p", best_score * len(best) ** length_penalty, scores[b], rtol=1e-12)
        greedy = seq2seq.beam_search(params, x_ids[b:b + 1], x_mask[b:b + 1], bos=BOS, eos=EOS,
                                     max_len=4, K=1, length_penalty=length_penalty)[0][0]
        greedy_beats += list(greedy) != best
    if A is None and length_penalty == 0.0:
        assert greedy_beats > 0, "the test should include a sentence where greedy is not optimal"


def test_autograd_gradient_matches_finite_differences():
    """The book trains with torch autograd through this source: check that gradient (float64)."""
    rng = np.random.default_rng(7)
    params, x_ids, x_mask, y_in, y_out = make(rng, B=2, L=4, T=3, V_x=5, V_y=4, E=2, H=3, A=2)
    tp = to_backend(params, "torch")
    for part in tp.values():
        for v in (part.values() if isinstance(part, dict) else [part]):
            v.requires_grad_()
    batch = [torch.from_numpy(a) for a in (x_ids, x_mask, y_in, y_out)]
    seq2seq.loss(tp, *batch).backward()

    def f_of(path):
        def f(w):
            p = {k: (dict(v) if isinstance(v, dict) else v) for k, v in params.items()}
            if len(path) == 1:
                p[path[0]] = w
            else:
                p[path[0]][path[1]] = w
            return float(seq2seq.loss(p, x_ids, x_mask, y_in, y_out))
        return f

    for key, part in params.items():
        for sub, value in (part.items() if isinstance(part, dict) else [(None, part)]):
            path = (key,) if sub is None else (key, sub)
            got = tp[key].grad if sub is None else tp[key][sub].grad
            assert_close(f"d{path}", numerical_gradient(f_of(path), value), got, rtol=RTOL_FD, atol=1e-9)


def test_torch_backend_equals_numpy():
    params, x_ids, x_mask, y_in, _ = make(np.random.default_rng(8))
    logits, alpha = seq2seq.forward(params, x_ids, x_mask, y_in)
    t = to_backend([params, x_ids, x_mask, y_in], "torch")
    logits_t, alpha_t = seq2seq.forward(*t)
    assert_close("logits torch", logits, logits_t, rtol=RTOL)
    assert_close("alpha torch", alpha, alpha_t, rtol=RTOL)
    y, lp, _ = seq2seq.greedy_decode(params, x_ids, x_mask, bos=BOS, eos=EOS, max_len=4)
    y_t, lp_t, _ = seq2seq.greedy_decode(t[0], t[1], t[2], bos=BOS, eos=EOS, max_len=4)
    assert np.array_equal(y, y_t.numpy())
    assert_close("greedy logp torch", lp, lp_t, rtol=RTOL)


@settings(max_examples=20, deadline=None)
@given(B=st.integers(1, 3), L=st.integers(1, 4), T=st.integers(1, 3), H=st.integers(1, 4),
       attn=st.booleans(), seed=st.integers(0, 10_000))
def test_shapes(B, L, T, H, attn, seed):
    params, x_ids, x_mask, y_in, y_out = make(np.random.default_rng(seed), B, L, T, H=H, A=2 if attn else None)
    logits, alpha = seq2seq.forward(params, x_ids, x_mask, y_in)
    assert logits.shape == (B, T, 5)
    assert alpha is None if not attn else alpha.shape == (B, T, L)
    assert np.isfinite(float(seq2seq.loss(params, x_ids, x_mask, y_in, y_out)))
    y, lp, _ = seq2seq.greedy_decode(params, x_ids, x_mask, bos=BOS, eos=EOS, max_len=T)
    assert y.shape == (B, T) and lp.shape == (B,)
    seqs, scores = seq2seq.beam_search(params, x_ids, x_mask, bos=BOS, eos=EOS, max_len=T, K=2)
    assert len(seqs) == B and all(1 <= len(s) <= T for s in seqs) and scores.shape == (B,)


@pytest.mark.parametrize("case, match", [
    ("float ids", "integer token ids"),
    ("id too large", r"token ids in \[0, 7\)"),
    ("left padding", "right padding"),
    ("empty row", "at least one unmasked"),
    ("mask shape", "x_mask"),
    ("y batch", "y_in"),
    ("y id too large", r"y_in: expected token ids in \[0, 5\)"),
])
def test_bad_input_forward(case, match):
    params, x_ids, x_mask, y_in, _ = make(np.random.default_rng(9), pad=False)
    if case == "float ids":
        x_ids = x_ids.astype(np.float64)
    elif case == "id too large":
        x_ids = x_ids.copy()
        x_ids[0, 0] = 7
    elif case == "left padding":
        x_mask = x_mask.copy()
        x_mask[1, 0] = 0
    elif case == "empty row":
        x_mask = x_mask.copy()
        x_mask[2] = 0
    elif case == "mask shape":
        x_mask = x_mask[:, :-1]
    elif case == "y batch":
        y_in = y_in[:-1]
    elif case == "y id too large":
        y_in = y_in.copy()
        y_in[0, 1] = 5
    with pytest.raises(ValueError, match=match):
        seq2seq.forward(params, x_ids, x_mask, y_in)


@pytest.mark.parametrize("kwargs, match", [
    ({"K": 0}, "K"), ({"K": 2, "length_penalty": -1.0}, "length_penalty"),
    ({"K": 2, "bos": 5}, "bos"), ({"K": 2, "eos": -1}, "eos"), ({"K": 2, "max_len": 0}, "max_len"),
])
def test_bad_input_decoding(kwargs, match):
    params, x_ids, x_mask, _, _ = make(np.random.default_rng(10))
    args = {"bos": BOS, "eos": EOS, "max_len": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        seq2seq.beam_search(params, x_ids, x_mask, **args)
    if "K" in kwargs and kwargs["K"] == 0 or "length_penalty" in kwargs:
        return
    args.pop("K")
    with pytest.raises(ValueError, match=match):
        seq2seq.greedy_decode(params, x_ids, x_mask, **args)


def test_init_bad_sizes():
    with pytest.raises(ValueError, match="H"):
        seq2seq.init(np.random.default_rng(0), 5, 5, 3, 0)
    with pytest.raises(ValueError, match="attention_size"):
        seq2seq.init(np.random.default_rng(0), 5, 5, 3, 4, attention_size=0)
    with pytest.raises(ValueError, match="attention_size: Luong"):
        seq2seq.init(np.random.default_rng(0), 5, 5, 3, 4, attention_size=3, attention_score="luong")
    with pytest.raises(ValueError, match="attention_score"):
        seq2seq.init(np.random.default_rng(0), 5, 5, 3, 4, attention_score="dot")
    luong = seq2seq.init(np.random.default_rng(0), 5, 5, 3, 4, attention_score="luong")
    assert set(luong["attn"]) == {"W_a"} and luong["attn"]["W_a"].shape == (4, 4)


def test_benchmark_quick_mode_records():
    """rnnkit.bench.seq2seq on NumPy, two beam widths and two sentences: well-formed records."""
    from rnnkit.bench import seq2seq as seq2seq_bench

    records = seq2seq_bench.run(quick=True, backends={"numpy": True}, ks=(1, 2), B=2)
    forms = sorted((r["form"], r["params"]["K"]) for r in records)
    assert forms == [("beam search", 1), ("beam search", 2), ("greedy (batched)", 1)]
    assert all(r["impl"] == "numpy" and r["median_s"] > 0 and r["params"]["B"] == 2 for r in records)
