// Linear scan h_t = a_t * h_{t-1} + b_t (chapter 9, (9.1)) for many independent channels.
//
// Layout: a, b, h are (C, L) row-major, one channel per row (the Python wrapper moves the
// channels of a (B, L, ...) array into rows first); h0 is (C,). One thread block scans one
// channel. The channel is cut into tiles of TILE = blockDim.x * ITEMS elements; tile after tile:
//
//   1. each thread loads ITEMS consecutive (a, b) pairs into registers and composes them with
//      (9.2), (a, b) . (a', b') = (a' a, a' b + b'), into one pair: its thread aggregate;
//   2. the block scans the thread aggregates: a warp-shuffle inclusive scan inside each warp
//      (__shfl_up_sync, log2(32) = 5 rounds), then warp 0 scans the warp totals held in shared
//      memory, and each warp adds the total of the warps before it;
//   3. the carry h (the last state of the previous tile, h0 for the first) enters every thread's
//      exclusive prefix, and each thread replays its ITEMS elements from registers and writes h_t.
//
// Every element is read once and written once. A tile that runs past L (L not a multiple of
// TILE) pads with the identity (1, 0), which leaves every state unchanged.
//
// blockDim.x must be a multiple of 32 (full-warp shuffles); the wrapper uses 256.
// SCALAR_T is float or double, set by the wrapper (-DSCALAR_T=double).
#ifndef SCALAR_T
#define SCALAR_T float
#endif
#ifndef ITEMS
#define ITEMS 4
#endif

typedef SCALAR_T scalar_t;

struct Pair { scalar_t a, b; };

// (9.2): first `left`, then `right`.
__device__ __forceinline__ Pair compose(Pair left, Pair right) {
    Pair out;
    out.a = right.a * left.a;
    out.b = right.a * left.b + right.b;
    return out;
}

__device__ __forceinline__ Pair shfl_up(Pair p, int delta) {
    Pair out;
    out.a = __shfl_up_sync(0xffffffffu, p.a, delta);
    out.b = __shfl_up_sync(0xffffffffu, p.b, delta);
    return out;
}

extern "C" __global__ void linear_scan(const scalar_t* __restrict__ a,
                                       const scalar_t* __restrict__ b,
                                       const scalar_t* __restrict__ h0,
                                       scalar_t* __restrict__ h,
                                       long long L) {
    __shared__ Pair warp_total[32];          // blockDim.x <= 1024 = 32 warps
    __shared__ scalar_t carry;               // h at the end of the previous tile
    const long long row = (long long)blockIdx.x * L;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int n_warps = (blockDim.x + 31) >> 5;
    const long long tile = (long long)blockDim.x * ITEMS;
    if (threadIdx.x == 0) carry = h0 ? h0[blockIdx.x] : (scalar_t)0;

    for (long long start = 0; start < L; start += tile) {
        // 1. load ITEMS pairs, compose them into the thread aggregate
        Pair item[ITEMS];
        Pair agg = {(scalar_t)1, (scalar_t)0};
        const long long first = start + (long long)threadIdx.x * ITEMS;
        #pragma unroll
        for (int i = 0; i < ITEMS; ++i) {
            const long long t = first + i;
            item[i].a = t < L ? a[row + t] : (scalar_t)1;
            item[i].b = t < L ? b[row + t] : (scalar_t)0;
            agg = compose(agg, item[i]);
        }
        // 2a. inclusive scan of the aggregates inside the warp
        Pair inc = agg;
        #pragma unroll
        for (int delta = 1; delta < 32; delta <<= 1) {
            Pair up = shfl_up(inc, delta);
            if (lane >= delta) inc = compose(up, inc);
        }
        if (lane == 31) warp_total[warp] = inc;
        __syncthreads();                    // also publishes `carry` from the previous tile
        // 2b. warp 0 scans the warp totals
        if (warp == 0) {
            Pair w = lane < n_warps ? warp_total[lane] : Pair{(scalar_t)1, (scalar_t)0};
            #pragma unroll
            for (int delta = 1; delta < 32; delta <<= 1) {
                Pair up = shfl_up(w, delta);
                if (lane >= delta) w = compose(up, w);
            }
            if (lane < n_warps) warp_total[lane] = w;
        }
        __syncthreads();
        // exclusive prefix of this thread = (warps before) . (lanes before in this warp)
        Pair before = shfl_up(inc, 1);
        if (lane == 0) before = Pair{(scalar_t)1, (scalar_t)0};
        if (warp > 0) before = compose(warp_total[warp - 1], before);
        // 3. the state entering this thread's items, then replay them
        scalar_t state = before.a * carry + before.b;
        #pragma unroll
        for (int i = 0; i < ITEMS; ++i) {
            state = item[i].a * state + item[i].b;
            const long long t = first + i;
            if (t < L) h[row + t] = state;
        }
        __syncthreads();                    // every thread has read `carry`
        if (threadIdx.x == blockDim.x - 1) carry = state;   // the last thread ends the tile
    }
}
