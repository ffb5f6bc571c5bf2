"""Chapter 18's experiment: passkey retrieval at growing lengths, Titans against DeltaNet, Mamba, LSTM.

Every model is embedding (V -> D) -> one residual mixer x + mixer(LN x) -> LayerNorm -> linear
readout at the QUERY position; cross-entropy, Adam, fresh batches every step (haystack lengths
drawn uniformly in [4, L_train]), torch autograd through the rnnkit source. Mixers:

    Titans    rnnkit.titans.memory_layer: linear memory with momentum and forgetting, chunked
              mini-batch form with chunk size ``chunk`` (18.5), n_heads heads
    DeltaNet  the same projections (q, k l2-normalised, v, output) with rnnkit.deltanet.delta_rule
              (chunkwise, exact), beta = sigmoid: Titans without momentum and forgetting, per token
    Mamba     rnnkit.mamba block (selective scan), state N
    LSTM      torch.nn.LSTM with hidden size D

The width D of each model is chosen so that the parameter counts match the LSTM's (printed); the
learning rate is picked per model from ``lrs`` on seed 0 by the final training loss, then every
seed runs with it. Test accuracy on fresh draws at each length of ``test_lengths`` (lengths beyond
L_train test extrapolation). A second part trains Titans with several chunk sizes (quality) and
times one training step for each at L_train and 4 L_train (CPU time, min of repeats: a
shared-machine measurement); two seeds there.

``run(size)`` returns config and figures.
"""
from __future__ import annotations

import time

import numpy as np

from .. import deltanet, mamba, titans
from ..training.seqclass import count_params
from ..tasks import passkey
from ._common import config_for, torch_leaves, torch_settings

__all__ = ["MODELS", "CONFIGS", "init_model", "apply_model", "train_one", "matched_width", "run"]

MODELS = ("Titans", "DeltaNet", "Mamba", "LSTM")

CONFIGS = {
    "small": dict(models=list(MODELS), H_lstm=16, n_heads=2, N=4, L_train=24, steps=60, batch=32,
                  lrs=[1e-2], seeds=[0], test_lengths=[8, 24, 96], n_test=256, chunk=8,
                  chunk_sizes=[], task=dict(n_values=8, n_filler=4)),
    "large": dict(models=list(MODELS), H_lstm=24, n_heads=2, N=4, L_train=48, steps=400, batch=32,
                  lrs=[3e-3, 1e-2], seeds=[0, 1, 2], test_lengths=[12, 48, 192, 768], n_test=512,
                  chunk=8, chunk_sizes=[1, 4, 16, 48], task=dict(n_values=8, n_filler=4)),
}


def _lin(rng, a, b):
    return rng.standard_normal((a, b)) / np.sqrt(a)


def init_model(rng, model: str, V: int, D: int, *, n_heads: int = 2, N: int = 4) -> dict:
    """NumPy parameters of ``model`` with width D."""
    if model not in MODELS:
        raise ValueError(f"model: expected one of {MODELS}, got {model!r}")
    p = {"emb": rng.standard_normal((V, D)) * 0.5, "ln_w": np.ones(D), "ln_b": np.zeros(D),
         "out": _lin(rng, D, V), "out_b": np.zeros(V)}
    if model == "Titans":
        p["mix"] = titans.init_layer(rng, D, n_heads=n_heads, kind="memory")
    elif model == "DeltaNet":
        m = titans.init_layer(rng, D, n_heads=n_heads, kind="memory")
        p["mix"] = {k: m[k] for k in ("W_q", "W_k", "W_v", "W_o")} | {
            "w_beta": m["w_theta"], "b_beta": m["b_theta"]}
    elif model == "Mamba":
        p["mix"] = mamba.init(rng, D, N=N)
    else:
        bound = 1.0 / np.sqrt(D)
        b = np.zeros(4 * D)
        b[D:2 * D] = 1.0
        p["mix"] = {"weight_ih_l0": rng.uniform(-bound, bound, (4 * D, D)),
                    "weight_hh_l0": rng.uniform(-bound, bound, (4 * D, D)),
                    "bias_ih_l0": b, "bias_hh_l0": np.zeros(4 * D)}
    return p


def _delta_mixer(torch, p, u, n_heads):
    B, L, D = u.shape
    heads = lambda t: t.reshape(B, L, n_heads, -1).permute(0, 2, 1, 3)   # noqa: E731
    q = deltanet.l2_normalize(heads(u @ p["W_q"]))
    k = deltanet.l2_normalize(heads(u @ p["W_k"]))
    v = heads(u @ p["W_v"])
    beta = torch.sigmoid(u @ p["w_beta"] + p["b_beta"]).permute(0, 2, 1)
    o, _ = deltanet.delta_rule(q, k, v, beta, form="chunkwise", chunk_size=16)
    return o.permute(0, 2, 1, 3).reshape(B, L, D) @ p["W_o"]


def apply_model(p: dict, model: str, ids, *, n_heads: int = 2, chunk: int = 8):
    """Logits (B, L, V) for ids (B, L) (torch long tensor)."""
    import torch  # noqa: PLC0415

    F = torch.nn.functional
    x = p["emb"][ids]                                                  # (B, L, D)
    D = x.shape[-1]
    u = F.layer_norm(x, (D,))
    if model == "Titans":
        h = titans.memory_layer(p["mix"], u, n_heads=n_heads, form="chunked", chunk_size=chunk)[0]
    elif model == "DeltaNet":
        h = _delta_mixer(torch, p["mix"], u, n_heads)
    elif model == "Mamba":
        h = mamba.forward_scan(p["mix"], u)[0]
    else:
        h = torch.func.functional_call(torch.nn.LSTM(D, D, batch_first=True), p["mix"], (u,))[0]
    x = F.layer_norm(x + h, (D,), p["ln_w"], p["ln_b"])
    return x @ p["out"] + p["out_b"]


def matched_width(model: str, V: int, target: int, n_heads: int = 2, N: int = 4) -> int:
    """The width D (a multiple of n_heads) whose parameter count is closest to ``target``."""
    rng = np.random.default_rng(0)
    return min(range(n_heads, 129, n_heads), key=lambda D: abs(
        count_params(init_model(rng, model, V, D, n_heads=n_heads, N=N)) - target))


def train_one(model: str, D: int, seed: int, *, lr: float, cfg: dict, chunk: int | None = None) -> dict:
    """Train one model on passkey retrieval; accuracy at each test length, loss curve, CPU time."""
    import torch  # noqa: PLC0415

    torch.manual_seed(seed)
    task = cfg["task"]
    V = passkey.vocab_size(task["n_values"], task["n_filler"])
    chunk = cfg["chunk"] if chunk is None else chunk
    p = init_model(np.random.default_rng(seed), model, V, D, n_heads=cfg["n_heads"], N=cfg["N"])
    pt, leaves = torch_leaves(p)
    opt = torch.optim.Adam(leaves, lr=lr)
    data_rng = np.random.default_rng(100 + seed)
    losses, t0 = [], time.process_time()
    for _ in range(cfg["steps"]):
        L = int(data_rng.integers(4, cfg["L_train"] + 1))
        x, y = passkey.passkey(data_rng, cfg["batch"], L, **task)
        logits = apply_model(pt, model, torch.as_tensor(x), n_heads=cfg["n_heads"], chunk=chunk)[:, -1]
        loss = torch.nn.functional.cross_entropy(logits, torch.as_tensor(y[:, 0]))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(leaves, 1.0)
        opt.step()
        losses.append(float(loss.detach()))
    cpu = time.process_time() - t0
    acc = {}
    with torch.no_grad():
        for L in cfg["test_lengths"]:
            x, y = passkey.passkey(np.random.default_rng(10_000 + seed), cfg["n_test"], L, **task)
            pred = apply_model(pt, model, torch.as_tensor(x), n_heads=cfg["n_heads"],
                               chunk=chunk)[:, -1].argmax(-1).numpy()
            acc[str(L)] = float((pred == y[:, 0]).mean())
    return {"model": model, "seed": seed, "lr": lr, "D": D, "chunk": chunk,
            "n_params": count_params(p), "acc": acc, "final_loss": float(np.mean(losses[-20:])),
            "losses": losses[::max(1, cfg["steps"] // 50)], "cpu_s": cpu}


def _step_time(D: int, cfg: dict, chunk: int, L: int, repeats: int = 3) -> float:
    """CPU seconds of one forward + backward of the Titans model at haystack length L (min)."""
    import torch  # noqa: PLC0415

    task = cfg["task"]
    V = passkey.vocab_size(task["n_values"], task["n_filler"])
    pt, _ = torch_leaves(init_model(np.random.default_rng(0), "Titans", V, D, n_heads=cfg["n_heads"]))
    x, _ = passkey.passkey(np.random.default_rng(0), cfg["batch"], L, **task)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        apply_model(pt, "Titans", torch.as_tensor(x), n_heads=cfg["n_heads"], chunk=chunk).sum().backward()
        best = min(best, time.process_time() - t0)
    return best


def run(size: str = "small") -> dict:
    """Every model x seed of ``CONFIGS[size]`` at matched parameter counts, then Titans' chunk sizes."""
    cfg = config_for(size, CONFIGS)
    with torch_settings(threads=1):  # deterministic, and fair on a shared 2-core machine
        task = cfg["task"]
        V = passkey.vocab_size(task["n_values"], task["n_filler"])
        target = count_params(init_model(np.random.default_rng(0), "LSTM", V, cfg["H_lstm"]))
        models = {}
        for model in cfg["models"]:
            D = cfg["H_lstm"] if model == "LSTM" else matched_width(model, V, target, cfg["n_heads"], cfg["N"])
            tries = {lr: train_one(model, D, cfg["seeds"][0], lr=lr, cfg=cfg) for lr in cfg["lrs"]}
            lr = min(tries, key=lambda a: tries[a]["final_loss"])
            runs = [tries[lr]] + [train_one(model, D, s, lr=lr, cfg=cfg) for s in cfg["seeds"][1:]]
            models[model] = {"D": D, "lr": lr, "n_params": runs[0]["n_params"], "runs": runs,
                             "lr_sweep": {str(a): tries[a]["final_loss"] for a in cfg["lrs"]}}
        chunks = {}
        if cfg["chunk_sizes"]:
            D, lr = models["Titans"]["D"], models["Titans"]["lr"]
            for C in cfg["chunk_sizes"]:
                runs = [train_one("Titans", D, s, lr=lr, cfg=cfg, chunk=C) for s in cfg["seeds"][:2]]
                chunks[str(C)] = {"runs": runs, "step_cpu_s": {
                    str(L): _step_time(D, cfg, C, L) for L in (cfg["L_train"], 4 * cfg["L_train"])}}
        return {"config": dict(cfg, size=size, target_params=target, vocab=V,
                               chance=passkey.chance_accuracy(task["n_values"])),
                "figures": {"models": models, "chunks": chunks}}
