"""Fused CUDA kernels for CuPy: the hand-written GPU side of rnnkit (issue: GPU kernels).

The NumPy modules of rnnkit run unchanged on CuPy arrays, one array operation (one kernel launch)
at a time. The kernels here are what a GPU engineer writes instead, each in a readable CUDA C file
beside this one and each checked against the NumPy reference (tests/test_kernels.py, marked
``gpu``):

    linear_scan.cu      h_t = a_t h_{t-1} + b_t (9.1) for C channels: one block per channel,
                        tiles of blockDim * ITEMS elements, warp-shuffle scan of (9.2) inside the
                        block, the carry passed from tile to tile; one read and one write per
                        element (``linear_scan``)
    selective_scan.cu   Mamba's S6 (14.1)-(14.3), (14.5): one thread per (batch, channel), the N
                        states in registers, never written out (``selective_scan``); its backward
                        (14.6) recomputes the states from one checkpoint per 16 steps instead of
                        storing them (``selective_scan_backward``)
    rnn_sequence.cu     Elman, LSTM (vanilla) and GRU (reset_after) forward: the input projection
                        as one GEMM, then the whole time loop in one launch, one block per batch row
                        (``elman_forward``, ``lstm_forward``, ``gru_forward``)
    retention_chunkwise.cu  RetNet's chunkwise form (16.8) in three launches: every chunk's state
                        update in parallel, the short recurrence over chunks, every chunk's output
                        (masked scores in shared memory) in parallel (``retention_chunkwise``)

The sources are compiled by CuPy (NVRTC) on first use, for float32 or float64 (``-DSCALAR_T``).
``compile_check()`` compiles every source with ``nvcc -ptx`` for both dtypes: it needs the CUDA
compiler but no GPU, so the test suite catches a syntax error on a CPU machine. The functions
refuse non-CuPy inputs with a clear error: on NumPy arrays use the rnnkit modules themselves.

Not here yet (see the issue): the backward passes of the scan and RNN kernels, tensor-core (WMMA) matmuls in the retention
kernel and a GLA variant of it (a decay per key dimension), and a persistent RNN kernel that keeps W_h in shared memory across many blocks with a
grid-wide barrier per step. The present RNN kernels read W_h from the L2 cache every step.
"""
from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from pathlib import Path

import array_api_compat
import numpy as np

__all__ = ["SOURCES", "source", "compile_check", "linear_scan", "selective_scan",
           "selective_scan_backward", "elman_forward",
           "lstm_forward", "gru_forward", "retention_chunkwise", "SCAN_THREADS", "SCAN_ITEMS", "MAX_N",
           "MAX_CHUNK"]

HERE = Path(__file__).resolve().parent
SOURCES = {"linear_scan": "linear_scan.cu", "selective_scan": "selective_scan.cu",
           "rnn_sequence": "rnn_sequence.cu", "retention_chunkwise": "retention_chunkwise.cu"}
SCAN_THREADS, SCAN_ITEMS = 256, 4      # one tile of the scan kernel = 1024 elements
MAX_N = 64                             # the selective scan's states per thread (registers)
BWD_CHUNK = 16                         # selective-scan backward: one checkpoint per BWD_CHUNK steps
MAX_CHUNK = 64                         # retention chunk: its c x c scores live in shared memory
_DTYPES = {"float32": "float", "float64": "double"}
_NULL = np.uint64(0)                   # a null pointer argument (8 bytes, as the kernels expect)


def source(name: str) -> str:
    """The CUDA C source of kernel file ``name`` (a key of ``SOURCES``)."""
    if name not in SOURCES:
        raise ValueError(f"name: expected one of {sorted(SOURCES)}, got {name!r}")
    return (HERE / SOURCES[name]).read_text(encoding="utf-8")


def compile_check(arch: str = "sm_90", nvcc: str | None = None) -> dict:
    """Compile every source with ``nvcc -ptx`` for float32 and float64; return {file: ptx bytes}.

    Raises RuntimeError with the compiler's message on the first source that does not compile,
    and FileNotFoundError when no nvcc is found (``nvcc`` argument, then PATH).
    """
    nvcc = nvcc or shutil.which("nvcc")
    if nvcc is None:
        raise FileNotFoundError("nvcc: the CUDA compiler is not on PATH (Debian/NVIDIA image: "
                                "/usr/local/cuda/bin; PyPI: nvidia-cuda-nvcc-cu12)")
    sizes = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, file in SOURCES.items():
            for dtype, ctype in _DTYPES.items():
                out = Path(tmp) / f"{name}_{dtype}.ptx"
                proc = subprocess.run([nvcc, "-ptx", f"-arch={arch}", f"-DSCALAR_T={ctype}",
                                       str(HERE / file), "-o", str(out)],
                                      capture_output=True, text=True)
                if proc.returncode != 0:
                    raise RuntimeError(f"{file} ({dtype}) does not compile:\n{proc.stderr}")
                sizes[f"{file}:{dtype}"] = out.stat().st_size
    return sizes


@functools.lru_cache(maxsize=None)
def _module(name: str, dtype: str):
    import cupy  # noqa: PLC0415  (optional dependency)

    return cupy.RawModule(code=source(name), options=(f"-DSCALAR_T={_DTYPES[dtype]}",))


def _require_cupy(**arrays):
    """The common float dtype of CuPy ``arrays`` (None entries skipped); clear errors otherwise."""
    dtype = None
    for name, arr in arrays.items():
        if arr is None:
            continue
        if not array_api_compat.is_cupy_array(arr):
            raise ValueError(f"{name}: expected a CuPy array on the GPU (these are CUDA kernels; for "
                             f"NumPy use the rnnkit module itself), got {type(arr).__name__}")
        if str(arr.dtype) not in _DTYPES:
            raise ValueError(f"{name}: expected float32 or float64, got {arr.dtype}")
        if dtype is None:
            dtype = str(arr.dtype)
        elif str(arr.dtype) != dtype:
            raise ValueError(f"{name}: expected dtype {dtype} like the other inputs, got {arr.dtype}")
    return dtype


def _shape_error(name, expected, arr):
    return ValueError(f"{name}: expected shape {expected}, got {tuple(arr.shape)}")


def linear_scan(a, b, h0=None):
    """h_t = a_t h_{t-1} + b_t along axis 1, like ``rnnkit.scan.linear_scan`` (real inputs).

    Args: a, b (B, L, ...) CuPy arrays; h0 (B, ...) or None (zeros).  Returns h (B, L, ...).
    """
    dtype = _require_cupy(a=a, b=b, h0=h0)
    import cupy  # noqa: PLC0415  (after the checks: a NumPy input gets the clear error)
    if a.shape != b.shape or a.ndim < 2:
        raise ValueError(f"b: expected the shape of a, {tuple(a.shape)} with ndim >= 2, got {tuple(b.shape)}")
    Bsz, L, rest = a.shape[0], a.shape[1], a.shape[2:]
    if L == 0:
        raise ValueError(f"a: expected at least one time step (L >= 1), got shape {tuple(a.shape)}")
    if h0 is not None and h0.shape != (Bsz,) + rest:
        raise _shape_error("h0", (Bsz,) + rest, h0)
    # channels into rows: (B, L, M) -> (B*M, L), contiguous along L
    rows = lambda x: cupy.ascontiguousarray(cupy.moveaxis(x.reshape(Bsz, L, -1), 1, 2)).reshape(-1, L)  # noqa: E731
    a_r, b_r = rows(a), rows(b)
    h_r = cupy.empty_like(a_r)
    h0_r = None if h0 is None else cupy.ascontiguousarray(h0.reshape(-1))
    kernel = _module("linear_scan", dtype).get_function("linear_scan")
    kernel((a_r.shape[0],), (SCAN_THREADS,), (a_r, b_r, h0_r if h0_r is not None else _NULL, h_r,
                                               cupy.int64(L)))
    return cupy.moveaxis(h_r.reshape(Bsz, -1, L), 2, 1).reshape(a.shape)


def _selective_dims(u, delta, A, B, C, **optional):
    """(B, L, D, N) of a selective-scan call, with a clear error for any input of the wrong shape;
    ``optional`` holds D, z, state and, for the backward, dy and dstate (None entries skipped)."""
    if u.ndim != 3 or u.shape[1] == 0:
        raise ValueError(f"u: expected shape (B, L, D) with L >= 1, got {tuple(u.shape)}")
    Bsz, L, Dm = u.shape
    if A.ndim != 2 or A.shape[0] != Dm:
        raise _shape_error("A", (Dm, "N"), A)
    N = A.shape[1]
    if N > MAX_N:
        raise ValueError(f"A: expected N <= {MAX_N} states per channel (registers), got N = {N}")
    shapes = {"delta": (Bsz, L, Dm), "B": (Bsz, L, N), "C": (Bsz, L, N), "D": (Dm,), "z": (Bsz, L, Dm),
              "state": (Bsz, Dm, N), "dy": (Bsz, L, Dm), "dstate": (Bsz, Dm, N)}
    for name, arr in {"delta": delta, "B": B, "C": C, **optional}.items():
        if arr is not None and arr.shape != shapes[name]:
            raise _shape_error(name, shapes[name], arr)
    return Bsz, L, Dm, N


def selective_scan(u, delta, A, B, C, D=None, z=None, state=None):
    """S6 like ``rnnkit.mamba.selective_scan`` (form "sequential", return_state=True): (y, h_L).

    Args: u, delta, z (B, L, D); A (D, N); B, C (B, L, N); D (D,); state (B, D, N) or None.
    """
    dtype = _require_cupy(u=u, delta=delta, A=A, B=B, C=C, D=D, z=z, state=state)
    import cupy  # noqa: PLC0415  (after the checks: a NumPy input gets the clear error)
    Bsz, L, Dm, N = _selective_dims(u, delta, A, B, C, D=D, z=z, state=state)
    c = lambda x: None if x is None else cupy.ascontiguousarray(x)  # noqa: E731
    y = cupy.empty_like(u)
    h_last = cupy.empty((Bsz, Dm, N), dtype=u.dtype)
    threads = min(128, max(32, Dm))
    args = [c(u), c(delta), c(A), c(B), c(C), c(D), c(z), c(state)]
    args = [_NULL if x is None else x for x in args]
    kernel = _module("selective_scan", dtype).get_function("selective_scan")
    kernel(((Dm + threads - 1) // threads, Bsz), (threads,),
           (*args, y, h_last, cupy.int32(Bsz), cupy.int64(L), cupy.int32(Dm), cupy.int32(N)))
    return y, h_last


def selective_scan_backward(dy, u, delta, A, B, C, D=None, z=None, state=None, dstate=None):
    """Gradients through ``selective_scan``, like ``rnnkit.mamba.selective_scan_backward``: a dict
    with "u", "delta", "A", "B", "C" and, where given, "D", "z", "state" (the inputs' shapes).

    Args: dy (B, L, D) dLoss/dy; u ... state as for ``selective_scan``; dstate (B, D, N) or None.
    """
    dtype = _require_cupy(dy=dy, u=u, delta=delta, A=A, B=B, C=C, D=D, z=z, state=state, dstate=dstate)
    import cupy  # noqa: PLC0415  (after the checks: a NumPy input gets the clear error)
    Bsz, L, Dm, N = _selective_dims(u, delta, A, B, C, D=D, z=z, state=state, dy=dy, dstate=dstate)
    c = lambda x: _NULL if x is None else cupy.ascontiguousarray(x)  # noqa: E731
    n_ck = -(-L // BWD_CHUNK)
    ck = cupy.empty((Bsz, Dm, n_ck, N), dtype=u.dtype)
    grads = {"u": cupy.empty_like(u), "delta": cupy.empty_like(u), "A": cupy.zeros_like(A),
             "B": cupy.zeros_like(B), "C": cupy.zeros_like(C)}
    if D is not None:
        grads["D"] = cupy.zeros_like(D)
    if z is not None:
        grads["z"] = cupy.empty_like(z)
    if state is not None:
        grads["state"] = cupy.empty_like(state)
    threads = min(128, max(32, Dm))
    kernel = _module("selective_scan", dtype).get_function("selective_scan_backward")
    kernel(((Dm + threads - 1) // threads, Bsz), (threads,),
           (c(dy), c(u), c(delta), c(A), c(B), c(C), c(D), c(z), c(state), c(dstate), ck,
            grads["u"], grads["delta"], grads["A"], grads["B"], grads["C"], c(grads.get("D")),
            c(grads.get("z")), c(grads.get("state")),
            cupy.int32(Bsz), cupy.int64(L), cupy.int32(Dm), cupy.int32(N)))
    return grads


def _rnn_prepare(x, W_x, b, W_h, gates: int, name_x="W_x", name_h="W_h"):
    import cupy  # noqa: PLC0415

    if x.ndim != 3 or x.shape[1] == 0:
        raise ValueError(f"x: expected shape (B, L, D) with L >= 1, got {tuple(x.shape)}")
    H = W_h.shape[0]
    if W_h.shape != (H, gates * H):
        raise _shape_error(name_h, (H, gates * H), W_h)
    if W_x.shape != (x.shape[2], gates * H):
        raise _shape_error(name_x, (x.shape[2], gates * H), W_x)
    if H > 1024:
        raise ValueError(f"{name_h}: expected H <= 1024 (one thread per hidden unit), got H = {H}")
    Bsz, L, _ = x.shape
    xw = cupy.ascontiguousarray((x.reshape(Bsz * L, -1) @ W_x + b).reshape(Bsz, L, gates * H))
    return xw, cupy.ascontiguousarray(W_h), Bsz, L, H


def elman_forward(params: dict, x, state=None):
    """``rnnkit.elman.forward`` (tanh) as one fused launch: (h_all (B, L, H), h_L (B, H))."""
    dtype = _require_cupy(x=x, state=state, **params)
    import cupy  # noqa: PLC0415  (after the checks: a NumPy input gets the clear error)
    xw, W, Bsz, L, H = _rnn_prepare(x, params["W_xh"], params["b_h"], params["W_hh"], 1, "W_xh", "W_hh")
    y, h_last = cupy.empty((Bsz, L, H), dtype=x.dtype), cupy.empty((Bsz, H), dtype=x.dtype)
    kernel = _module("rnn_sequence", dtype).get_function("elman_sequence")
    kernel((Bsz,), (H,), (xw, W, _NULL if state is None else cupy.ascontiguousarray(state), y, h_last,
                          cupy.int64(L), cupy.int32(H)), shared_mem=2 * H * x.itemsize)
    return y, h_last


def lstm_forward(params: dict, x, state=None):
    """``rnnkit.lstm.forward`` (variant "vanilla") fused: (h_all, (h_L, c_L))."""
    h0, c0 = (None, None) if state is None else state
    dtype = _require_cupy(x=x, h0=h0, c0=c0, **params)
    import cupy  # noqa: PLC0415  (after the checks: a NumPy input gets the clear error)
    xw, W, Bsz, L, H = _rnn_prepare(x, params["W_x"], params["b"], params["W_h"], 4)
    y = cupy.empty((Bsz, L, H), dtype=x.dtype)
    h_last, c_last = cupy.empty((Bsz, H), dtype=x.dtype), cupy.empty((Bsz, H), dtype=x.dtype)
    opt = lambda s: _NULL if s is None else cupy.ascontiguousarray(s)  # noqa: E731
    kernel = _module("rnn_sequence", dtype).get_function("lstm_sequence")
    kernel((Bsz,), (H,), (xw, W, opt(h0), opt(c0), y, h_last, c_last, cupy.int64(L), cupy.int32(H)),
           shared_mem=2 * H * x.itemsize)
    return y, (h_last, c_last)


def gru_forward(params: dict, x, state=None):
    """``rnnkit.gru.forward`` for a reset_after GRU (params with ``b_hn``) fused: (h_all, h_L)."""
    if "b_hn" not in params:
        raise ValueError("params: expected a reset_after GRU (with 'b_hn', torch's placement), got keys "
                         f"{sorted(params)}")
    dtype = _require_cupy(x=x, state=state, **params)
    import cupy  # noqa: PLC0415  (after the checks: a NumPy input gets the clear error)
    xw, W, Bsz, L, H = _rnn_prepare(x, params["W_x"], params["b"], params["W_h"], 3)
    y, h_last = cupy.empty((Bsz, L, H), dtype=x.dtype), cupy.empty((Bsz, H), dtype=x.dtype)
    kernel = _module("rnn_sequence", dtype).get_function("gru_sequence")
    kernel((Bsz,), (H,), (xw, W, cupy.ascontiguousarray(params["b_hn"]),
                          _NULL if state is None else cupy.ascontiguousarray(state), y, h_last,
                          cupy.int64(L), cupy.int32(H)), shared_mem=2 * H * x.itemsize)
    return y, h_last


def retention_chunkwise(q, k, v, gamma, chunk_size: int = 64, state=None):
    """``rnnkit.retnet.retention(..., form="chunkwise")`` on the GPU: (o (B, H, L, dv), state).

    Args: q, k (B, H, L, dk); v (B, H, L, dv); gamma (H,) in (0, 1]; chunk_size 1 .. MAX_CHUNK
    (L need not be a multiple of it); state (B, H, dk, dv) or None (zeros).
    """
    dtype = _require_cupy(q=q, k=k, v=v, gamma=gamma, state=state)
    import cupy  # noqa: PLC0415  (after the checks: a NumPy input gets the clear error)
    if q.ndim != 4 or q.shape[2] == 0:
        raise ValueError(f"q: expected shape (B, H, L, dk) with L >= 1, got {tuple(q.shape)}")
    Bsz, H, L, dk = q.shape
    if k.shape != q.shape:
        raise _shape_error("k", tuple(q.shape), k)
    if v.ndim != 4 or v.shape[:3] != (Bsz, H, L):
        raise _shape_error("v", (Bsz, H, L, "dv"), v)
    dv = v.shape[3]
    if gamma.shape != (H,):
        raise _shape_error("gamma", (H,), gamma)
    if state is not None and state.shape != (Bsz, H, dk, dv):
        raise _shape_error("state", (Bsz, H, dk, dv), state)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or not 1 <= chunk_size <= MAX_CHUNK:
        raise ValueError(f"chunk_size: expected an int in 1..{MAX_CHUNK} (the chunk's scores are kept "
                         f"in shared memory), got {chunk_size!r}")
    c = lambda x: cupy.ascontiguousarray(x)  # noqa: E731
    q, k, v, gamma = c(q), c(k), c(v), c(gamma)
    n_chunks = -(-L // chunk_size)
    U = cupy.empty((Bsz, H, n_chunks, dk, dv), dtype=q.dtype)
    R_in = cupy.empty_like(U)
    state_out = cupy.empty((Bsz, H, dk, dv), dtype=q.dtype)
    o = cupy.empty((Bsz, H, L, dv), dtype=q.dtype)
    mod = _module("retention_chunkwise", dtype)
    sizes = (cupy.int32(H), cupy.int64(L), cupy.int32(dk), cupy.int32(dv), cupy.int32(chunk_size),
             cupy.int32(n_chunks))
    mod.get_function("retention_chunk_update")((n_chunks, Bsz * H), (256,), (k, v, gamma, U, *sizes))
    total = Bsz * H * dk * dv
    mod.get_function("retention_state_pass")(((total + 255) // 256,), (256,),
                                             (U, gamma, _NULL if state is None else c(state), R_in,
                                              state_out, cupy.int32(Bsz * H), *sizes))
    mod.get_function("retention_chunk_output")((n_chunks, Bsz * H), (256,), (q, k, v, gamma, R_in, o, *sizes))
    return o, state_out
