"""The benchmark harness every chapter uses: time, describe the machine, record, load, plot.

A benchmark is a function ``run(quick: bool) -> list[record]`` registered in
``rnnkit.bench.BENCHMARKS``. One record is one measured configuration::

    {"impl": "numpy", "form": "forward", "device": "AMD EPYC",
     "params": {"B": 32, "L": 512, "D": 256, "H": 256, "dtype": "float32"},
     "median_s": ..., "min_s": ..., "mean_s": ..., "std_s": ..., "number": 1, "times_s": [...]}

``impl`` is the backend the code ran on ("numpy", "torch-cpu", "cupy", "torch-cuda") and
``device`` the hardware it ran on (the CPU model for CPU backends, the GPU name otherwise).
Timings are only as good as the machine is quiet: ``machine_info`` records the load average and
``run_benchmark`` the CPU time other processes used during the run (``other_cpu_load``, in CPUs).

A run of one benchmark on one machine is saved as one JSON file,
``chapters/results/<benchmark>__<device-tag>.json``, holding ``{"benchmark", "machine",
"quick", "records"}`` where ``machine`` comes from ``machine_info()``. The chapters load every
recorded file (``load_results``) and plot them beside what the reader measures live
(``plot_results``), so a reader without a GPU still sees the GPU numbers, labelled with the
device and date they were recorded on.

Recording procedure (the GPU numbers in the book come from exactly this)::

    python -m rnnkit.bench --all                 # every registered benchmark, every backend here
    python -m rnnkit.bench elman --quick --results-dir /tmp/r   # a fast smoke run elsewhere

Quick runs are saved as ``<benchmark>__<device-tag>__quick.json`` so that a smoke run never
overwrites a recorded full run; ``load_results`` skips them unless asked.

Timing method: ``time.perf_counter`` (wall) and ``time.process_time`` (this process's CPU time)
around ``number`` calls, ``repeat`` times, after ``warmup`` untimed calls; a ``sync`` callable runs
after every call so that asynchronous GPU work is finished before the clock stops. Records keep
every repeat, the median and the minimum of both clocks: the chapters read the minimum (the run
least disturbed by anything else) and, on a CPU, compare it with the CPU time.

A recording must be evidence (``python -m rnnkit.bench NAME`` without ``--quick``):

- from committed code: it refuses when ``rnnkit/`` has uncommitted changes (``--allow-dirty``
  overrides it and the file says so);
- on a quiet machine: before it starts it waits (``--wait`` seconds, default 600) until other
  processes use less than ``QUIET_LOAD`` CPUs over a sampling window, and after the run it refuses
  to save if they used more than that during it (``--allow-busy`` saves anyway, marked
  ``"busy": true``). ``QUIET_LOAD`` = 0.2 CPUs: a single-threaded timed loop then loses at most
  about a tenth of its core to pre-emption on a 2-core machine (0.2 of 2 cores), inside the
  scatter of repeats we see on an idle machine; the recordings of the first sessions, taken at
  other loads of 1-36 CPUs, had costs per step that grew with L from pre-emption alone.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import importlib.metadata
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from ..core.backend import gpu_available, torch_cuda_available
from ..core.checks import check_positive_int

__all__ = [
    "Timing", "time_fn", "sync_for", "cupy_sync", "torch_cuda_sync", "available_backends",
    "machine_info", "device_tag", "device_of", "make_record", "make_run", "save_results",
    "load_results", "plot_results", "speed_ratio", "sweep_lengths", "run_benchmark", "main",
    "QUIET_LOAD", "measure_other_load", "wait_for_quiet",
    "CPU_IMPLS", "GPU_IMPLS",
]

CPU_IMPLS = ("numpy", "torch-cpu")
GPU_IMPLS = ("cupy", "torch-cuda")

# Identifies runs measured in this Python process: ``plot_results`` labels every other run
# "recorded on <device>, <date>". Saved in the JSON too, so one ``--all`` run's files share it.
_SESSION = uuid.uuid4().hex[:12]


# ----------------------------------------------------------------------------------- timing
@dataclass
class Timing:
    """Per-call times of ``repeat`` measurements (each the mean over ``number`` calls), seconds."""

    times_s: list
    median_s: float
    min_s: float
    mean_s: float
    std_s: float
    number: int = 1
    cpu_times_s: list | None = None    # this process's CPU time per call, same repeats
    min_cpu_s: float | None = None

    @classmethod
    def from_times(cls, times_s: Iterable[float], number: int = 1,
                   cpu_times_s: Iterable[float] | None = None) -> "Timing":
        times = [float(t) for t in times_s]
        if not times:
            raise ValueError("times_s: expected at least one measurement, got none")
        std = statistics.stdev(times) if len(times) > 1 else 0.0
        cpu = None if cpu_times_s is None else [float(t) for t in cpu_times_s]
        return cls(times, statistics.median(times), min(times), statistics.fmean(times), std,
                   number, cpu, None if not cpu else min(cpu))


def time_fn(fn: Callable[[], object], *, warmup: int = 2, repeat: int = 7, number: int = 1,
            sync: Callable[[], object] | None = None) -> Timing:
    """Time ``fn()``: ``warmup`` untimed calls, then ``repeat`` measurements of ``number`` calls.

    Args:
        fn: called with no arguments; its result is discarded.
        warmup: untimed calls first (caches, lazy initialisation, GPU kernel compilation). >= 0.
        repeat: number of measurements (>= 1). number: calls per measurement (>= 1), for
            functions too fast for one call to be timed reliably.
        sync: called after every call (timed or not), e.g. ``sync_for("cupy")``, so the clock
            stops only when the device has finished. None on CPU.
    Returns:
        Timing, whose ``times_s`` holds ``repeat`` per-call times (each measurement / number).
    """
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup: expected a non-negative integer, got {warmup!r}")
    check_positive_int("repeat", repeat)
    check_positive_int("number", number)
    for _ in range(warmup):
        fn()
        if sync is not None:
            sync()
    times, cpu_times = [], []
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(number):
            fn()
            if sync is not None:
                sync()
        times.append((time.perf_counter() - t0) / number)
        cpu_times.append((time.process_time() - c0) / number)
    return Timing.from_times(times, number, cpu_times)


def cupy_sync() -> Callable[[], None]:
    """A sync callable for CuPy: waits for all work on the current device."""
    import cupy  # noqa: PLC0415  (optional dependency)

    device = cupy.cuda.Device()
    return device.synchronize


def torch_cuda_sync() -> Callable[[], None]:
    """A sync callable for torch on CUDA."""
    import torch  # noqa: PLC0415

    return torch.cuda.synchronize


def sync_for(impl: str) -> Callable[[], None] | None:
    """The sync callable ``time_fn`` needs for ``impl``: None for CPU backends."""
    if impl in CPU_IMPLS:
        return None
    if impl == "cupy":
        return cupy_sync()
    if impl == "torch-cuda":
        return torch_cuda_sync()
    raise ValueError(f"impl: expected one of {CPU_IMPLS + GPU_IMPLS}, got {impl!r}")


def available_backends() -> dict[str, bool]:
    """Which backends can run here: {"numpy", "torch-cpu", "cupy", "torch-cuda"} -> bool."""
    try:
        import torch  # noqa: F401, PLC0415

        has_torch = True
    except Exception:  # noqa: BLE001
        has_torch = False
    return {"numpy": True, "torch-cpu": has_torch, "cupy": gpu_available(),
            "torch-cuda": has_torch and torch_cuda_available()}


# ---------------------------------------------------------------------- machine description
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _gpu_name() -> str | None:
    if gpu_available():
        try:
            import cupy  # noqa: PLC0415

            name = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["name"]
            return name.decode() if isinstance(name, bytes) else str(name)
        except Exception:  # noqa: BLE001
            pass
    if torch_cuda_available():
        try:
            import torch  # noqa: PLC0415

            return torch.cuda.get_device_name(torch.cuda.current_device())
        except Exception:  # noqa: BLE001
            pass
    return None


def _version(module: str) -> str | None:
    try:
        mod = __import__(module)
        return str(getattr(mod, "__version__", "unknown"))
    except Exception:  # noqa: BLE001  (missing, or broken install: either way not usable)
        return None


def _rnnkit_version() -> str | None:
    # From the installed metadata: an editable install can leave ``rnnkit`` a namespace
    # package (no __init__ run, so no ``rnnkit.__version__``) when it is imported from elsewhere.
    try:
        return importlib.metadata.version("rnnkit")
    except importlib.metadata.PackageNotFoundError:
        return getattr(sys.modules.get("rnnkit"), "__version__", None)


def _git(*args: str) -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                             timeout=10, check=True)
        return out.stdout.strip()
    except Exception:  # noqa: BLE001  (no git, not a repository, timeout...)
        return None


def _blas() -> str | None:
    try:
        import numpy as np  # noqa: PLC0415

        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version', '')}".strip()
    except Exception:  # noqa: BLE001
        return None


def _load_avg() -> list | None:
    """1, 5 and 15 minute load averages: other work on the machine skews the timings."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def machine_info() -> dict:
    """Describe this machine for a results file, without the host name.

    Returns:
        dict with date (ISO 8601, UTC), cpu (model), cpu_count, cpus_usable (this process's
        affinity), gpu (name or None), os, blas (NumPy's), torch_threads, load_avg (1, 5 and
        15 minutes; compare with cpus_usable: a busy machine gives slow, noisy times),
        versions (python, numpy, torch, cupy, rnnkit; None where not importable),
        git_commit (None outside a repository), git_dirty (whether rnnkit/ differs from that
        commit), session (shared by the runs made in one process).
    """
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    torch_threads = None
    if _version("torch") is not None:
        import torch  # noqa: PLC0415

        torch_threads = torch.get_num_threads()
    cupy_version = None
    if gpu_available():  # importing CuPy without a device is slow and can print warnings
        cupy_version = _version("cupy")
    commit = _git("rev-parse", "HEAD")
    dirty = _git("status", "--porcelain", "--", "rnnkit")
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "gpu": _gpu_name(),
        "os": f"{platform.system()} {platform.release()}",
        "blas": _blas(),
        "torch_threads": torch_threads,
        "load_avg": _load_avg(),
        "versions": {
            "python": platform.python_version(),
            "numpy": _version("numpy"),
            "torch": _version("torch"),
            "cupy": cupy_version,
            "rnnkit": _rnnkit_version(),
        },
        "git_commit": commit,
        "git_dirty": None if dirty is None else bool(dirty),
        "session": _SESSION,
    }


def _short_cpu(model: str) -> str:
    """'Intel(R) Xeon(R) Platinum 8480C CPU @ 2.00GHz' -> 'Intel Xeon Platinum 8480C'."""
    model = re.sub(r"\((R|TM|tm|r)\)", "", model)
    model = re.sub(r"@.*$", "", model)
    model = re.sub(r"\b(CPU|Processor|\d+-Core)\b", "", model)
    return " ".join(model.split())


def _slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-") or "unknown"


def device_tag(machine: dict) -> str:
    """Filesystem-safe file tag: 'gpu-<gpu name>' if the machine has a GPU, else 'cpu-<cpu>'."""
    if machine.get("gpu"):
        return "gpu-" + _slug(machine["gpu"])
    return "cpu-" + _slug(_short_cpu(machine.get("cpu") or "unknown"))


def device_of(impl: str, machine: dict | None = None) -> str:
    """The hardware ``impl`` runs on: the GPU name for GPU backends, the CPU model otherwise."""
    machine = machine_info() if machine is None else machine
    if impl in GPU_IMPLS:
        return machine.get("gpu") or "unknown GPU"
    return _short_cpu(machine.get("cpu") or "unknown CPU")


# ------------------------------------------------------------------------------- records
def make_record(impl: str, form: str, params: dict, timing: Timing,
                device: str | None = None) -> dict:
    """One record, JSON-ready. ``device`` defaults to ``device_of(impl)`` on this machine."""
    return {
        "impl": impl,
        "form": form,
        "device": device if device is not None else device_of(impl, _machine_cached()),
        "params": dict(params),
        "median_s": timing.median_s,
        "min_s": timing.min_s,
        "mean_s": timing.mean_s,
        "std_s": timing.std_s,
        "number": timing.number,
        "times_s": list(timing.times_s),
        "min_cpu_s": timing.min_cpu_s,
        "cpu_times_s": None if timing.cpu_times_s is None else list(timing.cpu_times_s),
    }


_MACHINE: dict | None = None


def _machine_cached() -> dict:
    """machine_info() computed once per process (git and /proc reads are not free)."""
    global _MACHINE  # noqa: PLW0603
    if _MACHINE is None:
        _MACHINE = machine_info()
    return _MACHINE


def make_run(name: str, records: list, machine: dict | None = None, quick: bool = False) -> dict:
    """The dict saved as one results file: {"benchmark", "machine", "quick", "records"}."""
    _check_name(name)
    return {"benchmark": name, "machine": machine if machine is not None else machine_info(),
            "quick": bool(quick), "records": list(records)}


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9]+(?:[_-][a-z0-9]+)*", name):
        raise ValueError(f"name: expected lower-case letters, digits and single '_' or '-' "
                         f"(it becomes part of a file name), got {name!r}")


def default_results_dir() -> Path:
    """chapters/results of the repository this rnnkit was imported from."""
    return Path(__file__).resolve().parents[2] / "chapters" / "results"


def save_results(name: str, records: list, results_dir: str | Path | None = None, *,
                 machine: dict | None = None, quick: bool = False) -> Path:
    """Write one run to ``<results_dir>/<name>__<device-tag>[__quick].json`` and return the path.

    Args:
        name: the benchmark's registered name. records: from ``make_record``.
        results_dir: defaults to the repository's chapters/results (created if missing).
        machine: defaults to ``machine_info()`` (tests pass a fake one).
        quick: a smoke run; its file gets the ``__quick`` suffix and never replaces a full run.
    """
    run = make_run(name, records, machine, quick)
    folder = Path(results_dir) if results_dir is not None else default_results_dir()
    folder.mkdir(parents=True, exist_ok=True)
    suffix = "__quick" if quick else ""
    path = folder / f"{name}__{device_tag(run['machine'])}{suffix}.json"
    path.write_text(json.dumps(run, indent=1) + "\n", encoding="utf-8")
    return path


def load_results(name: str, results_dir: str | Path | None = None, *,
                 include_quick: bool = False) -> list[dict]:
    """Every recorded run of benchmark ``name`` (any device, any date), oldest first.

    Each run is the saved dict plus ``"path"``. Quick runs are left out unless ``include_quick``.
    """
    _check_name(name)
    folder = Path(results_dir) if results_dir is not None else default_results_dir()
    runs = []
    for path in sorted(folder.glob(f"{name}__*.json")):
        run = json.loads(path.read_text(encoding="utf-8"))
        if run.get("benchmark") != name or (run.get("quick") and not include_quick):
            continue
        run["path"] = str(path)
        runs.append(run)
    return sorted(runs, key=lambda r: r["machine"].get("date", ""))


# --------------------------------------------------------------------------- analysis
def _as_runs(runs) -> list[dict]:
    if isinstance(runs, dict):
        return [runs]
    return list(runs)


def _is_live(run: dict) -> bool:
    return run.get("machine", {}).get("session") == _SESSION


def _matches(record: dict, where: dict) -> bool:
    for key, want in where.items():
        if key in ("impl", "form", "device"):
            if record.get(key) != want:
                return False
        elif record["params"].get(key) != want:
            return False
    return True


_AXIS_LABELS = {"L": "sequence length L", "B": "batch size B", "D": "input size D",
                "H": "hidden size H", "N": "state size N"}
_Y_LABELS = {"median_s": "time per call (s), median", "min_s": "time per call (s), minimum",
             "mean_s": "time per call (s), mean"}


def plot_results(runs, x: str = "L", y: str = "min_s", ax=None, title: str | None = None,
                 **where):
    """Log-log plot of ``y`` against params[``x``], one line per (impl, form, device).

    Args:
        runs: a run dict or a list of them (``load_results`` plus a live ``make_run``).
        x: the parameter on the horizontal axis. y: the record field plotted.
        ax: matplotlib axes to draw on (a new figure if None). title: defaults to the benchmark.
        where: keep only records whose params (or impl/form/device) equal these values.
    Returns:
        the axes. Lines from runs not measured in this process are dashed and labelled
        "recorded on <device>, <date>".
    """
    import matplotlib.pyplot as plt  # noqa: PLC0415  (plotting is optional for the library)

    runs = _as_runs(runs)
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.5))
    groups: dict[tuple, dict] = {}
    for i, run in enumerate(runs):
        for rec in run["records"]:
            if x not in rec["params"] or not _matches(rec, where):
                continue
            rest = tuple(sorted((k, str(v)) for k, v in rec["params"].items() if k != x))
            key = (i, rec["impl"], rec["form"], rec.get("device", "?"), rest)
            groups.setdefault(key, {"run": run, "points": []})["points"].append(
                (rec["params"][x], rec[y]))
    # Name only the parameters that tell apart lines of the same (impl, form, device).
    seen: dict[tuple, set] = {}
    for (i, impl, form, device, rest) in groups:
        seen.setdefault((i, impl, form, device), set()).add(rest)
    # One colour per (impl, form) across runs, so a live line and its recorded twin match;
    # live runs are solid with circles, recorded ones dashed with one marker per run.
    palette = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    colours: dict[tuple, str] = {}
    markers = "osD^v<>px*"
    for key in sorted(groups, key=lambda k: (not _is_live(groups[k]["run"]), k[0], k[1], k[2])):
        i, impl, form, device, rest = key
        run, points = groups[key]["run"], sorted(groups[key]["points"])
        varying = set()
        if len(seen[(i, impl, form, device)]) > 1:
            items = [dict(r) for r in seen[(i, impl, form, device)]]
            varying = {k for k in set().union(*items) if len({d.get(k) for d in items}) > 1}
        extra = "".join(f", {k}={v}" for k, v in rest if k in varying)
        colour = colours.setdefault((impl, form, extra), palette[len(colours) % len(palette)])
        if _is_live(run):
            label = f"{impl} {form}{extra} (this run, {device})"
            style, marker = "-", "o"
        else:
            date = run["machine"].get("date", "unknown date")[:10]
            label = f"{impl} {form}{extra}, recorded on {device}, {date}"
            style, marker = "--", markers[1 + i % (len(markers) - 1)]
        xs, ys = zip(*points)
        ax.plot(xs, ys, style, marker=marker, color=colour, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(_AXIS_LABELS.get(x, x))
    ax.set_ylabel(_Y_LABELS.get(y, y))
    if title is None:
        names = sorted({run.get("benchmark", "?") for run in runs})
        title = f"{', '.join(names)} benchmark: {_Y_LABELS.get(y, y).split(' (')[0]} vs {x}"
    ax.set_title(title)
    if groups:
        ax.legend(fontsize="small")
    ax.grid(True, which="both", alpha=0.3)
    return ax


def speed_ratio(runs, impl_a: str, impl_b: str, *, y: str = "min_s", **where) -> float:
    """time(impl_a) / time(impl_b) for the one record of each that matches ``where``.

    ``where`` filters on params (``B=32, L=512``) and on the record fields form and device.
    A ratio above 1 means impl_a is slower. Raises ValueError if either side matches no record
    or several (pass more filters, or fewer runs).
    """
    runs = _as_runs(runs)

    def pick(impl):
        found = [rec for run in runs for rec in run["records"]
                 if rec["impl"] == impl and _matches(rec, where)]
        if len(found) != 1:
            desc = ", ".join(f"{r['form']} on {r.get('device')} {r['params']}" for r in found)
            raise ValueError(f"speed_ratio: expected exactly one {impl!r} record matching {where}, "
                             f"found {len(found)}{': ' + desc if desc else ''}")
        return found[0][y]

    return pick(impl_a) / pick(impl_b)


# ---------------------------------------------------------------------------------- CLI
def sweep_lengths(lengths, problem: Callable, rnnkit_fns: Callable, torch_fns: Callable,
                  check_agree: Callable, *, repeat: dict, B: int, D: int, H: int,
                  backends: dict | None = None) -> list[dict]:
    """The sweep over L that every recurrent-cell benchmark runs; returns the records.

    For each L: ``problem(B, L, D, H) -> (params, x)`` builds float32 NumPy inputs;
    ``rnnkit_fns(params, x, backend)`` and ``torch_fns(params, x, device)`` return the
    ``(forward, forward+backward)`` closures of rnnkit (on "numpy" or "cupy") and torch (on
    "cpu" or "cuda"); every implementation other than NumPy is first compared with it by
    ``check_agree(impl, fwd, fwd_bwd, ref_fwd, ref_fwd_bwd)``, then both forms are timed.
    Unavailable backends (``available_backends()``, or ``backends`` given) are skipped.
    """
    backends = available_backends() if backends is None else backends
    impls = [impl for impl in (*CPU_IMPLS, *GPU_IMPLS) if backends.get(impl)]
    records = []
    for L in lengths:
        params, x = problem(B, L, D, H)
        ref = rnnkit_fns(params, x, "numpy")
        for impl in impls:
            if impl == "numpy":
                fwd, fwd_bwd = ref
            elif impl == "cupy":
                fwd, fwd_bwd = rnnkit_fns(params, x, "cupy")
            else:
                fwd, fwd_bwd = torch_fns(params, x, "cpu" if impl == "torch-cpu" else "cuda")
            if impl != "numpy":
                check_agree(impl, fwd, fwd_bwd, *ref)
            config = {"B": B, "L": L, "D": D, "H": H, "dtype": "float32"}
            if impl == "torch-cpu":
                import torch  # noqa: PLC0415

                config["threads"] = torch.get_num_threads()
            for form, fn in (("forward", fwd), ("forward+backward", fwd_bwd)):
                timing = time_fn(fn, sync=sync_for(impl), **repeat)
                records.append(make_record(impl, form, config, timing))
    return records


def run_benchmark(name: str, quick: bool = False) -> dict:
    """Run registered benchmark ``name`` here and return its run dict (not saved)."""
    if name not in BENCHMARKS:
        raise ValueError(f"name: expected one of {sorted(BENCHMARKS)}, got {name!r}")
    machine = machine_info()             # fresh: date and load average at the start
    before = _cpu_snapshot()
    records = BENCHMARKS[name](quick)
    machine["load_avg_after"] = _load_avg()
    machine["other_cpu_load"] = _other_cpu_load(before, _cpu_snapshot())
    return make_run(name, records, machine, quick)


def _cpu_snapshot() -> tuple | None:
    """(wall clock, CPU seconds used by the whole machine, CPU seconds used by this process)."""
    try:
        with open("/proc/stat", encoding="utf-8") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        ticks = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None
    busy = (sum(fields[:8]) - fields[3] - fields[4]) / ticks   # all but idle and iowait
    own = os.times()
    return time.perf_counter(), busy, own.user + own.system


def _other_cpu_load(before: tuple | None, after: tuple | None) -> float | None:
    """Mean number of CPUs kept busy by *other* processes between two snapshots.

    0 means the benchmark had the machine to itself; 1.5 on a 2-CPU machine means the timings
    were taken while other work used most of it, and should be read with that in mind.
    """
    if before is None or after is None or after[0] <= before[0]:
        return None
    wall = after[0] - before[0]
    other = (after[1] - before[1]) - (after[2] - before[2])
    return round(max(other, 0.0) / wall, 2)


QUIET_LOAD = 0.2   # CPUs that other processes may use while we time (see the module docstring)


def measure_other_load(seconds: float = 5.0) -> float | None:
    """CPUs used by other processes over a ``seconds`` window (None where /proc is missing)."""
    before = _cpu_snapshot()
    time.sleep(seconds)
    return _other_cpu_load(before, _cpu_snapshot())


def wait_for_quiet(threshold: float = QUIET_LOAD, timeout: float = 600.0,
                   window: float = 5.0, log=print) -> float | None:
    """Wait until other processes use less than ``threshold`` CPUs; return the last load seen.

    Raises:
        RuntimeError: still busy after ``timeout`` seconds (the message gives the load).
    """
    deadline = time.monotonic() + timeout
    while True:
        load = measure_other_load(window)
        if load is None or load < threshold:
            return load
        if time.monotonic() >= deadline:
            raise RuntimeError(f"the machine is busy: other processes use {load} CPUs "
                               f"(> {threshold}) after waiting {timeout:.0f} s; timings taken now "
                               "would measure them, not the code. Try again when it is quiet, "
                               "or pass --allow-busy to record anyway (marked busy)")
        log(f"waiting for a quiet machine: other processes use {load} CPUs (> {threshold})")


def _summary(run: dict) -> str:
    lines = [f"{run['benchmark']} on {device_tag(run['machine'])}"
             f"{' (quick)' if run['quick'] else ''}:"]
    for rec in run["records"]:
        params = " ".join(f"{k}={v}" for k, v in rec["params"].items())
        lines.append(f"  {rec['impl']:<10} {rec['form']:<17} {params:<50} "
                     f"median {rec['median_s'] * 1e3:9.3f} ms")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[Path]:
    """``python -m rnnkit.bench NAME|--all [--quick] [--results-dir DIR]``; returns saved paths."""
    parser = argparse.ArgumentParser(prog="python -m rnnkit.bench",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("name", nargs="?", help=f"benchmark to run, one of {sorted(BENCHMARKS)}")
    parser.add_argument("--all", action="store_true", help="run every registered benchmark")
    parser.add_argument("--list", action="store_true", help="list registered benchmarks and exit")
    parser.add_argument("--quick", action="store_true",
                        help="small sweep, few repeats; saved with a __quick suffix")
    parser.add_argument("--results-dir", default=None,
                        help=f"where to write JSON (default {default_results_dir()})")
    parser.add_argument("--wait", type=float, default=600.0,
                        help="seconds to wait for a quiet machine before refusing (default 600)")
    parser.add_argument("--allow-busy", action="store_true",
                        help="record even if other processes use the CPUs (the file says so)")
    parser.add_argument("--allow-dirty", action="store_true",
                        help="record from uncommitted code (the file says so)")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                        help="gpu: the GPU run (tests, copy bandwidth, the kernel matrix; "
                             "rnnkit/kernels/benchmark.py) instead of a CPU benchmark")
    args = parser.parse_args(argv)
    if args.device == "gpu":
        if args.name is not None or args.all:
            parser.error("--device gpu runs its own matrix: give no NAME and no --all")
        from ..kernels import benchmark as gpu_benchmark  # noqa: PLC0415

        return [gpu_benchmark.main(quick=args.quick, results_dir=args.results_dir)]
    if args.list:
        print("\n".join(sorted(BENCHMARKS)))
        return []
    if args.all == (args.name is not None):
        parser.error("give exactly one of NAME or --all")
    if args.name is not None and args.name not in BENCHMARKS:
        parser.error(f"unknown benchmark {args.name!r}; registered: {sorted(BENCHMARKS)}")
    names = sorted(BENCHMARKS) if args.all else [args.name]
    print(f"backends here: {available_backends()}")
    if not args.quick:   # a recording: committed code, quiet machine (a quick run is a smoke test)
        dirty = machine_info().get("git_dirty")
        if dirty is not False and not args.allow_dirty:
            raise SystemExit("refusing to record: rnnkit/ differs from its commit (or is not a git "
                             "checkout); commit first (or pass --allow-dirty, marked in the file)")
        if not args.allow_busy:
            try:
                wait_for_quiet(timeout=args.wait)
            except RuntimeError as exc:
                raise SystemExit(f"refusing to record: {exc}") from None
    paths = []
    for name in names:
        run = run_benchmark(name, args.quick)
        print(_summary(run))
        other = run["machine"].get("other_cpu_load")
        busy = other is not None and other > QUIET_LOAD
        if busy and not args.quick and not args.allow_busy:
            print(f"  not saved: other processes kept {other} CPUs busy during this run "
                  f"(> {QUIET_LOAD}); rerun on a quiet machine")
            continue
        run["machine"]["busy"] = bool(busy)
        if busy:
            print(f"  warning: other processes kept {other} CPUs busy during this run")
        path = save_results(name, run["records"], args.results_dir, machine=run["machine"],
                            quick=args.quick)
        print(f"  saved {path}")
        paths.append(path)
    return paths



def _discover() -> dict[str, Callable[[bool], list]]:
    """Every module of this package that defines ``run(quick)``, by module name (the suites:
    ``elman``, ``lstm``, ..., ``scan``); ``cells`` holds shared pieces and has no ``run``. A
    suite imports torch and CuPy inside its functions, so discovering them is cheap."""
    import importlib  # noqa: PLC0415
    import pkgutil  # noqa: PLC0415

    found = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if callable(getattr(module, "run", None)):
            found[info.name] = module.run
    return found


# The registry, name -> run(quick): discovered last, because each suite imports this package.
BENCHMARKS: dict[str, Callable[[bool], list]] = _discover()
