"""rnnkit.core.results and rnnkit.experiments: recordings carry their commit and refuse dirty code."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rnnkit.core import results
from rnnkit.experiments import __main__ as cli

ROOT = Path(__file__).resolve().parents[1]


def _clean(monkeypatch, dirty):
    info = {"git_commit": "abc1234def", "git_dirty": dirty, "date": "2026-12-06T00:00:00+00:00",
            "cpu": "Test CPU", "gpu": None}
    monkeypatch.setattr(results, "machine_info", lambda: dict(info))


def test_record_and_load_round_trip(tmp_path, monkeypatch):
    _clean(monkeypatch, False)
    path = results.record("demo", "large", {"lr": 1e-3, "seeds": (0, 1)},
                          {"acc": np.float32(0.5), "curve": np.arange(3), "bad": float("nan")},
                          results_dir=tmp_path, wall_time_s=1.0, cpu_time_s=0.9)
    assert path == tmp_path / "demo__large.json"
    run = results.load("demo", "large", tmp_path)
    assert run["config"] == {"lr": 1e-3, "seeds": [0, 1]}
    assert run["figures"] == {"acc": 0.5, "curve": [0, 1, 2], "bad": None}
    assert run["machine"]["git_commit"] == "abc1234def"
    assert results.describe(run) == "recorded 2026-12-06 at commit abc1234 on Test CPU"


def test_record_refuses_uncommitted_code(tmp_path, monkeypatch):
    _clean(monkeypatch, True)
    with pytest.raises(results.DirtyTreeError, match="--from-head"):
        results.record("demo", "large", {}, {"x": 1}, results_dir=tmp_path)
    assert not (tmp_path / "demo__large.json").exists()
    _clean(monkeypatch, None)                                   # not a git checkout at all
    with pytest.raises(results.DirtyTreeError):
        results.record("demo", "large", {}, {"x": 1}, results_dir=tmp_path)


@pytest.mark.parametrize("name", ["", "a/b", "a__b", "with space", 3])
def test_bad_names_are_rejected(name, tmp_path):
    with pytest.raises(ValueError, match="name"):
        results.results_path(name, "large", tmp_path)


def test_figures_must_be_plain(tmp_path, monkeypatch):
    _clean(monkeypatch, False)
    with pytest.raises(TypeError, match=r"figures\.model"):
        results.record("demo", "large", {}, {"model": object()}, results_dir=tmp_path)


def test_load_names_the_command_that_makes_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m rnnkit.experiments nope --size large"):
        results.load("nope", "large", tmp_path)


def test_run_must_return_config_and_figures(monkeypatch, tmp_path):
    monkeypatch.setattr(cli, "get", lambda name: (lambda size: [1, 2]))
    with pytest.raises(TypeError, match="must return"):
        cli._run_here("demo", "small", str(tmp_path))


TINY = '''"""A tiny experiment for the test of --from-head."""
import numpy as np


def run(size):
    n = {"small": 3, "large": 5}[size]
    return {"config": {"n": n}, "figures": {"total": float(np.arange(n).sum())}}
'''


def test_from_head_records_the_committed_code(tmp_path):
    """In a throwaway repository: the recording names HEAD, is clean, and ignores local edits."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "rnnkit", repo / "rnnkit",
                    ignore=shutil.ignore_patterns("__pycache__", "data"))
    (repo / "rnnkit" / "experiments" / "tiny.py").write_text(TINY)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git[:3] + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-qm", "tiny"], check=True)
    head = subprocess.run(git[:3] + ["rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    # An uncommitted edit that would change the result: --from-head must not see it.
    (repo / "rnnkit" / "experiments" / "tiny.py").write_text(TINY.replace("sum()", "sum() + 100"))
    out = tmp_path / "results"
    env = dict(os.environ, PYTHONPATH=str(repo))
    cmd = [sys.executable, "-m", "rnnkit.experiments", "tiny", "--size", "large", "--from-head",
           "--results-dir", str(out)]
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    run = json.loads((out / "tiny__large.json").read_text())
    assert run["figures"] == {"total": 10.0}
    assert run["config"] == {"n": 5, "size": "large"}
    assert run["machine"]["git_commit"] == head and run["machine"]["git_dirty"] is False
    assert run["cpu_time_s"] is not None
    # Without --from-head the dirty tree is refused.
    proc = subprocess.run(cmd[:-3] + ["--results-dir", str(out)], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "DirtyTreeError" in proc.stderr


def test_experiment_helpers_check_the_size_restore_torch_and_build_leaves():
    """rnnkit.experiments._common: the size knob's error, torch's settings restored even when the
    body raises, and the nesting of a NumPy tree kept in its torch leaves."""
    import numpy as np
    import torch

    from rnnkit.experiments import _common, experiments

    assert "_common" not in experiments()                       # not taken for an experiment
    configs = {"small": {"n": 1}, "large": {"n": 2}}
    assert _common.config_for("large", configs) is configs["large"]
    with pytest.raises(ValueError, match=r"size: expected one of \['large', 'small'\], got 'huge'"):
        _common.config_for("huge", configs)

    threads, dtype = torch.get_num_threads(), torch.get_default_dtype()
    other = 2 if threads == 1 else 1
    with pytest.raises(RuntimeError, match="inside"):
        with _common.torch_settings(threads=other, dtype=torch.float64):
            assert torch.get_num_threads() == other and torch.get_default_dtype() == torch.float64
            raise RuntimeError("inside")
    assert torch.get_num_threads() == threads and torch.get_default_dtype() == dtype

    tree = {"a": np.ones((2, 3)), "b": [np.zeros(4), {"c": np.arange(3.0)}]}
    tensors, leaves = _common.torch_leaves(tree)
    assert tensors["a"].shape == (2, 3) and tensors["b"][1]["c"].tolist() == [0.0, 1.0, 2.0]
    assert [t.numel() for t in leaves] == [6, 4, 3]             # in the tree's order
    assert all(t.requires_grad and t.dtype == torch.float32 and t.is_leaf for t in leaves)
    assert _common.torch_leaves(tree, torch.float64)[1][0].dtype == torch.float64
