"""Chapter 7's experiment: echo state networks on Mackey-Glass and Lorenz, and an ESN against a GRU.

Three parts, each the chapter's own recipe (the notebook calls these functions for its live run):

    Mackey-Glass  (7.5), tau = 17, one sample per time unit, squashed by tanh(x - 1). A leaky
                  reservoir (7.1) of N units (rho = 1, a = 0.5, input scaling 1, bias scaling 0.2)
                  reads s_t and its ridge readout (7.3) predicts s_{t+1}; trained on steps
                  [0, train), the first ``washout`` washed out. Scored as Jaeger and Haas did:
                  NRMSE_84, the error after 84 free-running (closed-loop) steps, normalised by the
                  series' standard deviation, over 50 starts t_0 = test_lo + 20 k; and the one-step
                  NRMSE on the test stretch [test_lo, test_hi).
    Lorenz        (7.6), RK4 at dt = 0.02, standardised coordinates. A plain reservoir (a = 1,
                  rho = 0.9) of N units; trained on T steps; the valid time (Pathak et al. 2018:
                  normalised error below 0.4) of 10 closed-loop runs, in Lyapunov times.
    GRU           ``torch.nn.GRU`` (1 -> H) and a linear output, trained by Adam (cosine schedule)
                  on random windows of 100 steps of the same training stretch (loss after 20
                  warm-up steps), float32; scored exactly as the ESN (the same one-step targets and
                  the same closed-loop starts).

Fairness (the large size): both models see the same training stretch and are scored on the same
test stretch; each has one hyperparameter chosen on a *validation* stretch [val_lo, val_hi) that
lies after the test stretch and plays no part in the test scores: the ESN's ridge penalty kappa
(its reservoir settings are the chapter's, fixed), the GRU's Adam learning rate. Selection is made
at seed 0 by validation NRMSE_84 (ties: the smaller value), then every seed runs at the chosen
value. A seed is the reservoir's random draw (ESN) or the initialisation and the order of the
windows (GRU). The two models differ in kind, so their sizes cannot be matched; ``run`` reports
both the trained and the fixed parameter counts and each model's CPU seconds.

``run(size)`` returns {"config", "figures"}; ``python -m rnnkit.experiments reservoirs --size
large --from-head`` records it.

References: H. Jaeger and H. Haas, Science 304, 2004 (N = 1000, NRMSE_84 = 10^-4.2). J. Pathak et
al., Phys. Rev. Lett. 120, 2018 (valid time).
"""
from __future__ import annotations

import functools
import time

import numpy as np

from .. import esn
from ..tasks.chaos import LORENZ_LYAPUNOV, lorenz, mackey_glass, valid_time
from ._common import config_for, torch_settings

__all__ = ["CONFIGS", "mg_series", "mg_starts", "mg_esn", "esn_scores", "nrmse_by_step",
           "gru_predictor", "gru_train", "gru_scores", "gru_params", "esn_params", "lorenz_series",
           "lorenz_esn", "run"]

# The chapter's Mackey-Glass task and ESN settings (the same at every size but the tiny one).
_MG = dict(train=3000, washout=300, horizon=84, n_starts=50, stride=20, test_lo=3000,
           test_hi=6000, rho=1.0, leak_rate=0.5, input_scaling=1.0, bias_scaling=0.2)
_LZ = dict(dt=0.02, discard=500, extra=2000, rho=0.9, leak_rate=1.0, input_scaling=0.5,
           bias_scaling=0.5, ridge=1e-8, washout=200, n_starts=10, stride=100, horizon=1000)
_GRU = dict(batch=32, window=100, warmup=20)

CONFIGS = {
    # the chapter's live run: one reservoir, one GRU, no selection (no validation stretch)
    "small": dict(mg=dict(_MG, T=6000, N=400, ridges=(1e-10,), seeds=(0,)),
                  lz=dict(_LZ, N=300, T=5000, seeds=(0,)),
                  gru=dict(_GRU, H=32, steps=150, lrs=(1e-2,), seeds=(0,))),
    # the recorded run: N = 1000 as Jaeger and Haas; kappa and the GRU's rate chosen on validation
    "large": dict(mg=dict(_MG, T=9000, N=1000, val_lo=6000, val_hi=9000,
                          ridges=(1e-12, 1e-10, 1e-8, 1e-6), seeds=(0, 1, 2)),
                  lz=dict(_LZ, N=1000, T=10000, seeds=(0, 1, 2)),
                  gru=dict(_GRU, H=64, steps=3000, lrs=(3e-3, 1e-2, 3e-2), seeds=(0, 1, 2))),
    # the test's run
    "tiny": dict(mg=dict(_MG, train=400, washout=50, horizon=10, n_starts=4, stride=20,
                         test_lo=400, test_hi=600, T=800, val_lo=600, val_hi=800, N=20,
                         ridges=(1e-8, 1e-4), seeds=(0, 1)),
                 lz=dict(_LZ, N=20, T=400, extra=300, discard=100, washout=50, n_starts=2,
                         stride=50, horizon=100, seeds=(0, 1)),
                 gru=dict(_GRU, H=4, steps=3, window=30, warmup=5, batch=4, lrs=(1e-2, 3e-2),
                          seeds=(0, 1))),
}


# ----------------------------------------------------------------------------- Mackey-Glass
def mg_series(T: int) -> np.ndarray:
    """(T + 1,) samples of tanh(x - 1), x Mackey-Glass (7.5) after a transient of 1000 time units."""
    return np.tanh(mackey_glass(T + 1, discard=1000.0) - 1.0)


def mg_starts(lo: int, n_starts: int = 50, stride: int = 20) -> np.ndarray:
    """Closed-loop starting points t_0 = lo + stride k, k < n_starts."""
    return lo + stride * np.arange(n_starts)


def esn_scores(params, W_out, x, mg, lo, hi, starts, horizon):
    """One-step NRMSE on targets [lo, hi) and NRMSE after ``horizon`` free-running steps from
    ``starts``, for a reservoir whose states x (1, T, N) were harvested on u_t = mg[t].

    Returns (one_step, nrmse_h, free (S, horizon, 1), truth (S, horizon, 1)).
    """
    u, y = mg[None, :-1, None], mg[None, 1:, None]                     # (1, T, 1)
    one_step = esn.nrmse(y[0, lo:hi], esn.predict(W_out, x[:, lo:hi], u[:, lo:hi])[0])
    # all starts at once: the batch axis holds the closed-loop runs
    free = esn.generate(params, W_out, x[0, starts - 1], u[0, starts], horizon, with_inputs=True)
    truth = np.stack([y[0, s:s + horizon] for s in starts])           # (S, horizon, 1)
    err = np.sqrt(np.mean((free - truth)[:, -1, 0] ** 2) / mg.var())
    return float(one_step), float(err), free, truth


def nrmse_by_step(free, truth, var):
    """NRMSE over the starts after each free-running step 1..horizon: (horizon,)."""
    return np.sqrt(np.mean((free - truth)[:, :, 0] ** 2, axis=0) / var)


def mg_esn(mg, N, rho=1.0, leak_rate=0.5, input_scaling=1.0, bias_scaling=0.2, ridge=1e-10,
           seed=0, *, train=3000, washout=300, test=None, starts=None, horizon=84,
           return_run=False):
    """The chapter's Mackey-Glass ESN: draw a reservoir, harvest states, fit (7.3), score.

    Args:
        mg: (T + 1,) series. test: (lo, hi) of the one-step targets (default: train to the end).
        starts: closed-loop starts (default: ``mg_starts(train)``).
    Returns:
        (one_step, nrmse_h), or with ``return_run`` (one_step, nrmse_h, free, truth, params,
        W_out, x) with x (1, T, N) the states.
    """
    r = np.random.default_rng(seed)
    params = esn.init(r, 1, N, spectral_radius=rho, leak_rate=leak_rate,
                      input_scaling=input_scaling, bias_scaling=bias_scaling)
    u, y = mg[None, :-1, None], mg[None, 1:, None]
    x, _ = esn.forward(params, u)                                      # (1, T, N)
    W_out = esn.fit_readout(x[:, :train], y[:, :train], ridge=ridge, washout=washout,
                            inputs=u[:, :train])
    lo, hi = test if test is not None else (train, len(mg) - 1)
    starts = mg_starts(train) if starts is None else starts
    one_step, err, free, truth = esn_scores(params, W_out, x, mg, lo, hi, starts, horizon)
    if return_run:
        return one_step, err, free, truth, params, W_out, x
    return one_step, err


def esn_params(N: int, D: int = 1, K: int = 1) -> dict:
    """Trained (the readout, bias row included) and fixed (W_in, W, b) parameters of an ESN."""
    return {"trained": (1 + D + N) * K, "fixed": D * N + N * N + N}


# ----------------------------------------------------------------------------- GRU
@functools.cache
def _predictor_class():
    import torch  # noqa: PLC0415

    class GRUPredictor(torch.nn.Module):
        """s_t -> GRU (1 -> H) -> linear (H -> 1): the prediction of s_{t+1}."""

        def __init__(self, H):
            super().__init__()
            self.gru = torch.nn.GRU(1, H, batch_first=True)
            self.out = torch.nn.Linear(H, 1)

        def forward(self, u, h=None):
            z, h = self.gru(u, h)
            return self.out(z), h

    return GRUPredictor


def gru_predictor(H: int):
    """A fresh ``GRUPredictor(H)`` (torch.nn.Module; call torch.manual_seed first)."""
    return _predictor_class()(H)


def gru_params(H: int, D: int = 1) -> int:
    """Parameters of ``gru_predictor(H)``: nn.GRU's 3 (D H + H H + 2 H) and the H + 1 output."""
    return 3 * (D * H + H * H + 2 * H) + H + 1


def gru_train(mg, H, steps, lr, seed=0, *, train=3000, batch=32, window=100, warmup=20):
    """The chapter's GRU: Adam with a cosine schedule on random windows of the training stretch.

    Returns (net, losses list, CPU seconds).
    """
    import torch  # noqa: PLC0415

    torch.manual_seed(seed)
    net = gru_predictor(H)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    series = torch.tensor(mg, dtype=torch.float32)
    r = np.random.default_rng(seed)
    losses = []
    cpu0 = time.process_time()
    for _ in range(steps):
        idx = torch.as_tensor(r.integers(0, train - window - 1, batch))
        win = torch.stack([series[i:i + window + 1] for i in idx])[..., None]   # (B, window+1, 1)
        pred, _ = net(win[:, :-1])
        loss = ((pred[:, warmup:] - win[:, warmup + 1:]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return net, losses, time.process_time() - cpu0


def gru_scores(net, mg, lo, hi, starts, horizon=84, return_curve=False):
    """As ``esn_scores`` for a trained GRU: one teacher-forced pass over the series gives the
    one-step predictions and the hidden state h after s_0 .. s_{t0-1}; then ``horizon`` steps in
    closed loop from u = s_{t0}. Returns (one_step, nrmse_h), and with ``return_curve`` the
    NRMSE after each free-running step (horizon,) as a third entry."""
    import torch  # noqa: PLC0415

    series = torch.tensor(mg, dtype=torch.float32)
    with torch.no_grad():
        z, _ = net.gru(series[None, :-1, None])                        # (1, T, H) hidden states
        pred = net.out(z)[0, :, 0].numpy()                             # pred[t] predicts s_{t+1}
        one_step = esn.nrmse(mg[lo + 1:hi + 1], pred[lo:hi])
        hs = z[0, starts - 1][None].contiguous()                       # (1, S, H)
        u = series[starts][:, None, None]                              # (S, 1, 1)
        free = []
        for _ in range(horizon):
            u, hs = net(u, hs)
            free.append(u[:, 0].numpy().astype(np.float64))            # (S, 1)
        err = np.sqrt(np.mean((u[:, 0, 0].numpy().astype(np.float64)
                               - mg[starts + horizon]) ** 2) / mg.var())
    if return_curve:
        truth = np.stack([mg[s + 1:s + horizon + 1, None] for s in starts])   # (S, horizon, 1)
        return float(one_step), float(err), nrmse_by_step(np.stack(free, 1), truth, mg.var())
    return float(one_step), float(err)


# ----------------------------------------------------------------------------- Lorenz
def lorenz_series(T: int, *, dt: float = 0.02, discard: int = 500, extra: int = 2000) -> np.ndarray:
    """(T + extra, 3) standardised Lorenz samples on the attractor."""
    lz = lorenz(T + extra, dt=dt, discard=discard)
    return (lz - lz.mean(0)) / lz.std(0)


def lorenz_esn(lz, N, T, seed=0, *, rho=0.9, leak_rate=1.0, input_scaling=0.5, bias_scaling=0.5,
               ridge=1e-8, washout=200, n_starts=10, stride=100, horizon=1000, dt=0.02):
    """The chapter's Lorenz ESN: fit on T steps, ``n_starts`` closed-loop runs after them.

    Returns dict: valid times in Lyapunov times (n_starts,), params, W_out, x (1, T', N), the
    free runs (n_starts, horizon, 3), the starts, and the CPU seconds of harvest, fit and runs.
    """
    u, y = lz[None, :-1], lz[None, 1:]
    r = np.random.default_rng(seed)
    cpu0 = time.process_time()
    params = esn.init(r, 3, N, spectral_radius=rho, leak_rate=leak_rate,
                      input_scaling=input_scaling, bias_scaling=bias_scaling)
    x, _ = esn.forward(params, u)
    W_out = esn.fit_readout(x[:, :T], y[:, :T], ridge=ridge, washout=washout, inputs=u[:, :T])
    starts = T + stride * np.arange(n_starts)
    free = esn.generate(params, W_out, x[0, starts - 1], u[0, starts], horizon, with_inputs=True)
    cpu = time.process_time() - cpu0
    vt = np.array([valid_time(y[0, s:s + horizon], free[i]) for i, s in enumerate(starts)])
    return {"vt_lyap": vt * dt * LORENZ_LYAPUNOV, "params": params, "W_out": W_out, "x": x,
            "free": free, "starts": starts, "cpu_s": cpu}


# ----------------------------------------------------------------------------- the run
def _stats(values):
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max()),
            "log10_mean": float(np.mean(np.log10(v)))}


def _pick(tries, key):
    """The candidate with the smallest validation NRMSE_84 (ties: the smaller value of ``key``)."""
    return min(tries, key=lambda t: (t["val_nrmse84"], t[key]))[key]


def _run_mg_esn(mg, c):
    starts = mg_starts(c["test_lo"], c["n_starts"], c["stride"])
    fixed = {k: c[k] for k in ("rho", "leak_rate", "input_scaling", "bias_scaling")}
    sweep, runs = [], []
    if len(c["ridges"]) > 1:                       # kappa on the validation stretch, seed 0
        val_starts = mg_starts(c["val_lo"], c["n_starts"], c["stride"])
        r = np.random.default_rng(c["seeds"][0])
        params = esn.init(r, 1, c["N"], spectral_radius=c["rho"], leak_rate=c["leak_rate"],
                          input_scaling=c["input_scaling"], bias_scaling=c["bias_scaling"])
        u, y = mg[None, :-1, None], mg[None, 1:, None]
        x, _ = esn.forward(params, u)
        for ridge in c["ridges"]:
            W_out = esn.fit_readout(x[:, :c["train"]], y[:, :c["train"]], ridge=ridge,
                                    washout=c["washout"], inputs=u[:, :c["train"]])
            one, err, *_ = esn_scores(params, W_out, x, mg, c["val_lo"], c["val_hi"], val_starts,
                                      c["horizon"])
            sweep.append({"ridge": ridge, "val_one_step": one, "val_nrmse84": err})
        ridge = _pick(sweep, "ridge")
    else:
        ridge = c["ridges"][0]
    for seed in c["seeds"]:
        cpu0 = time.process_time()
        one, err, free, truth, *_ = mg_esn(mg, c["N"], ridge=ridge, seed=seed, train=c["train"],
                                           washout=c["washout"], test=(c["test_lo"], c["test_hi"]),
                                           starts=starts, horizon=c["horizon"], return_run=True,
                                           **fixed)
        runs.append({"seed": seed, "ridge": ridge, "one_step": one, "nrmse84": err,
                     "cpu_s": time.process_time() - cpu0,
                     "nrmse_by_step": nrmse_by_step(free, truth, mg.var())})
    return {"N": c["N"], "ridge": ridge, "sweep": sweep, "runs": runs,
            "n_params": esn_params(c["N"]),
            "one_step": _stats([r_["one_step"] for r_ in runs]),
            "nrmse84": _stats([r_["nrmse84"] for r_ in runs])}


def _run_gru(mg, c, m):
    starts = mg_starts(m["test_lo"], m["n_starts"], m["stride"])
    common = dict(train=m["train"], batch=c["batch"], window=c["window"], warmup=c["warmup"])
    sweep, runs, nets = [], [], {}
    if len(c["lrs"]) > 1:                          # the learning rate on the validation stretch
        val_starts = mg_starts(m["val_lo"], m["n_starts"], m["stride"])
        for lr in c["lrs"]:
            net, losses, cpu = gru_train(mg, c["H"], c["steps"], lr, c["seeds"][0], **common)
            one, err = gru_scores(net, mg, m["val_lo"], m["val_hi"], val_starts, m["horizon"])
            sweep.append({"lr": lr, "val_one_step": one, "val_nrmse84": err,
                          "loss_last_100": float(np.mean(losses[-100:])), "cpu_s": cpu})
            nets[lr] = (net, losses, cpu)
        lr = _pick(sweep, "lr")
    else:
        lr = c["lrs"][0]
    for seed in c["seeds"]:
        if seed == c["seeds"][0] and lr in nets:   # seed 0 at the chosen rate is already trained
            net, losses, cpu = nets[lr]
        else:
            net, losses, cpu = gru_train(mg, c["H"], c["steps"], lr, seed, **common)
        one, err, curve = gru_scores(net, mg, m["test_lo"], m["test_hi"], starts, m["horizon"],
                                     return_curve=True)
        runs.append({"seed": seed, "lr": lr, "one_step": one, "nrmse84": err, "train_cpu_s": cpu,
                     "nrmse_by_step": curve,
                     "loss_last_100": float(np.mean(losses[-100:])), "losses_every_50": losses[::50]})
    return {"H": c["H"], "steps": c["steps"], "lr": lr, "sweep": sweep, "runs": runs,
            "n_params": {"trained": gru_params(c["H"]), "fixed": 0},
            "one_step": _stats([r_["one_step"] for r_ in runs]),
            "nrmse84": _stats([r_["nrmse84"] for r_ in runs])}


def _run_lorenz(c):
    lz = lorenz_series(c["T"], dt=c["dt"], discard=c["discard"], extra=c["extra"])
    runs = []
    for seed in c["seeds"]:
        out = lorenz_esn(lz, c["N"], c["T"], seed, **{k: v for k, v in c.items()
                                                      if k not in ("N", "T", "seeds", "discard",
                                                                   "extra")})
        vt = out["vt_lyap"]
        runs.append({"seed": seed, "vt_lyap": vt, "vt_mean": float(vt.mean()),
                     "vt_std": float(vt.std()), "cpu_s": out["cpu_s"]})
    means = [r_["vt_mean"] for r_ in runs]
    return {"N": c["N"], "T": c["T"], "runs": runs, "vt_mean": float(np.mean(means)),
            "vt_mean_min": float(np.min(means)), "vt_mean_max": float(np.max(means)),
            "vt_all_min": float(min(r_["vt_lyap"].min() for r_ in runs)),
            "vt_all_max": float(max(r_["vt_lyap"].max() for r_ in runs))}


def run(size: str = "small") -> dict:
    """Mackey-Glass ESN (kappa on validation), GRU (lr on validation), Lorenz ESN; every seed."""
    cfg = config_for(size, CONFIGS)
    with torch_settings(threads=1):  # deterministic, and fair on a shared 2-core machine
        mg = mg_series(cfg["mg"]["T"])
        figures = {"mg_esn": _run_mg_esn(mg, cfg["mg"]),
                   "gru": _run_gru(mg, cfg["gru"], cfg["mg"]),
                   "lorenz": _run_lorenz(cfg["lz"])}
    e, g = figures["mg_esn"], figures["gru"]
    figures["comparison"] = {
        "gru_over_esn_one_step": g["one_step"]["mean"] / e["one_step"]["mean"],
        "gru_over_esn_nrmse84": g["nrmse84"]["mean"] / e["nrmse84"]["mean"],
        "esn_ahead_every_seed_one_step": max(r_["one_step"] for r_ in e["runs"])
        < min(r_["one_step"] for r_ in g["runs"]),
        "esn_ahead_every_seed_nrmse84": max(r_["nrmse84"] for r_ in e["runs"])
        < min(r_["nrmse84"] for r_ in g["runs"]),
        "esn_cpu_s_mean": float(np.mean([r_["cpu_s"] for r_ in e["runs"]])),
        "gru_train_cpu_s_mean": float(np.mean([r_["train_cpu_s"] for r_ in g["runs"]])),
    }
    plain = {part: {k: (list(v) if isinstance(v, tuple) else v) for k, v in c.items()}
             for part, c in cfg.items()}
    return {"config": {"size": size, **plain, "torch_threads": 1,
                       "selection": "ESN ridge kappa and GRU Adam lr each chosen at seed 0 by "
                       "NRMSE_84 on the validation stretch [val_lo, val_hi) (ties: the smaller); "
                       "every seed then scored on the test stretch [test_lo, test_hi) and the "
                       "closed-loop starts test_lo + stride k",
                       "gru": dict(plain["gru"], optimizer="Adam, cosine schedule to 0",
                                   dtype="float32"),
                       "esn_dtype": "float64"},
            "figures": figures}
