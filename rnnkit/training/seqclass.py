"""Sequence classification around any rnnkit sequence layer, trained with torch autograd.

The deep model of the LRU paper (Orvieto et al. 2023, Figure 1; the same block as S4's), with the
sequence layer left open so that one loop trains the LRU, S4, S4D or an LSTM on the same task:

    (10.16)  h^0_k = u_k W_enc + b_enc                                   encoder, D -> H
    (10.17)  z_k = layer(LayerNorm(h^{j-1}))_k                           the sequence layer, H -> H
             h^j_k = h^{j-1}_k + GLU(GELU(z_k)),   GLU(z) = (z W_a + b_a) * sigma(z W_g + b_g)
                                                                         block j = 1..n_layers
    (10.18)  logits = (mean_k h^J_k  or  h^J_L) W_out + b_out          pool over time, readout

``layer_fn(params, u)`` maps a torch tensor u (B, L, H) to (B, L, H) (or to a tuple whose first
entry is that, as ``lru.forward`` returns (y, x_last)); ``init_fn(rng, H)`` returns its parameter
dict of NumPy arrays. Every parameter is trained with Adam(W); the sequence layer's own parameters
can get their own learning rate (``layer_lr``), as the LRU paper does for its recurrence.

Example::

    from functools import partial
    from rnnkit import lru
    from rnnkit.training import seqclass
    data = seqclass.digits_data(side=8)
    res = seqclass.train_classifier(lru.forward_scan, partial(lru.init, N=64, r_min=0.9),
                                    data, H=32, n_layers=2, steps=300, lr=3e-3, batch=50, seed=0)
    res.test_acc, res.history["loss"][-1], res.n_params

Letters: B batch, L length, D input size, H model width, C classes.

References:
    A. Orvieto et al., "Resurrecting Recurrent Neural Networks for Long Sequences", ICML 2023,
    Figure 1 and Appendix D (pre-norm block, GLU, mean pooling, a smaller learning rate for the
    recurrent parameters). Deliberate differences: no dropout and a constant learning rate (runs of
    a few hundred steps), LayerNorm instead of BatchNorm.
"""
from __future__ import annotations

import time
from typing import Callable, NamedTuple

import numpy as np

from ..core.checks import check_positive_int

__all__ = ["Data", "Result", "digits_data", "train_classifier", "lstm_init", "lstm_layer",
           "count_params"]


class Data(NamedTuple):
    """A classification data set: x (N, L, D) float, y (N,) integer class ids 0..C-1."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


class Result(NamedTuple):
    """What ``train_classifier`` returns."""

    test_acc: float        # accuracy on the test split after the last step
    train_acc: float       # accuracy on the whole training split after the last step
    history: dict          # "step", "loss" (per step); "eval_step", "test_acc" (every eval_every)
    n_params: int          # trainable parameters of the whole model
    seconds: float         # wall-clock time of the training loop
    layer_params: list     # the trained sequence-layer parameters, one NumPy dict per block


def digits_data(side: int = 8, permute: bool = False) -> Data:
    """The sequential-digits task (``rnnkit.tasks.sequential_digits``) as a ``Data``: L = side**2."""
    from ..tasks.digits import sequential_digits  # noqa: PLC0415

    tr = sequential_digits("train", side=side, permute=permute)
    te = sequential_digits("test", side=side, permute=permute)
    return Data(tr.x, tr.y, te.x, te.y)


# --------------------------------------------------------------------------- the LSTM baseline
_LSTM_CACHE: dict = {}


def lstm_init(rng: np.random.Generator, H: int) -> dict:
    """An H -> H ``torch.nn.LSTM`` layer's parameters, drawn as torch does (U[-1/sqrt(H), 1/sqrt(H)])
    but from ``rng``, with the forget-gate bias at 1 as ``rnnkit.lstm.init`` sets it."""
    check_positive_int("H", H)
    bound = 1.0 / np.sqrt(H)
    params = {"weight_ih_l0": rng.uniform(-bound, bound, (4 * H, H)),
              "weight_hh_l0": rng.uniform(-bound, bound, (4 * H, H)),
              "bias_ih_l0": rng.uniform(-bound, bound, 4 * H), "bias_hh_l0": np.zeros(4 * H)}
    params["bias_ih_l0"][H:2 * H] = 1.0                       # torch's gate order i, f, g, o
    return params


def lstm_layer(params: dict, u):
    """``torch.nn.LSTM`` (the same cell as ``rnnkit.lstm``, chapter 2) as a layer function:
    u (B, L, H) -> h_all (B, L, H). Runs torch's fused CPU/GPU kernel."""
    import torch  # noqa: PLC0415

    H = params["weight_hh_l0"].shape[1]
    key = (H, u.dtype, u.device)
    if key not in _LSTM_CACHE:
        with torch.device("meta"):  # the module only supplies the kernel; weights come from params
            _LSTM_CACHE[key] = torch.nn.LSTM(H, H, batch_first=True)
    return torch.func.functional_call(_LSTM_CACHE[key], params, (u,))[0]


# --------------------------------------------------------------------------- the model
def count_params(params) -> int:
    """Number of scalars in a (nested) dict/list of arrays."""
    if isinstance(params, dict):
        return sum(count_params(v) for v in params.values())
    if isinstance(params, (list, tuple)):
        return sum(count_params(v) for v in params)
    return int(np.prod(params.shape))


def _linear_init(rng, n_in: int, n_out: int) -> dict:
    bound = 1.0 / np.sqrt(n_in)                               # as torch.nn.Linear
    return {"W": rng.uniform(-bound, bound, (n_in, n_out)), "b": rng.uniform(-bound, bound, n_out)}


def _init_model(rng, init_fn, D: int, H: int, C: int, n_layers: int) -> dict:
    blocks = []
    for _ in range(n_layers):
        blocks.append({"layer": dict(init_fn(rng, H)), "ln_w": np.ones(H), "ln_b": np.zeros(H),
                       "glu_a": _linear_init(rng, H, H), "glu_g": _linear_init(rng, H, H)})
    return {"enc": _linear_init(rng, D, H), "blocks": blocks, "out": _linear_init(rng, H, C)}


def _apply_model(torch, layer_fn, model: dict, u, pool: str):
    F = torch.nn.functional
    h = u @ model["enc"]["W"] + model["enc"]["b"]                           # (B, L, H)  (10.16)
    for blk in model["blocks"]:
        H = h.shape[-1]
        z = layer_fn(blk["layer"], F.layer_norm(h, (H,), blk["ln_w"], blk["ln_b"]))
        z = z[0] if isinstance(z, tuple) else z
        if tuple(z.shape) != tuple(h.shape):
            raise ValueError(f"layer_fn: expected an output of shape (B, L, H) = {tuple(h.shape)},"
                             f" got {tuple(z.shape)}")
        z = F.gelu(z)
        z = (z @ blk["glu_a"]["W"] + blk["glu_a"]["b"]) * torch.sigmoid(z @ blk["glu_g"]["W"]
                                                                       + blk["glu_g"]["b"])
        h = h + z                                                            # (10.17)
    feat = h.mean(dim=1) if pool == "mean" else h[:, -1]                     # (B, H)
    return feat @ model["out"]["W"] + model["out"]["b"]                      # (B, C)  (10.18)


def _leaves(tree, path=()):
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _leaves(v, path + (k,))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from _leaves(v, path + (i,))
    else:
        yield path, tree


def _map(tree, fn):
    if isinstance(tree, dict):
        return {k: _map(v, fn) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_map(v, fn) for v in tree]
    return fn(tree)


def _check_data(data) -> tuple:
    if not (isinstance(data, tuple) and len(data) == 4):
        raise ValueError("data: expected (x_train, y_train, x_test, y_test) or a seqclass.Data, "
                         f"got {type(data).__name__}")
    arrays = [np.asarray(a) for a in data]
    for name, x, y in (("train", arrays[0], arrays[1]), ("test", arrays[2], arrays[3])):
        if x.ndim != 3 or not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"data.x_{name}: expected a float array of shape (N, L, D), got "
                             f"shape {x.shape}, dtype {x.dtype}")
        if y.shape != x.shape[:1] or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"data.y_{name}: expected integer labels of shape ({x.shape[0]},), "
                             f"got shape {y.shape}, dtype {y.dtype}")
        if y.size and y.min() < 0:
            raise ValueError(f"data.y_{name}: expected class ids >= 0, got {y.min()}")
    if arrays[0].shape[2] != arrays[2].shape[2]:
        raise ValueError(f"data.x_test: expected D={arrays[0].shape[2]} as in x_train, "
                         f"got shape {arrays[2].shape}")
    return tuple(arrays)


def train_classifier(layer_fn: Callable, init_fn: Callable, data, *, H: int = 32, n_layers: int = 2,
                     steps: int = 300, lr: float = 3e-3, batch: int = 50, seed: int = 0,
                     pool: str = "mean", layer_lr: float | None = None, weight_decay: float = 0.0,
                     eval_every: int = 0, dtype: str = "float32") -> Result:
    """Train encoder -> n_layers blocks (10.17) -> pool -> readout with Adam(W) on cross-entropy.

    Args:
        layer_fn: ``layer_fn(params, u)`` on torch tensors, u (B, L, H) -> (B, L, H) or a tuple
            starting with it (``lru.forward_scan``, ``s4d.forward_conv``, ``lstm_layer``...).
        init_fn: ``init_fn(rng, H)`` -> dict of NumPy arrays (bind other arguments with partial).
        data: a ``Data`` (or the 4-tuple x_train (N, L, D), y_train (N,), x_test, y_test).
        H: model width.  n_layers: number of blocks.  steps: optimiser steps.  lr: learning rate.
        batch: minibatch size (sampled without replacement, reshuffled every epoch).
        seed: seeds the parameter draw (NumPy) and the batch order; the run is deterministic.
        pool: "mean" (average over time, as the paper) or "last" (the last step's features).
        layer_lr: learning rate of the sequence layer's parameters (default: lr).
        weight_decay: AdamW decay on the encoder, GLU and readout matrices (not the layer, norms,
            biases).  eval_every: also record the test accuracy every this many steps (0: at the end).
        dtype: "float32" or "float64".
    Returns:
        ``Result`` (test_acc, train_acc, history, n_params, seconds, layer_params).
    """
    import torch  # noqa: PLC0415

    if not callable(layer_fn) or not callable(init_fn):
        raise ValueError("layer_fn, init_fn: expected callables, got "
                         f"{type(layer_fn).__name__}, {type(init_fn).__name__}")
    x_tr, y_tr, x_te, y_te = _check_data(data)
    for name, value in (("H", H), ("n_layers", n_layers), ("steps", steps), ("batch", batch)):
        check_positive_int(name, value)
    check_positive_int("eval_every", eval_every + 1)
    if pool not in ("mean", "last"):
        raise ValueError(f"pool: expected 'mean' or 'last', got {pool!r}")
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype: expected 'float32' or 'float64', got {dtype!r}")
    for name, value in (("lr", lr), ("layer_lr", lr if layer_lr is None else layer_lr)):
        if not (isinstance(value, (int, float)) and value > 0):
            raise ValueError(f"{name}: expected a positive number, got {value!r}")
    tdtype = getattr(torch, dtype)
    C = int(max(y_tr.max(), y_te.max())) + 1

    rng = np.random.default_rng(seed)

    def to_leaf(a):
        a = np.asarray(a)
        if np.iscomplexobj(a):   # casting would silently drop the imaginary part
            raise ValueError(f"init_fn: expected real parameters, got a complex array of shape "
                             f"{a.shape}; store complex parameters as real pairs "
                             f"(e.g. rnnkit.s4d.split_complex)")
        return torch.tensor(a, dtype=tdtype, requires_grad=True)

    model = _map(_init_model(rng, init_fn, x_tr.shape[2], H, C, n_layers), to_leaf)
    groups = {"layer": [], "decay": [], "plain": []}
    for path, p in _leaves(model):
        key = "layer" if "layer" in path else ("decay" if path[-1] == "W" else "plain")
        groups[key].append(p)
    opt = torch.optim.AdamW([
        {"params": groups["layer"], "lr": lr if layer_lr is None else layer_lr, "weight_decay": 0.0},
        {"params": groups["decay"], "weight_decay": weight_decay},
        {"params": groups["plain"], "weight_decay": 0.0}], lr=lr)
    xt_tr, xt_te = torch.tensor(x_tr, dtype=tdtype), torch.tensor(x_te, dtype=tdtype)
    yt_tr, yt_te = torch.tensor(y_tr), torch.tensor(y_te)

    def accuracy(x, y):
        with torch.no_grad():
            logits = torch.cat([_apply_model(torch, layer_fn, model, x[i:i + 500], pool)
                                for i in range(0, len(x), 500)])
        return float((logits.argmax(-1) == y).double().mean())

    history = {"step": [], "loss": [], "eval_step": [], "test_acc": []}
    order, pos = rng.permutation(len(x_tr)), 0
    t0 = time.perf_counter()
    for it in range(1, steps + 1):
        if pos + batch > len(order):
            order, pos = rng.permutation(len(x_tr)), 0
        idx = torch.as_tensor(order[pos:pos + batch])
        pos += batch
        loss = torch.nn.functional.cross_entropy(
            _apply_model(torch, layer_fn, model, xt_tr[idx], pool), yt_tr[idx])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"train_classifier: loss is {float(loss)} at step {it}")
        opt.zero_grad()
        loss.backward()
        opt.step()
        history["step"].append(it)
        history["loss"].append(float(loss.detach()))
        if eval_every and it % eval_every == 0 and it != steps:
            history["eval_step"].append(it)
            history["test_acc"].append(accuracy(xt_te, yt_te))
    seconds = time.perf_counter() - t0
    test_acc = accuracy(xt_te, yt_te)
    history["eval_step"].append(steps)
    history["test_acc"].append(test_acc)
    layer_params = [_map(blk["layer"], lambda t: t.detach().cpu().numpy().astype(np.float64))
                    for blk in model["blocks"]]
    return Result(test_acc, accuracy(xt_tr, yt_tr), history, count_params(model), seconds,
                  layer_params)
