"""Chapter 17: a small character language model on Genesis, LSTM against DeltaNet, mLSTM and RWKV.

Every model is embedding (V -> D) -> one block -> LayerNorm -> readout (D -> V), trained with Adam
on next-character cross-entropy over random windows (rnnkit.tasks.text), torch autograd through
the rnnkit source. The widths are chosen so that every model has about the parameter count of
the LSTM (printed in the results); the learning rate is picked per model from a small sweep by
validation loss; several seeds.

    LSTM        torch.nn.LSTM (chapter 2's cell), H = D
    DeltaNet    x + DeltaNet(LN x) W_o, then x + MLP(LN x): q, k L2-normalised, beta = sigmoid,
                n_heads heads, chunkwise form (rnnkit.deltanet.delta_rule)
    mLSTM       rnnkit.xlstm block (chunkwise mLSTM)
    RWKV-4      rnnkit.rwkv block (stable WKV)

Validation loss in nats per character (lower is better) on fixed random validation windows.
"""
from __future__ import annotations

import time

import numpy as np

from .. import deltanet, rwkv, xlstm
from ..training.seqclass import count_params
from ..tasks import text
from ._common import config_for, torch_leaves, torch_settings

__all__ = ["MODELS", "CONFIGS", "init_model", "apply_model", "train_one", "run", "matched_width"]

MODELS = ("LSTM", "DeltaNet", "mLSTM", "RWKV-4")

CONFIGS = {
    "small": {"models": list(MODELS), "seeds": [0], "steps": 40, "batch": 16, "L": 32,
              "lrs": [3e-3], "H_lstm": 32, "n_heads": 2, "n_val": 64},
    "large": {"models": list(MODELS), "seeds": [0, 1], "steps": 500, "batch": 32, "L": 64,
              "lrs": [2e-3, 5e-3, 1e-2], "H_lstm": 64, "n_heads": 2, "n_val": 256},
    # the unit test's run
    "tiny": {"models": list(MODELS), "seeds": [0, 1], "steps": 3, "batch": 2, "L": 8,
             "lrs": [1e-3, 1e-2], "H_lstm": 8, "n_heads": 2, "n_val": 4},
}


def _lin(rng, a, b):
    return {"W": rng.standard_normal((a, b)) / np.sqrt(a), "b": np.zeros(b)}


def init_model(rng, model: str, V: int, D: int, *, n_heads: int = 2) -> dict:
    """NumPy parameters of ``model`` with width D."""
    if model not in MODELS:
        raise ValueError(f"model: expected one of {MODELS}, got {model!r}")
    p = {"emb": rng.standard_normal((V, D)) * 0.1, "ln_w": np.ones(D), "ln_b": np.zeros(D),
         "out": _lin(rng, D, V)}
    if model == "LSTM":
        bound = 1.0 / np.sqrt(D)
        b = np.zeros(4 * D)
        b[D:2 * D] = 1.0
        p["lstm"] = {"weight_ih_l0": rng.uniform(-bound, bound, (4 * D, D)),
                     "weight_hh_l0": rng.uniform(-bound, bound, (4 * D, D)),
                     "bias_ih_l0": b, "bias_hh_l0": np.zeros(4 * D)}
    elif model == "DeltaNet":
        p["dn"] = {"ln1_w": np.ones(D), "ln1_b": np.zeros(D), "ln2_w": np.ones(D),
                   "ln2_b": np.zeros(D), "q": _lin(rng, D, D), "k": _lin(rng, D, D),
                   "v": _lin(rng, D, D), "beta": _lin(rng, D, n_heads), "o": _lin(rng, D, D),
                   "m1": _lin(rng, D, 3 * D), "m2": _lin(rng, 3 * D, D)}
        p["dn"]["o"]["W"] *= 0.5
        p["dn"]["m2"]["W"] *= 0.5
    elif model == "mLSTM":
        p["blk"] = xlstm.init(rng, D, n_heads=n_heads)
    else:
        p["blk"] = rwkv.init(rng, D)
    return p


def _deltanet_block(torch, p, x, n_heads):
    F = torch.nn.functional
    B, L, D = x.shape
    lin = lambda t, q: t @ q["W"] + q["b"]                        # noqa: E731
    u = F.layer_norm(x, (D,), p["ln1_w"], p["ln1_b"])
    heads = lambda t: t.reshape(B, L, n_heads, -1).permute(0, 2, 1, 3)   # noqa: E731
    q = deltanet.l2_normalize(heads(lin(u, p["q"])))
    k = deltanet.l2_normalize(heads(lin(u, p["k"])))
    v = heads(lin(u, p["v"]))
    beta = torch.sigmoid(lin(u, p["beta"])).permute(0, 2, 1)      # (B, n_heads, L)
    o, _ = deltanet.delta_rule(q, k, v, beta, form="chunkwise", chunk_size=16)
    x = x + lin(o.permute(0, 2, 1, 3).reshape(B, L, D), p["o"])
    u = F.layer_norm(x, (D,), p["ln2_w"], p["ln2_b"])
    return x + lin(F.gelu(lin(u, p["m1"])), p["m2"])


def apply_model(p: dict, model: str, ids, *, n_heads: int = 2):
    """Logits (B, L, V) for ids (B, L) (torch long tensor)."""
    import torch  # noqa: PLC0415

    x = p["emb"][ids]                                              # (B, L, D)
    D = x.shape[-1]
    if model == "LSTM":
        mod = torch.nn.LSTM(D, D, batch_first=True)
        h = torch.func.functional_call(mod, p["lstm"], (x,))[0]
    elif model == "DeltaNet":
        h = _deltanet_block(torch, p["dn"], x, n_heads)
    elif model == "mLSTM":
        h = xlstm.forward_chunkwise(p["blk"], x, chunk_size=16)[0]
    else:
        h = rwkv.forward(p["blk"], x)[0]
    h = torch.nn.functional.layer_norm(h, (D,), p["ln_w"], p["ln_b"])
    return h @ p["out"]["W"] + p["out"]["b"]


def matched_width(model: str, V: int, target: int, n_heads: int = 2) -> int:
    """The width D (a multiple of n_heads) whose parameter count is closest to ``target``."""
    rng = np.random.default_rng(0)
    Ds = range(n_heads, 257, n_heads)
    return min(Ds, key=lambda D: abs(count_params(init_model(rng, model, V, D, n_heads=n_heads))
                                      - target))


def train_one(corpus, model: str, D: int, seed: int, *, steps: int, batch: int, L: int, lr: float,
              n_heads: int, n_val: int) -> dict:
    """Train one model; validation loss (nats per character) at the end and a loss curve."""
    import torch  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    p = init_model(rng, model, corpus.V, D, n_heads=n_heads)
    pt, leaves = torch_leaves(p)
    opt = torch.optim.Adam(leaves, lr=lr)
    data_rng = np.random.default_rng(500 + seed)
    xv, yv = corpus.random_windows(np.random.default_rng(7), n_val, L, "val")
    xv, yv = torch.tensor(xv), torch.tensor(yv)
    V = corpus.V
    t0 = time.process_time()
    curve = []
    for it in range(steps):
        x, y = corpus.random_windows(data_rng, batch, L, "train")
        logits = apply_model(pt, model, torch.tensor(x), n_heads=n_heads)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), torch.tensor(y).reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(leaves, 1.0)
        opt.step()
        curve.append(float(loss.detach()))
    with torch.no_grad():
        lv = torch.nn.functional.cross_entropy(
            apply_model(pt, model, xv, n_heads=n_heads).reshape(-1, V), yv.reshape(-1))
    return {"val_loss": float(lv), "train_curve": curve, "cpu_s": time.process_time() - t0,
            "n_params": count_params(p)}


def run(size: str = "small") -> dict:
    """Every model x seed of ``CONFIGS[size]`` at matched parameter counts."""
    cfg = config_for(size, CONFIGS)
    with torch_settings(threads=1):  # deterministic, and fair on a shared 2-core machine
        corpus = text.load_corpus("genesis")
        target = count_params(init_model(np.random.default_rng(0), "LSTM", corpus.V, cfg["H_lstm"]))
        keys = ("steps", "batch", "L", "n_heads", "n_val")
        out = {}
        for model in cfg["models"]:
            D = cfg["H_lstm"] if model == "LSTM" else matched_width(model, corpus.V, target,
                                                                      cfg["n_heads"])
            runs = {lr: [train_one(corpus, model, D, s, lr=lr, **{k: cfg[k] for k in keys})
                         for s in cfg["seeds"]] for lr in cfg["lrs"]}
            best = min(cfg["lrs"], key=lambda lr: np.mean([r["val_loss"] for r in runs[lr]]))
            out[model] = {"D": D, "lr": best, "n_params": runs[best][0]["n_params"],
                          "val_loss": [r["val_loss"] for r in runs[best]],
                          "curve": np.mean([r["train_curve"] for r in runs[best]], axis=0).tolist(),
                          "cpu_s": [r["cpu_s"] for r in runs[best]],
                          "all_lrs": {str(lr): [r["val_loss"] for r in runs[lr]] for lr in cfg["lrs"]}}
        return {"config": dict(cfg, size=size, corpus="genesis", target_params=target),
                "figures": {"models": out}}
