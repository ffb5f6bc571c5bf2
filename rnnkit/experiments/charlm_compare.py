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
effective number of equally likely next characters). Reference points: the unigram entropy of the
training text, and log2 V for a uniform guess.
"""
from __future__ import annotations

import time

import numpy as np

from .. import charlm, elman, lstm, train
from ..tasks import load_corpus

__all__ = ["CONFIGS", "param_count", "matched_lstm_width", "train_model", "run"]

CONFIGS = {
    "small": {"H_elman": 64, "steps": 200, "lrs": [3e-3], "B": 32, "L": 64, "n_val": 4000, "seed": 0},
    "large": {"H_elman": 128, "steps": 2000, "lrs": [2e-3, 5e-3], "B": 32, "L": 64, "n_val": 8000,
              "seed": 0},
}


def param_count(kind: str, V: int, H: int) -> int:
    """Parameters of a char-LM with one cell of width H and a linear readout (H, V) + (V,)."""
    cell = {"elman": V * H + H * H + H, "lstm": 4 * (V * H + H * H + H)}[kind]
    return cell + H * V + V


def matched_lstm_width(V: int, H_elman: int) -> int:
    """The LSTM width whose parameter count is closest to an Elman char-LM of width H_elman."""
    target = param_count("elman", V, H_elman)
    return min(range(1, 2 * H_elman + 1), key=lambda H: abs(param_count("lstm", V, H) - target))


def train_model(kind: str, H: int, lr: float, cfg: dict, corpus, val_ids) -> dict:
    """Train one model; returns its validation bits/char, perplexity, parameter count and time."""
    cell = {"elman": elman, "lstm": lstm}[kind]
    params = charlm.init(np.random.default_rng(cfg["seed"]), cell, corpus.V, H)
    data_rng = np.random.default_rng(cfg["seed"] + 1)             # the same batches for every run

    def step_fn(p, batch):
        loss, grads, _ = charlm.loss_and_grads(cell, p, *batch)
        return loss, grads

    cpu0 = time.process_time()
    hist = train.fit(step_fn, params, train.Adam(lr=lr),
                     lambda step: corpus.random_windows(data_rng, cfg["B"], cfg["L"]),
                     n_steps=cfg["steps"], clip=5.0, progress=False)
    bits = float(charlm.evaluate(cell, params, val_ids, L=256))
    n_params = sum(int(v.size) for part in params.values() for v in part.values())
    assert n_params == param_count(kind, corpus.V, H)
    return {"H": H, "lr": lr, "params": n_params, "val_bits": bits, "perplexity": 2.0 ** bits,
            "final_train_bits": float(np.mean(hist.losses[-50:]) / np.log(2)),
            "cpu_s": time.process_time() - cpu0}


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
        sweeps[kind] = [train_model(kind, H, lr, cfg, corpus, val) for lr in cfg["lrs"]]
        best[kind] = min(sweeps[kind], key=lambda r: r["val_bits"])
    figures = {"unigram_bits": float(-np.sum(freq * np.log2(freq))), "uniform_bits": float(np.log2(corpus.V)),
               "V": corpus.V, "best": best, "sweep": sweeps}
    return {"config": {**cfg, "size": size, "widths": widths, "validation": f"val_ids[:{cfg['n_val']}]",
                       "selection": "lr by validation bits/char at the end of training"},
            "figures": figures}
