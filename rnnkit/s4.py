"""S4: the structured state space sequence model (diagonal plus low rank HiPPO, fast kernel).

Each of the H channels is the LSSL of ``rnnkit.lmu`` (12.20)-(12.23): x' = A x + B u,
y = C x + D u, bilinear with its own dt = exp(log_dt). S4 changes how A is stored and how the
convolution kernel is computed:

    (13.1)  K_l = C A_bar^l B_bar  (l = 0..L-1),  bilinear A_bar, B_bar  (12.12)
    (13.2)  A_LegS = -A_HiPPO (12.6) is normal plus low rank:  A_LegS = S - P P^T,
            P_n = sqrt(n + 1/2),  S = -I/2 + (skew-symmetric), so S = V Lambda V^* (V unitary)
    (13.3)  in the basis V:  A = Lambda - P P^*,  with P <- V^* P, B <- V^* B, C <- C V  (DPLR)
    (13.4)  real system => conjugate pairs: keep the N/2 modes with Im(Lambda) > 0; the other
            half is (conj(Lambda), conj(P), conj(B), conj(C)) and the output stays real
    (13.5)  generating function at the roots of unity z_j = exp(-2 pi i j / L), z_j^L = 1:
            K^(z) = sum_l K_l z^l = C~ (I - A_bar z)^{-1} B_bar,   C~ = C (I - A_bar^L)
    (13.6)  with the bilinear A_bar, B_bar:  (I - A_bar z)^{-1} B_bar = dt R(z)^{-1} B,
            R(z) = (1 - z) I - s A,   s = (1 + z) dt / 2
    (13.7)  Woodbury, R(z) = Delta(z) + s P P^*,  Delta(z) = diag((1 - z) - s lambda_n):
            K^(z) = dt [k(C~, B) - s k(C~, P) k(P^*, B) / (1 + s k(P^*, P))]
    (13.8)  Cauchy kernel  k(a, b)(z) = sum_n a_n b_n / ((1 - z) - s lambda_n)
                                     = (1/s) sum_n a_n b_n / (omega(z) - lambda_n),
            omega(z) = (2/dt) (1 - z)/(1 + z), summed over both halves of each conjugate pair
    (13.9)  K = inverse FFT of K^(z_j), j = 0..L/2 (irfft: K is real),   y = K * u + D u

Two parameter forms, told apart by one key:

* the **C~ form** (key ``Ct``, what S4 trains, as the official code and the Annotated S4 do):
  C~ itself is the parameter, so ``kernel`` is one Cauchy evaluation (13.7)-(13.8) at the
  L/2 + 1 roots + one irfft: O(N L) vectorised sums + O(L log L) per channel, no N x N work.
  A C~ belongs to one length L (the length it truncates to, (13.5)): apply it to sequences of
  that length (``forward_conv`` truncates the length-L kernel for shorter inputs).
* the **C form** (key ``C``, the output matrix of the recurrence): needed by the recurrent view
  (``dense``, ``discretize``, ``step``, ``forward``) and by the references ``kernel_cform``
  (C~ = C (I - A_bar^L) by repeated squaring of dense N x N matrices, O(N^3 log L) per channel,
  then the same Cauchy evaluation) and ``kernel_naive`` (L products with A_bar, O(L N^2)).

``to_ctilde(params, L)`` and ``recover_c(params, L)`` (C = C~ (I - A_bar^L)^{-1}: one dense
N x N solve per channel, done once before generation) convert between the two.
``forward_conv`` accepts either form.

Parameters (book letters; N2 = N/2 kept modes): log_dt (H,), log_A_real (H, N2), A_imag (H, N2),
P (H, N2), B (H, N2), C or Ct (H, N2) complex, D (H,). Lambda = -exp(log_A_real) + i A_imag
keeps the real part negative whatever a training step does; dt = exp(log_dt) keeps it positive.

References:
    A. Gu, K. Goel, C. Ré, "Efficiently Modeling Long Sequences with Structured State Spaces",
    ICLR 2022: section 3 (DPLR form, Lemma 3.2 on why plain diagonalisation fails, Theorem 1),
    algorithm 1 (generating function, Woodbury, Cauchy) and appendix C. Official code
    github.com/state-spaces/s4 (models/s4/s4.py: ``nplr``, ``SSMKernelDPLR``, whose
    ``_setup_C`` converts C~ to C for stepping).
    S. Rush, S. Karamcheti, "The Annotated S4" (srush/annotated-s4): C~ trained directly,
    C recovered for the recurrent view (``conv_from_gen`` / ``discrete_DPLR``).
    Deliberate differences: (1) the official code evaluates the Cauchy kernel at
    omega(z) = 2(1 - z)/(1 + z) and multiplies by 2/(1 + z) afterwards, relying on rounding to
    keep z = -1 (the Nyquist root, even L) from dividing by zero; we multiply (13.6) through by
    s, which needs no special case. (2) The Cauchy sums are the direct O(N L) ones (the official
    code has a fused GPU kernel; no fast multipole Cauchy algorithm). (3) One low-rank term
    (rank 1), no B clipping, no parameter sharing across channels.
"""
from __future__ import annotations

import array_api_compat
import numpy as np

from .core.backend import xp_of
from .core.checks import check_floating, check_params, check_positive_int, check_shape
from .discretize import bilinear
from .hippo import transition
from .lmu import fft_conv, ssm_kernel, ssm_scan, ssm_step

__all__ = ["nplr_legs", "init", "cauchy", "dense", "discretize", "to_ctilde", "recover_c", "kernel",
           "kernel_cform", "kernel_naive", "step", "forward", "forward_conv"]

_SPECS = (("log_dt", "H"), ("log_A_real", "H N2"), ("A_imag", "H N2"), ("P", "H N2"),
          ("B", "H N2"), ("C", "H N2"), ("D", "H"))
_SPECS_CT = tuple(("Ct", s) if k == "C" else (k, s) for k, s in _SPECS)


def nplr_legs(N: int):
    """The DPLR form (13.2)-(13.4) of HiPPO-LegS.

    Returns:
        Lambda (N2,), P (N2,), B (N2,) complex, and V (N, N2): with V_full = [V, conj(V)],
        A_LegS = V_full (Lambda_full - P_full P_full^*) V_full^* and B_LegS = V_full B_full.
    """
    check_positive_int("N", N)
    if N % 2:
        raise ValueError(f"N: expected an even state size (conjugate pairs), got {N}")
    A_hippo, B_hippo = transition("legs", N)
    A = -A_hippo                                            # SSM sign (13.2)
    P = np.sqrt(np.arange(N) + 0.5)                         # (N,)
    S = A + np.outer(P, P)                                  # -I/2 + skew-symmetric
    # S + S^T = -I, so Lambda = -1/2 + i w with w the eigenvalues of the Hermitian -i (S + I/2)
    w, V = np.linalg.eigh(-1j * (S + 0.5 * np.eye(N)))      # (N,), (N, N), w ascending
    keep = np.argsort(w)[N // 2:]                           # Im(Lambda) > 0: one of each pair
    V = V[:, keep]                                          # (N, N2)
    Lam = -0.5 + 1j * w[keep]
    return Lam, V.conj().T @ P, V.conj().T @ B_hippo, V


def init(rng: np.random.Generator, H: int, N: int, dt_min: float = 1e-3, dt_max: float = 1e-1,
         dtype=np.float64, ctilde: bool = False) -> dict:
    """S4 parameters: HiPPO-LegS in DPLR form for every channel, random C and D, log-uniform dt.

    Args:
        H: channels.  N: state size (even; N2 = N/2 complex modes are stored).
        dt_min, dt_max: log_dt ~ U[log dt_min, log dt_max].
        ctilde: store the random output vector as C~ (key ``Ct``, the trained form, as the
            official code initialises it) instead of C (key ``C``).
    Returns:
        dict with log_dt (H,), log_A_real (H, N2), A_imag (H, N2), D (H,) real and
        P (H, N2), B (H, N2), C or Ct (H, N2) complex (complex128 for float64).
    """
    check_positive_int("H", H)
    if not 0 < dt_min <= dt_max:
        raise ValueError(f"dt_min, dt_max: expected 0 < dt_min <= dt_max, got {dt_min}, {dt_max}")
    Lam, P, B, _ = nplr_legs(N)
    cdtype = np.result_type(dtype, np.complex64)
    C = (rng.normal(size=(H, N // 2)) + 1j * rng.normal(size=(H, N // 2))) * np.sqrt(0.5)
    real = {"log_dt": rng.uniform(np.log(dt_min), np.log(dt_max), size=H),
            "log_A_real": np.tile(np.log(-Lam.real), (H, 1)), "A_imag": np.tile(Lam.imag, (H, 1)),
            "D": rng.normal(size=H)}
    cplx = {"P": np.tile(P, (H, 1)), "B": np.tile(B, (H, 1)), "Ct" if ctilde else "C": C}
    return ({k: v.astype(dtype) for k, v in real.items()}
            | {k: v.astype(cdtype) for k, v in cplx.items()})


def _check_params(params: dict, dims: dict, src: dict, form: str = "C"):
    """Check a C-form (``form="C"``), C~-form (``"Ct"``) or either (``"any"``) parameter dict."""
    if not isinstance(params, dict):
        raise ValueError(f"params: expected a dict of arrays, got {type(params).__name__}")
    if form == "any":
        form = "Ct" if "Ct" in params else "C"
    if form == "C" and "C" not in params and "Ct" in params:
        raise ValueError("params: expected the C form (key 'C'), got the C~ form (key 'Ct'); "
                         "recover C with s4.recover_c(params, L) for the recurrent view")
    if form == "Ct" and "Ct" not in params and "C" in params:
        raise ValueError("params: expected the C~ form (key 'Ct'), got the C form (key 'C'); "
                         "convert with s4.to_ctilde(params, L), or use s4.kernel_cform")
    specs = _SPECS_CT if form == "Ct" else _SPECS
    check_params(params, specs, dims, src)
    return xp_of(*(params[k] for k, _ in specs))


def _conj_full(xp, v):
    """(…, N2) -> (…, N): append the conjugate half (13.4)."""
    return xp.concat([v, xp.conj(v)], axis=-1)


def _lambda(xp, params):
    return -xp.exp(params["log_A_real"]) + 1j * params["A_imag"]   # (H, N2), Re < 0


def cauchy(v, z, lam, s):
    """Cauchy kernel (13.8) over both halves of each pair: sum_n v_n / ((1 - z) - s lambda_n).

    Args:
        v: (R, H, N2) numerators a_n b_n, R of them sharing the denominators.
        z: (J,) roots.  lam: (H, N2).  s: (H, J).
    Returns:
        (R, H, J).
    """
    xp = xp_of(v, lam)
    den = (1 - z)[:, None] - s[..., None] * lam[:, None, :]         # (H, J, N2)
    den_c = (1 - z)[:, None] - s[..., None] * xp.conj(lam)[:, None, :]
    v_t = xp.permute_dims(v, (1, 2, 0))                             # (H, N2, R)
    out = (1 / den) @ v_t + (1 / den_c) @ xp.conj(v_t)              # (H, J, R): sum over n
    return xp.permute_dims(out, (2, 0, 1))


def dense(params: dict) -> dict:
    """The continuous system of every channel with the conjugate half materialised (N states).

    Args:
        params: C form.
    Returns:
        dict with A (H, N, N) = Lambda - P P^*, B (H, N), C (H, N) complex, D (H,), dt (H,).
    """
    xp = _check_params(params, {}, {})
    return _dense(xp, params) | {"C": _conj_full(xp, params["C"]), "D": params["D"]}


def _dense(xp, params) -> dict:
    """A (H, N, N), B (H, N), dt (H,) of either form (no C)."""
    Lam, P = _conj_full(xp, _lambda(xp, params)), _conj_full(xp, params["P"])   # (H, N)
    A = -P[:, :, None] * xp.conj(P)[:, None, :]                     # (H, N, N) -P P^*
    N = A.shape[-1]
    eye = xp.eye(N, dtype=A.dtype, device=array_api_compat.device(A))
    A = A + eye * Lam[:, None, :]
    return {"A": A, "B": _conj_full(xp, params["B"]), "dt": xp.exp(params["log_dt"])}


def discretize(params: dict) -> dict:
    """The bilinear discrete system (13.1) for ``lmu.ssm_step`` / ``lmu.ssm_scan`` (C form).

    Returns:
        ssm: A_bar (H, N, N), B_bar (H, N), C (H, N) complex, D (H,).
    """
    sys = dense(params)
    A_bar, B_bar = bilinear(sys["A"], sys["B"], sys["dt"])
    return {"A_bar": A_bar, "B_bar": B_bar, "C": sys["C"], "D": sys["D"]}


def _matrix_power(xp, M, L: int):
    """M^L for (H, N, N) by repeated squaring (log2 L products)."""
    eye = xp.eye(M.shape[-1], dtype=M.dtype, device=array_api_compat.device(M))
    result, base = xp.broadcast_to(eye, M.shape), M
    while L:
        if L & 1:
            result = result @ base
        L >>= 1
        if L:
            base = base @ base
    return result


def _one_minus_power(xp, params, L: int):
    """I - A_bar^L (H, N, N) of either form: O(N^3 log L) per channel."""
    sys = _dense(xp, params)
    A_bar, _ = bilinear(sys["A"], sys["B"], sys["dt"])
    eye = xp.eye(A_bar.shape[-1], dtype=A_bar.dtype, device=array_api_compat.device(A_bar))
    return eye - _matrix_power(xp, A_bar, L)


def to_ctilde(params: dict, L: int) -> dict:
    """C form -> C~ form for length L: Ct = C (I - A_bar^L) (13.5), O(N^3 log L) per channel."""
    check_positive_int("L", L)
    xp = _check_params(params, {}, {})
    N2 = params["C"].shape[-1]
    M = _one_minus_power(xp, params, L)                              # (H, N, N)
    C_full = _conj_full(xp, params["C"])                             # (H, N) row vectors
    Ct = (xp.matrix_transpose(M) @ C_full[..., None])[..., 0]        # C M, as M^T C^T
    out = {k: v for k, v in params.items() if k != "C"}
    out["Ct"] = Ct[..., :N2]
    return out


def recover_c(params: dict, L: int) -> dict:
    """C~ form -> C form: C = C~ (I - A_bar^L)^{-1}, one dense N x N solve per channel.

    What the recurrent view needs (generation); done once, not per step. Ill-conditioned when
    A_bar^L is close to I (a channel whose memory is much longer than L: dt tiny).
    """
    check_positive_int("L", L)
    xp = _check_params(params, {}, {}, "Ct")
    N2 = params["Ct"].shape[-1]
    M = _one_minus_power(xp, params, L)                              # (H, N, N)
    Ct_full = _conj_full(xp, params["Ct"])                           # (H, N)
    C = xp.linalg.solve(xp.matrix_transpose(M), Ct_full[..., None])[..., 0]   # M^T C^T = C~^T
    out = {k: v for k, v in params.items() if k != "Ct"}
    out["C"] = C[..., :N2]
    return out


def kernel(params: dict, L: int):
    """The S4 convolution kernel (13.5)-(13.9) from C~ (C~ form): O(N L + L log L) per channel.

    One Cauchy evaluation (4 numerators sharing the denominators) at the L/2 + 1 roots of unity,
    the Woodbury combination and one irfft; no N x N matrix is formed.

    Returns:
        K: (H, L) real.
    """
    check_positive_int("L", L)
    xp = _check_params(params, {}, {}, "Ct")
    dev = array_api_compat.device(params["Ct"])
    dt = xp.exp(params["log_dt"])                                    # (H,)
    J = L // 2 + 1
    j = xp.arange(J, dtype=params["log_dt"].dtype, device=dev)
    z = xp.exp((-2j * np.pi / L) * j)                                # (J,) roots of unity
    s = (1 + z)[None, :] * dt[:, None] / 2                           # (H, J)
    lam, P, B, Ct = _lambda(xp, params), params["P"], params["B"], params["Ct"]
    num = xp.stack([Ct * B, Ct * P, xp.conj(P) * B, xp.conj(P) * P])  # (4, H, N2)
    k_CB, k_CP, k_PB, k_PP = xp.unstack(cauchy(num, z, lam, s))     # (H, J) each
    K_hat = dt[:, None] * (k_CB - s * k_CP * k_PB / (1 + s * k_PP))  # (H, J)  (13.7)
    return xp.fft.irfft(K_hat, n=L, axis=-1)                         # (H, L)  (13.9)


def kernel_cform(params: dict, L: int):
    """Reference: the kernel of C-form parameters, C~ = C (I - A_bar^L) by repeated squaring
    (``to_ctilde``, O(N^3 log L) per channel) and then ``kernel``."""
    return kernel(to_ctilde(params, L), L)


def kernel_naive(params: dict, L: int):
    """Reference kernel (13.1) by powers of A_bar (``lmu.ssm_kernel``): O(L N^2) per channel."""
    return ssm_kernel(discretize(params), L)


def step(ssm: dict, u_t, x_prev):
    """One recurrent step on the output of ``discretize``: u_t (B, H), x_prev (B, H, N) complex.

    Returns:
        y_t (B, H) real, x_t (B, H, N).
    """
    return ssm_step(ssm, u_t, x_prev)


def forward(params: dict, u, x0=None):
    """Recurrent view (C form): u (B, L, H) -> y (B, L, H), x_L (B, H, N) complex."""
    return ssm_scan(discretize(params), u, x0)


def forward_conv(params: dict, u, L: int | None = None):
    """Convolutional view (13.9): u (B, L_u, H) -> y = K * u + D u (B, L_u, H), from a zero state.

    Args:
        params: C~ form (the kernel of length L from C~, ``kernel``) or C form (``kernel_cform``).
        L: the kernel's length (default L_u; a C~ belongs to one L). L >= L_u: the first L_u
            taps are used.
    """
    dims, src = {}, {}
    _check_params(params, dims, src, "any")
    check_shape("u", u, "B L H", dims, src)
    check_floating("u", u)
    L_u = dims["L"]
    if L is None:
        L = L_u
    check_positive_int("L", L)
    if L < L_u:
        raise ValueError(f"L: expected a kernel length >= the input length {L_u}, got {L}")
    K = (kernel if "Ct" in params else kernel_cform)(params, L)
    return fft_conv(K[:, :L_u], u) + params["D"] * u
