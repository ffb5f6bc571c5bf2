"""The RNN encoder-decoder with optional attention (additive or Luong): teacher forcing, greedy and beam search.

Equations, numbered as in chapter 5. A source sentence x_1 ... x_L and a target y_1 ... y_T are
token ids; y_0 = BOS, and y_T = EOS ends the output. Row vectors; GRU cells of chapter 3.

    (5.1)  h_j = GRU_enc(x_j E_x, h_{j-1}),  h_0 = 0                  annotations, (B, L, H)
    (5.2)  s_0 = tanh(h_L W_s + b_s)                                  decoder start (Cho et al. eq. 9)
    (5.3)  s_i = GRU_dec([y_{i-1} E_y, c_i], s_{i-1})                 decoder state, (B, H)
    (5.4)  p(y_i | y_<i, x) = softmax([s_i, c_i] W_hy + b_y)          (B, V)
    (5.5)  log p(y | x) = sum_i log p(y_i | y_<i, x);  loss = -mean over target tokens
           c_i = h_L for every i                                      without attention: one fixed context
    (5.6)-(5.8)  c_i = attention(s_{i-1}, h_1 ... h_L)                additive attention (rnnkit.attention)
    (5.9), (5.7)-(5.8)                                                Luong's score in place of (5.6)

h_L is the encoder state after the last *real* source token (padding comes after it and is
ignored); attention gives padding positions weight 0. Without attention this is Cho et al.'s
encoder-decoder (the summary c fed to every decoder step and to the readout); with it, Bahdanau
et al.'s RNNsearch.

Decoding: ``forward`` is teacher forcing (the gold y_{i-1} is fed, all steps in one call);
``step`` is one decoder step, which ``greedy_decode`` and ``beam_search`` loop, feeding back
their own predictions. The beam search keeps the K best partial hypotheses by log-probability,
moves those that emit EOS (or reach max_len) to a finished list, and returns the finished one
with the best score log p / T^length_penalty (length_penalty = 0: the plain log-probability).

Letters: B batch, L source length, T target length, V vocabulary size (V_x source, V_y target),
E embedding size, H hidden size, A attention size, K beam width.

References:
    K. Cho et al., "Learning Phrase Representations using RNN Encoder-Decoder for Statistical
    Machine Translation", EMNLP 2014, section 2.2 and appendix A.1 (s_0 = tanh(V c), c fed to
    every decoder step and to the output).
    I. Sutskever, O. Vinyals, Q. V. Le, "Sequence to Sequence Learning with Neural Networks",
    NIPS 2014, sections 2-3 (source reversed, left-to-right beam search).
    D. Bahdanau, K. Cho, Y. Bengio, "Neural Machine Translation by Jointly Learning to Align and
    Translate", ICLR 2015, section 3 and appendix A.
    Deliberate differences: GRU cells everywhere (Sutskever et al.: 4-layer LSTMs); a
    unidirectional encoder (Bahdanau et al.: bidirectional) so that with and without attention
    share one encoder; a linear readout of [s_i, c_i] (the papers: a maxout layer that also sees
    y_{i-1} E_y).
"""
from __future__ import annotations

from typing import NamedTuple

import array_api_compat
import numpy as np

from . import attention, gru
from .core.backend import to_numpy, xp_of
from .core.checks import check_positive_int, check_shape
from .training.layers import linear_init, log_softmax

__all__ = ["init", "encode", "step", "forward", "log_likelihood", "loss", "greedy_decode",
           "beam_search", "Encoded"]


class Encoded(NamedTuple):
    """The encoder's output, reused at every decoder step."""

    h_all: object    # (B, L, H) annotations h_j
    mask: object     # (B, L)    True at real source positions
    h_last: object   # (B, H)    h_L, the state after the last real token
    s0: object       # (B, H)    the decoder's initial state (5.2)
    keys: object     # (B, L, A) h_j U_a (additive), (B, L, H) h_j W_a^T (Luong), or None without attention


def init(rng: np.random.Generator, V_x: int, V_y: int, E: int, H: int, *, attention_size: int | None = None,
         attention_score: str = "additive", dtype=np.float64) -> dict:
    """Random encoder-decoder parameters; with additive attention when ``attention_size`` (A) is
    given, with Luong's score when ``attention_score="luong"`` (which has no attention size).

    Returns:
        dict with emb_x (V_x, E), enc (GRU, D=E), W_s (H, H), b_s (H,), emb_y (V_y, E),
        dec (GRU, D=E+H), out {W_hy (2H, V_y), b_y (V_y,)}[, attn {W_a, U_a, v} or {W_a (H, H)}].
    """
    for name, n in (("V_x", V_x), ("V_y", V_y), ("E", E), ("H", H)):
        check_positive_int(name, n)
    check_positive_int("attention_size", attention_size, allow_none=True)
    if attention_score not in attention.SCORES:
        raise ValueError(f"attention_score: expected one of {attention.SCORES}, got {attention_score!r}")
    if attention_score == "luong" and attention_size is not None:
        raise ValueError(f"attention_size: Luong's score has no attention size, expected None, got "
                         f"{attention_size!r}")
    b = 1.0 / np.sqrt(H)
    params = {"emb_x": (0.5 * rng.standard_normal((V_x, E))).astype(dtype),
              "enc": gru.init(rng, E, H, dtype=dtype),
              "W_s": rng.uniform(-b, b, (H, H)).astype(dtype), "b_s": np.zeros(H, dtype),
              "emb_y": (0.5 * rng.standard_normal((V_y, E))).astype(dtype),
              "dec": gru.init(rng, E + H, H, dtype=dtype),
              "out": linear_init(rng, 2 * H, V_y, dtype=dtype)}
    if attention_size is not None:
        params["attn"] = attention.init(rng, H, H, attention_size, dtype=dtype)
    elif attention_score == "luong":
        params["attn"] = attention.init(rng, H, H, score="luong", dtype=dtype)
    return params


def _check_ids(name: str, ids, V: int, spec: str, dims: dict, src: dict) -> None:
    check_shape(name, ids, spec, dims, src)
    if "int" not in str(ids.dtype):
        raise ValueError(f"{name}: expected integer token ids, got dtype {ids.dtype}")
    xp = xp_of(ids)
    lo, hi = int(xp.min(ids)), int(xp.max(ids))
    if lo < 0 or hi >= V:
        raise ValueError(f"{name}: expected token ids in [0, {V}), got values in [{lo}, {hi}]")


def _check_mask(x_mask, dims: dict, src: dict):
    """A right-padded source mask: (B, L), ones then zeros in every row, at least one 1."""
    m = attention.check_mask(x_mask, dims, src, "x_mask")
    xp = xp_of(m)
    if bool(xp.any(m[:, 1:] & ~m[:, :-1])):
        raise ValueError("x_mask: expected right padding (ones, then zeros, in every row), got a "
                         "real position after a padded one")
    return m


def encode(params: dict, x_ids, x_mask=None) -> Encoded:
    """Equations (5.1)-(5.2): the annotations, h_L and s_0, plus the attention keys.

    Args:
        params: from ``init``.  x_ids: (B, L) integer source tokens.
        x_mask: (B, L) 1 for real tokens, 0 for right padding; None: no padding.
    """
    dims, src = {}, {}
    _check_ids("x_ids", x_ids, params["emb_x"].shape[0], "B L", dims, src)
    xp = xp_of(x_ids, params["W_s"])
    if x_mask is None:
        x_mask = xp.ones(tuple(x_ids.shape), dtype=xp.bool, device=array_api_compat.device(x_ids))
    m = _check_mask(x_mask, dims, src)
    h_all, _ = gru.forward(params["enc"], params["emb_x"][x_ids])                  # (5.1)
    B = h_all.shape[0]
    last = xp.sum(xp.astype(m, xp.int64), axis=1) - 1                              # (B,)
    h_last = h_all[xp.arange(B, device=array_api_compat.device(h_all)), last]       # (B, H)
    s0 = xp.tanh(h_last @ params["W_s"] + params["b_s"])                            # (5.2)
    k = attention.keys(params["attn"], h_all) if "attn" in params else None
    return Encoded(h_all, m, h_last, s0, k)


def _step(xp, params: dict, enc: Encoded, ya, s_prev):
    """(5.3)-(5.4) and c_i = h_L or (5.6)-(5.9) for one step; ya = (y_{i-1} E_y) W_x[:E] + b, (B, 3H)."""
    E = params["emb_y"].shape[1]
    if enc.keys is not None:
        c, alpha, _ = attention._attend(params["attn"], s_prev, enc.h_all, enc.keys, enc.mask)
    else:
        c, alpha = enc.h_last, None                                                 # c_i = h_L
    s = gru._cell(xp, params["dec"], ya + c @ params["dec"]["W_x"][E:], s_prev)[0]  # (5.3)
    logits = xp.concat([s, c], axis=-1) @ params["out"]["W_hy"] + params["out"]["b_y"]   # (5.4)
    return logits, s, alpha


def _input_part(params: dict, y_ids):
    """The embedding's share of the decoder GRU's input product, (..., 3H), plus its bias."""
    E = params["emb_y"].shape[1]
    return params["emb_y"][y_ids] @ params["dec"]["W_x"][:E] + params["dec"]["b"]


def step(params: dict, enc: Encoded, y_prev, s_prev):
    """One decoder step: logits (B, V) of y_i, the new state s_i (B, H), alpha (B, L) or None.

    Args: enc from ``encode``; y_prev (B,) integer ids y_{i-1}; s_prev (B, H) (enc.s0 at i = 1).
    """
    dims, src = {}, {}
    check_shape("enc.h_all", enc.h_all, "B L H", dims, src)
    _check_ids("y_prev", y_prev, params["emb_y"].shape[0], "B", dims, src)
    check_shape("s_prev", s_prev, "B H", dims, src)
    xp = xp_of(s_prev, enc.h_all)
    return _step(xp, params, enc, _input_part(params, y_prev), s_prev)


def forward(params: dict, x_ids, x_mask, y_in):
    """Teacher forcing: the gold y_0 ... y_{T-1} are fed, all T steps in one call.

    Args:
        x_ids (B, L), x_mask (B, L) or None: the source.  y_in: (B, T) ids, y_in[:, 0] = BOS.
    Returns:
        logits (B, T, V); alpha (B, T, L) or None without attention.
    """
    enc = encode(params, x_ids, x_mask)
    dims = {"B": enc.h_all.shape[0]}
    _check_ids("y_in", y_in, params["emb_y"].shape[0], "B T", dims, {"B": "x_ids"})
    xp = xp_of(enc.h_all)
    ya_all = _input_part(params, y_in)                          # (B, T, 3H), hoisted out of the loop
    s, logits, alphas = enc.s0, [], []
    for i in range(dims["T"]):
        z, s, alpha = _step(xp, params, enc, ya_all[:, i], s)
        logits.append(z)
        alphas.append(alpha)
    alpha_all = xp.stack(alphas, axis=1) if enc.keys is not None else None
    return xp.stack(logits, axis=1), alpha_all


def log_likelihood(params: dict, x_ids, x_mask, y_in, y_out, y_mask=None):
    """Equation (5.5) per sentence: sum over unmasked i of log p(y_out[:, i] | ...), shape (B,)."""
    logits, _ = forward(params, x_ids, x_mask, y_in)
    dims = {"B": logits.shape[0], "T": logits.shape[1]}
    _check_ids("y_out", y_out, logits.shape[-1], "B T", dims, {"B": "x_ids", "T": "y_in"})
    xp = xp_of(logits)
    V = logits.shape[-1]
    logp = log_softmax(logits)                                                       # (B, T, V)
    onehot = xp.astype(y_out[..., None] == xp.arange(V, device=array_api_compat.device(y_out)),
                       logp.dtype)
    picked = xp.sum(logp * onehot, axis=-1)                                          # (B, T)
    if y_mask is not None:
        check_shape("y_mask", y_mask, "B T", dims, {"B": "x_ids", "T": "y_in"})
        picked = picked * xp.astype(y_mask, logp.dtype)
    return xp.sum(picked, axis=-1)


def loss(params: dict, x_ids, x_mask, y_in, y_out, y_mask=None):
    """Mean cross-entropy in nats per scored target token (a 0-d array of the params' backend)."""
    ll = log_likelihood(params, x_ids, x_mask, y_in, y_out, y_mask)
    xp = xp_of(ll)
    n = y_out.shape[0] * y_out.shape[1] if y_mask is None else float(xp.sum(xp.astype(y_mask, ll.dtype)))
    if n <= 0:
        raise ValueError("y_mask: expected at least one scored target position, got none")
    return -xp.sum(ll) / n


def _check_decode(params, x_ids, bos, eos, max_len):
    V = params["emb_y"].shape[0]
    for name, tok in (("bos", bos), ("eos", eos)):
        if isinstance(tok, bool) or not isinstance(tok, (int, np.integer)) or not 0 <= tok < V:
            raise ValueError(f"{name}: expected a token id in [0, {V}), got {tok!r}")
    check_positive_int("max_len", max_len)


def greedy_decode(params: dict, x_ids, x_mask=None, *, bos: int, eos: int, max_len: int):
    """Free running: feed back the most probable token until EOS or max_len.

    Returns:
        y (B, max_len) ids (EOS repeated after the first EOS); logp (B,) the log-probability of
        each output up to and including its first EOS; alpha (B, max_len, L) or None.
    """
    _check_decode(params, x_ids, bos, eos, max_len)
    enc = encode(params, x_ids, x_mask)
    xp = xp_of(enc.h_all)
    dev = array_api_compat.device(x_ids)
    B = x_ids.shape[0]
    y = xp.full((B,), bos, dtype=x_ids.dtype, device=dev)
    done = xp.zeros((B,), dtype=xp.bool, device=dev)
    total = xp.zeros((B,), dtype=enc.h_all.dtype, device=dev)
    s, ys, alphas = enc.s0, [], []
    for _ in range(max_len):
        z, s, alpha = _step(xp, params, enc, _input_part(params, y), s)
        logp = log_softmax(z)                                                 # (B, V)
        best = xp.argmax(logp, axis=-1)
        total = total + xp.where(done, xp.zeros_like(total), xp.max(logp, axis=-1))
        y = xp.where(done, xp.full_like(best, eos), best)
        done = done | (y == eos)
        ys.append(y)
        alphas.append(alpha)
    alpha_all = xp.stack(alphas, axis=1) if enc.keys is not None else None
    return xp.stack(ys, axis=1), total, alpha_all


def _select(enc: Encoded, idx) -> Encoded:
    """Rows ``idx`` of every array in ``enc`` (beam hypotheses share one source sentence)."""
    return Encoded(*(None if a is None else a[idx] for a in enc))


def beam_search(params: dict, x_ids, x_mask=None, *, bos: int, eos: int, max_len: int, K: int,
                length_penalty: float = 0.0):
    """Left-to-right beam search of width K, one source sentence at a time.

    At each step every live hypothesis is extended by every token; the K best extensions by
    log-probability are kept; those ending in EOS, or reaching max_len tokens, are finished.
    The search ends when no hypothesis is live. K = 1 is greedy decoding; K >= V^(max_len-1)
    never prunes a live hypothesis (at the last step it may drop the least probable finished
    ones, which cannot win) and is exact search.

    Args:
        x_ids (B, L), x_mask (B, L) or None: the sources.  K: beam width.
        length_penalty: a >= 0; the finished hypothesis maximising log p / T^a is returned
            (T its length including EOS); 0 ranks by log p itself.
    Returns:
        seqs: list of B int64 NumPy arrays (the outputs, EOS included when emitted);
        logp: (B,) NumPy array, their log-probabilities.
    """
    _check_decode(params, x_ids, bos, eos, max_len)
    check_positive_int("K", K)
    if isinstance(length_penalty, bool) or not isinstance(length_penalty, (int, float)) \
            or not length_penalty >= 0:
        raise ValueError(f"length_penalty: expected a number >= 0, got {length_penalty!r}")
    enc_all = encode(params, x_ids, x_mask)
    xp = xp_of(enc_all.h_all)
    dev = array_api_compat.device(x_ids)
    seqs, scores = [], []
    for b in range(x_ids.shape[0]):
        enc_b = _select(enc_all, xp.asarray([b], device=dev))
        live, live_logp, s = [[]], np.zeros(1), enc_b.s0                  # hypotheses, (n,), (n, H)
        finished = []                                                     # (tokens, log p)
        for t in range(max_len):
            n = len(live)
            y_prev = xp.asarray([h[-1] if h else bos for h in live], dtype=x_ids.dtype, device=dev)
            enc_n = _select(enc_b, xp.zeros((n,), dtype=xp.int64, device=dev))
            z, s_new, _ = _step(xp, params, enc_n, _input_part(params, y_prev), s)
            cand = live_logp[:, None] + to_numpy(log_softmax(z))          # (n, V)
            V = cand.shape[1]
            order = np.argsort(-cand.ravel(), kind="stable")[:K]          # the K best extensions
            keep, keep_logp, keep_rows = [], [], []
            for flat in order:
                row, tok = divmod(int(flat), V)
                hyp, lp = live[row] + [tok], float(cand[row, tok])
                if tok == eos or t == max_len - 1:
                    finished.append((hyp, lp))
                else:
                    keep.append(hyp)
                    keep_logp.append(lp)
                    keep_rows.append(row)
            if not keep:
                break
            live, live_logp = keep, np.array(keep_logp)
            s = s_new[xp.asarray(keep_rows, dtype=xp.int64, device=dev)]
        best = max(finished, key=lambda f: f[1] / len(f[0]) ** length_penalty)   # first of ties
        seqs.append(np.array(best[0], dtype=np.int64))
        scores.append(best[1])
    return seqs, np.array(scores)
