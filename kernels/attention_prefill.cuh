// attention_prefill.cuh — the parts of flash-style prefill attention that do not depend on how
// the two products are computed, shared by attention.cu (mma.sync) and attention_sm90.cu
// (wgmma): the unit's coordinates, one key block's online-softmax update, P as an FP16 A
// fragment, and the output rows.
//
// A warp owns 16 query rows of a unit. Its score and output accumulators use the mma.sync
// m16n8 (= wgmma m64nN, per warp) layout: s[j][e] is row g = lane/4 (+8 for e ≥ 2), column
// 8j + 2·(lane%4) (+1 for odd e). Each lane keeps the running maximum and sum of its two rows.
#pragma once
#include <math_constants.h>

#include "common.cuh"

namespace rs {

constexpr float ATTN_LOG2E = 1.4426950408889634f;

// Unit u of prefill attention: (sequence b, query head h, block of BQ queries from q0).
template <int BQ>
struct AttnUnit {
    unsigned b, h, hk, q0, valid;
    u64 row0;  // the sequence's first row

    __device__ AttnUnit(const AttentionParams& p, u64 u) {
        const unsigned qblocks = (p.seq + BQ - 1) / BQ;
        const unsigned qb = u % qblocks;
        const u64 rest = u / qblocks;
        h = rest % p.heads_q;
        b = rest / p.heads_q;
        hk = h / (p.heads_q / p.heads_kv);
        q0 = qb * BQ;
        valid = p.seq_lens ? min(ptr<const unsigned>(p.seq_lens)[b], p.seq) : p.seq;
        row0 = (u64)b * p.seq;
    }

    // Keys this unit attends to: all valid ones, or (causal) those up to its last query.
    __device__ unsigned kv_end(const AttentionParams& p) const {
        return p.causal ? min(valid, q0 + BQ) : valid;
    }
};

// 2^x by the SFU (ex2.approx: relative error ≤ 2^-22; 2^-inf = 0).
__device__ __forceinline__ float fast_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

// The running softmax state of a lane's two query rows.
struct SoftmaxRows {
    float m[2] = {-CUDART_INF_F, -CUDART_INF_F}, l[2] = {0.0f, 0.0f};
    unsigned q[2];  // the rows' query positions

    __device__ SoftmaxRows(unsigned q0, int warp, int lane) {
        q[0] = q0 + warp * 16 + (lane >> 2);
        q[1] = q[0] + 8;
    }

    // Scores s of keys kb .. kb + BKV - 1 → probabilities (unnormalised, in s); the output
    // accumulators are rescaled to the new maximum. Keys ≥ valid and (causal) after the row's
    // query are masked; `first` is the warp's first query row, and a block that masks nothing
    // for the warp skips the tests (the values are the same either way).
    template <int BKV, int D>
    __device__ __forceinline__ void update(float (&s)[BKV / 8][4], float (&o)[D / 8][4], unsigned kb, unsigned valid,
                                           bool causal, unsigned first, float scale_log2, int lane) {
        float mx[2] = {-CUDART_INF_F, -CUDART_INF_F};
        if (kb + BKV <= valid && (!causal || kb + BKV - 1 <= first)) {
#pragma unroll
            for (int nt = 0; nt < BKV / 8; ++nt)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    s[nt][e] *= scale_log2;
                    mx[e >> 1] = fmaxf(mx[e >> 1], s[nt][e]);
                }
        } else {
#pragma unroll
            for (int nt = 0; nt < BKV / 8; ++nt)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const unsigned key = kb + nt * 8 + (lane & 3) * 2 + (e & 1);
                    const int rr = e >> 1;
                    const bool masked = (key >= valid) | (causal & (key > q[rr]));  // (no branches)
                    const float v = masked ? -CUDART_INF_F : s[nt][e] * scale_log2;
                    s[nt][e] = v;
                    mx[rr] = fmaxf(mx[rr], v);
                }
        }
        float corr[2];
#pragma unroll
        for (int rr = 0; rr < 2; ++rr) {
            mx[rr] = fmaxf(mx[rr], __shfl_xor_sync(0xffffffffu, mx[rr], 1));
            mx[rr] = fmaxf(mx[rr], __shfl_xor_sync(0xffffffffu, mx[rr], 2));
            const float m_new = fmaxf(m[rr], mx[rr]);
            corr[rr] = m_new == -CUDART_INF_F ? 1.0f : fast_exp2(m[rr] - m_new);
            m[rr] = m_new;
            l[rr] *= corr[rr];
        }
#pragma unroll
        for (int nt = 0; nt < BKV / 8; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int rr = e >> 1;
                const float pv = m[rr] == -CUDART_INF_F ? 0.0f : fast_exp2(s[nt][e] - m[rr]);
                s[nt][e] = pv;
                l[rr] += pv;
            }
#pragma unroll
        for (int dt = 0; dt < D / 8; ++dt)
#pragma unroll
            for (int e = 0; e < 4; ++e) o[dt][e] *= corr[e >> 1];
    }

    // O / l for the rows below seq, into o_base (the head's column 0 of row 0) + row · stride.
    template <int D>
    __device__ __forceinline__ void store(const float (&o)[D / 8][4], __half* o_base, u64 row0, unsigned seq,
                                          unsigned stride, int lane) const {
#pragma unroll
        for (int rr = 0; rr < 2; ++rr) {
            float sum = l[rr];
            sum += __shfl_xor_sync(0xffffffffu, sum, 1);
            sum += __shfl_xor_sync(0xffffffffu, sum, 2);
            if (q[rr] >= seq) continue;
            const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
            __half* out = o_base + (row0 + q[rr]) * stride + (lane & 3) * 2;
#pragma unroll
            for (int dt = 0; dt < D / 8; ++dt)
                *reinterpret_cast<__half2*>(out + dt * 8) = __floats2half2_rn(o[dt][2 * rr] * inv, o[dt][2 * rr + 1] * inv);
        }
    }
};

// P of keys 16kc .. 16kc + 15 as the A fragment of one k16 step: the accumulator layout of two
// n8 tiles of S is the A layout.
template <int BKV>
__device__ __forceinline__ void p_fragment(const float (&s)[BKV / 8][4], int kc, unsigned (&a)[4]) {
    a[0] = pack_half2(s[2 * kc][0], s[2 * kc][1]);
    a[1] = pack_half2(s[2 * kc][2], s[2 * kc][3]);
    a[2] = pack_half2(s[2 * kc + 1][0], s[2 * kc + 1][1]);
    a[3] = pack_half2(s[2 * kc + 1][2], s[2 * kc + 1][3]);
}

}  // namespace rs
