"""experiments.charlm_compare (chapters 1-2): the gate recording of figure 2.4 reads the LSTM's own gates;
the cosine schedule, the convergence check and a tiny run that selects the rate per model."""
from __future__ import annotations

import numpy as np
import pytest

from rnnkit.training import charlm
from rnnkit import lstm
from rnnkit.experiments import charlm_compare as cc
from rnnkit.tasks import load_corpus


def test_gate_record_reads_the_lstms_own_gates():
    corpus = load_corpus("genesis")
    _, val = corpus.split(0.1)
    val = val[:400]
    params = charlm.init(np.random.default_rng(0), lstm, corpus.V, 7)
    cfg = {"trace_len": 30, "n_trace_units": 3}
    rec = cc.gate_record(params, corpus, val, cfg)
    trace, start = rec["trace"], rec["trace"]["start"]
    assert rec["H"] == 7 and rec["n_chars"] == 400
    assert corpus.decode(val)[start - 1] == "\n" and start > 100     # a verse after character 100
    assert trace["text"] == corpus.decode(val[start:start + 30])
    # the trace equals the gates of a fresh forward pass, state carried from the stretch's start
    _, _, cache = lstm.forward(params["cell"], charlm.one_hot(val[None], corpus.V), return_cache=True)
    units = np.asarray(trace["units"])
    f = cache.act[0, start:start + 30, 7:14][:, units]                 # block f is columns H:2H
    np.testing.assert_allclose(trace["f"], f, atol=1e-4)                # stored rounded to 4 places
    np.testing.assert_allclose(trace["c"], cache.c_all[0, start:start + 30][:, units], atol=1e-4)
    assert units.tolist() == sorted(np.argsort(-cache.act[0, :, 7:14].std(0))[:3].tolist())
    for k in "ifo":
        s = rec["summary"][k]
        assert 0 < s["mean"] < 1 and len(s["unit_mean"]) == 7
        assert 0 <= s["below_0.1"] <= 1 and 0 <= s["above_0.9"] <= 1


def test_cosine_rate_runs_from_the_peak_to_the_final_rate():
    rates = [cc.cosine_rate(1e-2, t, 101, 0.01) for t in range(1, 102)]
    assert rates[0] == 1e-2 and abs(rates[-1] - 1e-4) < 1e-15
    assert abs(rates[50] - 0.5 * (1e-2 + 1e-4)) < 1e-15                # half-way: the mean
    assert all(a > b for a, b in zip(rates, rates[1:]))                 # falls at every update


def test_scheduled_sets_the_rate_before_each_update():
    from rnnkit.training import train
    p, opt = {"w": np.ones(3)}, cc.Scheduled(train.SGD(lr=0.1), 5, 0.1)
    for _ in range(5):
        before = p["w"].copy()
        opt.step(p, {"w": np.ones(3)})
        np.testing.assert_allclose(before - p["w"], opt.rates[-1])     # SGD: the step is the rate
    np.testing.assert_allclose(opt.rates, [cc.cosine_rate(0.1, t, 5, 0.1) for t in range(1, 6)])


def test_convergence_reads_the_last_window_of_the_curve():
    curve = {"step": [10, 20, 30, 40, 50, 60, 70, 80, 90, 100],
             "val_bits": [3.0, 2.5, 2.2, 2.1, 2.05, 2.02, 2.0, 1.99, 1.985, 1.98]}
    c = cc.convergence(curve, 100, 0.1, 0.01)
    assert c["from_step"] == 90 and abs(c["change"] + 0.005) < 1e-12 and c["converged"]
    c = cc.convergence(curve, 100, 0.3, 0.01)                           # from step 70: -0.02
    assert c["from_step"] == 70 and abs(c["change"] + 0.02) < 1e-12 and not c["converged"]
    with pytest.raises(ValueError, match="curve"):
        cc.convergence(curve, 100, 0.15, 0.01)                          # no evaluation at step 85


def test_tiny_run_schedules_selects_per_model_and_records_convergence():
    out = cc.run("tiny")
    cfg, fig = out["config"], out["figures"]
    half_steps = cfg["steps"] // 2
    assert cfg["sweep_steps"] == half_steps
    for kind in ("elman", "lstm"):
        runs, best = fig["sweep"][kind], fig["best"][kind]
        assert [r["lr"] for r in runs] == cfg["lrs"]
        chosen = min(runs, key=lambda r: r["val_bits"])                 # lr chosen on validation
        assert best["lr"] == chosen["lr"] and best["H"] == cfg["widths"][kind]
        assert fig["rate_at_grid_edge"][kind] == (chosen["lr"] in (min(cfg["lrs"]), max(cfg["lrs"])))
        for r, steps in [(r, half_steps) for r in runs] + [(best, cfg["steps"])]:
            assert abs(r["lr_final"] - cfg["lr_final_ratio"] * r["lr"]) < 1e-12   # the schedule ran
            assert r["curve"]["step"][-1] == steps and r["curve"]["val_bits"][-1] == r["val_bits"]
            window = cc.convergence(r["curve"], steps, cfg["conv_window"], cfg["conv_threshold"])
            assert {k: r["convergence"][k] for k in window if k != "converged"} == \
                {k: v for k, v in window.items() if k != "converged"}
            assert abs(r["perplexity"] - 2 ** r["val_bits"]) < 1e-9
        # the doubling test: the chosen rate's sweep run is the schedule squeezed into half the steps
        conv, half = best["convergence"], fig["half_schedule"][kind]
        assert half["steps"] == half_steps and half["lr"] == best["lr"]
        assert half["val_bits"] == chosen["val_bits"] and half["val_bits"] != best["val_bits"]
        assert half["curve"]["step"][-1] == half_steps
        assert abs(conv["doubling"]["gain"] - (half["val_bits"] - best["val_bits"])) < 1e-12
        assert conv["settled"] == (abs(conv["change"]) < cfg["conv_threshold"])
        assert conv["converged"] == (conv["settled"] and conv["doubling"]["gain"] < cfg["doubling_threshold"])
        assert fig["converged"][kind] == conv["converged"]
    assert fig["lstm_gates"]["H"] == cfg["widths"]["lstm"]
    with pytest.raises(ValueError, match="size"):
        cc.run("huge")


def test_run_refuses_a_config_without_evaluations_at_the_convergence_windows(monkeypatch):
    monkeypatch.setitem(cc.CONFIGS, "odd", {**cc.CONFIGS["tiny"], "steps": 30, "eval_every": 4})
    with pytest.raises(ValueError, match="eval_every"):
        cc.run("odd")
