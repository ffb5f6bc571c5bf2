"""experiments.rtrl_delay (chapter 8): RTRL against truncated BPTT on a delay, at a tiny size."""
import numpy as np
import pytest

from rnnkit import elman, rtrl, tasks
from rnnkit.training import layers
from rnnkit.experiments import rtrl_delay as E


def test_learners_straddle_the_lag_and_share_one_network():
    assert E.learners(6) == {"RTRL": ("rtrl", 1), "TBPTT, window 1": ("tbptt", 1),
                             "TBPTT, window 6": ("tbptt", 6), "TBPTT, window 7": ("tbptt", 7)}
    p, r = E._init(0, 5)
    assert E.n_params(5) == sum(v.size for v in (*p.values(), *r.values()))


def test_seed_zero_is_the_chapters_run():
    """Chapter 8 drew its stream from default_rng(SEED + 1) and its weights from SEED + 2."""
    x, y = tasks.delayed_recall(E.rngs(0)[0], 8, 50, 6)
    x_ch, y_ch = tasks.delayed_recall(np.random.default_rng(1), 8, 50, 6)
    assert np.array_equal(x, x_ch) and np.array_equal(y, y_ch)
    p, _ = E._init(0, 16)
    assert np.array_equal(p["W_hh"], elman.init(np.random.default_rng(2), 2, 16)["W_hh"])


def test_frozen_errors_score_the_fixed_network():
    rng = np.random.default_rng(3)
    params, readout = elman.init(rng, 2, 4), layers.linear_init(rng, 4, 2)
    x, y = tasks.delayed_recall(rng, 3, 30, 2)
    got = E.frozen_errors(params, readout, x, y, lag=2)
    # the same loss from train_online with lr = 0 (its per-step losses, steps 2.. on)
    ref = rtrl.train_online(params, readout, x, y, 0.0, "rtrl").losses[2:].mean()
    assert got["test_loss"] == pytest.approx(ref, rel=1e-12)
    h_all, _ = elman.forward(params, x)
    wrong = (layers.linear(readout, h_all).argmax(-1) != y)[:, 2:]
    assert got["test_bit_error"] == pytest.approx(wrong.mean())


def test_tiny_run_selects_a_rate_per_learner_on_validation_and_runs_every_seed():
    out = E.run("tiny")
    fig, cfg = out["figures"], out["config"]
    names = list(E.learners(cfg["lag"]))
    assert fig["learners"] == names and set(fig["lr"]) == set(names) == set(fig["summary"])
    assert len(fig["sweep"]) == len(names) * len(cfg["lrs"])
    assert len(fig["runs"]) == len(names) * len(cfg["seeds"])
    for name in names:  # the chosen rate has the lowest final loss on the validation stream
        tries = [s for s in fig["sweep"] if s["learner"] == name]
        assert min(s["final_loss"] for s in tries) == next(s["final_loss"] for s in tries
                                                           if s["lr"] == fig["lr"][name])
    for r in fig["runs"]:
        assert r["lr"] == fig["lr"][r["learner"]] and r["seed"] in cfg["seeds"]
        assert len(r["curve"]) == cfg["curve_points"] and np.isfinite(r["curve"]).all()
        assert 0.0 <= r["test_bit_error"] <= 1.0 and r["cpu_ms_per_step"] > 0
    s = fig["summary"]["RTRL"]
    assert s["final_loss_min"] <= s["final_loss_mean"] <= s["final_loss_max"]
    with pytest.raises(ValueError, match="size"):
        E.run("huge")


def test_the_window_reaches_the_learner():
    cfg = E.CONFIGS["tiny"]
    a, b = (E.train_one(cfg, name, 0.1, 0)["final_loss"] for name in ("TBPTT, window 1", "TBPTT, window 3"))
    assert a != b


def test_a_run_is_deterministic():
    a, b = E.run("tiny")["figures"], E.run("tiny")["figures"]
    assert [r["curve"].tolist() for r in a["runs"]] == [r["curve"].tolist() for r in b["runs"]]
