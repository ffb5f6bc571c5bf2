"""Tests for rnnkit.training.train: optimisers and clipping against torch, the fit loop, bad inputs."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rnnkit.core.testing import assert_close
from rnnkit.training.train import SGD, Adam, History, clip_grad_norm, fit, global_norm

# Optimiser parity: the same float64 arithmetic as torch, up to rounding order.
RTOL = 1e-12

SHAPES = {"cell": {"W_xh": (3, 4), "W_hh": (4, 4), "b_h": (4,)}, "readout": {"W_hy": (4, 2)}}


def _nested_params(rng):
    return {g: {k: rng.standard_normal(s) for k, s in d.items()} for g, d in SHAPES.items()}


def _flat(tree, prefix=()):
    for k, v in tree.items():
        if isinstance(v, dict):
            yield from _flat(v, prefix + (k,))
        else:
            yield prefix + (k,), v


def _grad_fn(p, noise):
    """A gradient that depends on the current parameters (so trajectories can diverge)."""
    return 0.5 * p + noise


def _run_both(make_ours, make_torch, n_steps=5, seed=0):
    rng = np.random.default_rng(seed)
    params = _nested_params(rng)
    paths = [path for path, _ in _flat(params)]
    tparams = [torch.tensor(v.copy(), requires_grad=True) for _, v in _flat(params)]
    topt = make_torch(tparams)
    opt = make_ours()
    for _ in range(n_steps):
        noise = {path: rng.standard_normal(v.shape) for path, v in _flat(params)}
        grads = {g: {k: _grad_fn(params[g][k], noise[(g, k)]) for k in d} for g, d in params.items()}
        grads_before = {path: v.copy() for path, v in _flat(grads)}
        opt.step(params, grads)
        for path, v in _flat(grads):   # the optimiser must not change the caller's gradients
            np.testing.assert_array_equal(v, grads_before[path])
        for path, tp in zip(paths, tparams):
            tp.grad = _grad_fn(tp.detach(), torch.from_numpy(noise[path]))
        topt.step()
    for path, tp in zip(paths, tparams):
        assert_close(f"param {path}", tp.detach().numpy(), params[path[0]][path[1]], rtol=RTOL)


@pytest.mark.parametrize("momentum,nesterov,wd", [
    (0.0, False, 0.0), (0.9, False, 0.0), (0.9, True, 0.0), (0.5, True, 1e-2), (0.0, False, 0.1),
])
def test_sgd_matches_torch(momentum, nesterov, wd):
    _run_both(lambda: SGD(0.1, momentum=momentum, nesterov=nesterov, weight_decay=wd),
              lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=momentum, nesterov=nesterov,
                                         weight_decay=wd))


@pytest.mark.parametrize("lr,betas,eps,wd", [
    (1e-3, (0.9, 0.999), 1e-8, 0.0), (0.05, (0.8, 0.99), 1e-6, 0.0), (0.01, (0.9, 0.999), 1e-8, 0.1),
    (0.02, (0.0, 0.5), 1e-3, 0.0),
])
def test_adam_matches_torch(lr, betas, eps, wd):
    _run_both(lambda: Adam(lr, betas=betas, eps=eps, weight_decay=wd),
              lambda ps: torch.optim.Adam(ps, lr=lr, betas=betas, eps=eps, weight_decay=wd))


def test_optimizer_updates_in_place_and_keeps_state_per_path():
    p = {"a": {"w": np.ones(3)}, "b": {"w": np.ones(3)}}
    w_a = p["a"]["w"]
    opt = SGD(1.0, momentum=0.5)
    opt.step(p, {"a": {"w": np.ones(3)}, "b": {"w": np.zeros(3)}})
    opt.step(p, {"a": {"w": np.ones(3)}, "b": {"w": np.zeros(3)}})
    assert p["a"]["w"] is w_a                                    # same array object, new values
    assert_close("a.w", np.full(3, 1 - 1 - 1.5), w_a, rtol=0)    # b_1 = 1, b_2 = 1.5
    assert_close("b.w", np.ones(3), p["b"]["w"], rtol=0)         # its own (zero) buffer
    assert set(opt.state) == {("a", "w"), ("b", "w")}


def test_none_gradient_freezes_and_lists_work():
    layers = [{"W": np.ones(2)}, {"W": np.ones(2)}]
    Adam(0.1).step(layers, [None, {"W": np.ones(2)}])
    assert_close("frozen", np.ones(2), layers[0]["W"], rtol=0)
    assert np.all(layers[1]["W"] < 1)


def test_optimizer_on_torch_tensors():
    rng = np.random.default_rng(1)
    p_np, g_np = {"w": rng.standard_normal(5)}, {"w": rng.standard_normal(5)}
    p_t = {"w": torch.from_numpy(p_np["w"].copy())}
    Adam(0.1).step(p_np, g_np)
    Adam(0.1).step(p_t, {"w": torch.from_numpy(g_np["w"])})
    assert_close("torch backend", p_np["w"], p_t["w"], rtol=RTOL)


@given(sizes=st.lists(st.integers(1, 6), min_size=1, max_size=4),
       max_norm=st.floats(1e-3, 10.0), scale=st.floats(1e-3, 1e3), seed=st.integers(0, 2**16))
def test_clip_grad_norm_matches_torch(sizes, max_norm, scale, seed):
    rng = np.random.default_rng(seed)
    grads = {f"g{i}": scale * rng.standard_normal((n, 2)) for i, n in enumerate(sizes)}
    tgrads = [torch.tensor(g.copy()) for g in grads.values()]
    tparams = [torch.zeros_like(g, requires_grad=True) for g in tgrads]
    for tp, tg in zip(tparams, tgrads):
        tp.grad = tg
    t_total = torch.nn.utils.clip_grad_norm_(tparams, max_norm)
    total = clip_grad_norm(grads, max_norm)
    assert math.isclose(total, float(t_total), rel_tol=RTOL)
    for (k, g), tp in zip(grads.items(), tparams):
        assert_close(k, tp.grad.numpy(), g, rtol=RTOL)
    assert global_norm(grads) <= max_norm * (1 + 1e-9)


@pytest.mark.parametrize("ratio", [0.3, 0.9, 0.999, 1.0, 1.5, 10.0])
def test_clip_grad_norm_ratios_match_torch(ratio):
    """max_norm / norm around 1: a little, barely and not at all clipped, like torch."""
    g = np.random.default_rng(2).standard_normal((3, 4))
    max_norm = ratio * float(np.linalg.norm(g))
    grads = {"g": g.copy()}
    tp = torch.zeros(3, 4, dtype=torch.float64, requires_grad=True)
    tp.grad = torch.tensor(g)
    t_total = torch.nn.utils.clip_grad_norm_([tp], max_norm)
    assert math.isclose(clip_grad_norm(grads, max_norm), float(t_total), rel_tol=RTOL)
    assert_close("clipped", tp.grad.numpy(), grads["g"], rtol=RTOL)


def test_clip_grad_norm_nested_and_none():
    grads = {"cell": {"W": np.full((2, 2), 3.0), "b": None}, "out": [np.full(1, 4.0)]}
    total = clip_grad_norm(grads, 1.0)
    assert total == pytest.approx(math.sqrt(4 * 9 + 16), rel=1e-15)
    assert global_norm(grads) == pytest.approx(1.0, rel=1e-5)   # 1e-6 guard in the denominator


# ---------------------------------------------------------------------------------------------
# fit
# ---------------------------------------------------------------------------------------------

def _least_squares(seed=0, N=64, D=5):
    """mean((X w + b - y)^2) with its exact gradient."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, D))
    y = X @ rng.standard_normal(D) + 0.3

    def loss_and_grads(params, batch):
        Xb, yb = batch
        r = Xb @ params["w"] + params["b"][0] - yb      # (n,)
        return float(np.mean(r * r)), {"w": 2 * Xb.T @ r / len(r), "b": np.array([2 * r.mean()])}

    def batches(step):
        idx = np.random.default_rng(step).choice(N, 16, replace=False)
        return X[idx], y[idx]

    return loss_and_grads, batches, (X, y)


@pytest.mark.parametrize("make_opt,clip", [(lambda: Adam(0.05), None),
                                           (lambda: SGD(0.05, momentum=0.9), 10.0)])
def test_fit_reduces_loss(make_opt, clip, monkeypatch):
    monkeypatch.setenv("RNNKIT_PROGRESS", "off")
    loss_and_grads, batches, (X, y) = _least_squares()
    params = {"w": np.zeros(5), "b": np.zeros(1)}
    full = lambda p: {"mse": loss_and_grads(p, (X, y))[0]}   # noqa: E731
    initial = full(params)["mse"]
    hist = fit(loss_and_grads, params, make_opt(), batches, n_steps=200, clip=clip,
               eval_fn=full, eval_every=30)
    assert isinstance(hist, History)
    assert hist.steps == list(range(1, 201))
    assert len(hist.losses) == len(hist.grad_norms) == 200
    assert [s for s, _ in hist.evals] == [30, 60, 90, 120, 150, 180, 200]
    assert hist.evals[-1][1]["mse"] < 0.1 * initial
    assert hist.losses[-1] < 0.1 * hist.losses[0]
    assert hist.wall_time_s > 0
    steps, values = hist.eval_curve("mse")
    assert steps.tolist() == [30, 60, 90, 120, 150, 180, 200] and values[-1] < values[0]
    assert hist.smoothed(10).shape == (200,)


def test_fit_with_iterable_and_callable_steps(monkeypatch):
    monkeypatch.setenv("RNNKIT_PROGRESS", "off")
    seen = []

    def lg(params, batch):
        seen.append(batch)
        return 1.0, {"w": np.zeros(1)}

    fit(lg, {"w": np.zeros(1)}, SGD(0.1), lambda s: s, n_steps=3)
    fit(lg, {"w": np.zeros(1)}, SGD(0.1), iter(["a", "b", "c", "d"]), n_steps=2)
    assert seen == [1, 2, 3, "a", "b"]


def test_fit_eval_only_at_end_when_no_period(monkeypatch):
    monkeypatch.setenv("RNNKIT_PROGRESS", "off")
    hist = fit(lambda p, b: (1.0, {"w": np.zeros(1)}), {"w": np.zeros(1)}, SGD(0.1),
               lambda s: None, n_steps=4, eval_fn=lambda p: {"x": np.float64(2.0)})
    assert hist.evals == [(4, {"x": 2.0})] and isinstance(hist.evals[0][1]["x"], float)


def test_history_smoothed():
    h = History(steps=[1, 2, 3, 4], losses=[4.0, 2.0, 0.0, 2.0])
    assert_close("window 2", np.array([4.0, 3.0, 1.0, 1.0]), h.smoothed(2), rtol=1e-15)
    assert_close("window 1", np.array(h.losses), h.smoothed(1), rtol=0)
    with pytest.raises(ValueError, match="window"):
        h.smoothed(0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_fit_raises_on_non_finite_loss(bad, monkeypatch):
    monkeypatch.setenv("RNNKIT_PROGRESS", "off")
    params = {"w": np.ones(2)}

    def lg(p, step):
        return (bad if step == 3 else 1.0), {"w": np.ones(2)}

    with pytest.raises(FloatingPointError, match="step 3 of 10") as info:
        fit(lg, params, SGD(0.5), lambda s: s, n_steps=10)
    assert info.value.history.steps == [1, 2]
    assert_close("no update at the bad step", np.zeros(2), params["w"], rtol=0)


def test_fit_raises_on_non_finite_gradient(monkeypatch):
    monkeypatch.setenv("RNNKIT_PROGRESS", "off")
    lg = lambda p, s: (1.0, {"w": np.array([np.inf, 0.0])})   # noqa: E731
    with pytest.raises(FloatingPointError, match="gradient norm is inf at step 1"):
        fit(lg, {"w": np.ones(2)}, SGD(0.5), lambda s: s, n_steps=2, clip=1.0)


def _ok(p, b):
    return 1.0, {"w": np.zeros(2)}


@pytest.mark.parametrize("kwargs,match", [
    ({"n_steps": 0}, "n_steps"),
    ({"n_steps": 2.5}, "n_steps"),
    ({"n_steps": 3, "clip": -1.0}, "clip"),
    ({"n_steps": 3, "eval_every": 2}, "eval_every"),
    ({"n_steps": 3, "eval_fn": lambda p: {}, "eval_every": 0}, "eval_every"),
    ({"n_steps": 3, "eval_fn": lambda p: 1.0}, "eval_fn"),
    ({"n_steps": 3, "batches": [1, 2]}, "batches: ran out after 2"),
    ({"n_steps": 3, "batches": 5}, "batches"),
    ({"n_steps": 3, "optimizer": "adam"}, "optimizer"),
    ({"n_steps": 3, "params": np.zeros(2)}, "params"),
    ({"n_steps": 3, "loss_and_grads": lambda p, b: 1.0}, "loss_and_grads"),
    ({"n_steps": 3, "loss_and_grads": lambda p, b: (1.0, {"w": np.zeros(2), "bogus": 1})},
     r"grads: unknown key\(s\) \['bogus'\]"),
    ({"n_steps": 3, "loss_and_grads": lambda p, b: (1.0, {})}, r"grads: missing key 'w'"),
    ({"n_steps": 3, "loss_and_grads": lambda p, b: (1.0, {"w": np.zeros(3)})},
     r"grads\['w'\]: expected shape \(2,\)"),
    ({"n_steps": 3, "progress": "yes"}, "progress"),
])
def test_fit_bad_inputs(kwargs, match, monkeypatch):
    monkeypatch.setenv("RNNKIT_PROGRESS", "off")
    args = {"loss_and_grads": _ok, "params": {"w": np.zeros(2)}, "optimizer": SGD(0.1),
            "batches": lambda s: None}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        fit(args.pop("loss_and_grads"), args.pop("params"), args.pop("optimizer"),
            args.pop("batches"), **args)


@pytest.mark.parametrize("make,match", [
    (lambda: SGD(-0.1), "lr"),
    (lambda: SGD(0.1, momentum=1.5), "momentum"),
    (lambda: SGD(0.1, nesterov=True), "nesterov"),
    (lambda: SGD(0.1, weight_decay=float("nan")), "weight_decay"),
    (lambda: Adam(0.1, betas=(0.9, 1.0)), r"betas\[1\]"),
    (lambda: Adam(0.1, betas=0.9), "betas"),
    (lambda: Adam(0.1, eps=-1.0), "eps"),
    (lambda: Adam(True), "lr"),
])
def test_optimizer_bad_hyperparameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_step_bad_inputs():
    opt = SGD(0.1)
    with pytest.raises(ValueError, match=r"grads\['cell'\]: expected a dict"):
        opt.step({"cell": {"W": np.zeros(2)}}, {"cell": np.zeros(2)})
    with pytest.raises(ValueError, match=r"grads\['cell'\]\['W'\]: expected shape \(2,\)"):
        opt.step({"cell": {"W": np.zeros(2)}}, {"cell": {"W": np.zeros((2, 1))}})
    with pytest.raises(ValueError, match=r"params\['n'\]: expected a floating-point"):
        opt.step({"n": np.zeros(2, dtype=np.int64)}, {"n": np.zeros(2)})
    with pytest.raises(ValueError, match=r"params\['s'\]: expected an array, got the NumPy scalar"):
        opt.step({"s": np.float64(1.0)}, {"s": np.float64(1.0)})
    with pytest.raises(ValueError, match="grads: expected a list of length 2"):
        opt.step([{"W": np.zeros(1)}, {"W": np.zeros(1)}], [None])
    p = {"a": np.ones(1), "b": np.ones(1)}
    with pytest.raises(ValueError, match=r"grads\['b'\]"):   # checked before anything changes
        opt.step(p, {"a": np.ones(1), "b": np.ones(2)})
    assert p["a"][0] == 1.0
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm({"w": np.ones(1)}, 0.0)


# ---------------------------------------------------------------------------------------------
# Progress bar modes
# ---------------------------------------------------------------------------------------------

def _tiny_fit(**kw):
    return fit(lambda p, b: (0.5, {"w": np.zeros(1)}), {"w": np.zeros(1)}, SGD(0.1),
               lambda s: None, n_steps=3, desc="tiny", **kw)


def test_progress_off_prints_nothing(monkeypatch, capsys):
    monkeypatch.setenv("RNNKIT_PROGRESS", "off")
    _tiny_fit()
    out, err = capsys.readouterr()
    assert out == "" and err == ""


def test_progress_false_wins_over_env(monkeypatch, capsys):
    monkeypatch.setenv("RNNKIT_PROGRESS", "text")
    _tiny_fit(progress=False)
    assert capsys.readouterr() == ("", "")


def test_progress_text_goes_to_stdout_with_loss(monkeypatch, capsys):
    monkeypatch.setenv("RNNKIT_PROGRESS", "text")
    _tiny_fit()
    out, err = capsys.readouterr()
    assert "tiny" in out and "3/3" in out and "loss=0.5" in out and err == ""


def test_progress_auto_in_terminal_uses_stderr(monkeypatch, capsys):
    monkeypatch.delenv("RNNKIT_PROGRESS", raising=False)
    _tiny_fit()
    out, err = capsys.readouterr()
    assert out == "" and "tiny" in err and "loss=0.5" in err


def test_progress_env_bad_value(monkeypatch):
    monkeypatch.setenv("RNNKIT_PROGRESS", "fancy")
    with pytest.raises(ValueError, match="RNNKIT_PROGRESS"):
        _tiny_fit()
