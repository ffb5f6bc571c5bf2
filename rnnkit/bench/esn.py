"""Chapter 7 benchmark: the cost of an echo state network as the reservoir grows, float32.

Forms timed, for one sequence (B = 1) of L steps with D = 1 input:

    harvest   x_all, _ = esn.forward(params, u)            (7.1) for t = 1..L: L products (1, N) (N, N)
    fit       W_out = esn.fit_readout(x_all, y, ridge)     (7.3): Z^T Z is O(L N^2), the solve O(N^3)

Implementations ("impl"): numpy, torch-cpu (the same rnnkit source on torch tensors), cupy and
torch-cuda (the same source on the GPU; skipped where there is none). Before timing, every
implementation's states and the fitted readout's predictions are compared with NumPy's (float32:
rtol 1e-3 on the states, 5e-3 on the predictions). W_out itself is not compared: the normal
equations square the states' condition number, so float32 weights differ far more than the
predictions they make; the ridge is 0.1 for the same reason.

Configurations: N in SWEEP_N at L = 2000 (the chapter's Mackey-Glass training length).
"""
from __future__ import annotations

import numpy as np

from .. import bench, esn
from ..core.backend import to_backend, to_numpy

__all__ = ["run", "SWEEP_N", "QUICK_N", "L_FULL", "L_QUICK"]

SWEEP_N = (100, 200, 400, 800, 1600)
QUICK_N = (50, 100, 200)
L_FULL, L_QUICK = 2000, 400
FULL_REPEAT = {"warmup": 1, "repeat": 5}
QUICK_REPEAT = {"warmup": 1, "repeat": 3}
RIDGE = 0.1           # float32 normal equations: a ridge this large keeps predictions to ~1e-3
RTOL_STATES, RTOL_READOUT = 1e-3, 5e-3


def _problem(N: int, L: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    params = esn.init(rng, 1, N, spectral_radius=0.95, leak_rate=0.5, bias_scaling=0.2,
                      dtype=np.float32)
    s = np.sin(0.05 * np.arange(L + 1)) + 0.1 * rng.standard_normal(L + 1)
    u = s[None, :-1, None].astype(np.float32)                   # (1, L, 1)
    y = s[None, 1:, None].astype(np.float32)                    # (1, L, 1)
    return params, u, y


def _move(params: dict, u, y, impl: str):
    """Every parameter (0-d alpha and beta included) and the data to the implementation's backend."""
    backend, device = {"numpy": ("numpy", None), "torch-cpu": ("torch", "cpu"),
                       "cupy": ("cupy", None), "torch-cuda": ("torch", "cuda")}[impl]
    moved = {k: to_backend(v, backend, device) if isinstance(v, np.ndarray) else v
             for k, v in params.items()}
    return moved, to_backend(u, backend, device), to_backend(y, backend, device)


def run(quick: bool = False, *, backends: dict | None = None, sizes=None) -> list[dict]:
    """Time harvest and fit for every available implementation over N; return the records.

    Args:
        quick: N in QUICK_N at L = L_QUICK with fewer repeats (for a live cell in the chapter).
        backends: {impl: bool}, default ``bench.available_backends()``. sizes: override N values.
    Returns:
        records (see ``rnnkit.bench``) with params B, L, D, N, dtype (and threads for torch-cpu).
    """
    backends = bench.available_backends() if backends is None else backends
    impls = [i for i in (*bench.CPU_IMPLS, *bench.GPU_IMPLS) if backends.get(i)]
    L = L_QUICK if quick else L_FULL
    repeat = QUICK_REPEAT if quick else FULL_REPEAT
    records = []
    for N in (sizes if sizes is not None else (QUICK_N if quick else SWEEP_N)):
        params, u, y = _problem(N, L)
        ref_x = esn.forward(params, u)[0]
        ref_y = esn.predict(esn.fit_readout(ref_x, y, ridge=RIDGE), ref_x)
        for impl in impls:
            p, ub, yb = _move(params, u, y, impl)
            x_all = esn.forward(p, ub)[0]
            scale_x = np.abs(ref_x).max()
            if np.abs(to_numpy(x_all) - ref_x).max() > RTOL_STATES * scale_x:
                raise AssertionError(f"{impl}: states differ from NumPy's (N={N})")
            y_hat = to_numpy(esn.predict(esn.fit_readout(x_all, yb, ridge=RIDGE), x_all))
            if np.abs(y_hat - ref_y).max() > RTOL_READOUT * np.abs(ref_y).max():
                raise AssertionError(f"{impl}: readout's predictions differ from NumPy's (N={N})")
            config = {"B": 1, "L": L, "D": 1, "N": N, "dtype": "float32"}
            if impl == "torch-cpu":
                import torch  # noqa: PLC0415

                config["threads"] = torch.get_num_threads()
            forms = (("harvest", lambda p=p, ub=ub: esn.forward(p, ub)),
                     ("fit", lambda x_all=x_all, yb=yb: esn.fit_readout(x_all, yb, ridge=RIDGE)))
            for form, fn in forms:
                timing = bench.time_fn(fn, sync=bench.sync_for(impl), **repeat)
                records.append(bench.make_record(impl, form, config, timing))
    return records
