"""experiments.lmu_digits (chapter 12): the LMU against an LSTM of the same size, at a tiny size."""
import numpy as np
import pytest

from rnnkit.experiments import lmu_digits as E


def test_parameter_counts_match_the_models_and_each_other():
    assert E.n_params("LMU", 32, 32) == 1 + 32 + 32 + 32 + 32 * 32 + 32 * 32 + 32 * 10 + 10
    H = E.matched_lstm_width(32, 32)
    assert H == 23
    lmu_n, lstm_n = E.n_params("LMU", 32, 32), E.n_params("LSTM", H)
    assert abs(lstm_n - lmu_n) / lmu_n < 0.05
    assert all(abs(E.n_params("LSTM", h) - lmu_n) >= abs(lstm_n - lmu_n) for h in range(1, 64))
    with pytest.raises(ValueError, match="kind"):
        E.n_params("GRU", 8)


def test_tiny_run_selects_a_rate_per_model_and_runs_every_seed():
    out = E.run("tiny")
    fig, cfg = out["figures"], out["config"]
    assert set(fig["lr"]) == set(E.MODELS) and all(lr in cfg["lrs"] for lr in fig["lr"].values())
    assert len(fig["sweep"]) == len(E.MODELS) * len(cfg["lrs"])
    assert len(fig["runs"]) == len(E.MODELS) * len(cfg["seeds"])
    for r in fig["runs"]:
        assert r["lr"] == fig["lr"][r["model"]] and r["n_params"] == fig["n_params"][r["model"]]
        assert len(r["test_acc"]) == cfg["epochs"] and 0.0 <= r["final_test_acc"] <= 1.0
        assert np.isfinite(r["losses"]).all()
    # the chosen rate is the one with the lowest last-epoch training loss of seed 0
    for kind in E.MODELS:
        tries = [s for s in fig["sweep"] if s["model"] == kind]
        assert min(tries, key=lambda s: s["last_epoch_loss"])["lr"] == fig["lr"][kind]
    with pytest.raises(ValueError, match="size"):
        E.run("huge")
