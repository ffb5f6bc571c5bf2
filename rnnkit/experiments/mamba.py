"""Chapter 14's experiment: selection versus time invariance on selective copying and induction heads.

Two token models that differ only in their state space layer (the comparison of Mamba's Table 1,
shrunk to a CPU):

    Mamba    the Mamba block (``rnnkit.mamba``): delta, B, C read from the input (selection, S6)
    Mamba-2  (chapter 15, ``train`` only) the Mamba-2 block with the chunked SSD form
    S4D      the same block with the selective scan replaced by an S4D-Lin layer (``rnnkit.s4d``,
             time-invariant: delta, B, C are parameters; convolution view), state size chosen so
             that the parameter counts match to within 1% (printed)

Both: embedding (vocab -> W), n_layers pre-norm residual blocks x <- x + block(LayerNorm(x)), a final
LayerNorm and a linear readout at the target positions; cross-entropy, Adam, fresh batches every
step (no fixed training set, so test accuracy is measured on new draws). Trained by torch autograd
through the rnnkit source. The learning rate is picked per model from ``LRS`` on seed 0 (by final
training loss), then every seed is run with it.

``run(size)`` returns config and figures (accuracy per task, model and seed; parameter counts).
"""
from __future__ import annotations

import math
import time

import numpy as np

from .. import mamba, mamba2, s4d
from ..tasks import selective_copy
from ._common import config_for, torch_leaves

__all__ = ["run", "CONFIGS", "build", "train", "lti_block_init", "lti_block"]

CONFIGS = {
    "small": dict(W=16, N=8, n_layers=2, steps=120, batch=32, lrs=(1e-2,), seeds=(0,),
                  copy=dict(L=16, n_memorize=4, n_tokens=6), induction=dict(L=16, n_tokens=6),
                  n_test=500, extrapolate=(1, 4)),
    "large": dict(W=16, N=8, n_layers=2, steps=800, batch=32, lrs=(3e-3, 1e-2), seeds=(0, 1, 2),
                  copy=dict(L=32, n_memorize=4, n_tokens=8), induction=dict(L=32, n_tokens=8),
                  n_test=1000, extrapolate=(1, 2, 4, 8)),
}


# --------------------------------------------------------------------------- the LTI baseline
def lti_block_init(rng, W: int, N: int, *, expand: int = 2, d_conv: int = 4) -> dict:
    """The Mamba block's projections and convolution around an S4D-Lin layer (real parameters)."""
    base = mamba.init(rng, W, N=2, expand=expand, d_conv=d_conv)
    p = {k: base[k] for k in ("W_in", "conv_w", "conv_b", "W_out")}
    ssm = s4d.split_complex(s4d.init(rng, expand * W, N, init="lin"))
    ssm["D"] = np.ones(expand * W)
    return p | {"ssm_" + k: v for k, v in ssm.items()}


def lti_block(params: dict, x):
    """(14.7) with a time-invariant SSM: x (B, L, W) -> y (B, L, W)."""
    E = params["conv_w"].shape[1]
    xz = x @ params["W_in"]
    xi, z = xz[..., :E], xz[..., E:]
    past = xi.new_zeros((xi.shape[0], params["conv_w"].shape[0] - 1, E))   # (B, K-1, E) (torch)
    xc = mamba.silu(mamba.causal_conv(params, xi, past)[0])
    ssm = s4d.merge_complex({k[4:]: v for k, v in params.items() if k.startswith("ssm_")})
    y = s4d.forward_conv(ssm, xc) * mamba.silu(z)
    return y @ params["W_out"]


# --------------------------------------------------------------------------- model and training
def _lin(rng, n_in, n_out):
    return rng.uniform(-1, 1, (n_in, n_out)) / math.sqrt(n_in)


def build(kind: str, rng, V: int, W: int, N: int, n_layers: int) -> dict:
    """Model parameters (NumPy): emb (V, W), blocks, ln_f, out (W, V)."""
    if kind == "mamba":
        blocks = [mamba.init(rng, W, N=N) for _ in range(n_layers)]
    elif kind == "s4d":
        blocks = [lti_block_init(rng, W, N) for _ in range(n_layers)]
    elif kind == "mamba2":   # chapter 15: heads of 4 channels, one group, state 2N (Mamba-2's larger N)
        blocks = [mamba2.init(rng, W, N=2 * N, head_dim=4) for _ in range(n_layers)]
    else:
        raise ValueError(f"kind: expected 'mamba', 's4d' or 'mamba2', got {kind!r}")
    return {"emb": rng.standard_normal((V, W)) * 0.5, "blocks": blocks,
            "out": _lin(rng, W, V), "out_b": np.zeros(V)}


def _count(tree) -> int:
    if isinstance(tree, dict):
        return sum(_count(v) for v in tree.values())
    if isinstance(tree, list):
        return sum(_count(v) for v in tree)
    return int(np.prod(tree.shape))


def _apply(torch, kind, model, x_ids):
    F = torch.nn.functional
    h = model["emb"][x_ids]                                         # (B, L, W)
    W = h.shape[-1]
    for blk in model["blocks"]:
        u = F.layer_norm(h, (W,))
        if kind == "mamba":
            h = h + mamba.forward_scan(blk, u)[0]         # fastest under torch autograd on a CPU
        elif kind == "mamba2":
            h = h + mamba2.forward_chunked(blk, u, chunk_size=8)[0]
        else:
            h = h + lti_block(blk, u)
    return F.layer_norm(h, (W,)) @ model["out"] + model["out_b"]   # (B, L, V)


def _batch(task: str, rng, B: int, cfg: dict):
    if task == "copy":
        x, y = selective_copy.selective_copying(rng, B, **cfg)
        return x, y, y.shape[1]                                     # targets at the last M steps
    x, y = selective_copy.induction_heads(rng, B, **cfg)
    return x, y[:, None], 1


def train(kind: str, task: str, *, W: int, N: int, n_layers: int, steps: int, batch: int,
          lr: float, seed: int, task_cfg: dict, n_test: int = 500, extrapolate=(1,)) -> dict:
    """Train one model on one task; returns accuracy on fresh draws, loss curve, parameter count.

    ``extrapolate``: the test accuracy is also measured at these multiples of the training length
    (the context L of the task; both models run at any length). ``test_acc`` is at 1x."""
    import torch  # noqa: PLC0415

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    V = selective_copy.vocab_size(task_cfg["n_tokens"])
    N_kind = N if kind == "mamba" else _s4d_state(W, N, n_layers, V)
    model_np = build(kind, rng, V, W, N_kind, n_layers)
    model, leaves = torch_leaves(model_np)
    opt = torch.optim.Adam(leaves, lr=lr)
    data_rng = np.random.default_rng(1000 + seed)
    losses, t0 = [], time.process_time()
    for _ in range(steps):
        x, y, M = _batch(task, data_rng, batch, task_cfg)
        logits = _apply(torch, kind, model, torch.as_tensor(x))[:, -M:]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), torch.as_tensor(y).reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    acc = {}
    with torch.no_grad():
        for m in extrapolate:
            cfg_m = {**task_cfg, "L": m * task_cfg["L"]}
            x, y, M = _batch(task, np.random.default_rng(10_000 + seed), n_test, cfg_m)
            pred = _apply(torch, kind, model, torch.as_tensor(x))[:, -M:].argmax(-1).numpy()
            acc[str(m)] = float((pred == y).mean())
    return {"kind": kind, "task": task, "seed": seed, "lr": lr, "N": N_kind,
            "n_params": _count(model_np), "test_acc": acc.get("1"), "test_acc_by_length": acc,
            "final_loss": float(np.mean(losses[-20:])), "losses": losses[::max(1, steps // 50)],
            "cpu_s": time.process_time() - t0}


def _s4d_state(W: int, N: int, n_layers: int, V: int) -> int:
    """The even S4D state size whose model has the parameter count closest to Mamba's."""
    target = _count(build("mamba", np.random.default_rng(0), V, W, N, n_layers))
    best = min(range(2, 4 * N + 2, 2), key=lambda n: abs(
        _count(build("s4d", np.random.default_rng(0), V, W, n, n_layers)) - target))
    return best


def run(size: str = "small") -> dict:
    """Every model on both tasks, lr picked per model and task on seed 0, then all seeds."""
    cfg = config_for(size, CONFIGS)
    common = {k: cfg[k] for k in ("W", "N", "n_layers", "steps", "batch", "n_test", "extrapolate")}
    figures = {"runs": [], "lr": {}}
    for task in ("copy", "induction"):
        for kind in ("mamba", "s4d"):
            tries = {lr: train(kind, task, lr=lr, seed=cfg["seeds"][0], task_cfg=cfg[task], **common)
                     for lr in cfg["lrs"]}
            lr = min(tries, key=lambda k: tries[k]["final_loss"])
            figures["lr"][f"{task}/{kind}"] = lr
            for seed in cfg["seeds"]:
                r = tries[lr] if seed == cfg["seeds"][0] else train(
                    kind, task, lr=lr, seed=seed, task_cfg=cfg[task], **common)
                figures["runs"].append(r)
    return {"config": {"size": size, "chance": {t: selective_copy.chance_accuracy(cfg[t]["n_tokens"])
                                                for t in ("copy", "induction")},
                       **{k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}},
            "figures": figures}
