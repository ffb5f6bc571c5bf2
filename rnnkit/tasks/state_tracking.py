"""State-tracking tasks: run a finite automaton over random symbols, label every step by its state.

A task is a deterministic finite automaton (DFA) with states 0..Q-1, symbols 0..V-1 and a
transition table ``delta`` (V, Q): ``q_t = delta[x_t, q_{t-1}]``, ``q_0 = start``. The label at
step t is ``q_t``, so a model must track the state through the whole prefix (chapter 17).

    parity        Z_2: V = 2, q_t = q_{t-1} + x_t mod 2 (running parity, as tasks.synthetic.parity)
    mod_sum       Z_m: V = m, q_t = q_{t-1} + x_t mod m (modular counting; m = 3 by default)
    flip_flop     star-free: symbols "write 0", "write 1", "ignore"; q_t = the last bit written
                  (Liu et al. 2023's flip-flop language; q_0 = 0)
    no_11         star-free: q_t = 1 once the substring "1 1" has appeared (a latch, Tomita-like)

Parity and mod_sum are groups (their transitions are permutations, a cyclic group is not
star-free); flip_flop and no_11 are aperiodic (star-free). Linear RNNs whose transition matrices
have only non-negative real eigenvalues can recognise star-free languages but not parity
(Sarrof et al. 2024; Grazzi et al. 2025, Theorem 1); that is the contrast chapter 17 measures.

References:
    R. Grazzi, J. Siems, J. Franke, A. Zela, F. Hutter, M. Pontil, "Unlocking State-Tracking in
    Linear RNNs Through Negative Eigenvalues", ICLR 2025, sections 4 and 5.
    B. Liu, J. T. Ash, S. Goel, A. Krishnamurthy, C. Zhang, "Exposing Attention Glitches with
    Flip-Flop Language Modeling", NeurIPS 2023.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..core.checks import check_positive_int

__all__ = ["Automaton", "Task", "AUTOMATA", "automaton", "run_automaton", "sample", "one_hot"]


class Automaton(NamedTuple):
    """A DFA: ``delta`` (V, Q) int, ``q_t = delta[x_t, q_{t-1}]``; ``start`` the initial state."""

    name: str
    delta: np.ndarray
    start: int
    star_free: bool


class Task(NamedTuple):
    """Sequences and per-step labels: x (N, L) int symbols, y (N, L) int states."""

    x: np.ndarray
    y: np.ndarray
    n_symbols: int
    n_states: int


def automaton(name: str, m: int = 3) -> Automaton:
    """The automaton called ``name`` (one of ``AUTOMATA``); ``m`` is the modulus of "mod_sum"."""
    if name == "parity":
        return Automaton(name, np.array([[0, 1], [1, 0]]), 0, False)
    if name == "mod_sum":
        check_positive_int("m", m)
        if m < 2:
            raise ValueError(f"m: expected a modulus >= 2, got {m}")
        delta = (np.arange(m)[:, None] + np.arange(m)[None, :]) % m   # delta[x, q] = q + x mod m
        return Automaton(name, delta, 0, False)
    if name == "flip_flop":   # symbols: 0 = write 0, 1 = write 1, 2 = ignore
        return Automaton(name, np.array([[0, 0], [1, 1], [0, 1]]), 0, True)
    if name == "no_11":       # states: 0 = last symbol 0 (or start), 1 = last symbol 1, 2 = seen "11"
        return Automaton(name, np.array([[0, 0, 2], [1, 2, 2]]), 0, True)
    raise ValueError(f"name: expected one of {AUTOMATA}, got {name!r}")


AUTOMATA = ("parity", "mod_sum", "flip_flop", "no_11")


def run_automaton(a: Automaton, x: np.ndarray) -> np.ndarray:
    """States q_1..q_L of automaton ``a`` on symbols x (N, L) int; returns (N, L) int."""
    x = np.asarray(x)
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"x: expected integer symbols of shape (N, L), got shape {x.shape}, "
                         f"dtype {x.dtype}")
    V = a.delta.shape[0]
    if x.size and (x.min() < 0 or x.max() >= V):
        raise ValueError(f"x: expected symbols in 0..{V - 1}, got values in {x.min()}..{x.max()}")
    q = np.full(x.shape[0], a.start, dtype=np.int64)
    y = np.empty(x.shape, dtype=np.int64)
    for t in range(x.shape[1]):
        q = a.delta[x[:, t], q]
        y[:, t] = q
    return y


def sample(rng: np.random.Generator, name: str, N: int, L: int, *, m: int = 3) -> Task:
    """N random sequences of length L over the automaton's symbols (uniform), labelled per step.

    For "no_11" the symbol 1 is drawn with probability 0.25, so that "1 1" is not almost certain
    within a few steps and both labels occur at every length used in chapter 17.
    """
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng: expected a numpy.random.Generator, got {type(rng).__name__}")
    check_positive_int("N", N)
    check_positive_int("L", L)
    a = automaton(name, m)
    V = a.delta.shape[0]
    if name == "no_11":
        x = (rng.random((N, L)) < 0.25).astype(np.int64)
    else:
        x = rng.integers(0, V, size=(N, L))
    return Task(x, run_automaton(a, x), V, a.delta.shape[1])


def one_hot(x: np.ndarray, V: int, dtype=np.float64) -> np.ndarray:
    """(N, L) symbols -> (N, L, V) one-hot vectors."""
    return np.eye(V, dtype=dtype)[np.asarray(x)]
