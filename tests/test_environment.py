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


def pyproject_deps():
    return _normalise(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])


def conda_pip_deps():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_lists = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_lists) == 1, "environment.yml: expected exactly one pip: section"
    return _normalise(s for s in pip_lists[0] if not s.startswith("-e"))


def test_same_packages_and_versions():
    py, conda = pyproject_deps(), conda_pip_deps()
    assert py == conda, (f"only in pyproject: {sorted(set(py.items()) - set(conda.items()))}; "
                         f"only in environment.yml: {sorted(set(conda.items()) - set(py.items()))}")


def test_torch_is_pinned_to_the_cpu_wheel_version():
    # An unpinned torch pulls a multi-GB CUDA build on a fresh machine.
    assert pyproject_deps()["torch"] == "==2.13.0"


def test_environment_installs_rnnkit_itself():
    assert '"-e ."' in (ROOT / "environment.yml").read_text()
