"""experiments.lru_digits (chapter 10): the LRU against an LSTM in the same network, at a tiny size."""
import numpy as np
import pytest

from rnnkit import lru, seqclass
from rnnkit.experiments import lru_digits as E


def test_parameter_counts_match_the_models():
    H = 32
    assert E.layer_params("LRU", H) == seqclass.count_params(lru.init(np.random.default_rng(0), H, 2 * H))
    assert E.layer_params("LSTM", H) == seqclass.count_params(seqclass.lstm_init(np.random.default_rng(0), H))
    # the networks the chapter compares: equal up to the layers' H difference
    lru_n, lstm_n = E.model_params("LRU", H, 1), E.model_params("LSTM", H, 1)
    assert lstm_n - lru_n == H and abs(lstm_n / lru_n - 1) < 0.01
    with pytest.raises(ValueError, match="kind"):
        E.layer_params("GRU", 8)


def test_tiny_run_selects_a_rate_per_model_on_validation_and_runs_every_seed():
    out = E.run("tiny")
    fig, cfg = out["figures"], out["config"]
    assert cfg["pool"] == "mean" and cfg["r_max"] == E.R_MAX
    assert set(fig["lr"]) == set(E.MODELS) and all(lr in cfg["lrs"] for lr in fig["lr"].values())
    assert len(fig["sweep"]) == len(E.MODELS) * len(cfg["lrs"])
    assert len(fig["runs"]) == len(E.MODELS) * len(cfg["seeds"])
    for r in fig["runs"]:
        assert r["lr"] == fig["lr"][r["model"]] and r["n_params"] == fig["n_params"][r["model"]]
        assert 0.0 <= r["test_acc"] <= 1.0 and np.isfinite(r["losses"]).all()
        assert len(r["losses"]) == cfg["steps"]
    for kind in E.MODELS:      # the chosen rate has the best validation accuracy of seed 0
        tries = [s for s in fig["sweep"] if s["model"] == kind]
        assert max(s["val_acc"] for s in tries) == next(s["val_acc"] for s in tries
                                                        if s["lr"] == fig["lr"][kind])
    assert len(fig["lru_minus_lstm_per_seed"]) == len(cfg["seeds"])
    with pytest.raises(ValueError, match="size"):
        E.run("huge")


def test_a_run_is_deterministic():
    a, b = E.run("tiny")["figures"], E.run("tiny")["figures"]
    assert [r["losses"] for r in a["runs"]] == [r["losses"] for r in b["runs"]]
