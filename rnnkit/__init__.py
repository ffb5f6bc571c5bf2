"""rnnkit: the small library behind "Recurrent Models from Scratch".

Each model lives in its own module with ``init``, ``step``, ``forward`` and its further
equivalent forms (``forward_scan``, ``forward_conv``...); cells the book trains by hand also
have ``backward``. Models: ``elman``, ``lstm``, ``gru`` (with ``stack`` for deep and
bidirectional networks), ``lru``, ``mingru``, ``rglru``, ``hgrn`` (on the parallel scans of
``scan``), ``hippo``, ``discretize``, ``lmu``, ``s4``, ``s4d``. Shared pieces: ``backend``
(NumPy/CuPy/torch), ``checks`` (input validation), ``testing`` (closeness and numerical
gradients), ``layers`` (readout and loss), ``charlm`` (character language model around any
cell), ``train`` (optimisers and loop), ``tasks`` (data), ``bench`` (benchmarks), ``show``
(notebook helpers).
"""
from . import (backend, charlm, checks, discretize, elman, gru, hgrn, hippo, layers, lmu, lru,
               lstm, mingru, rglru, s4, s4d, scan, stack, tasks, testing, train)
from .backend import gpu_available, to_numpy, xp_of
from .scan import linear_scan, linear_scan_backward, log_space_scan

__version__ = "0.1.0"
__all__ = ["backend", "charlm", "checks", "discretize", "elman", "gru", "hgrn", "hippo", "layers",
           "lmu", "lru", "lstm", "mingru", "rglru", "s4", "s4d", "scan", "stack", "tasks", "testing",
           "train", "gpu_available", "to_numpy", "xp_of", "linear_scan", "linear_scan_backward",
           "log_space_scan"]
