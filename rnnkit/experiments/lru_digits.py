"""Chapter 10's experiment: the LRU against an LSTM in the same deep network on sequential digits.

The task is ``rnnkit.training.seqclass.digits_data(side)``: scikit-learn's digits resampled to side x side
and read one pixel per step (L = side**2), 1,500 training and 297 test images. Both models are
the network of ``rnnkit.training.seqclass.train_classifier`` (10.16)-(10.18), identical except for the
sequence layer inside each block:

    LRU   ``lru.forward_scan``, N = 2H complex modes, ring r_min = 0.9, r_max = 0.999 (10.7)
    LSTM  ``seqclass.lstm_layer`` (torch's LSTM, H -> H, forget-gate bias 1)

Everything else is matched: the same encoder, LayerNorm, GELU, GLU, residual and linear readout
(10.18), Adam with one learning rate for every parameter of a model (no smaller rate for the
recurrence), batches of 50 drawn in the same order, the same number of steps. The readout's
pooling is the same for both models, and the comparison is made twice, once with each pooling:
``"mean"`` over time (the LRU paper's) and ``"last"`` (the last step's features, the usual choice
for an LSTM), so that neither model is compared in the other's preferred setting only. With
N = 2H the two layers have 4NH + 3N + H = 8H^2 + 7H (LRU) and 8H^2 + 8H (LSTM) parameters, so the
networks differ in size by H scalars (0.3 % at H = 32, one block); ``run`` reports both counts.

For each pooling, the learning rate is chosen per model from ``lrs``: seed 0 is trained at every
rate on the first ``1500 - n_val`` training images and scored on the last ``n_val`` (a validation
split; the test set plays no part), and the rate with the best validation accuracy wins (ties:
the smaller rate). Every seed is then trained at that rate on all 1,500 training images and
scored on the 297 test images. A seed fixes the initialisation and the order of the batches.

``run(size)`` returns {"config", "figures"}; ``python -m rnnkit.experiments lru_digits --size
large --from-head`` records it.
"""
from __future__ import annotations

import time
import numpy as np

from .. import lru
from ..training import seqclass
from ._common import config_for, torch_settings

__all__ = ["CONFIGS", "MODELS", "layer_params", "model_params", "train_one", "run"]

MODELS = ("LRU", "LSTM")
N_CLASSES = 10

CONFIGS = {
    # the chapter's live run: 8x8 digits, one rate for both models, one seed, no sweep
    "small": dict(side=8, n_layers=1, H=32, steps=250, batch=50, lrs=(5e-3,), seeds=(0,),
                  n_val=0, pools=("mean",)),
    # the recorded run: 16x16 digits (L = 256), both poolings, three rates per model, three seeds
    "large": dict(side=16, n_layers=1, H=32, steps=400, batch=50, lrs=(3e-3, 1e-2, 3e-2),
                  seeds=(0, 1, 2), n_val=300, pools=("mean", "last")),
    # the test's run
    "tiny": dict(side=8, n_layers=1, H=8, steps=3, batch=20, lrs=(5e-3, 1e-2), seeds=(0, 1),
                 n_val=40, n_train=140, pools=("mean", "last")),
}
R_MIN, R_MAX = 0.9, 0.999


def layer_params(kind: str, H: int) -> int:
    """Parameters of one sequence layer of width H (the LRU with N = 2H modes)."""
    if kind == "LRU":     # B_re, B_im (N, H); C_re, C_im (H, N); nu_log, theta_log, gamma_log (N,); D (H,)
        N = 2 * H
        return 4 * N * H + 3 * N + H
    if kind == "LSTM":    # weight_ih, weight_hh (4H, H); bias_ih, bias_hh (4H,)
        return 8 * H * H + 8 * H
    raise ValueError(f"kind: expected one of {MODELS}, got {kind!r}")


def model_params(kind: str, H: int, n_layers: int, D: int = 1) -> int:
    """Parameters of the whole network (10.16)-(10.18): encoder, blocks, readout."""
    block = layer_params(kind, H) + 2 * H + 2 * (H * H + H)      # layer, LayerNorm, GLU's two maps
    return (D * H + H) + n_layers * block + (H * N_CLASSES + N_CLASSES)


def _init_fn(kind: str):
    if kind == "LRU":
        return lambda rng, H: lru.init(rng, H, 2 * H, r_min=R_MIN, r_max=R_MAX)
    return seqclass.lstm_init


def train_one(kind: str, data, *, H: int, n_layers: int, steps: int, batch: int, lr: float,
              seed: int, pool: str = "mean") -> dict:
    """One training run; returns accuracy on ``data``'s held-out split, losses, size, CPU time."""
    layer_fn = lru.forward_scan if kind == "LRU" else seqclass.lstm_layer
    if kind not in MODELS:
        raise ValueError(f"kind: expected one of {MODELS}, got {kind!r}")
    cpu0 = time.process_time()
    res = seqclass.train_classifier(layer_fn, _init_fn(kind), data, H=H, n_layers=n_layers,
                                    steps=steps, lr=lr, batch=batch, seed=seed, pool=pool)
    n = model_params(kind, H, n_layers, D=data[0].shape[2])
    assert res.n_params == n, (kind, res.n_params, n)
    losses = res.history["loss"]
    return {"model": kind, "pool": pool, "lr": lr, "seed": seed, "n_params": res.n_params,
            "heldout_acc": res.test_acc, "train_acc": res.train_acc,
            "loss_last_50": float(np.mean(losses[-50:])), "losses": losses,
            "cpu_s": time.process_time() - cpu0}


def _data(cfg: dict):
    data = seqclass.digits_data(side=cfg["side"])
    n_train = cfg.get("n_train", len(data.y_train))
    x_tr, y_tr = data.x_train[:n_train], data.y_train[:n_train]
    n_val = cfg["n_val"]
    select = (x_tr[:n_train - n_val], y_tr[:n_train - n_val], x_tr[n_train - n_val:],
              y_tr[n_train - n_val:]) if n_val else None
    return select, seqclass.Data(x_tr, y_tr, data.x_test, data.y_test)


def run(size: str = "small") -> dict:
    """For each pooling and model: the rate picked on a validation split (if more than one), then
    every seed at that rate."""
    cfg = config_for(size, CONFIGS)
    with torch_settings(threads=1):  # deterministic, and fair on a shared 2-core machine
        select, full = _data(cfg)
        common = dict(H=cfg["H"], n_layers=cfg["n_layers"], steps=cfg["steps"], batch=cfg["batch"])
        figures = {"n_params": {k: model_params(k, cfg["H"], cfg["n_layers"]) for k in MODELS},
                   "layer_params": {k: layer_params(k, cfg["H"]) for k in MODELS},
                   "lr": {}, "sweep": [], "runs": [], "summary": {}}
        for pool in cfg["pools"]:
            figures["lr"][pool] = {}
            for kind in MODELS:
                if len(cfg["lrs"]) > 1:
                    tries = [train_one(kind, select, lr=lr, seed=cfg["seeds"][0], pool=pool, **common)
                             for lr in cfg["lrs"]]
                    best = max(tries, key=lambda r: (r["heldout_acc"], -r["lr"]))["lr"]
                    figures["sweep"] += [{"model": kind, "pool": pool, "lr": r["lr"],
                                          "val_acc": r["heldout_acc"], "train_acc": r["train_acc"],
                                          "loss_last_50": r["loss_last_50"]} for r in tries]
                else:
                    best = cfg["lrs"][0]
                figures["lr"][pool][kind] = best
                for seed in cfg["seeds"]:
                    r = train_one(kind, full, lr=best, seed=seed, pool=pool, **common)
                    r["test_acc"] = r.pop("heldout_acc")
                    figures["runs"].append(r)
            acc = {kind: {r["seed"]: r["test_acc"] for r in figures["runs"]
                          if r["model"] == kind and r["pool"] == pool} for kind in MODELS}
            figures["summary"][pool] = {
                **{f"{kind}_test_acc_{stat}": float(fn(list(acc[kind].values())))
                   for kind in MODELS for stat, fn in (("mean", np.mean), ("min", np.min),
                                                       ("max", np.max))},
                "lru_minus_lstm_per_seed": [acc["LRU"][s] - acc["LSTM"][s] for s in cfg["seeds"]]}
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}
    return {"config": {"size": size, **config, "L": cfg["side"] ** 2, "N_lru": 2 * cfg["H"],
                       "r_min": R_MIN, "r_max": R_MAX, "task": f"sequential digits, "
                       f"{cfg['side']}x{cfg['side']}, one pixel per step",
                       "network": "seqclass.train_classifier: encoder, blocks of [LayerNorm, "
                       "layer, GELU, GLU, residual], pooling over time (each of pools), linear readout",
                       "optimizer": "Adam, one rate for all parameters",
                       "lstm_forget_bias": 1.0, "torch_threads": 1,
                       "selection": "lr by validation accuracy (last n_val training images), "
                       "seed 0; then every seed on all training images, scored on the test set"},
            "figures": figures}
