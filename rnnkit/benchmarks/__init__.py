"""The benchmark registry: name -> ``run(quick: bool) -> list[record]``.

Every module in this package that defines ``run(quick)`` is a benchmark, registered under its
module name (``elman``, ``lstm``, ``gru``, ``scan``...), so a chapter adds a benchmark by adding
one module here; ``cells`` holds shared pieces and has no ``run``. ``python -m rnnkit.bench
--all`` then runs them all on whatever backends the machine has and records the results (see
``rnnkit.bench``). A benchmark module imports torch and CuPy inside its functions, never at
module top, so importing the registry is cheap and works without them.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Callable

__all__ = ["BENCHMARKS"]


def _discover() -> dict[str, Callable[[bool], list]]:
    found = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if callable(getattr(module, "run", None)):
            found[info.name] = module.run
    return found


BENCHMARKS: dict[str, Callable[[bool], list]] = _discover()
