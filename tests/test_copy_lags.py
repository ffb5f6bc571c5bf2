"""experiments.copy_lags (chapter 6): five cells on the copy task at growing lags, at a tiny size."""
import numpy as np
import pytest

from rnnkit.experiments import copy_lags as E


def test_parameter_counts_are_the_models_and_the_large_widths_are_matched():
    for name in E.CELLS:
        p = E._init(name, 32, 0)
        assert E.n_params(name, 32) == sum(v.size for d in p.values() for v in d.values())
    # the chapter's SCRN at width 32: 24 hidden + 8 context units, readout on [h | s]
    p = E._init("SCRN", 32, 0)
    assert p["cell"]["W_hh"].shape == (24, 24) and p["cell"]["W_xs"].shape == (E.V, 8)
    assert p["readout"]["W_hy"].shape == (32, E.V)
    # the orthogonal cell's K enters only as K - K^T: H (H + 1) / 2 of its entries are redundant
    assert E.n_params("orthogonal", 10) - E.free_params("orthogonal", 10) == 55
    widths = E.CONFIGS["large"]["widths"]
    target = E.free_params("LSTM", 32)
    assert widths["LSTM"] == widths["LEM"] == 32
    for name in E.CELLS:
        assert abs(E.free_params(name, widths[name]) / target - 1) < 0.03, name
    assert all(w == 32 for w in E.CONFIGS["small"]["widths"].values())     # the chapter's live run
    with pytest.raises(ValueError, match="name"):
        E.model("GRU", 8)


def test_tiny_run_selects_a_rate_per_cell_and_lag_on_validation_and_runs_every_seed():
    out = E.run("tiny")
    fig, cfg = out["figures"], out["config"]
    lag0 = cfg["select_lags"][0]
    for name in E.CELLS:
        ran = [lag for lag in cfg["lags"] if name in fig["summary"][str(lag)]]
        assert sorted(fig["lr"][name]) == sorted(str(lag) for lag in ran)
        for lag in ran:
            runs = [r for r in fig["runs"] if r["cell"] == name and r["lag"] == lag]
            assert [r["seed"] for r in runs] == cfg["seeds"]
            assert all(r["lr"] == fig["lr"][name][str(lag)] for r in runs)
            tries = [s for s in fig["sweep"] if s["cell"] == name and s["lag"] == lag]
            if lag in cfg["select_lags"]:   # a sweep on validation with the first seed, whose best run is kept
                assert sorted(s["lr"] for s in tries) == sorted(cfg["lrs"])
                best = max(tries, key=lambda s: (s["val_acc"], -s["val_loss"]))
                assert best["lr"] == fig["lr"][name][str(lag)]
                assert runs[0]["val_loss"] == best["val_loss"] and runs[0]["test_acc"] == best["test_acc"]
            else:                           # the rate of the latest selection lag (below the first: the first's)
                assert not tries
                source = max([k for k in cfg["select_lags"] if k <= lag], default=lag0)
                assert fig["lr"][name][str(lag)] == fig["lr"][name][str(source)]
        for r in fig["runs"]:
            assert r["n_params"] == fig["n_params"][r["cell"]] and r["width"] == cfg["widths"][r["cell"]]
            assert 0.0 <= r["test_acc"] <= 1.0 and np.isfinite(r["test_loss"]) and r["lr"] in cfg["lrs"]
        # every lag is either run with every seed or skipped after a lag at chance
        stopped = False
        for lag in cfg["lags"]:
            runs = [r for r in fig["runs"] if r["cell"] == name and r["lag"] == lag]
            skipped = [s for s in fig["skipped"] if s["cell"] == name and s["lag"] == lag]
            assert (len(runs), len(skipped)) == ((0, 1) if stopped else (len(cfg["seeds"]), 0))
            if runs:
                summary = fig["summary"][str(lag)][name]
                assert summary["test_acc_per_seed"] == [r["test_acc"] for r in runs]
                assert summary["test_acc_min"] <= summary["test_acc_mean"] <= summary["test_acc_max"]
                stopped = lag >= lag0 and max(r["val_acc"] for r in runs) < cfg["stop_below"]
    assert fig["skipped"], "the tiny run is meant to exercise the stopping rule"
    assert any(str(cfg["select_lags"][1]) in fig["lr"][n] for n in E.CELLS), "and a second selection lag"
    with pytest.raises(ValueError, match="size"):
        E.run("huge")


def test_seeds_change_the_run_and_a_run_is_deterministic():
    a = E.train_one("LEM", 4, width=8, steps=3, lr=1e-2, seed=0)[1]
    b = E.train_one("LEM", 4, width=8, steps=3, lr=1e-2, seed=1)[1]
    c = E.train_one("LEM", 4, width=8, steps=3, lr=1e-2, seed=0)[1]
    assert a["val_loss"] != b["val_loss"]
    assert {k: v for k, v in a.items() if k != "wall_s"} == {k: v for k, v in c.items() if k != "wall_s"}


def test_validation_and_test_sets_differ():
    (xv, _), (xt, _) = E.eval_sets(10)
    assert xv.shape == xt.shape == (E.N_EVAL, 12) and not np.array_equal(xv, xt)
