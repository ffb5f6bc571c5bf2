"""Recorded results: one JSON file per experiment run, written only from committed code.

Every number the book quotes from a run too long for a notebook comes from a file written here,
``chapters/results/<name>__<size>.json``, holding::

    {"name": ..., "size": "large",
     "config": {... every hyperparameter, the size knob, the seeds ...},
     "figures": {... the measured numbers, plain JSON ...},
     "machine": {... date, CPU, versions, git_commit, git_dirty, load average ...},
     "wall_time_s": ..., "cpu_time_s": ...}

``record`` refuses to write when ``rnnkit/`` differs from its commit: a number that no commit can
reproduce is not evidence. ``python -m rnnkit.experiments NAME --size large --from-head`` runs the
committed ``HEAD`` in a temporary clean worktree, so a recording can be made while other work is
in progress in the checkout. Chapters read a recording with ``load`` and label what they show
with ``describe`` ("recorded 2026-12-06 at commit 1a2b3c4 on AMD EPYC ...").

Timing benchmarks have their own files and rules (``rnnkit.bench``): they also need a quiet
machine. Accuracy experiments are deterministic given their seeds, so the machine's load is
recorded but does not block them.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from ..bench import default_results_dir, machine_info

__all__ = ["record", "load", "describe", "results_path", "DirtyTreeError"]


class DirtyTreeError(RuntimeError):
    """The code that produced a result is not a commit (``rnnkit/`` has uncommitted changes)."""


def _check_name(what: str, value: str) -> None:
    if not isinstance(value, str) or not value or any(c in value for c in "/\\ ") \
            or "__" in value:
        raise ValueError(f"{what}: expected a non-empty name without '/', spaces or '__', "
                         f"got {value!r}")


def results_path(name: str, size: str = "large", results_dir: str | Path | None = None) -> Path:
    """Where the recording of experiment ``name`` at ``size`` lives."""
    _check_name("name", name)
    _check_name("size", size)
    return Path(results_dir or default_results_dir()) / f"{name}__{size}.json"


def _plain(value, where: str):
    """JSON-ready copy of ``value`` (NumPy scalars and arrays become numbers and lists)."""
    if isinstance(value, dict):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if hasattr(value, "tolist"):                     # NumPy arrays and scalars
        return _plain(value.tolist(), where)
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{where}: expected numbers, strings, lists or dicts, got "
                    f"{type(value).__name__}")


def record(name: str, size: str, config: dict, figures: dict, *,
           results_dir: str | Path | None = None, wall_time_s: float | None = None,
           cpu_time_s: float | None = None, allow_dirty: bool = False) -> Path:
    """Write one experiment's results with the machine and the commit that produced them.

    Args:
        name: experiment name (the module in ``rnnkit.experiments``).
        size: the size knob it ran at ("small", "large").
        config: every setting needed to rerun it (hyperparameters, seeds, data sizes).
        figures: the measured numbers (accuracies, losses, curves), plain JSON types or NumPy.
        allow_dirty: write even from uncommitted code (for tests only: the file says so).
    Returns:
        the path written.
    Raises:
        DirtyTreeError: ``rnnkit/`` has uncommitted changes and ``allow_dirty`` is false.
    """
    if not isinstance(config, dict) or not isinstance(figures, dict):
        raise TypeError(f"config, figures: expected dicts, got {type(config).__name__} and "
                        f"{type(figures).__name__}")
    machine = machine_info()
    if machine.get("git_dirty") is not False and not allow_dirty:
        raise DirtyTreeError(
            f"record: rnnkit/ differs from commit {machine.get('git_commit')} (or is not a git "
            "checkout): commit first, or run `python -m rnnkit.experiments NAME --from-head`, "
            "which runs the committed HEAD in a clean temporary worktree")
    data = {"name": name, "size": size, "config": _plain(config, "config"),
            "figures": _plain(figures, "figures"), "machine": machine,
            "wall_time_s": wall_time_s, "cpu_time_s": cpu_time_s}
    path = results_path(name, size, results_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return path


def load(name: str, size: str = "large", results_dir: str | Path | None = None) -> dict:
    """Read a recording made by ``record``; the error says which command makes a missing one."""
    path = results_path(name, size, results_dir)
    if not path.exists():
        raise FileNotFoundError(f"{path} is not recorded yet; make it with `python -m "
                                f"rnnkit.experiments {name} --size {size} --from-head`")
    return json.loads(path.read_text(encoding="utf-8"))


def describe(run: dict) -> str:
    """A label for a figure or table: when, from which commit, on what machine."""
    m = run.get("machine", {})
    commit = (m.get("git_commit") or "no commit")[:7]
    dirty = " (uncommitted changes)" if m.get("git_dirty") else ""
    date = (m.get("date") or "undated")[:10]
    device = m.get("gpu") or m.get("cpu") or "unknown machine"
    return f"recorded {date} at commit {commit}{dirty} on {device}"
