"""book/tools/sliced_poll.py: the book build's kernel client polls in slices, so a missed
wake-up of zmq.asyncio's poll costs at most one slice instead of a whole cell timeout."""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from queue import Empty

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "tools"))

import bookbuild  # noqa: E402
import sliced_poll  # noqa: E402


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def fake_get(clock, arrives_at, calls):
    """A get(t) that sleeps through the message until a poll *starts* after ``arrives_at``
    (what a missed wake-up looks like: only a fresh poll sees the message), else waits t."""
    async def get(t):
        calls.append(t)
        if clock.now >= arrives_at:
            return {"msg": "reply"}
        clock.now += t
        raise Empty
    return get


def test_a_message_is_seen_within_one_slice_of_arriving():
    clock, calls = FakeClock(), []
    msg = asyncio.run(sliced_poll.get_in_slices(fake_get(clock, 3.1, calls), 900.0, slice_s=0.25,
                                                clock=clock))
    assert msg == {"msg": "reply"}
    assert 3.1 <= clock.now < 3.1 + 0.25 + 1e-9        # seen by the first poll after it arrived
    assert all(t <= 0.25 for t in calls)


def test_timeouts_still_end_at_the_callers_deadline_and_none_waits_on():
    clock, calls = FakeClock(), []
    with pytest.raises(Empty):
        asyncio.run(sliced_poll.get_in_slices(fake_get(clock, 1e9, calls), 1.1, slice_s=0.25,
                                              clock=clock))
    assert clock.now == pytest.approx(1.1) and calls[-1] == pytest.approx(0.1)   # last slice cut short
    clock, calls = FakeClock(), []
    msg = asyncio.run(sliced_poll.get_in_slices(fake_get(clock, 5000.0, calls), None, slice_s=0.25,
                                                clock=clock))
    assert msg and clock.now >= 5000.0                   # no deadline: keeps polling
    assert asyncio.run(sliced_poll.get_in_slices(fake_get(FakeClock(), 0.0, []), 0.0)) == {"msg": "reply"}


def test_the_book_builds_kernels_use_the_sliced_client(monkeypatch, tmp_path):
    km = sliced_poll.SlicedPollKernelManager(kernel_name="python3")
    client = km.client()
    assert isinstance(client, sliced_poll.SlicedPollClient)
    assert client.shell_channel_class is client.iopub_channel_class is sliced_poll.SlicedPollChannel
    seen = {}

    def fake_execution(nb, **kwargs):
        seen.update(kwargs)
        from jupyter_cache.executors.utils import ExecutionResult
        return ExecutionResult(nb, kwargs["cwd"], 0.0)

    import jupyter_cache.executors.utils as utils
    monkeypatch.setattr(utils, "single_nb_execution", fake_execution)
    nb_path = tmp_path / "empty.ipynb"
    nb_path.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    bookbuild._execute_one(str(nb_path))
    assert seen["kernel_manager_class"] is sliced_poll.SlicedPollKernelManager
    assert seen["timeout"] == bookbuild.CELL_TIMEOUT
