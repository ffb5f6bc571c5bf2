"""Chapter 11's experiment: gated linear recurrences against a GRU as character models of Genesis.

Every model is the same network around a different recurrence: an embedding (V, H), K = 2
pre-norm residual layers x <- x + rec(LayerNorm(x)), and a linear readout (H, V). The recurrence
is one of

    GRU      ``torch.nn.GRU(H, H)``, one layer per block (a sequential recurrence: the baseline)
    minGRU   ``mingru.forward_scan`` in log space (11.1)-(11.6)
    minLSTM  ``mingru.minlstm_forward_scan`` in log space (11.7)-(11.10)
    RG-LRU   ``rglru.forward_scan``, chunked (11.15)-(11.18)
    HGRN     ``hgrn.forward_scan``, chunked, with the lower bounds of a learnt Gamma (11.20)-(11.25)

so the GRU sits in the same block as the others and the comparison is of the recurrences alone.
This is a reduced block, not the papers' (no Conv1D, gate branch or MLP, see chapter 11). The
GRU's width is ``H_gru``; every other model gets the width whose total parameter count is closest
to the GRU model's (all counts reported). All models see the same batches (random windows of the
training text), Adam, gradient clipping at norm 1, torch autograd through the ``rnnkit`` forward
functions, float32.

The learning rate is picked per model from ``lrs`` by the bits per character on a *selection*
stretch of the validation text (the first ``n_val`` windows of 256 + 1 characters) after training
seed 0 for the full budget; every seed is then scored on a *separate* report stretch (the next
``n_val`` windows), so the number reported was not used to choose the rate. A seed fixes the
initialisation; the batches are the same for every model and seed.

``run(size)`` returns {"config", "figures"}; ``python -m rnnkit.experiments gated_lm --size large
--from-head`` records it.
"""
from __future__ import annotations

import time

import numpy as np

from .. import hgrn, mingru, rglru
from ..tasks import load_corpus
from ._common import config_for

__all__ = ["CONFIGS", "KINDS", "make_model", "n_params", "matched_width", "val_windows", "bits",
           "train", "run"]

KINDS = ("GRU", "minGRU", "minLSTM", "RG-LRU", "HGRN")
WINDOW = 256            # validation windows: 256 characters of context, scored after each

CONFIGS = {
    # the chapter's live run: one rate, one seed, short
    "small": dict(steps=80, B=16, L=64, H_gru=32, K=2, lrs=(5e-3,), seeds=(0,), n_val=16),
    "large": dict(steps=500, B=16, L=64, H_gru=32, K=2, lrs=(2e-3, 5e-3, 1e-2, 2e-2),
                  seeds=(0, 1, 2), n_val=16),
    "tiny": dict(steps=3, B=4, L=16, H_gru=8, K=2, lrs=(5e-3, 1e-2), seeds=(0, 1), n_val=2),
}


def make_model(kind: str, V: int, H: int, K: int = 2, seed: int = 0):
    """The character model: embedding -> K blocks x + rec(LN(x)) -> readout, a torch Module."""
    import torch  # noqa: PLC0415

    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")

    class CharModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(seed)
            r = np.random.default_rng(seed)
            self.kind = kind
            self.emb, self.out = torch.nn.Embedding(V, H), torch.nn.Linear(H, V)
            self.norms = torch.nn.ModuleList(torch.nn.LayerNorm(H) for _ in range(K))
            if kind == "GRU":
                self.layers = torch.nn.ModuleList(torch.nn.GRU(H, H, batch_first=True)
                                                  for _ in range(K))
                return
            make = {"minGRU": lambda: mingru.init(r, H, H),
                    "minLSTM": lambda: mingru.minlstm_init(r, H, H),
                    "RG-LRU": lambda: rglru.init(r, H), "HGRN": lambda: hgrn.init(r, H, H)}[kind]
            self.layers = torch.nn.ModuleList(
                torch.nn.ParameterDict({k: torch.nn.Parameter(torch.tensor(v, dtype=torch.float32))
                                        for k, v in make().items()}) for _ in range(K))
            if kind == "HGRN":
                self.Gamma = torch.nn.Parameter(torch.zeros(K, H))        # (11.25), learnt

        def forward(self, ids):                                           # (B, L) -> (B, L, V)
            x = self.emb(ids)                                             # (B, L, H)
            bounds = hgrn.lower_bounds(self.Gamma) if self.kind == "HGRN" else None
            for k, (layer, norm) in enumerate(zip(self.layers, self.norms)):
                u = norm(x)
                if self.kind == "GRU":
                    y = layer(u)[0]
                elif self.kind == "minGRU":
                    y = mingru.forward_scan(dict(layer), u, method="log")[0]
                elif self.kind == "minLSTM":
                    y = mingru.minlstm_forward_scan(dict(layer), u, method="log")[0]
                elif self.kind == "RG-LRU":
                    y = rglru.forward_scan(dict(layer), u, method="chunked")[0]
                else:
                    y = hgrn.forward_scan(dict(layer), u, lower_bound=bounds[k],
                                          method="chunked")[0]
                x = x + y                                                 # residual
            return self.out(x)

    return CharModel()


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def matched_width(kind: str, V: int, target: int, K: int = 2) -> int:
    """The width of ``kind`` whose model has the parameter count closest to ``target``.

    The count grows with H, so the search stops at the first width above the target.
    """
    best, H = None, 4
    while True:
        n = n_params(make_model(kind, V, H, K))
        if best is None or abs(n - target) < abs(best[1] - target):
            best = (H, n)
        if n >= target:
            return best[0]
        H += 1


def val_windows(val_ids, n: int, offset: int = 0):
    """n consecutive validation windows of WINDOW + 1 ids, starting at window ``offset``."""
    import torch  # noqa: PLC0415

    w = WINDOW + 1
    chunk = val_ids[offset * w:(offset + n) * w]
    if len(chunk) < n * w:
        raise ValueError(f"val_ids: expected at least {(offset + n) * w} ids, got {len(val_ids)}")
    return torch.tensor(np.asarray(chunk).reshape(n, w))


def bits(model, windows) -> float:
    """Bits per character of the model on (n, WINDOW + 1) windows, each read from a zero state."""
    import torch  # noqa: PLC0415

    with torch.no_grad():
        logits = model(windows[:, :-1])
        nats = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 windows[:, 1:].reshape(-1))
    return float(nats) / np.log(2)


def train(kind: str, corpus, H: int, *, steps: int, B: int, L: int, K: int, lr: float,
          seed: int, data_seed: int = 1) -> dict:
    """Train one model on random training windows; returns the model, its curve and CPU time.

    The batches come from ``np.random.default_rng(data_seed)``: the same for every model and seed.
    """
    import torch  # noqa: PLC0415

    model = make_model(kind, corpus.V, H, K, seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    data = np.random.default_rng(data_seed)
    curve, cpu = [], 0.0
    for _ in range(steps):
        xb, yb = corpus.random_windows(data, B, L)
        t0 = time.process_time()                      # CPU time: robust to other load
        loss = torch.nn.functional.cross_entropy(model(torch.tensor(xb)).reshape(-1, corpus.V),
                                                 torch.tensor(yb).reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        cpu += time.process_time() - t0
        curve.append(loss.item() / np.log(2))
    return {"kind": kind, "H": H, "lr": lr, "seed": seed, "params": n_params(model),
            "curve": curve, "ms_per_step": 1e3 * cpu / steps, "model": model}


def run(size: str = "small", keep_models: bool = False) -> dict:
    """Every model: the rate picked on seed 0 by selection bits, then every seed scored apart.

    ``keep_models`` leaves the trained torch models of seed 0 in ``figures["models"]`` (for the
    chapter's live run; a recording must not hold them).
    """
    cfg = config_for(size, CONFIGS)
    corpus = load_corpus("genesis")
    train_ids, val_ids = corpus.split(0.1)
    select = val_windows(val_ids, cfg["n_val"])
    report = val_windows(val_ids, cfg["n_val"], offset=cfg["n_val"])
    hp = dict(steps=cfg["steps"], B=cfg["B"], L=cfg["L"], K=cfg["K"])
    target = n_params(make_model("GRU", corpus.V, cfg["H_gru"], cfg["K"]))
    widths = {k: cfg["H_gru"] if k == "GRU" else matched_width(k, corpus.V, target, cfg["K"])
              for k in KINDS}
    figures = {"target_params": target, "widths": widths, "lr": {}, "sweep": [], "runs": [],
               "models": {}}
    for kind in KINDS:
        tries = []
        for lr in cfg["lrs"]:
            r = train(kind, corpus, widths[kind], lr=lr, seed=cfg["seeds"][0], **hp)
            r["select_bits"] = bits(r["model"], select)
            tries.append(r)
        best = min(tries, key=lambda r: r["select_bits"])
        figures["lr"][kind] = best["lr"]
        figures["sweep"] += [{k: r[k] for k in ("kind", "lr", "select_bits")} for r in tries]
        runs = [best] + [train(kind, corpus, widths[kind], lr=best["lr"], seed=s, **hp)
                         for s in cfg["seeds"][1:]]
        for r in runs:
            r["val_bits"] = bits(r["model"], report)
        if keep_models:
            figures["models"][kind] = best["model"]
        if kind == "HGRN":
            figures["hgrn_lower_bounds"] = hgrn.lower_bounds(
                best["model"].Gamma.detach()).numpy().mean(axis=1).tolist()
        figures["runs"] += [{k: v for k, v in r.items() if k != "model"} for r in runs]
    for kind in KINDS:
        v = [r["val_bits"] for r in figures["runs"] if r["kind"] == kind]
        figures[f"{kind}_val_bits_mean"] = float(np.mean(v))
        figures[f"{kind}_val_bits_min"] = float(np.min(v))
        figures[f"{kind}_val_bits_max"] = float(np.max(v))
    counts = np.bincount(train_ids, minlength=corpus.V) / len(train_ids)
    figures["unigram_bits"] = float(-np.sum(counts[counts > 0] * np.log2(counts[counts > 0])))
    if not keep_models:
        del figures["models"]
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}
    return {"config": {"size": size, **config, "corpus": "genesis", "val_fraction": 0.1,
                       "window": WINDOW, "optimizer": "Adam", "clip": 1.0, "data_seed": 1,
                       "selection": "lr by bits/char on val windows [0, n_val), seed 0; reported: "
                                    "bits/char on val windows [n_val, 2 n_val)"},
            "figures": figures}
