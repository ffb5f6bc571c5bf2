"""Tests for rnnkit.tasks.mqar: layout, distinct keys, targets recoverable from the pairs,
seeding, knobs and bad inputs; and the chapter 16 experiment at a tiny size."""
import numpy as np
import pytest

from rnnkit.tasks import mqar as mq


def lookup_answer(x, n_pairs, n_queries):
    """The answer an exact lookup table gives: for each query, the token after its key."""
    out = np.zeros((x.shape[0], n_queries), dtype=np.int64)
    for b in range(x.shape[0]):
        table = {x[b, 2 * i]: x[b, 2 * i + 1] for i in range(n_pairs)}
        out[b] = [table[q] for q in x[b, x.shape[1] - n_queries:]]
    return out


@pytest.mark.parametrize("n_pairs, n_queries, L", [(1, 1, None), (4, 2, 20), (8, None, None),
                                                   (16, 16, 64)])
def test_layout_and_targets(n_pairs, n_queries, L):
    rng = np.random.default_rng(0)
    x, y = mq.mqar(rng, 50, n_pairs=n_pairs, n_queries=n_queries, L=L, n_keys=16, n_values=8)
    Q = n_pairs if n_queries is None else n_queries
    assert x.shape == (50, L if L is not None else 2 * n_pairs + Q)
    assert y.shape == (50, Q) and x.dtype == np.int64 and y.dtype == np.int64
    keys, vals = x[:, 0:2 * n_pairs:2], x[:, 1:2 * n_pairs:2]
    assert np.all((keys >= 1) & (keys <= 16)) and np.all((vals >= 17) & (vals <= 24))
    assert all(len(set(row)) == n_pairs for row in keys)                  # distinct keys
    assert np.all(x[:, 2 * n_pairs:x.shape[1] - Q] == 0)                  # blanks in the gap
    queries = x[:, x.shape[1] - Q:]
    assert all(len(set(row)) == Q for row in queries)                     # distinct queries
    assert np.array_equal(lookup_answer(x, n_pairs, Q), y)


def test_seeded_and_uniform():
    a = mq.mqar(np.random.default_rng(3), 4, n_pairs=5)
    b = mq.mqar(np.random.default_rng(3), 4, n_pairs=5)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    _, y = mq.mqar(np.random.default_rng(4), 4000, n_pairs=4, n_keys=8, n_values=4)
    freq = np.bincount(y.ravel() - 9, minlength=4) / y.size
    assert np.all(np.abs(freq - 0.25) < 0.02)                              # chance = 1 / n_values
    assert mq.chance_accuracy(4) == 0.25 and mq.vocab_size(8, 4) == 13


def test_bad_inputs():
    rng = np.random.default_rng(5)
    with pytest.raises(ValueError, match="n_pairs"):
        mq.mqar(rng, 2, n_pairs=40, n_keys=32)
    with pytest.raises(ValueError, match="n_queries"):
        mq.mqar(rng, 2, n_pairs=4, n_queries=5)
    with pytest.raises(ValueError, match="L"):
        mq.mqar(rng, 2, n_pairs=4, L=10)
    with pytest.raises(ValueError, match="rng"):
        mq.mqar(0, 2)
    with pytest.raises(ValueError, match="B"):
        mq.mqar(rng, 0)


def test_experiment_models_match_in_size_and_train():
    from rnnkit.experiments import mqar as ex
    counts = {kind: ex.n_params(ex.build(kind, np.random.default_rng(0), V=65, D=32, n_heads=2,
                                         n_layers=2)) for kind in ex.KINDS}
    base = counts["attention"]
    assert all(abs(c - base) / base < 0.06 for c in counts.values()), counts
    r = ex.train("attention", n_pairs=2, D=16, n_heads=2, n_layers=2, steps=30, batch=16, lr=1e-2,
                 seed=0, task=dict(n_keys=8, n_values=8), n_test=64)
    assert r["losses"][-1] < r["losses"][0] and 0.0 <= r["test_acc"] <= 1.0
