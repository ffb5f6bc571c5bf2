"""Chapter 11 benchmark: one training step of minGRU against a sequential GRU, as L grows.

A training step is forward + backward of loss = sum of all outputs (so dLoss/dh_t = 1 for every
t), with the gradients of every parameter and of the input x, float32. Forms ("form" in the records):

    GRU                  the sequential GRU of chapter 3: rnnkit.gru (hand BPTT) on NumPy and
                         CuPy; torch.nn.GRU with autograd on torch (cuDNN on CUDA)
    minGRU sequential    rnnkit.mingru.forward, a loop of L steps (11.3) after all gates at once;
                         hand backward with the sequential reverse scan (11.11) on NumPy and
                         CuPy; autograd through the same loop on torch
    minGRU scan          rnnkit.mingru.forward_scan: on NumPy and CuPy the chunked scan and the
                         hand backward with the chunked reverse scan (11.11)-(11.14); on torch
                         the log-space form (11.5)-(11.6) (torch.logcumsumexp) with autograd,
                         as in Feng et al.'s listings

Implementations ("impl"): numpy, torch-cpu, cupy, torch-cuda (see ``rnnkit.bench``); GPU ones
are skipped where there is no device. Configuration: B = 64 (Feng et al.'s batch size for their
runtime figure), D = H = 128, L from 64 to 4096 where a GPU is present (SWEEP_L), else
L = 64, 256, 1024 (CPU_SWEEP_L: on a CPU the sequential forms at L = 4096 take minutes per call). Before timing each L the minGRU forms and
implementations are checked against the NumPy sequential minGRU (outputs and every gradient;
float32, so rtol 1e-2: the log-space form carries an error of a few ulps of |sum_t log a_t|, and
the bias gradients are sums of B L terms of both signs that largely cancel),
and the torch GRU against rnnkit.gru.

``speedups(run)`` gives time(GRU) / time(minGRU scan) per impl and L, the quantity of Feng et
al.'s speedup plot (175x at L = 512 on a T4 GPU, their section 4).
"""
from __future__ import annotations

import numpy as np

from .. import bench, gru, mingru
from ..core.backend import to_backend, to_numpy
from ..core.interop import to_torch
from ..core.testing import assert_close

__all__ = ["run", "speedups", "FORMS", "HEADLINE", "SWEEP_L", "CPU_SWEEP_L", "QUICK_L"]

HEADLINE = {"B": 64, "L": 512, "D": 128, "H": 128}
SWEEP_L = (64, 256, 512, 1024, 2048, 4096)   # with a GPU
CPU_SWEEP_L = (64, 256, 1024)                 # CPU only: L = 4096 alone takes minutes
QUICK_L = (32, 128)
FORMS = ("GRU", "minGRU sequential", "minGRU scan")
FULL_REPEAT = {"warmup": 1, "repeat": 3}
QUICK_REPEAT = {"warmup": 1, "repeat": 3}
RTOL = 1e-2


def _problem(B: int, L: int, D: int, H: int, seed: int = 0):
    """float32 NumPy parameters of both models (GRU reset after, torch's placement) and x."""
    rng = np.random.default_rng(seed)
    p_gru = gru.init(rng, D, H, reset_after=True, dtype=np.float32)
    p_min = mingru.init(rng, D, H, dtype=np.float32)
    x = rng.standard_normal((B, L, D)).astype(np.float32)    # (B, L, D)
    return p_gru, p_min, x


def _hand_fns(p_gru, p_min, x, backend: str) -> dict:
    """Training-step closures with hand backward on "numpy" or "cupy": form -> fn() -> grads."""
    pg, pm, xb = (to_backend(v, backend) for v in (p_gru, p_min, x))
    ones = xb[:, :, :1] * 0 + 1                              # (B, L, 1): dLoss/dh_t = 1
    dh = ones * to_backend(np.ones(p_min["b_z"].shape, np.float32), backend)   # (B, L, H)

    def gru_step():
        _, _, cache = gru.forward(pg, xb, return_cache=True)
        grads, dx, _ = gru.backward(pg, dh, cache)
        return grads, dx

    def min_seq():
        _, _, cache = mingru.forward(pm, xb, return_cache=True)
        grads, dx, _ = mingru.backward(pm, dh, cache, method="sequential")
        return grads, dx

    def min_scan():
        _, _, cache = mingru.forward_scan(pm, xb, method="chunked", return_cache=True)
        grads, dx, _ = mingru.backward(pm, dh, cache, method="chunked")
        return grads, dx

    return {"GRU": gru_step, "minGRU sequential": min_seq, "minGRU scan": min_scan}


def _torch_fns(p_gru, p_min, x, device: str) -> dict:
    """Training-step closures with torch autograd on ``device``: form -> fn() -> (grads, dx)."""
    import torch  # noqa: PLC0415

    H = p_gru["W_h"].shape[0]
    net = to_torch(gru, p_gru).to(device)      # rnnkit's layout into torch's (rnnkit.core.interop)
    pm = {k: torch.from_numpy(v).to(device).requires_grad_(True) for k, v in p_min.items()}
    xg = torch.from_numpy(x).to(device).requires_grad_(True)

    def gru_step():
        net.zero_grad(set_to_none=True)
        xg.grad = None
        net(xg)[0].sum().backward()
        grads = {"W_x": net.weight_ih_l0.grad.T, "W_h": net.weight_hh_l0.grad.T,
                 "b": net.bias_ih_l0.grad, "b_hn": net.bias_hh_l0.grad[2 * H:]}
        return grads, xg.grad

    def min_step(forward):
        def step():
            for v in pm.values():
                v.grad = None
            xg.grad = None
            forward(pm, xg)[0].sum().backward()
            return {k: v.grad for k, v in pm.items()}, xg.grad
        return step

    return {"GRU": gru_step, "minGRU sequential": min_step(mingru.forward),
            "minGRU scan": min_step(lambda p, xx: mingru.forward_scan(p, xx, method="log"))}


def _check(impl: str, fns: dict, ref: dict) -> None:
    """Every form's gradients against the NumPy reference of the same model (float32)."""
    ref_grads = {"GRU": ref["GRU"](), "minGRU": ref["minGRU sequential"]()}
    for form, fn in fns.items():
        grads_ref, dx_ref = ref_grads["GRU" if form == "GRU" else "minGRU"]
        grads, dx = fn()
        for key in grads_ref:
            assert_close(f"{impl} {form} d{key}", grads_ref[key], to_numpy(grads[key]), rtol=RTOL)
        assert_close(f"{impl} {form} dx", dx_ref, to_numpy(dx), rtol=RTOL)


def run(quick: bool = False, *, backends: dict | None = None, lengths=None) -> list[dict]:
    """Time a training step of every form on every available implementation over L.

    Args:
        quick: L in QUICK_L with fewer repeats (for the notebook and the tests); otherwise
            SWEEP_L if a GPU implementation runs, else CPU_SWEEP_L.
        backends: {impl: bool}, defaults to ``bench.available_backends()``.
        lengths: override the L values swept.
    Returns:
        records (see ``rnnkit.bench``); params B, L, D, H, dtype (and threads for torch-cpu).
    """
    backends = bench.available_backends() if backends is None else backends
    impls = [i for i in (*bench.CPU_IMPLS, *bench.GPU_IMPLS) if backends.get(i)]
    if lengths is None:
        gpu = any(i in bench.GPU_IMPLS for i in impls)
        lengths = QUICK_L if quick else (SWEEP_L if gpu else CPU_SWEEP_L)
    repeat = QUICK_REPEAT if quick else FULL_REPEAT
    B, D, H = HEADLINE["B"], HEADLINE["D"], HEADLINE["H"]
    records = []
    for L in lengths:
        p_gru, p_min, x = _problem(B, L, D, H)
        ref = _hand_fns(p_gru, p_min, x, "numpy")
        for impl in impls:
            if impl in ("numpy", "cupy"):
                fns = ref if impl == "numpy" else _hand_fns(p_gru, p_min, x, "cupy")
            else:
                fns = _torch_fns(p_gru, p_min, x, "cpu" if impl == "torch-cpu" else "cuda")
            if impl != "numpy" or L == lengths[0]:
                _check(impl, fns, ref)       # numpy against itself once: the minGRU forms agree
            config = {"B": B, "L": L, "D": D, "H": H, "dtype": "float32"}
            if impl == "torch-cpu":
                import torch  # noqa: PLC0415

                config["threads"] = torch.get_num_threads()
            for form in FORMS:
                timing = bench.time_fn(fns[form], sync=bench.sync_for(impl), **repeat)
                records.append(bench.make_record(impl, form, config, timing))
    return records


def speedups(runs, numerator: str = "GRU", denominator: str = "minGRU scan") -> dict:
    """time(numerator) / time(denominator) for each (impl, device) and L, from records.

    Args:
        runs: a run dict or a list of them (``bench.load_results("mingru")``, a live run).
    Returns:
        {(impl, device): {L: ratio}}, L sorted; a ratio above 1 means the denominator is faster.
    """
    runs = [runs] if isinstance(runs, dict) else list(runs)
    times: dict = {}
    for one in runs:
        for rec in one["records"]:
            key = (rec["impl"], rec["device"])
            times.setdefault(key, {}).setdefault(rec["params"]["L"], {})[rec["form"]] = rec["median_s"]
    out = {}
    for key, by_L in times.items():
        ratios = {L: t[numerator] / t[denominator] for L, t in sorted(by_L.items())
                  if numerator in t and denominator in t}
        if ratios:
            out[key] = ratios
    return out
