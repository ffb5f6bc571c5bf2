// Fused sequence kernels for the classic cells of chapters 1-3 (forward only):
//
//   elman_sequence  h_t = tanh(xw_t + h_{t-1} W_hh)                                  (1.1)
//   lstm_sequence   [i f g o] = xw_t + h_{t-1} W_h;  c_t = s(f) c_{t-1} + s(i) tanh(g);
//                   h_t = s(o) tanh(c_t)                           (2.1)-(2.7), "vanilla"
//   gru_sequence    [a_r a_z a_n] = xw_t;  [p_r p_z p_n] = h_{t-1} W_h;  r = s(a_r + p_r),
//                   z = s(a_z + p_z),  n = tanh(a_n + r (p_n + b_hn)),  h_t = (1 - z) n + z h_{t-1}
//                                                                     (3.1)-(3.5), reset_after
//
// The input projection xw = x W_x + b of every step is one GEMM done before the kernel (cuBLAS,
// through CuPy's matmul): only the recurrent product is inherently sequential. The kernel then runs
// the whole time loop in one launch, as cuDNN's persistent RNN and FlashRNN do, instead of L
// launches: one thread block per batch row b, one thread per hidden unit j (H <= 1024), the
// previous state h_{t-1} in shared memory (double-buffered, so one __syncthreads per step), the
// cell state c in a register. Thread j reads column j of W_h, whose rows are contiguous in j, so a
// warp's loads are coalesced; the weights (H x G values) stay in the L2 cache across steps at the
// sizes of the book (256 x 1024 float32 = 1 MiB). Holding them in shared memory or registers
// spread over many blocks (the persistent-RNN design proper) needs grid-wide synchronisation
// every step; that is the next step of this kernel, not taken here.
//
// Layout (row-major): xw (B, L, G), W_h (H, G), h0/c0 (B, H) or null, y (B, L, H), h_last and
// c_last (B, H). G = H (Elman), 4H (LSTM, blocks i f g o), 3H (GRU, blocks r z n).
#ifndef SCALAR_T
#define SCALAR_T float
#endif

typedef SCALAR_T scalar_t;

__device__ __forceinline__ scalar_t sigm(scalar_t x) { return (scalar_t)1 / ((scalar_t)1 + exp(-x)); }

// sum_k h[k] W[k, col] for one column, h in shared memory
__device__ __forceinline__ scalar_t row_times_col(const scalar_t* h, const scalar_t* __restrict__ W,
                                                   int H, int G, int col) {
    scalar_t acc = (scalar_t)0;
    for (int k = 0; k < H; ++k) acc += h[k] * W[(long long)k * G + col];
    return acc;
}

extern "C" __global__ void elman_sequence(const scalar_t* __restrict__ xw, const scalar_t* __restrict__ W_hh,
                                          const scalar_t* __restrict__ h0, scalar_t* __restrict__ y,
                                          scalar_t* __restrict__ h_last, long long L, int H) {
    extern __shared__ unsigned char smem[];
    scalar_t* buf = reinterpret_cast<scalar_t*>(smem);               // 2 x H
    const int b = blockIdx.x, j = threadIdx.x;
    if (j < H) buf[j] = h0 ? h0[(long long)b * H + j] : (scalar_t)0;
    __syncthreads();
    int cur = 0;
    for (long long t = 0; t < L; ++t) {
        const scalar_t* h = buf + cur * H;
        scalar_t* h_new = buf + (1 - cur) * H;
        if (j < H) {
            const scalar_t v = tanh(xw[((long long)b * L + t) * H + j] + row_times_col(h, W_hh, H, H, j));
            h_new[j] = v;
            y[((long long)b * L + t) * H + j] = v;
        }
        __syncthreads();
        cur = 1 - cur;
    }
    if (j < H) h_last[(long long)b * H + j] = buf[cur * H + j];
}

extern "C" __global__ void lstm_sequence(const scalar_t* __restrict__ xw, const scalar_t* __restrict__ W_h,
                                         const scalar_t* __restrict__ h0, const scalar_t* __restrict__ c0,
                                         scalar_t* __restrict__ y, scalar_t* __restrict__ h_last,
                                         scalar_t* __restrict__ c_last, long long L, int H) {
    extern __shared__ unsigned char smem[];
    scalar_t* buf = reinterpret_cast<scalar_t*>(smem);               // 2 x H
    const int b = blockIdx.x, j = threadIdx.x, G = 4 * H;
    scalar_t c = (scalar_t)0;
    if (j < H) {
        buf[j] = h0 ? h0[(long long)b * H + j] : (scalar_t)0;
        c = c0 ? c0[(long long)b * H + j] : (scalar_t)0;
    }
    __syncthreads();
    int cur = 0;
    for (long long t = 0; t < L; ++t) {
        const scalar_t* h = buf + cur * H;
        scalar_t* h_new = buf + (1 - cur) * H;
        if (j < H) {
            const scalar_t* x_t = xw + ((long long)b * L + t) * G;
            const scalar_t i_ = sigm(x_t[j] + row_times_col(h, W_h, H, G, j));
            const scalar_t f_ = sigm(x_t[H + j] + row_times_col(h, W_h, H, G, H + j));
            const scalar_t g_ = tanh(x_t[2 * H + j] + row_times_col(h, W_h, H, G, 2 * H + j));
            const scalar_t o_ = sigm(x_t[3 * H + j] + row_times_col(h, W_h, H, G, 3 * H + j));
            c = f_ * c + i_ * g_;
            const scalar_t v = o_ * tanh(c);
            h_new[j] = v;
            y[((long long)b * L + t) * H + j] = v;
        }
        __syncthreads();
        cur = 1 - cur;
    }
    if (j < H) {
        h_last[(long long)b * H + j] = buf[cur * H + j];
        c_last[(long long)b * H + j] = c;
    }
}

extern "C" __global__ void gru_sequence(const scalar_t* __restrict__ xw, const scalar_t* __restrict__ W_h,
                                        const scalar_t* __restrict__ b_hn, const scalar_t* __restrict__ h0,
                                        scalar_t* __restrict__ y, scalar_t* __restrict__ h_last,
                                        long long L, int H) {
    extern __shared__ unsigned char smem[];
    scalar_t* buf = reinterpret_cast<scalar_t*>(smem);               // 2 x H
    const int b = blockIdx.x, j = threadIdx.x, G = 3 * H;
    if (j < H) buf[j] = h0 ? h0[(long long)b * H + j] : (scalar_t)0;
    __syncthreads();
    int cur = 0;
    for (long long t = 0; t < L; ++t) {
        const scalar_t* h = buf + cur * H;
        scalar_t* h_new = buf + (1 - cur) * H;
        if (j < H) {
            const scalar_t* x_t = xw + ((long long)b * L + t) * G;
            const scalar_t r = sigm(x_t[j] + row_times_col(h, W_h, H, G, j));
            const scalar_t zg = sigm(x_t[H + j] + row_times_col(h, W_h, H, G, H + j));
            const scalar_t n = tanh(x_t[2 * H + j] + r * (row_times_col(h, W_h, H, G, 2 * H + j) + b_hn[j]));
            const scalar_t v = ((scalar_t)1 - zg) * n + zg * h[j];
            h_new[j] = v;
            y[((long long)b * L + t) * H + j] = v;
        }
        __syncthreads();
        cur = 1 - cur;
    }
    if (j < H) h_last[(long long)b * H + j] = buf[cur * H + j];
}
