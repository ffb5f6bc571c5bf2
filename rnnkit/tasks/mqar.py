"""Multi-query associative recall (MQAR): key-value pairs, then queries for their values.

A sequence of length L holds n_pairs key-value pairs written as consecutive tokens
k_1 v_1 k_2 v_2 ..., blanks, and at the end n_queries of the keys again (distinct, in random
order). The target at each query is the value that followed that key. The keys of one sequence are
distinct (drawn without replacement), the values are drawn with replacement, so nothing but the
pairs tells the answer: chance accuracy is 1 / n_values.

Token ids: 0 = blank, 1 .. n_keys = keys, n_keys + 1 .. n_keys + n_values = values
(``vocab_size`` = 1 + n_keys + n_values).

Recall of many pairs is what separates models with a growing state (softmax attention, whose KV
cache holds every pair) from models with a fixed-size state (linear attention, RetNet, GLA, Mamba),
which must compress the pairs into dk x dv numbers per head (chapter 16, the recall gap).

References:
    S. Arora, S. Eyuboglu, A. Timalsina, I. Johnson, M. Poli, J. Zou, A. Rudra, C. Re, "Zoology:
    Measuring and Improving Recall in Efficient Language Models", ICLR 2024, section 3 (MQAR).
    S. Arora et al., "Simple linear attention language models balance the recall-throughput
    tradeoff" (BASED), ICML 2024 (MQAR vs state size).
    Deliberate difference: the queries sit together at the end rather than scattered through
    the sequence after the pairs (Zoology's queries are followed by their values as inputs too).
"""
from __future__ import annotations

import numpy as np

from ..core.checks import check_positive_int

__all__ = ["mqar", "vocab_size", "chance_accuracy"]


def vocab_size(n_keys: int, n_values: int) -> int:
    """Number of token ids: blank, n_keys keys, n_values values."""
    check_positive_int("n_keys", n_keys)
    check_positive_int("n_values", n_values)
    return 1 + n_keys + n_values


def chance_accuracy(n_values: int) -> float:
    """Accuracy of guessing a value uniformly."""
    check_positive_int("n_values", n_values)
    return 1.0 / n_values


def mqar(rng: np.random.Generator, B: int, *, n_pairs: int = 8, n_queries: int | None = None,
         L: int | None = None, n_keys: int = 32, n_values: int = 32):
    """A batch of MQAR.

    Args:
        rng: NumPy generator (the batch is a function of its state).  B: batch size.
        n_pairs: key-value pairs per sequence (<= n_keys).  n_queries: queried keys at the end
            (<= n_pairs; default n_pairs).  L: sequence length (>= 2 n_pairs + n_queries; blanks
            fill the gap; default the minimum).  n_keys, n_values: vocabulary sizes.
    Returns:
        x: (B, L) int64 token ids.  y: (B, n_queries) int64 values, the targets at the last
        n_queries positions of x.
    """
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng: expected a numpy.random.Generator (np.random.default_rng(seed)), "
                         f"got {type(rng).__name__}")
    n_queries = n_pairs if n_queries is None else n_queries
    for name, v in (("B", B), ("n_pairs", n_pairs), ("n_queries", n_queries), ("n_keys", n_keys),
                    ("n_values", n_values)):
        check_positive_int(name, v)
    if n_pairs > n_keys:
        raise ValueError(f"n_pairs: expected at most n_keys = {n_keys} (distinct keys), got {n_pairs}")
    if n_queries > n_pairs:
        raise ValueError(f"n_queries: expected at most n_pairs = {n_pairs}, got {n_queries}")
    need = 2 * n_pairs + n_queries
    L = need if L is None else L
    check_positive_int("L", L)
    if L < need:
        raise ValueError(f"L: expected at least 2 n_pairs + n_queries = {need}, got {L}")
    keys = np.argsort(rng.random((B, n_keys)), axis=1)[:, :n_pairs] + 1        # (B, P) distinct
    values = rng.integers(n_keys + 1, n_keys + n_values + 1, size=(B, n_pairs))  # (B, P)
    which = np.argsort(rng.random((B, n_pairs)), axis=1)[:, :n_queries]        # (B, Q) distinct
    x = np.zeros((B, L), dtype=np.int64)
    x[:, 0:2 * n_pairs:2] = keys
    x[:, 1:2 * n_pairs:2] = values
    x[:, L - n_queries:] = np.take_along_axis(keys, which, axis=1)
    y = np.take_along_axis(values, which, axis=1)
    return x, y.astype(np.int64)
