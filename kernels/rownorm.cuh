// rownorm.cuh — LayerNorm / RMSNorm of one row as one warp, for kernels that normalise their
// input rows themselves (the skinny GEMMs, the decoder kernel). Same arithmetic as norm.cu:
// statistics in FP32 over the FP16 row (mean, then the centred variance), outputs rounded to
// FP16 (RMSNorm rounds x/rms before the scale). Reference: kernels/reference.rs::layer_norm.
#pragma once
#include "common.cuh"

namespace rs {

// One element into a row's sum (its square for RMSNorm, else itself), and its deviation's
// square into the second pass's: single-rounding operations that nvcc neither contracts nor
// splits. So every kernel that adds a row in the same order gets the same bits, whether the
// norm is known at compile time (norm.cu: a written `s += x * x` became a fused multiply-add
// there) or only at run time (the fused-norm GEMMs: a multiply, a select and an add).
__device__ __forceinline__ float stat_add(float s, float x, unsigned norm) {
    return norm == RS_NORM_RMS ? __fmaf_rn(x, x, s) : __fadd_rn(s, x);
}

__device__ __forceinline__ float deviation_add(float sq, float x, float mean) {
    const float d = __fsub_rn(x, mean);
    return __fmaf_rn(d, d, sq);
}

// Mean and 1/std (LayerNorm) or 0 and 1/rms (RMSNorm) of row `a` of k elements, as one warp.
// The first 1024 columns are loaded once and kept for the second pass; wider rows re-read
// the rest, BATCH chunks a lane at a time whose loads are issued together: a loop of one load
// an iteration waits a round trip to L2 for each (K = 4,096: 12 in a row, at the start of a
// decode GEMM that fuses its input norm). The sums are taken chunk by chunk in column order
// either way, so the bits do not depend on BATCH. The TMA decode GEMMs take 4; the skinny
// kernel keeps 1: with 4, gpt2-medium's decode step (K = 1,024, which never reaches the
// rest) was 4% slower on an H200, its norm-fused GEMMs each 0.7–3 µs slower (cause not traced).
template <int BATCH>
__device__ __forceinline__ float2 row_stats(const __half* a, unsigned k, unsigned norm, float eps) {
    constexpr int HELD = 4;  // 16-byte chunks per lane kept: 4 · 8 · 32 = 1024 columns
    const int lane = threadIdx.x & 31;
    float held[HELD][8];
#pragma unroll
    for (int i = 0; i < HELD; ++i) {
        const unsigned c = lane * 8 + i * 256;
        unpack8(c < k ? *reinterpret_cast<const uint4*>(a + c) : make_uint4(0, 0, 0, 0), held[i]);
    }
    auto rest = [&](auto&& f) {
        for (unsigned c0 = lane * 8 + HELD * 256; c0 < k; c0 += BATCH * 256) {
            uint4 v[BATCH];
#pragma unroll
            for (int j = 0; j < BATCH; ++j) {
                const unsigned c = c0 + j * 256;
                v[j] = c < k ? *reinterpret_cast<const uint4*>(a + c) : make_uint4(0, 0, 0, 0);
            }
#pragma unroll
            for (int j = 0; j < BATCH; ++j) {
                if (c0 + j * 256 >= k) break;
                float x[8];
                unpack8(v[j], x);
#pragma unroll
                for (int e = 0; e < 8; ++e) f(x[e]);
            }
        }
    };
    float s = 0.0f;
    auto add = [&](float x) { s = stat_add(s, x, norm); };
#pragma unroll
    for (int i = 0; i < HELD; ++i)
#pragma unroll
        for (int e = 0; e < 8; ++e) add(held[i][e]);
    rest(add);
    s = warp_sum(s);
    if (norm == RS_NORM_RMS) return make_float2(0.0f, rsqrtf(s / k + eps));
    const float mean = s / k;
    float sq = 0.0f;
    auto add_sq = [&](float x) { sq = deviation_add(sq, x, mean); };
#pragma unroll
    for (int i = 0; i < HELD; ++i)
#pragma unroll
        for (int e = 0; e < 8; ++e)
            if (lane * 8 + i * 256 < k) add_sq(held[i][e]);
    rest(add_sq);
    return make_float2(mean, rsqrtf(warp_sum(sq) / k + eps));
}

// The same statistics of a row of k elements that one warp already holds as FP16: lane l's
// chunk i is columns 8l + 256i … + 7 (chunks past k unused). For k ≤ 1024 the sums run in
// exactly row_stats' order.
template <int N>
__device__ __forceinline__ float2 held_stats(const uint4 (&h)[N], unsigned k, unsigned norm, float eps) {
    const unsigned lane = threadIdx.x & 31;
    auto each = [&](auto&& f) {
#pragma unroll
        for (int i = 0; i < N; ++i) {
            if (lane * 8 + i * 256 >= k) break;
            float x[8];
            unpack8(h[i], x);
#pragma unroll
            for (int e = 0; e < 8; ++e) f(x[e]);
        }
    };
    float s = 0.0f;
    each([&](float x) { s = stat_add(s, x, norm); });
    s = warp_sum(s);
    if (norm == RS_NORM_RMS) return make_float2(0.0f, rsqrtf(s / k + eps));
    const float mean = s / k;
    float sq = 0.0f;
    each([&](float x) { sq = deviation_add(sq, x, mean); });
    return make_float2(mean, rsqrtf(warp_sum(sq) / k + eps));
}

// Eight elements of a row normalised with its statistics and gamma/beta's eight values (beta
// zero for RMSNorm or none), rounded to FP16 (the values norm.cu would write).
__device__ __forceinline__ uint4 normalize8(uint4 a, float2 st, uint4 gamma8, uint4 beta8, unsigned norm) {
    float x[8], g[8], b[8];
    unpack8(a, x);
    unpack8(gamma8, g);
    unpack8(beta8, b);
    uint4 out;
    unsigned* o = reinterpret_cast<unsigned*>(&out);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        float v[2];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int e = 2 * i + h;
            v[h] = norm == RS_NORM_RMS ? round_half(x[e] * st.y) * g[e] : (x[e] - st.x) * st.y * g[e] + b[e];
        }
        o[i] = pack_half2(v[0], v[1]);
    }
    return out;
}

// The same with gamma and beta read at columns k..k+7 (beta optional).
__device__ __forceinline__ uint4 normalize8(uint4 a, float2 st, const __half* gamma, const __half* beta, unsigned norm,
                                            unsigned k) {
    const uint4 g = *reinterpret_cast<const uint4*>(gamma + k);
    const uint4 b = beta ? *reinterpret_cast<const uint4*>(beta + k) : make_uint4(0, 0, 0, 0);
    return normalize8(a, st, g, b, norm);
}

}  // namespace rs
