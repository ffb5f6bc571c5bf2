"""Check helpers for the exercise notebooks: failures that say what was expected, what was got, and why.

The checks in every exercise notebook (public ones that students run with ``grader.check("q2")``
and hidden ones that only the autograder runs) are short functions built from these helpers.
Each helper raises ``AssertionError`` with a message in one layout::

    dW_hh: values differ from the reference.
      expected: shape (4, 4), e.g. [0.1203, -0.0457, 0.2171, ...]
      got:      shape (4, 4), e.g. [0.0311, 0.0915, -0.0138, ...]
      max abs error 2.1e-01 at index (1, 3) (expected 0.1836, got -0.0282); relative error 8.6e-01
      (allowed: rtol=1e-08, atol=0)
      diagnosis: your result matches h_t^T da_t: the recurrent weight multiplies h_{t-1}, not h_t.
      hint: (1.6) dW_hh = sum_t h_{t-1}^T da_t; at t = 1 use h0.

The diagnosis line appears when the result matches one of the common mistakes that the check
passes in (``mistakes={"description": wrong_array}``), or a transpose, sign flip or scale.

This file is copied next to each student notebook by ``make student``; it holds no solutions
(the checks compute their references with ``rnnkit`` or hold literal numbers).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

try:  # the shared error measure of the library; a local copy keeps the helpers importable alone
    from rnnkit.core.testing import max_errors
except ImportError:  # pragma: no cover - rnnkit is installed wherever the notebooks run
    def max_errors(ref, got):
        ref, got = np.asarray(ref), np.asarray(got)
        abs_err = float(np.max(np.abs(ref - got))) if ref.size else 0.0
        scale = float(np.max(np.abs(ref))) if ref.size else 0.0
        return abs_err, abs_err / max(scale, np.finfo(np.float64).tiny)

__all__ = ["call_student", "forbidden", "ReferenceForbidden", "expect_implemented", "check_array", "check_scalar", "check_true",
           "check_unchanged", "check_loop_free", "python_lines", "preview"]


def preview(a: Any, n: int = 4) -> str:
    """A one-line picture of an array: its shape and its first ``n`` entries."""
    arr = np.asarray(a)
    if arr.dtype == object:
        return f"{type(a).__name__} {a!r:.60}"
    flat = arr.ravel()
    head = ", ".join(f"{v:.4g}" for v in flat[:n]) + (", ..." if flat.size > n else "")
    return f"shape {arr.shape}, dtype {arr.dtype}, e.g. [{head}]"


def _fail(lines: list[str], hint: str | None) -> None:
    if hint:
        lines.append(f"  hint: {hint}")
    raise AssertionError("\n".join(lines))


def expect_implemented(name: str, value: Any, hint: str | None = None) -> None:
    """Fail with a friendly message while ``value`` is still the ``...`` placeholder or ``None``."""
    if value is None or value is Ellipsis:
        what = "None (the function returned nothing)" if value is None else "... (the placeholder)"
        _fail([f"{name}: not implemented yet.",
               "  expected: your answer",
               f"  got:      {what}"],
              hint or "replace the `...` in the exercise cell with your code, run the cell, "
                      "then run the check again.")


class ReferenceForbidden(RuntimeError):
    """Raised by an rnnkit function that an exercise asks the student to write themselves."""


def _refuse(*args, **kwargs):
    # Its code object replaces a forbidden function's while a student's answer runs. It may refer
    # to nothing but builtins: it runs with the forbidden function's module globals.
    raise RuntimeError("rnnkit reference switched off: this exercise asks you to write it yourself")


def _resolve(target: str | Callable) -> Callable:
    if callable(target):
        return target
    module_name, _, attr = target.rpartition(".")
    import importlib
    obj = importlib.import_module(module_name)
    return getattr(obj, attr)


class forbidden:
    """Make rnnkit functions unusable while a student's answer runs (``with forbidden(...):``).

    A student who answers ``def step(...): return lstm.step(...)`` must not pass the check of an
    exercise that asks for the LSTM step. Inside the ``with`` block every listed function (given
    as an object or as ``"rnnkit.lstm.step"``) raises, however the student reached it (a module
    attribute, ``from rnnkit.lstm import step``, an alias, another rnnkit function calling it):
    the function object's code is swapped, not a name, so every reference sees the swap. The
    checks compute their references outside the block. ``call_student(..., forbid=[...])`` uses
    this and turns the error into feedback.
    """

    def __init__(self, *targets):
        self.functions = [_resolve(t) for t in targets]
        self._saved = []

    def __enter__(self):
        for f in self.functions:
            if f.__code__.co_freevars:  # a closure cannot take a code object without free vars
                raise ValueError(f"forbidden: {f.__qualname__} is a closure; forbid its caller")
            self._saved.append((f, f.__code__, f.__defaults__, f.__kwdefaults__))
            f.__code__, f.__defaults__, f.__kwdefaults__ = _refuse.__code__, None, None
        return self

    def __exit__(self, *exc):
        for f, code, defaults, kwdefaults in self._saved:
            f.__code__, f.__defaults__, f.__kwdefaults__ = code, defaults, kwdefaults
        self._saved.clear()
        return False


def call_student(name: str, func: Callable, *args, n_outputs: int | None = None,
                 copy_args: bool = True, forbid=(), **kwargs):
    """Call the student's ``func``, turning every error into feedback.

    Args:
        name: the function's name as the exercise spells it.
        func: the student's function (``None`` if the notebook never defined it).
        n_outputs: if given, the result must be a tuple of this many entries.
        copy_args: pass copies of array arguments (so a buggy function cannot change the
            reference); ``False`` in the checks that look for in-place modification.
        forbid: rnnkit functions (objects or dotted names) that the exercise replaces; they
            raise while ``func`` runs (see ``forbidden``), so a one-line call into the
            reference library earns no points.
    Returns:
        whatever ``func`` returned.
    """
    if func is None or func is Ellipsis:
        _fail([f"{name}: not defined.",
               f"  expected: a function called {name}",
               "  got:      nothing of that name in the notebook"],
              f"run the cell that defines {name} (and keep its name as given).")
    copy = _copy if copy_args else (lambda a: a)
    copies = [copy(a) for a in args]
    kw_copies = {k: copy(v) for k, v in kwargs.items()}
    try:
        with forbidden(*forbid):
            out = func(*copies, **kw_copies)
    except Exception as exc:  # the student's code raised: report it as feedback, not a crash
        if "rnnkit reference switched off" in str(exc):
            names = ", ".join(_resolve(t).__module__ + "." + _resolve(t).__qualname__
                              for t in forbid)
            _fail([f"{name}: called the library function this exercise replaces.",
                   "  expected: your own implementation",
                   f"  got:      a call into {names}"],
                  "write the computation yourself from the chapter's equations; rnnkit's "
                  "version is switched off while your answer is checked.")
        _fail([f"{name}: raised {type(exc).__name__} when called.",
               "  expected: a result",
               f"  got:      {type(exc).__name__}: {exc}"],
              "run the exercise cell by hand with small inputs and read the traceback; "
              "check the shapes in the docstring.")
    expect_implemented(name, out)
    if n_outputs is not None:
        if not isinstance(out, (tuple, list)) or len(out) != n_outputs:
            got = f"{type(out).__name__} of length {len(out)}" if isinstance(out, (tuple, list)) \
                else type(out).__name__
            _fail([f"{name}: wrong number of results.",
                   f"  expected: a tuple of {n_outputs} results",
                   f"  got:      {got}"],
                  "return the results in the order listed under Returns in the docstring.")
    return out


def _copy(a: Any) -> Any:
    if isinstance(a, np.ndarray):
        return a.copy()
    if isinstance(a, dict):
        return {k: _copy(v) for k, v in a.items()}
    return a


def _matches(ref: np.ndarray, cand: Any, rtol: float, atol: float) -> bool:
    try:
        cand = np.asarray(cand, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    if cand.shape != ref.shape or not np.all(np.isfinite(cand)):
        return False
    abs_err, _ = max_errors(ref, cand)
    return abs_err <= atol + rtol * float(np.max(np.abs(ref), initial=0.0))


def _diagnose(ref: np.ndarray, got: np.ndarray, mistakes: Mapping[str, Any] | None,
              rtol: float, atol: float) -> str | None:
    """Name the mistake ``got`` matches: one the check listed, or a transpose, sign or scale."""
    for description, wrong in (mistakes or {}).items():
        if _matches(np.asarray(wrong, dtype=np.float64), got, rtol, atol):
            return f"your result matches {description}"
    tol = max(rtol, 1e-8)
    if got.ndim == 2 and got.T.shape == ref.shape and _matches(ref, got.T, tol, atol):
        return "your result is the transpose of the expected one"
    if got.shape == ref.shape and _matches(ref, -got, tol, atol):
        return "your result has the wrong sign"
    if got.shape == ref.shape and np.any(got) and np.any(ref):
        c = float(np.vdot(got, ref) / np.vdot(got, got))
        if abs(c - 1.0) > 1e-6 and _matches(ref, c * got, tol, atol):
            return f"your result is off by a constant factor (expected = {c:.4g} x got)"
    return None


def check_array(name: str, got: Any, expected: Any, *, rtol: float = 1e-8, atol: float = 0.0,
                hint: str | None = None, mistakes: Mapping[str, Any] | None = None) -> None:
    """Check ``got`` against ``expected``: max |expected - got| <= atol + rtol * max |expected|.

    Args:
        name: what is compared, as the exercise names it (``"dW_hh"``).
        got: the student's array.  expected: the reference array.
        rtol, atol: tolerances (the comparison is that of ``rnnkit.core.testing.assert_close``).
        hint: what to look at when the check fails (cite the chapter's equation).
        mistakes: ``{"description of a common mistake": the array that mistake produces}``;
            a match is named in the message.
    """
    expect_implemented(name, got)
    ref = np.asarray(expected, dtype=np.float64)
    try:
        arr = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        _fail([f"{name}: not an array of numbers.",
               f"  expected: {preview(ref)}",
               f"  got:      {type(got).__name__} {got!r:.80}"], hint)
    if arr.shape != ref.shape:
        diagnosis = None
        if arr.ndim == 2 and arr.T.shape == ref.shape:
            diagnosis = "the shape is transposed: check the order of the factors in your product"
        elif arr.size == ref.size:
            diagnosis = "the right number of entries in the wrong shape: check your reshape/axes"
        elif ref.ndim and arr.shape == ref.shape[1:]:
            diagnosis = "the leading (batch) axis is missing: keep one row per example"
        lines = [f"{name}: wrong shape.",
                 f"  expected: shape {ref.shape}",
                 f"  got:      shape {arr.shape}"]
        if diagnosis:
            lines.append(f"  diagnosis: {diagnosis}")
        _fail(lines, hint)
    n_nan = int(np.sum(~np.isfinite(arr)))
    if n_nan:
        _fail([f"{name}: {n_nan} entries are NaN or infinite.",
               f"  expected: {preview(ref)}",
               f"  got:      {preview(arr)}"], hint)
    abs_err, rel_err = max_errors(ref, arr)
    scale = float(np.max(np.abs(ref), initial=0.0))
    if abs_err <= atol + rtol * scale:
        return
    idx = np.unravel_index(int(np.argmax(np.abs(ref - arr))), ref.shape) if ref.ndim else ()
    relative = (f"relative error {rel_err:.2e}" if scale > 0
                else "the reference is all zeros")
    lines = [f"{name}: values differ from the reference.",
             f"  expected: {preview(ref)}",
             f"  got:      {preview(arr)}",
             f"  max abs error {abs_err:.2e} at index {tuple(int(i) for i in idx)} "
             f"(expected {ref[idx]:.6g}, got {arr[idx]:.6g}); {relative} "
             f"(allowed: rtol={rtol:g}, atol={atol:g})"]
    diagnosis = _diagnose(ref, arr, mistakes, rtol, atol)
    if diagnosis:
        lines.append(f"  diagnosis: {diagnosis}")
    _fail(lines, hint)


def check_scalar(name: str, got: Any, expected: float, *, rtol: float = 1e-8, atol: float = 0.0,
                 hint: str | None = None, mistakes: Mapping[str, Any] | None = None) -> None:
    """Check one number: |expected - got| <= atol + rtol * |expected|."""
    expect_implemented(name, got)
    try:
        value = float(np.asarray(got).item())
    except (TypeError, ValueError):
        _fail([f"{name}: not a single number.",
               f"  expected: {expected:.6g}",
               f"  got:      {type(got).__name__} {got!r:.80}"], hint)
    if np.isfinite(value) and abs(value - expected) <= atol + rtol * abs(expected):
        return
    lines = [f"{name}: wrong value.",
             f"  expected: {expected:.6g}",
             f"  got:      {value:.6g}  (error {abs(value - expected):.2e}; "
             f"allowed: rtol={rtol:g}, atol={atol:g})"]
    for description, wrong in (mistakes or {}).items():
        if np.isclose(value, float(wrong), rtol=max(rtol, 1e-9), atol=atol):
            lines.append(f"  diagnosis: your value matches {description}")
            break
    _fail(lines, hint)


def check_true(name: str, condition: bool, expected: str, got: str, hint: str | None = None) -> None:
    """Check a property that is not a comparison of numbers (``expected``/``got`` in words)."""
    if not condition:
        _fail([f"{name}: check failed.", f"  expected: {expected}", f"  got:      {got}"], hint)


def check_unchanged(name: str, before: Any, after: Any, hint: str | None = None) -> None:
    """Check that the student's function did not modify an input array in place."""
    if not np.array_equal(np.asarray(before), np.asarray(after)):
        _fail([f"{name}: your function modified this input in place.",
               f"  expected: {preview(before)}",
               f"  got:      {preview(after)}"],
              hint or "work on a copy (x.copy()) or build new arrays instead of writing into inputs.")


_LIBRARY_PATHS = ("site-packages", "dist-packages", "/rnnkit/", "exercise_checks", "<frozen ")


def python_lines(name: str, func: Callable, *args, forbid=(), **kwargs) -> int:
    """How many lines of Python outside the libraries (NumPy, rnnkit, ...) ``func(*args)`` runs.

    A line inside a loop counts once per iteration, so the count of a loop over ``t`` grows with
    the length while that of a vectorised answer does not. The call goes through
    ``call_student`` (with ``forbid``), so errors become feedback.
    """
    import sys
    count = [0]

    def tracer(frame, event, arg):
        if any(p in frame.f_code.co_filename for p in _LIBRARY_PATHS):
            return None                       # no line events inside library code
        if event == "line":
            count[0] += 1
        return tracer

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        call_student(name, func, *args, forbid=forbid, **kwargs)
    finally:
        sys.settrace(previous)
    return count[0]


def check_loop_free(name: str, func: Callable, small_args: tuple, large_args: tuple, *,
                    forbid=(), slack: int = 5, hint: str | None = None) -> None:
    """Check that ``func`` has no Python loop over the length: the number of Python lines it runs
    (``python_lines``) is the same for ``small_args`` and for the much longer ``large_args``."""
    small = python_lines(name, func, *small_args, forbid=forbid)
    large = python_lines(name, func, *large_args, forbid=forbid)
    if large > small + slack:
        _fail([f"{name}: runs a Python loop over the sequence.",
               "  expected: the same number of Python lines for a short and a long input "
               "(array operations only)",
               f"  got:      {small} lines for the short input, {large} for the long one"],
              hint or "the exercise asks for the closed form / parallel form: replace the loop "
                      "(or comprehension) over t by array operations (np.arange, cumsum, ...).")
