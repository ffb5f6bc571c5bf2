"""Tests for rnnkit.tasks.state_tracking and the chapter 17 state-tracking experiment."""
import numpy as np
import pytest

from rnnkit.experiments import state_tracking as exp
from rnnkit.tasks import state_tracking as st
from rnnkit.tasks import synthetic


def test_parity_matches_synthetic_parity():
    x, y = synthetic.parity(np.random.default_rng(0), 5, 17)
    got = st.run_automaton(st.automaton("parity"), x[:, :, 0].astype(np.int64))
    np.testing.assert_array_equal(got, y)


def test_mod_sum_is_cumulative_sum_mod_m():
    task = st.sample(np.random.default_rng(1), "mod_sum", 6, 20, m=5)
    np.testing.assert_array_equal(task.y, np.cumsum(task.x, axis=1) % 5)
    assert task.n_symbols == 5 and task.n_states == 5


def test_flip_flop_remembers_last_write():
    x = np.array([[2, 1, 2, 2, 0, 2, 1]])
    np.testing.assert_array_equal(st.run_automaton(st.automaton("flip_flop"), x),
                                  [[0, 1, 1, 1, 0, 0, 1]])


def test_no_11_latches():
    x = np.array([[1, 0, 1, 1, 0, 0]])
    np.testing.assert_array_equal(st.run_automaton(st.automaton("no_11"), x), [[1, 0, 1, 2, 2, 2]])


def test_star_free_flags_and_groups():
    for name in st.AUTOMATA:
        a = st.automaton(name)
        perms = all(sorted(row) == list(range(a.delta.shape[1])) for row in a.delta)
        assert perms == (not a.star_free), name   # groups permute states, the star-free ones don't


def test_bad_inputs():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="name"):
        st.sample(rng, "dyck", 2, 3)
    with pytest.raises(ValueError, match="L"):
        st.sample(rng, "parity", 2, 0)
    with pytest.raises(ValueError, match="m"):
        st.automaton("mod_sum", m=1)
    with pytest.raises(ValueError, match="symbols in 0..1"):
        st.run_automaton(st.automaton("parity"), np.array([[0, 2]]))
    with pytest.raises(ValueError, match="integer"):
        st.run_automaton(st.automaton("parity"), np.zeros((2, 3)))


def test_experiment_delta_beta2_learns_parity_and_beta1_does_not():
    """The chapter's claim at a tiny size: one layer with beta in (0, 2) generalises parity beyond
    the training length, beta in (0, 1) stays near chance there."""
    kw = dict(steps=300, batch=32, L_train=12, L_test=40, n_test=128, lr=1e-2, width=8,
              n_heads=1, hidden=32)
    good = exp.train_one("parity", "DeltaNet (0,2)", 0, **kw)
    bad = exp.train_one("parity", "DeltaNet (0,1)", 0, **kw)
    assert good["acc_beyond"] > 0.9
    assert bad["acc_beyond"] < 0.6


def test_experiment_models_and_sizes():
    with pytest.raises(ValueError, match="model"):
        exp.init_model(np.random.default_rng(0), "GRU", 2, 2)
    with pytest.raises(ValueError, match="size"):
        exp.run("huge")
