"""Array backends: one model source for NumPy, CuPy and torch.

Every model in rnnkit asks its inputs for their array namespace (``xp = xp_of(x)``) instead
of importing NumPy directly, so the same function runs on NumPy arrays (the reference), CuPy
arrays (GPU) and torch tensors (when autograd is wanted). The namespaces come from
array-api-compat, which wraps each library behind the Python array API standard. CuPy is
never imported at module level: importing rnnkit works on machines without CuPy or a GPU.
"""
from __future__ import annotations

import functools
from typing import Any

import array_api_compat
import numpy as np

__all__ = [
    "xp_of",
    "device_of",
    "zeros",
    "empty",
    "eye",
    "to_numpy",
    "to_backend",
    "gpu_available",
    "torch_cuda_available",
    "is_torch",
]


def xp_of(*arrays: Any):
    """Return the array-API namespace shared by ``arrays`` (``None`` entries are ignored).

    Mixing libraries (a NumPy weight with a CuPy input, say) raises a ``TypeError`` from
    array-api-compat, which is what we want: a silent host/device copy would hide a bug.
    """
    present = [a for a in arrays if a is not None]
    if not present:
        raise ValueError("xp_of: expected at least one array, got none")
    return array_api_compat.array_namespace(*present)


def device_of(x: Any):
    """The device ``x`` lives on, in its own library's terms ("cpu", a CuPy device, torch's)."""
    return array_api_compat.device(x)


def zeros(xp, shape, *, like, dtype=None):
    """Zeros of ``shape`` on ``like``'s device, with ``like``'s dtype unless ``dtype`` is given.

    Every array a model creates goes through this (or ``empty``/``eye``), so that CuPy and torch
    inputs give CuPy and torch outputs on the same device: ``np.zeros`` or a bare ``xp.zeros``
    would put a torch CUDA model's state on the CPU.
    """
    return xp.zeros(shape, dtype=like.dtype if dtype is None else dtype, device=device_of(like))


def empty(xp, shape, *, like, dtype=None):
    """Uninitialised array of ``shape`` on ``like``'s device (see ``zeros``)."""
    return xp.empty(shape, dtype=like.dtype if dtype is None else dtype, device=device_of(like))


def eye(xp, n: int, *, like, dtype=None):
    """The n x n identity on ``like``'s device, with ``like``'s dtype unless ``dtype`` is given."""
    return xp.eye(n, dtype=like.dtype if dtype is None else dtype, device=device_of(like))


def is_torch(x: Any) -> bool:
    """True when ``x`` is a torch tensor (checked without importing torch)."""
    return array_api_compat.is_torch_array(x)


def to_numpy(x: Any):
    """Copy an array from any backend to a NumPy array (for plotting and comparisons).

    Dicts, lists and tuples are converted element by element; scalars pass through ``np.asarray``.
    """
    if isinstance(x, dict):
        return {k: to_numpy(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)) and not hasattr(x, "_fields"):
        return type(x)(to_numpy(v) for v in x)
    if array_api_compat.is_torch_array(x):
        return x.detach().cpu().numpy()
    if array_api_compat.is_cupy_array(x):
        return x.get()
    return np.asarray(x)


def to_backend(x: Any, backend: str, device: str | None = None):
    """Move NumPy arrays (or a dict/list of them) to ``backend``: "numpy", "cupy" or "torch".

    ``device`` is passed to torch (for example "cuda"); CuPy uses the current device.
    """
    if isinstance(x, dict):
        return {k: to_backend(v, backend, device) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(to_backend(v, backend, device) for v in x)
    host = to_numpy(x)
    if backend == "numpy":
        return host
    if backend == "cupy":
        import cupy  # noqa: PLC0415  (optional dependency, imported on demand)

        return cupy.asarray(host)
    if backend == "torch":
        import torch  # noqa: PLC0415

        # np.ascontiguousarray would turn a 0-d array into shape (1,): copy only when needed.
        host = host if host.flags.c_contiguous else host.copy(order="C")
        return torch.from_numpy(host).to(device or "cpu")
    raise ValueError(f"backend: expected 'numpy', 'cupy' or 'torch', got {backend!r}")


@functools.lru_cache(maxsize=1)
def gpu_available() -> bool:
    """True when CuPy is installed *and* can run a kernel on a CUDA device.

    Any failure (CuPy missing, no driver, no device) means False: callers skip GPU work.
    """
    try:
        import cupy  # noqa: PLC0415

        if cupy.cuda.runtime.getDeviceCount() < 1:
            return False
        int((cupy.arange(3) + 1).sum())  # a real kernel launch, not just a driver query
        return True
    except Exception:  # noqa: BLE001  (ImportError, CUDARuntimeError, compile errors...)
        return False


@functools.lru_cache(maxsize=1)
def torch_cuda_available() -> bool:
    """True when torch is installed and sees a CUDA device."""
    try:
        import torch  # noqa: PLC0415

        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001
        return False
