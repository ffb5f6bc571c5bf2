"""rnnkit: the small library behind "Recurrent Models from Scratch".

Each model lives in its own module with ``init``, ``step``, ``forward`` and its further
equivalent forms (``forward_scan``, ``forward_conv``...); cells the book trains by hand also
have ``backward``. Models, in book order:

- Part I: ``elman``, ``lstm``, ``gru`` (with ``stack`` for deep and bidirectional networks),
  ``seq2seq`` and ``attention`` (encoder-decoders), ``scrn``, ``orthogonal``, ``lem``
  (cells built for long memory);
- Part II: ``esn`` (echo state networks), ``rtrl`` (real-time recurrent learning);
- Part III: ``scan`` (parallel prefix scans), ``lru``, ``mingru``, ``rglru``, ``hgrn``;
- Part IV: ``hippo``, ``discretize``, ``lmu`` (LMU and LSSL), ``s4``, ``s4d``.

Shared pieces: ``backend`` (NumPy/CuPy/torch), ``checks`` (input validation), ``testing``
(closeness and numerical gradients), ``layers`` (readout and loss), ``charlm`` (character
language model around any cell), ``seqclass`` (sequence classification with torch autograd
around any layer), ``train`` (optimisers and loop), ``tasks`` (data), ``bench`` (benchmarks),
``show`` (notebook helpers).
"""
from . import (attention, backend, charlm, checks, discretize, elman, esn, gru, hgrn, hippo, layers,
               lem, lmu, lru, lstm, mingru, orthogonal, rglru, rtrl, s4, s4d, scan, scrn, seq2seq,
               seqclass, stack, tasks, testing, train)
from .backend import gpu_available, to_numpy, xp_of
from .scan import linear_scan, linear_scan_backward, log_space_scan

__version__ = "0.1.0"
__all__ = ["attention", "backend", "charlm", "checks", "discretize", "elman", "esn", "gru", "hgrn",
           "hippo", "layers", "lem", "lmu", "lru", "lstm", "mingru", "orthogonal", "rglru", "rtrl",
           "s4", "s4d", "scan", "scrn", "seq2seq", "seqclass", "stack", "tasks", "testing", "train",
           "gpu_available", "to_numpy", "xp_of", "linear_scan", "linear_scan_backward",
           "log_space_scan"]
