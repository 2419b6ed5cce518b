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
//   then attends its query over the cache (SIMT); with inv_freq, RoPE on q and k first.
//   Work unit: (b, query head); the first head of each kv group writes the new k, v rows into
//              the cache slot, and every head reads them from k, v (rotated in registers), not
//              from the cache, for that position. Each lane holds 16 bytes of a cached row
//              (head_dim/8 lanes per row), so the 8 warps cover 32 (d64) rows at a time, four
//              such steps loaded before the math; each row slot keeps an online softmax, and
//              the slots are merged in a fixed order, so the output does not depend on the grid.
//              A unit a query head (not a kv head's group in turn) puts the group's heads on
//              SMs side by side: at decode batch sizes the units are latency-bound. Before the
//              wait for the previous kernel a block asks L2 for the cached rows of its first
//              units (rs::decode_attention_prefetch): rows of earlier steps, which that kernel
//              does not write; the extent is read from p.pos then, a hint only.
// attention_decode_split_d{32,64,128}: the same where a launch has few (sequence, query head)
//   pairs and long caches (rs::decode_chunks > 1): a unit is (chunk, b, query head), the chunk's
//   state goes to DecodeAttentionParams.partial, and the last chunk of a sequence to finish
//   merges its chunks in chunk order (flash-decoding in one launch), so the output does not
//   depend on the grid either. The library picks it by shape (attention_decode_kernel).
//   Shapes:    any position; head_dim 32, 64 or 128; GQA (the group's heads read the same cache
//              rows, mostly from L2).
//   Reference: kernels/reference.rs::decode_attention (after ::rope when fused).
#include "attention_decode.cuh"
#include "attention_prefill.cuh"
#include "common.cuh"

namespace {

using rs::u64;

template <bool RS_COUNTED, int D>
__device__ __forceinline__ void prefill(const AttentionParams& p, __half* smem, const RsTicket& t) {
    constexpr int BQ = RS_ATTN_BQ, BKV = RS_ATTN_BKV, LDS = D + 8, CH = D / 8;
    constexpr int THREADS = RS_ATTN_THREADS;
    static_assert(BQ == 16 * (THREADS / 32), "one warp per 16 query rows");
    __half* Qs = smem;             // [BQ][LDS]
    __half* Ks = Qs + BQ * LDS;    // [BKV][LDS]
    __half* Vs = Ks + BKV * LDS;   // [BKV][LDS]
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const u64 units = (u64)p.batch * p.heads_q * ((p.seq + BQ - 1) / BQ);
    const float scale_log2 = p.scale * rs::ATTN_LOG2E;

    RS_FOR_EACH_UNIT(u, units, t) {
        const rs::AttnUnit<BQ> w(p, u);
        const __half* Q = rs::ptr<const __half>(p.q) + (u64)w.h * D;
        const __half* K = rs::ptr<const __half>(p.k) + (u64)w.hk * D;
        const __half* V = rs::ptr<const __half>(p.v) + (u64)w.hk * D;

        __syncthreads();  // the previous unit is done with shared memory
        for (int c = tid; c < BQ * CH; c += THREADS) {
            const unsigned r = c / CH, cc = (c % CH) * 8;
            const bool ok = w.q0 + r < p.seq;
            rs::cp_async16(Qs + r * LDS + cc, ok ? Q + (w.row0 + w.q0 + r) * p.q_stride + cc : Q, ok);
        }
        rs::cp_async_commit();
        rs::cp_async_wait<0>();
        __syncthreads();
        unsigned qf[D / 16][4];
#pragma unroll
        for (int kc = 0; kc < D / 16; ++kc)
            rs::ldmatrix_x4(qf[kc], Qs + (warp * 16 + (lane & 15)) * LDS + kc * 16 + (lane >> 4) * 8);

        float o[D / 8][4] = {};
        rs::SoftmaxRows rows(w.q0, warp, lane);
        const unsigned kv_end = w.kv_end(p);

        for (unsigned kb = 0; kb < kv_end; kb += BKV) {
            __syncthreads();  // every warp is done with the previous K/V slice
            for (int c = tid; c < BKV * CH; c += THREADS) {
                const unsigned r = c / CH, cc = (c % CH) * 8;
                const bool ok = kb + r < w.valid;
                rs::cp_async16(Ks + r * LDS + cc, ok ? K + (w.row0 + kb + r) * p.k_stride + cc : K, ok);
                rs::cp_async16(Vs + r * LDS + cc, ok ? V + (w.row0 + kb + r) * p.v_stride + cc : V, ok);
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
            rows.update<BKV, D>(s, o, kb, w.valid, p.causal, w.q0 + warp * 16, scale_log2, lane);

            // O += P·V.
#pragma unroll
            for (int kc = 0; kc < BKV / 16; ++kc) {
                unsigned a[4];
                rs::p_fragment<BKV>(s, kc, a);
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
        rows.store<D>(o, rs::ptr<__half>(p.o) + (u64)w.h * D, w.row0, p.seq, p.o_stride, lane);
    }
}

template <bool RS_COUNTED, int D>
__device__ __forceinline__ void decode(const DecodeAttentionParams& p, const RsTicket& t) {
    RS_FOR_EACH_UNIT(u, (u64)p.batch * p.heads_q, t) {
        rs::decode_attention_unit<D, RS_DECODE_THREADS / 32, RS_DECODE_U>(p, u);
    }
}

template <bool RS_COUNTED, int D>
__device__ __forceinline__ void decode_split(const DecodeAttentionParams& p, const RsTicket& t) {
    const unsigned chunks = rs::decode_chunks(p.batch, p.heads_q, p.max_len);
    RS_FOR_EACH_UNIT(u, (u64)chunks * p.batch * p.heads_q, t) {
        rs::decode_attention_unit<D, RS_DECODE_THREADS / 32, RS_DECODE_U, true>(p, u, chunks);
    }
}

}  // namespace

extern __shared__ __align__(128) unsigned char rs_attn_smem[];

RS_KERNEL_PAIR(__launch_bounds__(RS_ATTN_THREADS), attention_prefill_d32, AttentionParams) {
    rs::pdl_sync();
    prefill<RS_COUNTED, 32>(p, reinterpret_cast<__half*>(rs_attn_smem), t);
}

RS_KERNEL_PAIR(__launch_bounds__(RS_ATTN_THREADS), attention_prefill_d64, AttentionParams) {
    rs::pdl_sync();
    prefill<RS_COUNTED, 64>(p, reinterpret_cast<__half*>(rs_attn_smem), t);
}

RS_KERNEL_PAIR(__launch_bounds__(RS_ATTN_THREADS), attention_prefill_d128, AttentionParams) {
    rs::pdl_sync();
    prefill<RS_COUNTED, 128>(p, reinterpret_cast<__half*>(rs_attn_smem), t);
}

RS_KERNEL_PAIR(__launch_bounds__(RS_DECODE_THREADS, 3), attention_decode_d32, DecodeAttentionParams) {
    rs::decode_attention_prefetch<32>(p, 1);
    rs::pdl_sync();
    decode<RS_COUNTED, 32>(p, t);
}

RS_KERNEL_PAIR(__launch_bounds__(RS_DECODE_THREADS), attention_decode_d64, DecodeAttentionParams) {
    rs::decode_attention_prefetch<64>(p, 1);
    rs::pdl_sync();
    decode<RS_COUNTED, 64>(p, t);
}

// The plain build of attention_decode_d64 with its registers capped for three blocks an SM (two
// uncapped): the same instructions in the PTX but for the directive and integer code, so the
// same bits (kernels::decode_attention_matches_reference). The runtime launches it where its
// grid takes a launch's units in fewer rounds (runtime/rt.rs, Runtime::issue): on partitions
// where the units outnumber two blocks an SM. The d32 and d128 builds are held to three (80
// registers; attention_decode_d128_counted spills 20 bytes; without the bound, since RoPE's
// angles are taken once a unit, nvcc gave d128 101).
RS_KERNEL void __launch_bounds__(RS_DECODE_THREADS, 3)
    attention_decode_d64_dense(const __grid_constant__ DecodeAttentionParams p, RS_TICKET t) {
    rs::decode_attention_prefetch<64>(p, 1);
    rs::pdl_sync();
    decode<false, 64>(p, t);
}

RS_KERNEL_PAIR(__launch_bounds__(RS_DECODE_THREADS, 3), attention_decode_d128, DecodeAttentionParams) {
    rs::decode_attention_prefetch<128>(p, 1);
    rs::pdl_sync();
    decode<RS_COUNTED, 128>(p, t);
}

RS_KERNEL_PAIR(__launch_bounds__(RS_DECODE_THREADS), attention_decode_split_d32, DecodeAttentionParams) {
    rs::decode_attention_prefetch<32>(p, rs::decode_chunks(p.batch, p.heads_q, p.max_len));
    rs::pdl_sync();
    decode_split<RS_COUNTED, 32>(p, t);
}

RS_KERNEL_PAIR(__launch_bounds__(RS_DECODE_THREADS), attention_decode_split_d64, DecodeAttentionParams) {
    rs::decode_attention_prefetch<64>(p, rs::decode_chunks(p.batch, p.heads_q, p.max_len));
    rs::pdl_sync();
    decode_split<RS_COUNTED, 64>(p, t);
}

RS_KERNEL_PAIR(__launch_bounds__(RS_DECODE_THREADS), attention_decode_split_d128, DecodeAttentionParams) {
    rs::decode_attention_prefetch<128>(p, rs::decode_chunks(p.batch, p.heads_q, p.max_len));
    rs::pdl_sync();
    decode_split<RS_COUNTED, 128>(p, t);
}
