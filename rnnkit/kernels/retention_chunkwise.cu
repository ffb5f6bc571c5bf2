// Chunkwise retention (chapter 16, (16.8)) in three launches.
//
//   chunk i of c <= C tokens, positions j = 0 .. c-1 inside it:
//     O_[i] = (Q_[i] K_[i]^T * D) V_[i] + (Q_[i] R_{i-1}) * xi,   D_jm = gamma^(j-m) (m <= j), xi_j = gamma^(j+1)
//     R_i   = gamma^c R_{i-1} + K_[i]^T (V_[i] * zeta),           zeta_j = gamma^(c-1-j)
//
// Layout (row-major): q, k (B, H, L, dk); v, o (B, H, L, dv); gamma (H,); state0, state_out and
// the entering states R_in (B, H, dk, dv) / (B, H, n_chunks, dk, dv). What runs in parallel:
//   1. retention_chunk_update  one block per (b, h, chunk): U_i = K_[i]^T (V_[i] * zeta)
//   2. retention_state_pass    one thread per (b, h, d, e): R_0 = state0, R_i = gamma^c R_{i-1} + U_i,
//                              writing the state entering every chunk (the only sequential part:
//                              n_chunks steps on dk * dv numbers instead of L steps)
//   3. retention_chunk_output  one block per (b, h, chunk): the masked scores of the chunk in shared
//                              memory (c x c), then every output row from them and R_{i-1}
// The work is the chunkwise algorithm's: O(L C d) for the scores, O(L dk dv) for the states. The
// products are plain FMA loops over shared memory and L1/L2-cached global reads; a tensor-core
// version (WMMA tf32 / bf16 fragments for the three matmuls, as flash-linear-attention's
// kernels do) is the next step, and the reason chunking exists on a GPU at all.
//
// Optional input state0 may be a null pointer (zeros).
#ifndef SCALAR_T
#define SCALAR_T float
#endif
#ifndef MAX_CHUNK
#define MAX_CHUNK 64
#endif

typedef SCALAR_T scalar_t;

// 1. U_i[d][e] = sum_j k_j[d] v_j[e] gamma^(c-1-j), threads striding over the dk * dv entries.
extern "C" __global__ void retention_chunk_update(const scalar_t* __restrict__ k,
                                                  const scalar_t* __restrict__ v,
                                                  const scalar_t* __restrict__ gamma,
                                                  scalar_t* __restrict__ U,
                                                  int H, long long L, int dk, int dv, int C, int n_chunks) {
    const int chunk = blockIdx.x, bh = blockIdx.y;         // bh = b * H + h
    const scalar_t g = gamma[bh % H];
    const long long t0 = (long long)chunk * C;
    const int c = (int)min((long long)C, L - t0);          // the last chunk may be shorter
    const scalar_t* kc = k + ((long long)bh * L + t0) * dk;
    const scalar_t* vc = v + ((long long)bh * L + t0) * dv;
    scalar_t* Ui = U + ((long long)bh * n_chunks + chunk) * dk * dv;
    for (int idx = threadIdx.x; idx < dk * dv; idx += blockDim.x) {
        const int d = idx / dv, e = idx % dv;
        scalar_t acc = (scalar_t)0;
        for (int j = 0; j < c; ++j)
            acc += kc[(long long)j * dk + d] * vc[(long long)j * dv + e] * pow(g, (scalar_t)(c - 1 - j));
        Ui[idx] = acc;
    }
}

// 2. The recurrence over chunks; R_in[i] is the state entering chunk i, state_out the final one.
extern "C" __global__ void retention_state_pass(const scalar_t* __restrict__ U,
                                                const scalar_t* __restrict__ gamma,
                                                const scalar_t* __restrict__ state0,
                                                scalar_t* __restrict__ R_in,
                                                scalar_t* __restrict__ state_out,
                                                int BH, int H, long long L, int dk, int dv, int C,
                                                int n_chunks) {
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long per = (long long)dk * dv;
    if (idx >= (long long)BH * per) return;
    const long long bh = idx / per, de = idx % per;
    const scalar_t g = gamma[bh % H];
    scalar_t R = state0 ? state0[idx] : (scalar_t)0;
    for (int i = 0; i < n_chunks; ++i) {
        const long long off = (bh * n_chunks + i) * per + de;
        R_in[off] = R;
        const int c = (int)min((long long)C, L - (long long)i * C);
        R = pow(g, (scalar_t)c) * R + U[off];
    }
    state_out[idx] = R;
}

// 3. O_[i]: scores S_jm = gamma^(j-m) q_j . k_m (m <= j) in shared memory, then
//    o_j[e] = sum_{m<=j} S_jm v_m[e] + gamma^(j+1) sum_d q_j[d] R_{i-1}[d][e].
extern "C" __global__ void retention_chunk_output(const scalar_t* __restrict__ q,
                                                  const scalar_t* __restrict__ k,
                                                  const scalar_t* __restrict__ v,
                                                  const scalar_t* __restrict__ gamma,
                                                  const scalar_t* __restrict__ R_in,
                                                  scalar_t* __restrict__ o,
                                                  int H, long long L, int dk, int dv, int C, int n_chunks) {
    __shared__ scalar_t S[MAX_CHUNK * MAX_CHUNK];
    const int chunk = blockIdx.x, bh = blockIdx.y;
    const scalar_t g = gamma[bh % H];
    const long long t0 = (long long)chunk * C;
    const int c = (int)min((long long)C, L - t0);
    const scalar_t* qc = q + ((long long)bh * L + t0) * dk;
    const scalar_t* kc = k + ((long long)bh * L + t0) * dk;
    const scalar_t* vc = v + ((long long)bh * L + t0) * dv;
    const scalar_t* R = R_in + ((long long)bh * n_chunks + chunk) * dk * dv;
    scalar_t* oc = o + ((long long)bh * L + t0) * dv;
    for (int idx = threadIdx.x; idx < c * c; idx += blockDim.x) {
        const int j = idx / c, m = idx % c;
        scalar_t s = (scalar_t)0;
        if (m <= j) {
            for (int d = 0; d < dk; ++d) s += qc[(long long)j * dk + d] * kc[(long long)m * dk + d];
            s *= pow(g, (scalar_t)(j - m));
        }
        S[idx] = s;
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < c * dv; idx += blockDim.x) {
        const int j = idx / dv, e = idx % dv;
        scalar_t intra = (scalar_t)0, inter = (scalar_t)0;
        for (int m = 0; m <= j; ++m) intra += S[j * c + m] * vc[(long long)m * dv + e];
        for (int d = 0; d < dk; ++d) inter += qc[(long long)j * dk + d] * R[(long long)d * dv + e];
        oc[(long long)j * dv + e] = intra + pow(g, (scalar_t)(j + 1)) * inter;
    }
}
