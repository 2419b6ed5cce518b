// attention.cu — scaled dot-product attention, FP16 in and out, FP32 softmax.
//
// attention_prefill_d{32,64,128}: flash-style (online softmax, no seq×seq matrix) on tensor cores.
//   Computes:  O = softmax(scale·Q Kᵀ + mask) V per (sequence, query head); see AttentionParams.
//   Work unit: (b, h, block of RS_ATTN_BQ = 64 queries): 4 warps of 16 query rows; keys in
//              steps of RS_ATTN_BKV = 64 staged in shared memory. S = Q·Kᵀ and O += P·V with
//              mma.sync m16n8k16; P is rounded to FP16 for the second product.
//   Shapes:    any seq, batch, heads; head_dim 32, 64 or 128; heads_q a multiple of heads_kv (GQA);
//              padding mask via seq_lens, optional causal mask.
//   Reference: kernels/reference.rs::attention.
//
// attention_decode_d{32,64,128}: one new token per sequence: appends its k and v to the KV cache,
//   then attends its query over the cache (SIMT).
//   Work unit: (b, kv head); the unit's block first writes the new k, v rows into the cache
//              slot (and reads them from k, v, not from the cache, for that position). Each
//              lane holds 16 bytes of a cached row (head_dim/8 lanes per row), so the 8
//              warps cover 32 (d64) rows at a time, four such steps loaded before the math;
//              each row slot keeps an online softmax, and the slots are merged in a fixed
//              order, so the output does not depend on the grid.
//   Shapes:    any position; head_dim 32, 64 or 128; GQA (each query head of the group in
//              turn, re-reading the cache from L1/L2).
//   Reference: kernels/reference.rs::decode_attention.
#include <math_constants.h>

#include "attention_decode.cuh"
#include "common.cuh"

namespace {

using rs::u64;
constexpr float LOG2E = 1.4426950408889634f;

template <int D>
__device__ __forceinline__ void prefill(const AttentionParams& p, __half* smem) {
    constexpr int BQ = RS_ATTN_BQ, BKV = RS_ATTN_BKV, LDS = D + 8, CH = D / 8;
    constexpr int THREADS = RS_ATTN_THREADS;
    static_assert(BQ == 16 * (THREADS / 32), "one warp per 16 query rows");
    __half* Qs = smem;             // [BQ][LDS]
    __half* Ks = Qs + BQ * LDS;    // [BKV][LDS]
    __half* Vs = Ks + BKV * LDS;   // [BKV][LDS]
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const unsigned qblocks = (p.seq + BQ - 1) / BQ;
    const u64 units = (u64)p.batch * p.heads_q * qblocks;
    const unsigned group = p.heads_q / p.heads_kv;
    const float scale_log2 = p.scale * LOG2E;

    RS_FOR_EACH_UNIT(u, units) {
        const unsigned qb = u % qblocks;
        const u64 rest = u / qblocks;
        const unsigned h = rest % p.heads_q;
        const unsigned b = rest / p.heads_q;
        const unsigned hk = h / group;
        const unsigned q0 = qb * BQ;
        const unsigned valid = p.seq_lens ? min(rs::ptr<const unsigned>(p.seq_lens)[b], p.seq) : p.seq;
        const u64 row0 = (u64)b * p.seq;
        const __half* Q = rs::ptr<const __half>(p.q) + (u64)h * D;
        const __half* K = rs::ptr<const __half>(p.k) + (u64)hk * D;
        const __half* V = rs::ptr<const __half>(p.v) + (u64)hk * D;

        __syncthreads();  // the previous unit is done with shared memory
        for (int c = tid; c < BQ * CH; c += THREADS) {
            const unsigned r = c / CH, cc = (c % CH) * 8;
            const bool ok = q0 + r < p.seq;
            rs::cp_async16(Qs + r * LDS + cc, ok ? Q + (row0 + q0 + r) * p.q_stride + cc : Q, ok);
        }
        rs::cp_async_commit();
        rs::cp_async_wait<0>();
        __syncthreads();
        unsigned qf[D / 16][4];
#pragma unroll
        for (int kc = 0; kc < D / 16; ++kc)
            rs::ldmatrix_x4(qf[kc], Qs + (warp * 16 + (lane & 15)) * LDS + kc * 16 + (lane >> 4) * 8);

        float o[D / 8][4];
#pragma unroll
        for (int i = 0; i < D / 8; ++i)
#pragma unroll
            for (int e = 0; e < 4; ++e) o[i][e] = 0.0f;
        float m_run[2] = {-CUDART_INF_F, -CUDART_INF_F}, l_run[2] = {0.0f, 0.0f};
        const unsigned qrow[2] = {q0 + warp * 16 + (lane >> 2), q0 + warp * 16 + (lane >> 2) + 8};
        const unsigned kv_end = p.causal ? min(valid, q0 + BQ) : valid;

        for (unsigned kb = 0; kb < kv_end; kb += BKV) {
            __syncthreads();  // every warp is done with the previous K/V slice
            for (int c = tid; c < BKV * CH; c += THREADS) {
                const unsigned r = c / CH, cc = (c % CH) * 8;
                const bool ok = kb + r < valid;
                rs::cp_async16(Ks + r * LDS + cc, ok ? K + (row0 + kb + r) * p.k_stride + cc : K, ok);
                rs::cp_async16(Vs + r * LDS + cc, ok ? V + (row0 + kb + r) * p.v_stride + cc : V, ok);
            }
            rs::cp_async_commit();
            rs::cp_async_wait<0>();
            __syncthreads();

            float s[BKV / 8][4];
#pragma unroll
            for (int i = 0; i < BKV / 8; ++i)
#pragma unroll
                for (int e = 0; e < 4; ++e) s[i][e] = 0.0f;
#pragma unroll
            for (int nt = 0; nt < BKV / 8; nt += 2)
#pragma unroll
                for (int kc = 0; kc < D / 16; ++kc) {
                    unsigned r[4];
                    rs::ldmatrix_x4(r, Ks + (nt * 8 + (lane & 7) + ((lane >> 4) << 3)) * LDS + kc * 16 +
                                           ((lane >> 3) & 1) * 8);
                    rs::mma_16816(s[nt], qf[kc], r[0], r[1]);
                    rs::mma_16816(s[nt + 1], qf[kc], r[2], r[3]);
                }

            // Mask, scale into the log2 domain, and take each row's maximum.
            float mx[2] = {-CUDART_INF_F, -CUDART_INF_F};
#pragma unroll
            for (int nt = 0; nt < BKV / 8; ++nt)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const unsigned key = kb + nt * 8 + (lane & 3) * 2 + (e & 1);
                    const int rr = e >> 1;
                    const bool masked = key >= valid || (p.causal && key > qrow[rr]);
                    const float v = masked ? -CUDART_INF_F : s[nt][e] * scale_log2;
                    s[nt][e] = v;
                    mx[rr] = fmaxf(mx[rr], v);
                }
            float corr[2];
#pragma unroll
            for (int rr = 0; rr < 2; ++rr) {
                mx[rr] = fmaxf(mx[rr], __shfl_xor_sync(0xffffffffu, mx[rr], 1));
                mx[rr] = fmaxf(mx[rr], __shfl_xor_sync(0xffffffffu, mx[rr], 2));
                const float m_new = fmaxf(m_run[rr], mx[rr]);
                corr[rr] = m_new == -CUDART_INF_F ? 1.0f : exp2f(m_run[rr] - m_new);
                m_run[rr] = m_new;
                l_run[rr] *= corr[rr];
            }
#pragma unroll
            for (int nt = 0; nt < BKV / 8; ++nt)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int rr = e >> 1;
                    const float pv = m_run[rr] == -CUDART_INF_F ? 0.0f : exp2f(s[nt][e] - m_run[rr]);
                    s[nt][e] = pv;
                    l_run[rr] += pv;
                }
#pragma unroll
            for (int dt = 0; dt < D / 8; ++dt)
#pragma unroll
                for (int e = 0; e < 4; ++e) o[dt][e] *= corr[e >> 1];

            // O += P·V: the accumulator layout of two n8 tiles of S is the A layout of one k16 step.
#pragma unroll
            for (int kc = 0; kc < BKV / 16; ++kc) {
                const unsigned a[4] = {rs::pack_half2(s[2 * kc][0], s[2 * kc][1]),
                                       rs::pack_half2(s[2 * kc][2], s[2 * kc][3]),
                                       rs::pack_half2(s[2 * kc + 1][0], s[2 * kc + 1][1]),
                                       rs::pack_half2(s[2 * kc + 1][2], s[2 * kc + 1][3])};
#pragma unroll
                for (int dt = 0; dt < D / 8; dt += 2) {
                    unsigned r[4];
                    rs::ldmatrix_x4_trans(r, Vs + (kc * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LDS + dt * 8 +
                                                 (lane >> 4) * 8);
                    rs::mma_16816(o[dt], a, r[0], r[1]);
                    rs::mma_16816(o[dt + 1], a, r[2], r[3]);
                }
            }
        }

        __half* O = rs::ptr<__half>(p.o) + (u64)h * D;
#pragma unroll
        for (int rr = 0; rr < 2; ++rr) {
            float l = l_run[rr];
            l += __shfl_xor_sync(0xffffffffu, l, 1);
            l += __shfl_xor_sync(0xffffffffu, l, 2);
            if (qrow[rr] >= p.seq) continue;
            const float inv = l > 0.0f ? 1.0f / l : 0.0f;
            __half* out = O + (row0 + qrow[rr]) * p.o_stride + (lane & 3) * 2;
#pragma unroll
            for (int dt = 0; dt < D / 8; ++dt)
                *reinterpret_cast<__half2*>(out + dt * 8) =
                    __floats2half2_rn(o[dt][2 * rr] * inv, o[dt][2 * rr + 1] * inv);
        }
    }
}

template <int D>
__device__ __forceinline__ void decode(const DecodeAttentionParams& p) {
    RS_FOR_EACH_UNIT(u, (u64)p.batch * p.heads_kv) rs::decode_attention_unit<D>(p, u);
}

}  // namespace

extern __shared__ __align__(128) unsigned char rs_attn_smem[];

RS_KERNEL void __launch_bounds__(RS_ATTN_THREADS) attention_prefill_d32(const __grid_constant__ AttentionParams p) {
    rs::pdl_sync();
    prefill<32>(p, reinterpret_cast<__half*>(rs_attn_smem));
}

RS_KERNEL void __launch_bounds__(RS_ATTN_THREADS) attention_prefill_d64(const __grid_constant__ AttentionParams p) {
    rs::pdl_sync();
    prefill<64>(p, reinterpret_cast<__half*>(rs_attn_smem));
}

RS_KERNEL void __launch_bounds__(RS_ATTN_THREADS) attention_prefill_d128(const __grid_constant__ AttentionParams p) {
    rs::pdl_sync();
    prefill<128>(p, reinterpret_cast<__half*>(rs_attn_smem));
}

RS_KERNEL void __launch_bounds__(RS_DECODE_THREADS) attention_decode_d32(const __grid_constant__ DecodeAttentionParams p) {
    rs::pdl_sync();
    decode<32>(p);
}

RS_KERNEL void __launch_bounds__(RS_DECODE_THREADS) attention_decode_d64(const __grid_constant__ DecodeAttentionParams p) {
    rs::pdl_sync();
    decode<64>(p);
}

RS_KERNEL void __launch_bounds__(RS_DECODE_THREADS) attention_decode_d128(const __grid_constant__ DecodeAttentionParams p) {
    rs::pdl_sync();
    decode<128>(p);
}
