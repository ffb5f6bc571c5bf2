"""One input-checking helper used by every public rnnkit function.

Shapes are written with the book's dimension letters (B batch, L length, D input, H hidden,
N state...). ``check_shape`` binds each letter the first time it sees it and insists on the
same size afterwards, so a mismatch names both arguments::

    dims = {}
    check_shape("W_xh", W_xh, "D H", dims)
    check_shape("x", x, "B L D", dims)   # ValueError if x's last axis is not W_xh's first
"""
from __future__ import annotations

from typing import Any

__all__ = ["check_shape", "check_params", "check_floating", "check_positive_int"]

# Letters whose size must be at least 1: a sequence of length L = 0 has no first step, and the
# loops and scans below it would fail with an error about stacking an empty list.
NONEMPTY = ("L",)


def _fmt(letters: list[str], dims: dict[str, int]) -> str:
    return "(" + ", ".join(f"{c}={dims[c]}" if c in dims else c for c in letters) + ")"


def check_shape(name: str, array: Any, spec: str, dims: dict[str, int] | None = None,
                source: dict[str, str] | None = None) -> dict[str, int]:
    """Check that ``array`` has the shape ``spec`` (space-separated letters or integers).

    Args:
        name: the argument's name, quoted in the error.
        array: anything with ``.shape`` (NumPy, CuPy, torch).
        spec: e.g. ``"B L D"``; an integer entry fixes that axis's size exactly.
        dims: letters already bound (updated in place); defaults to a fresh dict.
        source: which argument bound each letter (updated in place), for clearer errors.

    Returns:
        ``dims``, with the letters of ``spec`` bound.

    Raises:
        ValueError: naming the argument, the expected shape and the shape given.
    """
    dims = {} if dims is None else dims
    source = {} if source is None else source
    letters = spec.split()
    shape = getattr(array, "shape", None)
    if shape is None:
        raise ValueError(f"{name}: expected an array of shape ({', '.join(letters)}), "
                         f"got {type(array).__name__}")
    shape = tuple(int(s) for s in shape)
    if len(shape) != len(letters):
        raise ValueError(f"{name}: expected {len(letters)} dimensions {_fmt(letters, dims)}, "
                         f"got shape {shape}")
    for letter, size in zip(letters, shape):
        if letter.isdigit():
            if size != int(letter):
                raise ValueError(f"{name}: expected shape ({', '.join(letters)}), got {shape}")
        elif letter in dims and dims[letter] != size:
            origin = f" (from {source[letter]})" if letter in source else ""
            raise ValueError(f"{name}: expected shape {_fmt(letters, dims)}{origin}, got {shape}")
        else:
            if letter in NONEMPTY and size < 1:
                raise ValueError(f"{name}: expected at least one time step ({letter} >= 1) in shape "
                                 f"({', '.join(letters)}), got {shape}")
            dims.setdefault(letter, size)
            source.setdefault(letter, name)
    return dims


def check_params(params: dict, specs, dims: dict | None = None,
                 source: dict | None = None) -> dict[str, int]:
    """Check a parameter dict: every key of ``specs`` (pairs ``(key, shape spec)``) is present and
    has its shape. Shapes are checked with ``check_shape`` as ``params['<key>']``, binding letters in
    ``dims``/``source`` exactly as there.

    Raises:
        ValueError: "params: expected keys A, B, C, missing 'B'" or a shape error naming the key.
    """
    dims = {} if dims is None else dims
    source = {} if source is None else source
    for key, spec in specs:
        if key not in params:
            raise ValueError(f"params: expected keys {', '.join(k for k, _ in specs)}, missing {key!r}")
        check_shape(f"params['{key}']", params[key], spec, dims, source)
    return dims


def check_floating(name: str, array: Any) -> None:
    """Raise ``ValueError`` unless ``array`` holds real or complex floating-point numbers."""
    kind = str(getattr(array, "dtype", type(array).__name__))
    if not any(k in kind for k in ("float", "complex")):
        raise ValueError(f"{name}: expected a floating-point array, got dtype {kind}")


def check_positive_int(name: str, value: Any, allow_none: bool = False) -> None:
    """Raise ``ValueError`` unless ``value`` is an int >= 1 (or None where allowed)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
