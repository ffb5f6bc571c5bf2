"""Chapter 3's experiments: Elman, GRU and LSTM on the adding problem and as character models.

Both comparisons use ``rnnkit``'s NumPy cells with their hand-written BPTT (``elman``, ``gru``
reset after (3.4a), ``lstm.cell("vanilla")``), Adam, and the same batches for every model of a
seed. Each model gets the hidden size whose total parameter count (cell (3.11) plus the linear
readout) is closest to the GRU's at ``H_gru``; the counts are reported.

**Adding problem** (``rnnkit.tasks.adding_problem``): two channels (values, two markers), the
target is the sum of the two marked values, read linearly from the last state; MSE loss, Adam,
clipping at norm 1, ``steps`` batches of ``B`` sequences at each lag L. The LSTM's forget-gate
bias is ``lstm_forget_bias`` (5 in the recording: chapter 2's setting for the copy task, where
b_f = 1 stayed near chance at lag 20, exercise 6 of chapter 2). For every (model, lag) the
learning rate is chosen from ``lrs`` by the MSE of seed 0 on ``n_eval`` *validation* sequences
(their own seed, 2000 + L); every seed at that rate is then scored on ``n_eval`` *test*
sequences (seed 1000 + L, as in the chapter), which played no part in the choice. Reported:
test MSE and accuracy (absolute error below 0.1) per seed, and their mean, min and max.
Predicting the mean gives MSE 1/6.

**Character model of Genesis** (``rnnkit.training.charlm``): random training windows of ``L`` characters,
Adam, clipping at norm 5. The rate is chosen per model from ``lrs`` by the bits per character of
seed 0 on a *selection* stretch (the first ``n_val`` windows of 256 characters of the validation
text, each read from a zero state, the chapter's protocol); every seed is scored on a separate
*report* stretch (the next ``n_val`` windows). The LSTM keeps ``lstm.init``'s b_f = 1 here (the
character model of chapter 2 uses it too).

A seed fixes the initialisation and the batches. ``run(size)`` returns {"config", "figures"};
``python -m rnnkit.experiments gru_compare --size large --from-head`` records it. The chapter's
live run calls ``adding_compare`` and ``lm_compare`` with ``CONFIGS["small"]``.
"""
from __future__ import annotations

import time

import numpy as np

from ..training import charlm, layers, train
from .. import elman, gru, lstm
from ..tasks import adding_problem, load_corpus
from ._common import config_for

__all__ = ["CONFIGS", "MODELS", "cell_of", "cell_params", "total_params", "matched_widths",
           "regression_loss_and_grads", "train_adding", "adding_compare", "lm_windows",
           "window_bits", "train_lm", "lm_compare", "run"]

MODELS = ("Elman", "GRU", "LSTM")
WINDOW = 256                 # validation windows of the character model, each from a zero state
TOLERANCE = 0.1              # adding problem: a prediction within 0.1 of the sum counts as right

CONFIGS = {
    # the chapter's live run: one rate per model (no sweep), one seed
    "small": {"adding": dict(lags=(8, 16, 32), steps=250, B=32, H_gru=24, lrs=(1e-2,), seeds=(0,),
                             n_eval=500, lstm_forget_bias=5.0),
              "lm": dict(steps=200, B=32, L=32, H_gru=64, lrs=(1e-2,), seeds=(0,), n_val=16)},
    # the recording: a rate per model (and lag) chosen on validation data, three seeds
    "large": {"adding": dict(lags=(16, 32, 64, 128), steps=800, B=32, H_gru=24, lrs=(3e-3, 1e-2, 3e-2),
                             seeds=(0, 1, 2), n_eval=500, lstm_forget_bias=5.0),
              "lm": dict(steps=1500, B=32, L=32, H_gru=64, lrs=(3e-3, 1e-2), seeds=(0, 1),
                         n_val=16)},
    # the test's run
    "tiny": {"adding": dict(lags=(4, 6), steps=3, B=4, H_gru=4, lrs=(1e-2, 3e-2), seeds=(0, 1),
                            n_eval=20, lstm_forget_bias=5.0),
             "lm": dict(steps=3, B=2, L=8, H_gru=6, lrs=(1e-2, 3e-2), seeds=(0, 1), n_val=2)},
}


def cell_of(kind: str):
    """The cell module of ``kind`` (an object with init, forward and backward)."""
    cells = {"Elman": elman, "GRU": gru, "LSTM": lstm.cell("vanilla")}
    if kind not in cells:
        raise ValueError(f"kind: expected one of {MODELS}, got {kind!r}")
    return cells[kind]


def cell_params(kind: str, D: int, H: int) -> int:
    """Parameters of one cell (3.11); the GRU is reset after, with its extra bias b_hn."""
    block = D * H + H * H + H
    counts = {"Elman": block, "GRU": 3 * block + H, "LSTM": 4 * block}
    if kind not in counts:
        raise ValueError(f"kind: expected one of {MODELS}, got {kind!r}")
    return counts[kind]


def total_params(kind: str, D: int, H: int, n_out: int) -> int:
    """Cell plus linear readout (H, n_out) + (n_out,)."""
    return cell_params(kind, D, H) + H * n_out + n_out


def matched_widths(D: int, n_out: int, H_gru: int) -> dict:
    """Per model, the H whose total parameter count is closest to the GRU's at H_gru."""
    target = total_params("GRU", D, H_gru, n_out)
    return {kind: min(range(1, 4 * H_gru + 1),
                      key=lambda H: (abs(total_params(kind, D, H, n_out) - target), H))
            for kind in MODELS}


def _n(tree: dict) -> int:
    return sum(int(v.size) for part in tree.values() for v in part.values())


# ---------------------------------------------------------------- adding problem

def regression_loss_and_grads(cell, p: dict, batch) -> tuple:
    """Mean squared error of a linear readout of the LAST state h_L; BPTT through the cell."""
    x, y = batch                                              # (B, L, D), (B, 1)
    h_all, _, cache = cell.forward(p["cell"], x, None, return_cache=True)
    pred = layers.linear(p["readout"], h_all[:, -1])          # (B, 1)
    err = pred - y
    readout_grads, dh_last = layers.linear_backward(p["readout"], 2 * err / err.size, h_all[:, -1])
    dh_all = np.zeros_like(h_all)                             # (B, L, H): only h_L gets a gradient
    dh_all[:, -1] = dh_last
    cell_grads, _, _ = cell.backward(p["cell"], dh_all, cache)
    return float(np.mean(err ** 2)), {"cell": cell_grads, "readout": readout_grads}


def _adding_score(cell, p: dict, L: int, n: int, seed: int) -> tuple[float, float]:
    x, y = adding_problem(np.random.default_rng(seed), n, L)
    pred = layers.linear(p["readout"], cell.forward(p["cell"], x)[0][:, -1])
    return float(np.mean((pred - y) ** 2)), float(np.mean(np.abs(pred - y) < TOLERANCE))


def train_adding(kind: str, L: int, *, H: int, steps: int, lr: float, seed: int = 0, B: int = 32,
                 n_eval: int = 500, lstm_forget_bias: float = 1.0, reset_after: bool = True) -> dict:
    """Train one model on the adding problem at length L; score it on validation and test sets.

    Returns a dict with the settings, val_mse / val_acc (validation sequences, seed 2000 + L),
    test_mse / test_acc (test sequences, seed 1000 + L), the per-step training losses, the CPU
    time, and under ``"_params"`` the trained parameters and under ``"_history"`` the History.
    """
    cell = cell_of(kind)
    kwargs = ({"forget_bias": lstm_forget_bias} if kind == "LSTM" else
              {"reset_after": reset_after} if kind == "GRU" else {})
    r = np.random.default_rng(seed)
    p = {"cell": cell.init(r, 2, H, **kwargs), "readout": layers.linear_init(r, H, 1)}
    data = np.random.default_rng(seed + 1)                    # the same batches for every model
    cpu0 = time.process_time()
    hist = train.fit(lambda p_, b: regression_loss_and_grads(cell, p_, b), p, train.Adam(lr=lr),
                     lambda s: adding_problem(data, B, L), n_steps=steps, clip=1.0, progress=False)
    val_mse, val_acc = _adding_score(cell, p, L, n_eval, 2000 + L)
    test_mse, test_acc = _adding_score(cell, p, L, n_eval, 1000 + L)
    return {"model": kind, "L": L, "H": H, "lr": lr, "seed": seed, "n_params": _n(p),
            "val_mse": val_mse, "val_acc": val_acc, "test_mse": test_mse, "test_acc": test_acc,
            "losses": [float(v) for v in hist.losses], "cpu_s": time.process_time() - cpu0,
            "_params": p, "_history": hist}


def _public(r: dict) -> dict:
    return {k: v for k, v in r.items() if not k.startswith("_")}


def _stats(values) -> dict:
    return {"mean": float(np.mean(values)), "min": float(np.min(values)),
            "max": float(np.max(values))}


def adding_compare(cfg: dict) -> tuple[dict, dict]:
    """Every model at every lag: the rate chosen on validation (seed 0), then every seed.

    Returns (figures, trained): plain-JSON figures (widths, counts, the sweep, the runs, the
    chosen rates and a summary per model and lag) and the trained runs by (model, L, seed)
    with their parameters, for the chapter's plots.
    """
    widths = matched_widths(2, 1, cfg["H_gru"])
    common = dict(steps=cfg["steps"], B=cfg["B"], n_eval=cfg["n_eval"],
                  lstm_forget_bias=cfg["lstm_forget_bias"])
    figures = {"H": widths, "n_params": {k: total_params(k, 2, widths[k], 1) for k in MODELS},
               "lr": {}, "sweep": [], "runs": [], "summary": {}}
    trained = {}
    first = cfg["seeds"][0]
    for L in cfg["lags"]:
        for kind in MODELS:
            tries = [train_adding(kind, L, H=widths[kind], lr=lr, seed=first, **common)
                     for lr in cfg["lrs"]]
            best = min(tries, key=lambda r: (r["val_mse"], r["lr"]))
            if len(cfg["lrs"]) > 1:
                figures["sweep"] += [{k: r[k] for k in ("model", "L", "lr", "val_mse", "val_acc")}
                                     for r in tries]
            figures["lr"][f"{kind} L={L}"] = best["lr"]
            for seed in cfg["seeds"]:       # seed 0 at the chosen rate is already trained
                r = best if seed == first else train_adding(kind, L, H=widths[kind], lr=best["lr"],
                                                            seed=seed, **common)
                assert r["n_params"] == figures["n_params"][kind]
                trained[kind, L, seed] = r
                figures["runs"].append({**_public(r), "losses": r["losses"][::10]})
            mine = [trained[kind, L, s] for s in cfg["seeds"]]
            figures["summary"][f"{kind} L={L}"] = {
                "model": kind, "L": L, "lr": best["lr"],
                "test_mse": _stats([r["test_mse"] for r in mine]),
                "test_acc": _stats([r["test_acc"] for r in mine]),
                "test_mse_per_seed": [r["test_mse"] for r in mine]}
    return figures, trained


# ---------------------------------------------------------------- character model

def lm_windows(val_ids: np.ndarray, n_val: int, part: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows ``part * n_val ... (part + 1) * n_val - 1`` of 256 validation characters and their
    targets: part 0 is the selection stretch, part 1 the report stretch. Each (n_val, 256)."""
    start = part * n_val * WINDOW
    x = val_ids[start:start + n_val * WINDOW]
    y = val_ids[start + 1:start + n_val * WINDOW + 1]
    if len(y) < n_val * WINDOW:
        raise ValueError(f"n_val: {n_val} windows per stretch need {2 * n_val * WINDOW + 1} "
                         f"validation characters, have {len(val_ids)}")
    return x.reshape(n_val, WINDOW), y.reshape(n_val, WINDOW)


def window_bits(cell, p: dict, windows: tuple, V: int) -> float:
    """Cross-entropy in bits/char on validation windows, each read from a zero state, one batch."""
    x, y = windows
    h_all, _ = cell.forward(p["cell"], charlm.one_hot(x, V), None)
    return float(layers.softmax_cross_entropy(layers.linear(p["readout"], h_all), y)[0] / np.log(2))


def train_lm(kind: str, corpus, windows: dict, *, H: int, steps: int, lr: float, seed: int = 0,
             B: int = 32, L: int = 32) -> dict:
    """Train one character model; bits/char on the selection and report stretches, the curves.

    ``windows`` holds "select" and "report" (``lm_windows``). The selection stretch is also
    scored every steps // 4 steps (the learning curve). ``"_params"`` and ``"_history"`` hold
    the trained parameters and the History.
    """
    cell = cell_of(kind)
    p = charlm.init(np.random.default_rng(seed), cell, corpus.V, H)
    data = np.random.default_rng(seed + 1)                    # the same windows for every model
    cpu0 = time.process_time()
    hist = train.fit(lambda p_, b: charlm.loss_and_grads(cell, p_, *b)[:2], p, train.Adam(lr=lr),
                     lambda s: corpus.random_windows(data, B, L), n_steps=steps, clip=5.0,
                     progress=False,
                     eval_fn=lambda p_: {"val_bits": window_bits(cell, p_, windows["select"], corpus.V)},
                     eval_every=max(1, steps // 4))
    losses = np.asarray(hist.losses) / np.log(2)
    return {"model": kind, "H": H, "lr": lr, "seed": seed, "n_params": _n(p),
            "select_bits": hist.evals[-1][1]["val_bits"],
            "report_bits": window_bits(cell, p, windows["report"], corpus.V),
            "train_bits_last_50": float(np.mean(losses[-50:])),
            "curve": {"step": [s for s, _ in hist.evals],
                      "val_bits": [e["val_bits"] for _, e in hist.evals]},
            "cpu_s": time.process_time() - cpu0, "_params": p, "_history": hist}


def lm_compare(cfg: dict) -> tuple[dict, dict]:
    """Every model: the rate chosen on the selection stretch (seed 0), every seed on the report
    stretch. Returns (figures, trained by (model, seed))."""
    corpus = load_corpus("genesis")
    _, val_ids = corpus.split(0.1)
    windows = {"select": lm_windows(val_ids, cfg["n_val"], 0),
               "report": lm_windows(val_ids, cfg["n_val"], 1)}
    widths = matched_widths(corpus.V, corpus.V, cfg["H_gru"])
    common = dict(steps=cfg["steps"], B=cfg["B"], L=cfg["L"])
    figures = {"V": corpus.V, "H": widths,
               "n_params": {k: total_params(k, corpus.V, widths[k], corpus.V) for k in MODELS},
               "lr": {}, "sweep": [], "runs": [], "summary": {}}
    trained = {}
    first = cfg["seeds"][0]
    for kind in MODELS:
        tries = [train_lm(kind, corpus, windows, H=widths[kind], lr=lr, seed=first, **common)
                 for lr in cfg["lrs"]]
        best = min(tries, key=lambda r: (r["select_bits"], r["lr"]))
        if len(cfg["lrs"]) > 1:
            figures["sweep"] += [{k: r[k] for k in ("model", "lr", "select_bits")} for r in tries]
        figures["lr"][kind] = best["lr"]
        for seed in cfg["seeds"]:
            r = best if seed == first else train_lm(kind, corpus, windows, H=widths[kind],
                                                    lr=best["lr"], seed=seed, **common)
            assert r["n_params"] == figures["n_params"][kind]
            trained[kind, seed] = r
            figures["runs"].append(_public(r))
        mine = [trained[kind, s] for s in cfg["seeds"]]
        figures["summary"][kind] = {"lr": best["lr"],
                                    "report_bits": _stats([r["report_bits"] for r in mine]),
                                    "report_bits_per_seed": [r["report_bits"] for r in mine]}
    per_seed = {k: figures["summary"][k]["report_bits_per_seed"] for k in MODELS}
    figures["summary"]["lowest_per_seed"] = [min(MODELS, key=lambda k: per_seed[k][i])
                                             for i in range(len(cfg["seeds"]))]
    return figures, trained


def run(size: str = "small") -> dict:
    """Both comparisons at ``size`` ("tiny", "small", "large")."""
    cfg = config_for(size, CONFIGS)
    cpu0 = time.process_time()
    adding, _ = adding_compare(cfg["adding"])
    cpu_adding = time.process_time() - cpu0
    lm, _ = lm_compare(cfg["lm"])
    plain = lambda c: {k: (list(v) if isinstance(v, tuple) else v) for k, v in c.items()}  # noqa: E731
    return {"config": {"size": size, "adding": plain(cfg["adding"]), "lm": plain(cfg["lm"]),
                       "cells": "rnnkit NumPy cells, hand-written BPTT: elman, gru (reset after), "
                                "lstm.cell('vanilla')",
                       "widths": "per model the H closest in total parameters (cell + readout) "
                                 "to the GRU at H_gru",
                       "adding_selection": "lr per (model, lag) by validation MSE of seed 0 "
                                           "(sequences seeded 2000 + L); every seed scored on "
                                           "test sequences seeded 1000 + L",
                       "lm_selection": "lr per model by bits/char of seed 0 on validation windows "
                                       "0..n_val-1; every seed scored on windows n_val..2n_val-1",
                       "lm_lstm_forget_bias": 1.0, "adding_clip": 1.0, "lm_clip": 5.0,
                       "optimizer": "Adam"},
            "figures": {"adding": adding, "lm": lm,
                        "cpu_s": {"adding": cpu_adding, "lm": time.process_time() - cpu0 - cpu_adding}}}
