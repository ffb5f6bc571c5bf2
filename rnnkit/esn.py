"""Echo state networks: a fixed random reservoir and a linear readout trained in closed form.

Equations, numbered as in chapter 7 (row-vector convention: u_t is (B, D), x_t is (B, N)):

    (7.1)  x_t = (1 - a) x_{t-1} + a f(u_t W_in + x_{t-1} W + b)        leaky-integrator reservoir
    (7.2)  z_t = [1 | u_t | x_t],   y_t = z_t W_out                        linear readout
    (7.3)  W_out = argmin ||Z W_out - Y||^2 + kappa ||W||^2,  W = W_out without its bias row   (kappa: ``ridge``)
           W = (Z_c^T Z_c + kappa I)^{-1} Z_c^T Y_c,  bias = mean(Y) - mean(Z) W   (Z without its 1)
    (7.8)  x_t^{(1)} reads u_t, x_t^{(l)} reads x_t^{(l-1)}; z_t = [1 | x_t^{(1)} | ... | x_t^{(n_layers)}]
    (7.9)  x_t = alpha x_{t-1} O + beta_r f(u_t W_in + x_{t-1} W + b)     residual reservoir

(7.1) is the case O = I, alpha = 1 - a, beta_r = a of (7.9), so one ``step`` serves both; the
parameter dict holds arrays only (rnnkit/PROTOCOL.md): W_in, W, b, the reservoir's fixed
coefficients ``alpha`` and ``beta`` as 0-d arrays and, for the residual reservoir, the orthogonal
matrix ``O``; the activation f ("tanh", or "identity" for a linear reservoir) is the keyword
option ``activation`` of ``step``, ``forward``, ``forward_deep``, ``generate`` and
``memory_capacity``. W is scaled to an exact spectral radius rho;
nothing but W_out is ever trained. Z_c, Y_c are Z, Y with their column means removed, so the bias
is not shrunk by the ridge penalty (what scikit-learn's Ridge does).

Shapes: B batch, L length, D input, N reservoir size, K outputs, F = 1 (+ D) + N features.

References:
    H. Jaeger, "The echo state approach to analysing and training recurrent neural networks",
    GMD Report 148, 2001 (echo state property, Sec. 2-3). H. Jaeger and H. Haas, "Harnessing
    nonlinearity", Science 304, 2004 (Mackey-Glass prediction). M. Lukosevicius, "A practical guide
    to applying echo state networks", Neural Networks: Tricks of the Trade, 2012 (leak rate, ridge
    readout, Sec. 3-4). H. Jaeger, "Short term memory in echo state networks", GMD Report 152, 2002
    (memory capacity). C. Gallicchio, A. Micheli and L. Pedrelli, "Deep reservoir computing: a
    critical experimental analysis", Neurocomputing 268, 2017. A. Ceni and C. Gallicchio,
    "Residual echo state networks", Neurocomputing 2024 (the alpha O x + beta f(...) update).
"""
from __future__ import annotations

import numpy as np

from .core.backend import eye, to_numpy, xp_of, zeros
from .core.checks import check_floating, check_params, check_positive_int, check_shape

__all__ = ["init", "init_residual", "init_deep", "scale_spectral_radius", "step", "forward",
           "forward_deep", "features", "fit_readout", "predict", "generate", "memory_capacity",
           "nrmse", "zero_state", "example", "FORMS"]

FORMS = ()

_ACTIVATIONS = ("tanh", "identity")


def _check_number(name, value, lo, hi, lo_open=False):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)
    if ok:
        ok = (value > lo if lo_open else value >= lo) and value <= hi
    if not ok:
        interval = f"{'(' if lo_open else '['}{lo}, {hi}]"
        raise ValueError(f"{name}: expected a number in {interval}, got {value!r}")


def scale_spectral_radius(W: np.ndarray, rho: float) -> np.ndarray:
    """Return W * rho / max|eig(W)|: the same matrix with spectral radius exactly ``rho``."""
    _check_number("spectral_radius", rho, 0.0, np.inf)
    radius = float(np.max(np.abs(np.linalg.eigvals(W))))
    if radius == 0.0:
        raise ValueError("W: spectral radius is 0 (nilpotent or empty matrix), cannot rescale; "
                         "raise the density")
    return W * (rho / radius)


def _random_orthogonal(rng, N):
    Q, R = np.linalg.qr(rng.standard_normal((N, N)))
    return Q * np.sign(np.diag(R))          # Haar-distributed (Mezzadri's sign fix)


def init(rng: np.random.Generator, D: int, N: int, *, spectral_radius: float = 0.9,
         leak_rate: float = 1.0, input_scaling: float = 1.0, bias_scaling: float = 0.0,
         density: float = 1.0, orthogonal: bool = False, dtype=np.float64) -> dict:
    """A random leaky-integrator reservoir (7.1).

    Args:
        rng: NumPy random generator. D: input size. N: reservoir size.
        spectral_radius: rho, max |eigenvalue| of W after scaling (exactly, up to round-off).
        leak_rate: a in (0, 1]; 1 is the plain (non-leaky) ESN.
        input_scaling: W_in entries uniform in [-input_scaling, input_scaling].
        bias_scaling: b entries uniform in [-bias_scaling, bias_scaling].
        density: fraction of nonzero entries of W (Gaussian), as Jaeger's sparse reservoirs.
        orthogonal: W a random orthogonal matrix times rho (then every |eigenvalue| is rho).
    Returns:
        dict: W_in (D, N), W (N, N), b (N,), alpha = 1 - a and beta = a (0-d), arrays of ``dtype``.
        The activation is chosen when the reservoir runs (``activation=`` of ``forward``).
    """
    check_positive_int("D", D)
    check_positive_int("N", N)
    _check_number("leak_rate", leak_rate, 0.0, 1.0, lo_open=True)
    _check_number("density", density, 0.0, 1.0, lo_open=True)
    _check_number("input_scaling", input_scaling, 0.0, np.inf)
    _check_number("bias_scaling", bias_scaling, 0.0, np.inf)
    if orthogonal:
        _check_number("spectral_radius", spectral_radius, 0.0, np.inf)
        W = _random_orthogonal(rng, N) * spectral_radius
    else:
        W = rng.standard_normal((N, N)) * (rng.random((N, N)) < density)
        W = scale_spectral_radius(W, spectral_radius)
    return {"W_in": rng.uniform(-input_scaling, input_scaling, (D, N)).astype(dtype),
            "W": W.astype(dtype),
            "b": rng.uniform(-bias_scaling, bias_scaling, N).astype(dtype),
            "alpha": np.asarray(1.0 - float(leak_rate), dtype=dtype),
            "beta": np.asarray(float(leak_rate), dtype=dtype)}


def init_residual(rng: np.random.Generator, D: int, N: int, *, alpha: float = 0.9,
                  beta: float = 0.1, O: str = "orthogonal", **kwargs) -> dict:
    """A residual reservoir (7.9): x_t = alpha x_{t-1} O + beta f(...), O orthogonal.

    Args:
        alpha, beta: the weights of the orthogonal skip path and of the nonlinear path.
        O: "orthogonal" (random, Haar) or "cycle" (the cyclic shift, a permutation matrix).
        kwargs: passed to ``init`` for W_in, W, b (spectral_radius, input_scaling, ...).
    Returns:
        the ``init`` dict with alpha, beta replaced and O (N, N) added.
    """
    _check_number("alpha", alpha, 0.0, 1.0)
    _check_number("beta", beta, 0.0, 1.0, lo_open=True)
    if O not in ("orthogonal", "cycle"):
        raise ValueError(f"O: expected 'orthogonal' or 'cycle', got {O!r}")
    params = init(rng, D, N, **kwargs)
    O_mat = _random_orthogonal(rng, N) if O == "orthogonal" else np.roll(np.eye(N), 1, axis=1)
    dtype = params["W"].dtype
    params.update(alpha=np.asarray(alpha, dtype=dtype), beta=np.asarray(beta, dtype=dtype),
                  O=O_mat.astype(dtype))
    return params


def init_deep(rng: np.random.Generator, D: int, N: int, n_layers: int, *,
              inter_scaling: float = 1.0, **kwargs) -> list:
    """A deep reservoir (7.8): ``n_layers`` reservoirs of size N; layer 1 reads u (D inputs),
    layer l > 1 reads layer l-1's states (N inputs, scaled by ``inter_scaling``)."""
    check_positive_int("n_layers", n_layers)
    first = dict(kwargs)
    rest = {**kwargs, "input_scaling": inter_scaling}
    return [init(rng, D, N, **first)] + [init(rng, N, N, **rest) for _ in range(n_layers - 1)]


def _check(params, dims, src, activation="tanh"):
    check_params(params, (("W_in", "D N"), ("W", "N N"), ("b", "N")), dims, src)
    for key in ("alpha", "beta"):
        if key not in params:
            raise ValueError(f"params: expected keys W_in, W, b, alpha, beta, missing {key!r}")
        check_shape(f"params['{key}']", params[key], "", dims, src)
    if "O" in params:
        check_shape("params['O']", params["O"], "N N", dims, src)
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation: expected one of {_ACTIVATIONS}, got {activation!r}")


def zero_state(params: dict, u):
    """x_0 = 0: (B, N) zeros with the batch size, dtype and device of ``u``."""
    return zeros(xp_of(u), (u.shape[0], params["W"].shape[0]), like=u)


def example(rng: np.random.Generator, *, dtype=np.float64):
    """A small leaky reservoir for the contract tests (rnnkit/PROTOCOL.md): (params, x, options)."""
    return (init(rng, 3, 4, leak_rate=0.5, bias_scaling=0.1, dtype=dtype),
            rng.standard_normal((2, 5, 3)).astype(dtype), {"activation": "tanh"})


def _update(params, xp, drive, x_prev, activation):
    """(7.9) given drive = u_t W_in + b (B, N) and x_{t-1} (B, N)."""
    pre = drive + x_prev @ params["W"]
    fx = xp.tanh(pre) if activation == "tanh" else pre
    skip = x_prev @ params["O"] if "O" in params else x_prev
    return params["alpha"] * skip + params["beta"] * fx


def step(params: dict, u_t, state=None, *, activation: str = "tanh"):
    """One reservoir step, (7.1) / (7.9). u_t (B, D), state (B, N) x_{t-1} (zeros if None).

    Returns (x_t, x_t): the reservoir's output is its state, (B, N).
    """
    dims, src = {}, {}
    _check(params, dims, src, activation)
    check_shape("u_t", u_t, "B D", dims, src)
    check_floating("u_t", u_t)
    x_prev = zero_state(params, u_t) if state is None else state
    check_shape("state", x_prev, "B N", dims, src)
    xp = xp_of(u_t, x_prev, params["W"])
    x = _update(params, xp, u_t @ params["W_in"] + params["b"], x_prev, activation)
    return x, x


def forward(params: dict, u, state=None, *, activation: str = "tanh"):
    """Drive the reservoir with a whole sequence (the input projection hoisted out of the loop).

    Args:
        u: (B, L, D) inputs. state: (B, N) initial state x_0, zeros if None.
        activation: "tanh", or "identity" for a linear reservoir.
    Returns:
        x_all (B, L, N) states x_1..x_L, x_last (B, N).
    """
    dims, src = {}, {}
    _check(params, dims, src, activation)
    check_shape("u", u, "B L D", dims, src)
    check_floating("u", u)
    xp = xp_of(u, params["W"])
    x0 = zero_state(params, u) if state is None else state
    check_shape("state", x0, "B N", dims, src)
    drive = u @ params["W_in"] + params["b"]                  # (B, L, N)
    x, xs = x0, []
    for t in range(dims["L"]):
        x = _update(params, xp, drive[:, t, :], x, activation)   # (B, N)
        xs.append(x)
    return xp.stack(xs, axis=1), x


def forward_deep(layers: list, u, x0s=None, *, activation: str = "tanh"):
    """(7.8): run the stack; returns states (B, L, n_layers*N) concatenated over layers, last states list."""
    if not layers:
        raise ValueError("layers: expected at least one reservoir, got an empty list")
    x0s = [None] * len(layers) if x0s is None else x0s
    if len(x0s) != len(layers):
        raise ValueError(f"x0s: expected {len(layers)} initial states, got {len(x0s)}")
    xp = xp_of(u)
    inp, all_states, lasts = u, [], []
    for params, x0 in zip(layers, x0s):
        inp, last = forward(params, inp, x0, activation=activation)   # (B, L, N)
        all_states.append(inp)
        lasts.append(last)
    return xp.concat(all_states, axis=-1), lasts


def features(states, inputs=None):
    """(7.2): z_t = [1 | u_t | x_t]. states (B, L, N), inputs (B, L, D) or None -> (B, L, F)."""
    dims = check_shape("states", states, "B L N")
    xp = xp_of(states)
    parts = [xp.ones((dims["B"], dims["L"], 1), dtype=states.dtype)]
    if inputs is not None:
        check_shape("inputs", inputs, "B L D", dims)
        parts.append(inputs)
    return xp.concat(parts + [states], axis=-1)


def fit_readout(states, targets, ridge: float = 1e-8, washout: int = 0, inputs=None):
    """Ridge regression readout in closed form, (7.3).

    Args:
        states: (B, L, N) reservoir states. targets: (B, L, K) wanted outputs y_t.
        ridge: the penalty kappa of (7.3), >= 0 (0: least squares by pseudo-inverse).
        washout: first steps of every sequence left out (the states still remember the arbitrary
            x_0 there).
        inputs: (B, L, D) to include u_t in the features, or None.
    Returns:
        W_out (F, K), bias in row 0, F = 1 (+ D) + N.
    """
    dims = check_shape("states", states, "B L N")
    check_shape("targets", targets, "B L K", dims)
    check_floating("states", states)
    check_floating("targets", targets)
    _check_number("ridge", ridge, 0.0, np.inf)
    if isinstance(washout, bool) or not isinstance(washout, int) or not 0 <= washout < dims["L"]:
        raise ValueError(f"washout: expected an integer in [0, L={dims['L']}), got {washout!r}")
    xp = xp_of(states, targets)
    Z = features(states, inputs)[:, washout:, 1:]             # (B, L', F-1), no bias column
    Z = xp.reshape(Z, (-1, Z.shape[-1]))                      # (T, F-1), T = B L'
    Y = xp.reshape(targets[:, washout:, :], (-1, dims["K"]))  # (T, K)
    z_mean, y_mean = xp.mean(Z, axis=0), xp.mean(Y, axis=0)
    Zc, Yc = Z - z_mean, Y - y_mean
    if ridge > 0:
        G = Zc.T @ Zc + ridge * eye(xp, Zc.shape[1], like=Zc)   # (F-1, F-1) SPD
        W = xp.linalg.solve(G, Zc.T @ Yc)                             # (F-1, K)
    else:
        W = xp.linalg.pinv(Zc) @ Yc
    bias = y_mean - z_mean @ W                                        # (K,)
    return xp.concat([bias[None, :], W], axis=0)


def predict(W_out, states, inputs=None):
    """(7.2): y_t = z_t W_out. states (B, L, N) -> (B, L, K)."""
    Z = features(states, inputs)
    check_shape("W_out", W_out, f"{Z.shape[-1]} K")
    return Z @ W_out


def generate(params: dict, W_out, x0, u0, n_steps: int, with_inputs: bool = False, *,
             activation: str = "tanh"):
    """Closed loop (generative mode): the prediction y_t becomes the next input u_{t+1} (K = D).

    Args:
        x0: (B, N) state reached by teacher forcing. u0: (B, D) first input (the last true value).
        n_steps: number of outputs. with_inputs: the readout was fit with the inputs in z_t.
    Returns:
        y: (B, n_steps, D) free-running outputs.
    """
    check_positive_int("n_steps", n_steps)
    dims, src = {}, {}
    _check(params, dims, src, activation)
    check_shape("x0", x0, "B N", dims, src)
    check_shape("u0", u0, "B D", dims, src)
    F = 1 + dims["N"] + (dims["D"] if with_inputs else 0)
    check_shape("W_out", W_out, f"{F} D", dims, src)
    xp = xp_of(x0, u0, W_out)
    x, u, ys = x0, u0, []
    for _ in range(n_steps):
        x = _update(params, xp, u @ params["W_in"] + params["b"], x, activation)   # (B, N)
        z = xp.concat([u, x], axis=-1) if with_inputs else x
        u = W_out[0] + z @ W_out[1:]                                    # (B, D): y_t, next input
        ys.append(u)
    return xp.stack(ys, axis=1)


def nrmse(y_true, y_pred, axis=None) -> float | np.ndarray:
    """Normalised root-mean-square error sqrt(mean((y - y_hat)^2) / var(y)) (NumPy)."""
    y_true, y_pred = np.asarray(to_numpy(y_true)), np.asarray(to_numpy(y_pred))
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_pred: expected shape {y_true.shape}, got {y_pred.shape}")
    return np.sqrt(np.mean((y_true - y_pred) ** 2, axis=axis) / np.var(y_true, axis=axis))


def memory_capacity(params: dict, rng: np.random.Generator, k_max: int, *, n_train: int = 2000,
                    n_test: int = 1000, washout: int = 200, ridge: float = 1e-10,
                    activation: str = "tanh") -> np.ndarray:
    """Short-term memory capacity (Jaeger 2002), (7.7): MC_k for delays k = 0..k_max.

    The reservoir (D = 1) is driven by i.i.d. u_t ~ U(-1, 1); one ridge readout per delay k is fit
    on the training steps to reconstruct u_{t-k} from z_t; MC_k is the squared correlation between
    u_{t-k} and that reconstruction on the held-out test steps. The sum is at most N.
    Returns:
        (k_max + 1,) NumPy array.
    """
    check_positive_int("k_max", k_max)
    check_positive_int("n_train", n_train)
    check_positive_int("n_test", n_test)
    if params["W_in"].shape[0] != 1:
        raise ValueError(f"params['W_in']: expected D=1 input, got shape {params['W_in'].shape}")
    L = washout + k_max + n_train + n_test
    u = rng.uniform(-1.0, 1.0, (1, L, 1)).astype(params["W"].dtype)
    x, _ = forward(params, u, activation=activation)
    start = washout + k_max                                      # every u_{t-k} exists
    lags = np.stack([u[0, start - k:L - k, 0] for k in range(k_max + 1)], axis=-1)  # (T, k_max+1)
    X = x[:, start:, :]
    W_out = fit_readout(X[:, :n_train], lags[None, :n_train], ridge=ridge)
    y = predict(W_out, X[:, n_train:])[0]                        # (n_test, k_max+1)
    target = lags[n_train:]
    yc, tc = y - y.mean(0), target - target.mean(0)
    return (yc * tc).sum(0) ** 2 / ((yc ** 2).sum(0) * (tc ** 2).sum(0))
