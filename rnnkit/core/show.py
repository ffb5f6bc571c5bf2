"""Helpers for the chapters: show library source in the page, and one plot style for the book.

Chapters display the rnnkit functions they explain with ``show_source(elman.backward)``
instead of copying code into the page, so the book and the library can never drift apart.
"""
from __future__ import annotations

import inspect

__all__ = ["glue", "plain_value", "show_source", "use_book_style"]


def plain_value(value):
    """``value`` as a plain Python number where it is a NumPy, CuPy or torch scalar.

    myst-nb formats ``{glue:text}`name:.3f``` by parsing the glued object's ``text/plain``
    output, and NumPy 2 writes a scalar as ``np.float64(0.93)``, which it cannot parse (the
    build then warns "could not convert string to float"). Python numbers print as numbers.
    Anything else (strings, figures, tables) is returned unchanged.
    """
    # type(), not isinstance: np.float64 is a subclass of float and still prints as np.float64(...)
    if type(value) in (bool, int, float, complex, str):
        return value
    item = getattr(value, "item", None)
    shape = getattr(value, "shape", None)
    if callable(item) and shape is not None and tuple(shape) == ():
        return item()
    return value


def glue(name: str, value, display: bool = False):
    """Glue ``value`` into the page under ``name`` (``myst_nb.glue``), as a plain number where it
    is a 0-d array or scalar of NumPy, CuPy or torch (see :func:`plain_value`).

    The chapters quote computed numbers with ``{glue:text}`name:.3f``` in their Markdown; this
    is the one place they are handed to myst-nb. Not displayed in the cell by default.
    """
    from myst_nb import glue as myst_glue  # noqa: PLC0415  (myst-nb is only needed in notebooks)

    return myst_glue(name, plain_value(value), display=display)


def show_source(obj, start: str | None = None, stop: str | None = None):
    """The source of a function/class as a highlighted code block (an IPython ``Code`` object).

    ``start``/``stop`` optionally cut the listing to the lines from the first one containing
    ``start`` up to (not including) the first later one containing ``stop``.
    """
    from IPython.display import Code  # noqa: PLC0415  (IPython is only needed in notebooks)

    lines = inspect.getsource(obj).splitlines()
    if start is not None:
        first = next((i for i, ln in enumerate(lines) if start in ln), None)
        if first is None:
            raise ValueError(f"start: {start!r} does not occur in the source of {obj.__qualname__}")
        lines = lines[first:]
    if stop is not None:
        last = next((i for i, ln in enumerate(lines) if i > 0 and stop in ln), None)
        if last is None:
            raise ValueError(f"stop: {stop!r} does not occur in the source of {obj.__qualname__}")
        lines = lines[:last]
    return Code("\n".join(lines), language="python")


def use_book_style() -> None:
    """Matplotlib settings shared by every chapter.

    Figures get an opaque white background so they stay readable on the book's dark theme,
    a colour-blind-safe cycle, and sizes that read well on a laptop screen.
    """
    import matplotlib as mpl  # noqa: PLC0415

    mpl.rcParams.update({
        "figure.figsize": (7.0, 3.6),
        "figure.dpi": 100,
        "savefig.dpi": 100,
        "figure.facecolor": "white",
        "axes.facecolor": "white",
        "savefig.facecolor": "white",
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.titlesize": 11,
        "axes.labelsize": 10,
        "legend.fontsize": 8,
        "axes.prop_cycle": mpl.cycler(color=["#0072B2", "#E69F00", "#009E73", "#D55E00",
                                             "#CC79A7", "#56B4E9", "#F0E442", "#000000"]),
    })
