"""Chapters 1-2: Elman against LSTM character language models of Genesis at equal parameter counts.

Both models are ``rnnkit.charlm`` models (one-hot input, one recurrent layer, linear readout to
the V characters), trained with the hand-written BPTT of ``rnnkit.elman`` / ``rnnkit.lstm``, Adam
and gradient clipping at norm 5 on random windows of the training part of Genesis. The Elman
network has ``H_elman`` units; the LSTM's H is the one whose total parameter count (cell plus
readout) is closest to the Elman network's, so the two are compared at (about) equal size, both
counts reported. The learning rate is picked per model from a small sweep by the validation loss
at the end of training (the same steps, batches and seed for every run).

Reported per model: bits per character on a fixed validation stretch read with the state carried
(the cross-entropy in base 2; lower is better) and the per-character perplexity 2^bits (the
effective number of equally likely next characters); the learning curves (validation bits every
``eval_every`` steps, mean training bits per block of ``eval_every`` steps), so a reader can see
how near convergence each model is. Reference points: the unigram entropy of the training text,
and log2 V for a uniform guess.

For chapter 2's figure 2.4 the best LSTM (the lr chosen above) is also read inside: ``gate_record``
runs it over the same validation stretch with the state carried and keeps (2.2), (2.3), (2.6)
and (2.5), the input, forget and output gates and the cell: a summary over the whole stretch
(per gate: the mean, the share of values below 0.1 and above 0.9, the means at spaces and inside
words, per unit mean and standard deviation; for the cell: mean and largest |c|) and the
per-character trace of ``n_trace_units`` units (those whose forget gate varies most over the
stretch) on a short passage, the first verse of the stretch that starts after character 100.
Reading the model changes nothing in its training, so the bits per character are those of the
run without it.
"""
from __future__ import annotations

import time

import numpy as np

from .. import charlm, elman, lstm, train
from ..tasks import load_corpus

__all__ = ["CONFIGS", "param_count", "matched_lstm_width", "train_model", "gate_record", "run"]

CONFIGS = {
    "small": {"H_elman": 64, "steps": 200, "lrs": [3e-3], "B": 32, "L": 64, "n_val": 4000, "seed": 0,
              "eval_every": 100, "trace_len": 100, "n_trace_units": 12},
    "large": {"H_elman": 128, "steps": 2000, "lrs": [2e-3, 5e-3], "B": 32, "L": 64, "n_val": 8000,
              "seed": 0, "eval_every": 250, "trace_len": 100, "n_trace_units": 12},
}


def param_count(kind: str, V: int, H: int) -> int:
    """Parameters of a char-LM with one cell of width H and a linear readout (H, V) + (V,)."""
    cell = {"elman": V * H + H * H + H, "lstm": 4 * (V * H + H * H + H)}[kind]
    return cell + H * V + V


def matched_lstm_width(V: int, H_elman: int) -> int:
    """The LSTM width whose parameter count is closest to an Elman char-LM of width H_elman."""
    target = param_count("elman", V, H_elman)
    return min(range(1, 2 * H_elman + 1), key=lambda H: abs(param_count("lstm", V, H) - target))


def train_model(kind: str, H: int, lr: float, cfg: dict, corpus, val_ids,
                keep_params: bool = False) -> dict:
    """Train one model; returns its validation bits/char, perplexity, parameter count, time, and
    learning curves (and, with ``keep_params``, the trained parameters under ``"_params"``)."""
    cell = {"elman": elman, "lstm": lstm}[kind]
    params = charlm.init(np.random.default_rng(cfg["seed"]), cell, corpus.V, H)
    data_rng = np.random.default_rng(cfg["seed"] + 1)             # the same batches for every run

    def step_fn(p, batch):
        loss, grads, _ = charlm.loss_and_grads(cell, p, *batch)
        return loss, grads

    cpu0 = time.process_time()
    every = cfg["eval_every"]
    hist = train.fit(step_fn, params, train.Adam(lr=lr),
                     lambda step: corpus.random_windows(data_rng, cfg["B"], cfg["L"]),
                     n_steps=cfg["steps"], clip=5.0, progress=False,
                     eval_fn=lambda p: {"val_bits": float(charlm.evaluate(cell, p, val_ids, L=256))},
                     eval_every=every)
    bits = float(charlm.evaluate(cell, params, val_ids, L=256))
    n_params = sum(int(v.size) for part in params.values() for v in part.values())
    assert n_params == param_count(kind, corpus.V, H)
    losses = np.asarray(hist.losses) / np.log(2)                   # nats -> bits, per step
    out = {"H": H, "lr": lr, "params": n_params, "val_bits": bits, "perplexity": 2.0 ** bits,
           "final_train_bits": float(np.mean(losses[-50:])),
           "curve": {"step": [s for s, _ in hist.evals],
                     "val_bits": [e["val_bits"] for _, e in hist.evals],
                     "train_bits": [float(np.mean(losses[max(0, s - every):s])) for s, _ in hist.evals]},
           "cpu_s": time.process_time() - cpu0}
    if keep_params:
        out["_params"] = params
    return out


def gate_record(params: dict, corpus, val_ids, cfg: dict) -> dict:
    """The trained LSTM's gates and cell on the validation stretch (state carried from zero).

    Returns plain lists: ``summary`` over the whole stretch, and ``trace`` (the passage, its
    start in the stretch, the units shown and, per gate "i", "f", "o" and the cell "c", a
    (trace_len, n_trace_units) list of values).
    """
    x = charlm.one_hot(val_ids[None, :], corpus.V)                      # (1, L, V)
    _, _, cache = lstm.forward(params["cell"], x, return_cache=True)
    H = cache.h_all.shape[-1]
    act = {k: cache.act[0, :, j * H:(j + 1) * H] for j, k in enumerate("ifgo")}   # each (L, H)
    act["c"] = cache.c_all[0]                                           # (L, H)
    text = corpus.decode(val_ids)
    space = np.array([ch == " " for ch in text])                        # (L,)
    word = np.array([ch.isalpha() for ch in text])
    summary = {}
    for k in "ifo":
        a = act[k]
        summary[k] = {"mean": float(a.mean()), "below_0.1": float(np.mean(a < 0.1)),
                      "above_0.9": float(np.mean(a > 0.9)), "at_spaces": float(a[space].mean()),
                      "in_words": float(a[word].mean()),
                      "largest_unit_shift": float(np.abs(a[space].mean(0) - a[word].mean(0)).max()),
                      "unit_mean": a.mean(0).round(4), "unit_std": a.std(0).round(4)}
    c = np.abs(act["c"])
    summary["c"] = {"mean_abs": float(c.mean()), "max_abs": float(c.max()),
                    "unit_mean_abs": c.mean(0).round(4)}
    start = text.index("\n", 100) + 1                         # the first verse after character 100
    stop = start + cfg["trace_len"]
    units = np.sort(np.argsort(-act["f"].std(axis=0))[:cfg["n_trace_units"]])
    trace = {"text": text[start:stop], "start": start, "units": units,
             **{k: act[k][start:stop][:, units].round(4) for k in "ifoc"}}
    return {"H": H, "n_chars": len(text), "summary": summary, "trace": trace}


def run(size: str = "small") -> dict:
    """Elman and LSTM char-LMs at equal parameter counts; ``size`` is "small" or "large"."""
    if size not in CONFIGS:
        raise ValueError(f"size: expected one of {sorted(CONFIGS)}, got {size!r}")
    cfg = CONFIGS[size]
    corpus = load_corpus("genesis")
    train_ids, val_ids = corpus.split(0.1)
    val = val_ids[:cfg["n_val"]]
    counts = np.bincount(train_ids, minlength=corpus.V).astype(float)
    freq = counts[counts > 0] / counts.sum()
    widths = {"elman": cfg["H_elman"], "lstm": matched_lstm_width(corpus.V, cfg["H_elman"])}
    sweeps, best = {}, {}
    for kind, H in widths.items():
        sweeps[kind] = [train_model(kind, H, lr, cfg, corpus, val, keep_params=kind == "lstm")
                        for lr in cfg["lrs"]]
        best[kind] = min(sweeps[kind], key=lambda r: r["val_bits"])
    gates = gate_record(best["lstm"]["_params"], corpus, val, cfg)
    for runs in sweeps.values():
        for r in runs:
            r.pop("_params", None)
    figures = {"unigram_bits": float(-np.sum(freq * np.log2(freq))), "uniform_bits": float(np.log2(corpus.V)),
               "V": corpus.V, "best": best, "sweep": sweeps, "lstm_gates": gates}
    return {"config": {**cfg, "size": size, "widths": widths, "validation": f"val_ids[:{cfg['n_val']}]",
                       "selection": "lr by validation bits/char at the end of training",
                       "gates": "best LSTM on the validation stretch, state carried from zero; trace: "
                                "first verse after character 100, the n_trace_units units of largest "
                                "forget-gate std over the stretch"},
            "figures": figures}
