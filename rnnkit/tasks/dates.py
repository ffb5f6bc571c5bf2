"""Date-format translation: a synthetic "translation" task for encoder-decoders that runs on a CPU.

Each pair is a date written by hand in one of several formats and the same date in ISO 8601:

    "3 March 1997"                 ->  "1997-03-03"
    "Monday, the 3rd of March 1997" ->  "1997-03-03"
    "03/03/1997", "March 3, 1997", "3.3.1997", "1997 Mar 3" ... (see ``FORMATS``)

Both sides are character sequences. The task has what makes translation interesting for an
encoder-decoder, on a small scale: inputs of different lengths (8 to 37 characters), a reordering
(the year comes first in the output and last in most inputs), words to translate (month names to
numbers), material to ignore (week days, "the", ordinal suffixes) and one correct output, so
exact-match accuracy is a clean measure. Days are drawn uniformly from 1 January 1900 to
31 December 2099.

Token ids: 0 is padding (PAD), 1 the beginning-of-sentence token (BOS), 2 the end (EOS); the
characters follow. ``make_batch`` pads on the right and returns masks; ``reverse_source`` reverses
each source before padding (Sutskever et al.'s trick).

References:
    The date task is a common teaching example for attention (e.g. the deeplearning.ai sequence
    models course, "neural machine translation of dates"); this generator, its formats and its
    vocabulary are our own.
"""
from __future__ import annotations

import datetime as _dt
from typing import NamedTuple

import numpy as np

from ..core.checks import check_positive_int

__all__ = ["FORMATS", "Vocab", "SOURCE_VOCAB", "TARGET_VOCAB", "PAD", "BOS", "EOS", "random_dates",
           "format_date", "date_pairs", "Batch", "make_batch", "exact_match"]

PAD, BOS, EOS = 0, 1, 2
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_FIRST, _LAST = _dt.date(1900, 1, 1).toordinal(), _dt.date(2099, 12, 31).toordinal()


def _ordinal(d: int) -> str:
    """1 -> '1st', 2 -> '2nd', 11 -> '11th', 23 -> '23rd'."""
    suffix = "th" if 10 <= d % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(d % 10, "th")
    return f"{d}{suffix}"


#: Input formats: name -> function of a date. Names use strftime-like letters for the reader.
FORMATS = {
    "d MMMM yyyy": lambda t: f"{t.day} {MONTHS[t.month - 1]} {t.year}",
    "MMMM d, yyyy": lambda t: f"{MONTHS[t.month - 1]} {t.day}, {t.year}",
    "dd/mm/yyyy": lambda t: f"{t.day:02d}/{t.month:02d}/{t.year}",
    "d.m.yyyy": lambda t: f"{t.day}.{t.month}.{t.year}",
    "yyyy MMM d": lambda t: f"{t.year} {MONTHS[t.month - 1][:3]} {t.day}",
    "EEE d MMM yyyy": lambda t: f"{DAYS[t.weekday()][:3]} {t.day} {MONTHS[t.month - 1][:3]} {t.year}",
    "EEEE, the dth of MMMM yyyy": lambda t: (f"{DAYS[t.weekday()]}, the {_ordinal(t.day)} of "
                                             f"{MONTHS[t.month - 1]} {t.year}"),
}


class Vocab:
    """Characters <-> token ids, with PAD = 0, BOS = 1, EOS = 2 before the characters.

    Args:
        chars: the characters of the vocabulary, each once.
    """

    def __init__(self, chars: str) -> None:
        if len(set(chars)) != len(chars) or not chars:
            raise ValueError(f"chars: expected distinct characters, got {chars!r}")
        self.chars = chars
        self.index = {c: i + 3 for i, c in enumerate(chars)}

    def __len__(self) -> int:
        return len(self.chars) + 3

    def encode(self, text: str) -> list[int]:
        """The ids of ``text``'s characters (no BOS or EOS)."""
        bad = sorted(set(text) - set(self.index))
        if bad:
            raise ValueError(f"text: characters {bad} are not in the vocabulary {self.chars!r}")
        return [self.index[c] for c in text]

    def decode(self, ids) -> str:
        """The text of ``ids`` up to the first EOS; PAD and BOS are skipped."""
        out = []
        for i in np.asarray(ids).ravel().tolist():
            if i == EOS:
                break
            if i >= 3:
                if i >= len(self):
                    raise ValueError(f"ids: expected ids in [0, {len(self)}), got {i}")
                out.append(self.chars[i - 3])
        return "".join(out)

    def __repr__(self) -> str:
        return f"Vocab({len(self)} tokens: PAD, BOS, EOS + {self.chars!r})"


SOURCE_VOCAB = Vocab(" ,./0123456789" + "".join(sorted(set("".join(MONTHS + DAYS + ("the", "of",
                                                                                      "stndrh"))))))
TARGET_VOCAB = Vocab("-0123456789")


def _check_rng(rng) -> None:
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng: expected a numpy.random.Generator (np.random.default_rng(seed)), "
                         f"got {type(rng).__name__}")


def random_dates(rng: np.random.Generator, n: int) -> list:
    """n dates drawn uniformly from 1900-01-01 to 2099-12-31."""
    _check_rng(rng)
    check_positive_int("n", n)
    return [_dt.date.fromordinal(int(k)) for k in rng.integers(_FIRST, _LAST + 1, n)]


def format_date(date, fmt: str) -> str:
    """``date`` written in the input format ``fmt`` (a key of ``FORMATS``)."""
    if fmt not in FORMATS:
        raise ValueError(f"fmt: expected one of {list(FORMATS)}, got {fmt!r}")
    return FORMATS[fmt](date)


def date_pairs(rng: np.random.Generator, n: int, formats=None) -> list[tuple[str, str]]:
    """n (source, target) pairs: a random date in a random format of ``formats``, and its ISO form.

    Args:
        rng: NumPy random generator.  n: number of pairs.
        formats: names from ``FORMATS`` to draw from uniformly (default: all).
    """
    formats = list(FORMATS) if formats is None else list(formats)
    if not formats:
        raise ValueError("formats: expected at least one format name, got none")
    for f in formats:
        if f not in FORMATS:
            raise ValueError(f"formats: expected names from {list(FORMATS)}, got {f!r}")
    dates = random_dates(rng, n)
    which = rng.integers(0, len(formats), n)
    return [(format_date(d, formats[k]), d.isoformat()) for d, k in zip(dates, which)]


class Batch(NamedTuple):
    """A padded batch for ``rnnkit.seq2seq`` (NumPy int64 ids, float masks)."""

    x_ids: np.ndarray    # (B, L) source ids, right-padded with PAD
    x_mask: np.ndarray   # (B, L) 1 at real source tokens
    y_in: np.ndarray     # (B, T) BOS + target ids (the decoder's inputs under teacher forcing)
    y_out: np.ndarray    # (B, T) target ids + EOS (what the decoder must predict)
    y_mask: np.ndarray   # (B, T) 1 at real target positions


def _pad(seqs: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    L = max(len(s) for s in seqs)
    ids, mask = np.full((len(seqs), L), PAD, dtype=np.int64), np.zeros((len(seqs), L))
    for b, s in enumerate(seqs):
        ids[b, :len(s)], mask[b, :len(s)] = s, 1.0
    return ids, mask


def make_batch(pairs, src_vocab: Vocab = SOURCE_VOCAB, tgt_vocab: Vocab = TARGET_VOCAB, *,
               reverse_source: bool = False) -> Batch:
    """Encode and pad (source, target) string pairs.

    Args:
        pairs: a non-empty list of (source, target) strings.
        reverse_source: reverse each source's characters before padding (padding stays at the end).
    """
    if not pairs:
        raise ValueError("pairs: expected at least one (source, target) pair, got none")
    if not isinstance(reverse_source, bool):
        raise ValueError(f"reverse_source: expected True or False, got {reverse_source!r}")
    src = [src_vocab.encode(s) for s, _ in pairs]
    if any(not s for s in src):
        raise ValueError("pairs: expected non-empty sources, got an empty string")
    if reverse_source:
        src = [s[::-1] for s in src]
    tgt = [tgt_vocab.encode(t) for _, t in pairs]
    x_ids, x_mask = _pad(src)
    y_in, y_mask = _pad([[BOS] + t for t in tgt])
    y_out, _ = _pad([t + [EOS] for t in tgt])
    return Batch(x_ids, x_mask, y_in, y_out, y_mask)


def exact_match(predicted, targets: list[str], tgt_vocab: Vocab = TARGET_VOCAB) -> np.ndarray:
    """(B,) booleans: whether each decoded prediction (ids up to EOS) equals its target string."""
    if len(predicted) != len(targets):
        raise ValueError(f"predicted: expected {len(targets)} outputs (one per target), "
                         f"got {len(predicted)}")
    return np.array([tgt_vocab.decode(p) == t for p, t in zip(predicted, targets)])
