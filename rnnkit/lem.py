"""Long expressive memory (LEM): a multiscale ODE system discretised with an IMEX scheme.

The continuous-time model (chapter 6; row vectors, y and z are (B, H), the input x is (B, D)):

    (6.9)   dz/dt = tau(y, x)     * ( tanh(y W_z + x V_z + b_z) - z )
    (6.10)  dy/dt = tau_bar(y, x) * ( tanh(z W_y + x V_y + b_y) - y )
            tau = sigmoid(y W_1 + x V_1 + b_1),  tau_bar = sigmoid(y W_2 + x V_2 + b_2)  in (0, 1)

Each unit relaxes towards its target at its own, input-dependent rate: the learned time scales.
One step of size dt in an implicit-explicit (IMEX) order: the z-update (6.12) is explicit (its
right-hand side uses only step n-1 values, y_{n-1} and z_{n-1}); the y-update (6.13) is implicit in z
(it uses the z_n just computed; its own decay term stays explicit, y_{n-1}). The official LEMCell
orders the two updates the same way:

    (6.11)  dt_n     = dt * sigmoid(y_{n-1} W_1 + x_n V_1 + b_1)          multiscale time step of z
            dtbar_n  = dt * sigmoid(y_{n-1} W_2 + x_n V_2 + b_2)          multiscale time step of y
    (6.12)  z_n = (1 - dt_n) * z_{n-1} + dt_n * tanh(y_{n-1} W_z + x_n V_z + b_z)
    (6.13)  y_n = (1 - dtbar_n) * y_{n-1} + dtbar_n * tanh(z_n W_y + x_n V_y + b_y)

With 0 < dt <= 1 both updates are convex combinations of the old state and a tanh in (-1, 1), so
    (6.14)  max(|y_n|, |z_n|) <= max(||y_0||_inf, ||z_0||_inf, 1)   for every n (bounded states).

Storage (fused like the LSTM's gates; blocks are columns k*H:(k+1)*H):
    V (D, 4H) = [V_1 | V_2 | V_z | V_y],  W (H, 3H) = [W_1 | W_2 | W_z],  W_y (H, H),
    b (4H,) = [b_1 | b_2 | b_z | b_y].
The input part x_n V + b is hoisted out of the time loop. The cell's output is y_n; its state is
the pair (y_n, z_n).

Letters: B batch, L length, D input size, H hidden size.

References:
    T. K. Rusch, S. Mishra, N. B. Erichson and M. W. Mahoney, "Long Expressive Memory for
    Sequence Modeling", ICLR 2022 (arXiv:2110.04744): the ODE system (2), the scheme (3), the
    bounds on states and gradients (section 4). Official code: github.com/tk-rusch/LEM
    (``LEMCell`` in psMNIST/network.py).
    Deliberate differences: the official code has three biases (input, hidden and z linear layers)
    where only their sums matter; we keep one b per block. Its ``inp2hid`` chunk order is
    [dt_bar | dt | z-target | y-target] in our names; ours follows the paper's (3).
"""
from __future__ import annotations

import numpy as np

from .core.backend import xp_of, zeros
from .core.checks import check_floating, check_params, check_positive_int, check_shape
from .lstm import sigmoid

__all__ = ["init", "step", "forward", "ode_rhs", "zero_state", "example", "STATE", "FORMS"]

FORMS = ()

STATE = ("y", "z")


def _check_dt(dt) -> float:
    if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not 0.0 < dt <= 1.0:
        raise ValueError(f"dt: expected a number in (0, 1], got {dt!r}")
    return float(dt)


def init(rng: np.random.Generator, D: int, H: int, dtype=np.float64) -> dict:
    """Random LEM parameters, uniform in [-1/sqrt(H), 1/sqrt(H)] as in the official code.

    Returns:
        dict with V (D, 4H), W (H, 3H), W_y (H, H), b (4H,), NumPy arrays of ``dtype``.
    """
    check_positive_int("D", D)
    check_positive_int("H", H)
    bound = 1.0 / np.sqrt(H)
    shapes = {"V": (D, 4 * H), "W": (H, 3 * H), "W_y": (H, H), "b": (4 * H,)}
    return {k: rng.uniform(-bound, bound, size=s).astype(dtype) for k, s in shapes.items()}


def _check_params(params: dict, dims: dict, src: dict) -> None:
    check_params(params, (("W_y", "H H"), ("W", "H G3"), ("V", "D G4"), ("b", "G4")), dims, src)
    if dims["G3"] != 3 * dims["H"] or dims["G4"] != 4 * dims["H"]:
        raise ValueError(f"params: expected W (H, 3H) and V (D, 4H), b (4H,) with H={dims['H']} "
                         f"from W_y, got W {tuple(params['W'].shape)}, V {tuple(params['V'].shape)}")


def _check_state(name: str, state, dims: dict, src: dict):
    if not isinstance(state, (tuple, list)) or len(state) != 2:
        raise ValueError(f"{name}: expected a pair (y, z) of (B, H) arrays, got {type(state).__name__}")
    check_shape(f"{name}[0]", state[0], "B H", dims, src)
    check_shape(f"{name}[1]", state[1], "B H", dims, src)
    return state[0], state[1]


def _cell(xp, params: dict, xv, y, z, dt: float):
    """Equations (6.11)-(6.13) from the input part xv = x_n V + b (B, 4H). Returns y_n, z_n."""
    H = y.shape[-1]
    yw = y @ params["W"]                                                   # (B, 3H)
    dt_n = dt * sigmoid(xp, xv[:, :H] + yw[:, :H])                         # (6.11)
    dtbar_n = dt * sigmoid(xp, xv[:, H:2 * H] + yw[:, H:2 * H])            # (6.11)
    z = (1.0 - dt_n) * z + dt_n * xp.tanh(xv[:, 2 * H:3 * H] + yw[:, 2 * H:])            # (6.12)
    y = (1.0 - dtbar_n) * y + dtbar_n * xp.tanh(xv[:, 3 * H:] + z @ params["W_y"])       # (6.13)
    return y, z


def step(params: dict, x_t, state=None, *, dt: float = 1.0):
    """One LEM step, equations (6.11)-(6.13).

    Args:
        params: as from ``init``.  x_t: (B, D).  state: (y_{n-1}, z_{n-1}), each (B, H); zeros
            if None.
        dt: the largest time step, in (0, 1].
    Returns:
        y_n (B, H), the new state (y_n, z_n).
    """
    dt = _check_dt(dt)
    dims, src = {}, {}
    _check_params(params, dims, src)
    check_shape("x_t", x_t, "B D", dims, src)
    check_floating("x_t", x_t)
    y, z = _check_state("state", zero_state(params, x_t) if state is None else state, dims, src)
    xp = xp_of(x_t, y, params["W"])
    y, z = _cell(xp, params, x_t @ params["V"] + params["b"], y, z, dt)
    return y, (y, z)


def forward(params: dict, x, state=None, *, dt: float = 1.0):
    """Run LEM over a sequence, the input part x_n V + b hoisted out of the loop.

    Args:
        params: as from ``init``.  x: (B, L, D).  state: (y0, z0), each (B, H); zeros if None.
        dt: the largest time step, in (0, 1].
    Returns:
        y_all (B, L, H), the final state (y_L, z_L).
    """
    dt = _check_dt(dt)
    dims, src = {}, {}
    _check_params(params, dims, src)
    check_shape("x", x, "B L D", dims, src)
    check_floating("x", x)
    xp = xp_of(x, params["W"])
    L = dims["L"]
    if state is None:
        y, z = zero_state(params, x)
    else:
        y, z = _check_state("state", state, dims, src)
    xv = x @ params["V"] + params["b"]               # (B, L, 4H)
    ys = []
    for t in range(L):
        y, z = _cell(xp, params, xv[:, t], y, z, dt)
        ys.append(y)
    return xp.stack(ys, axis=1), (y, z)


def ode_rhs(params: dict, x_t, y, z):
    """The right-hand side of the ODE system (6.9)-(6.10) at one instant.

    Args:
        params: as from ``init``.  x_t: (B, D) input (held constant over the instant).
        y, z: (B, H) states.
    Returns:
        (dy/dt, dz/dt), each (B, H). LEM's step (6.11)-(6.13) with rates tau = dt_n / dt is the
        IMEX Euler discretisation of this system.
    """
    dims, src = {}, {}
    _check_params(params, dims, src)
    check_shape("x_t", x_t, "B D", dims, src)
    check_shape("y", y, "B H", dims, src)
    check_shape("z", z, "B H", dims, src)
    xp = xp_of(x_t, y, params["W"])
    H = dims["H"]
    xv = x_t @ params["V"] + params["b"]             # (B, 4H)
    yw = y @ params["W"]                             # (B, 3H)
    tau = sigmoid(xp, xv[:, :H] + yw[:, :H])
    tau_bar = sigmoid(xp, xv[:, H:2 * H] + yw[:, H:2 * H])
    dz = tau * (xp.tanh(xv[:, 2 * H:3 * H] + yw[:, 2 * H:]) - z)                 # (6.9)
    dy = tau_bar * (xp.tanh(xv[:, 3 * H:] + z @ params["W_y"]) - y)              # (6.10)
    return dy, dz


def zero_state(params: dict, x):
    """(y_0, z_0) = (0, 0): a pair of (B, H) zeros with the batch size, dtype and device of ``x``."""
    xp, shape = xp_of(x), (x.shape[0], params["W"].shape[0])
    return zeros(xp, shape, like=x), zeros(xp, shape, like=x)


def example(rng: np.random.Generator, *, dtype=np.float64):
    """A small LEM for the contract tests (rnnkit/PROTOCOL.md): (params, x, options)."""
    return init(rng, 3, 4, dtype=dtype), rng.standard_normal((2, 5, 3)).astype(dtype), {"dt": 0.5}
