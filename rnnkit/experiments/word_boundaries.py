"""Chapter 4's task: find the word boundaries of Genesis with its spaces removed.

The text is ``load_corpus("genesis")`` with every run of spaces and line breaks deleted; the label
of character t is 1 if a space or line break followed it in the original (a word ends at t) and 0
otherwise. Whether a word ends at t depends on what comes next ("the|m..." against "them|..."), so
a network that reads left to right must guess from the past alone, while a bidirectional one sees
both sides; and the decision needs the two sides *together* (the word that straddles t), which a
linear readout of one bidirectional layer can only add up, f(past) + g(future) (chapter 4's
XOR argument), and a second bidirectional layer can combine. ``context_baselines`` measures the
information on each side directly: the accuracy of the majority label of every context of the k
characters up to t (the best a causal reader of k characters can do) and of the k/2 up to t plus
the k/2 after it (the same number of characters, placed differently), counted on the training text
(k = k_context).

Models: GRU networks (``torch.nn.GRU``, which chapter 4 shows ``rnnkit.stack`` reproduces exactly,
used here for speed) with one-hot input and a linear readout to 2 logits, in four layouts (one
layer, two stacked layers, one bidirectional layer, two bidirectional layers); the width of each is
the one whose parameter count is closest to ``target_params``. Training: Adam, clipping at norm 5,
``steps`` batches of B random windows of L characters from the first 90% of the text. The learning
rate is picked per model from ``lrs`` by accuracy on a validation set (windows from the first half
of the last 10%) at seed 0; the other seeds are then trained at that rate, and every seed at that
rate (seed 0's run included) is scored on a test set (windows from the second half). A seed fixes the initialisation and the batches.

``run(size)`` returns {"config", "figures"}; ``python -m rnnkit.experiments word_boundaries
--size large --from-head`` records the large run.
"""
from __future__ import annotations

import time
from collections import Counter, defaultdict

import numpy as np

from ..tasks import load_corpus
from ._common import config_for

__all__ = ["CONFIGS", "LAYOUTS", "make_task", "n_params", "matched_width", "context_baselines",
           "train", "run"]

LAYOUTS = {"1 layer": (1, False), "2 layers": (2, False), "bidirectional": (1, True),
           "2 bidirectional layers": (2, True)}
CONFIGS = {
    "small": dict(target_params=8_000, steps=100, B=64, L=16, lrs=(1e-2, 3e-2, 1e-1),
                  seeds=(0, 1), n_eval=200, k_context=4),
    "large": dict(target_params=30_000, steps=1500, B=32, L=64, lrs=(3e-3, 1e-2, 3e-2),
                  seeds=(0, 1, 2), n_eval=1000, k_context=4),
    "tiny": dict(target_params=3_000, steps=5, B=4, L=16, lrs=(1e-2, 3e-2), seeds=(0, 1),
                 n_eval=10, k_context=2),
}


def make_task():
    """(chars, labels, V): the text without spaces as ids (N,), its word-end labels (N,), V."""
    text = load_corpus("genesis").text.replace("\n", " ")
    letters = sorted(set(text) - {" "})
    stoi = {c: i for i, c in enumerate(letters)}
    chars, labels = [], []
    for i, c in enumerate(text):
        if c == " ":
            continue
        chars.append(stoi[c])
        labels.append(1 if i + 1 < len(text) and text[i + 1] == " " else 0)
    return np.array(chars), np.array(labels), len(letters)


def n_params(V: int, H: int, K: int, bidirectional: bool) -> int:
    """torch.nn.GRU's parameters (two biases per gate block) plus the readout to 2 logits."""
    dirs = 2 if bidirectional else 1
    total = 0
    for k in range(K):
        D = V if k == 0 else dirs * H
        total += dirs * 3 * (D * H + H * H + 2 * H)
    return total + dirs * H * 2 + 2


def matched_width(V: int, K: int, bidirectional: bool, target: int) -> int:
    """The width whose parameter count is closest to ``target``."""
    return min(range(1, 513), key=lambda H: abs(n_params(V, H, K, bidirectional) - target))


def _windows(rng, chars, labels, lo: int, hi: int, n: int, L: int):
    starts = rng.integers(lo, hi - L, n)
    idx = starts[:, None] + np.arange(L)                        # (n, L)
    return chars[idx], labels[idx]


def context_baselines(chars, labels, n_train: int, test: tuple, k: int) -> dict:
    """Accuracy of the majority label given a fixed context of k characters, from training counts.

    "past": the k characters x_{t-k+1..t}; "both": the k/2 characters up to t and the k/2 after
    it, x_{t-k/2+1..t+k/2}. ``test`` is (x, y), windows (n, L); positions without the full
    context of either kind are left out (the same positions for both); an unseen context is
    labelled 0, the majority label.
    """
    if k < 2 or k % 2:
        raise ValueError(f"k: expected an even number >= 2, got {k}")
    h = k // 2
    spans = {"past": (k - 1, 0), "both": (h - 1, h)}          # characters before t, after t
    tables = {name: defaultdict(Counter) for name in spans}
    c, y = chars[:n_train], labels[:n_train]
    for t in range(k - 1, n_train - h):
        for name, (before, after) in spans.items():
            tables[name][tuple(c[t - before:t + after + 1])][y[t]] += 1
    x_te, y_te = test
    hits = {name: [] for name in spans}
    for row, lab in zip(x_te, y_te):
        for t in range(k - 1, len(row) - h):
            for name, (before, after) in spans.items():
                counts = tables[name].get(tuple(row[t - before:t + after + 1]))
                guess = counts.most_common(1)[0][0] if counts else 0
                hits[name].append(guess == lab[t])
    return {name: float(np.mean(v)) for name, v in hits.items()}


def train(layout: str, V: int, H: int, data: dict, cfg: dict, lr: float, seed: int) -> dict:
    """Train one network; returns its validation and test accuracy and its final training loss."""
    import torch  # noqa: PLC0415

    K, bidirectional = LAYOUTS[layout]
    torch.manual_seed(seed)
    net = torch.nn.GRU(V, H, num_layers=K, bidirectional=bidirectional, batch_first=True)
    readout = torch.nn.Linear(H * (2 if bidirectional else 1), 2)
    params = list(net.parameters()) + list(readout.parameters())
    assert sum(p.numel() for p in params) == n_params(V, H, K, bidirectional)
    opt = torch.optim.Adam(params, lr=lr)
    rng = np.random.default_rng(seed + 1)
    eye = torch.eye(V)

    def logits(x_ids):
        return readout(net(eye[torch.from_numpy(x_ids)])[0])          # (B, L, 2)

    losses, cpu0 = [], time.process_time()
    for _ in range(cfg["steps"]):
        x, y = _windows(rng, data["chars"], data["labels"], 0, data["n_train"], cfg["B"], cfg["L"])
        loss = torch.nn.functional.cross_entropy(logits(x).reshape(-1, 2), torch.from_numpy(y).reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        losses.append(loss.item())
    acc = {}
    for part in ("val", "test"):
        x, y = data[part]
        with torch.no_grad():
            acc[part] = float(np.mean(logits(x).argmax(-1).numpy() == y))      # over (n, L)
    return {"layout": layout, "H": H, "lr": lr, "seed": seed, "n_params": n_params(V, H, K, bidirectional),
            "val_accuracy": acc["val"], "test_accuracy": acc["test"],
            "final_train_loss": float(np.mean(losses[-max(1, cfg["steps"] // 10):])),
            "cpu_s": time.process_time() - cpu0}


def run(size: str = "small") -> dict:
    """All four layouts: lr picked on validation at seed 0, then every seed scored on test."""
    cfg = config_for(size, CONFIGS)
    chars, labels, V = make_task()
    n_train = int(0.9 * len(chars))
    mid = (n_train + len(chars)) // 2
    data = {"chars": chars, "labels": labels, "n_train": n_train,
            "val": _windows(np.random.default_rng(10_001), chars, labels, n_train, mid, cfg["n_eval"], cfg["L"]),
            "test": _windows(np.random.default_rng(10_002), chars, labels, mid, len(chars), cfg["n_eval"], cfg["L"])}
    widths = {name: matched_width(V, *LAYOUTS[name], cfg["target_params"]) for name in LAYOUTS}
    figures = {"V": V, "widths": widths,
               "n_params": {n: n_params(V, widths[n], *LAYOUTS[n]) for n in LAYOUTS},
               "boundary_rate": float(labels[:n_train].mean()),
               "majority_accuracy": float(1 - np.mean(data["test"][1])),
               "context": context_baselines(chars, labels, n_train, data["test"], cfg["k_context"]),
               "lr": {}, "sweep": [], "runs": []}
    for name in LAYOUTS:
        sweep = [train(name, V, widths[name], data, cfg, lr, cfg["seeds"][0]) for lr in cfg["lrs"]]
        best = max(sweep, key=lambda r: r["val_accuracy"])
        figures["lr"][name] = best["lr"]
        figures["sweep"] += [{k: r[k] for k in ("layout", "lr", "val_accuracy")} for r in sweep]
        runs = [best] + [train(name, V, widths[name], data, cfg, best["lr"], s) for s in cfg["seeds"][1:]]
        figures["runs"] += runs
        acc = [r["test_accuracy"] for r in runs]
        figures[name] = {"mean": float(np.mean(acc)), "min": float(np.min(acc)), "max": float(np.max(acc))}
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}
    return {"config": {"size": size, **config, "layouts": {k: list(v) for k, v in LAYOUTS.items()},
                       "model": "torch.nn.GRU, one-hot input, linear readout to 2 logits",
                       "optimizer": "Adam, clip 5",
                       "selection": "lr by validation accuracy at seed 0; every seed at that lr "
                                    "scored on test"},
            "figures": figures}
