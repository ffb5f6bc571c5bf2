"""Shared pytest configuration: hypothesis profile and the GPU marker."""
import os

import pytest
from hypothesis import HealthCheck, settings

from rnnkit.core.backend import gpu_available

# Property tests run few, small examples: the suite must stay well under CI's budget.
settings.register_profile("rnnkit", max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "rnnkit"))


def pytest_collection_modifyitems(config, items):
    if gpu_available():
        return
    skip_gpu = pytest.mark.skip(reason="no usable CUDA device for CuPy on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
