// attention_sm90.cu — prefill attention on Hopper: both products on wgmma (HGMMA).
//
// attention_prefill_wgmma_d{64,128} and attention_prefill_wgmma_wide_d{64,128}: compute what
//   attention.cu's attention_prefill_d64/d128 compute (AttentionParams: padding mask, causal
//   mask, GQA, packed QKV rows), with the same online softmax (attention_prefill.cuh).
//   Work unit: (b, h, block of queries): 64 queries and one warpgroup (RS_ATTN_BQ, as the
//              mma.sync kernels), or for the wide kernels 128 queries and two warpgroups
//              (RS_ATTN_WIDE_BQ) that share each block of keys and values; a warpgroup has 4
//              warps of 16 query rows (wgmma's M = 64). Q and each block of RS_ATTN_BKV = 64
//              keys and values are copied with cp.async into 128-byte-swizzled tiles (64-column
//              panels of 128-byte rows); the next block's K and V are copied while the current
//              one is used (two stages). S = Q·Kᵀ: wgmma.m64n64k16, Q and K K-major from shared
//              memory. O += P·V: wgmma.m64nDk16 with P (FP16) in registers and V MN-major from
//              shared memory (transposed B). The unit's keys are taken in a fixed order, so the
//              output does not depend on the grid.
//   Shapes:    as attention_prefill_d64/d128.
// Only sm_90a has wgmma; on other targets the kernels trap (the runtime never picks them).
// Reference: kernels/reference.rs::attention.
#include "attention_prefill.cuh"
#include "common.cuh"
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#include "sm90.cuh"
#endif

namespace {

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

using namespace rs;

constexpr int BKV = RS_ATTN_BKV;
static_assert(BKV == 64, "S is one m64n64 product per k16 step");
static_assert(RS_ATTN_BQ == 64 && RS_ATTN_THREADS == 128, "one warpgroup per 64 query rows");
static_assert(RS_ATTN_WIDE_BQ == 128 && RS_ATTN_WIDE_THREADS == 256, "two warpgroups per 128 query rows");

// Copies rows [r0, r0 + ROWS) of a head (D halves at src + row · stride; rows ≥ limit are
// zero-filled) into `tile`: D/64 panels of ROWS × 128 bytes, 16-byte chunk c of row r at chunk
// c ^ (r mod 8) of its 128-byte row (the 128-byte swizzle). A thread copies one chunk column
// (cc = thread mod D/8) of every (128 / (D/8))-th row, so its swizzle and offsets are fixed.
template <int D, int ROWS, int THREADS>
__device__ __forceinline__ void load_tile(unsigned char* tile, const __half* src, u64 r0, unsigned limit,
                                          unsigned stride) {
    constexpr int CH = D / 8, STEP = THREADS / CH, PASSES = ROWS / STEP;
    static_assert(STEP % 8 == 0 && ROWS % STEP == 0, "a thread's rows share their swizzle");
    const unsigned cc = threadIdx.x % CH, r = threadIdx.x / CH;
    unsigned char* dst = tile + (cc / 8) * ROWS * 128 + r * 128 + (((cc % 8) ^ (r % 8)) << 4);
    const __half* from = src + (r0 + r) * stride + cc * 8;
#pragma unroll
    for (int i = 0; i < PASSES; ++i) {
        const bool ok = r + i * STEP < limit;
        cp_async16(dst + i * STEP * 128, ok ? from + (u64)i * STEP * stride : src, ok);
    }
}

// WG warpgroups, each with 64 query rows of the unit's BQ = 64·WG, sharing the keys and values.
template <bool RS_COUNTED, int D, int WG>
__device__ __forceinline__ void prefill(const AttentionParams& p, unsigned char* smem_raw, const RsTicket& t) {
    constexpr int BQ = 64 * WG, THREADS = 128 * WG;
    constexpr unsigned Q_BYTES = BQ * D * 2, KV_BYTES = BKV * D * 2;
    constexpr unsigned PANEL_Q = BQ * 128, PANEL_KV = BKV * 128;
    // Q, then two stages of K and V, from a 1024-byte boundary (the swizzle atom).
    unsigned char* smem = smem_raw + ((1024 - (smem_addr(smem_raw) & 1023)) & 1023);
    const unsigned base = smem_addr(smem);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, wg = WG == 1 ? 0 : warp / 4;
    const u64 units = (u64)p.batch * p.heads_q * ((p.seq + BQ - 1) / BQ);
    const float scale_log2 = p.scale * ATTN_LOG2E;

    RS_FOR_EACH_UNIT(u, units, t) {
        const AttnUnit<BQ> w(p, u);
        const __half* Q = ptr<const __half>(p.q) + (u64)w.h * D;
        const __half* K = ptr<const __half>(p.k) + (u64)w.hk * D;
        const __half* V = ptr<const __half>(p.v) + (u64)w.hk * D;
        const unsigned kv_end = w.kv_end(p);
        auto stage = [&](unsigned i) { return Q_BYTES + (i & 1) * 2 * KV_BYTES; };
        auto load_kv = [&](unsigned kb, unsigned i) {
            const unsigned rows = w.valid > kb ? w.valid - kb : 0;
            load_tile<D, BKV, THREADS>(smem + stage(i), K, w.row0 + kb, rows, p.k_stride);
            load_tile<D, BKV, THREADS>(smem + stage(i) + KV_BYTES, V, w.row0 + kb, rows, p.v_stride);
        };

        __syncthreads();  // the previous unit is done with shared memory
        load_tile<D, BQ, THREADS>(smem, Q, w.row0 + w.q0, p.seq - w.q0, p.q_stride);
        if (kv_end > 0) load_kv(0, 0);
        cp_async_commit();

        // (Zeroed by loops: `= {}` reorders the wide d128 kernel's code, which measured 3% slower.)
        float o[D / 8][4];
#pragma unroll
        for (int i = 0; i < D / 8; ++i)
#pragma unroll
            for (int e = 0; e < 4; ++e) o[i][e] = 0.0f;
        SoftmaxRows rows(w.q0, warp, lane);

        unsigned i = 0;
        for (unsigned kb = 0; kb < kv_end; kb += BKV, ++i) {
            // The next block's copies go into the other stage, last read by block i - 1.
            if (kb + BKV < kv_end) {
                load_kv(kb + BKV, i + 1);
                cp_async_commit();
                cp_async_wait<1>();
            } else {
                cp_async_wait<0>();
            }
            fence_proxy_async();
            __syncthreads();
            const unsigned ks = base + stage(i), vs = ks + KV_BYTES;

            // Head dimensions 16kc .. 16kc + 15: 32 bytes into the rows of panel kc / 4.
            float s[BKV / 8][4];
            float(&sf)[BKV / 2] = *reinterpret_cast<float(*)[BKV / 2]>(&s);
            wgmma_fence();
#pragma unroll
            for (int kc = 0; kc < D / 16; ++kc) {
                const unsigned off = (kc % 4) * 32;
                wgmma_64(sf, desc(base + (kc / 4) * PANEL_Q + wg * 64 * 128 + off), desc(ks + (kc / 4) * PANEL_KV + off),
                         kc > 0);
            }
            wgmma_commit();
            wgmma_wait<0>();
            rows.update<BKV, D>(s, o, kb, w.valid, p.causal, w.q0 + warp * 16, scale_log2, lane);

            // P's fragments are all made before the fence, so no register of a wgmma in
            // flight is written.
            unsigned a[BKV / 16][4];
#pragma unroll
            for (int kc = 0; kc < BKV / 16; ++kc) p_fragment<BKV>(s, kc, a[kc]);
            float(&of)[D / 2] = *reinterpret_cast<float(*)[D / 2]>(&o);
            wgmma_fence();
#pragma unroll
            for (int kc = 0; kc < BKV / 16; ++kc) {
                // Keys 16kc .. 16kc + 15: two 8-row groups of every panel of V.
                const u64 dv = desc(vs + kc * 16 * 128, PANEL_KV);
                if constexpr (D == 64) {
                    wgmma_rs_64(of, a[kc], dv, 1);
                } else {
                    wgmma_rs_128(of, a[kc], dv, 1);
                }
            }
            wgmma_commit();
            wgmma_wait<0>();
            __syncthreads();  // every warp is done with this stage before it is refilled
        }
        cp_async_wait<0>();  // (a unit without keys has not waited for its Q)
        rows.store<D>(o, ptr<__half>(p.o) + (u64)w.h * D, w.row0, p.seq, p.o_stride, lane);
    }
}

#endif

}  // namespace

extern __shared__ __align__(1024) unsigned char rs_attn_w_smem[];

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define RS_ATTN_WGMMA(D, WG) prefill<RS_COUNTED, D, WG>(p, rs_attn_w_smem, t)
#else
#define RS_ATTN_WGMMA(D, WG) __trap()
#endif

RS_KERNEL_PAIR(__launch_bounds__(RS_ATTN_THREADS), attention_prefill_wgmma_d64, AttentionParams) {
    rs::pdl_sync();
    RS_ATTN_WGMMA(64, 1);
}

RS_KERNEL_PAIR(__launch_bounds__(RS_ATTN_THREADS), attention_prefill_wgmma_d128, AttentionParams) {
    rs::pdl_sync();
    RS_ATTN_WGMMA(128, 1);
}

RS_KERNEL_PAIR(__launch_bounds__(RS_ATTN_WIDE_THREADS), attention_prefill_wgmma_wide_d64, AttentionParams) {
    rs::pdl_sync();
    RS_ATTN_WGMMA(64, 2);
}

RS_KERNEL_PAIR(__launch_bounds__(RS_ATTN_WIDE_THREADS), attention_prefill_wgmma_wide_d128, AttentionParams) {
    rs::pdl_sync();
    RS_ATTN_WGMMA(128, 2);
}
