"""Build the book website, and tell what it contains: used by `make book` and by the book tests.

    python book/tools/bookbuild.py          # what `make book` runs

The build is ``jupyter-book build book --warningiserror --keep-going`` (any warning, and so
any notebook cell that raises, fails it) with ``RNNKIT_PROGRESS=text`` in the environment of
the executed notebooks. Two things are added around it:

* Jupyter Book caches executed notebooks and keys them on their code cells only, and Sphinx
  does not reread a page whose source is unchanged. A change in ``rnnkit/`` or in
  ``chapters/results/`` changes what the notebooks print without changing the notebooks, so
  the build records a fingerprint of those files and empties both caches when it changes.
* Sphinx does not repeat the warnings of pages it does not reread: after a failed build the
  next one rereads every page, so that it cannot pass by forgetting the earlier warnings.

The tests import :func:`build_once` so that one test session builds the book once.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

BOOK = Path(__file__).resolve().parents[1]
ROOT = BOOK.parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

# Source suffixes the book reads (MyST-NB's defaults for Markdown and notebooks).
SOURCE_SUFFIXES = (".md", ".ipynb", ".rst")
STATE_FILE = ".rnnkit-build-state.json"


def build_dir(book: Path = BOOK) -> Path:
    return book / "_build"


def html_dir(book: Path = BOOK) -> Path:
    return build_dir(book) / "html"


def fingerprint(root: Path = ROOT) -> str:
    """A hash of everything outside the notebooks that their outputs depend on."""
    h = hashlib.sha256()
    paths: list[Path] = []
    for sub in ("rnnkit", "chapters/results"):
        base = root / sub
        if base.is_dir():
            paths += [p for p in base.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    if (root / "pyproject.toml").is_file():
        paths.append(root / "pyproject.toml")
    for p in sorted(paths):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def _prepare_caches(book: Path, log=print) -> str:
    """Empty the execution cache and the doctrees where they could be stale; return the fingerprint."""
    out = build_dir(book)
    fp = fingerprint(book.parent)
    state_path = out / STATE_FILE
    try:
        state = json.loads(state_path.read_text())
    except (OSError, ValueError):
        state = {}
    if state.get("fingerprint") != fp:
        if (out / ".jupyter_cache").exists() or (out / ".doctrees").exists():
            log("bookbuild: rnnkit/ or chapters/results/ changed: every notebook is executed again")
        shutil.rmtree(out / ".jupyter_cache", ignore_errors=True)
        shutil.rmtree(out / ".doctrees", ignore_errors=True)
    elif not state.get("ok", False):
        log("bookbuild: the last build failed: every page is read again")
        shutil.rmtree(out / ".doctrees", ignore_errors=True)
    return fp


@dataclasses.dataclass
class BuildResult:
    ok: bool
    returncode: int
    seconds: float
    output: str
    html: Path
    # docname -> None (executed, or found in the cache) or the traceback of the failing cell
    executed: dict = dataclasses.field(default_factory=dict)


# ------------------------------------------------------------------ executing the notebooks once
# The book build executes every notebook it renders, one after the other. Executing them first,
# `jobs` at a time, into the very cache Jupyter Book reads (book/_build/.jupyter_cache, matched
# on the notebook's code cells exactly as myst-nb matches it) makes the build only render, and
# gives the tests one execution of each notebook to check: the test suite executes every
# notebook once (the exercise pipeline then runs the generated student and graded copies).
CELL_TIMEOUT = 900   # seconds per cell, as execute.timeout in _config.yml


def _execute_one(path: str):
    """Run one notebook in its own folder; (path, executed notebook, seconds, traceback or None)."""
    import nbformat
    from jupyter_cache.executors.utils import single_nb_execution

    from sliced_poll import SlicedPollKernelManager   # book/tools: see its docstring

    nb = nbformat.read(path, as_version=4)
    result = single_nb_execution(nb, cwd=str(Path(path).parent), timeout=CELL_TIMEOUT,
                                 allow_errors=False, meta_override=True,
                                 kernel_manager_class=SlicedPollKernelManager)
    return path, result.nb, result.time, result.exc_string if result.err is not None else None


def _notebook_env() -> dict:
    env = dict(os.environ)
    env["RNNKIT_PROGRESS"] = "text"
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # debugpy's frozen-modules notice
    env.pop("MPLBACKEND", None)  # the kernel must use its inline backend, or figures vanish
    return env


def execute_notebooks(book: Path = BOOK, jobs: int | None = None, log=print) -> dict:
    """Execute every notebook of the toc that the cache lacks, ``jobs`` at a time (default: the
    CPU count), and store the executed ones where Jupyter Book looks; {docname: traceback or None}.

    Kernels run in the notebook's own folder (execute.run_in_temp is false) and inherit this
    process's environment, RNNKIT_PROGRESS=text and the single-thread BLAS settings included.
    The cache is written by the calling process only, so its database sees one writer.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import nbformat
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    cache = get_cache(str(build_dir(book) / ".jupyter_cache"))
    results, todo = {}, {}
    for docname in toc_docnames(book):
        path = book / f"{docname}.ipynb"
        if not path.is_file():
            continue
        try:
            cache.match_cache_notebook(nbformat.read(path, as_version=4))
            results[docname] = None
        except KeyError:
            todo[str(path)] = docname
    if not todo:
        return results
    log(f"bookbuild: executing {len(todo)} notebook(s), {jobs or os.cpu_count()} at a time")
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(_notebook_env())
    try:
        # One process per notebook client, started with spawn: nbclient driven from threads of a
        # pytest-xdist worker deadlocked, and fork would copy that worker's threads and sockets.
        with ProcessPoolExecutor(max_workers=jobs or os.cpu_count(),
                                 mp_context=multiprocessing.get_context("spawn")) as pool:
            for path, nb, seconds, error in pool.map(_execute_one, sorted(todo)):
                docname = todo[path]
                results[docname] = error
                if error is None:
                    cache.cache_notebook_bundle(CacheBundleIn(nb, path, data={"execution_seconds": seconds}),
                                                check_validity=False, overwrite=True)
                log(f"bookbuild: {docname}: {'ok' if error is None else 'FAILED'} in {seconds:.0f} s")
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return dict(sorted(results.items()))


def build(book: Path = BOOK, *, echo: bool = True, jobs: int | None = None) -> BuildResult:
    """Execute the notebooks (``jobs`` at a time), then build the website into ``book/_build/html``;
    warnings are errors."""
    book = Path(book).resolve()
    for vendor in ("mathjax/tex-mml-chtml.js", "requirejs/require.js",
                   "html-manager/embed-amd.js", "html-manager/widgets-offline.js"):
        if not (book / "_offline" / "_vendor" / vendor).is_file():
            raise RuntimeError(f"book/_offline/_vendor/{vendor} is missing: run `make book-assets` "
                               "first (it needs npm)")
    log = print if echo else (lambda *a, **k: None)
    fp = _prepare_caches(book, log)
    out = build_dir(book)
    out.mkdir(parents=True, exist_ok=True)
    (out / STATE_FILE).write_text(json.dumps({"fingerprint": fp, "ok": False}))
    start = time.perf_counter()
    executed = execute_notebooks(book, jobs, log)

    env = _notebook_env()
    if not echo:
        env["NO_COLOR"] = "1"  # plain text in the captured log
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()",
           "build", str(book), "--builder", "html", "--warningiserror", "--keep-going"]
    proc = subprocess.Popen(cmd, cwd=book.parent, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if echo:
            sys.stdout.write(line)
            sys.stdout.flush()
    rc = proc.wait()
    seconds = time.perf_counter() - start
    ok = rc == 0 and (html_dir(book) / "index.html").is_file()
    (out / STATE_FILE).write_text(json.dumps({"fingerprint": fp, "ok": ok, "seconds": seconds}))
    return BuildResult(ok, rc, seconds, "".join(lines), html_dir(book), executed)


def failure_report(result: BuildResult, limit: int = 12000) -> str:
    """What a failed build's log says went wrong: its warning and error lines (Sphinx prints them
    as they happen, far above the end of a long log), then the end of the log."""
    problems = [line.rstrip() for line in result.output.splitlines()
                if re.search(r"\b(WARNING|ERROR|CRITICAL)\b|Traceback|Exception", line)
                and "Kernel is running over TCP" not in line]  # ipykernel's notice, not ours
    head = f"the book build failed (exit code {result.returncode}); "
    if problems:
        head += f"{len(problems)} warning/error line(s):\n" + "\n".join(problems)[:limit] + "\n\n"
    return head + "end of its log:\n" + result.output[-3000:]


_SESSION_RESULT: BuildResult | None = None


def build_once(book: Path = BOOK) -> BuildResult:
    """Build the book once per test session (per process; pytest-xdist workers share a file lock)."""
    global _SESSION_RESULT
    if _SESSION_RESULT is not None:
        return _SESSION_RESULT
    import fcntl

    out = build_dir(book)
    out.mkdir(parents=True, exist_ok=True)
    run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    with open(out / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        marker = out / f".built-by-{run_id}.json" if run_id else None
        if marker is not None and marker.is_file():
            data = json.loads(marker.read_text())
            _SESSION_RESULT = BuildResult(data["ok"], data["returncode"], data["seconds"],
                                          data["output"], html_dir(book), data.get("executed", {}))
        else:
            jobs = int(os.environ["BOOK_JOBS"]) if os.environ.get("BOOK_JOBS") else None
            _SESSION_RESULT = build(book, echo=False, jobs=jobs)
            if marker is not None:
                for old in out.glob(".built-by-*.json"):
                    old.unlink()
                marker.write_text(json.dumps({k: v for k, v in dataclasses.asdict(_SESSION_RESULT).items()
                                              if k != "html"}))
    return _SESSION_RESULT


# ------------------------------------------------------------------ what the book contains

def _source_docnames(book: Path) -> list[str]:
    """Every source document under the book folder (following the chapters/exercises links)."""
    names = []
    for dirpath, dirnames, filenames in os.walk(book, followlinks=True):
        rel = Path(dirpath).relative_to(book)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "_")) and d != "node_modules")
        for f in sorted(filenames):
            p = rel / f
            if p.suffix in SOURCE_SUFFIXES:
                names.append(p.with_suffix("").as_posix())
    return names


def toc_docnames(book: Path = BOOK) -> list[str]:
    """The documents the table of contents names, in book order, with its globs expanded."""
    from sphinx.util.matching import patmatch
    from sphinx_external_toc.api import FileItem, GlobItem
    from sphinx_external_toc.parsing import parse_toc_yaml

    site_map = parse_toc_yaml(book / "_toc.yml")
    found = _source_docnames(book)
    order: list[str] = []

    def visit(docname: str) -> None:
        order.append(docname)
        for tree in site_map[docname].subtrees:
            for item in tree.items:
                if isinstance(item, GlobItem):
                    for name in sorted(n for n in found if patmatch(n, str(item))):
                        if name not in order:
                            order.append(name)
                elif isinstance(item, FileItem):
                    visit(str(item))

    visit(site_map.root.docname)
    return order


def book_notebooks(root: Path = ROOT) -> list[str]:
    """Docnames of the chapter and exercise notebooks that must be in the book.

    Only notebooks directly in chapters/ and exercises/: subfolders (exercises/student/ and
    exercises/autograder/, written by otter-grader) hold copies, not pages of the book.
    """
    names = []
    for sub in ("chapters", "exercises"):
        names += [f"{sub}/{p.stem}" for p in sorted((root / sub).glob("*.ipynb"))]
    return names


def main() -> int:
    result = build(BOOK)
    index = result.html / "index.html"
    if not result.ok:
        print(f"\nbookbuild: the build FAILED after {result.seconds:.0f} s (exit code "
              f"{result.returncode}); the warnings and errors are above.", file=sys.stderr)
        return result.returncode or 1
    rel = os.path.relpath(result.html, Path.cwd())
    print(f"\nThe book was built in {result.seconds:.0f} s.")
    print(f"  Open:   {index}")
    print(f"  Serve:  {Path(sys.executable).as_posix()} -m http.server 8000 --bind 127.0.0.1 "
          f"--directory {rel}   (then http://localhost:8000, or `make book-serve`)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
