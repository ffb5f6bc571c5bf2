"""experiments.seq2seq_dates (chapter 5): encoder-decoders with and without attention, tiny size."""
import numpy as np
import pytest

from rnnkit import seq2seq
from rnnkit.experiments import seq2seq_dates as E
from rnnkit.tasks import dates


def _count(tree):
    return sum(_count(v) if isinstance(v, dict) else v.size for v in tree.values())


def test_parameter_counts_are_the_models_and_differ_only_by_the_attention_layer():
    H = 32
    counts = E.param_counts(H)
    V_x, V_y = len(dates.SOURCE_VOCAB), len(dates.TARGET_VOCAB)
    plain = _count(seq2seq.init(np.random.default_rng(0), V_x, V_y, E.E_EMB, H))
    assert counts["no attention"] == counts["no attention, reversed source"] == plain
    assert counts["additive attention"] - plain == 2 * H * H + H          # W_a, U_a (H, A), v (A,)
    assert counts["dot-product attention"] - plain == H * H                # W_a (H, H)
    with pytest.raises(ValueError, match="kind"):
        E.train_model("transformer", H=4, B=2, steps=1, lr=1e-2, seed=0)


def test_training_batches_never_contain_a_held_out_day(monkeypatch):
    val, test = E.held_out_pairs(20, 30)
    held = frozenset(t for _, t in val + test)
    seen = []
    real = dates.make_batch

    def spy(pairs, *args, **kw):
        seen.extend(t for _, t in pairs)
        return real(pairs, *args, **kw)

    monkeypatch.setattr(E.dates, "make_batch", spy)
    # a held-out set that covers most draws forces the redraw loop to run
    many = frozenset(t for _, t in dates.date_pairs(np.random.default_rng([0, 1]), 400)) | held
    E.train_model("no attention", H=4, B=16, steps=3, lr=1e-2, seed=0, held_out=many)
    assert len(seen) == 3 * 16 and not set(seen) & many


def test_reversal_reaches_the_encoder():
    pairs = dates.date_pairs(np.random.default_rng(5), 6)
    params = E._init("no attention", 8, 0)
    fwd = E.token_accuracy(params, pairs, reverse=False)
    b, br = dates.make_batch(pairs), dates.make_batch(pairs, reverse_source=True)
    assert not np.array_equal(b.x_ids, br.x_ids)
    enc, enc_r = seq2seq.encode(params, b.x_ids, b.x_mask), seq2seq.encode(params, br.x_ids, br.x_mask)
    assert not np.allclose(enc.h_last, enc_r.h_last)
    assert all(0.0 <= a <= 1.0 for a in fwd)


def test_the_rate_is_picked_by_validation_exact_match_ties_to_the_smaller_rate():
    tries = [{"lr": 3e-3, "val_exact_match": 0.5}, {"lr": 1e-2, "val_exact_match": 0.9},
             {"lr": 3e-2, "val_exact_match": 0.9}]
    assert E.pick_rate(tries)["lr"] == 1e-2
    assert E.pick_rate(tries[:1] + tries[2:])["lr"] == 3e-2


def test_tiny_run_selects_a_rate_per_model_on_validation_and_scores_every_seed():
    out = E.run("tiny")
    fig, cfg = out["figures"], out["config"]
    assert set(fig["lr"]) == set(E.MODELS) and set(fig["summary"]) == set(E.MODELS)
    assert len(fig["sweep"]) == len(E.MODELS) * len(cfg["lrs"])
    assert len(fig["runs"]) == len(E.MODELS) * len(cfg["seeds"])
    assert fig["held_out_days"] <= cfg["n_val"] + cfg["n_test"]
    assert sum(fig["test_pairs_per_length_bin"]) == cfg["n_test"]
    for r in fig["runs"]:
        assert r["lr"] == fig["lr"][r["model"]] and r["lr"] in cfg["lrs"]
        assert 0.0 <= r["exact_match"] <= 1.0 and len(r["exact_match_per_length"]) == 6
        assert r["token_acc_teacher_forced"] >= 0 and np.isfinite(r["loss_last_50"])
        assert "_params" not in r
    for kind in E.MODELS:   # the chosen rate has the best validation exact match of seed 0
        tries = [s for s in fig["sweep"] if s["model"] == kind]
        chosen = next(s for s in tries if s["lr"] == fig["lr"][kind])
        assert chosen["val_exact_match"] == max(s["val_exact_match"] for s in tries)
        # seed 0 of the runs is the sweep's run at the chosen rate (same training, same loss)
        run0 = next(r for r in fig["runs"] if r["model"] == kind and r["seed"] == cfg["seeds"][0])
        assert run0["loss_last_50"] == chosen["loss_last_50"]
    with pytest.raises(ValueError, match="size"):
        E.run("huge")


def test_a_run_is_deterministic_and_the_seed_matters():
    a = E.train_model("additive attention", H=6, B=8, steps=4, lr=1e-2, seed=0)[1].losses
    b = E.train_model("additive attention", H=6, B=8, steps=4, lr=1e-2, seed=0)[1].losses
    c = E.train_model("additive attention", H=6, B=8, steps=4, lr=1e-2, seed=1)[1].losses
    assert a == b and a != c
