"""The experiment registry: name -> ``run(size: str) -> {"config": ..., "figures": ...}``.

An experiment is a chapter's training run or measurement that is too long for the notebook at
its large size. Every module in this package that defines ``run(size)`` is registered under its
module name, so a chapter adds one by adding a module here. The chapter calls ``run("small")``
live and reads the recorded large run with ``rnnkit.core.results.load(name, "large")``; the
recording is made by ``python -m rnnkit.experiments NAME --size large --from-head`` (see
``rnnkit.core.results``). Modules import torch inside their functions, so the registry is cheap.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Callable

__all__ = ["experiments", "get"]


def experiments() -> dict[str, Callable[[str], dict]]:
    """Every registered experiment, by name (discovered afresh, so new modules appear)."""
    found = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if callable(getattr(module, "run", None)):
            found[info.name] = module.run
    return found


def get(name: str) -> Callable[[str], dict]:
    """The ``run`` function of experiment ``name``; a clear error lists the known names."""
    found = experiments()
    if name not in found:
        raise ValueError(f"name: expected one of {sorted(found)}, got {name!r}")
    return found[name]
