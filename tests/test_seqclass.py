"""Tests for rnnkit.training.seqclass: the training loop learns a separable toy, is deterministic, trains the
layer with its own learning rate, the LSTM baseline is torch.nn.LSTM, and bad input is refused."""
from functools import partial

import numpy as np
import pytest
import torch

from rnnkit import lru
from rnnkit.training import seqclass
from rnnkit.core.testing import assert_close


def toy(seed=0, n_train=200, n_test=100, L=6, D=2):
    """Two classes whose first input channel sits at -1 or +1 (plus noise of size 0.5) at every
    step: separable with a wide margin, so a working loop gets near-perfect accuracy in a few dozen
    steps (and a broken one, e.g. without gradients reaching the model, stays at chance 0.5)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n_train + n_test)
    x = 0.5 * rng.standard_normal((n_train + n_test, L, D))
    x[:, :, 0] += 2.0 * y[:, None] - 1.0
    return seqclass.Data(x[:n_train], y[:n_train], x[n_train:], y[n_train:])


LRU = (lru.forward_scan, partial(lru.init, N=8, r_min=0.5, r_max=0.9))
KW = dict(H=8, n_layers=1, steps=40, lr=1e-2, batch=32)


def test_learns_a_separable_toy_with_the_lru():
    res = seqclass.train_classifier(*LRU, toy(), **KW, seed=0)
    assert res.test_acc >= 0.95, res.test_acc                 # chance is 0.5
    assert np.mean(res.history["loss"][-10:]) < 0.5 * np.mean(res.history["loss"][:5])
    assert len(res.history["loss"]) == KW["steps"] and res.history["eval_step"][-1] == KW["steps"]
    assert res.history["test_acc"][-1] == res.test_acc


def test_learns_a_separable_toy_with_the_lstm_baseline():
    res = seqclass.train_classifier(seqclass.lstm_layer, seqclass.lstm_init, toy(), **KW, seed=0,
                                    pool="last")
    assert res.test_acc >= 0.95, res.test_acc


def test_deterministic_with_a_seed_and_different_across_seeds():
    a = seqclass.train_classifier(*LRU, toy(), **{**KW, "steps": 15}, seed=3)
    b = seqclass.train_classifier(*LRU, toy(), **{**KW, "steps": 15}, seed=3)
    c = seqclass.train_classifier(*LRU, toy(), **{**KW, "steps": 15}, seed=4)
    assert a.history["loss"] == b.history["loss"] and a.test_acc == b.test_acc
    for key in a.layer_params[0]:
        np.testing.assert_array_equal(a.layer_params[0][key], b.layer_params[0][key])
    assert a.history["loss"] != c.history["loss"]


def test_layer_is_trained_with_its_own_learning_rate():
    """The first block's layer starts at init_fn(default_rng(seed), H); it moves with the default
    learning rate and stays put (to float32 rounding) with layer_lr tiny."""
    start = LRU[1](np.random.default_rng(0), KW["H"])
    moved = seqclass.train_classifier(*LRU, toy(), **{**KW, "steps": 10}, seed=0)
    frozen = seqclass.train_classifier(*LRU, toy(), **{**KW, "steps": 10}, seed=0, layer_lr=1e-12)
    for key, value in start.items():
        assert np.max(np.abs(moved.layer_params[0][key] - value)) > 1e-3, key
        assert_close(key, value, frozen.layer_params[0][key], rtol=1e-6)  # float32 copy of value


def test_parameter_count_and_eval_history():
    res = seqclass.train_classifier(*LRU, toy(), **{**KW, "steps": 6}, seed=0, eval_every=2,
                                    dtype="float64")
    H, D, N, C = 8, 2, 8, 2
    lru_size = 3 * N + 4 * N * H + H
    block = lru_size + 2 * H + 2 * (H * H + H)                 # layer, LayerNorm, GLU
    assert res.n_params == (D * H + H) + block + (H * C + C)
    assert res.history["eval_step"] == [2, 4, 6]
    assert all(0.0 <= a <= 1.0 for a in res.history["test_acc"])


def test_lstm_layer_is_torch_lstm():
    rng = np.random.default_rng(1)
    params = seqclass.lstm_init(rng, 5)
    module = torch.nn.LSTM(5, 5, batch_first=True).double()
    with torch.no_grad():
        for name, value in params.items():
            getattr(module, name).copy_(torch.tensor(value))
    u = torch.tensor(rng.standard_normal((3, 7, 5)))
    got = seqclass.lstm_layer({k: torch.tensor(v) for k, v in params.items()}, u)
    assert_close("h_all", module(u)[0], got, rtol=1e-13)       # the same kernel, float64
    assert np.all(params["bias_ih_l0"][5:10] == 1.0)             # forget-gate bias at 1


def test_digits_data_shapes():
    data = seqclass.digits_data(side=8)
    assert data.x_train.shape == (1500, 64, 1) and data.x_test.shape == (297, 64, 1)
    assert data.y_train.shape == (1500,) and set(np.unique(data.y_test)) == set(range(10))


def test_bad_inputs_raise_clear_errors():
    data = toy()
    call = partial(seqclass.train_classifier, *LRU, **{**KW, "steps": 1})
    with pytest.raises(ValueError, match=r"data: expected \(x_train, y_train, x_test, y_test\)"):
        call(data[:3])
    with pytest.raises(ValueError, match=r"data.x_train: expected a float array of shape \(N, L, D\)"):
        call(data._replace(x_train=data.x_train[:, :, 0]))
    with pytest.raises(ValueError, match=r"data.y_test: expected integer labels of shape \(100,\)"):
        call(data._replace(y_test=data.y_test.astype(float)))
    with pytest.raises(ValueError, match=r"data.x_test: expected D=2 as in x_train"):
        call(data._replace(x_test=data.x_test[:, :, :1]))
    with pytest.raises(ValueError, match="H: expected a positive integer, got 0"):
        call(data, H=0)
    with pytest.raises(ValueError, match="pool: expected 'mean' or 'last', got 'max'"):
        call(data, pool="max")
    with pytest.raises(ValueError, match="lr: expected a positive number, got -1"):
        call(data, lr=-1)
    with pytest.raises(ValueError, match="layer_fn, init_fn: expected callables"):
        seqclass.train_classifier(None, LRU[1], data)
    with pytest.raises(ValueError, match=r"layer_fn: expected an output of shape \(B, L, H\)"):
        seqclass.train_classifier(lambda p, u: u[:, :, :3], LRU[1], data, **{**KW, "steps": 1})


def test_complex_parameters_are_rejected_not_silently_cast():
    """torch.tensor(complex, dtype=float32) would drop the imaginary part with only a warning."""
    data = toy()

    def complex_init(rng, H):
        return {"lam": np.exp(1j * rng.uniform(0, 1, H))}

    with pytest.raises(ValueError, match="init_fn: expected real parameters, got a complex array"):
        seqclass.train_classifier(lambda p, u: u, complex_init, data, **{**KW, "steps": 1})
