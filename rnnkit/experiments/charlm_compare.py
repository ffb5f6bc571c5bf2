"""Chapters 1-2: Elman against LSTM character language models of Genesis at equal parameter counts.

Both models are ``rnnkit.training.charlm`` models (one-hot input, one recurrent layer, linear readout to
the V characters), trained with the hand-written BPTT of ``rnnkit.elman`` / ``rnnkit.lstm``, Adam
and gradient clipping at norm 5 on random windows of the training part of Genesis. The Elman
network has ``H_elman`` units; the LSTM's H is the one whose total parameter count (cell plus
readout) is closest to the Elman network's, so the two are compared at (about) equal size, both
counts reported.

Learning rate: the same grid of peak rates (``lrs``) is tried for both models, each rate with
the schedule over half the steps (``steps // 2``), and the rate of the lowest validation loss at
the end is chosen per model (the same batches, schedule and seed for every run). Only the chosen
rate is then trained over the full ``steps``: this halves the cost of the sweep, and the sweep's
run at the chosen rate is exactly the half-length run the doubling test below needs. The price:
the rate is the best at half the budget, which need not be the best at the full one. Whether the
chosen rate sits at an end of the grid is recorded (``rate_at_grid_edge``): a rate at an end
may not be the best the model can do.

Learning-rate schedule: the rate of update t = 1 ... S (S = ``steps``) follows a cosine from the
peak rate eta (the swept value) down to ``lr_final_ratio * eta`` at the last update (Loshchilov
and Hutter, SGDR, ICLR 2017, without restarts):

    eta_t = eta_min + (eta - eta_min) * (1 + cos(pi * (t - 1) / (S - 1))) / 2,   eta_min = r * eta

Convergence is measured, not assumed, by two tests on the chosen model of each kind:

1. settled: ``convergence`` takes the validation curve and reports the change of validation
   bits/char over the last ``conv_window`` (a fraction) of the steps; it must be smaller in size
   than ``conv_threshold``. Under a decaying rate this is a weak test (in the last tenth of a
   cosine down to a hundredth the rate is at most 3.5 % of its peak, so little can change there
   whatever the model's state): it says the run has settled, not that more training would not
   help. Hence
2. doubling: the same model, seed and peak rate with the whole schedule squeezed into half the
   steps (the sweep's run at the chosen rate); the gain of the full run over the half run, in
   validation bits/char, must be smaller than ``doubling_threshold``. A gain that small from doubling the budget is
   what "converged" means here.

A model counts as converged when it passes both. Neither test says that a wider model, another
architecture or a different rate could not do better.

Reported per model: bits per character on a fixed validation stretch read with the state carried
(the cross-entropy in base 2; lower is better) and the per-character perplexity 2^bits (the
effective number of equally likely next characters); the learning curves (validation bits every
``eval_every`` steps, mean training bits per block of ``eval_every`` steps) and the convergence
check. Reference points: the unigram entropy of the training text, and log2 V for a uniform guess.

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

import math
import time

import numpy as np

from ..training import charlm, train
from .. import elman, lstm
from ..tasks import load_corpus
from ._common import config_for

__all__ = ["CONFIGS", "param_count", "matched_lstm_width", "cosine_rate", "Scheduled", "convergence",
           "train_model", "gate_record", "run"]

# Shared by every size: the schedule's final rate (a fraction of the peak) and the convergence test.
SCHEDULE = {"lr_final_ratio": 0.01, "conv_window": 0.1, "conv_threshold": 0.01,
            "doubling_threshold": 0.02}

CONFIGS = {
    # the chapter's live run (chapter 2): one rate for both, no sweep (the half run is the doubling test's)
    "small": {"H_elman": 64, "steps": 200, "lrs": [1e-2], "B": 32, "L": 64, "n_val": 4000, "seed": 0,
              "eval_every": 10, "trace_len": 100, "n_trace_units": 12, **SCHEDULE},
    # the recorded run read by chapters 1 and 2 (figure 2.4): the rates swept at 4000 steps, the
    # chosen one trained for 8000 (a 4000-step run failed the doubling test: its 2000-step
    # half ended 0.034-0.041 bits/char worse; recording at d46b584, superseded)
    "large": {"H_elman": 128, "steps": 8000, "lrs": [5e-3, 1e-2, 2e-2, 4e-2], "B": 32, "L": 64,
              "n_val": 8000, "seed": 0, "eval_every": 200, "trace_len": 100, "n_trace_units": 12,
              **SCHEDULE},
    # the unit test's run
    "tiny": {"H_elman": 8, "steps": 20, "lrs": [3e-3, 1e-2], "B": 4, "L": 16, "n_val": 400, "seed": 0,
             "eval_every": 1, "trace_len": 30, "n_trace_units": 3, **SCHEDULE},
}


def param_count(kind: str, V: int, H: int) -> int:
    """Parameters of a char-LM with one cell of width H and a linear readout (H, V) + (V,)."""
    cell = {"elman": V * H + H * H + H, "lstm": 4 * (V * H + H * H + H)}[kind]
    return cell + H * V + V


def matched_lstm_width(V: int, H_elman: int) -> int:
    """The LSTM width whose parameter count is closest to an Elman char-LM of width H_elman."""
    target = param_count("elman", V, H_elman)
    return min(range(1, 2 * H_elman + 1), key=lambda H: abs(param_count("lstm", V, H) - target))


def cosine_rate(lr: float, t: int, n_steps: int, final_ratio: float) -> float:
    """The rate of update t = 1 ... n_steps: a cosine from lr down to final_ratio * lr."""
    lr_min = final_ratio * lr
    frac = (t - 1) / (n_steps - 1) if n_steps > 1 else 1.0
    return lr_min + (lr - lr_min) * 0.5 * (1.0 + math.cos(math.pi * frac))


class Scheduled:
    """An optimiser whose ``lr`` follows ``cosine_rate``: sets it, then takes the wrapped step."""

    def __init__(self, opt: train.Optimizer, n_steps: int, final_ratio: float) -> None:
        self.opt, self.peak, self.n_steps, self.final_ratio = opt, opt.lr, n_steps, final_ratio
        self.t = 0
        self.rates: list[float] = []                      # the rate used at each update

    def step(self, params, grads) -> None:
        self.t += 1
        self.opt.lr = cosine_rate(self.peak, self.t, self.n_steps, self.final_ratio)
        self.rates.append(self.opt.lr)
        self.opt.step(params, grads)


def convergence(curve: dict, n_steps: int, window: float, threshold: float) -> dict:
    """Change of validation bits/char over the last ``window`` (a fraction) of the steps.

    ``curve`` holds "step" and "val_bits" lists; an evaluation must fall exactly on step
    n_steps - round(window * n_steps). Converged: |change| < threshold (bits/char).
    """
    start = n_steps - round(window * n_steps)
    if start not in curve["step"] or curve["step"][-1] != n_steps:
        raise ValueError(f"curve: expected evaluations at steps {start} and {n_steps}, "
                         f"got {curve['step']}")
    before, after = curve["val_bits"][curve["step"].index(start)], curve["val_bits"][-1]
    return {"from_step": start, "to_step": n_steps, "val_bits_from": before, "val_bits_to": after,
            "change": after - before, "threshold": threshold,
            "converged": bool(abs(after - before) < threshold)}


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
    opt = Scheduled(train.Adam(lr=lr), cfg["steps"], cfg["lr_final_ratio"])
    hist = train.fit(step_fn, params, opt,
                     lambda step: corpus.random_windows(data_rng, cfg["B"], cfg["L"]),
                     n_steps=cfg["steps"], clip=5.0, progress=False,
                     eval_fn=lambda p: {"val_bits": float(charlm.evaluate(cell, p, val_ids, L=256))},
                     eval_every=every)
    bits = float(charlm.evaluate(cell, params, val_ids, L=256))
    n_params = sum(int(v.size) for part in params.values() for v in part.values())
    assert n_params == param_count(kind, corpus.V, H)
    losses = np.asarray(hist.losses) / np.log(2)                   # nats -> bits, per step
    curve = {"step": [s for s, _ in hist.evals],
             "val_bits": [e["val_bits"] for _, e in hist.evals],
             "train_bits": [float(np.mean(losses[max(0, s - every):s])) for s, _ in hist.evals],
             "lr": [opt.rates[s - 1] for s, _ in hist.evals]}
    out = {"H": H, "lr": lr, "lr_final": opt.rates[-1], "params": n_params, "val_bits": bits,
           "perplexity": 2.0 ** bits, "final_train_bits": float(np.mean(losses[-50:])),
           "curve": curve,
           "convergence": convergence(curve, cfg["steps"], cfg["conv_window"], cfg["conv_threshold"]),
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
    """Elman and LSTM char-LMs at equal parameter counts; ``size`` is "tiny", "small" or "large"."""
    cfg = config_for(size, CONFIGS)
    for n in (cfg["steps"], cfg["steps"] // 2):            # both tests need these evaluations
        start = n - round(cfg["conv_window"] * n)
        if start % cfg["eval_every"] or n % cfg["eval_every"]:
            raise ValueError(f"eval_every: {cfg['eval_every']} must divide {start} and {n} "
                             f"(the convergence window of a {n}-step run)")
    corpus = load_corpus("genesis")
    train_ids, val_ids = corpus.split(0.1)
    val = val_ids[:cfg["n_val"]]
    counts = np.bincount(train_ids, minlength=corpus.V).astype(float)
    freq = counts[counts > 0] / counts.sum()
    widths = {"elman": cfg["H_elman"], "lstm": matched_lstm_width(corpus.V, cfg["H_elman"])}
    half_cfg = {**cfg, "steps": cfg["steps"] // 2}
    sweeps, best, half, edge = {}, {}, {}, {}
    for kind, H in widths.items():
        # the sweep: every rate over half the steps; its run at the chosen rate is the half run
        sweeps[kind] = [train_model(kind, H, lr, half_cfg, corpus, val) for lr in cfg["lrs"]]
        chosen = min(sweeps[kind], key=lambda r: r["val_bits"])
        edge[kind] = len(cfg["lrs"]) > 1 and chosen["lr"] in (min(cfg["lrs"]), max(cfg["lrs"]))
        best[kind] = train_model(kind, H, chosen["lr"], cfg, corpus, val, keep_params=kind == "lstm")
        half[kind] = {"steps": half_cfg["steps"], "lr": chosen["lr"], "val_bits": chosen["val_bits"],
                      "curve": chosen["curve"], "cpu_s": chosen["cpu_s"]}
        gain = chosen["val_bits"] - best[kind]["val_bits"]
        conv = best[kind]["convergence"]
        conv["doubling"] = {"half_steps": half_cfg["steps"], "val_bits_half": chosen["val_bits"],
                            "val_bits_full": best[kind]["val_bits"], "gain": gain,
                            "threshold": cfg["doubling_threshold"],
                            "passed": bool(gain < cfg["doubling_threshold"])}
        conv["settled"] = conv["converged"]                  # the last-window test alone
        conv["converged"] = bool(conv["settled"] and conv["doubling"]["passed"])
    gates = gate_record(best["lstm"].pop("_params"), corpus, val, cfg)
    figures = {"unigram_bits": float(-np.sum(freq * np.log2(freq))), "uniform_bits": float(np.log2(corpus.V)),
               "V": corpus.V, "best": best, "sweep": sweeps, "half_schedule": half, "lstm_gates": gates,
               "rate_at_grid_edge": edge,
               "converged": {kind: best[kind]["convergence"]["converged"] for kind in best}}
    return {"config": {**cfg, "size": size, "widths": widths, "validation": f"val_ids[:{cfg['n_val']}]",
                       "sweep_steps": half_cfg["steps"],
                       "selection": f"peak lr by validation bits/char at the end of a {half_cfg['steps']}-step "
                                    f"run (the same grid for both models); the chosen lr trained for "
                                    f"{cfg['steps']} steps",
                       "schedule": f"cosine from lr to {cfg['lr_final_ratio']:g} * lr over the steps",
                       "convergence": f"|change of validation bits/char over the last "
                                      f"{cfg['conv_window']:.0%} of the steps| < {cfg['conv_threshold']:g}"
                                      f" and gain over the same run in {cfg['steps'] // 2} steps < "
                                      f"{cfg['doubling_threshold']:g} bits/char",
                       "gates": "best LSTM on the validation stretch, state carried from zero; trace: "
                                "first verse after character 100, the n_trace_units units of largest "
                                "forget-gate std over the stretch"},
            "figures": figures}
