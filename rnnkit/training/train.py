"""Optimisers, gradient clipping and a small training loop, written from scratch.

Parameters are plain dicts of arrays (possibly nested, e.g. ``{"cell": {...}, "readout": {...}}``,
or lists of dicts as in ``elman.forward_layers``) and gradients are keyed like them. Everything
runs on whatever backend the arrays come from (``xp = xp_of(p)``): NumPy, CuPy or torch tensors
that do not require grad. Updates are in place, so a reference to ``params["W_hh"]`` held
elsewhere sees the new values.

Update equations as the book writes them, for a parameter theta with gradient g_t at step t
(t = 1, 2, ...), learning rate eta, weight decay lambda:

    (weight decay, L2 form)  g_t <- g_t + lambda * theta_{t-1}

    SGD with momentum mu (buffer b_0 absent, b_1 = g_1):
        b_t     = mu * b_{t-1} + g_t
        theta_t = theta_{t-1} - eta * b_t                    (heavy ball, Polyak 1964)
        theta_t = theta_{t-1} - eta * (g_t + mu * b_t)       (nesterov=True, Sutskever et al. 2013)

    Adam (Kingma and Ba 2015, Algorithm 1):
        m_t     = beta1 * m_{t-1} + (1 - beta1) * g_t
        v_t     = beta2 * v_{t-1} + (1 - beta2) * g_t^2
        mhat_t  = m_t / (1 - beta1^t),    vhat_t = v_t / (1 - beta2^t)
        theta_t = theta_{t-1} - eta * mhat_t / (sqrt(vhat_t) + eps)

    Global-norm clipping (Pascanu, Mikolov and Bengio 2013), over all gradients at once:
        n = sqrt(sum_i ||g_i||^2);   g_i <- g_i * min(1, c / (n + 1e-6))

References:
    B. T. Polyak, "Some methods of speeding up the convergence of iteration methods", 1964.
    I. Sutskever, J. Martens, G. Dahl, G. Hinton, "On the importance of initialization and
    momentum in deep learning", ICML 2013 (the Nesterov form above is PyTorch's).
    D. P. Kingma and J. Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
    R. Pascanu, T. Mikolov, Y. Bengio, "On the difficulty of training recurrent neural networks",
    ICML 2013.
    The updates follow ``torch.optim.SGD`` (dampening 0), ``torch.optim.Adam`` (L2 weight decay
    added to the gradient, not AdamW's decoupled decay; amsgrad off) and
    ``torch.nn.utils.clip_grad_norm_`` operation for operation; the tests compare them in float64.
"""
from __future__ import annotations

import abc
import math
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from ..core.backend import xp_of
from ..core.checks import check_floating, check_positive_int

__all__ = ["Optimizer", "SGD", "Adam", "global_norm", "clip_grad_norm", "History", "fit",
           "PROGRESS_ENV"]

#: Environment variable that chooses the progress bar: "auto" (tqdm.auto, a widget in notebooks),
#: "text" (plain text on stdout, for notebooks executed into a static book) or "off".
PROGRESS_ENV = "RNNKIT_PROGRESS"


# ---------------------------------------------------------------------------------------------
# Walking nested parameter trees
# ---------------------------------------------------------------------------------------------

def _fmt(path: tuple) -> str:
    """("cell", "W_hh") -> "['cell']['W_hh']": the path as the reader would index it."""
    return "".join(f"[{k!r}]" for k in path)


def _check_array(name: str, a) -> None:
    if not hasattr(a, "shape") or not hasattr(a, "dtype"):
        raise ValueError(f"{name}: expected an array, got {type(a).__name__}")


def _pairs(params, grads, path: tuple = ()):
    """Yield ``(path, param, grad)`` for every leaf of ``params``, checking ``grads`` against it.

    ``grads`` must have exactly the keys of ``params``; a ``None`` gradient (for a leaf or a whole
    sub-dict) means "leave these parameters unchanged", like a torch parameter whose ``.grad`` is
    None. Raises ValueError naming the offending path.
    """
    if grads is None:
        return
    where = _fmt(path)
    if isinstance(params, dict):
        if not isinstance(grads, dict):
            raise ValueError(f"grads{where}: expected a dict keyed like params{where}, "
                             f"got {type(grads).__name__}")
        unknown = [k for k in grads if k not in params]
        if unknown:
            raise ValueError(f"grads{where}: unknown key(s) {unknown}; params{where} has "
                             f"{list(params)}")
        for k, p in params.items():
            if k not in grads:
                raise ValueError(f"grads{where}: missing key {k!r} (give None to leave "
                                 f"params{_fmt(path + (k,))} unchanged)")
            yield from _pairs(p, grads[k], path + (k,))
    elif isinstance(params, (list, tuple)):
        if not isinstance(grads, (list, tuple)) or len(grads) != len(params):
            got = f"length {len(grads)}" if isinstance(grads, (list, tuple)) else type(grads).__name__
            raise ValueError(f"grads{where}: expected a list of length {len(params)} like "
                             f"params{where}, got {got}")
        for i, (p, g) in enumerate(zip(params, grads)):
            yield from _pairs(p, g, path + (i,))
    else:
        _check_array(f"params{where}", params)
        if isinstance(params, np.generic):  # np.float64(1.0) has a shape but cannot change in place
            raise ValueError(f"params{where}: expected an array, got the NumPy scalar "
                             f"{type(params).__name__} (wrap it with np.asarray)")
        check_floating(f"params{where}", params)
        _check_array(f"grads{where}", grads)
        p_shape, g_shape = tuple(params.shape), tuple(grads.shape)
        if p_shape != g_shape:
            raise ValueError(f"grads{where}: expected shape {p_shape} (that of params{where}), "
                             f"got {g_shape}")
        yield path, params, grads


def _leaves(tree, name: str, path: tuple = ()):
    """Yield ``(path, array)`` for every non-None leaf of a nested dict/list of arrays."""
    if tree is None:
        return
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _leaves(v, name, path + (k,))
    elif isinstance(tree, (list, tuple)):
        for i, v in enumerate(tree):
            yield from _leaves(v, name, path + (i,))
    else:
        _check_array(f"{name}{_fmt(path)}", tree)
        yield path, tree


def _check_number(name: str, value, *, low: float = 0.0, low_open: bool = False,
                  high: float | None = None, high_open: bool = True) -> float:
    """A finite real number in [low, high) (ends as requested); ValueError naming ``name``."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok:
        value = float(value)
        ok = math.isfinite(value) and (value > low if low_open else value >= low)
        if ok and high is not None:
            ok = value < high if high_open else value <= high
    if not ok:
        left = "(" if low_open else "["
        right = "inf)" if high is None else (f"{high:g})" if high_open else f"{high:g}]")
        raise ValueError(f"{name}: expected a number in {left}{low:g}, {right}, got {value!r}")
    return value


# ---------------------------------------------------------------------------------------------
# Optimisers
# ---------------------------------------------------------------------------------------------

class Optimizer(abc.ABC):
    """Base class: walks ``params``/``grads`` and calls ``_update`` once per parameter array.

    ``self.state`` maps each key path (a tuple such as ``("cell", "W_hh")``) to that parameter's
    state (momentum buffer, Adam moments, step count), so one optimiser serves a nested dict.
    """

    def __init__(self) -> None:
        self.state: dict[tuple, dict] = {}

    def step(self, params, grads) -> None:
        """Update ``params`` in place from ``grads`` (keyed like ``params``; None = frozen)."""
        if not isinstance(params, (dict, list, tuple)):
            raise ValueError(f"params: expected a dict (or list) of arrays, got {type(params).__name__}")
        for path, p, g in list(_pairs(params, grads)):  # check everything before changing anything
            st = self.state.setdefault(path, {})
            self._update(xp_of(p, g), p, g, st)

    @abc.abstractmethod
    def _update(self, xp, p, g, st: dict) -> None:
        """Update one parameter array ``p`` in place from its gradient ``g`` and state ``st``."""

    def reset(self) -> None:
        """Forget all state (momentum buffers, moments, step counts)."""
        self.state.clear()


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay.

    Equations in the module docstring; identical to ``torch.optim.SGD`` with ``dampening=0``.

    Args:
        lr: learning rate eta >= 0 (may be changed between steps: ``opt.lr = ...``).
        momentum: mu in [0, 1]; 0 means plain SGD and keeps no state.
        nesterov: use the Nesterov form (needs momentum > 0).
        weight_decay: lambda >= 0, added to the gradient as lambda * theta.
    """

    def __init__(self, lr: float, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0) -> None:
        super().__init__()
        self.lr = _check_number("lr", lr)
        self.momentum = _check_number("momentum", momentum, high=1.0, high_open=False)
        if not isinstance(nesterov, bool):
            raise ValueError(f"nesterov: expected True or False, got {nesterov!r}")
        if nesterov and self.momentum == 0:
            raise ValueError("nesterov: Nesterov momentum needs momentum > 0, got momentum=0")
        self.nesterov = nesterov
        self.weight_decay = _check_number("weight_decay", weight_decay)

    def _update(self, xp, p, g, st):
        if self.weight_decay != 0:
            g = g + self.weight_decay * p
        if self.momentum != 0:
            if "b" not in st:
                st["b"] = xp.asarray(g, copy=True)           # b_1 = g_1 (a copy: never alias grads)
            else:
                b = st["b"]
                b *= self.momentum
                b += g                                     # b_t = mu b_{t-1} + g_t
            g = g + self.momentum * st["b"] if self.nesterov else st["b"]
        p -= self.lr * g                                   # theta_t = theta_{t-1} - eta * (...)

    def __repr__(self) -> str:
        return (f"SGD(lr={self.lr:g}, momentum={self.momentum:g}, nesterov={self.nesterov}, "
                f"weight_decay={self.weight_decay:g})")


class Adam(Optimizer):
    """Adam (Kingma and Ba 2015) with bias correction; the same update as ``torch.optim.Adam``.

    Args:
        lr: learning rate eta >= 0.
        betas: (beta1, beta2), each in [0, 1): decay rates of the first and second moments.
        eps: eps >= 0 added to sqrt(vhat) in the denominator.
        weight_decay: lambda >= 0, L2 form (added to the gradient), as torch.optim.Adam does;
            this is not AdamW's decoupled decay.
    """

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__()
        self.lr = _check_number("lr", lr)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas: expected a pair (beta1, beta2), got {betas!r}")
        self.betas = (_check_number("betas[0]", betas[0], high=1.0),
                      _check_number("betas[1]", betas[1], high=1.0))
        self.eps = _check_number("eps", eps)
        self.weight_decay = _check_number("weight_decay", weight_decay)

    def _update(self, xp, p, g, st):
        beta1, beta2 = self.betas
        if self.weight_decay != 0:
            g = g + self.weight_decay * p
        if "t" not in st:
            st["t"], st["m"], st["v"] = 0, xp.zeros_like(p), xp.zeros_like(p)
        st["t"] += 1
        t, m, v = st["t"], st["m"], st["v"]
        m += (1 - beta1) * (g - m)           # m_t = beta1 m_{t-1} + (1 - beta1) g_t  (as a lerp)
        v *= beta2
        v += (1 - beta2) * (g * g)           # v_t = beta2 v_{t-1} + (1 - beta2) g_t^2
        # eta * mhat / (sqrt(vhat) + eps), arranged as torch does it to agree to the last bits:
        step_size = self.lr / (1 - beta1 ** t)
        denom = xp.sqrt(v) / math.sqrt(1 - beta2 ** t) + self.eps
        p -= step_size * (m / denom)

    def __repr__(self) -> str:
        return (f"Adam(lr={self.lr:g}, betas={self.betas}, eps={self.eps:g}, "
                f"weight_decay={self.weight_decay:g})")


# ---------------------------------------------------------------------------------------------
# Gradient clipping
# ---------------------------------------------------------------------------------------------

def global_norm(grads) -> float:
    """The L2 norm of all gradient arrays taken together, sqrt(sum_i ||g_i||^2), as a float.

    ``None`` leaves are skipped; an empty tree has norm 0.0.
    """
    norms = [float(xp_of(g).linalg.vector_norm(g)) for _, g in _leaves(grads, "grads")]
    return math.hypot(*norms) if norms else 0.0


def clip_grad_norm(grads, max_norm: float) -> float:
    """Rescale ``grads`` in place so that their global L2 norm is at most ``max_norm``.

    Same as ``torch.nn.utils.clip_grad_norm_``: every gradient is multiplied by
    min(1, max_norm / (total_norm + 1e-6)). When the norm is NaN or infinite the gradients are
    left unchanged (``fit`` raises FloatingPointError in that case).

    Args:
        grads: nested dict/list of gradient arrays (None leaves skipped).
        max_norm: c > 0.
    Returns:
        total_norm: the global norm before clipping, a float.
    """
    max_norm = _check_number("max_norm", max_norm, low_open=True)
    leaves = list(_leaves(grads, "grads"))
    for path, g in leaves:
        if isinstance(g, np.generic):
            raise ValueError(f"grads{_fmt(path)}: expected an array, got the NumPy scalar "
                             f"{type(g).__name__}, which cannot be rescaled in place")
    total = global_norm(grads)
    coef = max_norm / (total + 1e-6)
    if math.isfinite(total) and coef < 1.0:
        for _, g in leaves:
            g *= coef
    return total


# ---------------------------------------------------------------------------------------------
# Training loop
# ---------------------------------------------------------------------------------------------

@dataclass
class History:
    """What ``fit`` records. Step s is the s-th optimiser update, s = 1 ... n_steps.

    Attributes:
        steps: [1, 2, ..., n_steps] (shorter if training stopped early).
        losses: training loss at each step, on that step's batch, before its update.
        grad_norms: global gradient norm at each step, before clipping.
        evals: [(step, {name: value})], recorded after that step's update.
        wall_time_s: seconds spent in ``fit`` (including evaluations).
    """

    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    evals: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    wall_time_s: float = 0.0

    def smoothed(self, window: int = 50) -> np.ndarray:
        """Trailing moving average of ``losses`` over ``window`` steps, same length as ``losses``.

        The first window-1 entries average over the steps available so far, so the curve starts
        at the first loss instead of being shifted or padded.
        """
        check_positive_int("window", window)
        x = np.asarray(self.losses, dtype=np.float64)      # (S,)
        c = np.concatenate([[0.0], np.cumsum(x)])          # (S+1,) prefix sums
        idx = np.arange(1, x.size + 1)
        lo = np.maximum(idx - window, 0)
        return (c[idx] - c[lo]) / (idx - lo)

    def eval_curve(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of one evaluated quantity, for plotting next to ``losses``."""
        pts = [(s, d[name]) for s, d in self.evals if name in d]
        if self.evals and not pts:
            raise ValueError(f"name: {name!r} was never evaluated; have {sorted(self.evals[-1][1])}")
        return (np.array([s for s, _ in pts], dtype=np.int64),
                np.array([v for _, v in pts], dtype=np.float64))


def _progress_mode(progress: bool) -> str:
    """'off', 'text' or 'auto': ``progress=False`` always wins, else $RNNKIT_PROGRESS decides."""
    if not isinstance(progress, bool):
        raise ValueError(f"progress: expected True or False, got {progress!r}")
    mode = os.environ.get(PROGRESS_ENV, "auto").strip().lower() or "auto"
    if mode not in ("off", "text", "auto"):
        raise ValueError(f"{PROGRESS_ENV}: expected 'off', 'text' or 'auto', got {mode!r}")
    return mode if progress else "off"


def _make_bar(mode: str, n_steps: int, desc: str):
    if mode == "off":
        return None
    if mode == "text":
        # Plain text on stdout, ASCII, fixed width and few refreshes: what an executed notebook
        # stores reads cleanly in the static book (carriage returns are collapsed there).
        from tqdm.std import tqdm  # noqa: PLC0415
        return tqdm(total=n_steps, desc=desc, file=sys.stdout, ascii=True, ncols=80,
                    mininterval=1.0)
    from tqdm.auto import tqdm  # noqa: PLC0415  (a widget in Jupyter, text in a terminal)
    return tqdm(total=n_steps, desc=desc)


def _get_batches(batches):
    """A function step -> batch, from a callable or from an iterable of batches."""
    if callable(batches):
        return batches
    try:
        it = iter(batches)
    except TypeError:
        raise ValueError(f"batches: expected an iterable of batches or a callable step -> batch, "
                         f"got {type(batches).__name__}") from None

    def next_batch(step):
        try:
            return next(it)
        except StopIteration:
            raise ValueError(f"batches: ran out after {step - 1} batches, before step {step}; "
                             f"give at least n_steps batches or a callable") from None
    return next_batch


def fit(loss_and_grads: Callable, params, optimizer: Optimizer, batches: Iterable | Callable, *,
        n_steps: int, clip: float | None = None, eval_fn: Callable | None = None,
        eval_every: int | None = None, progress: bool = True, desc: str = "train") -> History:
    """Train ``params`` in place for ``n_steps`` optimiser steps and return the ``History``.

    Each step s = 1 ... n_steps: take a batch, ``loss, grads = loss_and_grads(params, batch)``,
    record the loss and the global gradient norm, clip to ``clip`` if given, then
    ``optimizer.step(params, grads)``.

    Args:
        loss_and_grads: ``(params, batch) -> (loss, grads)``; loss a scalar, grads keyed like
            params (None for a frozen entry).
        params: dict (possibly nested, or a list) of arrays, updated in place.
        optimizer: anything with ``.step(params, grads)``, e.g. ``SGD`` or ``Adam``.
        batches: an iterable yielding at least n_steps batches, or a callable ``step -> batch``
            (called with s = 1 ... n_steps, handy for seeding: ``lambda s: make(rng_for(s))``).
        n_steps: number of updates, >= 1.
        clip: max global gradient norm (``clip_grad_norm``), or None for no clipping.
        eval_fn: ``params -> {name: float}``, called after every ``eval_every`` steps and after
            the last step.
        eval_every: evaluation period in steps (needs eval_fn); None: only at the end.
        progress: show a tqdm bar with the running loss; the environment variable
            ``RNNKIT_PROGRESS`` = off | text | auto chooses its kind (auto: tqdm.auto, a widget in
            Jupyter; text: plain tqdm on stdout; off: none). ``progress=False`` always hides it.
        desc: label of the progress bar.
    Returns:
        History with steps, losses, grad_norms, evals, wall_time_s.
    Raises:
        ValueError: naming the argument, for bad inputs (including grads that do not match params).
        FloatingPointError: when the loss or the gradient norm is NaN or infinite; the message
            gives the step, and the exception's ``history`` attribute holds the steps before it.
    """
    if not callable(loss_and_grads):
        raise ValueError(f"loss_and_grads: expected a callable (params, batch) -> (loss, grads), "
                         f"got {type(loss_and_grads).__name__}")
    if not isinstance(params, (dict, list, tuple)):
        raise ValueError(f"params: expected a dict (or list) of arrays, got {type(params).__name__}")
    if not callable(getattr(optimizer, "step", None)):
        raise ValueError(f"optimizer: expected an object with .step(params, grads), "
                         f"got {type(optimizer).__name__}")
    check_positive_int("n_steps", n_steps)
    if clip is not None:
        clip = _check_number("clip", clip, low_open=True)
    if eval_fn is not None and not callable(eval_fn):
        raise ValueError(f"eval_fn: expected a callable params -> dict, got {type(eval_fn).__name__}")
    check_positive_int("eval_every", eval_every, allow_none=True)
    if eval_every is not None and eval_fn is None:
        raise ValueError("eval_every: given without eval_fn; pass eval_fn or drop eval_every")
    mode = _progress_mode(progress)
    get_batch = _get_batches(batches)

    hist = History()
    ema, beta = 0.0, 0.98     # running loss in the bar: bias-corrected exponential average
    bar = _make_bar(mode, n_steps, desc)
    start = time.perf_counter()

    def evaluate(step):
        out = eval_fn(params)
        if not isinstance(out, dict):
            raise ValueError(f"eval_fn: expected it to return a dict of floats, got {type(out).__name__}")
        out = {str(k): float(v) for k, v in out.items()}
        hist.evals.append((step, out))
        return out

    try:
        for step in range(1, n_steps + 1):
            batch = get_batch(step)
            result = loss_and_grads(params, batch)
            if not isinstance(result, tuple) or len(result) != 2:
                raise ValueError("loss_and_grads: expected it to return a pair (loss, grads), "
                                 f"got {type(result).__name__}")
            try:
                loss, grads = float(result[0]), result[1]
            except (TypeError, ValueError):
                raise ValueError("loss_and_grads: expected the loss to be a scalar, got "
                                 f"{type(result[0]).__name__}") from None
            if not math.isfinite(loss):
                raise FloatingPointError(f"loss is {loss} at step {step} of {n_steps}; "
                                         "lower the learning rate or clip the gradients")
            list(_pairs(params, grads))          # grads keyed and shaped like params, else ValueError
            gnorm = clip_grad_norm(grads, clip) if clip is not None else global_norm(grads)
            if not math.isfinite(gnorm):
                raise FloatingPointError(f"gradient norm is {gnorm} at step {step} of {n_steps} "
                                         f"(loss {loss:.4g})")
            optimizer.step(params, grads)
            hist.steps.append(step)
            hist.losses.append(loss)
            hist.grad_norms.append(gnorm)
            ema = beta * ema + (1 - beta) * loss
            postfix = {"loss": f"{ema / (1 - beta ** step):.4g}"}
            if eval_fn is not None and ((eval_every and step % eval_every == 0) or step == n_steps):
                postfix.update({k: f"{v:.4g}" for k, v in evaluate(step).items()})
            if bar is not None:
                bar.set_postfix(postfix, refresh=False)
                bar.update(1)
    except FloatingPointError as err:
        hist.wall_time_s = time.perf_counter() - start
        err.history = hist
        raise
    finally:
        if bar is not None:
            bar.close()
    hist.wall_time_s = time.perf_counter() - start
    return hist
