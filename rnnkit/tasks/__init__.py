"""Data for the whole book, generated on the fly or shipped with the package; never downloaded.

- ``synthetic``: memory probes (adding problem, copy task, parity, delayed recall) and ``one_hot``.
- ``text``: character-level corpora (``load_corpus("genesis")``) with train/val windows.
- ``chaos``: chaotic time series integrated by the project (Mackey-Glass, Lorenz).
- ``dates``: a synthetic translation task, dates from several written formats to ISO 8601.
- ``digits``: handwritten digits read pixel by pixel (``sequential_digits``), the CPU-sized
  sequential/permuted MNIST.

Sources and licences of the shipped files: ``rnnkit/tasks/data/README.md``.
"""
from . import chaos, dates, digits, synthetic, text
from .digits import sequential_digits
from .synthetic import (adding_problem, copy_task, copy_task_baseline_loss, delayed_recall, one_hot,
                        parity)
from .text import CORPORA, CharCorpus, load_corpus

__all__ = [
    "synthetic",
    "text",
    "digits",
    "chaos",
    "dates",
    "sequential_digits",
    "adding_problem",
    "copy_task",
    "copy_task_baseline_loss",
    "parity",
    "delayed_recall",
    "one_hot",
    "CharCorpus",
    "load_corpus",
    "CORPORA",
]
