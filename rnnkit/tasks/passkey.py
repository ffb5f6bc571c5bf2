"""Passkey (needle-in-a-haystack) retrieval at growing lengths, token-level and seeded.

A haystack of L filler tokens hides one needle: the KEY marker followed by n_digits passkey
tokens; the sequence ends with n_digits QUERY markers, at which the model must output the passkey
tokens in order. Token ids (``vocab_size`` in all):

    0 .. n_values - 1                      passkey tokens ("digits"), uniform
    n_values .. n_values + n_filler - 1    filler tokens, uniform (the haystack)
    n_values + n_filler                    KEY marker
    n_values + n_filler + 1                QUERY marker

The needle's position is uniform over the haystack (or fixed by ``depth`` in [0, 1], the fraction
of the haystack before it, as in the papers' depth sweeps). Chance accuracy is 1 / n_values.

References:
    A. Mohtashami, M. Jaggi, "Landmark Attention: Random-Access Infinite Context Length for
    Transformers", NeurIPS 2023 (the passkey retrieval test); A. Behrouz et al., "Titans", 2024,
    sec. 5.2 (needle in a haystack, S-NIAH of RULER). Deliberate difference: a token-level task
    with its own small vocabulary, not text.
"""
from __future__ import annotations

import numpy as np

from ..core.checks import check_positive_int

__all__ = ["passkey", "vocab_size", "chance_accuracy", "KEY", "QUERY"]


def KEY(n_values: int, n_filler: int) -> int:                      # noqa: N802 (a token id)
    return n_values + n_filler


def QUERY(n_values: int, n_filler: int) -> int:                    # noqa: N802
    return n_values + n_filler + 1


def vocab_size(n_values: int, n_filler: int) -> int:
    """Number of token ids: passkey tokens, filler tokens, KEY and QUERY."""
    check_positive_int("n_values", n_values)
    check_positive_int("n_filler", n_filler)
    return n_values + n_filler + 2


def chance_accuracy(n_values: int) -> float:
    """Accuracy of guessing each passkey token uniformly."""
    check_positive_int("n_values", n_values)
    return 1.0 / n_values


def passkey(rng: np.random.Generator, B: int, L: int, *, n_digits: int = 1, n_values: int = 8,
            n_filler: int = 4, depth: float | None = None):
    """A batch of passkey retrieval.

    Args:
        rng: NumPy generator (the only source of randomness).  B: batch size.
        L: haystack length, needle included (>= n_digits + 1).  n_digits: passkey length.
        n_values: distinct passkey tokens.  n_filler: distinct filler tokens.
        depth: None (needle position uniform) or in [0, 1]: fraction of the haystack before it.
    Returns:
        x: (B, L + n_digits) int64 token ids.  y: (B, n_digits) int64 passkey, read at the last
        n_digits positions of x.
    """
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng: expected a numpy.random.Generator (np.random.default_rng(seed)), "
                         f"got {type(rng).__name__}")
    for name, val in (("B", B), ("L", L), ("n_digits", n_digits), ("n_values", n_values),
                      ("n_filler", n_filler)):
        check_positive_int(name, val)
    if L < n_digits + 1:
        raise ValueError(f"L: expected a haystack of at least n_digits + 1 = {n_digits + 1} tokens "
                         f"(KEY and the passkey), got {L}")
    if depth is not None and not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth: expected None or a fraction in [0, 1], got {depth!r}")
    x = rng.integers(n_values, n_values + n_filler, size=(B, L + n_digits))      # filler
    y = rng.integers(0, n_values, size=(B, n_digits))                              # (B, n_digits)
    last = L - n_digits - 1                                                        # latest KEY slot
    if depth is None:
        pos = rng.integers(0, last + 1, size=B)
    else:
        pos = np.full(B, int(round(depth * last)))
    rows = np.arange(B)
    x[rows, pos] = KEY(n_values, n_filler)
    for j in range(n_digits):
        x[rows, pos + 1 + j] = y[:, j]
    x[:, L:] = QUERY(n_values, n_filler)
    return x.astype(np.int64), y.astype(np.int64)
