// gemm_stream.cu — decode-sized GEMMs on Hopper (M ≤ 8): C = act(norm(A)·Bᵀ + bias) + R with
// the weights streamed through a shared-memory ring by bulk copies.
//
// Computes:   as gemm.cu's gemm_f16_skinny_m8 (GemmParams: bias, GELU tanh/erf, FP16 rounding
//             before the residual add, the fused input norm), for M ≤ 8 and batch 1.
// Work unit:  16 output columns (16 rows of B), all M rows, as the skinny kernel: units =
//             ⌈N/16⌉. Each block loops over units u = blockIdx.x, + gridDim.x, …, so any grid
//             is correct.
// Claims:     not read: the producer runs a whole ring ahead across this block's units (before
//             the PDL wait too), so units are assigned up front. A claimed SM is given back
//             when the launch ends: one decode GEMM, at most ~100 µs (an LM head) on an H200.
// Why:        at decode sizes reading B is the whole cost. The skinny kernel's warps wait on
//             their own loads, so it keeps too few bytes in flight for large weights (46% of
//             DRAM bandwidth on 8×4096×4096); here the loads are asynchronous.
// Block:      8 consumer warps and a producer warp. A stage holds one K chunk (≤ RS_GEMM_D_KC
//             columns) of a unit's 16 weight rows and of A's 8 rows: TMA boxes of RS_GEMM_D_BOX
//             columns (16 and 8 rows; rows past N or M and columns past K are zero-filled). The
//             producer's first thread issues them into the next free stage of the ring (its
//             full barrier armed with their bytes) and runs ahead across units by the whole
//             ring. With p.b_stable (weights, which the previous kernel does not write) the first
//             stages' weight boxes are requested before the kernel waits for that kernel (PDL),
//             their A boxes after. Each consumer warp frees a stage through its empty barrier
//             once it has read it. Few, large copies: one per 8 KiB of weights. (With a copy
//             per weight row, the rate followed the copies' size — rows of 512, 1024 and 2048
//             bytes gave 31%, 57% and 73% of DRAM bandwidth on 8×4096×4096 — so the copies'
//             issue, not DRAM, set the pace.)
// Method:     the skinny kernel's, in the same order: Cᵀ on tensor cores (mma m16n8k16 with 16
//             weight rows as the first operand and the ≤ 8 rows of A as the second, each lane
//             using the 16 contiguous bytes it loads of each row as its fragment elements),
//             32-wide K slices, warp w taking slices w, w + 8, … (RS_GEMM_D_KC is a multiple of
//             256, so a chunk starts at a slice ≡ 0 mod 8), the 8 warps' sums added in warp
//             order through shared memory, and rs::gemm_store's epilogue. So both kernels give
//             the same bits, on any grid.
// Layout:     a stage is B's boxes (16 rows × 512 bytes each), then A's (8 × 512).
// Fused norm: with p.norm, consumer warp w computes the statistics of row w (rownorm.cuh, the
//             order norm.cu uses), and each A fragment is normalised as it is loaded.
// Params:     GemmTmaParams (tensor maps made by params.rs::GemmTmaParams::new).
// Shapes:     M ≤ 8, batch 1; K, lda, ldb multiples of 8; A and B 16-byte aligned.
// Only sm_90a has TMA; elsewhere the kernel traps (never picked there).
// Reference:  kernels/reference.rs::gemm.
#include "common.cuh"
#include "skinny.cuh"
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#include "sm90.cuh"
#endif

namespace {

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

using rs::u64;
constexpr int WARPS = RS_GEMM_D_CONSUMERS;            // consumer warps; the producer is warp WARPS
constexpr unsigned BN = RS_GEMM_T_BN;                 // output columns per unit
constexpr unsigned MAX_M = 8;
constexpr int SLICES = RS_GEMM_D_KC / 32 / WARPS;     // a warp's K slices per full chunk
static_assert(RS_GEMM_D_KC % (32 * WARPS) == 0, "a chunk starts at a slice of warp 0");
static_assert(RS_GEMM_D_THREADS == 32 * (WARPS + 1), "consumers and one producer warp");

constexpr unsigned BOX = RS_GEMM_D_BOX;
constexpr unsigned BOX_B = BN * BOX * 2, BOX_A = MAX_M * BOX * 2;  // bytes of a B and an A box

// The ring's geometry for this GEMM (the same in every thread).
struct Ring {
    unsigned base, full, empty;  // shared addresses: stage 0, the full and empty barriers
    unsigned kc, chunks, stage_bytes, stages;
};

__device__ __forceinline__ Ring ring_of(const GemmParams& p, const unsigned char* smem) {
    Ring r;
    r.kc = min((p.k + BOX - 1) / BOX * BOX, (unsigned)RS_GEMM_D_KC);
    r.chunks = (p.k + r.kc - 1) / r.kc;
    r.stage_bytes = r.kc / BOX * (BOX_B + BOX_A);
    r.stages = min((unsigned)RS_GEMM_D_MAX_STAGES, RS_GEMM_D_RING_BYTES / r.stage_bytes);
    r.base = rs::smem_addr(smem);
    r.full = r.base + RS_GEMM_D_RING_BYTES;
    r.empty = r.full + 8 * RS_GEMM_D_MAX_STAGES;
    return r;
}

// Stage t of this block holds chunk t % chunks of its unit blockIdx.x + (t / chunks)·gridDim.x.
// (Batch 1: units = ⌈N/16⌉ fit 32 bits.)
__device__ __forceinline__ unsigned unit_of(const Ring& r, unsigned t) { return blockIdx.x + t / r.chunks * gridDim.x; }

// Producer (one thread): the copies of stage t — with `b`, its weight boxes (the full barrier
// armed with the stage's bytes, B's and A's, once the slot is free); with `a`, its A boxes.
__device__ __forceinline__ void fill(const GemmTmaParams& tp, const Ring& r, unsigned tiles_n, unsigned t, bool b, bool a) {
    const unsigned slot = t % r.stages, full = r.full + 8 * slot, dst = r.base + slot * r.stage_bytes;
    const int n0 = (int)((unit_of(r, t) % tiles_n) * BN), k0 = (int)((t % r.chunks) * r.kc);
    const unsigned boxes = (min(r.kc, tp.g.k - k0) + BOX - 1) / BOX;
    if (b) {
        if (t >= r.stages) rs::mbar_wait(r.empty + 8 * slot, (t / r.stages - 1) & 1);
        rs::mbar_expect_tx(full, boxes * (BOX_B + BOX_A));
        for (unsigned i = 0; i < boxes; ++i) rs::tma_load(dst + i * BOX_B, &tp.map_b, k0 + i * BOX, n0, full);
    }
    if (a) {
        const unsigned a0 = dst + r.kc / BOX * BOX_B;
        for (unsigned i = 0; i < boxes; ++i) rs::tma_load(a0 + i * BOX_A, &tp.map_a, k0 + i * BOX, 0, full);
    }
}

// The consumers (warps 0..WARPS-1): every unit of this block, stage by stage.
__device__ __forceinline__ void consume(const GemmParams& p, const Ring& r, unsigned tiles_n, unsigned units,
                                       const unsigned char* smem, float* red, float2* stats) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, q = lane & 3;
    constexpr unsigned CONSUMER_THREADS = WARPS * 32;
    const __half* gamma = rs::ptr<const __half>(p.norm_gamma);
    const __half* beta = p.norm_beta ? rs::ptr<const __half>(p.norm_beta) : nullptr;
    float2 st = make_float2(0.0f, 0.0f);
    if (p.norm != RS_NORM_NONE) {
        rs::skinny_norm_stats(p, stats, WARPS);
        rs::named_barrier(1, CONSUMER_THREADS);
        if (g < (int)p.m) st = stats[g];
    }
    unsigned t = 0;
    RS_FOR_EACH_STATIC_UNIT(u, units) {
        const unsigned n0 = (u % tiles_n) * BN;
        float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        for (unsigned c = 0; c < r.chunks; ++c, ++t) {
            const unsigned slot = t % r.stages, kc = min(r.kc, p.k - c * r.kc);
            rs::mbar_wait(r.full + 8 * slot, (t / r.stages) & 1);
            const unsigned char* b_stage = smem + slot * r.stage_bytes;
            const unsigned char* a_stage = b_stage + r.kc / BOX * BOX_B;
#pragma unroll
            for (int i = 0; i < SLICES; ++i) {
                if ((warp + i * WARPS) * 32 >= kc) break;  // warp-uniform: no slice left
                // Column kl of the chunk: box kl / BOX, byte (kl % BOX)·2 of its rows. Columns
                // past K are zeros (TMA's fill), as in the skinny kernel's loads.
                const unsigned kl = (warp + i * WARPS) * 32 + q * 8, at = kl / BOX, col = (kl % BOX) * 2;
                const unsigned char* bb = b_stage + at * BOX_B + col;
                const uint4 blo = *reinterpret_cast<const uint4*>(bb + g * BOX * 2);
                const uint4 bhi = *reinterpret_cast<const uint4*>(bb + (g + 8) * BOX * 2);
                uint4 av = *reinterpret_cast<const uint4*>(a_stage + at * BOX_A + g * BOX * 2 + col);
                if (p.norm != RS_NORM_NONE && c * r.kc + kl < p.k && g < (int)p.m)
                    av = rs::normalize8(av, st, gamma, beta, p.norm, c * r.kc + kl);
                rs::skinny_slice(acc, blo, bhi, av);
            }
            __syncwarp();
            if (lane == 0) rs::mbar_arrive(r.empty + 8 * slot);
        }

        rs::named_barrier(1, CONSUMER_THREADS);  // the previous unit's sums have been read
        rs::skinny_partial<MAX_M>(red, 0, acc);
        rs::named_barrier(1, CONSUMER_THREADS);
        rs::skinny_store<WARPS, MAX_M>(p, red, CONSUMER_THREADS, n0, rs::ptr<__half>(p.c),
                                       p.residual ? rs::ptr<const __half>(p.residual) : nullptr,
                                       p.bias ? rs::ptr<const __half>(p.bias) : nullptr);
    }
}

#endif

}  // namespace

extern __shared__ __align__(128) unsigned char rs_gemm_d_smem[];

RS_KERNEL void __launch_bounds__(RS_GEMM_D_THREADS, 1) gemm_f16_stream_m8(const __grid_constant__ GemmTmaParams tp, RS_TICKET t) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    __shared__ float red[WARPS * BN * MAX_M];
    __shared__ float2 stats[MAX_M];
    const GemmParams& p = tp.g;
    const Ring r = ring_of(p, rs_gemm_d_smem);
    const unsigned tiles_n = (p.n + BN - 1) / BN, units = tiles_n;
    const bool producer = threadIdx.x == WARPS * 32;
    if (threadIdx.x == 0) {
        for (unsigned s = 0; s < r.stages; ++s) {
            rs::mbar_init(r.full + 8 * s, 1);
            rs::mbar_init(r.empty + 8 * s, WARPS);
        }
        rs::mbar_init_fence();
    }
    __syncthreads();
    // This block's stages: its units × the chunks of K.
    const unsigned total = blockIdx.x < units ? ((units - 1 - blockIdx.x) / gridDim.x + 1) * r.chunks : 0;
    // With b_stable, the weights of the first stages are requested before the wait for the
    // previous kernel (which may still be writing A).
    const unsigned early = p.b_stable ? min(total, r.stages) : 0;
    if (producer)
        for (unsigned t = 0; t < early; ++t) fill(tp, r, tiles_n, t, true, false);
    rs::pdl_sync();
    if (threadIdx.x >= WARPS * 32) {
        if (!producer) return;
        for (unsigned t = 0; t < early; ++t) fill(tp, r, tiles_n, t, false, true);
        for (unsigned t = early; t < total; ++t) fill(tp, r, tiles_n, t, true, true);
        return;
    }
    consume(p, r, tiles_n, units, rs_gemm_d_smem, red, stats);
#else
    rs::pdl_sync();
    __trap();
#endif
}
