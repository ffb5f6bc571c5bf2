"""Synthetic sequence tasks that probe memory: the adding problem, the copy task and parity.

Every generator takes a NumPy ``Generator`` first, so a seeded ``rng`` gives the same data on
every machine, and returns NumPy arrays, batch-first: inputs (B, L, ...) and targets.

    adding problem   x_t = (u_t, m_t),  u_t ~ U(0, 1),  m has exactly two ones at i < L//2 <= j;
                     y = u_i + u_j.  Predicting 1.0 always gives MSE Var(u_i + u_j) = 2/12 ~ 0.167.
    copy task        remember seq_len symbols over a gap of lag steps and replay them after a
                     delimiter; memoryless baseline cross-entropy seq_len log(n_symbols) / T.
    parity           y_t = x_1 xor ... xor x_t over random bits (running) or only y_L.

References:
    S. Hochreiter and J. Schmidhuber, "Long Short-Term Memory", Neural Computation 1997
    (experiments 4 and 2: the adding problem and the noise-free copy-like tasks).
    Q. V. Le, N. Jaitly and G. E. Hinton, "A Simple Way to Initialize Recurrent Networks of
    Rectified Linear Units", arXiv:1504.00941, 2015, section 4.1 (the adding-problem variant here).
    M. Arjovsky, A. Shah and Y. Bengio, "Unitary Evolution Recurrent Neural Networks", ICML 2016,
    section 4.1 (the copy task and its baseline).
    M. Minsky and S. Papert, "Perceptrons", 1969 (parity); Hochreiter and Schmidhuber 1997 use
    temporal-order and parity-like tasks too.
"""
from __future__ import annotations

import math

import array_api_compat
import numpy as np

from ..core.backend import xp_of
from ..core.checks import check_positive_int

__all__ = ["adding_problem", "copy_task", "copy_task_baseline_loss", "parity", "delayed_recall",
           "one_hot"]


def _check_rng(rng) -> None:
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng: expected a numpy.random.Generator (np.random.default_rng(seed)), "
                         f"got {type(rng).__name__}")


def adding_problem(rng: np.random.Generator, B: int, L: int, dtype=np.float64):
    """A batch of the adding problem, in the version of Le, Jaitly and Hinton (2015).

    Channel 0 holds values u_t ~ U(0, 1); channel 1 is 0 except for two ones, the first at a
    position i drawn uniformly from the first half [0, L//2), the second at j from the second
    half [L//2, L) (for odd L the second half is one step longer). The target is u_i + u_j.

    Trivial baseline: always predicting 1.0 = E[u_i + u_j] gives MSE Var(u_i) + Var(u_j) = 1/6
    ~ 0.167; a model has learned the task only when its MSE is far below that.

    Args:
        rng: NumPy random generator.  B: batch size >= 1.  L: sequence length >= 2.
        dtype: floating dtype of x and y.
    Returns:
        x: (B, L, 2) values and markers.  y: (B, 1) sums of the two marked values.
    """
    _check_rng(rng)
    check_positive_int("B", B)
    check_positive_int("L", L)
    if L < 2:
        raise ValueError(f"L: expected a length >= 2 (one marker in each half), got {L}")
    half = L // 2
    u = rng.uniform(0.0, 1.0, size=(B, L))                 # (B, L)
    i = rng.integers(0, half, size=B)                      # (B,) first marker, first half
    j = rng.integers(half, L, size=B)                      # (B,) second marker, second half
    marks = np.zeros((B, L))                               # (B, L)
    rows = np.arange(B)
    marks[rows, i] = 1.0
    marks[rows, j] = 1.0
    x = np.stack([u, marks], axis=-1).astype(dtype)        # (B, L, 2)
    y = (u[rows, i] + u[rows, j])[:, None].astype(dtype)   # (B, 1)
    return x, y


def copy_task(rng: np.random.Generator, B: int, lag: int, n_symbols: int = 8, seq_len: int = 10):
    """A batch of the copy task of Arjovsky, Shah and Bengio (2016).

    Token ids: 0 = blank, 1 ... n_symbols = data symbols, n_symbols + 1 = delimiter ("go").
    With T = lag + 2 * seq_len steps:

        input   s_1 ... s_seq_len | 0 x (lag - 1) | delim | 0 x seq_len
        target  0 x (lag + seq_len)                       | s_1 ... s_seq_len

    so the symbols must be held for lag steps and replayed after the delimiter. The paper's
    setting is n_symbols=8, seq_len=10, lag = its T (100 ... 2000).

    Args:
        rng: NumPy random generator.  B: batch size >= 1.  lag: gap length >= 1.
        n_symbols: number of data symbols >= 1.  seq_len: number of symbols to copy >= 1.
    Returns:
        x_ids: (B, T) int64 input ids.  y_ids: (B, T) int64 target ids, both in [0, n_symbols+1].
    """
    _check_rng(rng)
    for name, v in (("B", B), ("lag", lag), ("n_symbols", n_symbols), ("seq_len", seq_len)):
        check_positive_int(name, v)
    T = lag + 2 * seq_len
    symbols = rng.integers(1, n_symbols + 1, size=(B, seq_len))   # (B, seq_len)
    x = np.zeros((B, T), dtype=np.int64)                          # (B, T)
    y = np.zeros((B, T), dtype=np.int64)                          # (B, T)
    x[:, :seq_len] = symbols
    x[:, seq_len + lag - 1] = n_symbols + 1                       # the delimiter
    y[:, lag + seq_len:] = symbols
    return x, y


def copy_task_baseline_loss(n_symbols: int = 8, seq_len: int = 10, lag: int = 100) -> float:
    """Cross-entropy (nats per step) of the memoryless baseline for ``copy_task``.

    The baseline predicts blank (with certainty) for the first lag + seq_len steps and a uniform
    guess over the n_symbols data symbols for the last seq_len, so with T = lag + 2 seq_len

        baseline = seq_len * log(n_symbols) / T,

    which is Arjovsky et al.'s 10 log(8) / (T + 20) in their notation (their T is our lag).
    Models that have not learned to remember plateau here.

    Returns:
        The loss averaged over all T steps, a float (nats).
    """
    for name, v in (("n_symbols", n_symbols), ("seq_len", seq_len), ("lag", lag)):
        check_positive_int(name, v)
    return seq_len * math.log(n_symbols) / (lag + 2 * seq_len)


def parity(rng: np.random.Generator, B: int, L: int, running: bool = True):
    """Random bit sequences and their parity.

    Args:
        rng: NumPy random generator.  B: batch size >= 1.  L: sequence length >= 1.
        running: if True the target at every step is the parity so far, y_t = x_1 xor ... xor x_t;
            otherwise only the parity of the whole sequence.
    Returns:
        x: (B, L, 1) float64 bits in {0., 1.}.
        y: (B, L) int64 if running, else (B,) int64, values in {0, 1}.
    """
    _check_rng(rng)
    check_positive_int("B", B)
    check_positive_int("L", L)
    if not isinstance(running, bool):
        raise ValueError(f"running: expected True or False, got {running!r}")
    bits = rng.integers(0, 2, size=(B, L))                  # (B, L)
    y = np.cumsum(bits, axis=1) % 2                         # (B, L) running parity
    x = bits[:, :, None].astype(np.float64)                 # (B, L, 1)
    return (x, y.astype(np.int64)) if running else (x, y[:, -1].astype(np.int64))


def delayed_recall(rng: np.random.Generator, B: int, L: int, lag: int):
    """Bit streams whose target at every step is the bit read ``lag`` steps earlier.

    The task of chapter 8's online-learning experiment: a learner that updates after every step
    must carry each bit for ``lag`` steps. Chance level is ln 2 nats per step.

    Args:
        rng: NumPy random generator.  B: number of streams >= 1.  L: steps >= 1.  lag: delay >= 1.
    Returns:
        x: (B, L, 2) float64 one-hot bits.  y: (B, L) int64, y[:, t] = the bit read at t - lag
        (the first ``lag`` targets are bits drawn before the stream starts).
    """
    _check_rng(rng)
    check_positive_int("B", B)
    check_positive_int("L", L)
    check_positive_int("lag", lag)
    bits = rng.integers(0, 2, size=(B, L + lag))            # (B, L + lag); the first lag are "before"
    return np.eye(2)[bits[:, lag:]], bits[:, :L].astype(np.int64)


def one_hot(ids, V: int, dtype=np.float64):
    """One-hot encode integer ids: out[..., k] = 1 where ids == k.

    Works on NumPy, CuPy or torch ids (the result lives on the same backend); a Python list is
    treated as NumPy.

    Args:
        ids: (...) integer array with values in [0, V).  V: vocabulary size >= 1.
        dtype: floating dtype of the result (a NumPy dtype; mapped to the backend's).
    Returns:
        (..., V) array of zeros and ones.
    """
    check_positive_int("V", V)
    if not hasattr(ids, "dtype"):
        ids = np.asarray(ids)
    kind = str(ids.dtype)
    if "int" not in kind:
        raise ValueError(f"ids: expected an integer array, got dtype {kind}")
    xp = xp_of(ids)
    if math.prod(ids.shape) and (int(xp.min(ids)) < 0 or int(xp.max(ids)) >= V):
        raise ValueError(f"ids: expected values in [0, {V}) for V={V}, got range "
                         f"[{int(xp.min(ids))}, {int(xp.max(ids))}]")
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = repr(dtype)
    if not name.startswith("float"):
        raise ValueError(f"dtype: expected a floating dtype such as np.float64, got {dtype!r}")
    classes = xp.arange(V, device=array_api_compat.device(ids))        # (V,)
    return xp.astype(ids[..., None] == classes, getattr(xp, name))     # (..., V)
