"""Tests for rnnkit.training.layers (readout, softmax cross-entropy) and rnnkit.training.charlm (the char LM)."""
import numpy as np
import pytest
import torch

from rnnkit.training import charlm, layers
from rnnkit import elman
from rnnkit.core.testing import assert_close, numerical_gradient


def test_cross_entropy_matches_torch():
    rng = np.random.default_rng(0)
    z, y = rng.standard_normal((3, 4, 7)), rng.integers(0, 7, (3, 4))
    loss, dz = layers.softmax_cross_entropy(z, y)
    tz = torch.tensor(z, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(tz.reshape(-1, 7), torch.tensor(y).reshape(-1))
    ref.backward()
    assert abs(loss - ref.item()) < 1e-14
    assert_close("dz", tz.grad, dz, rtol=1e-13)


def test_cross_entropy_is_stable_for_huge_logits():
    z = np.array([[1e4, 0.0, -1e4]])
    loss, dz = layers.softmax_cross_entropy(z, np.array([1]))
    assert np.isfinite(loss) and abs(loss - 1e4) < 1e-9
    assert np.all(np.isfinite(dz))


def test_mask_scores_only_marked_positions():
    rng = np.random.default_rng(1)
    z, y = rng.standard_normal((2, 5, 3)), rng.integers(0, 3, (2, 5))
    mask = np.zeros((2, 5))
    mask[:, -2:] = 1
    loss, dz = layers.softmax_cross_entropy(z, y, mask)
    ref, _ = layers.softmax_cross_entropy(z[:, -2:], y[:, -2:])
    assert abs(loss - ref) < 1e-14
    assert np.all(dz[:, :-2] == 0)


def test_linear_backward_finite_differences():
    rng = np.random.default_rng(2)
    params = layers.linear_init(rng, 4, 3)
    h, g = rng.standard_normal((2, 5, 4)), rng.standard_normal((2, 5, 3))
    grads, dh = layers.linear_backward(params, g, h)
    for key in params:
        num = numerical_gradient(lambda v, key=key: float(np.sum(g * layers.linear({**params, key: v}, h))),
                                 params[key])
        assert_close(f"d{key}", num, grads[key], rtol=1e-8)
    assert_close("dh", numerical_gradient(lambda v: float(np.sum(g * layers.linear(params, v))), h), dh, rtol=1e-8)


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"y: expected shape \(2, 3\)"):
        layers.softmax_cross_entropy(np.zeros((2, 3, 4)), np.zeros((2, 4), dtype=int))
    with pytest.raises(ValueError, match=r"y: expected class ids in \[0, 4\), got values in \[9, 9\]"):
        layers.softmax_cross_entropy(np.zeros((1, 4)), np.array([9]))
    with pytest.raises(ValueError, match="h: expected last dimension H=4"):
        layers.linear(layers.linear_init(np.random.default_rng(0), 4, 3), np.zeros((2, 5)))
    with pytest.raises(ValueError, match="temperature: expected a positive number"):
        rng = np.random.default_rng(0)
        charlm.sample(elman, charlm.init(rng, elman, 5, 3), rng, [1], 3, temperature=0)


def test_char_lm_gradients_match_finite_differences():
    rng = np.random.default_rng(3)
    params = charlm.init(rng, elman, V=6, H=5)
    x_ids, y_ids = rng.integers(0, 6, (2, 7)), rng.integers(0, 6, (2, 7))
    _, grads, _ = charlm.loss_and_grads(elman, params, x_ids, y_ids)
    for part in params:
        for key, value in params[part].items():
            def f(v, part=part, key=key):
                trial = {**params, part: {**params[part], key: v}}
                return charlm.loss_and_grads(elman, trial, x_ids, y_ids)[0]
            assert_close(f"d{part}.{key}", numerical_gradient(f, value), grads[part][key], rtol=1e-7)


def test_untrained_loss_is_near_uniform_and_sampling_is_seeded():
    rng = np.random.default_rng(4)
    params = charlm.init(rng, elman, V=20, H=8)
    bits = charlm.evaluate(elman, params, rng.integers(0, 20, 300), L=64)
    assert abs(bits - np.log2(20)) < 0.5  # small random weights: close to the uniform 4.32 bits
    a = charlm.sample(elman, params, np.random.default_rng(5), [1, 2, 3], 30)
    b = charlm.sample(elman, params, np.random.default_rng(5), [1, 2, 3], 30)
    assert a.shape == (30,) and np.array_equal(a, b)
