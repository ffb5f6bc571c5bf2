"""Test-time training (TTT): the hidden state is a model, trained by one gradient step per token.

Layout as ``rnnkit.deltanet`` and ``rnnkit.titans``: the views are already projected,
q = theta_Q x, k = theta_K x (B, H, L, dk), v = theta_V x (B, H, L, dv); lr (B, H, L) the inner
learning rate of each token. Equations, numbered as in chapter 18:

    (18.7)  l(W; x_t) = ||theta_K x_t W - theta_V x_t||^2 = ||k_t W - v_t||^2        self-supervised
    (18.8)  W_t = W_{t-1} - lr_t grad l(W_{t-1}; x_t),    z_t = theta_Q x_t W_t = q_t W_t
            = the delta rule (17.1) with beta_t = 2 lr_t (grad = 2 k^T (k W - v), no 1/2 in (18.7))
    (18.9)  mini-batch TTT, batch size b (Sun et al. sec. 2.7): for t in the batch that starts after
            t' (t' = t - mod(t, b)), W_t = W_{t'} - sum_{s=t'+1}^{t} lr_s grad l(W_{t'}; x_s);
            b = 1 is (18.8). It is Titans' chunked form (18.5) with eta = alpha = 0.
    (18.10) its dual form (sec. 2.7, "dual form"), per batch from W_0, with E = K W_0 - V:
            Z = Q W_0 - 2 tril(Q K^T diag(lr)) E,    W_b = W_0 - 2 K^T diag(lr) E
            (no per-token W_t is ever formed: matrix products only)
    (18.11) learned inner learning rate: lr_t = eta_base sigmoid(x_t w_lr + b_lr) / dk
    (18.12) TTT-MLP: W = (W_1, W_2), f(k) = gelu(k W_1) W_2, the same (18.8)/(18.9) through
            ``rnnkit.titans.mlp_memory`` (hand gradient (18.6), checked against torch autograd)

References:
    Y. Sun, X. Li, K. Dalal, J. Xu, A. Vikram, G. Zhang, Y. Dubois, X. Chen, X. Wang, S. Koyejo,
    T. Hashimoto, C. Guestrin, "Learning to (Learn at Test Time): RNNs with Expressive Hidden
    States", arXiv:2407.04620, 2024, sections 2.1-2.7. Official code: test-time-training/ttt-lm-jax.
    Deliberate differences: the inner model has no LayerNorm and residual (the paper uses
    f(x) = x + LN(f_res(x))), so that (18.8) is exactly a delta rule; one head in the layer is one
    inner model of width D / n_heads, as in the paper.
"""
from __future__ import annotations

from .core.backend import xp_of
from .core.backend import zeros as _zeros
from .core.checks import check_floating, check_positive_int, check_shape
from .titans import l2_grad, memory_core, mlp_memory

__all__ = ["ttt_linear", "ttt_mlp", "inner_lr", "init_layer", "ttt_layer", "FORMS"]

FORMS = ("recurrent", "minibatch", "dual")


def _check(q, k, v, lr, form, batch_size, state):
    dims = {}
    for name, a, spec in (("q", q, "B H L dk"), ("k", k, "B H L dk"), ("v", v, "B H L dv"),
                          ("lr", lr, "B H L")):
        check_shape(name, a, spec, dims)
        check_floating(name, a)
    if form not in FORMS:
        raise ValueError(f"form: expected one of {FORMS}, got {form!r}")
    check_positive_int("batch_size", batch_size)
    if state is not None:
        check_shape("state", state, "B H dk dv", dims)
    return dims


def ttt_linear(q, k, v, lr, *, form: str = "recurrent", batch_size: int = 16, state=None):
    """TTT-Linear's inner loop (18.7)-(18.10).

    Args:
        q, k: (B, H, L, dk) the views theta_Q x and theta_K x.  v: (B, H, L, dv) theta_V x.
        lr: (B, H, L) inner learning rates (``inner_lr``).
        form: "recurrent" (18.8), "minibatch" (18.9, per-token gradients summed) or "dual" (18.10);
            the last two are the same model, equal to "recurrent" at batch_size = 1.
        state: (B, H, dk, dv) the initial inner weights W_0 (zeros if None).
    Returns:
        z (B, H, L, dv), W (B, H, dk, dv) after the last token.
    """
    dims = _check(q, k, v, lr, form, batch_size, state)
    B, H, L, dk, dv = (dims[c] for c in ("B", "H", "L", "dk", "dv"))
    xp = xp_of(q, k, v)
    W = _zeros(xp, (B, H, dk, dv), like=q) if state is None else state
    if form in ("recurrent", "minibatch"):
        zero = xp.zeros_like(lr)
        o, st = memory_core(
            lambda Ms, s, e: (l2_grad(Ms[0], k[:, :, s:e], v[:, :, s:e]),),
            lambda Ms, s, e: xp.einsum("bhck,bhckv->bhcv", q[:, :, s:e], Ms[0]),
            L, lr, zero, zero, (W,), (xp.zeros_like(W),),
            form="recurrent" if form == "recurrent" else "chunked", chunk_size=batch_size)
        return o, st.M[0]
    outs = []
    for s in range(0, L, batch_size):
        e = min(s + batch_size, L)
        Q, K, V, n = q[:, :, s:e], k[:, :, s:e], v[:, :, s:e], lr[:, :, s:e]
        E = K @ W - V                                                    # (B, H, b, dv)
        QK = xp.tril(Q @ xp.matrix_transpose(K)) * n[:, :, None, :]      # tril(Q K^T diag(lr))
        outs.append(Q @ W - 2 * QK @ E)                                  # (18.10)
        W = W - 2 * xp.matrix_transpose(K * n[..., None]) @ E
    return xp.concat(outs, axis=2), W


def ttt_mlp(q, k, v, lr, params, *, form: str = "recurrent", batch_size: int = 16,
            grad: str = "hand", state=None):
    """TTT-MLP (18.12): inner model gelu(k W_1) W_2 trained by (18.8) or mini-batch (18.9).

    Args:
        q, k, v, lr: as ``ttt_linear``.  params: {"W1": (H, dk, dh), "W2": (H, dh, dv)} the
            initial inner weights.  form: "recurrent" or "minibatch".  grad: "hand" or
            "autograd" (torch tensors, form="recurrent").  state: MemoryState of ``titans``.
    Returns:
        z (B, H, L, dv), MemoryState((W1, W2), ...) after the last token.
    """
    if form not in ("recurrent", "minibatch"):
        raise ValueError(f"form: expected 'recurrent' or 'minibatch', got {form!r}")
    check_shape("lr", lr, "B H L", check_shape("q", q, "B H L dk"))
    zero = xp_of(lr).zeros_like(lr)
    return mlp_memory(q, k, v, lr, zero, zero, params, activation="gelu",
                      form="recurrent" if form == "recurrent" else "chunked",
                      chunk_size=batch_size, grad=grad, state=state)


def inner_lr(x, w_lr, b_lr, eta_base: float, dk: int):
    """(18.11): x (B, L, D), w_lr (D, H), b_lr (H,) -> lr (B, H, L)."""
    xp = xp_of(x)
    return eta_base / dk / (1 + xp.exp(-xp.permute_dims(x @ w_lr + b_lr, (0, 2, 1))))


def init_layer(rng, D: int, *, n_heads: int = 2, kind: str = "linear", hidden: int = 2):
    """NumPy parameters of a TTT layer: theta_Q, theta_K, theta_V (D, D), output (D, D), the
    learned lr (w_lr (D, H), b_lr (H,)), for TTT-MLP the initial inner MLP (hidden x head width)."""
    import numpy as np  # noqa: PLC0415

    d = D // n_heads
    p = {f"theta_{n}": rng.standard_normal((D, D)) / np.sqrt(D) for n in ("Q", "K", "V")}
    p |= {"W_o": rng.standard_normal((D, D)) / np.sqrt(D) * 0.5,
          "w_lr": rng.standard_normal((D, n_heads)) * 0.1 / np.sqrt(D), "b_lr": np.zeros(n_heads)}
    if kind == "mlp":
        p["W1"] = rng.standard_normal((n_heads, d, hidden * d)) / np.sqrt(d)
        p["W2"] = rng.standard_normal((n_heads, hidden * d, d)) / np.sqrt(hidden * d) * 0.1
    elif kind != "linear":
        raise ValueError(f"kind: expected 'linear' or 'mlp', got {kind!r}")
    return p


def ttt_layer(params, x, *, kind: str = "linear", n_heads: int = 2, eta_base: float = 1.0,
              form: str = "dual", batch_size: int = 16):
    """A TTT layer: x (B, L, D) -> (y (B, L, D), final inner state); q, k l2-normalised per head."""
    from .deltanet import l2_normalize  # noqa: PLC0415

    xp = xp_of(x)
    B, L, D = x.shape
    heads = lambda t: xp.permute_dims(xp.reshape(t, (B, L, n_heads, D // n_heads)), (0, 2, 1, 3))  # noqa: E731
    q = l2_normalize(heads(x @ params["theta_Q"]))
    k = l2_normalize(heads(x @ params["theta_K"]))
    v = heads(x @ params["theta_V"])
    lr = inner_lr(x, params["w_lr"], params["b_lr"], eta_base, 1)
    if kind == "linear":
        z, st = ttt_linear(q, k, v, 0.5 * lr, form=form, batch_size=batch_size)
    else:
        z, st = ttt_mlp(q, k, v, 0.5 * lr, {"W1": params["W1"], "W2": params["W2"]},
                        form="minibatch" if form != "recurrent" else "recurrent",
                        batch_size=batch_size)
    z = xp.reshape(xp.permute_dims(z, (0, 2, 1, 3)), (B, L, D))
    return z @ params["W_o"], st



