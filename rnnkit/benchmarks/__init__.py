"""The benchmark registry: name -> ``run(quick: bool) -> list[record]``.

Each chapter adds one module here and one line to ``BENCHMARKS``; ``python -m rnnkit.bench
--all`` then runs them all on whatever backends the machine has and records the results (see
``rnnkit.bench``). A benchmark module imports torch and CuPy inside its functions, never at
module top, so importing the registry is cheap and works without them.
"""
from __future__ import annotations

from typing import Callable

from . import elman, gru, lstm

__all__ = ["BENCHMARKS"]

BENCHMARKS: dict[str, Callable[[bool], list]] = {
    "elman": elman.run,      # chapter 1: Elman forward and BPTT, rnnkit vs torch.nn.RNN
    "lstm": lstm.run,        # chapter 2: LSTM forward and BPTT, rnnkit vs torch.nn.LSTM
    "gru": gru.run,          # chapter 3: GRU forward and BPTT, rnnkit vs torch.nn.GRU
}
