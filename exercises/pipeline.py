"""The exercise pipeline: student notebooks from the masters, and offline grading to CSV.

One master notebook per chapter, ``exercises/NN_name_exercises.ipynb``, holds the task text, the
solutions and the checks in otter-grader's format (see ``exercises/README.md``). This script turns
the masters into everything else::

    python exercises/pipeline.py student              # exercises/student/ and exercises/autograder/
    python exercises/pipeline.py grade SUBMISSIONS    # SUBMISSIONS/grades.csv and summary.csv

``make student`` and ``make grade SUBMISSIONS=...`` call these (``exercises/exercises.mk``).
The book renders the masters themselves: checks carry the ``remove-cell`` tag, solution cells
``hide-cell`` (a "Show solution" button), model answers are dropdown admonitions. Grading runs ``otter run`` (no containers, no network) once per
submission, in a separate process with a time limit, and writes one CSV row per check.
"""
from __future__ import annotations

import argparse
import ast
import concurrent.futures
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent                # exercises/
ROOT = HERE.parent
MASTER_GLOB = "[0-9][0-9]_*_exercises.ipynb"
ANSWER_PLACEHOLDER = "_Type your answer here, replacing this text._"

GRADES_FIELDS = ["submission", "assignment", "question", "check", "kind", "visibility",
                 "points", "max_points", "result", "feedback"]
SUMMARY_FIELDS = ["submission", "assignment", "auto_points", "auto_max", "manual_max",
                  "checks_passed", "checks_total", "cells_with_errors", "status"]


def masters(directory: Path = HERE) -> list[Path]:
    """The master notebooks, in chapter order."""
    return sorted(directory.glob(MASTER_GLOB))


# --------------------------------------------------------------------------------------------
# Reading the otter format
# --------------------------------------------------------------------------------------------

def _source(cell) -> str:
    return cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])


def _raw_marker(cell) -> str | None:
    """'BEGIN QUESTION', 'END TESTS', 'ASSIGNMENT CONFIG'... for an otter raw cell, else None."""
    if cell["cell_type"] != "raw":
        return None
    first = _source(cell).strip().splitlines()[0] if _source(cell).strip() else ""
    m = re.match(r"#\s*(BEGIN|END)\s+(QUESTION|SOLUTION|TESTS|PROMPT)\b", first, re.I)
    if m:
        return f"{m.group(1).upper()} {m.group(2).upper()}"
    if re.match(r"#\s*ASSIGNMENT\s+CONFIG", first, re.I):
        return "ASSIGNMENT CONFIG"
    return None


def _yaml_body(cell) -> dict:
    import yaml  # noqa: PLC0415
    lines = _source(cell).splitlines()[1:]
    return yaml.safe_load("\n".join(lines)) or {}


def read_questions(master: Path) -> list[dict]:
    """The questions of a master notebook: name, points, manual, and its heading for the CSV."""
    nb = nbformat.read(master, as_version=4)
    questions, current = [], None
    for cell in nb.cells:
        marker = _raw_marker(cell)
        if marker == "BEGIN QUESTION":
            config = _yaml_body(cell)
            current = {"name": str(config["name"]), "points": config.get("points"),
                       "manual": bool(config.get("manual", False)), "title": ""}
            questions.append(current)
        elif marker == "END QUESTION":
            current = None
        elif current is not None and not current["title"] and cell["cell_type"] == "markdown":
            text = _source(cell).strip()
            m = re.match(r"#+\s*(.+)", text) or re.match(r"\*\*(.+?)\*\*", text)
            current["title"] = (m.group(1) if m else text.splitlines()[0]).strip()
    return questions


def assignment_name(master: Path) -> str:
    nb = nbformat.read(master, as_version=4)
    for cell in nb.cells:
        if _raw_marker(cell) == "ASSIGNMENT CONFIG":
            return str(_yaml_body(cell).get("name", master.stem))
    return master.stem


# --------------------------------------------------------------------------------------------
# make student
# --------------------------------------------------------------------------------------------

def make_student(out: Path = HERE, only: list[Path] | None = None, run_tests: bool = True) -> None:
    """Run ``otter assign`` on every master; collect the results in out/student and out/autograder.

    out/student/: NN_name_exercises.ipynb (solutions removed, public checks in its metadata, hidden
    checks held back) and the support files: this folder is what students get.
    out/autograder/: the solution notebook with every check, NN_name_exercises-autograder.zip
    (what ``otter run`` grades with) and NN_name_exercises-questions.json (question list).
    With ``run_tests`` otter first grades the solution notebook and refuses to continue unless
    it gets full marks.
    """
    from otter.assign import main as otter_assign  # noqa: PLC0415

    student_dir, ag_dir = out / "student", out / "autograder"
    student_dir.mkdir(parents=True, exist_ok=True)
    ag_dir.mkdir(parents=True, exist_ok=True)
    for master in only or masters():
        with tempfile.TemporaryDirectory() as tmp:
            print(f"otter assign {master.relative_to(ROOT) if master.is_relative_to(ROOT) else master}",
                  flush=True)
            otter_assign(str(master), tmp, no_pdfs=True, no_run_tests=not run_tests)
            result = Path(tmp)
            for item in (result / "student").iterdir():
                _copy(item, student_dir / item.name)
            for item in (result / "autograder").iterdir():
                if item.suffix == ".zip":  # drop otter's timestamp: one stable name per chapter
                    shutil.copy(item, ag_dir / f"{master.stem}-autograder.zip")
                elif item.name != "otter_config.json":
                    _copy(item, ag_dir / item.name)
        manifest = {"assignment": assignment_name(master), "master": master.name,
                    "questions": read_questions(master)}
        (ag_dir / f"{master.stem}-questions.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"student notebooks in {student_dir}, autograder files in {ag_dir}")


def _copy(src: Path, dst: Path) -> None:
    if src.is_dir():
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst)
    else:
        shutil.copy(src, dst)


# --------------------------------------------------------------------------------------------
# make grade
# --------------------------------------------------------------------------------------------

def _check_names(ag_zip: Path) -> dict[str, list[tuple[str, str]]]:
    """For each question, the (function name, docstring line) of its checks, in file order."""
    names = {}
    with zipfile.ZipFile(ag_zip) as zf:
        for entry in zf.namelist():
            m = re.fullmatch(r"tests/(.+)\.py", entry)
            if not m:
                continue
            tree = ast.parse(zf.read(entry).decode())
            names[m.group(1)] = [
                (node.name, (ast.get_docstring(node) or "").strip().splitlines()[0]
                 if ast.get_docstring(node) else "")
                for node in tree.body if isinstance(node, ast.FunctionDef) and node.decorator_list]
    return names


def _clean_message(message: str | None, passed: bool) -> str:
    """Otter's failure text without its emoji and test-file line header, kept to the feedback."""
    if passed:
        return "passed"
    text = (message or "").replace("❌ Test case failed", "").strip()
    m = re.match(r"Error at line \d+ in test [^:\n]+:\n.*?\n(\w+(?:Error|Exception)?): (.*)\Z",
                 text, re.S)
    if m:
        kind, body = m.group(1), m.group(2).strip()
        return body if kind == "AssertionError" else f"{kind}: {body}"
    return text


def grade_one(submission: Path, ag_zip: Path) -> dict:
    """Grade one submission with ``otter run`` in this process; return JSON-able results."""
    from otter.run import main as otter_run  # noqa: PLC0415

    # Grade a copy under the name the notebook was released with: its first cell,
    # otter.Notebook("NN_name_exercises.ipynb"), reads that file even while grading.
    canonical = re.sub(r"-autograder$", "", ag_zip.stem) + submission.suffix
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / canonical
        shutil.copy(submission, copy)
        results = otter_run(str(copy), autograder=str(ag_zip), output_dir=None, no_logo=True)
    names = _check_names(ag_zip)
    checks = []
    for question, test_file in results.results.items():
        described = names.get(question, [])
        for i, tcr in enumerate(test_file.test_case_results):
            tc = tcr.test_case
            fn, doc = described[i] if i < len(described) else (tc.name, "")
            checks.append({
                "question": question, "check": fn, "description": doc,
                "visibility": "hidden" if tc.hidden else "public",
                "points": float(tc.points or 0) if tcr.passed else 0.0,
                "max_points": float(tc.points or 0),
                "result": "passed" if tcr.passed else "failed",
                "feedback": _clean_message(tcr.message, tcr.passed)})
    nb = getattr(results, "notebook", None)
    errors = []
    if nb is not None:
        for cell in nb.cells:
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    errors.append(f"{output.get('ename')}: {output.get('evalue')}"[:200])
    return {"checks": checks, "cell_errors": errors,
            "score": float(results.total), "possible": float(results.possible)}


def _manual_answers(submission: Path, questions: list[dict]) -> dict[str, str]:
    """The student's text for each hand-graded question: the Markdown cells between otter's
    BEGIN/END QUESTION comments after the prompt (the manual questions, in order)."""
    manual = [q["name"] for q in questions if q["manual"]]
    if submission.suffix != ".ipynb":
        return {}
    nb = nbformat.read(submission, as_version=4)
    answers, inside, current = [], False, []
    for cell in nb.cells:
        text = _source(cell) if cell["cell_type"] == "markdown" else ""
        if "<!-- END QUESTION -->" in text and inside:  # may share a cell with the next BEGIN
            answers.append("\n".join(current))
            inside = False
        if "<!-- BEGIN QUESTION -->" in text:
            inside, current = True, []
        elif inside and text.strip() and text.strip() != ANSWER_PLACEHOLDER:
            current.append(text.strip())  # the answer cell, or cells the student added
    if inside:
        answers.append("\n".join(current))
    return dict(zip(manual, answers))


def _identify(submission: Path, manifests: dict[str, dict]) -> str | None:
    """The assignment a submission belongs to: otter's metadata, else its file name."""
    if submission.suffix == ".ipynb":
        try:
            meta = nbformat.read(submission, as_version=4).metadata.get("otter", {})
            if meta.get("assignment_name") in manifests:
                return meta["assignment_name"]
        except Exception:  # noqa: BLE001 - an unreadable file is reported by the grader
            pass
    for name, manifest in manifests.items():
        if Path(manifest["master"]).stem in submission.name:
            return name
    return None


def _grade_in_subprocess(submission: Path, ag_zip: Path, timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "grade-one", str(submission), str(ag_zip)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              cwd=tempfile.gettempdir())
    except subprocess.TimeoutExpired:
        return {"error": f"grading took longer than {timeout:.0f} s and was stopped"}
    marker = "@@RESULTS@@"
    if proc.returncode != 0 or marker not in proc.stdout:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": "grading failed: " + " | ".join(tail)}
    return json.loads(proc.stdout.split(marker, 1)[1])


def grade(submissions: Path, autograder: Path = HERE / "autograder", csv_path: Path | None = None,
          jobs: int = 1, timeout: float = 600.0) -> tuple[Path, Path]:
    """Grade every notebook under ``submissions``; write grades.csv (one row per check) and
    summary.csv (one row per submission). Returns both paths."""
    manifests = {}
    for path in sorted(autograder.glob("*-questions.json")):
        manifest = json.loads(path.read_text())
        manifest["zip"] = autograder / f"{Path(manifest['master']).stem}-autograder.zip"
        manifests[manifest["assignment"]] = manifest
    if not manifests:
        raise SystemExit(f"no autograder files in {autograder}: run `make student` first")
    csv_path = csv_path or submissions / "grades.csv"
    files = sorted(p for p in submissions.rglob("*")
                   if p.suffix in (".ipynb", ".zip") and ".ipynb_checkpoints" not in p.parts)
    if not files:
        raise SystemExit(f"no .ipynb or .zip submissions under {submissions}")

    def work(sub: Path) -> tuple[Path, str | None, dict]:
        name = _identify(sub, manifests)
        if name is None:
            return sub, None, {"error": "cannot tell which exercise notebook this is "
                                        "(no otter metadata and no known file name)"}
        print(f"grading {sub.relative_to(submissions)} ({name})", flush=True)
        return sub, name, _grade_in_subprocess(sub, manifests[name]["zip"], timeout)

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        graded = list(pool.map(work, files))

    rows, summary = [], []
    for sub, name, result in graded:
        label = str(sub.relative_to(submissions))
        if "error" in result:
            rows.append({"submission": label, "assignment": name or "", "question": "(all)",
                         "check": "", "kind": "", "visibility": "", "points": 0, "max_points": "",
                         "result": "error", "feedback": result["error"]})
            summary.append({"submission": label, "assignment": name or "", "status": "error"})
            continue
        manifest = manifests[name]
        for check in result["checks"]:
            rows.append({"submission": label, "assignment": name, "question": check["question"],
                         "check": check["check"], "kind": "auto", "visibility": check["visibility"],
                         "points": _num(check["points"]), "max_points": _num(check["max_points"]),
                         "result": check["result"], "feedback": check["feedback"]})
        answers = _manual_answers(sub, manifest["questions"])
        manual_max = 0.0
        for q in manifest["questions"]:
            if not q["manual"]:
                continue
            manual_max += float(q["points"] or 0)
            answer = answers.get(q["name"])
            if answer is None:
                feedback = "answer cell not found: look at the notebook"
            elif not answer.strip():
                feedback = "no answer (the placeholder text is unchanged)"
            else:
                feedback = "answer: " + " ".join(answer.split())[:400]
            rows.append({"submission": label, "assignment": name, "question": q["name"],
                         "check": "graded by hand against the model answer", "kind": "manual",
                         "visibility": "", "points": "", "max_points": _num(q["points"] or 0),
                         "result": "to grade", "feedback": feedback})
        passed = sum(c["result"] == "passed" for c in result["checks"])
        summary.append({"submission": label, "assignment": name,
                        "auto_points": _num(result["score"]), "auto_max": _num(result["possible"]),
                        "manual_max": _num(manual_max), "checks_passed": passed,
                        "checks_total": len(result["checks"]),
                        "cells_with_errors": len(result["cell_errors"]),
                        "status": "graded"})
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    summary_path = csv_path.with_name("summary.csv")
    _write_csv(csv_path, GRADES_FIELDS, rows)
    _write_csv(summary_path, SUMMARY_FIELDS, summary)
    print(f"wrote {csv_path} ({len(rows)} rows) and {summary_path} ({len(summary)} rows)")
    return csv_path, summary_path


def _num(x: float) -> str:
    return f"{float(x):g}"


def _write_csv(path: Path, fields: list[str], rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows)


# --------------------------------------------------------------------------------------------
# Cheats: what a lazy student would hand in (tests/test_exercises.py grades them to zero)
# --------------------------------------------------------------------------------------------

def question_checks(master: Path) -> dict[str, dict]:
    """For every automatically graded question, what its check cells call and switch off.

    Returns ``{question: {"functions", "forbid", "checks", "defined"}}``: ``functions`` maps
    the variable each check passes to ``call_student`` to the name it reports; ``forbid`` is,
    per variable, the union of the ``forbid=`` lists of those calls; ``checks`` lists each check
    cell as ``{"name", "hidden", "calls": [(variable, forbid tuple)]}``; ``defined`` names the
    functions the question's solution cells define.
    """
    nb = nbformat.read(master, as_version=4)
    out: dict[str, dict] = {}
    question, blocks = None, []
    for cell in nb.cells:
        marker = _raw_marker(cell)
        if marker == "BEGIN QUESTION":
            config = _yaml_body(cell)
            question = None if config.get("manual") else str(config["name"])
            if question:
                out[question] = {"functions": {}, "forbid": {}, "checks": [], "defined": []}
            continue
        if marker == "END QUESTION":
            question = None
        if marker in ("BEGIN SOLUTION", "BEGIN TESTS"):
            blocks.append(marker.split()[1])
        elif marker in ("END SOLUTION", "END TESTS"):
            blocks.pop()
        if question is None or cell["cell_type"] != "code" or not blocks:
            continue
        tree = ast.parse(_source(cell))
        if blocks[-1] == "SOLUTION":
            out[question]["defined"] += [n.name for n in tree.body
                                         if isinstance(n, ast.FunctionDef)]
            continue
        hidden = bool(re.search(r"^hidden:\s*true", _source(cell), re.M))
        lists = {t.id: n.value for n in ast.walk(tree) if isinstance(n, ast.Assign)
                 for t in n.targets if isinstance(t, ast.Name)}   # forbid = [...] then forbid=forbid
        calls = []
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id == "call_student" and len(node.args) >= 2):
                continue
            label = node.args[0].value if isinstance(node.args[0], ast.Constant) else "?"
            var = node.args[1].id if isinstance(node.args[1], ast.Name) else "?"
            forbid: tuple = ()
            for kw in node.keywords:
                if kw.arg == "forbid":
                    value = lists.get(kw.value.id, kw.value) if isinstance(kw.value, ast.Name) \
                        else kw.value
                    try:
                        forbid = tuple(ast.literal_eval(value))
                    except ValueError:
                        forbid = ("<not a literal list of dotted names>",)
            calls.append((var, forbid))
            out[question]["functions"][var] = label
            known = out[question]["forbid"].setdefault(var, [])
            known += [t for t in forbid if t not in known]
        name = next((n.name for n in tree.body if isinstance(n, ast.FunctionDef)), "?")
        out[question]["checks"].append({"name": name, "hidden": hidden, "calls": calls})
    return out


CHEAT_HARNESS = r'''
# The cheat harness, inserted by exercises/pipeline.py (cheat_notebook): no student's work.
def _cheat_key(obj):
    import numpy as _np
    if isinstance(obj, _np.ndarray):
        return ("array", str(obj.dtype), obj.shape, obj.tobytes())
    if isinstance(obj, (bool, int, float, complex, _np.generic)):
        return ("number", complex(obj))
    if isinstance(obj, dict):
        return ("dict", tuple(sorted((repr(k), _cheat_key(v)) for k, v in obj.items())))
    if isinstance(obj, (list, tuple)):
        return ("seq", tuple(_cheat_key(v) for v in obj))
    if callable(obj):
        return ("callable", id(obj))
    return ("other", repr(obj))


def _cheat(func, targets):
    """A lazy answer made from the solution ``func``.

    With ``targets`` (the rnnkit functions the question's checks switch off) it is a one-line
    call into rnnkit: right whenever those functions work, and raising their "switched off"
    error while a check has switched one off. Without targets (an experiment whose checks
    forbid nothing) it is a table of copied numbers: right for every call the notebook itself
    makes (the numbers on the book page), None for a call a check makes with other arguments.
    """
    import copy as _copy, functools, importlib, sys
    resolved = []
    for target in targets:
        module, _, attr = target.rpartition(".")
        resolved.append(getattr(importlib.import_module(module), attr))
    copied = {}

    def inside_a_check():
        frame = sys._getframe(2)
        while frame is not None:
            if frame.f_code.co_name == "call_student":
                return True
            frame = frame.f_back
        return False

    @functools.wraps(func)
    def cheat(*args, **kwargs):
        if resolved:
            for f in resolved:
                if f.__code__.co_name == "_refuse":
                    f(*args, **kwargs)
            return func(*args, **kwargs)
        key = _cheat_key((args, kwargs))
        if not inside_a_check():
            out = func(*args, **kwargs)
            copied[key] = _copy.deepcopy(out)
            return out
        return _copy.deepcopy(copied.get(key))

    return cheat
'''


def cheat_notebook(master: Path, solution_nb, targets: dict[str, dict[str, list[str]]] | None = None):
    """The laziest submission for every automatically graded question of ``master``.

    ``solution_nb`` is the autograder's solution notebook (autograder/NN_name.ipynb). Right
    after the cell that defines a function that a check passes to ``call_student``, the
    function becomes ``_cheat(function, forbid list)``: a call into the rnnkit functions the
    question's checks forbid or, where they forbid nothing, a table of copied numbers. Every
    number the notebook computes stays what the solution computed: what a student who copies
    the book page's numbers hands in. ``targets`` (``{question: {variable: [dotted names]}}``)
    replaces the forbid lists read from the master, to grade older masters with today's lists.
    """
    import copy  # noqa: PLC0415
    nb = copy.deepcopy(solution_nb)
    wrap: dict[str, list[str]] = {}
    for question, info in question_checks(master).items():
        forbid = (targets or {}).get(question, info["forbid"])
        for var in info["functions"]:
            if var in info["defined"]:
                dotted = {t for t in forbid.get(var, []) if re.fullmatch(r"[\w.]+", t)}
                wrap[var] = sorted(set(wrap.get(var, [])) | dotted)
    cells = []
    for i, cell in enumerate(nb.cells):
        cells.append(cell)
        if i == 0:
            cells.append(nbformat.v4.new_code_cell(CHEAT_HARNESS))
        if cell["cell_type"] != "code":
            continue
        try:
            tree = ast.parse(_source(cell))
        except SyntaxError:
            continue
        defined = [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in wrap]
        if defined:
            cells.append(nbformat.v4.new_code_cell("\n".join(
                f"{name} = _cheat({name}, {wrap[name]!r})" for name in defined)))
    nb.cells = cells
    return nb


def points(master: Path) -> dict:
    """A master's questions and points: automatically graded and hand-graded (the syllabus
    table of book/teaching/02_syllabus.md is checked against these by tests/test_exercises.py)."""
    questions = read_questions(master)
    auto = [q for q in questions if not q["manual"]]
    manual = [q for q in questions if q["manual"]]
    return {"auto_questions": len(auto), "auto_points": sum(float(q["points"] or 0) for q in auto),
            "manual_questions": len(manual),
            "manual_points": sum(float(q["points"] or 0) for q in manual)}


# --------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("student", help="generate student and autograder versions of every master")
    p.add_argument("masters", nargs="*", type=Path, help="masters to process (default: all)")
    p.add_argument("--out", type=Path, default=HERE)
    p.add_argument("--no-run-tests", action="store_true",
                   help="skip otter's check that the solutions get full marks")
    p = sub.add_parser("grade", help="grade a folder of submitted notebooks into CSV files")
    p.add_argument("submissions", type=Path)
    p.add_argument("--autograder", type=Path, default=HERE / "autograder")
    p.add_argument("--csv", type=Path, default=None, help="default: SUBMISSIONS/grades.csv")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per submission")
    p = sub.add_parser("points", help="print every master's questions and points (the syllabus table)")
    p = sub.add_parser("cheat", help="write the laziest cheat of every master (see cheat_notebook)")
    p.add_argument("out", type=Path, help="folder for NN_name_exercises-cheat.ipynb")
    p.add_argument("--autograder", type=Path, default=HERE / "autograder")
    p = sub.add_parser("grade-one", help=argparse.SUPPRESS)
    p.add_argument("submission", type=Path)
    p.add_argument("ag_zip", type=Path)
    args = parser.parse_args(argv)

    if args.cmd == "student":
        make_student(args.out.resolve(), [m.resolve() for m in args.masters] or None,
                     run_tests=not args.no_run_tests)
    elif args.cmd == "grade":
        grade(args.submissions, args.autograder, args.csv, args.jobs, args.timeout)
    elif args.cmd == "points":
        print("| master | automatic: questions (points) | by hand: questions (points) | total |")
        for master in masters():
            n = points(master)
            print(f"| {master.stem} | {n['auto_questions']} ({_num(n['auto_points'])}) | "
                  f"{n['manual_questions']} ({_num(n['manual_points'])}) | "
                  f"{_num(n['auto_points'] + n['manual_points'])} |")
    elif args.cmd == "cheat":
        args.out.mkdir(parents=True, exist_ok=True)
        for master in masters():
            solution = args.autograder / f"{master.stem}.ipynb"
            if not solution.is_file():
                raise SystemExit(f"no {solution}: run `make student` first")
            nbformat.write(cheat_notebook(master, nbformat.read(solution, as_version=4)),
                           args.out / f"{master.stem}-cheat.ipynb")
        print(f"cheats in {args.out}; `make grade SUBMISSIONS={args.out}` should give them 0 points")
    elif args.cmd == "grade-one":
        result = grade_one(args.submission.resolve(), args.ag_zip.resolve())
        sys.stdout.write("\n@@RESULTS@@" + json.dumps(result))


if __name__ == "__main__":
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # quieter kernels under otter
    main()
