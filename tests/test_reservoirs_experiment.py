"""experiments.reservoirs (chapter 7): ESNs on Mackey-Glass and Lorenz and a GRU, at a tiny size."""
import numpy as np
import pytest
import torch

from rnnkit import esn
from rnnkit.experiments import reservoirs as E


def test_parameter_counts_match_the_models():
    for H in (4, 64):
        net = E.gru_predictor(H)
        assert E.gru_params(H) == sum(p.numel() for p in net.parameters())
    params = esn.init(np.random.default_rng(0), 1, 30)
    n = E.esn_params(30)
    assert n["fixed"] == sum(params[k].size for k in ("W_in", "W", "b"))
    W_out = esn.fit_readout(np.ones((1, 10, 30)) + np.arange(10)[None, :, None], np.ones((1, 10, 1)),
                            inputs=np.ones((1, 10, 1)))
    assert n["trained"] == W_out.size


def test_gru_scores_one_pass_equals_a_pass_per_start():
    """The closed loop starts from the hidden state after s_0 .. s_{t0-1}: read from one pass over
    the series, it must equal running the GRU on each prefix (the chapter's earlier recipe)."""
    mg = E.mg_series(300)
    net, _, _ = E.gru_train(mg, 4, 2, 1e-2, train=200, batch=4, window=30, warmup=5)
    series = torch.tensor(mg, dtype=torch.float32)
    starts = np.array([150, 170, 190])
    with torch.no_grad():
        z, _ = net.gru(series[None, :-1, None])
        for s in starts:
            _, h = net(series[None, :s, None])
            assert torch.allclose(z[0, s - 1], h[0, 0], atol=1e-6)
        u, hs = series[starts][:, None, None], torch.stack([net(series[None, :s, None])[1][0, 0]
                                                            for s in starts])[None]
        for _ in range(10):
            u, hs = net(u, hs)
        ref = np.sqrt(np.mean((u[:, 0, 0].numpy() - mg[starts + 10]) ** 2) / mg.var())
    _, got = E.gru_scores(net, mg, 200, 280, starts, horizon=10)
    assert abs(got - ref) < 1e-5 * max(ref, 1.0)
    # one closed-loop step from t_0 is the teacher-forced prediction of s_{t0+1}
    with torch.no_grad():
        pred = net(series[None, :-1, None])[0][0, :, 0].numpy()
    one = np.sqrt(np.mean((pred[starts] - mg[starts + 1]) ** 2) / mg.var())
    assert E.gru_scores(net, mg, 200, 280, starts, horizon=1)[1] == pytest.approx(one, rel=1e-5)


def test_mg_esn_scores_what_it_predicts():
    mg = E.mg_series(700)
    one, err, free, truth, params, W_out, x = E.mg_esn(mg, 20, seed=3, train=400, washout=50,
                                                       test=(400, 600), starts=np.array([400, 450]),
                                                       horizon=10, return_run=True)
    assert free.shape == truth.shape == (2, 10, 1) and x.shape == (1, 700, 20)
    assert np.allclose(truth[:, -1, 0], mg[[410, 460]])          # target of step 10 from t_0
    assert err == pytest.approx(np.sqrt(np.mean((free - truth)[:, -1, 0] ** 2) / mg.var()))
    assert 0 < one < 0.5                                         # a 20-unit ESN predicts one step


def test_tiny_run_selects_on_validation_and_runs_every_seed():
    out = E.run("tiny")
    cfg, fig = out["config"], out["figures"]
    m, g, lz = fig["mg_esn"], fig["gru"], fig["lorenz"]
    assert [s["ridge"] for s in m["sweep"]] == cfg["mg"]["ridges"]
    assert [s["lr"] for s in g["sweep"]] == cfg["gru"]["lrs"]
    # the chosen value has the best validation NRMSE_84 at seed 0
    assert m["ridge"] == min(m["sweep"], key=lambda s: s["val_nrmse84"])["ridge"]
    assert g["lr"] == min(g["sweep"], key=lambda s: s["val_nrmse84"])["lr"]
    assert [r["seed"] for r in m["runs"]] == [r["seed"] for r in g["runs"]] == cfg["mg"]["seeds"]
    assert all(r["ridge"] == m["ridge"] for r in m["runs"]) and all(r["lr"] == g["lr"] for r in g["runs"])
    for r in m["runs"] + g["runs"]:
        assert np.isfinite(r["one_step"]) and np.isfinite(r["nrmse84"])
        assert len(r["nrmse_by_step"]) == cfg["mg"]["horizon"]      # its last entry is NRMSE_84
        assert r["nrmse_by_step"][-1] == pytest.approx(r["nrmse84"], rel=1e-6)
    assert g["n_params"]["trained"] == E.gru_params(cfg["gru"]["H"])
    assert m["n_params"] == E.esn_params(cfg["mg"]["N"])
    horizon_lyap = cfg["lz"]["horizon"] * cfg["lz"]["dt"] * E.LORENZ_LYAPUNOV
    for r in lz["runs"]:
        assert len(r["vt_lyap"]) == cfg["lz"]["n_starts"]
        assert all(0 <= v <= horizon_lyap + 1e-12 for v in r["vt_lyap"])
    assert fig["comparison"]["gru_over_esn_nrmse84"] == pytest.approx(
        g["nrmse84"]["mean"] / m["nrmse84"]["mean"])
    with pytest.raises(ValueError, match="size"):
        E.run("huge")


def test_the_validation_stretch_is_not_the_test_stretch():
    for size in ("tiny", "large"):
        m = E.CONFIGS[size]["mg"]
        assert m["train"] <= m["test_lo"] < m["test_hi"] <= m["val_lo"] < m["val_hi"] <= m["T"]
        last_start = m["stride"] * (m["n_starts"] - 1) + m["horizon"]
        assert m["test_lo"] + last_start <= m["test_hi"] and m["val_lo"] + last_start <= m["val_hi"]


def test_a_run_is_deterministic():
    a, b = E.run("tiny")["figures"], E.run("tiny")["figures"]
    for part in ("mg_esn", "gru"):            # everything but the CPU seconds
        assert [(r["one_step"], r["nrmse84"]) for r in a[part]["runs"]] == \
            [(r["one_step"], r["nrmse84"]) for r in b[part]["runs"]]
    assert [r["losses_every_50"] for r in a["gru"]["runs"]] == \
        [r["losses_every_50"] for r in b["gru"]["runs"]]
