// argmax.cu — greedy sampling: the index of each row's largest value.
//
// Computes:   out[r] = smallest index of the maximum of row r; NaNs are ignored (a row of
//             only NaN gives 0).
// Work unit:  one row; threads scan strided columns (eight loads in flight each), then a
//             fixed-order tree merges them.
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

RS_KERNEL void __launch_bounds__(RS_ARGMAX_THREADS) argmax_f16(const __grid_constant__ ArgmaxParams p) {
    using rs::u64;
    __shared__ float sv[RS_ARGMAX_THREADS / 32];
    __shared__ unsigned si[RS_ARGMAX_THREADS / 32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    RS_FOR_EACH_UNIT(r, p.rows) {
        const __half* row = rs::ptr<const __half>(p.logits) + r * p.stride;
        float bv = -CUDART_INF_F;
        unsigned bi = 0xffffffffu;
        // Eight loads in flight per thread, then the comparisons (the order is total, so the
        // result does not depend on the scan order).
        constexpr int U = 8;
        for (unsigned c0 = threadIdx.x; c0 < p.cols; c0 += U * blockDim.x) {
            float v[U];
#pragma unroll
            for (int j = 0; j < U; ++j) {
                const unsigned c = c0 + j * blockDim.x;
                v[j] = c < p.cols ? __half2float(row[c]) : -CUDART_INF_F;
            }
#pragma unroll
            for (int j = 0; j < U; ++j) {
                const unsigned c = c0 + j * blockDim.x;
                if (c < p.cols && better(v[j], c, bv, bi)) {
                    bv = v[j];
                    bi = c;
                }
            }
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            const unsigned oi = __shfl_xor_sync(0xffffffffu, bi, o);
            if (better(ov, oi, bv, bi)) {
                bv = ov;
                bi = oi;
            }
        }
        __syncthreads();  // the previous row's merge is done with sv/si
        if (lane == 0) {
            sv[warp] = bv;
            si[warp] = bi;
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            for (int w = 1; w < warps; ++w)
                if (better(sv[w], si[w], bv, bi)) {
                    bv = sv[w];
                    bi = si[w];
                }
            rs::ptr<unsigned>(p.out)[r] = bi == 0xffffffffu ? 0u : bi;
        }
    }
}
