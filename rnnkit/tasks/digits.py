"""Sequential (pixel-by-pixel) handwritten digits: the CPU-sized cousin of sequential MNIST.

The images are the 1,797 8x8 digits of the UCI optical-recognition data set as shipped inside
scikit-learn (``sklearn.datasets.load_digits``: a file in the installed package, no download).
A model reads one pixel per time step, row by row, and must name the digit after the last
pixel: the label depends on pixels seen up to ``side**2`` steps earlier, the long-range
dependency that sequential MNIST (L = 784) tests in the papers.

``side`` > 8 resamples the image bilinearly to side x side, which lengthens the sequence
(16 -> L = 256, 28 -> L = 784, the sMNIST length) without adding information; ``permute``
applies one fixed random permutation of the pixel order (the pMNIST variant), which destroys
locality so that the model must remember across the whole sequence.

References:
    Q. V. Le, N. Jaitly and G. E. Hinton, "A Simple Way to Initialize Recurrent Networks of
    Rectified Linear Units", arXiv:1504.00941, 2015 (sequential and permuted MNIST).
    E. Alpaydin and C. Kaynak, "Optical Recognition of Handwritten Digits", UCI Machine
    Learning Repository, 1998 (the 8x8 images; CC BY 4.0).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..core.checks import check_positive_int

__all__ = ["SequentialDigits", "sequential_digits", "N_CLASSES"]

N_CLASSES = 10
_N_TEST = 297            # the last 297 images (about 1/6) are the test split, the first 1,500 train


class SequentialDigits(NamedTuple):
    """x: (N, L, 1) pixel intensities in [0, 1], L = side**2.  y: (N,) labels 0-9."""
    x: np.ndarray
    y: np.ndarray
    side: int
    permutation: np.ndarray | None


def _resample(images: np.ndarray, side: int) -> np.ndarray:
    """Bilinear resampling of (N, 8, 8) images to (N, side, side), pixel centres aligned."""
    n = images.shape[1]
    grid = (np.arange(side) + 0.5) * n / side - 0.5          # new pixel centres in old units
    grid = np.clip(grid, 0, n - 1)
    lo = np.floor(grid).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    w = grid - lo                                           # (side,) interpolation weights
    rows = images[:, lo, :] * (1 - w)[None, :, None] + images[:, hi, :] * w[None, :, None]
    return rows[:, :, lo] * (1 - w)[None, None, :] + rows[:, :, hi] * w[None, None, :]


def sequential_digits(split: str = "train", side: int = 8, permute: bool = False,
                      permutation_seed: int = 0, dtype=np.float64) -> SequentialDigits:
    """The digits as pixel sequences, for classification after the last step.

    Args:
        split: "train" (1,500 images), "test" (297) or "all" (1,797).
        side: image side after resampling (>= 8); the sequence length is L = side**2.
        permute: apply one fixed permutation of the L positions (same for every image and split).
        permutation_seed: seed of that permutation.
        dtype: floating dtype of x.
    Returns:
        SequentialDigits with x (N, L, 1) in [0, 1], y (N,) int64, side, permutation (L,) or None.
    """
    from sklearn.datasets import load_digits   # a file inside scikit-learn: no network

    if split not in ("train", "test", "all"):
        raise ValueError(f"split: expected 'train', 'test' or 'all', got {split!r}")
    check_positive_int("side", side)
    if side < 8:
        raise ValueError(f"side: expected an image side >= 8 (the data are 8x8), got {side}")
    data = load_digits()
    images = data.images.astype(np.float64) / 16.0          # (1797, 8, 8), intensities 0..16
    labels = data.target.astype(np.int64)
    sl = {"train": slice(0, len(labels) - _N_TEST), "test": slice(len(labels) - _N_TEST, None),
          "all": slice(None)}[split]
    images, labels = images[sl], labels[sl]
    if side != 8:
        images = _resample(images, side)
    x = images.reshape(len(labels), side * side, 1)          # row-major: one pixel per step
    perm = None
    if permute:
        perm = np.random.default_rng(permutation_seed).permutation(side * side)
        x = x[:, perm]
    return SequentialDigits(x.astype(dtype), labels, side, perm)
