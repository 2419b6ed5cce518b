// attention_decode.cuh — one work unit of decode attention, (sequence b, kv head): appends the
// token's k and v to the cache, then attends each query head of the group over the cache. Used
// by attention_decode_d* (attention.cu) and the decoder kernel (decoder.cu); needs
// RS_DECODE_THREADS threads. Every thread of the block must call it; it reads q, k and v
// with ordinary loads, so a caller that produced them in the same launch must have made them
// visible to the block first. Reference: kernels/reference.rs::decode_attention.
#pragma once
#include <math_constants.h>

#include "common.cuh"

namespace rs {

template <int D>
__device__ __forceinline__ void decode_attention_unit(const DecodeAttentionParams& p, u64 u) {
    constexpr int WARPS = RS_DECODE_THREADS / 32;
    constexpr int LR = D / 8;          // lanes per cached row, 16 bytes each
    constexpr int RPW = 32 / LR;       // rows a warp loads at once
    constexpr int ROWS = WARPS * RPW;  // rows per block step = partial softmax states
    constexpr int U = 4;               // steps whose rows are loaded before the math
    static_assert(LR == 4 || LR == 8 || LR == 16, "head_dim 32, 64 or 128");
    __shared__ float sm_m[ROWS], sm_l[ROWS], sm_w[ROWS], sm_o[ROWS][D];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int sub = lane % LR, row_id = warp * RPW + lane / LR;
    const unsigned group = p.heads_q / p.heads_kv;
    const float scale_log2 = p.scale * 1.4426950408889634f;

    const unsigned hk = u % p.heads_kv;
    const unsigned b = u / p.heads_kv;
    const unsigned pos = ptr<const unsigned>(p.pos)[b];
    const bool fresh = pos < p.max_len;  // the new token has a slot in the cache
    const unsigned len = min(pos + 1, p.max_len);
    const u64 new_row = (u64)b * p.qkv_stride + (u64)hk * D;
    const __half* k_new = ptr<const __half>(p.k) + new_row;
    const __half* v_new = ptr<const __half>(p.v) + new_row;
    const __half* Kc = ptr<const __half>(p.k_cache) + u * p.max_len * D;
    const __half* Vc = ptr<const __half>(p.v_cache) + u * p.max_len * D;
    // Append: this unit is the only writer of its slot, and reads the new row from k/v.
    if (fresh && tid < 2 * LR) {
        const bool is_v = tid >= LR;
        const unsigned c = (tid % LR) * 8;
        const uint4 val = *reinterpret_cast<const uint4*>((is_v ? v_new : k_new) + c);
        __half* cache = ptr<__half>(is_v ? p.v_cache : p.k_cache);
        *reinterpret_cast<uint4*>(cache + (u * p.max_len + pos) * D + c) = val;
    }
    for (unsigned g = 0; g < group; ++g) {
        const unsigned h = hk * group + g;
        float qv[8], acc[8];
        unpack8(*reinterpret_cast<const uint4*>(ptr<const __half>(p.q) + (u64)b * p.qkv_stride +
                                                     (u64)h * D + sub * 8),
                    qv);
#pragma unroll
        for (int e = 0; e < 8; ++e) {
            qv[e] *= scale_log2;
            acc[e] = 0.0f;
        }
        float m = -CUDART_INF_F, l = 0.0f;
        // Row r of warp w takes positions w·RPW + r + i·ROWS; the loop bound is per warp,
        // so the shuffles below never diverge.
        for (unsigned base = warp * RPW; base < len; base += U * ROWS) {
            uint4 kr[U], vr[U];
#pragma unroll
            for (int j = 0; j < U; ++j) {
                const unsigned t = base + lane / LR + j * ROWS;
                const bool in = t < len, now = fresh && t == pos;
                const __half* kp = now ? k_new : Kc + (u64)t * D;
                const __half* vp = now ? v_new : Vc + (u64)t * D;
                kr[j] = in ? *reinterpret_cast<const uint4*>(kp + sub * 8) : make_uint4(0, 0, 0, 0);
                vr[j] = in ? *reinterpret_cast<const uint4*>(vp + sub * 8) : make_uint4(0, 0, 0, 0);
            }
            float dot[U], m_new = m;
#pragma unroll
            for (int j = 0; j < U; ++j) {
                float kf[8], d = 0.0f;
                unpack8(kr[j], kf);
#pragma unroll
                for (int e = 0; e < 8; ++e) d += qv[e] * kf[e];
#pragma unroll
                for (int o = LR / 2; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
                dot[j] = base + lane / LR + j * ROWS < len ? d : -CUDART_INF_F;
                m_new = fmaxf(m_new, dot[j]);
            }
            const float corr = m == -CUDART_INF_F ? 0.0f : exp2f(m - m_new);
            l *= corr;
#pragma unroll
            for (int e = 0; e < 8; ++e) acc[e] *= corr;
#pragma unroll
            for (int j = 0; j < U; ++j) {
                const float pv = m_new == -CUDART_INF_F ? 0.0f : exp2f(dot[j] - m_new);
                float vf[8];
                unpack8(vr[j], vf);
                l += pv;
#pragma unroll
                for (int e = 0; e < 8; ++e) acc[e] += pv * vf[e];
            }
            m = m_new;
        }
        __syncthreads();  // the previous head's merge has read the shared arrays
        if (sub == 0) {
            sm_m[row_id] = m;
            sm_l[row_id] = l;
        }
#pragma unroll
        for (int e = 0; e < 8; ++e) sm_o[row_id][sub * 8 + e] = acc[e];
        __syncthreads();
        if (tid < ROWS) {
            float m_all = -CUDART_INF_F;
            for (int r = 0; r < ROWS; ++r) m_all = fmaxf(m_all, sm_m[r]);
            sm_w[tid] = sm_m[tid] == -CUDART_INF_F ? 0.0f : exp2f(sm_m[tid] - m_all);
        }
        __syncthreads();
        __half* o = ptr<__half>(p.o) + (u64)b * p.o_stride + (u64)h * D;
        for (int d = tid; d < D; d += RS_DECODE_THREADS) {
            float v = 0.0f, l_all = 0.0f;
            for (int r = 0; r < ROWS; ++r) {
                v += sm_o[r][d] * sm_w[r];
                l_all += sm_l[r] * sm_w[r];
            }
            o[d] = __float2half_rn(l_all > 0.0f ? v / l_all : 0.0f);
        }
    }
}

}  // namespace rs
