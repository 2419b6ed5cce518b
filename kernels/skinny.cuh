// skinny.cuh — the pieces of the decode GEMMs that fix their results' bits, shared by
// gemm_f16_skinny_m8 / _m32 (gemm.cu) and gemm_f16_stream_m8 (gemm_stream.cu), which must give
// the same bits: the fused norm's row statistics, one 32-wide K slice on tensor cores (C
// transposed: 16 weight rows as the first operand, 8 rows of A as the second), and the sum of
// the warps' partial tiles in warp order followed by the epilogue.
#pragma once
#include "common.cuh"
#include "rownorm.cuh"

namespace rs {

// With p.norm: warp w of `warps` computes the statistics of rows w, w + warps, … of A
// (rownorm.cuh, in the order norm.cu uses; BATCH as row_stats') into stats[row]. The caller
// synchronises the warps before reading them.
template <int BATCH>
__device__ __forceinline__ void skinny_norm_stats(const GemmParams& p, float2* stats, int warps) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (unsigned row = warp; row < p.m; row += warps) {
        const float2 v = row_stats<BATCH>(ptr<const __half>(p.a) + (u64)row * p.lda, p.k, p.norm, p.norm_eps);
        if (lane == 0) stats[row] = v;
    }
}

// One 32-wide K slice: lane (g, q) holds the 16 bytes at K offset 8q of weight rows g and g + 8
// (blo, bhi) and of A's row g (a) and uses them as its fragment elements; the same K
// permutation applies to both operands, so acc gets exact permutations of the sums.
__device__ __forceinline__ void skinny_slice(float (&acc)[4], uint4 blo, uint4 bhi, uint4 a) {
    const unsigned f0[4] = {blo.x, bhi.x, blo.y, bhi.y};
    const unsigned f1[4] = {blo.z, bhi.z, blo.w, bhi.w};
    mma_16816(acc, f0, a.x, a.y);
    mma_16816(acc, f1, a.z, a.w);
}

// A warp's partial tile of a unit (16 output columns) into red[warp][col][row], rows `ROWS`
// apart: lane (g, q) holds columns g and g + 8 of rows 8j + 2q and + 1.
template <int ROWS>
__device__ __forceinline__ void skinny_partial(float* red, int j, const float (&acc)[4]) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, q = lane & 3;
    float* w = red + (warp * RS_GEMM_T_BN) * ROWS + j * 8 + 2 * q;
    w[g * ROWS] = acc[0];
    w[g * ROWS + 1] = acc[1];
    w[(g + 8) * ROWS] = acc[2];
    w[(g + 8) * ROWS + 1] = acc[3];
}

// Column c of a unit's `row` once every warp's partial tile is in red: the WARPS partial sums
// added in warp order.
template <int WARPS, int ROWS>
__device__ __forceinline__ float skinny_sum(const float* red, unsigned c, unsigned row) {
    float v = 0.0f;
#pragma unroll
    for (int w = 0; w < WARPS; ++w) v += red[(w * RS_GEMM_T_BN + c) * ROWS + row];
    return v;
}

// The unit's outputs (columns n0 … n0 + 15 of its M rows), once every warp's partial tile is in
// red: skinny_sum, then gemm_store's epilogue. `threads` threads of the block take the outputs
// in turn.
template <int WARPS, int ROWS>
__device__ __forceinline__ void skinny_store(const GemmParams& p, const float* red, unsigned threads, unsigned n0,
                                             __half* C, const __half* R, const __half* bias) {
    for (unsigned t = threadIdx.x; t < p.m * RS_GEMM_T_BN; t += threads) {
        const unsigned row = t / RS_GEMM_T_BN, c = t % RS_GEMM_T_BN, col = n0 + c;
        if (col >= p.n) continue;
        gemm_store(p, C, R, bias, row, col, skinny_sum<WARPS, ROWS>(red, c, row), 0.0f, false, false);
    }
}

// RS_ACT_SWIGLU's epilogue (abi.h): the unit's columns c < 8 are gate and 8 + c up of output
// column n0 / 2 + c; each sum is rounded to FP16 as the GEMM would store it, then swiglu_f16's
// arithmetic. n is a multiple of 16 (the params' check).
template <int WARPS, int ROWS>
__device__ __forceinline__ void skinny_store_swiglu(const GemmParams& p, const float* red, unsigned threads,
                                                    unsigned n0, __half* C) {
    constexpr unsigned H = RS_GEMM_T_BN / 2;
    for (unsigned t = threadIdx.x; t < p.m * H; t += threads) {
        const unsigned row = t / H, c = t % H;
        const float g = round_half(skinny_sum<WARPS, ROWS>(red, c, row));
        const float u = round_half(skinny_sum<WARPS, ROWS>(red, c + H, row));
        C[(u64)row * p.ldc + n0 / 2 + c] = __float2half_rn(swiglu(g, u));
    }
}

}  // namespace rs
