"""Tests for rnnkit.scan: every method against a plain loop, log space, the reverse-scan backward."""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rnnkit import scan
from rnnkit.core.backend import to_backend
from rnnkit.bench import scan as scan_bench
from rnnkit.scan import linear_scan, linear_scan_backward, log_space_scan
from rnnkit.core.testing import assert_close, numerical_gradient

RTOL = 1e-12       # float64: the methods only re-bracket the same products and sums
RTOL_LOG = 1e-11   # log space: exp(log(.)) adds a few ulps per step on log h of size ~10
PARALLEL = ("hillis_steele", "blelloch", "chunked")


def naive_scan(a, b, h0=None):
    """h_t = a_t h_{t-1} + b_t written as a loop over every batch row, time step and feature."""
    a = np.broadcast_to(a, b.shape)
    h = np.zeros(b.shape, dtype=np.result_type(a, b, h0 if h0 is not None else 0.0))
    for idx in np.ndindex(b.shape[:1] + b.shape[2:]):
        i, rest = idx[0], idx[1:]
        state = 0.0 if h0 is None else h0[idx]
        for t in range(b.shape[1]):
            state = a[(i, t) + rest] * state + b[(i, t) + rest]
            h[(i, t) + rest] = state
    return h


def random_inputs(rng, shape, complex_a=False, complex_b=False, scale=1.0):
    """a with |a| < 1 (so states stay of order one), b and h0 standard normal."""
    a = rng.uniform(-1, 1, shape)
    if complex_a:
        a = a * np.exp(1j * rng.uniform(0, 2 * np.pi, shape))
    b = scale * rng.standard_normal(shape)
    if complex_b:
        b = b + 1j * scale * rng.standard_normal(shape)
    h0 = rng.standard_normal(shape[:1] + shape[2:])
    return a, b, h0


@given(B=st.integers(1, 3), L=st.integers(1, 40), rest=st.lists(st.integers(1, 3), max_size=2),
       complex_a=st.booleans(), complex_b=st.booleans(), with_h0=st.booleans(),
       chunk=st.one_of(st.none(), st.integers(1, 45)), seed=st.integers(0, 2**16))
def test_every_method_matches_the_naive_loop(B, L, rest, complex_a, complex_b, with_h0, chunk, seed):
    rng = np.random.default_rng(seed)
    a, b, h0 = random_inputs(rng, (B, L, *rest), complex_a, complex_b)
    h0 = h0 if with_h0 else None
    ref = naive_scan(a, b, h0)
    assert_close("sequential", ref, linear_scan(a, b, h0), rtol=RTOL)
    for method in PARALLEL:
        got = linear_scan(a, b, h0, method=method, chunk_size=chunk)
        assert got.shape == ref.shape and got.dtype == ref.dtype
        assert_close(method, ref, got, rtol=RTOL)


@pytest.mark.parametrize("L", [1, 2, 3, 5, 8, 9, 31, 32, 33, 100, 1000])
@pytest.mark.parametrize("method", PARALLEL)
def test_lengths_around_powers_of_two(L, method):
    rng = np.random.default_rng(L)
    a, b, h0 = random_inputs(rng, (2, L, 3), complex_a=True)
    assert_close(f"{method} L={L}", linear_scan(a, b, h0), linear_scan(a, b, h0, method=method),
                 rtol=RTOL)


@pytest.mark.parametrize("a_shape", [(4,), (1, 4), (1, 7, 4), (2, 1, 4), (2, 7, 1), (1,)])
@pytest.mark.parametrize("method", ("sequential",) + PARALLEL)
def test_a_broadcasts_to_b(a_shape, method):
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, a_shape)
    b = rng.standard_normal((2, 7, 4))
    ref = naive_scan(np.broadcast_to(a, b.shape).copy(), b)
    assert_close(f"a{a_shape}", ref, linear_scan(a, b, method=method), rtol=RTOL)


def test_geometric_series_closed_form():
    """a = r, b = 1, h0 = 0 gives h_t = (1 - r^t) / (1 - r): a check that needs no loop at all."""
    r, L = 0.9, 50
    b = np.ones((1, L, 1))
    t = np.arange(1, L + 1)[None, :, None]
    for method in ("sequential",) + PARALLEL:
        assert_close(method, (1 - r**t) / (1 - r), linear_scan(np.full(1, r), b, method=method),
                     rtol=RTOL)


@given(B=st.integers(1, 3), L=st.integers(1, 60), N=st.integers(1, 4), with_h0=st.booleans(),
       seed=st.integers(0, 2**16))
def test_log_scan_matches_sequential_for_positive_inputs(B, L, N, with_h0, seed):
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.01, 1.0, (B, L, N))
    b = rng.uniform(0.01, 2.0, (B, L, N))
    h0 = rng.uniform(0.1, 2.0, (B, N)) if with_h0 else None
    ref = naive_scan(a, b, h0)
    assert_close("method='log'", ref, linear_scan(a, b, h0, method="log"), rtol=RTOL_LOG)
    log_h = log_space_scan(np.log(a), np.log(b), None if h0 is None else np.log(h0))
    assert_close("log_space_scan", np.log(ref), log_h, rtol=RTOL_LOG)


def test_log_scan_survives_what_underflows_in_linear_space():
    """a_t = e^-1000 is 0.0 in float64 and products of a few hundred a_t = e^-5 underflow too.

    The closed form (9.3) then divides by zero; the log-space form (9.4) stays finite and matches
    the recurrence run directly in log space, log h_t = logaddexp(log a_t + log h_{t-1}, log b_t).
    """
    rng = np.random.default_rng(1)
    for log_a_value in (-1000.0, -5.0):
        L = 400
        log_a = np.full((2, L, 3), log_a_value)
        log_b = rng.uniform(-3, 3, (2, L, 3))
        log_h0 = rng.uniform(-3, 3, (2, 3))
        ref = np.empty_like(log_b)
        lh = log_h0
        for t in range(L):
            lh = np.logaddexp(log_a[:, t] + lh, log_b[:, t])
            ref[:, t] = lh
        got = log_space_scan(log_a, log_b, log_h0)
        assert np.all(np.isfinite(got))
        # (9.4) subtracts and adds back a*_t = sum log a (-4e5 here), so its absolute error in
        # log h is a few ulps of |a*_t|: allow 4 eps |a*_L| on top of the usual relative error.
        atol = 4 * np.finfo(np.float64).eps * abs(L * log_a_value)
        assert_close(f"log a = {log_a_value}", ref, got, rtol=1e-12, atol=atol)
        with np.errstate(all="ignore"):   # the naive closed form really does break
            A = np.cumprod(np.exp(log_a), axis=1)
            naive = A * np.cumsum(np.exp(log_b) / A, axis=1)
        assert not np.all(np.isfinite(naive))


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_log_cumsum_exp_fallback_for_other_backends(axis):
    """CuPy has no logaddexp.accumulate: the Hillis-Steele fallback must match NumPy's."""
    x = np.random.default_rng(12).uniform(-800, 800, (5, 11, 3))
    x[1, 2, 1] = -np.inf                     # b = 0 somewhere (not first along any axis)
    assert_close(f"axis {axis}", np.logaddexp.accumulate(x, axis=axis),
                 scan._logcumsumexp_rounds(np, x, axis), rtol=1e-15)


def test_log_scan_with_broadcast_log_a_and_zero_b():
    rng = np.random.default_rng(2)
    log_a = np.log(rng.uniform(0.1, 1.0, (3,)))
    b = rng.uniform(0.1, 1.0, (2, 6, 3))
    b[:, 2] = 0.0                      # log b = -inf is allowed: that step adds nothing
    with np.errstate(divide="ignore"):
        log_b = np.log(b)
    assert_close("b_t = 0 steps", naive_scan(np.exp(log_a), b), np.exp(log_space_scan(log_a, log_b)),
                 rtol=RTOL_LOG)


# ---- backward (9.6): finite differences, torch autograd, and all scan methods agreeing ----

def _loss(a, b, h0, w):
    """A real loss that uses every state: sum Re(w conj-free weights * h) + 0.1 |h|^2."""
    h = linear_scan(a, b, h0)
    return float(np.sum(w.real * h.real + w.imag * h.imag) + 0.1 * np.sum(np.abs(h) ** 2))


def _dloss_dh(h, w):
    return w + 0.2 * h     # dL/dRe h + i dL/dIm h


def _fd_complex(f, z):
    """Finite-difference gradient of a real f at complex z, as dL/dRe z + i dL/dIm z."""
    if not np.iscomplexobj(z):
        return numerical_gradient(f, z)
    d_re = numerical_gradient(lambda v: f(v + 1j * z.imag), z.real)
    d_im = numerical_gradient(lambda v: f(z.real + 1j * v), z.imag)
    return d_re + 1j * d_im


@pytest.mark.parametrize("complex_a", [False, True])
@pytest.mark.parametrize("complex_b", [False, True])
def test_backward_matches_finite_differences(complex_a, complex_b):
    rng = np.random.default_rng(3)
    a, b, h0 = random_inputs(rng, (2, 5, 3), complex_a, complex_b)
    cplx = complex_a or complex_b
    w = rng.standard_normal((2, 5, 3)) + (1j * rng.standard_normal((2, 5, 3)) if cplx else 0)
    if cplx:
        h0 = h0 + 1j * rng.standard_normal(h0.shape)
    h = linear_scan(a, b, h0)
    da, db, dh0 = linear_scan_backward(a, h, _dloss_dh(h, w), h0)
    # Central differences, eps = 1e-6: truncation O(eps^2) and rounding O(1e-16 / eps): 1e-8 relative.
    assert_close("da", _fd_complex(lambda v: _loss(v, b, h0, w), a), da, rtol=1e-8)
    assert_close("db", _fd_complex(lambda v: _loss(a, v, h0, w), b),
                 db if complex_b else db.real, rtol=1e-8)
    assert_close("dh0", _fd_complex(lambda v: _loss(a, b, v, w), h0), dh0, rtol=1e-8)


@pytest.mark.parametrize("method", ("sequential",) + PARALLEL)
@pytest.mark.parametrize("a_shape", [(2, 9, 3), (3,), (2, 9, 1)])
def test_backward_matches_torch_autograd(method, a_shape):
    """Autograd through our own linear_scan run on torch tensors (complex, with a broadcast a)."""
    rng = np.random.default_rng(4)
    a = rng.uniform(-1, 1, a_shape) * np.exp(1j * rng.uniform(0, 6, a_shape))
    b = rng.standard_normal((2, 9, 3)) + 1j * rng.standard_normal((2, 9, 3))
    h0 = rng.standard_normal((2, 3)) + 1j * rng.standard_normal((2, 3))
    w = rng.standard_normal((2, 9, 3)) + 1j * rng.standard_normal((2, 9, 3))
    ta, tb, th0 = (torch.tensor(v, requires_grad=True) for v in (a, b, h0))
    th = linear_scan(ta, tb, th0, method=method)
    tw = torch.tensor(w)
    (torch.sum(tw.real * th.real + tw.imag * th.imag) + 0.1 * torch.sum(th.abs() ** 2)).backward()
    h = linear_scan(a, b, h0, method=method)
    da, db, dh0 = linear_scan_backward(a, h, _dloss_dh(h, w), h0, method=method, chunk_size=2)
    assert da.shape == a_shape
    assert_close("da", ta.grad, da, rtol=RTOL)
    assert_close("db", tb.grad, db, rtol=RTOL)
    assert_close("dh0", th0.grad, dh0, rtol=RTOL)


def test_backward_real_a_gives_real_da_with_complex_states():
    rng = np.random.default_rng(5)
    a = rng.uniform(-1, 1, (3,))
    b = rng.standard_normal((2, 4, 3)) + 1j * rng.standard_normal((2, 4, 3))
    h0 = rng.standard_normal((2, 3))
    h = linear_scan(a, b, h0)
    da, _, dh0 = linear_scan_backward(a, h, np.ones_like(h), h0)
    assert not np.iscomplexobj(da) and not np.iscomplexobj(dh0)
    assert_close("da", _fd_complex(lambda v: float(np.sum(linear_scan(v, b, h0).real)), a), da,
                 rtol=1e-8)


def test_backward_without_h0_and_length_one():
    rng = np.random.default_rng(6)
    a, b, _ = random_inputs(rng, (3, 1, 2))
    h = linear_scan(a, b)
    da, db, dh0 = linear_scan_backward(a, h, np.ones_like(h))
    assert_close("da (h_0 = 0)", np.zeros_like(a), da, atol=0)
    assert_close("db", np.ones_like(b), db, rtol=0)
    assert_close("dh0 = a_1 g_1", a[:, 0], dh0, rtol=0)


# ---- work counts (chapter 9's table) and the benchmark ----

@pytest.mark.parametrize("L", [1, 2, 3, 5, 8, 9, 31, 32, 33, 100, 1000, 4096])
@pytest.mark.parametrize("method", PARALLEL + ("sequential",))
def test_counted_work_matches_the_formulas(L, method):
    """Multiplications the library really performs (counted by a NumPy subclass) = the formulas."""
    counted = scan_bench.count_work(method, L)
    assert counted["agrees"]
    assert (counted["mults"], counted["calls"]) == tuple(scan_bench.work_formula(method, L).values())


def test_work_formulas_in_closed_form_for_powers_of_two():
    for K in range(1, 13):
        L = 2 ** K
        assert scan_bench.work_formula("hillis_steele", L)["mults"] == 2 * (L * K - L + 1)
        assert scan_bench.work_formula("blelloch", L) == {"mults": 3 * (L - 1) - K - 1,
                                                         "calls": 3 * K - 1}
        T = 2 ** (K // 2)
        assert scan_bench.work_formula("chunked", L, T)["mults"] == 3 * L - L // T - 1
    assert scan_bench.count_work("chunked", 1000, chunk_size=7)["mults"] == 3 * 143 * 7 - 143 - 1


def test_counter_sees_a_wrong_count():
    """The counter must notice an extra multiplication (so the equality above can fail)."""
    original = scan._scan_sequential

    def one_more(xp, a, b, h0):
        return original(xp, a, b, h0) * 1.0
    try:
        scan._scan_sequential = one_more
        assert scan_bench.count_work("sequential", 10)["mults"] == 9 + 10
    finally:
        scan._scan_sequential = original


def test_scan_benchmark_quick_records_every_method():
    records = scan_bench.run(quick=True, backends={"numpy": True}, shapes=((2, 3),),
                             lengths=(5, 16))
    assert {(r["form"], r["params"]["L"]) for r in records} == {
        (m, L) for m in scan.METHODS for L in (5, 16)}
    for r in records:
        assert r["impl"] == "numpy" and r["median_s"] > 0 and r["params"]["dtype"] == "float32"
        assert r["max_rel_err"] < (scan_bench.RTOL_LOG if r["form"] == "log" else scan_bench.RTOL)
        assert ("T" in r["params"]) == (r["form"] == "chunked")


def test_scan_benchmark_skips_too_large_configurations(monkeypatch):
    monkeypatch.setattr(scan_bench, "MAX_ELEMENTS", 100)
    records = scan_bench.run(quick=True, backends={"numpy": True}, shapes=((1, 4), (4, 4)),
                             lengths=(8,), methods=("sequential",))
    assert [(r["params"]["B"], r["params"]["D"]) for r in records] == [(1, 4)]


# ---- backends and dtypes ----

@pytest.mark.parametrize("method", scan.METHODS)
def test_torch_runs_the_same_source(method):
    rng = np.random.default_rng(7)
    a, b, h0 = random_inputs(rng, (2, 13, 3))
    if method == "log":
        a, b, h0 = np.abs(a) + 0.1, np.abs(b) + 0.1, np.abs(h0) + 0.1
    got = linear_scan(*to_backend([a, b, h0], "torch"), method=method)
    assert isinstance(got, torch.Tensor)
    assert_close(method, naive_scan(a, b, h0), got, rtol=RTOL_LOG)


@pytest.mark.parametrize("method", scan.METHODS)
def test_float32_stays_float32(method):
    rng = np.random.default_rng(8)
    a = rng.uniform(0.5, 1.0, (2, 10, 3)).astype(np.float32)
    b = rng.uniform(0.5, 1.0, (2, 10, 3)).astype(np.float32)
    h = linear_scan(a, b, method=method)
    assert h.dtype == np.float32
    assert_close(method, naive_scan(a.astype(np.float64), b.astype(np.float64)), h, rtol=1e-5)


def test_real_a_complex_b_promotes_to_complex():
    rng = np.random.default_rng(9)
    h = linear_scan(rng.uniform(size=3), rng.standard_normal((1, 4, 3)) + 0j, method="blelloch")
    assert h.dtype == np.complex128


def test_log_space_helpers_are_stable():
    x = np.array([-1000.0, -40.0, -1.0, 0.0, 1.0, 40.0, 1000.0])
    assert_close("softplus", np.array([0.0, np.exp(-40.0), np.log1p(np.exp(-1.0)), np.log(2.0),
                                       1 + np.log1p(np.exp(-1.0)), 40.0, 1000.0]),
                 scan.softplus(x), rtol=1e-15)
    assert_close("sigmoid", 1 / (1 + np.exp(-np.clip(x, -700, 700))), scan.sigmoid(x), rtol=1e-15)
    assert scan.log_sigmoid(x)[0] == -1000.0 and scan.log_sigmoid(x)[-1] == 0.0


# ---- bad input ----

def test_bad_inputs_raise_clear_errors():
    rng = np.random.default_rng(10)
    a, b, h0 = random_inputs(rng, (2, 5, 3))
    with pytest.raises(ValueError, match="method: expected one of 'sequential', .* got 'fast'"):
        linear_scan(a, b, method="fast")
    with pytest.raises(ValueError, match=r"a: expected a shape that broadcasts to b's \(2, 5, 3\)"):
        linear_scan(a[:, :, :2], b)
    with pytest.raises(ValueError, match=r"a: expected a shape that broadcasts to b's"):
        linear_scan(np.ones((1, 2, 5, 3)), b)
    with pytest.raises(ValueError, match=r"b: expected at least 2 dimensions \(B, L, ...\), got shape \(5,\)"):
        linear_scan(a[0, :, 0], b[0, :, 0])
    with pytest.raises(ValueError, match=r"b: expected at least one time step"):
        linear_scan(a[:, :0], b[:, :0])
    with pytest.raises(ValueError, match=r"h0: expected shape \(B, ...\) = \(2, 3\), got \(5, 3\)"):
        linear_scan(a, b, h0=b[0])
    with pytest.raises(ValueError, match="b: expected a floating-point array, got dtype int64"):
        linear_scan(a, np.ones((2, 5, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="chunk_size: expected a positive integer, got 0"):
        linear_scan(a, b, method="chunked", chunk_size=0)
    with pytest.raises(ValueError, match="a: method='log' needs real, strictly positive"):
        linear_scan(a, np.abs(b), method="log")
    with pytest.raises(ValueError, match="b: method='log' needs real, strictly positive"):
        linear_scan(np.abs(a), b, method="log")
    with pytest.raises(ValueError, match="a: method='log' needs real, strictly positive"):
        linear_scan(np.abs(a) + 0j, np.abs(b), method="log")
    with pytest.raises(ValueError, match="b: method='log' needs real, strictly positive"):
        linear_scan(np.abs(a), np.abs(b) + 0j, method="log")
    with pytest.raises(ValueError, match="h0: method='log' needs real, strictly positive"):
        linear_scan(np.abs(a), np.abs(b), np.zeros((2, 3)), method="log")
    with pytest.raises(ValueError, match="log_b: expected a real floating-point array"):
        log_space_scan(np.log(np.abs(a)), np.log(np.abs(b)) + 0j)
    h = linear_scan(a, b)
    with pytest.raises(ValueError, match=r"dh_all: expected shape \(B, L, ...\) = \(2, 5, 3\), got \(2, 4, 3\)"):
        linear_scan_backward(a, h, h[:, :4])
    with pytest.raises(ValueError, match="method: the backward scan has signed inputs"):
        linear_scan_backward(a, h, h, method="log")


@pytest.mark.gpu
def test_scan_benchmark_on_gpu():
    records = scan_bench.run(quick=True, backends={"cupy": True}, shapes=((1, 16),), lengths=(256,))
    assert {r["impl"] for r in records} == {"cupy"} and len(records) == len(scan.METHODS)


@pytest.mark.gpu
def test_cupy_runs_the_same_source():
    import cupy

    rng = np.random.default_rng(11)
    a, b, h0 = random_inputs(rng, (2, 37, 3), complex_a=True)
    ref = naive_scan(a, b, h0)
    for method in ("sequential",) + PARALLEL:
        got = linear_scan(cupy.asarray(a), cupy.asarray(b), cupy.asarray(h0), method=method)
        assert isinstance(got, cupy.ndarray)
        assert_close(method, ref, got, rtol=RTOL)
    pa, pb = np.abs(a) + 0.1, np.abs(b) + 0.1
    got = linear_scan(cupy.asarray(pa), cupy.asarray(pb), method="log")
    assert_close("log on CuPy", naive_scan(pa, pb), got, rtol=RTOL_LOG)
