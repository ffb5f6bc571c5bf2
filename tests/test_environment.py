"""environment.yml (conda) and pyproject.toml (pip) must list the same packages."""
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _normalise(specs):
    out = {}
    for spec in specs:
        req = Requirement(spec)
        out[req.name.lower().replace("_", "-")] = str(req.specifier)
    return out


DEV_EXTRAS = ("test", "book", "course")   # what `make env` installs beside the runtime


def pyproject_deps(extras=DEV_EXTRAS):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra in extras:
        specs += project["optional-dependencies"][extra]
    return _normalise(specs)


def conda_pip_deps():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_lists = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_lists) == 1, "environment.yml: expected exactly one pip: section"
    return _normalise(s for s in pip_lists[0] if not s.startswith("-e"))


def test_same_packages_and_versions():
    py, conda = pyproject_deps(), conda_pip_deps()
    assert py == conda, (f"only in pyproject: {sorted(set(py.items()) - set(conda.items()))}; "
                         f"only in environment.yml: {sorted(set(conda.items()) - set(py.items()))}")


def test_runtime_needs_no_book_or_test_tools():
    runtime = pyproject_deps(extras=())
    for tool in ("pytest", "jupyter-book", "otter-grader", "nbval", "playwright", "ruff"):
        assert tool not in runtime, f"{tool} is a runtime dependency; it belongs in an extra"


def test_make_env_installs_the_extras():
    makefile = (ROOT / "Makefile").read_text()
    assert '-e ".[' + ",".join(DEV_EXTRAS) + ']"' in makefile


def test_torch_is_pinned_to_the_cpu_wheel_version():
    # An unpinned torch pulls a multi-GB CUDA build on a fresh machine.
    assert pyproject_deps()["torch"] == "==2.13.0"


def test_environment_installs_rnnkit_itself():
    assert '"-e ."' in (ROOT / "environment.yml").read_text()
