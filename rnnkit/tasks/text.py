"""Character-level text corpora shipped with rnnkit (no downloads), for language-model chapters.

A corpus is one string; its vocabulary is the sorted set of its characters, and a character's
id is its position in that list. For next-character prediction a window of L ids starting at s
is the input and the window starting at s + 1 the target:

    x = ids[s : s + L],   y = ids[s + 1 : s + L + 1]      (y_t is the character after x_t)

The train/validation split is contiguous (the last ``val_fraction`` of the text is validation),
so no validation window overlaps a training window except across the single boundary.

Shipped corpora (sources and licences in ``rnnkit/tasks/data/README.md``):
    "genesis": the Book of Genesis, King James Version; 197,499 characters, 70 distinct.

References:
    A. Karpathy, "The Unreasonable Effectiveness of Recurrent Neural Networks", 2015, and
    char-rnn (the character-level setting); I. Sutskever, J. Martens, G. Hinton, "Generating Text
    with Recurrent Neural Networks", ICML 2011.
"""
from __future__ import annotations

import functools
from importlib import resources

import numpy as np

from ..core.checks import check_positive_int

__all__ = ["CharCorpus", "load_corpus", "CORPORA"]

#: Name -> file in rnnkit/tasks/data of every shipped corpus.
CORPORA = {"genesis": "genesis_kjv.txt"}

_SPLITS = ("train", "val")


def _check_fraction(val_fraction) -> float:
    ok = isinstance(val_fraction, (int, float)) and not isinstance(val_fraction, bool)
    if not ok or not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction: expected a number in (0, 1), got {val_fraction!r}")
    return float(val_fraction)


class CharCorpus:
    """A text with its character vocabulary, encoder/decoder and train/validation windows.

    Attributes:
        name: a label (the corpus name for shipped ones).
        text: the whole text, a str.
        vocab: sorted list of the V distinct characters.
        stoi: dict char -> id.   itos: list id -> char (the same list as ``vocab``).
        V: vocabulary size.
        ids: (N,) int64, the whole text encoded.
    """

    def __init__(self, text: str, name: str = "custom") -> None:
        if not isinstance(text, str) or not text:
            raise ValueError(f"text: expected a non-empty str, got {type(text).__name__} "
                             f"of length {len(text) if isinstance(text, str) else 'n/a'}")
        self.name = name
        self.text = text
        self.vocab = sorted(set(text))
        self.itos = self.vocab
        self.stoi = {c: i for i, c in enumerate(self.vocab)}
        self.V = len(self.vocab)
        self.ids = self.encode(text)           # (N,)

    def __len__(self) -> int:
        return len(self.text)

    def __repr__(self) -> str:
        return f"CharCorpus(name={self.name!r}, N={len(self.text)}, V={self.V})"

    def encode(self, text: str) -> np.ndarray:
        """Ids of the characters of ``text``: (len(text),) int64. Unknown characters raise."""
        if not isinstance(text, str):
            raise ValueError(f"text: expected a str, got {type(text).__name__}")
        unknown = sorted(set(text) - self.stoi.keys())
        if unknown:
            raise ValueError(f"text: characters not in the {self.name!r} vocabulary: "
                             f"{''.join(unknown)!r} ({len(unknown)} distinct)")
        return np.fromiter((self.stoi[c] for c in text), dtype=np.int64, count=len(text))

    def decode(self, ids) -> str:
        """The string of a sequence of ids (list or 1-D integer array, any backend via NumPy)."""
        arr = np.asarray(ids.tolist() if hasattr(ids, "tolist") else ids)
        if arr.ndim != 1 and arr.size:
            raise ValueError(f"ids: expected a 1-D sequence of ids, got shape {arr.shape}")
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"ids: expected integers, got dtype {arr.dtype}")
        if arr.size and (arr.min() < 0 or arr.max() >= self.V):
            raise ValueError(f"ids: expected values in [0, {self.V}), got range "
                             f"[{arr.min()}, {arr.max()}]")
        return "".join(self.itos[i] for i in arr.tolist())

    def split(self, val_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
        """Contiguous split: the first (1 - val_fraction) of the ids train, the rest validation.

        Deterministic (no randomness): n_val = round(N * val_fraction), at least 1 and at most
        N - 1 so both parts are non-empty.

        Returns:
            train_ids: (N - n_val,) int64.  val_ids: (n_val,) int64 (views into ``ids``).
        """
        val_fraction = _check_fraction(val_fraction)
        N = self.ids.shape[0]
        if N < 2:
            raise ValueError(f"text: need at least 2 characters to split, got {N}")
        n_val = min(max(int(round(N * val_fraction)), 1), N - 1)
        return self.ids[: N - n_val], self.ids[N - n_val:]

    def random_windows(self, rng: np.random.Generator, B: int, L: int, split: str = "train",
                       val_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
        """B random windows of length L from one part of the text, with next-character targets.

        Start positions are uniform over every s with s + L + 1 <= (length of that part), so
        windows never cross from train into validation.

        Args:
            rng: NumPy random generator.  B: batch size >= 1.  L: window length >= 1.
            split: "train" or "val".  val_fraction: as in ``split``.
        Returns:
            x_ids: (B, L) int64.  y_ids: (B, L) int64 with y_ids[:, t] the character after x_ids[:, t].
        """
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f"rng: expected a numpy.random.Generator, got {type(rng).__name__}")
        check_positive_int("B", B)
        check_positive_int("L", L)
        if split not in _SPLITS:
            raise ValueError(f"split: expected 'train' or 'val', got {split!r}")
        data = self.split(val_fraction)[_SPLITS.index(split)]   # (N_split,)
        n = data.shape[0]
        if L + 1 > n:
            raise ValueError(f"L: windows of L + 1 = {L + 1} characters do not fit in the "
                             f"{split!r} part ({n} characters)")
        starts = rng.integers(0, n - L, size=B)                 # (B,) s in [0, n - L - 1]
        idx = starts[:, None] + np.arange(L)                    # (B, L)
        return data[idx], data[idx + 1]


@functools.lru_cache(maxsize=None)
def _read(filename: str) -> str:
    return (resources.files("rnnkit.tasks") / "data" / filename).read_text(encoding="utf-8")


def load_corpus(name: str = "genesis") -> CharCorpus:
    """A shipped corpus by name (see ``CORPORA``); read from the package, never downloaded."""
    if name not in CORPORA:
        raise ValueError(f"name: expected one of {sorted(CORPORA)}, got {name!r}")
    return CharCorpus(_read(CORPORA[name]), name=name)
