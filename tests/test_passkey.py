"""Tests for rnnkit.tasks.passkey: layout of the needle, seeding, depth, chance level, bad input."""
import numpy as np
import pytest

from rnnkit.tasks import passkey as pk


@pytest.mark.parametrize("n_digits", [1, 3])
def test_layout(n_digits):
    x, y = pk.passkey(np.random.default_rng(0), 64, 20, n_digits=n_digits, n_values=5, n_filler=3)
    assert x.shape == (64, 20 + n_digits) and y.shape == (64, n_digits)
    key, query = pk.KEY(5, 3), pk.QUERY(5, 3)
    assert (x[:, 20:] == query).all() and (x[:, :20] != query).all()
    for row, target in zip(x, y):
        (pos,) = np.nonzero(row == key)
        assert len(pos) == 1                                           # exactly one needle
        assert (row[pos[0] + 1:pos[0] + 1 + n_digits] == target).all()
        rest = np.delete(row[:20], np.arange(pos[0], pos[0] + 1 + n_digits))
        assert ((rest >= 5) & (rest < 8)).all()                        # the rest is filler
    assert ((y >= 0) & (y < 5)).all() and pk.vocab_size(5, 3) == 10


def test_seeded_and_depth():
    a = pk.passkey(np.random.default_rng(1), 8, 30)
    b = pk.passkey(np.random.default_rng(1), 8, 30)
    assert all((u == v).all() for u, v in zip(a, b))
    for depth, want in ((0.0, 0), (1.0, 28), (0.5, 14)):
        x, _ = pk.passkey(np.random.default_rng(2), 4, 30, depth=depth)
        assert (np.argmax(x == pk.KEY(8, 4), axis=1) == want).all()
    x, _ = pk.passkey(np.random.default_rng(3), 4000, 30)
    pos = np.argmax(x == pk.KEY(8, 4), axis=1)
    assert pos.min() == 0 and pos.max() == 28                           # uniform over the slots


def test_chance():
    _, y = pk.passkey(np.random.default_rng(4), 20000, 10, n_values=4)
    assert abs((y == 0).mean() - pk.chance_accuracy(4)) < 0.02


def test_bad_input():
    rng = np.random.default_rng(5)
    with pytest.raises(ValueError, match="rng: expected a numpy.random.Generator"):
        pk.passkey(0, 2, 10)
    with pytest.raises(ValueError, match="L: expected a haystack of at least"):
        pk.passkey(rng, 2, 2, n_digits=2)
    with pytest.raises(ValueError, match="L: expected a positive integer"):
        pk.passkey(rng, 2, 0)
    with pytest.raises(ValueError, match="depth: expected None or a fraction"):
        pk.passkey(rng, 2, 10, depth=1.5)


def test_experiment_tiny_run():
    """experiments.titans at a tiny size: every model runs, parameter counts within 15% of the
    LSTM's, accuracies are fractions at every test length, the chunk part reports CPU times."""
    from rnnkit.experiments import titans as E
    cfg = dict(E.CONFIGS["small"], steps=2, test_lengths=[6, 12], n_test=16, chunk_sizes=[1, 4],
               seeds=[0])
    E.CONFIGS["_test"] = cfg
    try:
        out = E.run("_test")
    finally:
        del E.CONFIGS["_test"]
    models = out["figures"]["models"]
    assert set(models) == set(E.MODELS)
    target = out["config"]["target_params"]
    for m, r in models.items():
        assert abs(r["n_params"] - target) / target < 0.15, (m, r["n_params"], target)
        assert set(r["runs"][0]["acc"]) == {"6", "12"}
        assert all(0.0 <= a <= 1.0 for a in r["runs"][0]["acc"].values())
    assert set(out["figures"]["chunks"]) == {"1", "4"}
    assert all(t > 0 for c in out["figures"]["chunks"].values() for t in c["step_cpu_s"].values())
    with pytest.raises(ValueError, match="size: expected one of"):
        E.run("huge")
