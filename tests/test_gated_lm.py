"""experiments.gated_lm (chapter 11): every recurrence in the same block, at a tiny size."""
import numpy as np
import pytest

from rnnkit.experiments import gated_lm as E


def test_models_share_the_block_and_match_the_grus_size():
    V = 70
    target = E.n_params(E.make_model("GRU", V, 32))
    for kind in E.KINDS:
        m = E.make_model(kind, V, E.matched_width(kind, V, target))
        assert abs(E.n_params(m) - target) / target < 0.03, kind
        assert len(m.norms) == 2 and len(m.layers) == 2          # the same pre-norm residual block
    with pytest.raises(ValueError, match="kind"):
        E.make_model("LSTM", V, 8)


def test_tiny_run_selects_on_one_stretch_and_reports_on_another():
    out = E.run("tiny", keep_models=True)
    fig, cfg = out["figures"], out["config"]
    assert set(fig["models"]) == set(E.KINDS)
    assert len(fig["runs"]) == len(E.KINDS) * len(cfg["seeds"])
    for kind in E.KINDS:
        tries = [s for s in fig["sweep"] if s["kind"] == kind]
        assert len(tries) == len(cfg["lrs"])
        assert min(tries, key=lambda s: s["select_bits"])["lr"] == fig["lr"][kind]
    for r in fig["runs"]:
        assert np.isfinite(r["val_bits"]) and r["lr"] == fig["lr"][r["kind"]]
        assert "model" not in r
    assert "models" not in E.run("tiny")["figures"]            # a recording holds no torch objects
    assert len(fig["hgrn_lower_bounds"]) == cfg["K"] and fig["hgrn_lower_bounds"][0] == 0.0
