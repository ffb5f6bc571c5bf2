"""Scans for the diagonal linear recurrence that every model of Part III runs.

Equations, numbered as in chapter 9 (all products elementwise; t = 1..L along axis 1):

    (9.1)  h_t = a_t * h_{t-1} + b_t                      the recurrence, h_0 given (zero by default)
    (9.2)  (a, b) . (a', b') = (a' a, a' b + b')           "apply (a, b), then (a', b')": associative,
                                                           so any bracketing gives the same h_t
    (9.3)  h_t = A_t h_0 + sum_{s<=t} (A_t / A_s) b_s,     A_t = a_1 a_2 ... a_t   (unrolled)
    (9.5)  log h_t = a*_t + logsumexp(log h_0, {log b_s - a*_s}_{s<=t}),   a*_t = sum_{s<=t} log a_s
                                                           (9.3) in log space, for a, b, h_0 > 0
    (9.4)  chunks c = 1..C of length T (reduce, carry, scan):
           (A_c, hloc_c) = (a_{cT-T+1} ... a_{cT},  h_{cT} run from a zero state)   one (9.2) per chunk
           H_c = A_c H_{c-1} + hloc_c,  H_0 = h_0       (9.1) over the chunks: state at each chunk end
           h inside chunk c = (9.1) started from H_{c-1}
    (9.6)  backward, for a real loss with g_t = dLoss/dh_t in total and dh_t = its direct part
           (chapter 9's letters; chapters 1 and 8 write g_t for the direct part, dh_t for the total):
           g_t = dh_t + conj(a_{t+1}) g_{t+1}   (g_L = dh_L: a reverse scan)
           db_t = g_t,   da_t = g_t conj(h_{t-1}),   dh_0 = conj(a_1) g_1

Methods of ``linear_scan`` (all give the same h to rounding error):

    "sequential"     the reference loop over t: L steps, each vectorised over B and the feature axes.
    "hillis_steele"  log2(L) rounds of (9.2) with offsets 1, 2, 4, ...: O(L log L) work, shallow depth.
    "blelloch"       work-efficient O(L): an up-sweep combines neighbours pairwise (length L, L/2,
                     L/4, ... 1), a down-sweep fills in the positions each level skipped. Any L.
                     This is the *inclusive* (Brent-Kung) arrangement of the tree sweep, returning
                     every prefix 1..t; Blelloch's own scan is exclusive (chapter 9 explains the difference).
    "chunked"        (9.4): loops over the T ~ sqrt(L) positions of all chunks at once and over the
                     C ~ sqrt(L) chunk ends: 2T + C ~ 3 sqrt(L) vectorised steps instead of L. This is
                     the "reduce-then-scan" shape of GPU scans (one thread block per chunk). The
                     inputs are copied once into a (T, B*C*features) layout so that every step
                     reads one contiguous row: the fastest NumPy method at moderate B*D (chapter 9).
    "log"            (9.5) with cumulative sums and a log-cumulative-sum-exp (Heinsen 2023); needs
                     a > 0, b > 0 (and h_0 > 0). ``log_space_scan`` takes logs directly.

Complex numbers: a real loss L(z) is differentiated with the convention of torch, dz = dL/d(Re z) +
i dL/d(Im z) (the conjugate Wirtinger derivative times two), so a gradient step is z - lr * dz and
the backward (9.6) carries conjugates. For real inputs the conjugates do nothing.

Letters: B batch, L length; the trailing "..." are feature axes (D, H or N in the models).

References:
    G. E. Blelloch, "Prefix sums and their applications", CMU-CS-90-190, 1990 (up-sweep/down-sweep).
    W. D. Hillis and G. L. Steele, "Data parallel algorithms", CACM 29(12), 1986.
    E. Martin and C. Cundy, "Parallelizing linear recurrent neural nets over sequence length",
    ICLR 2018 (the linear recurrence as a scan of (9.2)).
    F. A. Heinsen, "Efficient parallelization of a ubiquitous sequential computation",
    arXiv:2311.06281, 2023 (the log-space form (9.5)).
"""
from __future__ import annotations

import math

import array_api_compat

from .core.backend import is_torch, xp_of
from .core.checks import check_floating, check_positive_int

__all__ = ["METHODS", "linear_scan", "log_space_scan", "linear_scan_backward", "default_chunk_size",
           "softplus", "sigmoid", "log_sigmoid"]

METHODS = ("sequential", "hillis_steele", "blelloch", "chunked", "log")


# --------------------------------------------------------------------------- input checking
def _is_complex(xp, x) -> bool:
    return xp.isdtype(x.dtype, "complex floating")


def _check_inputs(a, b, h0, names=("a", "b", "h0")):
    """Check shapes, promote to one dtype and broadcast ``a`` to ``b``'s shape (B, L, ...)."""
    na, nb, nh = names
    for name, arr in ((na, a), (nb, b)):
        if not hasattr(arr, "shape"):
            raise ValueError(f"{name}: expected an array of shape (B, L, ...), "
                             f"got {type(arr).__name__}")
        check_floating(name, arr)
    if b.ndim < 2:
        raise ValueError(f"{nb}: expected at least 2 dimensions (B, L, ...), "
                         f"got shape {tuple(b.shape)}")
    if b.shape[1] < 1:
        raise ValueError(f"{nb}: expected at least one time step (L >= 1), got shape {tuple(b.shape)}")
    shape_b = tuple(int(s) for s in b.shape)
    shape_a = tuple(int(s) for s in a.shape)
    aligned = shape_b[len(shape_b) - len(shape_a):]
    if len(shape_a) > len(shape_b) or any(sa not in (1, sb) for sa, sb in zip(shape_a, aligned)):
        raise ValueError(f"{na}: expected a shape that broadcasts to {nb}'s {shape_b} "
                         f"(e.g. {shape_b} or {shape_b[2:]}), got {shape_a}")
    xp = xp_of(a, b, h0)
    arrays = [a, b] if h0 is None else [a, b, h0]
    if h0 is not None:
        check_floating(nh, h0)
        want = shape_b[:1] + shape_b[2:]
        if tuple(int(s) for s in h0.shape) != want:
            raise ValueError(f"{nh}: expected shape (B, ...) = {want}, got {tuple(h0.shape)}")
    dtype = xp.result_type(*arrays)
    a, b = xp.astype(a, dtype, copy=False), xp.astype(b, dtype, copy=False)
    if h0 is not None:
        h0 = xp.astype(h0, dtype, copy=False)
    if shape_a != shape_b:   # a read-only broadcast view only where one is needed
        a = xp.broadcast_to(a, shape_b)
    return xp, a, b, h0


def _fold_h0(xp, a, b, h0):
    """Absorb h_0 into the first input: b_1 <- a_1 h_0 + b_1, after which h_0 = 0 (9.1)."""
    if h0 is None:
        return b
    first = a[:, 0, ...] * h0 + b[:, 0, ...]                 # (B, ...)
    return xp.concat([xp.expand_dims(first, axis=1), b[:, 1:, ...]], axis=1)


# --------------------------------------------------------------------------- the five methods
def _scan_sequential(xp, a, b, h0):
    h, hs = h0, []
    for t in range(b.shape[1]):
        h = b[:, t, ...] if h is None else a[:, t, ...] * h + b[:, t, ...]   # (B, ...)  (9.1)
        hs.append(h)
    return xp.stack(hs, axis=1)                                             # (B, L, ...)


def _scan_hillis_steele(xp, a, b, h0):
    # After the round with offset d, (A_t, h_t) is the combination (9.2) of the last 2d elements
    # ending at t (or all of them when t < 2d), so after ceil(log2 L) rounds h_t is the prefix.
    A, h = a, _fold_h0(xp, a, b, h0)
    d, L = 1, b.shape[1]
    while d < L:
        h = xp.concat([h[:, :d, ...], A[:, d:, ...] * h[:, :-d, ...] + h[:, d:, ...]], axis=1)
        A = xp.concat([A[:, :d, ...], A[:, d:, ...] * A[:, :-d, ...]], axis=1)
        d *= 2
    return h


def _scan_blelloch(xp, a, b, h0):
    A, Bv = a, _fold_h0(xp, a, b, h0)
    # Up-sweep: combine neighbours (0,1), (2,3), ... with (9.2); an odd last element waits.
    # Element j of level k then spans the 2^k inputs ending at position 2^k (j+1) - 1.
    # (The root's product of all a's is never used, so it is not computed.)
    levels = []
    while Bv.shape[1] > 1:
        levels.append((A, Bv))
        n2 = 2 * (Bv.shape[1] // 2)
        A_l, A_r = A[:, 0:n2:2, ...], A[:, 1:n2:2, ...]
        B_l, B_r = Bv[:, 0:n2:2, ...], Bv[:, 1:n2:2, ...]
        Bv = A_r * B_l + B_r
        if Bv.shape[1] > 1:
            A = A_r * A_l
    # Down-sweep: the top level (one element, spanning from position 0) is its own prefix. Going
    # down, the odd positions of a level are the prefixes just computed one level up, and each
    # even position 2j > 0 takes one more step (9.1) from the odd position before it. Each level
    # is written into a fresh array by slices (no stacking and reshaping to interleave).
    h = Bv
    for A, Bv in reversed(levels):
        n_even = (Bv.shape[1] + 1) // 2
        out = xp.empty_like(Bv)                                             # (B, n, ...)
        out[:, 1::2, ...] = h
        out[:, :1, ...] = Bv[:, :1, ...]
        out[:, 2::2, ...] = A[:, 2::2, ...] * h[:, :n_even - 1, ...] + Bv[:, 2::2, ...]
        h = out
    return h


def _scan_chunked(xp, a, b, h0, T):
    Bsz, L, rest = b.shape[0], b.shape[1], tuple(b.shape[2:])
    C = -(-L // T)                                          # number of chunks
    pad = C * T - L
    if pad:   # pad with the identity element (a, b) = (1, 0) of (9.2)
        dev = array_api_compat.device(b)
        a = xp.concat([a, xp.ones((Bsz, pad) + rest, dtype=a.dtype, device=dev)], axis=1)
        b = xp.concat([b, xp.zeros((Bsz, pad) + rest, dtype=b.dtype, device=dev)], axis=1)
    # Time-in-chunk first, everything else flattened: step j of every chunk is then one contiguous
    # row, at[j] (M = B * C * features). The reshape of the moved axes makes that one copy.
    M = (Bsz, C) + rest
    at = xp.reshape(xp.moveaxis(xp.reshape(a, (Bsz, C, T) + rest), 2, 0), (T, -1))   # (T, M)
    bt = xp.reshape(xp.moveaxis(xp.reshape(b, (Bsz, C, T) + rest), 2, 0), (T, -1))   # (T, M)
    # 1) reduce: every chunk from a zero state, all chunks at once, keeping only where each ends,
    #    hloc_c, and the product of its a's, A_c (9.4): T - 1 steps on rows of M elements
    h_loc, A = bt[0], at[0]
    for j in range(1, T):
        h_loc = at[j] * h_loc + bt[j]                        # (M,)
        A = at[j] * A                                        # (M,)
    # 2) carry: (9.1) over the C chunk ends gives the state at the end of every chunk
    H_end = _scan_sequential(xp, xp.reshape(A, M), xp.reshape(h_loc, M), h0)   # (B, C, ...)
    first = h0 if h0 is not None else xp.zeros_like(H_end[:, 0, ...])
    H_in = xp.concat([xp.expand_dims(first, axis=1), H_end[:, :-1, ...]], axis=1)  # (B, C, ...)
    # 3) scan: every chunk again, now from the state it really starts from
    h, hs = xp.reshape(H_in, (-1,)), []
    for j in range(T):
        h = at[j] * h + bt[j]                                # (M,)
        hs.append(h)
    h = xp.moveaxis(xp.reshape(xp.stack(hs, axis=0), (T,) + M), 0, 2)   # (B, C, T, ...)
    return xp.reshape(h, (Bsz, C * T) + rest)[:, :L, ...]


# --------------------------------------------------------------------------- public functions
def default_chunk_size(L: int) -> int:
    """T ~ sqrt(L) for method="chunked": the divisor of L in [sqrt(L)/2, 2 sqrt(L)] with the fewest
    loop steps 2T + L/T (no padding copy needed), else ceil(sqrt(L)) with padding."""
    root = math.isqrt(L)
    divisors = [T for T in range(max(1, root // 2), 2 * root + 1) if L % T == 0]
    if divisors:
        return min(divisors, key=lambda T: 2 * T + L // T)
    return root if root * root == L else root + 1


def linear_scan(a, b, h0=None, method: str = "sequential", chunk_size: int | None = None):
    """All states of h_t = a_t * h_{t-1} + b_t (9.1), by one of the ``METHODS``.

    Args:
        a: (B, L, ...) or any shape that broadcasts to b's (NumPy rules), e.g. (N,) for a
            time-invariant diagonal or (B, L, 1) for one gate per step. Real or complex.
        b: (B, L, ...) inputs, real or complex.
        h0: (B, ...) initial state, zeros if None.
        method: "sequential", "hillis_steele", "blelloch", "chunked" or "log" (module docstring).
        chunk_size: chunk length T of method="chunked"; ``default_chunk_size(L)`` ~ sqrt(L) if None.
    Returns:
        h_all: (B, L, ...) h_1 ... h_L, in the promoted dtype of a, b, h0.
    Raises:
        ValueError: for shapes that do not fit, an unknown method, or method="log" with complex
            or non-positive inputs.
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of {', '.join(map(repr, METHODS))}, got {method!r}")
    check_positive_int("chunk_size", chunk_size, allow_none=True)
    raw = (("a", a), ("b", b), ("h0", h0))
    xp, a, b, h0 = _check_inputs(a, b, h0)
    if method == "sequential":
        return _scan_sequential(xp, a, b, h0)
    if method == "hillis_steele":
        return _scan_hillis_steele(xp, a, b, h0)
    if method == "blelloch":
        return _scan_blelloch(xp, a, b, h0)
    if method == "chunked":
        T = chunk_size if chunk_size is not None else default_chunk_size(b.shape[1])
        return _scan_chunked(xp, a, b, h0, T)
    for name, arr in raw:   # before promotion, so that the error names the culprit
        if arr is not None and (_is_complex(xp, arr) or not bool(xp.all(arr > 0))):
            raise ValueError(f"{name}: method='log' needs real, strictly positive a, b and h0 "
                             f"(use log_space_scan with log inputs, or another method)")
    log_h = log_space_scan(xp.log(a), xp.log(b), None if h0 is None else xp.log(h0))
    return xp.exp(log_h)


def _logcumsumexp(xp, x, axis: int):
    """log(cumsum(exp(x))) along ``axis`` without overflow or underflow."""
    if is_torch(x):
        import torch  # noqa: PLC0415

        return torch.logcumsumexp(x, dim=axis)
    if array_api_compat.is_numpy_array(x):
        return xp.logaddexp.accumulate(x, axis=axis)        # NumPy's ufunc: one pass in C
    return _logcumsumexp_rounds(xp, x, axis)


def _logcumsumexp_rounds(xp, x, axis: int):
    """Any backend (CuPy...): Hillis-Steele rounds of logaddexp, as in _scan_hillis_steele."""
    d, n = 1, x.shape[axis]
    x = xp.moveaxis(x, axis, 0)
    while d < n:
        x = xp.concat([x[:d, ...], xp.logaddexp(x[d:, ...], x[:-d, ...])], axis=0)
        d *= 2
    return xp.moveaxis(x, 0, axis)


def log_space_scan(log_a, log_b, log_h0=None):
    """log h_t of the scan (9.1) for positive a, b, h_0, computed in log space (9.5).

    Never forms the products A_t of (9.3), which underflow after a few hundred small a_t and then
    turn b_s / A_s into inf and h into NaN. Each log h_t is a*_t plus a log-sum-exp of finite terms.
    Precision: a*_t is subtracted and added back, so log h_t carries an absolute error of a few
    ulps of |a*_t| (about 1e-11 for a*_t = -1e5 in float64, but 1e-2 in float32: prefer float64,
    or chunk the sequence, when sum log a_t is large).

    Args:
        log_a: (B, L, ...) or broadcastable to log_b, finite real.
        log_b: (B, L, ...) real (-inf allowed: b_t = 0).
        log_h0: (B, ...) log of the initial state; h_0 = 0 (log h_0 = -inf) if None.
    Returns:
        log_h: (B, L, ...).
    """
    for name, arr in (("log_a", log_a), ("log_b", log_b), ("log_h0", log_h0)):
        if arr is not None and "complex" in str(getattr(arr, "dtype", "")):
            raise ValueError(f"{name}: expected a real floating-point array, got dtype {arr.dtype}")
    xp, log_a, log_b, log_h0 = _check_inputs(log_a, log_b, log_h0, ("log_a", "log_b", "log_h0"))
    a_star = xp.cumulative_sum(log_a, axis=1)                     # (B, L, ...)  a*_t in (9.5)
    log_h = a_star + _logcumsumexp(xp, log_b - a_star, axis=1)   # (B, L, ...)
    if log_h0 is not None:
        log_h = xp.logaddexp(log_h, a_star + xp.expand_dims(log_h0, axis=1))
    return log_h


def _sum_to_shape(xp, x, shape):
    """Sum ``x`` over the axes that NumPy broadcasting added or stretched to reach x.shape."""
    lead = x.ndim - len(shape)
    if lead:
        x = xp.sum(x, axis=tuple(range(lead)))
    stretched = tuple(i for i, s in enumerate(shape) if s == 1 and x.shape[i] != 1)
    if stretched:
        x = xp.sum(x, axis=stretched, keepdims=True)
    return x


def linear_scan_backward(a, h_all, dh_all, h0=None, method: str = "sequential",
                         chunk_size: int | None = None):
    """Gradients of a real loss through h_all = linear_scan(a, b, h0), equation (9.6).

    The total gradient g_t on h_t obeys a linear recurrence running backwards in time, so it is
    computed with ``linear_scan`` itself on the time-reversed sequences (any method except "log").

    Args:
        a: the ``a`` given to the forward scan (any shape broadcasting to h_all's).
        h_all: (B, L, ...) the forward states h_1 ... h_L.
        dh_all: (B, L, ...) dLoss/dh_t through everything except h_{t+1} (the direct part dh_t).
        h0: (B, ...) the forward initial state, zeros if None.
        method, chunk_size: how to run the reverse scan.
    Returns:
        da: a's shape, summed over its broadcast axes (real if a is real).
        db: (B, L, ...) = g_t, with h's dtype (take the real part if b was real and h complex).
        dh0: (B, ...) (real if h0 was given real).
        Complex gradients follow torch's convention, dz = dL/dRe z + i dL/dIm z.
    """
    if method == "log":
        raise ValueError("method: the backward scan has signed inputs, 'log' cannot run it; "
                         "use 'sequential', 'hillis_steele', 'blelloch' or 'chunked'")
    a_shape, a_real = tuple(a.shape), not _is_complex(xp_of(a), a)
    h0_real = h0 is not None and not _is_complex(xp_of(h0), h0)
    xp, a_b, h_all, h0 = _check_inputs(a, h_all, h0, ("a", "h_all", "h0"))
    if tuple(dh_all.shape) != tuple(h_all.shape):
        raise ValueError(f"dh_all: expected shape (B, L, ...) = {tuple(h_all.shape)}, "
                         f"got {tuple(dh_all.shape)}")
    dh_all = xp.astype(dh_all, xp.result_type(dh_all, h_all), copy=False)
    if h0 is None:
        h0 = xp.zeros_like(h_all[:, 0, ...])
    # Reverse time: g_rev[k] = conj(a_{L-k+1}) g_rev[k-1] + dh_rev[k]; the first a is never used.
    a_rev = xp.flip(xp.conj(a_b), axis=1)                                  # (B, L, ...)
    a_next = xp.concat([xp.ones_like(a_rev[:, :1, ...]), a_rev[:, :-1, ...]], axis=1)
    g = xp.flip(linear_scan(a_next, xp.flip(dh_all, axis=1), None, method, chunk_size), axis=1)
    h_prev = xp.concat([xp.expand_dims(h0, axis=1), h_all[:, :-1, ...]], axis=1)   # (B, L, ...)
    da = _sum_to_shape(xp, g * xp.conj(h_prev), a_shape)                    # (9.6)
    dh0 = xp.conj(a_b[:, 0, ...]) * g[:, 0, ...]                            # (B, ...)
    if a_real and _is_complex(xp, da):
        da = xp.real(da)
    if h0_real and _is_complex(xp, dh0):
        dh0 = xp.real(dh0)
    return da, g, dh0


# --------------------------------------------------------------------------- log-space helpers
# The gated models of this part (minGRU, RG-LRU, HGRN) need these in a form that neither overflows
# nor warns: exp is only ever taken of a non-positive number.
def softplus(x):
    """log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)), exact to rounding for every x."""
    xp = xp_of(x)
    return xp.maximum(x, xp.zeros_like(x)) + xp.log1p(xp.exp(-xp.abs(x)))


def log_sigmoid(x):
    """log sigma(x) = -softplus(-x)."""
    return -softplus(-x)


def sigmoid(x):
    """sigma(x) = 1 / (1 + exp(-x)) = exp(-softplus(-x)), without overflow for large |x|."""
    return xp_of(x).exp(log_sigmoid(x))
