"""The model registry: every module that follows the cell protocol (rnnkit/PROTOCOL.md).

A model module joins by defining ``example(rng, *, dtype)``; a module holding a second cell (the
minLSTM beside the minGRU) lists it in ``CELLS``. ``tests/test_contract.py`` runs the protocol's
checks over ``models()``, so a new module is tested the day it is written, and ``stack``/``charlm``
can take any of them. ``bind`` fixes a cell's options for code that takes a cell.
"""
from __future__ import annotations

import importlib
import pkgutil
from functools import partial
from types import SimpleNamespace

import rnnkit

__all__ = ["models", "bind"]

# The subpackages of rnnkit/ (the infrastructure, tasks, experiments and kernels), not models.
_NOT_MODELS = {"bench", "core", "experiments", "kernels", "tasks", "training"}


def models() -> dict:
    """name -> cell (a module or namespace with init, step, forward, zero_state, example)."""
    found = {}
    for info in sorted(pkgutil.iter_modules(rnnkit.__path__), key=lambda m: m.name):
        if info.name in _NOT_MODELS or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"rnnkit.{info.name}")
        if callable(getattr(module, "example", None)):
            found[info.name] = module
        for name, cell in getattr(module, "CELLS", {}).items():
            found[name] = cell
    return found


def bind(cell, **options):
    """``cell`` with keyword ``options`` fixed in step, forward and backward (and its forms).

    ``stack.forward_deep(bind(scrn, alpha=0.9), layers, x)`` runs a stack of SCRN layers with
    alpha = 0.9; ``lstm.cell(variant)`` is this for the LSTM. The options stay out of ``params``.
    """
    name = getattr(cell, "__name__", "cell")
    bound = {"__name__": f"{name}({', '.join(f'{k}={v!r}' for k, v in options.items())})",
             "options": dict(options)}
    for attr in dir(cell):
        value = getattr(cell, attr)
        if attr in ("step", "forward", "backward") or attr in getattr(cell, "FORMS", ()):
            bound[attr] = partial(value, **options)
        elif attr in ("init", "zero_state", "example", "STATE", "FORMS", "from_torch"):
            bound[attr] = value
    return SimpleNamespace(**bound)
