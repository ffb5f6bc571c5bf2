"""Chapter 16's experiment: the recall gap on multi-query associative recall (MQAR).

Token models that differ only in the sequence-mixing operator of their blocks, so that the
comparison is about the operator and its state (Zoology's Figure 2, shrunk to a CPU):

    attention   causal softmax attention with rotated q, k (``transformer.softmax_attention``);
                the state is the KV cache, 2 L D numbers per layer, growing with L
    linear      linear attention (``linear_attention``), state H dk dv
    retnet      retention with RetNet's decays gamma_h = 1 - 2^(-5-h) (``retnet.retention``)
    gla         GLA with a low-rank data-dependent log-decay g = logsigmoid(u W_1 W_2 + b) / 16
                (``linear_attention.gla``, chunkwise form)
    deltanet    the delta rule with L2-normalised q, k and beta = sigmoid(u W_beta)
                (``deltanet.delta_rule``, chunkwise form), for comparison with chapter 17
    mamba       chapter 14's Mamba block (``mamba.init(D, N=16, expand=1)``) in place of the whole
                block below (it has its own projections, convolution and gate); its state E N per
                layer equals the others' D^2 / H, its parameter count is within a few percent

Every fixed-state operator gets the same positive feature map phi = elu + 1 on q and k
(Katharopoulos et al.), and no rotation: with the identity map (RetNet's and GLA's own choice, with
RetNet's rotation) every one of them, plain linear attention included, stayed on the plateau of
answering with one of the P values of the context (accuracy about 1/P) at this budget, in probes
and in the first recorded run (commit b1f07ee). DeltaNet L2-normalises phi(q), phi(k) as its paper
does its features. The short convolution gives every model the position information it needs.

Every block is the same around the operator: u = LayerNorm(h); u <- a short causal depthwise
convolution of u (kernel 3, as Zoology and BASED give every model, so any of them can look one
token back); q, k, v = u W_Q, u W_K, u W_V in H heads; o = operator(q, k, v); GroupNorm over each
head; y = (swish(u W_G) * o) W_O; h <- h + y. Embedding, n_layers blocks, a final LayerNorm and a
linear readout at the query positions. The operators add at most a few percent of parameters
(GLA's low-rank gate, DeltaNet's beta), printed by ``n_params``. Cross-entropy at the queries,
Adam, fresh batches every step; accuracy on a fresh test batch. The learning rate is picked per
model from ``lrs`` on seed 0 at ``lr_pairs`` pairs (by final training loss) and used for every
number of pairs and seed. Every key is queried once and sequences have the minimal length
L = 3 n_pairs (pairs, then queries). Trained by torch autograd through the rnnkit source (float32).

``run(size)`` returns config and figures (accuracy per model, number of pairs and seed;
parameter counts; state sizes).
"""
from __future__ import annotations

import math
import time

import numpy as np

from .. import deltanet, linear_attention, mamba, retnet, transformer
from ..tasks import mqar as task_mqar
from ._common import config_for, torch_leaves

__all__ = ["run", "CONFIGS", "KINDS", "build", "train", "n_params", "state_size"]

KINDS = ("attention", "linear", "retnet", "gla", "deltanet", "mamba")
MAMBA_N = 16
GATE_RANK = 4

CONFIGS = {
    "small": dict(D=32, n_heads=2, n_layers=2, steps=150, batch=32, lrs=(1e-2,), lr_pairs=2,
                  seeds=(0,), pairs=(2, 6), task=dict(n_keys=16, n_values=16), n_test=256),
    "large": dict(D=32, n_heads=2, n_layers=2, steps=400, batch=32, lrs=(3e-3, 1e-2), lr_pairs=8,
                  seeds=(0, 1), pairs=(4, 8, 16, 24), task=dict(n_keys=32, n_values=32),
                  n_test=1000),
}


def _lin(rng, *shape):
    return rng.uniform(-1, 1, shape) / math.sqrt(shape[0])


def build(kind: str, rng, V: int, D: int, n_heads: int, n_layers: int) -> dict:
    """Model parameters (NumPy): emb (V, D), blocks (dicts), out (D, V), out_b (V,)."""
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    dh = D // n_heads
    blocks = []
    for _ in range(n_layers):
        if kind == "mamba":
            blocks.append(mamba.init(rng, D, N=MAMBA_N, expand=1))
            continue
        b = {"conv": np.concatenate([np.zeros((2, D)), np.ones((1, D))]) + 0.1 * rng.standard_normal((3, D)),
             "W_Q": _lin(rng, D, n_heads, dh), "W_K": _lin(rng, D, n_heads, dh),
             "W_V": _lin(rng, D, n_heads, dh), "W_G": _lin(rng, D, n_heads, dh),
             "W_O": _lin(rng, n_heads * dh, D).reshape(n_heads, dh, D)}
        if kind == "gla":
            b |= {"W_g1": _lin(rng, D, GATE_RANK), "W_g2": _lin(rng, GATE_RANK, n_heads, dh),
                  "b_g": np.full((n_heads, dh), 3.0)}
        if kind == "deltanet":
            b |= {"W_beta": _lin(rng, D, n_heads)}
        blocks.append(b)
    return {"emb": rng.standard_normal((V, D)) * 0.5, "blocks": blocks, "out": _lin(rng, D, V),
            "out_b": np.zeros(V)}


def n_params(tree) -> int:
    if isinstance(tree, dict):
        return sum(n_params(v) for v in tree.values())
    if isinstance(tree, list):
        return sum(n_params(v) for v in tree)
    return int(np.prod(tree.shape))


def state_size(kind: str, D: int, n_heads: int, n_layers: int, L: int) -> int:
    """Numbers in the recurrent state after L tokens, over all layers (the conv windows left out):
    the KV cache 2 L D for attention, H dk dv = D^2 / H otherwise (Mamba: E N with E = D)."""
    if kind == "mamba":
        return n_layers * D * MAMBA_N
    return n_layers * (2 * L * D if kind == "attention" else D * D // n_heads)


def _heads(torch, u, W):
    return torch.einsum("bld,dhe->bhle", u, W)                          # (B, H, L, dh)


def _mix(torch, kind, blk, u):
    """The operator of one block: u (B, L, D) -> o (B, H, L, dh)."""
    F = torch.nn.functional
    q, k, v = (_heads(torch, u, blk[n]) for n in ("W_Q", "W_K", "W_V"))
    dh, L = q.shape[-1], q.shape[2]
    pos = torch.arange(L, dtype=u.dtype)
    if kind == "attention":
        q, k = retnet.rotate(q, pos) / math.sqrt(dh), retnet.rotate(k, pos)
        return transformer.softmax_attention(q, k, v, form="parallel")[0]
    phi_q, phi_k = linear_attention.feature(q, "elu1"), linear_attention.feature(k, "elu1")
    if kind == "linear":
        return linear_attention.linear_attention(phi_q, phi_k / math.sqrt(dh), v, form="parallel")[0]
    if kind == "retnet":
        gamma = retnet.gammas(torch, q.shape[1], q)
        return retnet.retention(phi_q, phi_k / math.sqrt(dh), v, gamma, form="parallel")[0]
    if kind == "gla":
        a = torch.einsum("blr,rhe->bhle", u @ blk["W_g1"], blk["W_g2"]) + blk["b_g"][:, None, :]
        g = F.logsigmoid(a) / 16.0
        return linear_attention.gla(phi_q, phi_k / math.sqrt(dh), v, g, form="chunkwise",
                                    chunk_size=16, sub_chunk=8)[0]
    beta = torch.sigmoid(u @ blk["W_beta"]).permute(0, 2, 1)           # (B, H, L)
    q, k = deltanet.l2_normalize(phi_q), deltanet.l2_normalize(phi_k)
    return deltanet.delta_rule(q, k, v, beta, form="chunkwise", chunk_size=16)[0]


def _apply(torch, kind, model, x_ids):
    F = torch.nn.functional
    h = model["emb"][x_ids]                                             # (B, L, D)
    D = h.shape[-1]
    for blk in model["blocks"]:
        u = F.layer_norm(h, (D,))
        if kind == "mamba":
            h = h + mamba.forward_scan(blk, u)[0]
            continue
        up = F.pad(u, (0, 0, 2, 0))                                     # causal conv, kernel 3
        u = blk["conv"][0] * up[:, :-2] + blk["conv"][1] * up[:, 1:-1] + blk["conv"][2] * up[:, 2:]
        o = _mix(torch, kind, blk, u)
        o = F.layer_norm(o, (o.shape[-1],))                             # GroupNorm per head
        z = _heads(torch, u, blk["W_G"])
        h = h + torch.einsum("bhle,hed->bld", F.silu(z) * o, blk["W_O"])
    return F.layer_norm(h, (D,)) @ model["out"] + model["out_b"]        # (B, L, V)


def train(kind: str, *, n_pairs: int, D: int, n_heads: int, n_layers: int, steps: int, batch: int,
          lr: float, seed: int, task: dict, L: int | None = None, n_test: int = 500) -> dict:
    """Train one model on MQAR with n_pairs pairs (every key queried); accuracy on fresh draws."""
    import torch  # noqa: PLC0415

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    V = task_mqar.vocab_size(task["n_keys"], task["n_values"])
    model_np = build(kind, rng, V, D, n_heads, n_layers)
    model, leaves = torch_leaves(model_np)
    opt = torch.optim.Adam(leaves, lr=lr)
    data_rng = np.random.default_rng(1000 + seed)
    cfg = dict(task, n_pairs=n_pairs, L=L)
    losses, t0 = [], time.process_time()
    for _ in range(steps):
        x, y = task_mqar.mqar(data_rng, batch, **cfg)
        logits = _apply(torch, kind, model, torch.as_tensor(x))[:, -y.shape[1]:]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), torch.as_tensor(y).reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(leaves, 1.0)
        opt.step()
        losses.append(float(loss.detach()))
    with torch.no_grad():
        x, y = task_mqar.mqar(np.random.default_rng(10_000 + seed), n_test, **cfg)
        pred = _apply(torch, kind, model, torch.as_tensor(x))[:, -y.shape[1]:].argmax(-1).numpy()
    return {"kind": kind, "n_pairs": n_pairs, "seed": seed, "lr": lr, "n_params": n_params(model_np),
            "test_acc": float((pred == y).mean()), "final_loss": float(np.mean(losses[-20:])),
            "losses": losses[::max(1, steps // 50)], "cpu_s": time.process_time() - t0}


def run(size: str = "small") -> dict:
    """Every model at every number of pairs; lr per model picked on seed 0 at lr_pairs."""
    cfg = config_for(size, CONFIGS)
    common = {k: cfg[k] for k in ("D", "n_heads", "n_layers", "steps", "batch", "n_test", "task")}
    figures = {"runs": [], "lr": {}, "n_params": {}, "state_size": {}}
    for kind in KINDS:
        tries = {lr: train(kind, n_pairs=cfg["lr_pairs"], lr=lr, seed=cfg["seeds"][0], **common)
                 for lr in cfg["lrs"]}
        lr = min(tries, key=lambda k: tries[k]["final_loss"])
        figures["lr"][kind] = lr
        figures["n_params"][kind] = tries[lr]["n_params"]
        figures["state_size"][kind] = {str(P): state_size(kind, cfg["D"], cfg["n_heads"],
                                                          cfg["n_layers"], 3 * P)
                                       for P in cfg["pairs"]}
        for P in cfg["pairs"]:
            for seed in cfg["seeds"]:
                reuse = P == cfg["lr_pairs"] and seed == cfg["seeds"][0]
                r = tries[lr] if reuse else train(kind, n_pairs=P, lr=lr, seed=seed, **common)
                figures["runs"].append(r)
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}
    config |= {"size": size, "kinds": list(KINDS),
               "chance": task_mqar.chance_accuracy(cfg["task"]["n_values"])}
    return {"config": config, "figures": figures}
