"""Synthetic tasks that need selection: selective copying and induction heads (Mamba, section 4.1).

Token ids, shared by both tasks: 0 = blank (noise), 1 ... n_tokens = data tokens, n_tokens + 1 =
the special token ("go" marker for selective copying, the trigger for induction heads). So the
vocabulary has n_tokens + 2 entries (``vocab_size``).

    selective copying  L context steps hold n_memorize data tokens at random positions (kept in
                       order), blanks elsewhere; then n_memorize "go" markers. Target: the data
                       tokens in order, read at the markers. Unlike the copy task (chapter 6), the
                       spacing is random, so a time-invariant filter cannot know where to look.
    induction heads    L random data tokens; the trigger appears once at a random position i
                       < L - 2, followed by the key token at i + 1, and again at the last position.
                       Target: the key (the token that followed the trigger the first time).

Chance accuracy is 1 / n_tokens for both (the targets are uniform over the data tokens).

References:
    A. Gu and T. Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces",
    arXiv:2312.00752, 2023, section 3.1 and 4.1, Figure 2 (selective copying, induction heads).
    M. Arjovsky, A. Shah, Y. Bengio, "Unitary Evolution RNNs", ICML 2016 (the copy task);
    C. Olsson et al., "In-context Learning and Induction Heads", 2022; D. Y. Fu et al.,
    "Hungry Hungry Hippos", ICLR 2023 (the associative recall / induction head probes).
"""
from __future__ import annotations

import numpy as np

from ..core.checks import check_positive_int

__all__ = ["selective_copying", "induction_heads", "vocab_size", "chance_accuracy"]


def _check_rng(rng) -> None:
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng: expected a numpy.random.Generator (np.random.default_rng(seed)), "
                         f"got {type(rng).__name__}")


def vocab_size(n_tokens: int) -> int:
    """Number of token ids: blank, n_tokens data tokens, the special token."""
    check_positive_int("n_tokens", n_tokens)
    return n_tokens + 2


def chance_accuracy(n_tokens: int) -> float:
    """Accuracy of guessing a data token uniformly."""
    check_positive_int("n_tokens", n_tokens)
    return 1.0 / n_tokens


def selective_copying(rng: np.random.Generator, B: int, L: int = 32, n_memorize: int = 4,
                      n_tokens: int = 8):
    """A batch of selective copying.

    Args:
        rng: NumPy generator.  B: batch size.  L: context length (>= n_memorize).
        n_memorize: data tokens to remember.  n_tokens: distinct data tokens.
    Returns:
        x: (B, L + n_memorize) int64 token ids.  y: (B, n_memorize) int64 targets, to be read at
        the last n_memorize positions of x.
    """
    _check_rng(rng)
    for name, v in (("B", B), ("L", L), ("n_memorize", n_memorize), ("n_tokens", n_tokens)):
        check_positive_int(name, v)
    if n_memorize > L:
        raise ValueError(f"n_memorize: expected at most L = {L} data tokens, got {n_memorize}")
    y = rng.integers(1, n_tokens + 1, size=(B, n_memorize))                 # (B, M)
    pos = np.sort(np.argsort(rng.random((B, L)), axis=1)[:, :n_memorize], axis=1)   # (B, M) distinct
    x = np.zeros((B, L + n_memorize), dtype=np.int64)
    np.put_along_axis(x, pos, y, axis=1)
    x[:, L:] = n_tokens + 1                                                 # the "go" markers
    return x, y.astype(np.int64)


def induction_heads(rng: np.random.Generator, B: int, L: int = 32, n_tokens: int = 8):
    """A batch of the induction-head task.

    Args:
        rng: NumPy generator.  B: batch size.  L: sequence length (>= 4).  n_tokens: data tokens.
    Returns:
        x: (B, L) int64 token ids (the trigger n_tokens + 1 at a random i < L - 2 and at L - 1).
        y: (B,) int64, the token at i + 1.
    """
    _check_rng(rng)
    for name, v in (("B", B), ("L", L), ("n_tokens", n_tokens)):
        check_positive_int(name, v)
    if L < 4:
        raise ValueError(f"L: expected a length >= 4 (trigger, key, query and a gap), got {L}")
    x = rng.integers(1, n_tokens + 1, size=(B, L)).astype(np.int64)        # (B, L)
    i = rng.integers(0, L - 2, size=B)                                      # (B,) first trigger
    rows = np.arange(B)
    x[rows, i] = n_tokens + 1
    x[:, -1] = n_tokens + 1
    return x, x[rows, i + 1].copy()
