"""An orthogonal RNN: the recurrent matrix is the Cayley transform of a skew-symmetric matrix.

Equations, numbered as in chapter 6 (row vectors: x_t is (B, D), h_t is (B, H)):

    (6.5)  A = K - K^T                                      skew-symmetric, A^T = -A     (H, H)
    (6.6)  W_hh = (I + A)^{-1} (I - A)                      Cayley transform: W_hh^T W_hh = I
    (6.7)  a_t = x_t W_xh + h_{t-1} W_hh
    (6.8)  h_t = modrelu(a_t) = sign(a_t) * max(|a_t| + b, 0)      (or tanh(a_t + b), or a_t + b)

The parameters are K (any (H, H) matrix), W_xh and b. Whatever values an optimiser gives K, W_hh
is orthogonal up to the rounding of one linear solve, so gradient steps never leave the group of
orthogonal matrices. Why Cayley here: it is rational (one ``linalg.solve``, which the array API has,
so the same source runs on NumPy, CuPy and torch, and torch differentiates it), exactly orthogonal
in exact arithmetic, and I + A is always invertible because A's eigenvalues are imaginary
(||(I + A)^{-1}|| <= 1). Its limit: W_hh never has the eigenvalue -1 (Helfrich et al. add a fixed
diagonal of +-1 signs for that; the matrix exponential of Lezcano-Casado and Martinez-Rubio reaches
all of SO(H) but needs expm, which the array API lacks).

``init`` sets K so that W_hh is block-diagonal with 2 x 2 rotations by angles theta_k ~ U(0, pi/2)
(the Cayley image of [[0, a], [-a, 0]] is a rotation by 2 arctan(a), so a = tan(theta / 2)), as in
Helfrich et al.'s Cayley initialisation.

Letters: B batch, L length, D input size, H hidden size.

References:
    M. Arjovsky, A. Shah and Y. Bengio, "Unitary Evolution Recurrent Neural Networks", ICML 2016
    (the unitary RNN and modReLU, section 4 and equation 8).
    S. Wisdom, T. Powers, J. Hershey, J. Le Roux and L. Atlas, "Full-Capacity Unitary Recurrent
    Neural Networks", NeurIPS 2016 (Cayley-type updates that stay on the group).
    K. Helfrich, D. Willmott and Q. Ye, "Orthogonal Recurrent Neural Networks with Scaled Cayley
    Transform", ICML 2018 (scoRNN: W = (I + A)^{-1} (I - A) D; the Cayley initialisation).
    M. Lezcano-Casado and D. Martinez-Rubio, "Cheap Orthogonal Constraints in Neural Networks",
    ICML 2019 (expRNN: W = expm(A); modReLU on real states; github.com/Lezcano/expRNN).
    Deliberate differences: real orthogonal, not complex unitary, states; no scaling diagonal D,
    so W_hh has no eigenvalue -1; W_hh is recomputed from K in every forward call instead of being
    cached between optimiser steps.
"""
from __future__ import annotations

import numpy as np

from .core.backend import eye, xp_of, zeros
from .core.checks import check_floating, check_params, check_positive_int, check_shape

__all__ = ["init", "skew", "cayley", "recurrent_matrix", "modrelu", "step", "forward",
           "zero_state", "example", "NONLINEARITIES", "STATE", "FORMS"]

FORMS = ()

NONLINEARITIES = ("modrelu", "tanh", "linear")
STATE = ("h",)


def init(rng: np.random.Generator, D: int, H: int, *, max_angle: float = np.pi / 2,
         dtype=np.float64) -> dict:
    """Random parameters: W_hh a block-diagonal rotation (Cayley init), W_xh uniform +-1/sqrt(H).

    Args:
        rng: NumPy random generator.  D: input size.  H: hidden size.
        max_angle: rotation angles theta_k are drawn from U(0, max_angle), max_angle in (0, pi).
    Returns:
        dict with K (H, H) (strictly upper triangular at init), W_xh (D, H), b (H,) (modReLU bias,
        uniform in [-0.01, 0.01] as in expRNN), NumPy arrays of ``dtype``.
    """
    check_positive_int("D", D)
    check_positive_int("H", H)
    if not 0.0 < max_angle < np.pi:
        raise ValueError(f"max_angle: expected a number in (0, pi), got {max_angle!r}")
    K = np.zeros((H, H))
    theta = rng.uniform(0.0, max_angle, size=H // 2)
    K[2 * np.arange(H // 2), 2 * np.arange(H // 2) + 1] = np.tan(theta / 2)   # a = tan(theta / 2)
    bound = 1.0 / np.sqrt(H)
    params = {"K": K, "W_xh": rng.uniform(-bound, bound, (D, H)), "b": rng.uniform(-0.01, 0.01, (H,))}
    return {k: v.astype(dtype) for k, v in params.items()}


def skew(K):
    """A = K - K^T, equation (6.5): a skew-symmetric (H, H) matrix."""
    check_shape("K", K, "H H")
    return K - K.T


def cayley(A):
    """W = (I + A)^{-1} (I - A), equation (6.6): orthogonal when A is skew-symmetric.

    Args:
        A: (H, H) skew-symmetric matrix (not checked: any A with I + A invertible is accepted).
    Returns:
        W (H, H), computed with one linear solve (no explicit inverse).
    """
    check_shape("A", A, "H H")
    check_floating("A", A)
    xp = xp_of(A)
    eye_H = eye(xp, A.shape[0], like=A)
    return xp.linalg.solve(eye_H + A, eye_H - A)


def recurrent_matrix(params: dict):
    """W_hh from the parameters: the Cayley transform of K - K^T, equations (6.5)-(6.6). (H, H)"""
    check_params(params, (("K", "H H"),))
    return cayley(skew(params["K"]))


def modrelu(xp, a, b):
    """modReLU of Arjovsky et al. (2016) for real inputs: sign(a) * max(|a| + b, 0).

    It keeps the sign (the "phase") of each unit and shifts its magnitude by the bias b; with
    b < 0 small inputs are set to zero. Where |a| + b > 0 its derivative is 1, so it does not
    shrink a gradient the way tanh' <= 1 does.
    """
    r = xp.abs(a) + b
    return xp.sign(a) * xp.where(r > 0, r, xp.zeros_like(r))


def _activate(xp, a, b, nonlinearity: str):
    if nonlinearity == "modrelu":
        return modrelu(xp, a, b)                      # (6.8)
    if nonlinearity == "tanh":
        return xp.tanh(a + b)
    return a + b


def _check(params: dict, nonlinearity: str, dims: dict, src: dict) -> None:
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(f"nonlinearity: expected one of {', '.join(map(repr, NONLINEARITIES))}, "
                         f"got {nonlinearity!r}")
    check_params(params, (("K", "H H"), ("W_xh", "D H"), ("b", "H")), dims, src)


def step(params: dict, x_t, state=None, *, nonlinearity: str = "modrelu", W_hh=None):
    """One time step, equations (6.5)-(6.8).

    Args:
        params: K (H, H), W_xh (D, H), b (H,).  x_t: (B, D).  state: (B, H) h_{t-1}, zeros if None.
        nonlinearity: "modrelu" (default), "tanh" or "linear".
        W_hh: the (H, H) matrix from ``recurrent_matrix(params)``, to avoid one solve per step
            when stepping in a loop; computed from K if None.
    Returns:
        (h_t, h_t): the output and the new state, (B, H).
    """
    dims, src = {}, {}
    _check(params, nonlinearity, dims, src)
    check_shape("x_t", x_t, "B D", dims, src)
    check_floating("x_t", x_t)
    h_prev = zero_state(params, x_t) if state is None else state
    check_shape("state", h_prev, "B H", dims, src)
    xp = xp_of(x_t, h_prev, params["K"])
    if W_hh is None:
        W_hh = recurrent_matrix(params)
    check_shape("W_hh", W_hh, "H H", dims, src)
    h = _activate(xp, x_t @ params["W_xh"] + h_prev @ W_hh, params["b"], nonlinearity)  # (6.7)
    return h, h


def forward(params: dict, x, state=None, *, nonlinearity: str = "modrelu"):
    """Run the orthogonal RNN over a sequence: W_hh is formed once, the input part is hoisted.

    Args:
        params: K (H, H), W_xh (D, H), b (H,).  x: (B, L, D).  state: (B, H) h_0, zeros if None.
        nonlinearity: "modrelu" (default), "tanh" or "linear".
    Returns:
        h_all (B, L, H), h_last (B, H).
    """
    dims, src = {}, {}
    _check(params, nonlinearity, dims, src)
    check_shape("x", x, "B L D", dims, src)
    check_floating("x", x)
    xp = xp_of(x, params["K"])
    L = dims["L"]
    h0 = zero_state(params, x) if state is None else state
    check_shape("state", h0, "B H", dims, src)
    W_hh = recurrent_matrix(params)                  # (H, H)  (6.5)-(6.6), once per sequence
    xw = x @ params["W_xh"]                           # (B, L, H)  input part of (6.7)
    h, hs = h0, []
    for t in range(L):
        h = _activate(xp, xw[:, t] + h @ W_hh, params["b"], nonlinearity)   # (6.7)-(6.8)
        hs.append(h)
    return xp.stack(hs, axis=1), h


def zero_state(params: dict, x):
    """h_0 = 0: (B, H) zeros with the batch size, dtype and device of ``x``."""
    return zeros(xp_of(x), (x.shape[0], params["K"].shape[0]), like=x)


def example(rng: np.random.Generator, *, dtype=np.float64):
    """A small orthogonal RNN for the contract tests (rnnkit/PROTOCOL.md): (params, x, options)."""
    return init(rng, 3, 4, dtype=dtype), rng.standard_normal((2, 5, 3)).astype(dtype), {}
