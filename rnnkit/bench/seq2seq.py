"""Chapter 5 benchmark: decoding speed of the encoder-decoder, greedy against beam search.

Forms timed, per source sentence (the time of a call divided by the number of sentences B):

    greedy (batched)   seq2seq.greedy_decode on all B sentences at once: one decoder step is one
                       (B, H) batch of products
    beam search        seq2seq.beam_search with width K, one sentence at a time (its hypotheses
                       form the batch of each step), K in 1, 2, 4, 8, 16

The model is the chapter's attention model at the "large" size (E=16, H=A=64), randomly
initialised, float32, on B=32 sources of the date task (8 to 37 characters) with max_len=11. An
untrained model rarely emits EOS, so every hypothesis runs the full 11 steps: these are
worst-case decoding times; a trained model finishes some hypotheses early.

Implementations: numpy (rnnkit on NumPy) and cupy (the same source on CuPy arrays; the beam's
top-K selection runs on the host, as in rnnkit.seq2seq). Before timing, the cupy outputs are
compared with NumPy's (identical tokens; log-probabilities to rtol 1e-4).
"""
from __future__ import annotations

import numpy as np

from .. import bench, seq2seq
from ..core.backend import to_backend, to_numpy
from ..tasks import dates

__all__ = ["run", "KS", "QUICK_KS"]

KS = (1, 2, 4, 8, 16)
QUICK_KS = (1, 4)
FULL_REPEAT = {"warmup": 1, "repeat": 5}
QUICK_REPEAT = {"warmup": 1, "repeat": 2}
SIZES = {"E": 16, "H": 64, "A": 64, "max_len": 11}


def _problem(B: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    params = seq2seq.init(rng, len(dates.SOURCE_VOCAB), len(dates.TARGET_VOCAB), SIZES["E"],
                          SIZES["H"], attention_size=SIZES["A"], dtype=np.float32)
    batch = dates.make_batch(dates.date_pairs(rng, B))
    return params, batch.x_ids, batch.x_mask.astype(np.float32)


def _fns(params, x_ids, x_mask, K):
    kw = {"bos": dates.BOS, "eos": dates.EOS, "max_len": SIZES["max_len"]}
    return (lambda: seq2seq.greedy_decode(params, x_ids, x_mask, **kw),
            lambda: seq2seq.beam_search(params, x_ids, x_mask, K=K, **kw))


def run(quick: bool = False, *, backends: dict | None = None, ks=None, B: int | None = None) -> list[dict]:
    """Time greedy and beam-search decoding on every available backend (numpy, cupy).

    Args:
        quick: K in QUICK_KS, B=4 and fewer repeats (for a live run in the notebook).
        backends: {impl: bool}; defaults to ``bench.available_backends()``.
        ks: override the beam widths.  B: override the number of sentences.
    Returns:
        records with params B, K, L (the longest source), E, H, A, max_len, dtype; median_s is
        the time per sentence.
    """
    backends = bench.available_backends() if backends is None else backends
    ks = ks if ks is not None else (QUICK_KS if quick else KS)
    B = B if B is not None else (4 if quick else 32)
    repeat = QUICK_REPEAT if quick else FULL_REPEAT
    params, x_ids, x_mask = _problem(B)
    config = {"B": B, "L": int(x_ids.shape[1]), **SIZES, "dtype": "float32"}
    records = []
    for impl in ("numpy", "cupy"):
        if not backends.get(impl):
            continue
        p, ids, mask = (params, x_ids, x_mask) if impl == "numpy" else to_backend([params, x_ids, x_mask], "cupy")
        if impl != "numpy":
            ref_y, ref_lp, _ = _fns(params, x_ids, x_mask, 1)[0]()
            y, lp, _ = _fns(p, ids, mask, 1)[0]()
            if not np.array_equal(to_numpy(y), ref_y) or not np.allclose(to_numpy(lp), ref_lp, rtol=1e-4):
                raise AssertionError(f"{impl}: greedy decoding differs from NumPy's")
        # Warm every form up before timing any: the recording of 2026-12 timed K = 1 first and
        # found it slower than K = 2 (its one warm-up call did not settle the allocator and caches).
        for K in ks:
            for fn in _fns(p, ids, mask, K):
                fn()
        for K in ks:
            greedy, beam = _fns(p, ids, mask, K)
            forms = [("beam search", beam)] + ([("greedy (batched)", greedy)] if K == 1 else [])
            for form, fn in forms:
                t = bench.time_fn(fn, sync=bench.sync_for(impl), **repeat)
                t = bench.Timing.from_times([s / B for s in t.times_s], t.number)
                records.append(bench.make_record(impl, form, {**config, "K": K}, t))
    return records
