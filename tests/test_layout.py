"""The package layout (issue 14): one flat module per model at the top of rnnkit/, the
infrastructure in subpackages, and the package docstring naming every module that is there."""
import pkgutil
import re

import rnnkit

SUBPACKAGES = {"bench", "core", "experiments", "kernels", "tasks", "training"}


def _top_level():
    return {m.name: m.ispkg for m in pkgutil.iter_modules(rnnkit.__path__)}


def test_only_models_and_the_named_subpackages_sit_at_the_top():
    found = _top_level()
    packages = {name for name, is_pkg in found.items() if is_pkg}
    assert packages == SUBPACKAGES, f"subpackages: expected {sorted(SUBPACKAGES)}, got {sorted(packages)}"
    infrastructure = {"backend", "checks", "testing", "interop", "registry", "results", "show",
                      "layers", "train", "seqclass", "charlm", "benchmarks"}
    assert not infrastructure & set(found), f"infrastructure at the top: {sorted(infrastructure & set(found))}"


def test_the_package_docstring_names_every_top_level_module():
    named = set(re.findall(r"``(?:rnnkit\.)?(\w+)``", rnnkit.__doc__))
    missing = set(_top_level()) - named
    assert not missing, f"rnnkit/__init__.py's docstring does not mention {sorted(missing)}"


def test_the_shared_pieces_stay_reachable_from_the_package():
    from rnnkit.core import backend, checks, testing
    from rnnkit.training import charlm, layers, seqclass, train
    for module in (backend, checks, testing, charlm, layers, seqclass, train):
        assert getattr(rnnkit, module.__name__.rsplit(".", 1)[1]) is module
