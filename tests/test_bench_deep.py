"""The chapter 4 benchmark (rnnkit.bench.deep): quick mode records every layout, and its
agreement check fails when torch computes a different network."""
from __future__ import annotations

import pytest

from rnnkit.bench import BENCHMARKS
from rnnkit.bench import deep as deep_bench

CPU_ONLY = {"numpy": True, "torch-cpu": True, "cupy": False, "torch-cuda": False}


@pytest.fixture
def one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_deep_benchmark_is_registered_and_records_every_layout(one_torch_thread):
    assert BENCHMARKS["deep"] is deep_bench.run
    records = deep_bench.run(quick=True, backends=CPU_ONLY, lengths=(4,))
    keys = {(r["impl"], r["form"], r["params"]["cell"], r["params"]["K"], r["params"]["bidirectional"])
            for r in records}
    assert keys == {(i, f, c, K, bi) for i in ("numpy", "torch-cpu")
                    for f in ("forward", "forward+backward") for c in deep_bench.CELLS
                    for K, bi in deep_bench.QUICK_LAYOUTS}
    for r in records:
        assert r["params"]["dtype"] == "float32" and r["params"]["L"] == 4
        assert len(r["times_s"]) == deep_bench.QUICK_REPEAT["repeat"] and r["min_s"] > 0
        assert r["min_cpu_s"] is None or r["min_cpu_s"] >= 0
        assert ("threads" in r["params"]) == (r["impl"] == "torch-cpu")


@pytest.mark.parametrize("cell_name,K,bidirectional", [("gru", 2, True), ("lstm", 2, False)])
def test_deep_agreement_check_catches_a_different_network(one_torch_thread, cell_name, K,
                                                          bidirectional):
    net, cell, layers, x = deep_bench._problem(cell_name, K, bidirectional, 5)
    from rnnkit.bench import cells as shared

    ref = deep_bench._rnnkit_fns(cell, layers, x)
    deep_bench._check_agree(*shared.torch_fns(net, x, "cpu"), *ref)
    other, _, _, _ = deep_bench._problem(cell_name, K, bidirectional, 5, seed=1)
    with pytest.raises(AssertionError, match="torch-cpu y"):
        deep_bench._check_agree(*shared.torch_fns(other, x, "cpu"), *ref)
