"""rnnkit: the small library behind "Recurrent Models from Scratch".

Each model lives in its own module (``rnnkit.elman``, ...) with ``init``, ``step``, ``forward`` and,
where the book trains it by hand, ``backward``. Shared pieces: ``backend`` (NumPy/CuPy/torch),
``checks`` (input validation), ``testing`` (closeness and numerical gradients), ``layers``
(readout and loss), ``charlm`` (character language model around any cell), ``train``
(optimisers and loop), ``tasks`` (data), ``bench`` (benchmarks), ``show`` (notebook helpers).
"""
from . import backend, charlm, checks, elman, layers, tasks, testing, train
from .backend import gpu_available, to_numpy, xp_of

__version__ = "0.1.0"
__all__ = ["backend", "charlm", "checks", "elman", "layers", "tasks", "testing", "train",
           "gpu_available", "to_numpy", "xp_of"]
