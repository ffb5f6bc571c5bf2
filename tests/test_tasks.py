"""Tests for rnnkit.tasks: synthetic memory tasks and the shipped character corpus."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rnnkit.tasks import (CORPORA, CharCorpus, adding_problem, copy_task, copy_task_baseline_loss,
                          load_corpus, one_hot, parity)

seeds = st.integers(0, 2**32 - 1)


# ---------------------------------------------------------------------------------------------
# adding problem
# ---------------------------------------------------------------------------------------------

@given(B=st.integers(1, 8), L=st.integers(2, 40), seed=seeds)
def test_adding_problem_structure(B, L, seed):
    x, y = adding_problem(np.random.default_rng(seed), B, L)
    assert x.shape == (B, L, 2) and y.shape == (B, 1)
    assert x.dtype == np.float64 and y.dtype == np.float64
    u, m = x[..., 0], x[..., 1]
    assert np.all((u >= 0) & (u < 1))
    assert set(np.unique(m)) <= {0.0, 1.0}
    assert np.all(m.sum(axis=1) == 2)
    half = L // 2
    assert np.all(m[:, :half].sum(axis=1) == 1) and np.all(m[:, half:].sum(axis=1) == 1)
    np.testing.assert_allclose(y[:, 0], (u * m).sum(axis=1), rtol=1e-15)


def test_adding_problem_deterministic_and_baseline():
    a = adding_problem(np.random.default_rng(7), 4, 10)
    b = adding_problem(np.random.default_rng(7), 4, 10)
    c = adding_problem(np.random.default_rng(8), 4, 10)
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    _, y = adding_problem(np.random.default_rng(0), 20000, 20)
    assert abs(np.mean((y - 1.0) ** 2) - 1 / 6) < 0.01   # the documented trivial baseline
    x32, y32 = adding_problem(np.random.default_rng(0), 2, 4, dtype=np.float32)
    assert x32.dtype == np.float32 and y32.dtype == np.float32


# ---------------------------------------------------------------------------------------------
# copy task
# ---------------------------------------------------------------------------------------------

@given(B=st.integers(1, 6), lag=st.integers(1, 30), n_symbols=st.integers(1, 10),
       seq_len=st.integers(1, 12), seed=seeds)
def test_copy_task_structure(B, lag, n_symbols, seq_len, seed):
    x, y = copy_task(np.random.default_rng(seed), B, lag, n_symbols=n_symbols, seq_len=seq_len)
    T = lag + 2 * seq_len
    assert x.shape == y.shape == (B, T) and x.dtype == y.dtype == np.int64
    symbols = x[:, :seq_len]
    assert np.all((symbols >= 1) & (symbols <= n_symbols))
    assert np.all(x[:, seq_len:seq_len + lag - 1] == 0)                  # lag - 1 blanks
    assert np.all(x[:, seq_len + lag - 1] == n_symbols + 1)              # delimiter
    assert np.all(x[:, seq_len + lag:] == 0)                             # seq_len blanks
    assert np.all(y[:, :lag + seq_len] == 0)                             # blank targets
    np.testing.assert_array_equal(y[:, lag + seq_len:], symbols)         # then the copy
    assert np.sum(x == n_symbols + 1) == B and np.sum(y == n_symbols + 1) == 0


def test_copy_task_paper_setting_and_baseline():
    x, y = copy_task(np.random.default_rng(0), 3, 100)
    assert x.shape == (3, 120)
    assert copy_task_baseline_loss(8, 10, 100) == pytest.approx(10 * math.log(8) / 120, rel=1e-15)
    # The baseline is the cross-entropy of: certain blanks, then uniform over the 8 symbols.
    probs = np.zeros((120, 10))
    probs[:110, 0] = 1.0
    probs[110:, 1:9] = 1 / 8
    ce = -np.mean(np.log(probs[np.arange(120), y[0]]))
    assert ce == pytest.approx(copy_task_baseline_loss(8, 10, 100), rel=1e-12)
    a, b = copy_task(np.random.default_rng(5), 2, 3), copy_task(np.random.default_rng(5), 2, 3)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


# ---------------------------------------------------------------------------------------------
# parity
# ---------------------------------------------------------------------------------------------

@given(B=st.integers(1, 6), L=st.integers(1, 30), seed=seeds)
def test_parity_correct(B, L, seed):
    x, y = parity(np.random.default_rng(seed), B, L)
    assert x.shape == (B, L, 1) and x.dtype == np.float64 and y.shape == (B, L)
    assert y.dtype == np.int64
    bits = x[..., 0].astype(int)
    assert set(np.unique(bits)) <= {0, 1}
    for b in range(B):
        acc = 0
        for t in range(L):
            acc ^= bits[b, t]
            assert y[b, t] == acc
    x2, y2 = parity(np.random.default_rng(seed), B, L, running=False)
    assert np.array_equal(x2, x) and y2.shape == (B,)
    np.testing.assert_array_equal(y2, bits.sum(axis=1) % 2)


# ---------------------------------------------------------------------------------------------
# one_hot
# ---------------------------------------------------------------------------------------------

@given(shape=st.lists(st.integers(1, 4), min_size=0, max_size=3), V=st.integers(1, 9), seed=seeds)
def test_one_hot(shape, V, seed):
    ids = np.random.default_rng(seed).integers(0, V, size=shape)
    oh = one_hot(ids, V)
    assert oh.shape == (*shape, V) and oh.dtype == np.float64
    assert np.all(oh.sum(axis=-1) == 1)
    np.testing.assert_array_equal(np.argmax(oh, axis=-1), ids)


def test_one_hot_torch_and_dtype():
    oh = one_hot(torch.tensor([2, 0]), 3, dtype=np.float32)
    assert isinstance(oh, torch.Tensor) and oh.dtype == torch.float32
    assert oh.tolist() == [[0, 0, 1], [1, 0, 0]]
    assert one_hot([1], 2).tolist() == [[0.0, 1.0]]


# ---------------------------------------------------------------------------------------------
# corpus
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def genesis():
    return load_corpus("genesis")


def test_genesis_facts(genesis):
    assert len(genesis) == 197_499 and genesis.V == 70       # as stated in data/README.md
    assert genesis.text.startswith("THE FIRST BOOK OF MOSES, CALLED GENESIS\n")
    assert genesis.vocab == sorted(genesis.vocab) and genesis.itos == genesis.vocab
    assert all(genesis.stoi[c] == i for i, c in enumerate(genesis.itos))
    assert genesis.ids.dtype == np.int64 and genesis.ids.shape == (197_499,)
    assert "genesis" in CORPORA


def test_encode_decode_round_trip(genesis):
    s = "In the beginning God created the heaven and the earth.\n"
    ids = genesis.encode(s)
    assert ids.dtype == np.int64 and ids.shape == (len(s),)
    assert genesis.decode(ids) == s
    assert genesis.decode(ids.tolist()) == s
    assert genesis.decode(torch.from_numpy(ids)) == s
    assert genesis.decode(genesis.ids) == genesis.text
    assert genesis.encode("") .shape == (0,) and genesis.decode([]) == ""


@given(text=st.text(min_size=1, max_size=50))
def test_round_trip_any_corpus(text):
    c = CharCorpus(text)
    assert c.decode(c.encode(text)) == text and c.V == len(set(text))


def test_encode_unknown_characters(genesis):
    with pytest.raises(ValueError, match=r"text: characters not in the 'genesis' vocabulary: 'QX"):
        genesis.encode("Quixotic eXtra")


@pytest.mark.parametrize("frac", [0.1, 0.25, 0.5])
def test_split_sizes(genesis, frac):
    train, val = genesis.split(frac)
    N = len(genesis)
    assert len(val) == round(N * frac) and len(train) + len(val) == N
    assert np.array_equal(np.concatenate([train, val]), genesis.ids)   # contiguous, in order
    t2, v2 = genesis.split(frac)
    assert np.array_equal(train, t2) and np.array_equal(val, v2)


@given(B=st.integers(1, 8), L=st.integers(1, 64), split=st.sampled_from(["train", "val"]),
       seed=seeds)
def test_random_windows_shifted_by_one(genesis, B, L, split, seed):
    x, y = genesis.random_windows(np.random.default_rng(seed), B, L, split=split)
    assert x.shape == y.shape == (B, L) and x.dtype == y.dtype == np.int64
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    part = genesis.split()[0 if split == "train" else 1]
    part_text = genesis.decode(part)
    for b in range(B):
        window = genesis.decode(np.concatenate([x[b], y[b, -1:]]))   # L + 1 characters
        assert window in part_text


def test_random_windows_deterministic_and_tiny_corpus(genesis):
    a = genesis.random_windows(np.random.default_rng(3), 4, 16)
    b = genesis.random_windows(np.random.default_rng(3), 4, 16)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    c = CharCorpus("abcdefghij")            # train = "abcdefghi", val = "j"
    x, y = c.random_windows(np.random.default_rng(0), 5, 8)
    assert np.all(x == c.encode("abcdefgh")) and np.all(y == c.encode("bcdefghi"))
    with pytest.raises(ValueError, match="L: windows of L \\+ 1 = 10"):
        c.random_windows(np.random.default_rng(0), 1, 9)


# ---------------------------------------------------------------------------------------------
# bad inputs
# ---------------------------------------------------------------------------------------------

rng0 = np.random.default_rng(0)


@pytest.mark.parametrize("call,match", [
    (lambda: adding_problem(rng0, 0, 10), "B"),
    (lambda: adding_problem(rng0, 2, 1), "L: expected a length >= 2"),
    (lambda: adding_problem(0, 2, 10), "rng"),
    (lambda: copy_task(rng0, 2, 0), "lag"),
    (lambda: copy_task(rng0, 2, 5, n_symbols=0), "n_symbols"),
    (lambda: copy_task(rng0, 2, 5, seq_len=2.0), "seq_len"),
    (lambda: copy_task_baseline_loss(8, 0, 5), "seq_len"),
    (lambda: parity(rng0, 2, 0), "L"),
    (lambda: parity(rng0, 2, 3, running="yes"), "running"),
    (lambda: one_hot(np.array([0, 3]), 3), r"ids: expected values in \[0, 3\)"),
    (lambda: one_hot(np.array([-1]), 3), "ids"),
    (lambda: one_hot(np.array([0.0]), 3), "ids: expected an integer array"),
    (lambda: one_hot(np.array([0]), 0), "V"),
    (lambda: one_hot(np.array([0]), 2, dtype=np.int64), "dtype"),
    (lambda: load_corpus("shakespeare"), "name: expected one of"),
    (lambda: CharCorpus(""), "text"),
    (lambda: load_corpus().encode(5), "text"),
    (lambda: load_corpus().decode([0, 70]), r"ids: expected values in \[0, 70\)"),
    (lambda: load_corpus().decode([[0, 1]]), "ids: expected a 1-D"),
    (lambda: load_corpus().decode([0.5]), "ids: expected integers"),
    (lambda: load_corpus().split(0.0), "val_fraction"),
    (lambda: load_corpus().split(1.0), "val_fraction"),
    (lambda: load_corpus().random_windows(rng0, 2, 8, split="test"), "split"),
    (lambda: load_corpus().random_windows(rng0, 0, 8), "B"),
    (lambda: load_corpus().random_windows(1, 2, 8), "rng"),
])
def test_bad_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---- sequential digits ----
def test_sequential_digits_splits_shapes_and_range():
    from rnnkit.tasks import sequential_digits
    train, test = sequential_digits("train"), sequential_digits("test")
    assert train.x.shape == (1500, 64, 1) and test.x.shape == (297, 64, 1)
    assert set(np.unique(train.y)) == set(range(10))
    assert train.x.min() == 0.0 and train.x.max() == 1.0


def test_sequential_digits_resampling_keeps_the_image():
    from rnnkit.tasks import sequential_digits
    small, big = sequential_digits("test", side=8), sequential_digits("test", side=16)
    assert big.x.shape == (297, 256, 1)
    # averaging 2x2 blocks of the upsampled image gives back something close to the original
    pooled = big.x.reshape(297, 8, 2, 8, 2).mean(axis=(2, 4)).reshape(297, 64, 1)
    # bilinear smoothing blurs edges a little: correlation 0.98, mean error 0.07 of a 0.31 mean
    assert np.corrcoef(pooled.ravel(), small.x.ravel())[0, 1] > 0.95
    assert np.array_equal(big.y, small.y)


def test_sequential_digits_permutation_is_fixed_and_a_permutation():
    from rnnkit.tasks import sequential_digits
    a, b = sequential_digits("train", permute=True), sequential_digits("test", permute=True)
    assert np.array_equal(a.permutation, b.permutation)
    assert np.array_equal(np.sort(a.permutation), np.arange(64))
    plain = sequential_digits("train")
    assert np.array_equal(a.x, plain.x[:, a.permutation])


@pytest.mark.parametrize("kwargs, name", [({"split": "val"}, "split"), ({"side": 4}, "side")])
def test_sequential_digits_bad_input(kwargs, name):
    from rnnkit.tasks import sequential_digits
    with pytest.raises(ValueError, match=name):
        sequential_digits(**kwargs)


# ---- delayed recall ----
def test_delayed_recall_targets_are_the_bits_read_lag_steps_earlier():
    from rnnkit.tasks import delayed_recall
    x, y = delayed_recall(np.random.default_rng(0), 3, 20, 4)
    assert x.shape == (3, 20, 2) and y.shape == (3, 20) and y.dtype == np.int64
    assert np.array_equal(x.sum(-1), np.ones((3, 20)))
    assert np.array_equal(y[:, 4:], x[:, :-4].argmax(-1))       # y_t = bit at t - 4


@pytest.mark.parametrize("kwargs, name", [({"lag": 0}, "lag"), ({"L": 0}, "L"), ({"B": 0}, "B")])
def test_delayed_recall_bad_input(kwargs, name):
    from rnnkit.tasks import delayed_recall
    args = {"B": 2, "L": 5, "lag": 1, **kwargs}
    with pytest.raises(ValueError, match=name):
        delayed_recall(np.random.default_rng(0), **args)
