"""Chapter 5's experiment: what attention buys an encoder-decoder on the date-translation task.

The task is ``rnnkit.tasks.dates``: a day between 1900 and 2099 written in one of seven formats
("Monday, the 3rd of March 1997", "03/03/1997", ...), translated character by character into
ISO 8601 ("1997-03-03"). The models are ``rnnkit.seq2seq`` encoder-decoders with GRU cells,
E = 16 and one hidden size H for all of them, identical except for the context c_i of (5.3)-(5.4):

    no attention                    c_i = h_L, the fixed context (Cho et al.)
    no attention, reversed source   the same, the source read backwards (Sutskever et al.'s trick)
    additive attention              (5.6)-(5.8), attention size A = H (Bahdanau et al.)
    dot-product attention           Luong's bilinear score (5.9), W_a (H, H)

With one H the attention models have more parameters (additive: 2 H A + A more, dot-product:
H^2 more); ``param_counts`` gives every count, and the chapter prints them. Training is the
chapter's: Adam on ``seq2seq.loss`` through torch autograd (float32, one thread), gradients clipped
at global norm 1, ``steps`` fresh batches of B random pairs. The days of the validation and test
pairs are held out: a training batch never contains them, in any format (pairs drawn with a
held-out day are dropped and redrawn), so exact match on test is measured on unseen dates. A seed
fixes the initialisation and the stream of training batches (the same batches for every model of
that seed); the validation and test pairs are the same for every seed.

Selection: for each model, seed 0 is trained at every rate of ``lrs`` and scored by greedy exact
match on the ``n_val`` validation pairs (the test set plays no part); the rate with the best
validation exact match wins (ties: the smaller rate). Every seed at that rate (seed 0's run
included) is scored on the ``n_test`` test pairs: exact match (greedy, free running), exact match
per source-length bin (``LENGTH_EDGES``, the bins of the chapter's figure 5.3), and the per-token
accuracy teacher-forced and free running (the gap the chapter calls error compounding).

``run(size)`` returns {"config", "figures"}; ``python -m rnnkit.experiments seq2seq_dates --size
large --from-head`` records the large run; the chapter trains the "small" size live with
``train_model`` and the same settings.
"""
from __future__ import annotations

import time

import numpy as np

from .. import seq2seq
from ..training import train
from ..core.backend import to_backend, to_numpy
from ..tasks import dates
from ._common import config_for, torch_settings

__all__ = ["CONFIGS", "MODELS", "LENGTH_EDGES", "MAXLEN_Y", "E_EMB", "TEST_SEED", "VAL_SEED",
           "param_counts", "held_out_pairs", "train_model", "evaluate", "token_accuracy",
           "length_bins", "pick_rate", "run"]

#: model name -> (attention: False, "additive" or "luong"; reverse the source)
MODELS = {"no attention": (False, False),
          "no attention, reversed source": (False, True),
          "additive attention": ("additive", False),
          "dot-product attention": ("luong", False)}
E_EMB, MAXLEN_Y = 16, 11           # embedding size; target length (10 characters + EOS)
TEST_SEED, VAL_SEED = 2, 3         # the held-out pairs are the same for every seed
#: source-length bins of figure 5.3 (characters; no format gives 19 to 27)
LENGTH_EDGES = (8, 10, 12, 14, 16, 19, 38)

CONFIGS = {
    # the chapter's live run: one seed, one rate, no sweep
    "small": dict(H=32, B=64, steps=150, lrs=(2e-2,), seeds=(0,), n_val=0, n_test=1000),
    # the recorded run: a rate per model on validation, three seeds
    "large": dict(H=64, B=64, steps=600, lrs=(3e-3, 1e-2, 3e-2), seeds=(0, 1, 2), n_val=500,
                  n_test=1000),
    # the test's run
    "tiny": dict(H=8, B=8, steps=3, lrs=(1e-2, 3e-2), seeds=(0, 1), n_val=20, n_test=30),
}


def _init(kind: str, H: int, seed: int) -> dict:
    if kind not in MODELS:
        raise ValueError(f"kind: expected one of {list(MODELS)}, got {kind!r}")
    use_att = MODELS[kind][0]
    return seq2seq.init(np.random.default_rng([seed, 0]), len(dates.SOURCE_VOCAB),
                        len(dates.TARGET_VOCAB), E_EMB, H,
                        attention_size=H if use_att == "additive" else None,
                        attention_score="luong" if use_att == "luong" else "additive",
                        dtype=np.float32)


def _count(tree: dict) -> int:
    return sum(_count(v) if isinstance(v, dict) else int(v.size) for v in tree.values())


def param_counts(H: int) -> dict:
    """Trained parameters of every model at hidden size H (E = 16, A = H)."""
    return {kind: _count(_init(kind, H, 0)) for kind in MODELS}


def held_out_pairs(n_val: int, n_test: int) -> tuple[list, list]:
    """(validation pairs, test pairs): fixed draws, the same for every seed and model."""
    val = dates.date_pairs(np.random.default_rng(VAL_SEED), n_val) if n_val else []
    test = dates.date_pairs(np.random.default_rng(TEST_SEED), n_test)
    return val, test


def _leaves(tree):
    return {k: (_leaves(v) if isinstance(v, dict) else v.detach().requires_grad_())
            for k, v in tree.items()}


def _grads(tree):
    return {k: (_grads(v) if isinstance(v, dict) else v.grad) for k, v in tree.items()}


def train_model(kind: str, *, H: int, B: int, steps: int, lr: float, seed: int,
                held_out=frozenset()):
    """Train one model; returns (NumPy float32 params, ``train.History``).

    Args:
        kind: a key of ``MODELS``.  H: hidden size (and A for additive attention).
        B: pairs per batch.  steps: Adam steps.  lr: Adam's learning rate.
        seed: fixes the initialisation and the batches.
        held_out: ISO target strings (days) that no training batch may contain.
    """
    import torch  # noqa: PLC0415

    reverse = MODELS[kind][1] if kind in MODELS else False
    params = _init(kind, H, seed)
    tparams = to_backend(params, "torch")           # trained in place by rnnkit's Adam
    data = np.random.default_rng([seed, 1])          # the same batches for every model of a seed
    held_out = frozenset(held_out)

    def batch(step):
        pairs = []
        while len(pairs) < B:                        # drop pairs of held-out days, draw again
            pairs += [p for p in dates.date_pairs(data, B - len(pairs)) if p[1] not in held_out]
        return [torch.from_numpy(a) for a in dates.make_batch(pairs, reverse_source=reverse)]

    def loss_and_grads(p, b):
        leaf = _leaves(p)                            # views of p that record the graph
        loss = seq2seq.loss(leaf, *b)
        loss.backward()
        return float(loss.detach()), _grads(leaf)

    hist = train.fit(loss_and_grads, tparams, train.Adam(lr=lr), batch, n_steps=steps, clip=1.0,
                     progress=False)
    return to_numpy(tparams), hist


def evaluate(params: dict, pairs, reverse: bool = False):
    """Greedy (free-running) decoding of ``pairs``: (exact match (n,) bools, ids (n, 11), alpha)."""
    b = dates.make_batch(pairs, reverse_source=reverse)
    y, _, alpha = seq2seq.greedy_decode(params, b.x_ids, b.x_mask, bos=dates.BOS, eos=dates.EOS,
                                        max_len=MAXLEN_Y)
    return dates.exact_match(y, [t for _, t in pairs]), y, alpha


def token_accuracy(params: dict, pairs, reverse: bool = False) -> tuple[float, float]:
    """Per-token accuracy (teacher-forced, free running) on ``pairs``, EOS included."""
    b = dates.make_batch(pairs, reverse_source=reverse)
    logits, _ = seq2seq.forward(params, b.x_ids, b.x_mask, b.y_in)
    teacher = float((logits.argmax(axis=-1) == b.y_out).mean())
    _, y_free, _ = evaluate(params, pairs, reverse)
    return teacher, float((y_free == b.y_out).mean())


def length_bins(pairs) -> list[np.ndarray]:
    """For each bin of ``LENGTH_EDGES``: (n,) booleans, the pairs whose source falls in it."""
    lengths = np.array([len(s) for s, _ in pairs])
    return [(lengths >= lo) & (lengths < hi) for lo, hi in zip(LENGTH_EDGES[:-1], LENGTH_EDGES[1:])]


def _score(params, kind, pairs, bins) -> dict:
    reverse = MODELS[kind][1]
    ok, _, _ = evaluate(params, pairs, reverse)
    teacher, free = token_accuracy(params, pairs, reverse)
    return {"exact_match": float(ok.mean()),
            "exact_match_per_length": [float(ok[m].mean()) if m.any() else None for m in bins],
            "token_acc_teacher_forced": teacher, "token_acc_free_running": free}


def _one(kind, cfg, lr, seed, held_out, scored_on, bins=None) -> dict:
    cpu0 = time.process_time()
    params, hist = train_model(kind, H=cfg["H"], B=cfg["B"], steps=cfg["steps"], lr=lr,
                               seed=seed, held_out=held_out)
    losses = np.asarray(hist.losses)
    out = {"model": kind, "lr": lr, "seed": seed, "train_cpu_s": time.process_time() - cpu0,
           "loss_last_50": float(losses[-50:].mean()),
           # training loss, mean of each block of 10 steps (nats per target token)
           "loss_per_10_steps": losses[:len(losses) // 10 * 10].reshape(-1, 10).mean(1).tolist()
           if len(losses) >= 10 else losses.tolist()}
    out["_params"] = params
    pairs = scored_on
    reverse = MODELS[kind][1]
    if bins is None:                                  # validation: exact match only
        ok, _, _ = evaluate(params, pairs, reverse)
        out["val_exact_match"] = float(ok.mean())
    else:
        out.update(_score(params, kind, pairs, bins))
    return out


def pick_rate(tries: list[dict]) -> dict:
    """The try with the best validation exact match; of equals, the one with the smaller rate."""
    return max(tries, key=lambda r: (r["val_exact_match"], -r["lr"]))


def run(size: str = "small") -> dict:
    """Every model: the rate picked on validation at seed 0 (if more than one), then every seed
    at that rate scored on the test pairs."""
    cfg = config_for(size, CONFIGS)
    with torch_settings(threads=1):  # deterministic, and fair on a shared 2-core machine
        val, test = held_out_pairs(cfg["n_val"], cfg["n_test"])
        held_out = frozenset(t for _, t in val + test)
        bins = length_bins(test)
        figures = {"n_params": param_counts(cfg["H"]),
                   "length_bins": [f"{lo}-{hi - 1}" for lo, hi in
                                   zip(LENGTH_EDGES[:-1], LENGTH_EDGES[1:])],
                   "test_pairs_per_length_bin": [int(m.sum()) for m in bins],
                   "held_out_days": len(held_out), "lr": {}, "sweep": [], "runs": [],
                   "summary": {}}
        seed0 = cfg["seeds"][0]
        for kind in MODELS:
            if len(cfg["lrs"]) > 1:
                tries = [_one(kind, cfg, lr, seed0, held_out, val) for lr in cfg["lrs"]]
                best = pick_rate(tries)
                figures["sweep"] += [{k: r[k] for k in ("model", "lr", "val_exact_match",
                                                        "loss_last_50", "train_cpu_s")}
                                     for r in tries]
                lr = best["lr"]
                first = {k: v for k, v in best.items() if k != "val_exact_match"}
                first.update(_score(first["_params"], kind, test, bins))   # the same run, on test
                runs = [first]
            else:
                lr, runs = cfg["lrs"][0], []
            figures["lr"][kind] = lr
            runs += [_one(kind, cfg, lr, s, held_out, test, bins)
                     for s in cfg["seeds"][len(runs):]]
            for r in runs:
                r.pop("_params")
            figures["runs"] += runs
            acc = [r["exact_match"] for r in runs]
            figures["summary"][kind] = {
                "exact_match_mean": float(np.mean(acc)), "exact_match_min": float(np.min(acc)),
                "exact_match_max": float(np.max(acc)),
                "exact_match_per_length_mean": [
                    None if any(r["exact_match_per_length"][i] is None for r in runs) else
                    float(np.mean([r["exact_match_per_length"][i] for r in runs]))
                    for i in range(len(bins))],
                **{f"{k}_mean": float(np.mean([r[k] for r in runs]))
                   for k in ("token_acc_teacher_forced", "token_acc_free_running")}}
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}
    return {"config": {"size": size, **config, "E": E_EMB, "A_additive": cfg["H"],
                       "max_len": MAXLEN_Y, "models": {k: list(v) for k, v in MODELS.items()},
                       "length_edges": list(LENGTH_EDGES), "test_seed": TEST_SEED,
                       "val_seed": VAL_SEED, "task": "rnnkit.tasks.dates: dates in 7 written "
                       "formats to ISO 8601, characters; validation and test days never in a "
                       "training batch",
                       "model": "rnnkit.seq2seq, GRU encoder and decoder, float32",
                       "optimizer": "rnnkit.training.train.Adam, clip at global norm 1",
                       "decoding": "greedy (free running)", "torch_threads": 1,
                       "selection": "lr by validation exact match at seed 0 (ties: the smaller "
                       "rate); every seed at that lr, seed 0's run included, scored on test"},
            "figures": figures}
