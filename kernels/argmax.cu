// argmax.cu — greedy sampling: the index of each row's largest value.
//
// Computes:   out[r] = smallest index of the maximum of row r; NaNs are ignored (a row of
//             only NaN gives 0).
// Work unit:  one row; threads scan 16-byte vectors of it (four loads in flight each; the
//             unaligned first and last columns one by one), then a fixed-order tree merges them.
// Shapes:     any rows; cols ≥ 1 (vocabularies of 50257, 128256, ...); stride ≥ cols.
// Reference:  kernels/reference.rs::argmax.
#include <math_constants.h>

#include "common.cuh"

namespace {
// (value, index) ordering: larger value wins, ties go to the smaller index.
__device__ __forceinline__ bool better(float v, unsigned i, float bv, unsigned bi) {
    return v > bv || (v == bv && i < bi);
}
}  // namespace

RS_KERNEL_PAIR(__launch_bounds__(RS_ARGMAX_THREADS), argmax_f16, ArgmaxParams) {
    rs::pdl_sync();
    using rs::u64;
    __shared__ float sv[RS_ARGMAX_THREADS / 32];
    __shared__ unsigned si[RS_ARGMAX_THREADS / 32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    RS_FOR_EACH_UNIT(r, p.rows, t) {
        const __half* row = rs::ptr<const __half>(p.logits) + r * p.stride;
        float bv = -CUDART_INF_F;
        unsigned bi = 0xffffffffu;
        auto consider = [&](float v, unsigned c) {
            if (better(v, c, bv, bi)) {
                bv = v;
                bi = c;
            }
        };
        // Columns before the first 16-byte boundary and after the last one, one at a time.
        const unsigned head = min(p.cols, (unsigned)((16 - (reinterpret_cast<u64>(row) & 15)) & 15) / 2);
        const unsigned vecs = (p.cols - head) / 8, tail = head + vecs * 8;
        if (threadIdx.x < head) consider(__half2float(row[threadIdx.x]), threadIdx.x);
        for (unsigned c = tail + threadIdx.x; c < p.cols; c += blockDim.x) consider(__half2float(row[c]), c);
        // The aligned middle, 16 bytes per load, U loads in flight per thread, then the
        // comparisons (the order is total, so the result does not depend on the scan order).
        const uint4* mid = reinterpret_cast<const uint4*>(row + head);
        constexpr int U = 4;
        for (unsigned v0 = threadIdx.x; v0 < vecs; v0 += U * blockDim.x) {
            uint4 w[U];
#pragma unroll
            for (int j = 0; j < U; ++j) {
                const unsigned v = v0 + j * blockDim.x;
                w[j] = v < vecs ? mid[v] : make_uint4(0, 0, 0, 0);
            }
#pragma unroll
            for (int j = 0; j < U; ++j) {
                const unsigned v = v0 + j * blockDim.x;
                if (v >= vecs) break;
                float f[8];
                rs::unpack8(w[j], f);
#pragma unroll
                for (int e = 0; e < 8; ++e) consider(f[e], head + v * 8 + e);
            }
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            const unsigned oi = __shfl_xor_sync(0xffffffffu, bi, o);
            consider(ov, oi);
        }
        __syncthreads();  // the previous row's merge is done with sv/si
        if (lane == 0) {
            sv[warp] = bv;
            si[warp] = bi;
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            for (int w = 1; w < warps; ++w) consider(sv[w], si[w]);
            rs::ptr<unsigned>(p.out)[r] = bi == 0xffffffffu ? 0u : bi;
        }
    }
}
