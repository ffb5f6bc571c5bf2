"""Chapter 12's experiment: the LMU against an LSTM of the same size on permuted sequential digits.

The task is ``rnnkit.tasks.digits.sequential_digits(permute=True)``: scikit-learn's 8x8 digits as
sequences of L = 64 pixels in one fixed random order, 1,500 training and 297 test images,
classified after the last step. Both models are the ``rnnkit`` cells run on torch tensors
(autograd through ``lmu.forward`` / ``lstm.forward``), float32, with the same readout
(``logits = h_L W_o + b_o``, the last hidden state, no pooling), the same Adam optimiser, batches
of 50 drawn in the same order, and the same number of epochs:

    LMU   H = 32, N = 32, theta = L (12.16)-(12.19); the memory (A_bar, B_bar) is fixed, not trained
    LSTM  the width whose trained parameter count (cell + readout) is closest to the LMU's
          (``matched_lstm_width``), forget-gate bias 1 (``lstm.init``'s default)

The learning rate is picked per model from ``lrs``: seed 0 is trained at every rate for the full
budget, and the rate with the lowest training loss over the last epoch wins (the test set plays no
part in the choice); the other seeds are then trained at that rate. A seed fixes the
initialisation and the order of the batches. Reported per run: the test accuracy after every
epoch, the training losses, the parameter count and the CPU time.

``run(size)`` returns {"config", "figures"}; ``python -m rnnkit.experiments lmu_digits --size
large --from-head`` records it.
"""
from __future__ import annotations

import time

import numpy as np

from .. import lmu, lstm
from ..core.backend import to_backend
from ..tasks.digits import sequential_digits
from ._common import config_for

__all__ = ["CONFIGS", "MODELS", "FIXED", "n_params", "matched_lstm_width", "make_model", "logits",
           "train", "run"]

MODELS = ("LMU", "LSTM")
FIXED = ("A_bar", "B_bar")            # the LMU's memory matrices: not trained, not counted
N_CLASSES = 10

CONFIGS = {
    # the chapter's live run: one rate for both models (the middle of the large sweep, which picks
    # 3e-3 for the LMU and 3e-2 for the LSTM: see chapters/results/lmu_digits__large.json), one seed
    "small": dict(H=32, N=32, epochs=3, batch=50, lrs=(1e-2,), seeds=(0,)),
    "large": dict(H=32, N=32, epochs=20, batch=50, lrs=(3e-3, 1e-2, 3e-2), seeds=(0, 1, 2)),
    "tiny": dict(H=8, N=8, epochs=1, batch=50, lrs=(1e-2, 3e-2), seeds=(0, 1), n_train=200),
}


def n_params(kind: str, H: int, N: int | None = None, D: int = 1) -> int:
    """Trained parameters of a model with a linear readout (H, 10) + (10,), fixed memory excluded."""
    readout = H * N_CLASSES + N_CLASSES
    if kind == "LMU":               # e_x, e_h, e_m, W_x, W_h, W_m of (12.16)-(12.18)
        return D + H + N + D * H + H * H + N * H + readout
    if kind == "LSTM":              # W_x (D, 4H), W_h (H, 4H), b (4H,)
        return 4 * (D * H + H * H + H) + readout
    raise ValueError(f"kind: expected one of {MODELS}, got {kind!r}")


def matched_lstm_width(H: int, N: int, D: int = 1) -> int:
    """The LSTM width whose parameter count is closest to that of the LMU with (H, N)."""
    target = n_params("LMU", H, N, D)
    return min(range(1, 2 * H + 1), key=lambda h: abs(n_params("LSTM", h, D=D) - target))


def make_model(kind: str, H: int, N: int | None, theta: float, seed: int) -> dict:
    """Torch parameters (float32) of the cell and its readout W_o (H, 10), b_o (10,)."""
    import torch  # noqa: PLC0415

    r = np.random.default_rng(seed)
    core = lmu.init(r, 1, H, N, theta=theta) if kind == "LMU" else lstm.init(r, 1, H)
    p = to_backend({k: v.astype(np.float32) for k, v in core.items()}, "torch")
    p["W_o"] = torch.tensor(r.normal(0, 1 / np.sqrt(H), (H, N_CLASSES)), dtype=torch.float32)
    p["b_o"] = torch.zeros(N_CLASSES)
    for k, v in p.items():
        v.requires_grad_(k not in FIXED)
    return p


def logits(kind: str, p: dict, x):
    """x (B, L, 1) -> logits (B, 10) from the last hidden state."""
    core = {k: v for k, v in p.items() if k not in ("W_o", "b_o")}
    h_all, _ = (lmu.forward if kind == "LMU" else lstm.forward)(core, x)      # (B, L, H)
    return h_all[:, -1] @ p["W_o"] + p["b_o"]                                 # (B, 10)


def load_data(n_train: int | None = None):
    """(x_train, y_train, x_test, y_test) as torch tensors, x float32 (n, 64, 1)."""
    import torch  # noqa: PLC0415

    tr, te = sequential_digits("train", permute=True), sequential_digits("test", permute=True)
    n = n_train or len(tr.y)
    return (torch.tensor(tr.x[:n], dtype=torch.float32), torch.tensor(tr.y[:n]),
            torch.tensor(te.x, dtype=torch.float32), torch.tensor(te.y))


def train(kind: str, data, *, H: int, N: int | None = None, epochs: int, batch: int, lr: float,
          seed: int) -> dict:
    """Train one model; returns losses, test accuracy after each epoch, parameter count, CPU time."""
    import torch  # noqa: PLC0415

    x_tr, y_tr, x_te, y_te = data
    torch.manual_seed(seed)
    p = make_model(kind, H, N, theta=float(x_tr.shape[1]), seed=seed)
    opt = torch.optim.Adam([v for v in p.values() if v.requires_grad], lr=lr)
    order = torch.Generator().manual_seed(seed)
    losses, accs, cpu0 = [], [], time.process_time()
    for _ in range(epochs):
        for idx in torch.randperm(len(y_tr), generator=order).split(batch):
            loss = torch.nn.functional.cross_entropy(logits(kind, p, x_tr[idx]), y_tr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        with torch.no_grad():
            accs.append((logits(kind, p, x_te).argmax(-1) == y_te).float().mean().item())
    n = sum(v.numel() for k, v in p.items() if k not in FIXED)
    assert n == n_params(kind, H, N), (kind, n)
    per_epoch = -(-len(y_tr) // batch)
    return {"model": kind, "H": H, "N": N, "lr": lr, "seed": seed, "n_params": n,
            "losses": losses, "test_acc": accs, "final_test_acc": accs[-1],
            "last_epoch_loss": float(np.mean(losses[-per_epoch:])),
            "cpu_s": time.process_time() - cpu0}


def run(size: str = "small") -> dict:
    """Both models: the rate picked on seed 0 (if more than one), then every seed at that rate."""
    cfg = config_for(size, CONFIGS)
    data = load_data(cfg.get("n_train"))
    widths = {"LMU": cfg["H"], "LSTM": matched_lstm_width(cfg["H"], cfg["N"])}
    common = dict(epochs=cfg["epochs"], batch=cfg["batch"])
    figures = {"n_params": {k: n_params(k, H, cfg["N"] if k == "LMU" else None)
                            for k, H in widths.items()},
               "widths": widths, "lr": {}, "sweep": [], "runs": []}
    for kind in MODELS:
        N = cfg["N"] if kind == "LMU" else None
        first = [train(kind, data, H=widths[kind], N=N, lr=lr, seed=cfg["seeds"][0], **common)
                 for lr in cfg["lrs"]]
        best = min(first, key=lambda r: r["last_epoch_loss"])
        figures["lr"][kind] = best["lr"]
        figures["sweep"] += [{k: r[k] for k in ("model", "lr", "last_epoch_loss", "final_test_acc",
                                                "test_acc")} for r in first]
        figures["runs"].append(best)
        figures["runs"] += [train(kind, data, H=widths[kind], N=N, lr=best["lr"], seed=s, **common)
                            for s in cfg["seeds"][1:]]
    for kind in MODELS:
        final = [r["final_test_acc"] for r in figures["runs"] if r["model"] == kind]
        figures[f"{kind}_final_test_acc_mean"] = float(np.mean(final))
        figures[f"{kind}_final_test_acc_min"] = float(np.min(final))
        figures[f"{kind}_final_test_acc_max"] = float(np.max(final))
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}
    return {"config": {"size": size, **config, "task": "sequential_digits(permute=True), 8x8",
                       "readout": "linear, last hidden state", "optimizer": "Adam",
                       "lstm_forget_bias": 1.0,
                       "selection": "lr by training loss over the last epoch, seed 0"},
            "figures": figures}
