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

- Part V: ``mamba``, ``mamba2``; Part VI: ``retnet``, ``linear_attention``, ``deltanet``,
  ``rwkv``, ``xlstm`` (and ``transformer``, the softmax baseline); Part VII: ``ttt``,
  ``titans``, ``miras``.

Every model is a flat module at the top of the package (``from rnnkit import lstm``); the
infrastructure lives in subpackages:

- ``rnnkit.core``: ``backend`` (NumPy/CuPy/torch), ``checks`` (input validation), ``testing``
  (closeness and numerical gradients), ``interop`` (torch modules from rnnkit parameters),
  ``registry`` (every model that follows rnnkit/PROTOCOL.md), ``results`` (recorded runs) and
  ``show`` (notebook helpers);
- ``rnnkit.training``: ``layers`` (readout and loss), ``train`` (optimisers and loop),
  ``seqclass`` (sequence classification with torch autograd around any layer), ``charlm``
  (character language model around any cell);
- ``rnnkit.bench`` (the benchmark harness and one suite per model, ``python -m rnnkit.bench``),
  ``rnnkit.experiments`` (large runs, ``python -m rnnkit.experiments``), ``rnnkit.tasks``
  (data) and ``rnnkit.kernels`` (CUDA kernels for CuPy).

``backend``, ``checks``, ``testing``, ``layers``, ``train``, ``seqclass`` and ``charlm`` are also
attributes of the package (``rnnkit.backend.xp_of``), as they were before the move.
"""
from . import (attention, discretize, elman, esn, gru, hgrn, hippo, lem, lmu, lru, lstm, mingru, orthogonal,
               rglru, rtrl, s4, s4d, scan, scrn, seq2seq, stack, tasks)
from .core import backend, checks, testing
from .training import charlm, layers, seqclass, train
from .core.backend import gpu_available, to_numpy, xp_of
from .scan import linear_scan, linear_scan_backward, log_space_scan

__version__ = "0.1.0"
__all__ = ["attention", "backend", "charlm", "checks", "discretize", "elman", "esn", "gru", "hgrn",
           "hippo", "layers", "lem", "lmu", "lru", "lstm", "mingru", "orthogonal", "rglru", "rtrl",
           "s4", "s4d", "scan", "scrn", "seq2seq", "seqclass", "stack", "tasks", "testing", "train",
           "gpu_available", "to_numpy", "xp_of", "linear_scan", "linear_scan_backward",
           "log_space_scan"]
