"""Chapter 13's experiments: S4 trained end to end, and sampled from its recurrent view.

1. **Permuted sequential digits** (``rnnkit.tasks.sequential_digits``, one fixed shuffle of the
   pixel positions): four sequence layers in the same deep block (``rnnkit.training.seqclass``: encoder,
   2 pre-norm residual blocks layer -> GELU -> GLU, mean pooling, readout, AdamW):

       S4       DPLR HiPPO-LegS init, the C~ form (``s4.init(ctilde=True)``): the kernel is one
                Cauchy evaluation per step (``s4.kernel``), N = 64
       S4D-Inv  diagonal (``s4d``), N chosen so that the parameter count matches S4's
       LRU      ``lru.forward_scan``, N = 64, r_min = 0.9
       LSTM     torch's kernel through the same loop

   Complex parameters travel as real pairs (``s4d.split_complex``). The state space layers get
   their own learning rate ``LAYER_LR`` (as S4 and the LRU do); the global learning rate is
   picked per model from ``lrs`` by the final training loss (mean of the last 20 steps) of seed 0
   on a short budget (``sweep_steps``; the small size uses a fixed lr), then every seed is run.

2. **Generation** (``lm_*``): a character model on the shipped corpus (embedding, n_layers
   pre-norm residual blocks h <- h + GELU(S4(LN(h))) W + b, LN, readout), trained on windows of
   length L through the convolutional view (C~ form). For sampling, C = C~ (I - A_bar^L)^{-1} is
   recovered once per channel (``s4.recover_c``) and the model runs one character at a time with
   an (n_layers, H, N) state (``lm_step``). The same held-out window is scored by both views
   (log-likelihood, in nats), and generating a character by the recurrence is timed against
   recomputing the convolution over the whole prefix (CPU time, ``time.process_time``).

``run(size)`` returns {"config", "figures"}.
"""
from __future__ import annotations

import math
import time
from functools import partial

import numpy as np

from .. import lru, s4, s4d
from ..training import seqclass
from ..core.backend import xp_of
from ..tasks.text import load_corpus
from ._common import config_for, torch_leaves

__all__ = ["run", "CONFIGS", "LAYER_LR", "MODELS", "model_fns", "digits", "lm_init", "lm_logits_conv",
           "lm_recurrent", "lm_step", "lm_logits_recurrent", "lm_train", "lm_sample",
           "generation"]

LAYER_LR = 2e-3      # the state space layers' own learning rate (S4, S4D, LRU)
MODELS = ("S4", "S4D-Inv", "LRU", "LSTM")

CONFIGS = {
    "small": dict(side=8, permute=True, steps=120, batch=32, H=32, N=64, lrs=(5e-3,),
                  sweep_steps=0, seeds=(0, 1),
                  lm=dict(H=32, N=16, n_layers=2, L=64, steps=200, batch=16, lr=5e-3,
                          n_generate=200, seed=0)),
    "large": dict(side=16, permute=True, steps=500, batch=50, H=32, N=64, lrs=(2e-3, 5e-3),
                  sweep_steps=120, seeds=(0,),
                  lm=dict(H=64, N=32, n_layers=2, L=128, steps=400, batch=16, lr=5e-3,
                          n_generate=400, seed=0)),
}


# --------------------------------------------------------------------------- digits
def _s4_layer(p, u):                     # u (B, L, H) -> y (B, L, H): kernel from C~
    return s4.forward_conv(s4d.merge_complex(p), u)


def _s4d_layer(p, u):
    return s4d.forward_conv(s4d.merge_complex(p), u)


def _s4d_state(H: int, N_s4: int) -> int:
    """The even S4D state size whose layer has the parameter count closest to S4's."""
    target = seqclass.count_params(s4d.split_complex(s4.init(np.random.default_rng(0), H, N_s4)))
    return min(range(2, 4 * N_s4 + 2, 2), key=lambda n: abs(seqclass.count_params(
        s4d.split_complex(s4d.init(np.random.default_rng(0), H, n, init="inv"))) - target))


def model_fns(H: int, N: int) -> dict:
    """name -> (layer_fn, init_fn, layer_lr, state size) for ``seqclass.train_classifier``."""
    N_d = _s4d_state(H, N)
    return {
        "S4": (_s4_layer, lambda r, H: s4d.split_complex(s4.init(r, H, N, ctilde=True)),
               LAYER_LR, N),
        "S4D-Inv": (_s4d_layer, lambda r, H: s4d.split_complex(s4d.init(r, H, N_d, init="inv")),
                    LAYER_LR, N_d),
        "LRU": (lru.forward_scan, partial(lru.init, N=N, r_min=0.9), LAYER_LR, N),
        "LSTM": (seqclass.lstm_layer, seqclass.lstm_init, None, H),
    }


def _train_one(name, fns, data, cfg, lr, seed, steps):
    import torch  # noqa: PLC0415

    torch.manual_seed(seed)
    layer_fn, init_fn, layer_lr, N = fns[name]
    t0 = time.process_time()
    r = seqclass.train_classifier(layer_fn, init_fn, data, H=cfg["H"], n_layers=2, steps=steps,
                                  lr=lr, layer_lr=layer_lr, batch=cfg["batch"], seed=seed,
                                  eval_every=max(1, steps // 10))
    return {"model": name, "seed": seed, "lr": lr, "layer_lr": layer_lr, "N": N,
            "n_params": r.n_params, "train_acc": r.train_acc, "test_acc": r.test_acc,
            "final_loss": float(np.mean(r.history["loss"][-20:])),
            "loss": r.history["loss"][::max(1, steps // 100)],
            "eval_step": r.history["eval_step"], "test_acc_curve": r.history["test_acc"],
            "cpu_s": time.process_time() - t0}


def digits(cfg: dict, models=MODELS) -> dict:
    """Every model: lr picked on seed 0 (if more than one), then every seed. Returns figures."""
    data = seqclass.digits_data(side=cfg["side"], permute=cfg["permute"])
    fns = model_fns(cfg["H"], cfg["N"])
    out = {"runs": [], "lr": {}, "sweep": []}
    for name in models:
        lrs = cfg["lrs"]
        if len(lrs) > 1:
            tries = [_train_one(name, fns, data, cfg, lr, cfg["seeds"][0], cfg["sweep_steps"])
                     for lr in lrs]
            out["sweep"] += [{k: t[k] for k in ("model", "lr", "final_loss", "test_acc")}
                             for t in tries]
            lr = min(tries, key=lambda t: t["final_loss"])["lr"]
        else:
            lr = lrs[0]
        out["lr"][name] = lr
        for seed in cfg["seeds"]:
            out["runs"].append(_train_one(name, fns, data, cfg, lr, seed, cfg["steps"]))
    return out


# --------------------------------------------------------------------------- generation
def _layer_norm(xp, h, eps=1e-5):
    mu = xp.mean(h, axis=-1, keepdims=True)
    var = xp.mean((h - mu) ** 2, axis=-1, keepdims=True)
    return (h - mu) / xp.sqrt(var + eps)


def _gelu(xp, x):                        # tanh form: the same function on NumPy and torch
    return 0.5 * x * (1 + xp.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def lm_init(rng, V: int, H: int, N: int, n_layers: int) -> dict:
    """Character model parameters (NumPy, real): emb (V, H), blocks [S4 (C~, split), W, b], out."""
    blocks = []
    for _ in range(n_layers):
        p = s4.init(rng, H, N, dt_min=1e-3, dt_max=1e-1, ctilde=True)
        blocks.append({"s4": s4d.split_complex(p),
                       "W": rng.uniform(-1, 1, (H, H)) / math.sqrt(H), "b": np.zeros(H)})
    return {"emb": rng.standard_normal((V, H)) * 0.5, "blocks": blocks,
            "out": rng.uniform(-1, 1, (H, V)) / math.sqrt(H), "out_b": np.zeros(V)}


def lm_logits_conv(model: dict, ids, L: int | None = None):
    """Convolutional view: ids (B, T) -> logits (B, T, V), kernels of length L (default T)."""
    xp = xp_of(model["emb"])
    h = model["emb"][ids]                                           # (B, T, H)
    for blk in model["blocks"]:
        y = s4.forward_conv(s4d.merge_complex(blk["s4"]), _layer_norm(xp, h), L)
        h = h + _gelu(xp, y) @ blk["W"] + blk["b"]
    return _layer_norm(xp, h) @ model["out"] + model["out_b"]


def lm_recurrent(model: dict, L: int) -> dict:
    """The recurrent view (NumPy): C recovered from C~ once per channel (``s4.recover_c``) and
    each block's bilinear system materialised (``s4.discretize``)."""
    return {"emb": model["emb"], "out": model["out"], "out_b": model["out_b"],
            "blocks": [{"ssm": s4.discretize(s4.recover_c(s4d.merge_complex(b["s4"]), L)),
                        "W": b["W"], "b": b["b"]} for b in model["blocks"]]}


def lm_step(rec: dict, ids_t, state):
    """One character: ids_t (B,) and state (n_layers, B, H, N) -> logits (B, V), new state."""
    h = rec["emb"][ids_t]                                           # (B, H)
    new = []
    for blk, x in zip(rec["blocks"], state):
        y, x = s4.step(blk["ssm"], _layer_norm(np, h), x)
        new.append(x)
        h = h + _gelu(np, y) @ blk["W"] + blk["b"]
    return _layer_norm(np, h) @ rec["out"] + rec["out_b"], np.stack(new)


def _zero_state(rec: dict, B: int):
    H, N = rec["blocks"][0]["ssm"]["C"].shape
    return np.zeros((len(rec["blocks"]), B, H, N), dtype=complex)


def lm_logits_recurrent(rec: dict, ids):
    """Recurrent view over a sequence: ids (B, T) -> logits (B, T, V), one step at a time."""
    state, out = _zero_state(rec, ids.shape[0]), []
    for t in range(ids.shape[1]):
        logits, state = lm_step(rec, ids[:, t], state)
        out.append(logits)
    return np.stack(out, axis=1)


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def lm_train(corpus, *, H, N, n_layers, L, steps, batch, lr, seed, **_) -> tuple[dict, dict]:
    """Train by the convolutional view (torch autograd, float32); returns NumPy float64 params."""
    import torch  # noqa: PLC0415

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model, leaves = torch_leaves(lm_init(rng, corpus.V, H, N, n_layers))
    opt = torch.optim.Adam(leaves, lr=lr)
    data_rng, losses, t0 = np.random.default_rng(1000 + seed), [], time.process_time()
    for _ in range(steps):
        x, y = corpus.random_windows(data_rng, batch, L)
        logits = lm_logits_conv(model, torch.as_tensor(x))
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, corpus.V),
                                                 torch.as_tensor(y).reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))

    def to_np(tree):
        if isinstance(tree, dict):
            return {k: to_np(v) for k, v in tree.items()}
        if isinstance(tree, list):
            return [to_np(v) for v in tree]
        return tree.detach().numpy().astype(np.float64)

    return to_np(model), {"loss": losses, "cpu_s": time.process_time() - t0}


def lm_sample(rec: dict, prompt_ids, n: int, rng, temperature: float = 1.0):
    """Feed the prompt, then sample n characters one step at a time (constant-size state)."""
    state = _zero_state(rec, 1)
    for i in prompt_ids:
        logits, state = lm_step(rec, np.array([i]), state)
    out = []
    for _ in range(n):
        p = np.exp(_log_softmax(logits[0] / temperature))
        i = int(rng.choice(len(p), p=p / p.sum()))
        out.append(i)
        logits, state = lm_step(rec, np.array([i]), state)
    return out


def generation(cfg: dict) -> dict:
    """Train the character model, check both views on held-out text, time and sample."""
    corpus = load_corpus("genesis")
    L = cfg["L"]
    model, hist = lm_train(corpus, **cfg)
    rec = lm_recurrent(model, L)
    x, y = corpus.random_windows(np.random.default_rng(7), 1, L, split="val")   # held out
    lp_conv = _log_softmax(lm_logits_conv(model, x))
    lp_rec = _log_softmax(lm_logits_recurrent(rec, x))
    pick = lambda lp: float(np.take_along_axis(lp, y[..., None], -1).sum())   # noqa: E731
    ll_conv, ll_rec = pick(lp_conv), pick(lp_rec)
    # Beyond L the recovered C defines the model; its conv view at length T needs the C~ of T:
    # C~_T = C (I - A_bar^T), prepared once (not timed); prefixes of length t <= T use its first
    # t taps. Then: conv logits over T == recurrent logits, and the time per generated character.
    T = cfg["n_generate"]
    model_T = {**model, "blocks": [{**b, "s4": s4d.split_complex(s4.to_ctilde(
        s4.recover_c(s4d.merge_complex(b["s4"]), L), T))} for b in model["blocks"]]}
    ids = corpus.random_windows(np.random.default_rng(8), 1, T, split="val")[0]
    lp_conv_T = _log_softmax(lm_logits_conv(model_T, ids, T))
    lp_rec_T = _log_softmax(lm_logits_recurrent(rec, ids))
    state, t_step = _zero_state(rec, 1), []
    for t in range(T):
        c0 = time.process_time()
        _, state = lm_step(rec, ids[:, t], state)
        t_step.append(time.process_time() - c0)
    t_conv, lengths = [], sorted({max(1, T // 8), T // 4, T // 2, T})
    for t in lengths:                     # the convolution must recompute the whole prefix
        best = math.inf
        for _ in range(3):
            c0 = time.process_time()
            lm_logits_conv(model_T, ids[:, :t], T)
            best = min(best, time.process_time() - c0)
        t_conv.append(best)
    text = corpus.decode(lm_sample(rec, corpus.encode("And God said"), 160,
                                   np.random.default_rng(cfg["seed"]), temperature=0.8))
    return {"train_loss": hist["loss"][::max(1, cfg["steps"] // 100)],
            "final_train_loss": float(np.mean(hist["loss"][-20:])), "train_cpu_s": hist["cpu_s"],
            "heldout_L": L, "loglik_conv": ll_conv, "loglik_rec": ll_rec,
            "loglik_abs_diff": abs(ll_conv - ll_rec),
            "logprob_max_abs_diff": float(np.abs(lp_conv - lp_rec).max()),
            "heldout_bits_per_char": -ll_conv / L / math.log(2),
            "long_T": T, "long_logprob_max_abs_diff": float(np.abs(lp_conv_T - lp_rec_T).max()),
            "step_cpu_s_median": float(np.median(t_step)), "step_cpu_s_min": float(min(t_step)),
            "conv_prefix_lengths": lengths, "conv_prefix_cpu_s": t_conv,
            "n_params": seqclass.count_params(model), "sample": "And God said" + text}


def run(size: str = "small") -> dict:
    """Digits (every model and seed) and generation at the given size."""
    cfg = config_for(size, CONFIGS)
    figures = {"digits": digits(cfg), "generation": generation(cfg["lm"])}
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}
    return {"config": {"size": size, "layer_lr": LAYER_LR, **config}, "figures": figures}
