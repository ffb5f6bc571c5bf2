// The selective scan S6 of chapter 14, (14.1)-(14.3) and (14.5), with the state kept on chip.
//
//   h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t      (per channel d, state n = 1..N)
//   y_t = C_t . h_t + D * u_t,   then y_t <- y_t * silu(z_t)
//
// Layout (row-major): u, delta, z, y (B, L, D); A (D, N); Bm, Cm (B, L, N); Dskip (D,);
// h0, h_last (B, D, N). One thread owns one (batch b, channel d) and walks t = 1..L, holding its
// N states in registers (N <= MAX_N): the (B, L, D, N) tensor of states that the NumPy forms
// build is never written to memory, which is the point of the paper's hardware-aware scan
// (section 3.3.2). Threads of a block are consecutive channels d of one batch row, so their reads
// of u, delta, z and writes of y are coalesced, and B_t, C_t (the same for every d) are broadcast.
// The parallelism is over B * D; inside one thread the scan over t is sequential, as in the
// official kernel within a chunk.
//
// Optional inputs (Dskip, z, h0) may be null pointers.
#ifndef SCALAR_T
#define SCALAR_T float
#endif
#ifndef MAX_N
#define MAX_N 64
#endif

typedef SCALAR_T scalar_t;

__device__ __forceinline__ scalar_t silu(scalar_t x) { return x / ((scalar_t)1 + exp(-x)); }

// One step of (14.1)-(14.3) for one state n: h_t = exp(delta_t a_n) h_{t-1} + delta_t B_t[n] u_t.
__device__ __forceinline__ scalar_t s6_step(scalar_t h, scalar_t dt, scalar_t a, scalar_t b, scalar_t ut) {
    return exp(dt * a) * h + dt * b * ut;
}

extern "C" __global__ void selective_scan(const scalar_t* __restrict__ u,
                                          const scalar_t* __restrict__ delta,
                                          const scalar_t* __restrict__ A,
                                          const scalar_t* __restrict__ Bm,
                                          const scalar_t* __restrict__ Cm,
                                          const scalar_t* __restrict__ Dskip,
                                          const scalar_t* __restrict__ z,
                                          const scalar_t* __restrict__ h0,
                                          scalar_t* __restrict__ y,
                                          scalar_t* __restrict__ h_last,
                                          int Bsz, long long L, int D, int N) {
    const int d = blockIdx.x * blockDim.x + threadIdx.x;
    const int bi = blockIdx.y;
    if (d >= D || bi >= Bsz) return;
    scalar_t h[MAX_N], a[MAX_N];
    for (int n = 0; n < N; ++n) {
        h[n] = h0 ? h0[((long long)bi * D + d) * N + n] : (scalar_t)0;
        a[n] = A[(long long)d * N + n];
    }
    const scalar_t skip = Dskip ? Dskip[d] : (scalar_t)0;
    for (long long t = 0; t < L; ++t) {
        const long long ix = ((long long)bi * L + t) * D + d;       // (b, t, d)
        const long long in = ((long long)bi * L + t) * N;           // (b, t, 0)
        const scalar_t dt = delta[ix], ut = u[ix];
        scalar_t out = (scalar_t)0;
        for (int n = 0; n < N; ++n) {
            h[n] = s6_step(h[n], dt, a[n], Bm[in + n], ut);         // (14.1)-(14.3)
            out += Cm[in + n] * h[n];
        }
        out += skip * ut;
        if (z) out *= silu(z[ix]);                                   // (14.5)
        y[ix] = out;
    }
    for (int n = 0; n < N; ++n) h_last[((long long)bi * D + d) * N + n] = h[n];
}

// ---------------------------------------------------------------------------------------------
// The backward pass of the same scan, (14.6), with recomputation instead of stored states.
//
// Like the forward, one thread owns one (b, d). Pass 1 reruns the recurrence and writes only the
// state entering every chunk of BWD_CHUNK steps (ck: (B, D, n_ck, N), n_ck = ceil(L / BWD_CHUNK)):
// L / BWD_CHUNK states instead of L. Pass 2 walks the chunks from the last to the first,
// recomputes that chunk's BWD_CHUNK states from its checkpoint (in thread-local memory) and runs
// the reverse recurrence through them:
//   dh_t  = g_t C_t + Abar_{t+1} dh_{t+1}   (g_t: the gradient of the ungated output y_t)
//   Abar_t = exp(delta_t A):  d(delta_t A) = dh_t h_{t-1} Abar_t,  dBu_t = dh_t
// Gradients of quantities shared across threads (B_t, C_t over the channels d; A and D over the
// batch) are summed with atomicAdd into zero-initialised outputs; du, ddelta, dz are per thread.
// Optional inputs (Dskip, z, h0, dstate) and outputs (dDskip, dz, dh0) may be null pointers.
#ifndef BWD_CHUNK
#define BWD_CHUNK 16
#endif

extern "C" __global__ void selective_scan_backward(const scalar_t* __restrict__ dout,
                                                   const scalar_t* __restrict__ u,
                                                   const scalar_t* __restrict__ delta,
                                                   const scalar_t* __restrict__ A,
                                                   const scalar_t* __restrict__ Bm,
                                                   const scalar_t* __restrict__ Cm,
                                                   const scalar_t* __restrict__ Dskip,
                                                   const scalar_t* __restrict__ z,
                                                   const scalar_t* __restrict__ h0,
                                                   const scalar_t* __restrict__ dstate,
                                                   scalar_t* __restrict__ ck,
                                                   scalar_t* __restrict__ du,
                                                   scalar_t* __restrict__ ddelta,
                                                   scalar_t* __restrict__ dA,
                                                   scalar_t* __restrict__ dB,
                                                   scalar_t* __restrict__ dC,
                                                   scalar_t* __restrict__ dDskip,
                                                   scalar_t* __restrict__ dz,
                                                   scalar_t* __restrict__ dh0,
                                                   int Bsz, long long L, int D, int N) {
    const int d = blockIdx.x * blockDim.x + threadIdx.x;
    const int bi = blockIdx.y;
    if (d >= D || bi >= Bsz) return;
    const long long bd = (long long)bi * D + d;
    const int n_ck = (int)((L + BWD_CHUNK - 1) / BWD_CHUNK);
    scalar_t a[MAX_N], h[MAX_N], dh[MAX_N], dA_acc[MAX_N];
    for (int n = 0; n < N; ++n) {
        a[n] = A[(long long)d * N + n];
        h[n] = h0 ? h0[bd * N + n] : (scalar_t)0;
        dh[n] = dstate ? dstate[bd * N + n] : (scalar_t)0;
        dA_acc[n] = (scalar_t)0;
    }
    const scalar_t skip = Dskip ? Dskip[d] : (scalar_t)0;

    // pass 1: the state entering each chunk
    for (long long t = 0; t < L; ++t) {
        const long long ix = ((long long)bi * L + t) * D + d, in = ((long long)bi * L + t) * N;
        if (t % BWD_CHUNK == 0)
            for (int n = 0; n < N; ++n) ck[(bd * n_ck + t / BWD_CHUNK) * N + n] = h[n];
        for (int n = 0; n < N; ++n) h[n] = s6_step(h[n], delta[ix], a[n], Bm[in + n], u[ix]);
    }

    // pass 2: chunks in reverse, states recomputed from the checkpoint
    scalar_t hs[BWD_CHUNK + 1][MAX_N];                     // hs[j] = h_{t0 + j - 1}
    scalar_t dD_acc = (scalar_t)0;
    for (int chunk = n_ck - 1; chunk >= 0; --chunk) {
        const long long t0 = (long long)chunk * BWD_CHUNK;
        const int c = (int)min((long long)BWD_CHUNK, L - t0);
        for (int n = 0; n < N; ++n) hs[0][n] = ck[(bd * n_ck + chunk) * N + n];
        for (int j = 0; j < c; ++j) {
            const long long ix = ((long long)bi * L + t0 + j) * D + d, in = ((long long)bi * L + t0 + j) * N;
            for (int n = 0; n < N; ++n)
                hs[j + 1][n] = s6_step(hs[j][n], delta[ix], a[n], Bm[in + n], u[ix]);
        }
        for (int j = c - 1; j >= 0; --j) {
            const long long ix = ((long long)bi * L + t0 + j) * D + d, in = ((long long)bi * L + t0 + j) * N;
            const scalar_t dt = delta[ix], ut = u[ix];
            scalar_t g = dout[ix];
            if (z) {                                        // out = y * silu(z)
                scalar_t y = skip * ut;
                for (int n = 0; n < N; ++n) y += Cm[in + n] * hs[j + 1][n];
                const scalar_t s = (scalar_t)1 / ((scalar_t)1 + exp(-z[ix]));
                if (dz) dz[ix] = g * y * s * ((scalar_t)1 + z[ix] * ((scalar_t)1 - s));
                g *= z[ix] * s;
            }
            dD_acc += g * ut;
            scalar_t du_t = g * skip, ddt = (scalar_t)0;
            for (int n = 0; n < N; ++n) {
                dh[n] += g * Cm[in + n];                    // the direct part of dh_t
                atomicAdd(&dC[in + n], g * hs[j + 1][n]);
                const scalar_t abar = exp(dt * a[n]);
                const scalar_t dlog = dh[n] * hs[j][n] * abar;   // d(delta_t A_n)
                dA_acc[n] += dlog * dt;
                ddt += dlog * a[n] + dh[n] * Bm[in + n] * ut;
                du_t += dh[n] * dt * Bm[in + n];
                atomicAdd(&dB[in + n], dh[n] * dt * ut);
                dh[n] *= abar;                               // on to h_{t-1}
            }
            ddelta[ix] = ddt;
            du[ix] = du_t;
        }
    }
    for (int n = 0; n < N; ++n) {
        atomicAdd(&dA[(long long)d * N + n], dA_acc[n]);
        if (dh0) dh0[bd * N + n] = dh[n];
    }
    if (dDskip) atomicAdd(&dDskip[d], dD_acc);
}
