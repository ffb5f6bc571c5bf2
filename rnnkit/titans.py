"""Titans' neural long-term memory: a memory trained at test time by gradient descent with momentum.

Layout as ``rnnkit.deltanet``: q, k (B, H, L, dk), v (B, H, L, dv), per-token scalars theta, eta,
alpha (B, H, L), one memory M (dk, dv) per head, row vectors, o_t = q_t M_t. Equations, numbered
as in chapter 18:

    (18.1)  l(M; k, v) = ||k M - v||^2,     grad l(M; k, v) = 2 k^T (k M - v)       (dk, dv)
    (18.2)  Sigma_t = eta_t Sigma_{t-1} - theta_t grad l(M_{t-1}; k_t, v_t)           surprise
    (18.3)  M_t = (1 - alpha_t) M_{t-1} + Sigma_t,      o_t = q_t M_t
    (18.4)  eta = alpha = 0:  M_t = M_{t-1} + 2 theta_t k_t^T (v_t - k_t M_{t-1}),
            the delta rule (17.1) with beta_t = 2 theta_t (deltanet's loss is (1/2)||k S - v||^2,
            Titans' has no 1/2, hence the factor 2)
    (18.5)  chunk of C tokens from (M_0, Sigma_0) (mini-batch gradient descent, Titans sec. 3.2):
            G_t = grad l(M_0; k_t, v_t) for every t in the chunk (all at the chunk's first memory),
            Sigma_t = eta_t Sigma_{t-1} - theta_t G_t,  M_t = (1 - alpha_t) M_{t-1} + Sigma_t,
            both linear recurrences (9.1), run as scans (rnnkit.scan.linear_scan) over the chunk.
            C = 1 is (18.2)-(18.3) exactly; C > 1 is a different (cheaper, parallel) model.
    (18.6)  deep memory: M(x) = act(x W_1) W_2 (a 2-layer MLP per head), the same (18.2)-(18.3)
            for each of W_1, W_2 with the gradient of ||M(k) - v||^2 (hand-derived, or autograd):
            h = k W_1, a = act(h), e = a W_2 - v,  dW_2 = 2 a^T e,  dW_1 = 2 k^T ((e W_2^T) act'(h))

``memory_core`` runs (18.2)-(18.3)/(18.5) for any per-token gradient; ``rnnkit.miras`` (other
attentional biases, the Omega rule) and ``rnnkit.ttt`` (eta = alpha = 0) reuse it. The layers at
the end (``init_layer``, ``memory_layer``, ``titans_layer``) are the architectures of Titans sec. 4:
memory as a layer (MAL), as a gate (MAG) and as context (MAC), with persistent memory tokens.

References:
    A. Behrouz, P. Zhong, V. Mirrokni, "Titans: Learning to Memorize at Test Time", arXiv:2501.00663,
    2024, sections 3.1 (surprise, momentum, forgetting; eqs. 9-14), 3.2 (parallel training by
    mini-batch gradient descent), 3.3 (persistent memory), 4 (MAC, MAG, MAL). Deliberate
    differences: one scalar theta, eta, alpha per token and head (the paper allows the same); the
    architectures are small CPU versions (no convolutions, one layer, plain softmax attention).
"""
from __future__ import annotations

import math
from typing import NamedTuple

from .core.backend import is_torch, xp_of
from .core.backend import zeros as _zeros
from .core.checks import check_floating, check_positive_int, check_shape
from .scan import linear_scan

__all__ = ["linear_memory", "mlp_memory", "memory_core", "l2_grad", "mlp_grads", "MemoryState",
           "FORMS", "ACTIVATIONS", "init_layer", "memory_layer", "titans_layer", "sliding_window_attention",
           "KINDS"]

FORMS = ("recurrent", "chunked")
KINDS = ("mal", "mag", "mac")


class MemoryState(NamedTuple):
    """The memory's parameters and their surprise (momentum), each a tuple of (B, H, ...) arrays."""

    M: tuple       # (M,) for the linear memory (B, H, dk, dv); (W_1, W_2) for the MLP memory
    S: tuple       # Sigma, the same shapes


# --------------------------------------------------------------------------- checks and pieces
def _check(q, k, v, scalars, form, chunk_size):
    dims = {}
    check_shape("q", q, "B H L dk", dims)
    check_shape("k", k, "B H L dk", dims)
    check_shape("v", v, "B H L dv", dims)
    for name, a in scalars:
        check_shape(name, a, "B H L", dims)
    for name, a in (("q", q), ("k", k), ("v", v), *scalars):
        check_floating(name, a)
    if form not in FORMS:
        raise ValueError(f"form: expected one of {FORMS}, got {form!r}")
    check_positive_int("chunk_size", chunk_size)
    return dims


def l2_grad(M, k, v):
    """(18.1) per token: M (B, H, dk, dv), k (B, H, C, dk), v (B, H, C, dv) -> (B, H, C, dk, dv)."""
    xp = xp_of(M, k, v)
    e = xp.einsum("bhck,bhkv->bhcv", k, M) - v                       # k M - v   (B, H, C, dv)
    return 2 * k[..., :, None] * e[..., None, :]                     # 2 k^T e


def _silu(xp, x):
    return x / (1 + xp.exp(-x))


def _dsilu(xp, x):
    s = 1 / (1 + xp.exp(-x))
    return s * (1 + x * (1 - s))


_C = math.sqrt(2 / math.pi)


def _gelu(xp, x):      # tanh approximation (TTT's JAX code, jax.nn.gelu's default)
    return 0.5 * x * (1 + xp.tanh(_C * (x + 0.044715 * x ** 3)))


def _dgelu(xp, x):
    u = _C * (x + 0.044715 * x ** 3)
    t = xp.tanh(u)
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _C * (1 + 3 * 0.044715 * x * x)


ACTIVATIONS = {"silu": (_silu, _dsilu), "gelu": (_gelu, _dgelu)}


def mlp_grads(W1, W2, k, v, activation="silu"):
    """(18.6) per token: W1 (B, H, dk, dh), W2 (B, H, dh, dv), k (B, H, C, dk), v (B, H, C, dv) ->
    (dW1 (B, H, C, dk, dh), dW2 (B, H, C, dh, dv)), gradients of ||act(k W1) W2 - v||^2."""
    xp = xp_of(W1, W2, k, v)
    act, dact = ACTIVATIONS[activation]
    h = xp.einsum("bhck,bhkn->bhcn", k, W1)                          # (B, H, C, dh)
    a = act(xp, h)
    e = xp.einsum("bhcn,bhnv->bhcv", a, W2) - v                      # (B, H, C, dv)
    dh = 2 * xp.einsum("bhcv,bhnv->bhcn", e, W2) * dact(xp, h)       # (B, H, C, dh)
    return k[..., :, None] * dh[..., None, :], 2 * a[..., :, None] * e[..., None, :]


# --------------------------------------------------------------------------- (18.2)-(18.5)
def _scan_chunk(G, theta, eta, alpha, M0, S0, method):
    """(18.5) for one parameter: G (B, H, C, *p), scalars (B, H, C), M0, S0 (B, H, *p) ->
    M_t and Sigma_t for every t in the chunk, (B, H, C, *p) each."""
    xp = xp_of(G)
    B, H, C = G.shape[:3]
    p = tuple(G.shape[3:])
    one = (1,) * len(p)
    flat = lambda x: xp.reshape(x, (B * H, C) + tuple(x.shape[3:]))   # noqa: E731
    b = -flat(theta[(...,) + (None,) * len(p)] * G)                   # -theta_t G_t
    S = linear_scan(xp.reshape(eta, (B * H, C) + one), b, xp.reshape(S0, (B * H,) + p), method=method)
    M = linear_scan(xp.reshape(1 - alpha, (B * H, C) + one), S, xp.reshape(M0, (B * H,) + p),
                    method=method)
    return xp.reshape(M, (B, H, C) + p), xp.reshape(S, (B, H, C) + p)


def memory_core(grad_fn, read_fn, L, theta, eta, alpha, M0, S0, *, form="recurrent",
                chunk_size=16, scan_method="hillis_steele"):
    """(18.2)-(18.3) (form="recurrent") or (18.5) (form="chunked") for any memory.

    Args:
        grad_fn: (Ms, s, e) -> tuple of per-token gradients (B, H, e - s, *p) at the memory Ms
            (a tuple of (B, H, *p) arrays) for the tokens s .. e - 1.
        read_fn: (Ms_t, s, e) -> outputs (B, H, e - s, dv), Ms_t a tuple of (B, H, e - s, *p),
            the memory after each token.
        L: sequence length.  theta, eta, alpha: (B, H, L).  M0, S0: tuples of (B, H, *p).
        scan_method: the ``rnnkit.scan`` method for the chunk's two recurrences.
    Returns:
        o (B, H, L, dv), MemoryState after the last token.
    """
    xp = xp_of(theta)
    M, S, outs = tuple(M0), tuple(S0), []
    step = 1 if form == "recurrent" else chunk_size
    for s in range(0, L, step):
        e = min(s + step, L)
        grads = grad_fn(M, s, e)
        th, et, al = theta[:, :, s:e], eta[:, :, s:e], alpha[:, :, s:e]
        if e - s == 1:       # one token: (18.2)-(18.3) written out, no scan
            sh = lambda x, n: x[:, :, 0][(...,) + (None,) * n]      # noqa: E731
            S = tuple(sh(et, m.ndim - 2) * sg - sh(th, m.ndim - 2) * g[:, :, 0]
                      for m, sg, g in zip(M, S, grads))
            M = tuple((1 - sh(al, m.ndim - 2)) * m + sg for m, sg in zip(M, S))
            outs.append(read_fn(tuple(m[:, :, None] for m in M), s, e))
            continue
        pairs = [_scan_chunk(g, th, et, al, m, sg, scan_method) for g, m, sg in zip(grads, M, S)]
        outs.append(read_fn(tuple(m for m, _ in pairs), s, e))
        M = tuple(m[:, :, -1] for m, _ in pairs)
        S = tuple(sg[:, :, -1] for _, sg in pairs)
    return xp.concat(outs, axis=2), MemoryState(M, S)


def _state(name, state, shapes, like):
    xp = xp_of(like)
    if state is None:
        zs = tuple(_zeros(xp, s, like=like) for s in shapes)
        return zs, tuple(_zeros(xp, s, like=like) for s in shapes)
    if not isinstance(state, MemoryState):
        raise ValueError(f"{name}: expected a MemoryState(M, S), got {type(state).__name__}")
    for part, arrs in (("M", state.M), ("S", state.S)):
        if len(arrs) != len(shapes):
            raise ValueError(f"{name}.{part}: expected {len(shapes)} arrays, got {len(arrs)}")
        for i, (a, s) in enumerate(zip(arrs, shapes)):
            check_shape(f"{name}.{part}[{i}]", a, " ".join(map(str, s)))
    return tuple(state.M), tuple(state.S)


def linear_memory(q, k, v, theta, eta, alpha, *, form: str = "recurrent", chunk_size: int = 16,
                  state=None, scan_method: str = "hillis_steele"):
    """Titans' linear memory (18.1)-(18.3), recurrent or chunked (18.5).

    Args:
        q, k: (B, H, L, dk) (normalise k yourself, ``rnnkit.deltanet.l2_normalize``).
        v: (B, H, L, dv).  theta: (B, H, L) inner learning rates.  eta: (B, H, L) momentum
            (surprise decay).  alpha: (B, H, L) forgetting (weight decay) in [0, 1].
        form: "recurrent" or "chunked" (gradients of a chunk at its first memory; equal to
            "recurrent" for chunk_size = 1, a different model otherwise).
        state: MemoryState((M,), (Sigma,)), M and Sigma (B, H, dk, dv); zeros if None.
    Returns:
        o (B, H, L, dv), MemoryState after the last token.
    """
    dims = _check(q, k, v, (("theta", theta), ("eta", eta), ("alpha", alpha)), form, chunk_size)
    B, H, L, dk, dv = (dims[c] for c in ("B", "H", "L", "dk", "dv"))
    xp = xp_of(q, k, v)
    M0, S0 = _state("state", state, [(B, H, dk, dv)], q)
    grad_fn = lambda Ms, s, e: (l2_grad(Ms[0], k[:, :, s:e], v[:, :, s:e]),)        # noqa: E731
    read_fn = lambda Ms, s, e: xp.einsum("bhck,bhckv->bhcv", q[:, :, s:e], Ms[0])    # noqa: E731
    return memory_core(grad_fn, read_fn, L, theta, eta, alpha, M0, S0, form=form,
                       chunk_size=chunk_size, scan_method=scan_method)


def _autograd_mlp_grads(W1, W2, k, v, activation):
    """(18.6) for one token by torch autograd: W (B, H, ...), k (B, H, 1, dk) -> per-token grads."""
    import torch  # noqa: PLC0415

    act = ACTIVATIONS[activation][0]
    graph = torch.is_grad_enabled() and (W1.requires_grad or W2.requires_grad or k.requires_grad
                                         or v.requires_grad)
    w1 = W1 if W1.requires_grad else W1.detach().requires_grad_(True)
    w2 = W2 if W2.requires_grad else W2.detach().requires_grad_(True)
    with torch.enable_grad():
        y = act(torch, torch.einsum("bhck,bhkn->bhcn", k, w1)) @ w2          # (B, H, 1, dv)
        loss = ((y - v) ** 2).sum()      # a sum over (B, H): each memory gets its own gradient
        g1, g2 = torch.autograd.grad(loss, (w1, w2), create_graph=graph)
    return g1[:, :, None], g2[:, :, None]


def mlp_memory(q, k, v, theta, eta, alpha, params, *, activation: str = "silu",
               form: str = "recurrent", chunk_size: int = 16, grad: str = "hand", state=None,
               scan_method: str = "hillis_steele"):
    """Titans' deep memory (18.6): a 2-layer MLP per head trained by (18.2)-(18.3) / (18.5).

    Args:
        q, k, v, theta, eta, alpha, form, chunk_size: as ``linear_memory``.
        params: {"W1": (H, dk, dh), "W2": (H, dh, dv)} the initial memory (learned in the outer loop).
        activation: "silu" or "gelu" (tanh approximation).
        grad: "hand" (``mlp_grads``) or "autograd" (torch autograd, one token at a time: needs
            torch tensors and form="recurrent").
        state: MemoryState((W1, W2), (Sigma1, Sigma2)) with (B, H, ...) arrays; default: params
            broadcast over B and zero surprise.
    Returns:
        o (B, H, L, dv) with o_t = act(q_t W1_t) W2_t, MemoryState.
    """
    dims = _check(q, k, v, (("theta", theta), ("eta", eta), ("alpha", alpha)), form, chunk_size)
    if not isinstance(params, dict) or "W1" not in params or "W2" not in params:
        raise ValueError("params: expected a dict with keys W1 (H, dk, dh) and W2 (H, dh, dv), "
                         f"got {type(params).__name__}")
    check_shape("params['W1']", params["W1"], "H dk dh", dims)
    check_shape("params['W2']", params["W2"], "H dh dv", dims)
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {tuple(ACTIVATIONS)}, got {activation!r}")
    if grad not in ("hand", "autograd"):
        raise ValueError(f"grad: expected 'hand' or 'autograd', got {grad!r}")
    if grad == "autograd" and (form != "recurrent" or not is_torch(q)):
        raise ValueError(f"grad: 'autograd' needs torch tensors and form='recurrent', got "
                         f"{type(q).__name__} and form={form!r}")
    B, H, L, dk, dh, dv = (dims[c] for c in ("B", "H", "L", "dk", "dh", "dv"))
    xp = xp_of(q, k, v)
    shapes = [(B, H, dk, dh), (B, H, dh, dv)]
    if state is None:
        W1 = params["W1"][None] + _zeros(xp, shapes[0], like=q)
        W2 = params["W2"][None] + _zeros(xp, shapes[1], like=q)
        M0, S0 = (W1, W2), (_zeros(xp, shapes[0], like=q), _zeros(xp, shapes[1], like=q))
    else:
        M0, S0 = _state("state", state, shapes, q)
    act = ACTIVATIONS[activation][0]
    if grad == "hand":
        grad_fn = lambda Ms, s, e: mlp_grads(Ms[0], Ms[1], k[:, :, s:e], v[:, :, s:e], activation)  # noqa: E731
    else:
        grad_fn = lambda Ms, s, e: _autograd_mlp_grads(Ms[0], Ms[1], k[:, :, s:e], v[:, :, s:e],  # noqa: E731
                                                       activation)

    def read_fn(Ms, s, e):
        a = act(xp, xp.einsum("bhck,bhckn->bhcn", q[:, :, s:e], Ms[0]))
        return xp.einsum("bhcn,bhcnv->bhcv", a, Ms[1])

    return memory_core(grad_fn, read_fn, L, theta, eta, alpha, M0, S0, form=form,
                       chunk_size=chunk_size, scan_method=scan_method)


# --------------------------------------------------------------------------- architectures (sec. 4)
def sliding_window_attention(q, k, v, window: int, n_persist: int = 0):
    """Causal softmax attention where query t sees keys t - window + 1 .. t, plus the first
    n_persist keys always (persistent memory tokens placed at the front).

    q, k (B, H, L, d), v (B, H, L, dv) -> (B, H, L, dv)."""
    xp = xp_of(q, k, v)
    L = q.shape[2]
    idx = xp.arange(L, device=q.device if is_torch(q) else None)
    diff = idx[:, None] - idx[None, :]                                  # t - s
    keep = ((diff >= 0) & (diff < window)) | ((idx[None, :] < n_persist) & (diff >= 0))
    scores = (q @ xp.matrix_transpose(k)) / math.sqrt(q.shape[-1])      # (B, H, L, L)
    scores = xp.where(keep, scores, xp.full_like(scores, -1e30))
    scores = scores - xp.max(scores, axis=-1, keepdims=True)
    w = xp.exp(scores) * xp.astype(keep, scores.dtype)
    return (w / xp.sum(w, axis=-1, keepdims=True)) @ v


def _lin(rng, a, b):
    return rng.standard_normal((a, b)) / math.sqrt(a)


def init_layer(rng, D: int, *, n_heads: int = 2, kind: str = "mal", n_persist: int = 4):
    """NumPy parameters of a Titans layer of width D: memory projections (q, k, v, theta, eta,
    alpha, output), and for MAG/MAC/MAL an attention branch with n_persist persistent tokens."""
    if kind not in KINDS + ("memory",):
        raise ValueError(f"kind: expected one of {KINDS + ('memory',)}, got {kind!r}")
    p = {f"W_{n}": _lin(rng, D, D) for n in ("q", "k", "v", "o")}
    p["W_o"] = p["W_o"] * 0.5
    for n, b0 in (("theta", 0.0), ("eta", 0.0), ("alpha", -4.0)):
        p[f"w_{n}"] = _lin(rng, D, n_heads) * 0.1
        p[f"b_{n}"] = b0 + 0 * p[f"w_{n}"][0]
    if kind != "memory":
        p |= {f"A_{n}": _lin(rng, D, D) for n in ("q", "k", "v", "o")}
        p["A_o"] = p["A_o"] * 0.5
        p["persist"] = rng.standard_normal((n_persist, D)) * 0.1
    if kind == "mag":
        p["W_g"] = _lin(rng, D, D)
    return p


def _sigmoid(xp, x):
    return 1 / (1 + xp.exp(-x))


def _heads(xp, x, n):
    B, L, D = x.shape
    return xp.permute_dims(xp.reshape(x, (B, L, n, D // n)), (0, 2, 1, 3))   # (B, n, L, D/n)


def _merge(xp, x):
    B, n, L, d = x.shape
    return xp.reshape(xp.permute_dims(x, (0, 2, 1, 3)), (B, L, n * d))


def memory_layer(params, x, *, n_heads: int = 2, form: str = "chunked", chunk_size: int = 16,
                 state=None):
    """The neural memory as a sequence layer: x (B, L, D) -> (y (B, L, D), MemoryState).

    q, k = l2-normalised x W_q, x W_k (per head), v = x W_v, theta = sigmoid(.) / 2 (so beta = 2
    theta < 1 in (18.4)), eta = sigmoid(.), alpha = sigmoid(.) (bias -4: little forgetting)."""
    from .deltanet import l2_normalize  # noqa: PLC0415

    xp = xp_of(x)
    sc = lambda n: xp.permute_dims(x @ params[f"w_{n}"] + params[f"b_{n}"], (0, 2, 1))  # noqa: E731
    q = l2_normalize(_heads(xp, x @ params["W_q"], n_heads))
    k = l2_normalize(_heads(xp, x @ params["W_k"], n_heads))
    v = _heads(xp, x @ params["W_v"], n_heads)
    o, st = linear_memory(q, k, v, 0.5 * _sigmoid(xp, sc("theta")), _sigmoid(xp, sc("eta")),
                          _sigmoid(xp, sc("alpha")), form=form, chunk_size=chunk_size, state=state)
    return _merge(xp, o) @ params["W_o"], st


def _attention(params, x, n_heads, window, n_persist):
    xp = xp_of(x)
    q, k, v = (_heads(xp, x @ params[f"A_{n}"], n_heads) for n in ("q", "k", "v"))
    return _merge(xp, sliding_window_attention(q, k, v, window, n_persist)) @ params["A_o"]


def titans_layer(params, x, *, kind: str = "mal", n_heads: int = 2, window: int = 8,
                 segment: int = 8, form: str = "chunked", chunk_size: int = 8):
    """Titans' three architectures (sec. 4), one layer each, x (B, L, D) -> y (B, L, D).

    MAL  y = SWA([P; LM(x)]) : the memory as a layer below sliding-window attention (eq. 26-28)
    MAG  y = SWA([P; x]) * sigmoid(LM(x) W_g) : the memory gating the attention branch (eq. 24-25)
    MAC  the sequence cut into segments; for segment s, h = M_{s-1}(q) (read only), attention over
         [P; h; segment], the memory then trained on the attention output y, o = y * sigmoid(M_s(y))
         (eq. 21-23). P: the persistent tokens (n_persist of them, prepended, always attended).
    """
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    check_positive_int("window", window)
    check_positive_int("segment", segment)
    check_shape("x", x, "B L D")
    xp = xp_of(x)
    B, L, D = x.shape
    P = params["persist"]
    nP = P.shape[0]
    Pb = P[None] + _zeros(xp, (B, nP, D), like=x)                      # (B, nP, D)
    if kind == "mal":
        m, _ = memory_layer(params, xp.concat([Pb, x], axis=1), n_heads=n_heads, form=form,
                            chunk_size=chunk_size)
        return _attention(params, m, n_heads, window, nP)[:, nP:]
    if kind == "mag":
        att = _attention(params, xp.concat([Pb, x], axis=1), n_heads, window, nP)[:, nP:]
        m, _ = memory_layer(params, x, n_heads=n_heads, form=form, chunk_size=chunk_size)
        return att * _sigmoid(xp, m @ params["W_g"])
    state, outs = None, []
    for s in range(0, L, segment):
        seg = x[:, s:s + segment]
        n = seg.shape[1]
        if state is None:
            h = _zeros(xp, (B, n, D), like=x)
        else:   # read M_{s-1} with the segment's queries: a memory step with theta = 0 changes nothing
            h = _read_linear(params, seg, state, n_heads)
        ctx = xp.concat([Pb, h, seg], axis=1)                           # (B, nP + 2n, D)
        y = _attention(params, ctx, n_heads, nP + 2 * n, nP)[:, nP + n:]   # full attention in ctx
        m, state = memory_layer(params, y, n_heads=n_heads, form=form, chunk_size=chunk_size,
                                state=state)
        outs.append(y * _sigmoid(xp, m))
    return xp.concat(outs, axis=1)


def _read_linear(params, x, state, n_heads):
    """q_t M (the memory's read-out without an update) for x (B, n, D) -> (B, n, D)."""
    from .deltanet import l2_normalize  # noqa: PLC0415

    xp = xp_of(x)
    q = l2_normalize(_heads(xp, x @ params["W_q"], n_heads))
    return _merge(xp, xp.einsum("bhlk,bhkv->bhlv", q, state.M[0])) @ params["W_o"]
