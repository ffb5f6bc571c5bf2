"""``python -m rnnkit.experiments NAME [--size large] [--from-head]``: run and record one experiment.

Without ``--from-head`` the experiment runs on the code as it is in this checkout, and
``rnnkit.core.results.record`` refuses to write if ``rnnkit/`` has uncommitted changes. With it, the
committed ``HEAD`` is checked out into a temporary git worktree and the experiment runs there
(``PYTHONPATH`` points at the worktree, whose ``rnnkit`` is imported), writing its JSON into this
checkout's ``chapters/results/``: the file's commit is exactly the code that ran.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import experiments, get
from ..core import results


def _run_here(name: str, size: str, results_dir: str | None) -> Path:
    fn = get(name)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    out = fn(size)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    if not isinstance(out, dict) or set(out) - {"config", "figures"} or "figures" not in out:
        raise TypeError(f"{name}.run must return {{'config': ..., 'figures': ...}}, got "
                        f"{type(out).__name__} with keys {sorted(out) if isinstance(out, dict) else None}")
    config = dict(out.get("config", {}))
    config.setdefault("size", size)
    return results.record(name, size, config, out["figures"], results_dir=results_dir,
                          wall_time_s=round(wall, 3), cpu_time_s=round(cpu, 3))


def _run_from_head(name: str, size: str, results_dir: str | None) -> int:
    repo = Path(__file__).resolve().parents[2]
    target = Path(results_dir).resolve() if results_dir else repo / "chapters" / "results"
    with tempfile.TemporaryDirectory(prefix="rnnkit-record-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", "--quiet",
                        str(tree), "HEAD"], check=True)
        try:
            env = dict(os.environ, PYTHONPATH=str(tree))
            cmd = [sys.executable, "-m", "rnnkit.experiments", name, "--size", size,
                   "--results-dir", str(target), "--expect-root", str(tree)]
            return subprocess.run(cmd, cwd=tree, env=env).returncode
        finally:
            subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(tree)],
                           check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rnnkit.experiments",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("name", nargs="?", help="experiment to run")
    parser.add_argument("--size", default="large", help="size knob (default: large)")
    parser.add_argument("--from-head", action="store_true",
                        help="run the committed HEAD in a temporary clean worktree")
    parser.add_argument("--results-dir", default=None, help="where to write the JSON")
    parser.add_argument("--list", action="store_true", help="list the experiments and exit")
    parser.add_argument("--expect-root", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(sorted(experiments())))
        return 0
    if args.name is None:
        parser.error("give an experiment NAME (or --list)")
    if args.from_head:
        return _run_from_head(args.name, args.size, args.results_dir)
    if args.expect_root:  # inside --from-head: make sure the worktree's rnnkit is the one running
        import rnnkit
        here = Path(rnnkit.__file__).resolve().parent.parent
        if here != Path(args.expect_root).resolve():
            raise SystemExit(f"--from-head: imported rnnkit from {here}, not the worktree")
    path = _run_here(args.name, args.size, args.results_dir)
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
