"""rnnkit: the small library behind "Recurrent Models from Scratch".

Each model lives in its own module (``rnnkit.elman``, ...) with ``init``, ``step``, ``forward`` and,
where the book trains it by hand, ``backward``. Shared pieces: ``backend`` (NumPy/CuPy/torch),
``checks`` (input validation), ``testing`` (closeness and numerical gradients), ``layers``
(readout and loss), ``train`` (optimisers and loop), ``tasks`` (data), ``bench`` (benchmarks).
"""
from . import backend, checks, elman, testing
from .backend import gpu_available, to_numpy, xp_of

__version__ = "0.1.0"
__all__ = ["backend", "checks", "elman", "testing", "gpu_available", "to_numpy", "xp_of"]
