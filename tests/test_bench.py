"""Tests for the benchmark harness rnnkit.bench and chapter 1's rnnkit.bench.elman."""
import datetime as dt
import json
import platform
import re
import subprocess
import sys
import types

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display in CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from rnnkit import bench  # noqa: E402
from rnnkit.core.backend import gpu_available, torch_cuda_available  # noqa: E402
from rnnkit.bench import elman as elman_bench  # noqa: E402

FAKE_CPU = {"date": "2025-03-04T05:06:07+00:00",
            "cpu": "Intel(R) Xeon(R) Platinum 8480C CPU @ 2.00GHz", "gpu": None,
            "session": "recorded-earlier", "versions": {}}
FAKE_GPU = {"date": "2025-05-06T07:08:09+00:00", "cpu": "AMD EPYC 9654 96-Core Processor",
            "gpu": "NVIDIA H100 80GB HBM3", "session": "recorded-earlier", "versions": {}}


def _record(impl, form, L, median, device="Test CPU", B=32):
    timing = bench.Timing.from_times([median, median * 1.1, median * 0.9])
    return bench.make_record(impl, form, {"B": B, "L": L, "D": 8, "H": 8, "dtype": "float32"},
                             timing, device=device)


# --------------------------------------------------------------------------------- timing
def test_timing_statistics():
    t = bench.Timing.from_times([3.0, 1.0, 2.0])
    assert (t.median_s, t.min_s, t.mean_s, t.std_s) == (2.0, 1.0, 2.0, 1.0)
    with pytest.raises(ValueError, match="times_s"):
        bench.Timing.from_times([])


def test_time_fn_counts_warmup_repeat_number_and_syncs():
    calls, syncs = [], []
    t = bench.time_fn(lambda: calls.append(1), warmup=3, repeat=4, number=5,
                      sync=lambda: syncs.append(1))
    assert len(calls) == 3 + 4 * 5
    assert len(syncs) == len(calls)          # sync after every call, warmup included
    assert len(t.times_s) == 4 and t.number == 5
    assert all(x > 0 for x in t.times_s)
    assert t.min_s <= t.median_s <= max(t.times_s)


def test_time_fn_measures_per_call_time_with_a_fake_clock(monkeypatch):
    """Each call advances the clock by exactly 0.25 s: the per-call time must be 0.25."""
    clock = {"now": 100.0}
    monkeypatch.setattr(bench, "time", types.SimpleNamespace(perf_counter=lambda: clock["now"],
                                                             process_time=lambda: clock["now"]))

    def fn():
        clock["now"] += 0.25

    t = bench.time_fn(fn, warmup=2, repeat=3, number=4)
    assert t.times_s == [0.25, 0.25, 0.25] and t.cpu_times_s == [0.25, 0.25, 0.25]
    assert clock["now"] == 100.0 + 0.25 * (2 + 3 * 4)


def test_time_fn_real_clock_is_sane():
    import time

    t = bench.time_fn(lambda: time.sleep(0.002), warmup=0, repeat=3)
    assert all(0.002 <= x < 0.5 for x in t.times_s)


@pytest.mark.parametrize("kwargs", [{"repeat": 0}, {"number": 0}, {"warmup": -1}, {"repeat": 1.5}])
def test_time_fn_rejects_bad_counts(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        bench.time_fn(lambda: None, **kwargs)


# ------------------------------------------------------------------- machine and backends
def test_available_backends_here():
    b = bench.available_backends()
    assert set(b) == {"numpy", "torch-cpu", "cupy", "torch-cuda"}
    assert b["numpy"] is True and b["torch-cpu"] is True
    assert b["cupy"] == gpu_available() and b["torch-cuda"] == torch_cuda_available()


def test_sync_for_cpu_is_none_and_unknown_impl_is_an_error():
    assert bench.sync_for("numpy") is None and bench.sync_for("torch-cpu") is None
    with pytest.raises(ValueError, match="impl"):
        bench.sync_for("tpu")


def _flat_values(d):
    for v in d.values():
        if isinstance(v, dict):
            yield from _flat_values(v)
        elif isinstance(v, list):
            yield from v
        else:
            yield v


def test_machine_info_describes_the_machine_without_host_name():
    info = bench.machine_info()
    date = dt.datetime.fromisoformat(info["date"])
    assert date.utcoffset() == dt.timedelta(0)
    assert abs((dt.datetime.now(dt.timezone.utc) - date).total_seconds()) < 60
    assert info["cpu"] and info["cpu_count"] >= 1
    assert info["versions"]["python"] == platform.python_version()
    assert info["versions"]["numpy"] == np.__version__
    assert info["versions"]["torch"].startswith("2.")
    assert info["versions"]["rnnkit"]
    if not gpu_available():
        assert info["versions"]["cupy"] is None
    assert info["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}", info["git_commit"])
    assert platform.node() not in [str(v) for v in _flat_values(info)]
    assert not {"hostname", "node", "host"} & set(info)


def test_machine_info_tolerates_missing_git(monkeypatch):
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(bench.subprocess, "run", no_git)
    info = bench.machine_info()
    assert info["git_commit"] is None and info["git_dirty"] is None


def test_other_cpu_load_subtracts_this_process():
    # 2 s of wall time, the machine used 3 CPU-seconds, this process 1: others kept 1 CPU busy
    assert bench._other_cpu_load((10.0, 100.0, 5.0), (12.0, 103.0, 6.0)) == 1.0
    assert bench._other_cpu_load(None, (12.0, 103.0, 6.0)) is None
    snap = bench._cpu_snapshot()
    assert snap is None or (len(snap) == 3 and snap[1] >= 0)


def test_device_tags_are_filesystem_safe():
    assert bench.device_tag(FAKE_CPU) == "cpu-intel-xeon-platinum-8480c"
    assert bench.device_tag(FAKE_GPU) == "gpu-nvidia-h100-80gb-hbm3"
    assert re.fullmatch(r"(cpu|gpu)-[a-z0-9-]+", bench.device_tag(bench.machine_info()))
    assert bench.device_of("cupy", FAKE_GPU) == "NVIDIA H100 80GB HBM3"
    assert bench.device_of("numpy", FAKE_GPU) == "AMD EPYC 9654"


# ----------------------------------------------------------------------------- JSON files
def test_json_round_trip_keeps_records_and_machine(tmp_path):
    records = [_record("numpy", "forward", 64, 0.01), _record("torch-cpu", "forward", 64, 0.02)]
    path = bench.save_results("elman", records, tmp_path)
    assert path.parent == tmp_path
    assert re.fullmatch(r"elman__cpu-[a-z0-9-]+\.json", path.name)
    on_disk = json.loads(path.read_text())
    assert on_disk["benchmark"] == "elman" and on_disk["quick"] is False
    (run,) = bench.load_results("elman", tmp_path)
    assert run["records"] == records
    assert run["machine"]["versions"]["numpy"] == np.__version__
    assert "date" in run["machine"] and "cpu" in run["machine"]


def test_load_results_finds_every_device_file_and_skips_others(tmp_path):
    bench.save_results("elman", [_record("numpy", "forward", 64, 0.01)], tmp_path, machine=FAKE_CPU)
    bench.save_results("elman", [_record("cupy", "forward", 64, 0.001, "NVIDIA H100 80GB HBM3")],
                       tmp_path, machine=FAKE_GPU)
    bench.save_results("elman", [_record("numpy", "forward", 8, 0.5)], tmp_path, machine=FAKE_GPU,
                       quick=True)
    bench.save_results("elman-big", [_record("numpy", "forward", 64, 9.0)], tmp_path,
                       machine=FAKE_CPU)
    runs = bench.load_results("elman", tmp_path)
    assert [bench.device_tag(r["machine"]) for r in runs] == [
        "cpu-intel-xeon-platinum-8480c", "gpu-nvidia-h100-80gb-hbm3"]   # oldest first
    assert all(r["benchmark"] == "elman" and not r["quick"] for r in runs)
    assert len(bench.load_results("elman", tmp_path, include_quick=True)) == 3
    assert bench.load_results("lstm", tmp_path) == []


@pytest.mark.parametrize("name", ["", "Elman", "a__b", "a b", "../x", "x/"])
def test_benchmark_names_that_break_file_names_are_rejected(name, tmp_path):
    with pytest.raises(ValueError, match="name"):
        bench.save_results(name, [], tmp_path)


def test_default_results_dir_is_the_repositorys_chapters_results():
    d = bench.default_results_dir()
    assert d.parts[-2:] == ("chapters", "results")
    assert (d.parent.parent / "rnnkit" / "bench" / "__init__.py").exists()


# ------------------------------------------------------------------------- ratio and plot
def _runs():
    live = bench.make_run("elman", [_record(impl, form, L, t * L)
                                    for impl, t in (("numpy", 3e-4), ("torch-cpu", 1e-4))
                                    for form in ("forward", "forward+backward")
                                    for L in (64, 128, 256)])
    gpu = bench.make_run("elman", [_record("cupy", "forward", L, 1e-5 * L, "NVIDIA H100 80GB HBM3")
                                   for L in (256, 64, 128)], machine=FAKE_GPU)
    return live, gpu


def test_speed_ratio_is_time_a_over_time_b():
    live, gpu = _runs()
    ratio = bench.speed_ratio(live, "numpy", "torch-cpu", form="forward", L=128)
    assert ratio == pytest.approx(3.0)
    ratio = bench.speed_ratio([live, gpu], "numpy", "cupy", form="forward", L=64)
    assert ratio == pytest.approx(30.0)
    with pytest.raises(ValueError, match="found 2"):        # two forms match: ambiguous
        bench.speed_ratio(live, "numpy", "torch-cpu", L=128)
    with pytest.raises(ValueError, match="found 0"):
        bench.speed_ratio(live, "numpy", "cupy", form="forward", L=128)


def test_plot_labels_recorded_runs_with_device_and_date():
    live, gpu = _runs()
    ax = bench.plot_results([gpu, live], x="L", form="forward")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(labels) == 3                                  # numpy, torch-cpu, cupy; forward only
    recorded = [s for s in labels if "recorded on" in s]
    assert recorded == ["cupy forward, recorded on NVIDIA H100 80GB HBM3, 2025-05-06"]
    assert all("this run" in s and "Test CPU" in s for s in labels if s not in recorded)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_xlabel() == "sequence length L"
    assert "time per call (s)" in ax.get_ylabel()
    assert "elman" in ax.get_title()
    cupy_line = next(line for line in ax.get_lines() if "cupy" in line.get_label())
    assert list(cupy_line.get_xdata()) == [64, 128, 256]    # sorted by L
    assert cupy_line.get_linestyle() == "--"
    plt.close(ax.figure)


def test_plot_gives_a_live_line_and_its_recorded_twin_one_colour():
    live, _ = _runs()
    recorded = dict(live, machine=FAKE_CPU)
    ax = bench.plot_results([recorded, live], form="forward")
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert len(lines) == 4
    for impl in ("numpy", "torch-cpu"):
        (mine,) = [v for k, v in lines.items() if k.startswith(impl + " ") and "this run" in k]
        (old,) = [v for k, v in lines.items() if k.startswith(impl + " ") and "recorded" in k]
        assert mine.get_color() == old.get_color()
        assert (mine.get_linestyle(), old.get_linestyle()) == ("-", "--")
    colours = {line.get_color() for line in lines.values()}
    assert len(colours) == 2
    plt.close(ax.figure)


def test_plot_names_the_parameter_that_separates_lines():
    run = bench.make_run("elman", [_record("numpy", "forward", L, 1e-4 * L, B=B)
                                   for B in (1, 32) for L in (64, 128)])
    ax = bench.plot_results(run, title="batch sizes")
    labels = sorted(t.get_text() for t in ax.get_legend().get_texts())
    assert len(labels) == 2 and "B=1" in labels[0] and "B=32" in labels[1]
    assert ax.get_title() == "batch sizes"
    plt.close(ax.figure)


# -------------------------------------------------------------------- chapter 1 benchmark
CPU_ONLY = {"numpy": True, "torch-cpu": True, "cupy": False, "torch-cuda": False}


@pytest.fixture
def one_torch_thread():
    """torch's multi-threaded RNN slows down ~100x when the CPUs are oversubscribed (a CI box
    running other suites): its threads wait on each other at every step. The tests check the
    harness, not the speed, so they run torch on one thread and restore the default after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_elman_benchmark_records_both_impls_and_forms(one_torch_thread):
    records = elman_bench.run(quick=True, backends=CPU_ONLY, lengths=(4, 8))
    keys = {(r["impl"], r["form"], r["params"]["L"]) for r in records}
    assert keys == {(i, f, L) for i in ("numpy", "torch-cpu")
                    for f in ("forward", "forward+backward") for L in (4, 8)}
    for r in records:
        assert r["params"]["dtype"] == "float32" and r["params"]["B"] == 32
        assert len(r["times_s"]) == elman_bench.QUICK_REPEAT["repeat"] and r["median_s"] > 0
        assert ("threads" in r["params"]) == (r["impl"] == "torch-cpu")


def test_elman_benchmark_skips_unavailable_backends(monkeypatch):
    only_numpy = {"numpy": True, "torch-cpu": False, "cupy": False, "torch-cuda": False}
    monkeypatch.setattr(bench, "available_backends", lambda: only_numpy)
    records = elman_bench.run(quick=True, lengths=(4,))
    assert {r["impl"] for r in records} == {"numpy"}


def test_elman_agreement_check_catches_a_different_model(one_torch_thread):
    """The pre-timing check must fail when torch computes something else."""
    params, x = elman_bench._problem(2, 5, 4, 3)
    other, _ = elman_bench._problem(2, 5, 4, 3, seed=1)
    ref = elman_bench._rnnkit_fns(params, x, "numpy")
    elman_bench._check_agree("torch-cpu", *elman_bench._torch_fns(params, x, "cpu"), *ref)
    with pytest.raises(AssertionError, match="torch-cpu h_all"):
        elman_bench._check_agree("torch-cpu", *elman_bench._torch_fns(other, x, "cpu"), *ref)


def test_forward_breakdown_times_every_part():
    parts = elman_bench.forward_breakdown(2, 4, 8, 8, repeat=1)
    assert {"forward", "input_product", "recurrent_matmuls", "backward"} <= set(parts)
    assert all(v > 0 for v in parts.values())


# ------------------------------------------------------------------------------------ CLI
def test_cli_quick_writes_a_quick_file_into_the_given_dir(tmp_path, capsys, monkeypatch,
                                                          one_torch_thread):
    monkeypatch.setattr(elman_bench, "QUICK_L", (4, 8))      # the real quick sweep takes seconds
    (path,) = bench.main(["elman", "--quick", "--results-dir", str(tmp_path)])
    assert path.parent == tmp_path and path.name.endswith("__quick.json")
    (run,) = bench.load_results("elman", tmp_path, include_quick=True)
    assert run["quick"] is True and {r["params"]["L"] for r in run["records"]} == {4, 8}
    assert "load_avg_after" in run["machine"]
    assert run["machine"]["other_cpu_load"] >= 0
    assert bench.load_results("elman", tmp_path) == []      # quick runs are not "recorded"
    assert "elman on cpu-" in capsys.readouterr().out


def test_cli_all_runs_every_registered_benchmark(tmp_path, monkeypatch):
    def fake(quick):
        return [_record("numpy", "forward", 4, 1e-3)]

    monkeypatch.setattr("rnnkit.bench.BENCHMARKS", {"toy": fake, "toy-two": fake})
    paths = bench.main(["--all", "--results-dir", str(tmp_path), "--allow-dirty", "--allow-busy"])
    assert sorted(p.name.split("__")[0] for p in paths) == ["toy", "toy-two"]


def _fake_machine(monkeypatch, dirty, load_before, load_during):
    info = bench.machine_info()
    monkeypatch.setattr(bench, "machine_info", lambda: dict(info, git_dirty=dirty))
    monkeypatch.setattr(bench, "measure_other_load", lambda seconds=5.0: load_before)
    monkeypatch.setattr(bench, "_other_cpu_load", lambda before, after: load_during)
    monkeypatch.setattr("rnnkit.bench.BENCHMARKS",
                        {"toy": lambda quick: [_record("numpy", "forward", 4, 1e-3)]})


def test_recording_refuses_uncommitted_code(tmp_path, monkeypatch):
    _fake_machine(monkeypatch, dirty=True, load_before=0.0, load_during=0.0)
    with pytest.raises(SystemExit, match="uncommitted|differs from its commit"):
        bench.main(["toy", "--results-dir", str(tmp_path)])
    assert list(tmp_path.iterdir()) == []


def test_recording_waits_for_a_quiet_machine_then_refuses(tmp_path, monkeypatch):
    _fake_machine(monkeypatch, dirty=False, load_before=1.5, load_during=0.0)
    with pytest.raises(SystemExit, match="busy: other processes use 1.5 CPUs"):
        bench.main(["toy", "--results-dir", str(tmp_path), "--wait", "0"])
    assert list(tmp_path.iterdir()) == []


def test_a_run_disturbed_by_other_load_is_not_saved(tmp_path, monkeypatch, capsys):
    _fake_machine(monkeypatch, dirty=False, load_before=0.0, load_during=0.9)
    assert bench.main(["toy", "--results-dir", str(tmp_path)]) == []
    assert "not saved" in capsys.readouterr().out
    (path,) = bench.main(["toy", "--results-dir", str(tmp_path), "--allow-busy"])
    run = json.loads(path.read_text())
    assert run["machine"]["busy"] is True and run["machine"]["other_cpu_load"] == 0.9


def test_a_quiet_clean_run_is_saved_with_cpu_times(tmp_path, monkeypatch):
    _fake_machine(monkeypatch, dirty=False, load_before=0.05, load_during=0.05)
    (path,) = bench.main(["toy", "--results-dir", str(tmp_path)])
    run = json.loads(path.read_text())
    assert run["machine"]["busy"] is False and run["machine"]["git_dirty"] is False


def test_time_fn_records_cpu_time_and_the_minimum():
    t = bench.time_fn(lambda: sum(range(20000)), warmup=0, repeat=3)
    assert len(t.cpu_times_s) == 3 and t.min_cpu_s == min(t.cpu_times_s) > 0
    assert t.min_s == min(t.times_s)
    rec = bench.make_record("numpy", "f", {"L": 1}, t, device="cpu")
    assert rec["min_cpu_s"] == t.min_cpu_s and len(rec["cpu_times_s"]) == 3


def test_cli_rejects_unknown_or_missing_names(tmp_path):
    with pytest.raises(SystemExit):
        bench.main(["no-such-benchmark", "--results-dir", str(tmp_path)])
    with pytest.raises(SystemExit):
        bench.main(["--results-dir", str(tmp_path)])
    assert list(tmp_path.iterdir()) == []


def test_cli_runs_as_a_module():
    out = subprocess.run([sys.executable, "-m", "rnnkit.bench", "--list"], capture_output=True,
                         text=True, timeout=60, check=True)
    assert "elman" in out.stdout.split()


# ------------------------------------------------------------------------------------ GPU
@pytest.mark.gpu
def test_cupy_sync_and_benchmark_on_gpu():
    import cupy

    a = cupy.ones((512, 512), dtype=cupy.float32)
    t = bench.time_fn(lambda: a @ a, repeat=3, sync=bench.sync_for("cupy"))
    assert t.median_s > 0
    records = elman_bench.run(quick=True, backends={"cupy": True}, lengths=(8,))
    assert {r["impl"] for r in records} == {"cupy"}
    assert records[0]["device"] == bench.machine_info()["gpu"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch_cuda_available(), reason="torch sees no CUDA device")
def test_torch_cuda_benchmark_on_gpu():
    records = elman_bench.run(quick=True, backends={"torch-cuda": True}, lengths=(8,))
    assert {r["impl"] for r in records} == {"torch-cuda"}
