"""experiments.gru_compare (chapter 3): Elman, GRU and LSTM at matched sizes, at a tiny size."""
import numpy as np
import pytest

from rnnkit.training import charlm, layers
from rnnkit.experiments import gru_compare as E


def test_parameter_counts_are_the_cells_own_and_widths_are_the_closest():
    rng = np.random.default_rng(0)
    for kind in E.MODELS:
        for D, H, n_out in [(2, 5, 1), (7, 3, 7)]:
            cell = E.cell_of(kind).init(rng, D, H)
            readout = layers.linear_init(rng, H, n_out)
            n = sum(v.size for v in cell.values()) + sum(v.size for v in readout.values())
            assert E.total_params(kind, D, H, n_out) == n
    widths = E.matched_widths(2, 1, 24)
    assert widths["GRU"] == 24
    target = E.total_params("GRU", 2, 24, 1)
    for kind, H in widths.items():   # no other width is closer to the GRU's count
        gap = abs(E.total_params(kind, 2, H, 1) - target)
        assert gap <= min(abs(E.total_params(kind, 2, h, 1) - target) for h in (H - 1, H + 1))
        assert gap / target < 0.05
    with pytest.raises(ValueError, match="kind"):
        E.cell_params("S4", 2, 3)


def test_the_lstm_gets_the_configured_forget_bias_and_the_gru_its_placement():
    r = E.train_adding("LSTM", 4, H=3, steps=1, lr=1e-9, B=2, n_eval=4, lstm_forget_bias=5.0)
    b = r["_params"]["cell"]["b"]
    np.testing.assert_allclose(b[3:6], 5.0, atol=1e-6)           # gate order i, f, g, o
    g = E.train_adding("GRU", 4, H=3, steps=1, lr=1e-2, B=2, n_eval=4, reset_after=False)
    assert "b_hn" not in g["_params"]["cell"]


def test_tiny_run_chooses_each_rate_on_validation_and_scores_every_seed():
    out = E.run("tiny")
    cfg, fig = out["config"], out["figures"]
    add, lm = fig["adding"], fig["lm"]
    ac, lc = cfg["adding"], cfg["lm"]
    assert len(add["sweep"]) == len(E.MODELS) * len(ac["lags"]) * len(ac["lrs"])
    assert len(add["runs"]) == len(E.MODELS) * len(ac["lags"]) * len(ac["seeds"])
    for r in add["runs"]:
        assert r["lr"] == add["lr"][f"{r['model']} L={r['L']}"]
        assert r["n_params"] == add["n_params"][r["model"]] and r["H"] == add["H"][r["model"]]
        assert 0 <= r["test_acc"] <= 1 and np.isfinite(r["test_mse"])
    for key, chosen in add["lr"].items():   # the chosen rate has the lowest validation MSE
        kind, L = key.split(" L=")
        tries = [s for s in add["sweep"] if s["model"] == kind and s["L"] == int(L)]
        assert min(s["val_mse"] for s in tries) == next(s["val_mse"] for s in tries
                                                        if s["lr"] == chosen)
        assert len(add["summary"][key]["test_mse_per_seed"]) == len(ac["seeds"])
    assert len(lm["runs"]) == len(E.MODELS) * len(lc["seeds"])
    for kind in E.MODELS:
        tries = [s for s in lm["sweep"] if s["model"] == kind]
        assert min(s["select_bits"] for s in tries) == next(s["select_bits"] for s in tries
                                                            if s["lr"] == lm["lr"][kind])
    assert len(lm["summary"]["lowest_per_seed"]) == len(lc["seeds"])
    with pytest.raises(ValueError, match="size"):
        E.run("huge")


def test_selection_and_report_data_are_disjoint():
    from rnnkit.tasks import adding_problem, load_corpus
    _, val_ids = load_corpus("genesis").split(0.1)
    sel, rep = E.lm_windows(val_ids, 3, 0), E.lm_windows(val_ids, 3, 1)
    np.testing.assert_array_equal(sel[0].ravel(), val_ids[:3 * E.WINDOW])
    np.testing.assert_array_equal(rep[0].ravel(), val_ids[3 * E.WINDOW:6 * E.WINDOW])
    np.testing.assert_array_equal(sel[1].ravel(), val_ids[1:3 * E.WINDOW + 1])
    xv, _ = adding_problem(np.random.default_rng(2000 + 8), 5, 8)
    xt, _ = adding_problem(np.random.default_rng(1000 + 8), 5, 8)
    assert not np.allclose(xv, xt)
    p = E.train_adding("GRU", 8, H=3, steps=2, lr=1e-2, B=2, n_eval=50)
    assert p["val_mse"] != p["test_mse"]
    assert charlm.one_hot(sel[0], 70).shape == (3, E.WINDOW, 70)


def test_a_run_is_deterministic():
    a, b = E.run("tiny")["figures"], E.run("tiny")["figures"]
    assert [r["losses"] for r in a["adding"]["runs"]] == [r["losses"] for r in b["adding"]["runs"]]
    assert [r["report_bits"] for r in a["lm"]["runs"]] == [r["report_bits"] for r in b["lm"]["runs"]]
