"""Shared checks for tests and chapters: closeness with a useful report, numerical gradients."""
from __future__ import annotations

from typing import Callable

import numpy as np

from .backend import to_numpy

__all__ = ["max_errors", "assert_close", "numerical_gradient", "relative_error"]


def max_errors(ref, got) -> tuple[float, float]:
    """Max absolute error and max relative error (relative to max |ref|) between two arrays."""
    ref, got = np.asarray(to_numpy(ref)), np.asarray(to_numpy(got))
    abs_err = float(np.max(np.abs(ref - got))) if ref.size else 0.0
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    return abs_err, abs_err / max(scale, np.finfo(np.float64).tiny)


def relative_error(ref, got) -> float:
    """cs231n's relative error max |a-b| / max(|a|+|b|), elementwise, robust when both are tiny."""
    ref, got = np.asarray(to_numpy(ref)), np.asarray(to_numpy(got))
    return float(np.max(np.abs(ref - got) / np.maximum(1e-12, np.abs(ref) + np.abs(got))))


def assert_close(name: str, ref, got, rtol: float = 1e-10, atol: float = 0.0) -> None:
    """Assert ``got`` matches ``ref``: max |ref - got| <= atol + rtol * max |ref|.

    The message gives the name, both errors, the shapes and whether NaNs appeared, which is
    what you want to read when a test fails (not just "False").
    """
    ref_np, got_np = np.asarray(to_numpy(ref)), np.asarray(to_numpy(got))
    if ref_np.shape != got_np.shape:
        raise AssertionError(f"{name}: shape {got_np.shape} differs from reference {ref_np.shape}")
    nan_ref, nan_got = int(np.isnan(ref_np).sum()), int(np.isnan(got_np).sum())
    if nan_ref or nan_got:
        raise AssertionError(f"{name}: NaNs in reference ({nan_ref}) or result ({nan_got})")
    abs_err, rel_err = max_errors(ref_np, got_np)
    scale = float(np.max(np.abs(ref_np))) if ref_np.size else 0.0
    if abs_err > atol + rtol * scale:
        raise AssertionError(f"{name}: max abs error {abs_err:.3e}, relative {rel_err:.3e} "
                             f"(allowed rtol={rtol:g}, atol={atol:g}; shape {ref_np.shape})")


def numerical_gradient(f: Callable[[np.ndarray], float], x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central-difference gradient of the scalar function ``f`` at ``x``.

    ``f`` takes the array it is differentiated with respect to as its argument: the helper
    evaluates ``f(x_plus)`` and ``f(x_minus)`` on copies, so a function that silently ignores its
    argument (the classic ``lambda _: loss(params)`` trap) gives a zero gradient that a test
    will catch, instead of a gradient that only looks right because of in-place mutation.
    """
    x = np.asarray(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        x_plus, x_minus = x.copy(), x.copy()
        x_plus[idx] += eps
        x_minus[idx] -= eps
        grad[idx] = (f(x_plus) - f(x_minus)) / (2 * eps)
    return grad
