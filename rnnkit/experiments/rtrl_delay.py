"""Chapter 8's experiment: learning a delay online, RTRL against truncated BPTT.

The task is ``rnnkit.tasks.delayed_recall``: B endless streams of random bits, the target at
every step being the bit read ``lag`` steps earlier (chance: ln 2 nats). Every learner is the
same network, chapter 1's Elman cell (8.1) with H units and a linear readout (1.8) to two
logits, trained by ``rnnkit.rtrl.train_online``: one loss (1.9) and one SGD update after every
step (8.6), the stream read once. The learners differ only in how far back the gradient reaches:

    RTRL                 the full-history sensitivities S_t (8.2)-(8.5)
    TBPTT, window k      the step-t loss backpropagated through the last k steps only
                         (k = 1, k = lag: both blind to the bit that matters; k = lag + 1: sees it)

The loss at step t is measured before the update of step t, so the stream's losses are a fair
test of what the learner knew at each step ("prequential"); ``final`` is the mean over the last
``final`` steps. After training, the weights are frozen and run on a fresh stream of
``test_steps`` steps: its cross-entropy and the fraction of wrong bits (targets from step ``lag``
on) are the test errors.

A seed fixes the stream (``default_rng(3 * seed + 1)``), the initial weights, the same for every
learner (``default_rng(3 * seed + 2)``: ``elman.init`` then ``layers.linear_init``), and the test
stream (``default_rng(3 * seed + 3)``); seed 0 is chapter 8's ``SEED = 0`` run. If ``lrs`` holds
more than one rate, each learner's rate is chosen on a validation stream (seed ``val_seed``, not
one of ``seeds``) by its final prequential loss (ties and NaNs: the smaller rate, NaN as
infinite), and every seed is then run at that rate. The CPU time per step of each run
(``time.process_time``, one thread) is recorded with it: the cost of a training run on a shared
machine, not a benchmark.

``run(size)`` returns {"config", "figures"}; ``python -m rnnkit.experiments rtrl_delay --size
large --from-head`` records it.
"""
from __future__ import annotations

import time

import numpy as np

from .. import elman, rtrl, tasks
from ..training import layers
from ._common import config_for

__all__ = ["CONFIGS", "learners", "n_params", "rngs", "train_one", "frozen_errors", "run"]

CONFIGS = {
    # the chapter's live run: one seed, the chapter's one rate for every learner
    "small": dict(lag=6, steps=3000, H=16, B=8, lrs=(0.05,), seeds=(0,), val_seed=None,
                  final=500, test_steps=1000, curve_points=100),
    # the recorded run: a longer lag and stream, a wider cell, a rate per learner, three seeds
    "large": dict(lag=10, steps=20000, H=24, B=8, lrs=(0.01, 0.03, 0.1), seeds=(0, 1, 2),
                  val_seed=10, final=500, test_steps=1000, curve_points=100),
    # the test's run
    "tiny": dict(lag=2, steps=120, H=4, B=2, lrs=(0.03, 0.1), seeds=(0, 1), val_seed=10,
                 final=20, test_steps=40, curve_points=12),
}
D, V = 2, 2       # one-hot bits in, two logits out


def learners(lag: int) -> dict:
    """Name -> (method, window) of ``rtrl.train_online``, in the chapter's order."""
    return {"RTRL": ("rtrl", 1), "TBPTT, window 1": ("tbptt", 1),
            f"TBPTT, window {lag}": ("tbptt", lag), f"TBPTT, window {lag + 1}": ("tbptt", lag + 1)}


def n_params(H: int) -> int:
    """Trained parameters of every learner: the cell (D H + H^2 + H) and the readout (H V + V)."""
    return D * H + H * H + H + H * V + V


def rngs(seed: int) -> tuple:
    """The stream's, the initial weights' and the test stream's generators of one seed."""
    return tuple(np.random.default_rng(3 * seed + k) for k in (1, 2, 3))


def _init(seed: int, H: int):
    init_rng = rngs(seed)[1]
    return elman.init(init_rng, D, H), layers.linear_init(init_rng, H, V)


def frozen_errors(params: dict, readout: dict, x, y, lag: int) -> dict:
    """Frozen weights on a fresh stream (state from zero): cross-entropy (nats) and the fraction
    of wrong bits, over the targets from step ``lag`` on (the earlier ones precede the stream).

    Args:
        params: Elman W_xh (D, H), W_hh (H, H), b_h (H,).  readout: W_hy (H, V), b_y (V,).
        x: (B, L, D) one-hot bits.  y: (B, L) targets.  lag: the delay.
    """
    h_all, _ = elman.forward(params, x)                                 # (B, L, H)
    z = layers.linear(readout, h_all)[:, lag:]                          # (B, L - lag, V)
    logp = z - np.logaddexp.reduce(z, axis=-1, keepdims=True)
    target = y[:, lag:]
    loss = -np.take_along_axis(logp, target[..., None], axis=-1).mean()
    return {"test_loss": float(loss), "test_bit_error": float(np.mean(z.argmax(-1) != target))}


def train_one(cfg: dict, name: str, lr: float, seed: int) -> dict:
    """One learner on the stream of ``seed``: curve, final loss, test errors, CPU time per step."""
    method, window = learners(cfg["lag"])[name]
    stream_rng, _, test_rng = rngs(seed)
    x, y = tasks.delayed_recall(stream_rng, cfg["B"], cfg["steps"], cfg["lag"])
    p0, r0 = _init(seed, cfg["H"])
    cpu0 = time.process_time()
    res = rtrl.train_online(p0, r0, x, y, lr, method, window)
    cpu = time.process_time() - cpu0
    block = cfg["steps"] // cfg["curve_points"]
    curve = res.losses[: block * cfg["curve_points"]].reshape(cfg["curve_points"], block).mean(1)
    x_te, y_te = tasks.delayed_recall(test_rng, cfg["B"], cfg["test_steps"], cfg["lag"])
    return {"learner": name, "method": method, "window": window, "lr": lr, "seed": seed,
            "final_loss": float(np.mean(res.losses[-cfg["final"]:])),
            **frozen_errors(res.params, res.readout, x_te, y_te, cfg["lag"]),
            "curve": curve, "curve_block": block, "cpu_s": cpu,
            "cpu_ms_per_step": 1e3 * cpu / cfg["steps"]}


def _selection_key(r: dict):
    loss = r["final_loss"]
    return (loss if np.isfinite(loss) else np.inf, r["lr"])


def run(size: str = "small") -> dict:
    """Every learner: its rate (chosen on the validation stream if ``lrs`` has several), then
    every seed at that rate."""
    cfg = config_for(size, CONFIGS)
    names = list(learners(cfg["lag"]))
    figures = {"learners": names, "n_params": n_params(cfg["H"]), "lr": {}, "sweep": [],
               "runs": [], "summary": {}}
    for name in names:
        if len(cfg["lrs"]) > 1:
            tries = [train_one(cfg, name, lr, cfg["val_seed"]) for lr in cfg["lrs"]]
            best = min(tries, key=_selection_key)["lr"]
            figures["sweep"] += [{k: r[k] for k in ("learner", "lr", "final_loss", "test_loss",
                                                     "test_bit_error", "cpu_ms_per_step")}
                                 for r in tries]
        else:
            best = cfg["lrs"][0]
        figures["lr"][name] = best
        runs = [train_one(cfg, name, best, seed) for seed in cfg["seeds"]]
        figures["runs"] += runs
        figures["summary"][name] = {
            f"{key}_{stat}": float(fn([r[key] for r in runs]))
            for key in ("final_loss", "test_loss", "test_bit_error", "cpu_ms_per_step")
            for stat, fn in (("mean", np.mean), ("min", np.min), ("max", np.max))}
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}
    return {"config": {"size": size, **config, "D": D, "V": V,
                       "task": "tasks.delayed_recall: target at step t = the bit read at t - lag",
                       "network": "Elman cell (8.1) + linear readout (1.8), the same initial "
                       "weights for every learner of a seed",
                       "training": "rtrl.train_online: one SGD update per step (8.6), the stream "
                       "read once; tbptt re-runs its window with the current weights",
                       "selection": "lr per learner by the final prequential loss on the stream "
                       "of val_seed (ties: the smaller rate); then every seed at that rate",
                       "timing": "time.process_time of each training run / steps, one thread, "
                       "on a shared machine: a training run's cost, not a benchmark",
                       "numpy_threads": "one BLAS thread when the caller sets OMP_NUM_THREADS=1 "
                       "OPENBLAS_NUM_THREADS=1 (the recording command does)"},
            "figures": figures}
