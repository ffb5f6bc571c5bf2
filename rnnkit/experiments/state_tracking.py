"""Chapter 17: state tracking by linear RNNs with and without negative eigenvalues.

Every model is one recurrent layer between a per-symbol input map and a per-step MLP readout
(Linear - ReLU - Linear, applied to each step separately, so it adds no memory), trained with
Adam on per-step cross-entropy at length L_train and evaluated at length L_test > L_train on the
steps L_train+1..L_test it never saw (length generalisation: Grazzi et al. 2025, section 5.1).

    diag (0,1)      h_t = a_t * h_{t-1} + b_t, a_t = sigmoid(x_t W_a + c_a) in (0, 1)
    diag (-1,1)     the same with a_t = 2 sigmoid(.) - 1 in (-1, 1)      (Mamba-style, Grazzi 4.2)
    DeltaNet (0,1)  rnnkit.deltanet.delta_rule, beta_t = sigmoid(.): eigenvalues in (0, 1]
    DeltaNet (0,2)  beta_t = 2 sigmoid(.): eigenvalues in (-1, 1]
    DeltaProduct    rnnkit.deltanet.deltaproduct, n_h = 2 steps per token, beta in (0, 2)
    LSTM            torch.nn.LSTM (chapter 2's cell), the non-linear reference

Inputs are one-hot symbols, so every projection is a per-symbol table. Keys and queries are
L2-normalised (``deltanet.l2_normalize``). The theory beside the table: with eigenvalues in [0, 1]
no finite-precision linear RNN of this kind solves parity at arbitrary length (Grazzi et al.,
Theorem 1); one reflection per token (beta = 2) solves parity with one layer; a cyclic group of
order 3 needs a rotation, a product of two reflections, which DeltaProduct with n_h = 2 has in
one layer and a real diagonal transition (any sign) never has.
"""
from __future__ import annotations

import time

import numpy as np

from .. import deltanet
from ..scan import linear_scan
from ..training.seqclass import count_params
from ..tasks import state_tracking
from ._common import config_for, torch_leaves, torch_settings

__all__ = ["MODELS", "init_model", "apply_model", "train_one", "run", "CONFIGS"]

MODELS = ("diag (0,1)", "diag (-1,1)", "DeltaNet (0,1)", "DeltaNet (0,2)", "DeltaProduct (0,2)",
          "LSTM")

CONFIGS = {
    "small": {"tasks": ["parity"], "models": ["diag (0,1)", "diag (-1,1)", "DeltaNet (0,1)",
                                             "DeltaNet (0,2)"],
              "seeds": [0], "steps": 300, "batch": 32, "L_train": 12, "L_test": 48,
              "n_test": 256, "lrs": [1e-2], "width": 8, "n_heads": 1, "hidden": 32},
    "large": {"tasks": ["parity", "mod_sum", "flip_flop", "no_11"], "models": list(MODELS),
              "seeds": [0, 1, 2], "steps": 1000, "batch": 32, "L_train": 16, "L_test": 64,
              "n_test": 512, "lrs": [3e-3, 1e-2], "width": 8, "n_heads": 2, "hidden": 32},
}


def _linear(rng, n_in, n_out):
    bound = 1.0 / np.sqrt(n_in)
    return {"W": rng.uniform(-bound, bound, (n_in, n_out)), "b": np.zeros(n_out)}


def init_model(rng, model: str, V: int, C: int, *, width: int = 8, n_heads: int = 1,
               hidden: int = 32) -> dict:
    """NumPy parameters of ``model`` for V symbols and C classes (width = channels or dk = dv)."""
    if model not in MODELS:
        raise ValueError(f"model: expected one of {MODELS}, got {model!r}")
    if model.startswith("diag"):
        width = width * n_heads          # as many channels as the delta models' n_heads dv
    p = {"out1": _linear(rng, width * (n_heads if "Delta" in model else 1), hidden),
         "out2": _linear(rng, hidden, C)}
    if model.startswith("diag"):
        p["a"] = {"W": rng.standard_normal((V, width)), "b": np.full(width, 2.0)}
        p["b"] = {"W": rng.standard_normal((V, width)), "b": np.zeros(width)}
    elif model.startswith("Delta"):
        nh = 2 if model.startswith("DeltaProduct") else 1
        d = n_heads * width
        for name, n in (("q", d), ("k", d * nh), ("v", d * nh), ("beta", n_heads * nh)):
            p[name] = {"W": rng.standard_normal((V, n)), "b": np.zeros(n)}
    else:
        bound = 1.0 / np.sqrt(width)
        p["lstm"] = {"weight_ih_l0": rng.uniform(-bound, bound, (4 * width, V)),
                     "weight_hh_l0": rng.uniform(-bound, bound, (4 * width, width)),
                     "bias_ih_l0": np.zeros(4 * width), "bias_hh_l0": np.zeros(4 * width)}
    return p


def _lstm(params, x):
    import torch  # noqa: PLC0415
    H = params["weight_hh_l0"].shape[1]
    mod = torch.nn.LSTM(x.shape[-1], H, batch_first=True)
    return torch.func.functional_call(mod, params, (x,))[0]


def apply_model(p: dict, model: str, x, *, n_heads: int = 1):
    """Logits (B, L, C) of ``model`` on one-hot x (B, L, V), torch tensors."""
    import torch  # noqa: PLC0415

    lin = lambda t, q: t @ q["W"] + q["b"]                       # noqa: E731
    B, L, _ = x.shape
    if model.startswith("diag"):
        s = torch.sigmoid(lin(x, p["a"]))                        # (B, L, width)
        a = s if model == "diag (0,1)" else 2 * s - 1
        h = linear_scan(a, lin(x, p["b"]))                       # chapter 9's scan, (B, L, width)
    elif model.startswith("Delta"):
        nh = 2 if model.startswith("DeltaProduct") else 1
        Hh = n_heads
        heads = lambda t, n: t.reshape(B, L, Hh, n, -1).permute(0, 2, 1, 3, 4)  # noqa: E731
        q = deltanet.l2_normalize(heads(lin(x, p["q"]), 1)[:, :, :, 0])       # (B, Hh, L, dk)
        k = deltanet.l2_normalize(heads(lin(x, p["k"]), nh))                  # (B, Hh, L, nh, dk)
        v = heads(lin(x, p["v"]), nh)
        beta = torch.sigmoid(lin(x, p["beta"])).reshape(B, L, Hh, nh).permute(0, 2, 1, 3)
        if "(0,2)" in model:
            beta = 2 * beta
        if nh == 1:
            o, _ = deltanet.delta_rule(q, k[:, :, :, 0], v[:, :, :, 0], beta[..., 0],
                                       form="chunkwise", chunk_size=16)
        else:
            o, _ = deltanet.deltaproduct(q, k, v, beta, form="chunkwise", chunk_size=16)
        h = o.permute(0, 2, 1, 3).reshape(B, L, -1)              # (B, L, Hh dv)
    else:
        h = _lstm(p["lstm"], x)
    return lin(torch.relu(lin(h, p["out1"])), p["out2"])


def train_one(task: str, model: str, seed: int, *, steps: int, batch: int, L_train: int,
              L_test: int, n_test: int, lr: float, width: int, n_heads: int, hidden: int) -> dict:
    """Train one model on one task with one seed; accuracies in and beyond the training length."""
    import torch  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    a = state_tracking.automaton(task)
    V, C = a.delta.shape
    p = init_model(rng, model, V, C, width=width, n_heads=n_heads, hidden=hidden)
    pt, leaves = torch_leaves(p)
    opt = torch.optim.Adam(leaves, lr=lr)
    data_rng = np.random.default_rng(1000 + seed)
    t0 = time.process_time()
    losses = []
    for _ in range(steps):
        d = state_tracking.sample(data_rng, task, batch, L_train)
        x = torch.tensor(state_tracking.one_hot(d.x, V), dtype=torch.float32)
        logits = apply_model(pt, model, x, n_heads=n_heads)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, C), torch.tensor(d.y).reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(leaves, 1.0)
        opt.step()
        losses.append(float(loss.detach()))
    test = state_tracking.sample(np.random.default_rng(99), task, n_test, L_test)
    with torch.no_grad():
        pred = apply_model(pt, model, torch.tensor(state_tracking.one_hot(test.x, V),
                                                   dtype=torch.float32), n_heads=n_heads)
    correct = (pred.argmax(-1).numpy() == test.y)
    return {"acc_in": float(correct[:, :L_train].mean()),
            "acc_beyond": float(correct[:, L_train:].mean()),
            "acc_by_pos": correct.mean(0).tolist(),
            "final_loss": float(np.mean(losses[-20:])), "cpu_s": time.process_time() - t0,
            "n_params": count_params(p)}


def run(size: str = "small") -> dict:
    """Every task x model x seed of ``CONFIGS[size]``; the learning rate with the best mean
    in-length accuracy (the only data a practitioner would have) is chosen per task and model."""
    cfg = config_for(size, CONFIGS)
    with torch_settings(threads=1):  # deterministic, and fair on a shared 2-core machine
        keys = ("steps", "batch", "L_train", "L_test", "n_test", "width", "n_heads", "hidden")
        table = {}
        for task in cfg["tasks"]:
            table[task] = {}
            for model in cfg["models"]:
                runs = {lr: [train_one(task, model, s, lr=lr, **{k: cfg[k] for k in keys})
                             for s in cfg["seeds"]] for lr in cfg["lrs"]}
                best = max(cfg["lrs"], key=lambda lr: np.mean([r["acc_in"] for r in runs[lr]]))
                table[task][model] = {
                    "lr": best, "n_params": runs[best][0]["n_params"],
                    "acc_in": [r["acc_in"] for r in runs[best]],
                    "acc_beyond": [r["acc_beyond"] for r in runs[best]],
                    "acc_by_pos": np.mean([r["acc_by_pos"] for r in runs[best]], axis=0).tolist(),
                    "all_lrs": {str(lr): [r["acc_beyond"] for r in runs[lr]] for lr in cfg["lrs"]}}
        return {"config": dict(cfg, size=size), "figures": {"table": table}}
