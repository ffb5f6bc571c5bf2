"""The cell protocol (rnnkit/PROTOCOL.md), checked for every model module in the registry.

One suite instead of a copy per model: a new module that defines ``example`` is tested here the
day it is written. For each model: the ``step`` loop equals ``forward``; ``state=None`` is the
zero state; every equivalent form in ``FORMS`` agrees with ``forward``; float32 stays float32;
torch tensors stay torch tensors (and CuPy arrays stay on the GPU where there is one); the hand
``backward``, where there is one, equals torch autograd through ``forward``; L = 0 and integer
inputs are refused with a ValueError.
"""
from __future__ import annotations

import inspect

import numpy as np
import pytest

from rnnkit.core import backend, registry
from rnnkit.core.testing import assert_close

MODELS = registry.models()
NAMES = sorted(MODELS)


def _parts(state):
    """The arrays of a state, nested tuples (RWKV's State holding a WKVState) flattened."""
    if isinstance(state, (tuple, list)):
        return [part for sub in state for part in _parts(sub)]
    return [state]


def _accepts(fn, options):
    names = inspect.signature(fn).parameters
    return {k: v for k, v in options.items() if k in names}


def _example(name, dtype=np.float64, seed=0):
    return MODELS[name].example(np.random.default_rng(seed), dtype=dtype)


def test_the_registry_holds_the_book_models():
    expected = {"elman", "lstm", "gru", "scrn", "orthogonal", "lem", "esn", "lru", "mingru",
                "minlstm", "rglru", "hgrn", "lmu"}
    assert expected <= set(MODELS), sorted(expected - set(MODELS))


@pytest.mark.parametrize("name", NAMES)
def test_step_loop_equals_forward(name):
    cell = MODELS[name]
    params, x, opts = _example(name)
    y, last = cell.forward(params, x, **opts)
    state, ys = None, []
    for t in range(x.shape[1]):
        y_t, state = cell.step(params, x[:, t], state, **opts)
        ys.append(backend.to_numpy(y_t))
    assert_close(f"{name}: step loop vs forward (y)", y, np.stack(ys, axis=1), rtol=1e-12)
    for k, (a, b) in enumerate(zip(_parts(last), _parts(state))):
        assert_close(f"{name}: final state part {k}", a, b, rtol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_default_state_is_the_zero_state(name):
    cell = MODELS[name]
    params, x, opts = _example(name)
    zero = cell.zero_state(params, x)
    for part in _parts(zero):
        # Empty past: zeros, or -inf where a part is a log-domain running maximum (RWKV-4's p:
        # the maximum over no terms), whose exp is the zero of the sum it stabilises.
        values = backend.to_numpy(part)
        assert part.shape[0] == x.shape[0] and (not np.any(values) or np.all(np.isneginf(values)))
    y0, _ = cell.forward(params, x, **opts)
    y1, _ = cell.forward(params, x, zero, **opts)
    assert_close(f"{name}: forward(None) vs forward(zero_state)", y0, y1, rtol=0)
    s0, _ = cell.step(params, x[:, 0], None, **opts)
    s1, _ = cell.step(params, x[:, 0], cell.zero_state(params, x[:, 0]), **opts)
    assert_close(f"{name}: step(None) vs step(zero_state)", s0, s1, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_equivalent_forms_agree_with_forward(name):
    cell = MODELS[name]
    params, x, opts = _example(name)
    y, last = cell.forward(params, x, **opts)
    for form in getattr(cell, "FORMS", ()):
        fn = getattr(cell, form)
        y_f, last_f = fn(params, x, **_accepts(fn, opts))[:2]
        assert_close(f"{name}.{form} vs forward", y, y_f, rtol=1e-10)
        for k, (a, b) in enumerate(zip(_parts(last), _parts(last_f))):
            assert_close(f"{name}.{form}: final state part {k}", a, b, rtol=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_float32_stays_float32(name):
    cell = MODELS[name]
    params, x, opts = _example(name, dtype=np.float32)
    y, last = cell.forward(params, x, **opts)
    assert y.dtype == np.float32, f"{name}: float32 input gave {y.dtype} output"
    for part in _parts(last):
        assert part.dtype in (np.float32, np.complex64), f"{name}: state became {part.dtype}"
    y_t, _ = cell.step(params, x[:, 0], None, **opts)
    assert y_t.dtype == np.float32


@pytest.mark.parametrize("name", NAMES)
def test_torch_tensors_stay_torch_tensors(name):
    torch = pytest.importorskip("torch")
    cell = MODELS[name]
    params, x, opts = _example(name)
    y_ref, _ = cell.forward(params, x, **opts)
    tparams, tx = backend.to_backend(params, "torch"), backend.to_backend(x, "torch")
    y, last = cell.forward(tparams, tx, **opts)
    assert isinstance(y, torch.Tensor) and all(isinstance(p, torch.Tensor) for p in _parts(last))
    assert_close(f"{name}: torch vs NumPy", y_ref, y, rtol=1e-12)
    y_t, state = cell.step(tparams, tx[:, 0], None, **opts)
    assert isinstance(y_t, torch.Tensor) and all(isinstance(p, torch.Tensor) for p in _parts(state))


@pytest.mark.gpu
@pytest.mark.parametrize("name", NAMES)
def test_cupy_arrays_stay_on_the_gpu(name):
    if not backend.gpu_available():
        pytest.skip("no CUDA device usable through CuPy")
    import cupy

    cell = MODELS[name]
    params, x, opts = _example(name)
    y_ref, _ = cell.forward(params, x, **opts)
    y, last = cell.forward(backend.to_backend(params, "cupy"), cupy.asarray(x), **opts)
    assert isinstance(y, cupy.ndarray) and all(isinstance(p, cupy.ndarray) for p in _parts(last))
    assert_close(f"{name}: CuPy vs NumPy", y_ref, y, rtol=1e-10)


HAND_BACKWARD = [n for n in NAMES if callable(getattr(MODELS[n], "backward", None))]


@pytest.mark.parametrize("name", HAND_BACKWARD)
def test_backward_equals_torch_autograd(name):
    torch = pytest.importorskip("torch")
    cell = MODELS[name]
    params, x, opts = _example(name)
    rng = np.random.default_rng(1)
    y, last, cache = cell.forward(params, x, return_cache=True, **opts)
    dy = rng.standard_normal(y.shape)
    real_state = all(not np.iscomplexobj(p) for p in _parts(last))
    dlast = [rng.standard_normal(p.shape) for p in _parts(last)] if real_state else None
    dstate = None if dlast is None else (dlast[0] if len(dlast) == 1 else tuple(dlast))
    grads, dx, dstate0 = cell.backward(params, dy, cache, dstate,
                                       **_accepts(cell.backward, opts))

    tparams = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    tx = torch.tensor(x, requires_grad=True)
    zero = [torch.tensor(backend.to_numpy(p), requires_grad=True)
            for p in _parts(cell.zero_state(params, x))]
    tstate = zero[0] if len(zero) == 1 else tuple(zero)
    ty, tlast = cell.forward(tparams, tx, tstate, **opts)
    loss = (ty * torch.tensor(dy)).sum()
    if dlast is not None:
        loss = loss + sum((p * torch.tensor(d)).sum() for p, d in zip(_parts(tlast), dlast))
    loss.backward()
    for k in params:
        assert_close(f"{name}: d{k} vs autograd", tparams[k].grad, grads[k], rtol=1e-9)
    assert_close(f"{name}: dx vs autograd", tx.grad, dx, rtol=1e-9)
    if real_state:
        for k, (z, d) in enumerate(zip(zero, _parts(dstate0))):
            assert_close(f"{name}: dstate0 part {k} vs autograd", z.grad, d, rtol=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_empty_sequence_is_refused_clearly(name):
    cell = MODELS[name]
    params, x, opts = _example(name)
    with pytest.raises(ValueError, match=r"L >= 1"):
        cell.forward(params, x[:, :0], **opts)


@pytest.mark.parametrize("name", NAMES)
def test_integer_input_is_refused_clearly(name):
    cell = MODELS[name]
    params, x, opts = _example(name)
    with pytest.raises(ValueError, match="floating"):
        cell.forward(params, np.ones(x.shape, dtype=np.int64), **opts)


@pytest.mark.parametrize("name", NAMES)
def test_params_hold_arrays_only(name):
    """Options are never stored in params, so every backend conversion works (PROTOCOL.md)."""
    params, _, _ = _example(name)
    bad = {k: type(v).__name__ for k, v in params.items() if not hasattr(v, "shape")}
    assert not bad, f"{name}: params entries that are not arrays: {bad}"
    backend.to_backend(params, "torch")
