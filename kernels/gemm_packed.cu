// gemm_packed.cu — decode-sized GEMMs on Hopper (M ≤ 8) over weights packed at load:
// C = act(norm(A)·Bᵀ + bias) + R (gemm_f16_packed_short_m8, _m8, _k4_m8 and _halves_m8 by K;
// gemm_f16_packed_short_m8_warps, the short entry's build by warps), and the packing itself
// (pack_tiles_f16).
//
// Computes:   as gemm_stream.cu's gemm_f16_stream_m8 (GemmParams: bias, GELU tanh/erf, FP16
//             rounding before the residual add, the fused input norm), for M ≤ 8 and batch 1,
//             and RS_ACT_SWIGLU on weights packed as gate/up pairs (Llama's MLP up: one launch
//             where a GEMM and swiglu_f16 took two, with their bits),
//             with p.b the weights packed by pack_tiles_f16 (abi.h): a tile of 16 rows, chunk by
//             chunk of RS_GEMM_P_KC columns (or all of a shorter K), each chunk consecutive bytes.
// Work unit:  a tile of 16 output columns (8 with RS_ACT_SWIGLU), all M rows (⌈N/16⌉ units, the
//             skinny kernel's); each block loops over units u = blockIdx.x, + gridDim.x, …, so
//             any grid is correct. With K of one chunk and RS_GEMM_P_WARP_UNITS units or more a
//             block, the runtime runs gemm_f16_packed_short_m8_warps, whose consumer warps each
//             take whole units (packed_gemm_by_warps): a block on few SMs (an LM head on a
//             partition: dozens of units a block) keeps 6–8 units in hand instead of one, each
//             without the 8 warps' barriers and sums between them.
// Claims:     not read, as the streamed kernel (the producer runs a ring ahead across units).
// Why:        at decode sizes reading B is the whole cost, and ~48 SMs can read HBM at the
//             copy's rate only if each takes ~85 GB/s. Here a stage is one 1-D bulk copy of a
//             tile's chunk (RS_GEMM_P_KC columns, 32 KiB; or all of a shorter K) and nothing
//             else: every consumer warp uses the
//             same K slices of A in every unit (w, w + 8, …), so each lane loads its 16 bytes of
//             each of them once, into registers, normalised there once when the norm is fused.
//             Beyond RS_GEMM_P_MAX_K (Llama-3.2-1B's down projection, K = 8,192) a lane holds
//             half of K at a time and loads each half again for every unit, from L2; the ring,
//             a whole ring ahead, keeps HBM busy meanwhile. More parts cost more than they gave:
//             mistral-7b's down projection (K = 14,336) in 7 parts ran at 55% of the copy on 48
//             SMs against the streamed kernel's 62%, and its decode step grew by 0.6 ms
//             (docs/kernels-h200.md), so such K stay on the streamed kernel.
//             The probe scripts/probes/decode_gemv.cu (`packed regA`) read 91% of the copy
//             bandwidth on 48 SMs of an H200 for 28672 × 4096 weights, where the streamed
//             kernel, copying A with every stage through tensor maps, read 63%
//             (docs/kernels-h200.md).
// Block:      8 consumer warps and a producer warp; the producer's first thread fills a ring of
//             stages of a chunk (its full barrier armed with the bytes), a whole ring ahead across
//             units. With p.b_stable the first stages are requested before the wait for the
//             previous kernel (PDL), which may still be writing A. The ring is what the launch's
//             dynamic shared memory holds (ring_bytes): RS_GEMM_D_RING_BYTES, or only the stages
//             a block of the launch reads (GemmParams::dynamic_smem), so that such a block fits
//             on an SM beside the kernel before it (decode attention) and streams its weights
//             while that kernel runs (gpt2-medium's decode step 2% shorter,
//             docs/kernels-h200.md); the build by warps always takes the whole ring.
// Method:     the skinny kernel's, in the same order (kernels/skinny.cuh): Cᵀ on tensor cores,
//             32-wide K slices, warp w taking slices w, w + 8, …, the warps' sums added in warp
//             order, rs::gemm_store's epilogue. So the output has the same bits as the skinny
//             and the streamed kernels', on any grid.
// Layout:     a stage is the chunk as packed: rows 0–7, then rows 8–15, each as 32 atoms (24 at
//             K = 768) (a
//             slice of 32 columns × 8 rows, 512 bytes, its 16-byte pieces swizzled: piece p of row
//             r at p ^ (r / 2 % 4)). Lane (g, q) reads piece q of row g of a slice in the first half
//             and of row g in the second (rows g and g + 8 of the tile): the 8 lanes of a quarter
//             warp read two whole rows, 128 consecutive bytes, without bank conflict.
// Shapes:     M ≤ 8, batch 1. gemm_f16_packed_short_m8: K of one chunk, RS_GEMM_P_SHORT_K
//             (768: 24 slices, 24 KiB a stage) or RS_GEMM_P_KC (127 registers);
//             gemm_f16_packed_m8: 2 or 3 chunks of RS_GEMM_P_KC; gemm_f16_packed_k4_m8: 4
//             (RS_GEMM_P_MAX_K); gemm_f16_packed_halves_m8: 6,144 and 8,192 in two halves (a lane
//             holds up to RS_GEMM_P_MAX_K / 256 slices of A, 4 registers each; nvcc 13.0:
//             85–167 registers by entry, the streamed kernel 91). Where a lane holds all of K, the fused norm's
//             statistics come from the slices held (held_slices_stats), not from A read again.
//             lda a multiple of 8; A and the packed B 16-byte aligned.
// Only sm_90a has bulk copies to shared memory here; elsewhere the kernel traps (never picked).
// Reference:  kernels/reference.rs::gemm (and ::pack_tiles for the layout).
#include "common.cuh"
#include "skinny.cuh"
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#include "sm90.cuh"
#endif

namespace {

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

using rs::u64;
constexpr int WARPS = RS_GEMM_D_CONSUMERS;  // consumer warps; the producer is warp WARPS
constexpr unsigned BN = RS_GEMM_T_BN;
constexpr unsigned SLICE = RS_GEMM_D_SLICE;
constexpr unsigned ROW_BYTES = SLICE * 2;
constexpr unsigned ATOM = 8 * ROW_BYTES;  // a slice of 8 rows
static_assert(RS_GEMM_D_THREADS == 32 * (WARPS + 1), "consumers and one producer warp");
constexpr unsigned CHUNK_SLICES = RS_GEMM_P_KC / SLICE;  // slices of a full chunk

// The bytes of the ring a launch gave the block: its dynamic shared memory less the ring's
// full and empty barriers, which follow the ring (runtime: GemmParams::dynamic_smem); 0, so
// that the block traps, where that memory cannot hold the barriers or does not leave them
// 8-byte aligned (only a launch that bypasses the runtime's sizing gives such).
__device__ __forceinline__ unsigned ring_bytes() {
    constexpr unsigned BARRIERS = 2 * 8 * RS_GEMM_D_MAX_STAGES;
    unsigned bytes;
    asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(bytes));
    return bytes < BARRIERS || bytes % 8 != 0 ? 0 : bytes - BARRIERS;
}

// The fused norm's statistics (rs::skinny_norm_stats') from the A slices the 8 consumer
// warps already hold, when they hold all of K (one part of 256·S columns): lane (g, q) of warp
// w holds row g's columns 256i + 8(4w + q), i < S, exactly what row_stats' lane 4w + q reads
// of that row, in the same order. Each lane's partial sum goes to xchg[g][4w + q] (8 × 32
// floats), then warp r adds row r's 32 partials with warp_sum, as row_stats' warp does: the
// same bits (both add each element with rs::stat_add and rs::deviation_add, whose roundings
// nvcc keeps as written), without reading A from L2 again in a chain of dependent loads
// (row_stats: one round trip per 1,024 columns, another for LayerNorm's second pass past
// 1,024) while the weights' copies fill the memory system. Every consumer thread calls it; the
// caller synchronises them before reading stats. The fused-norm GEMM tests compare the bits
// (docs/kernels-h200.md).
template <unsigned S>
__device__ __forceinline__ void held_slices_stats(const GemmParams& p, const uint4 (&av)[S], float* xchg, float2* stats) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, q = lane & 3;
    auto each = [&](auto&& f) {
#pragma unroll
        for (unsigned i = 0; i < S; ++i) {
            float x[8];
            rs::unpack8(av[i], x);
#pragma unroll
            for (int e = 0; e < 8; ++e) f(x[e]);
        }
    };
    // Row `warp`'s total of the partials every lane has put in xchg.
    auto gathered = [&](float partial) {
        xchg[g * 32 + 4 * warp + q] = partial;
        rs::named_barrier(1, WARPS * 32);
        return rs::warp_sum(xchg[warp * 32 + lane]);
    };
    float s = 0.0f;
    each([&](float x) { s = rs::stat_add(s, x, p.norm); });
    s = gathered(s);
    const bool row = warp < (int)p.m;
    if (p.norm == RS_NORM_RMS) {
        if (row && lane == 0) stats[warp] = make_float2(0.0f, rsqrtf(s / p.k + p.norm_eps));
        return;
    }
    if (row && lane == 0) stats[warp].x = s / p.k;
    rs::named_barrier(1, WARPS * 32);  // every mean written, every partial of xchg read
    const float mean = g < (int)p.m ? stats[g].x : 0.0f;
    float sq = 0.0f;
    each([&](float x) { sq = rs::deviation_add(sq, x, mean); });
    sq = gathered(sq);
    if (row && lane == 0) stats[warp].y = rsqrtf(sq / p.k + p.norm_eps);
}

// A lane holds S slices of A at a time: a part of K of 256·S columns, PART stages of a chunk
// of CS slices (RS_GEMM_P_KC columns, or all of a shorter K). K = 256·S (the whole
// of K in registers for every unit), or several parts, each loaded again for every unit (from
// L2: A is at most 8 rows) while the producer keeps the ring full. NORM: the fused input norm's
// code is compiled in (p.norm then says whether it runs); only where a lane holds all of K.
template <bool NORM, unsigned S, unsigned CS = CHUNK_SLICES, unsigned PARTS = 1>
__device__ __forceinline__ void packed_gemm(const GemmParams& p, unsigned char* smem, float* red, float2* stats) {
    static_assert(!NORM || PARTS == 1, "the fused norm's statistics come from the slices held");
    constexpr unsigned WARP_SLICES = CS / WARPS;      // a warp's slices a stage
    constexpr unsigned STAGE = CS * SLICE * BN * 2;   // bytes a stage: a tile's chunk
    constexpr unsigned FULL_RING = RS_GEMM_D_RING_BYTES / STAGE;
    constexpr unsigned HALF = CS * ATOM;              // a chunk's rows 0–7 (or 8–15)
    static_assert(CS % WARPS == 0, "every warp has as many slices in each stage");
    static_assert(FULL_RING >= 2 && FULL_RING <= RS_GEMM_D_MAX_STAGES, "the ring and its barriers");
    constexpr unsigned PART = S / WARP_SLICES;
    static_assert(S % WARP_SLICES == 0, "whole chunks");
    const unsigned parts = PARTS ? PARTS : p.k / (256 * S), CHUNKS = parts * PART;
    // The ring is what the launch gave (ring_bytes): all of RS_GEMM_D_RING_BYTES, or as many
    // stages as a block of this launch takes, so that the block fits beside the kernel before it.
    const unsigned ring = ring_bytes(), stages = min(FULL_RING, ring / STAGE);
    if (stages == 0) __trap();  // the runtime gives at least one stage and its barriers
    const unsigned base = rs::smem_addr(smem), full = base + ring, empty = full + 8 * RS_GEMM_D_MAX_STAGES;
    const unsigned tiles = (p.n + BN - 1) / BN;
    if (threadIdx.x == 0) {
        for (unsigned s = 0; s < stages; ++s) {
            rs::mbar_init(full + 8 * s, 1);
            rs::mbar_init(empty + 8 * s, WARPS);
        }
        rs::mbar_init_fence();
    }
    __syncthreads();
    const unsigned total = blockIdx.x < tiles ? ((tiles - 1 - blockIdx.x) / gridDim.x + 1) * CHUNKS : 0;
    const bool producer = threadIdx.x == WARPS * 32;
    const char* B = rs::ptr<const char>(p.b);
    // Stage t: chunk t % CHUNKS of this block's unit blockIdx.x + (t / CHUNKS)·gridDim.x.
    auto fill = [&](unsigned t) {
        const unsigned slot = t % stages, u = blockIdx.x + t / CHUNKS * gridDim.x;
        if (t >= stages) rs::mbar_wait(empty + 8 * slot, (t / stages - 1) & 1);
        rs::mbar_expect_tx(full + 8 * slot, STAGE);
        rs::bulk_load(base + slot * STAGE, B + ((u64)u * CHUNKS + t % CHUNKS) * STAGE, STAGE, full + 8 * slot);
    };
    const unsigned early = p.b_stable ? min(total, stages) : 0;
    if (producer)
        for (unsigned t = 0; t < early; ++t) fill(t);
    rs::pdl_sync();
    if (threadIdx.x >= WARPS * 32) {
        if (producer)
            for (unsigned t = early; t < total; ++t) fill(t);
        return;
    }
    if (total == 0) return;

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, q = lane & 3;
    // This lane's 16 bytes of each of its warp's slices of A's row g in a part (zeros past M);
    // the first part is loaded before the fused norm's statistics are computed, normalised after.
    uint4 av[S];
    const __half* A = rs::ptr<const __half>(p.a) + (u64)min(g, (int)p.m - 1) * p.lda;
    const __half* gamma = rs::ptr<const __half>(p.norm_gamma);
    const __half* beta = p.norm_beta ? rs::ptr<const __half>(p.norm_beta) : nullptr;
#pragma unroll
    for (unsigned i = 0; i < S; ++i)
        av[i] = g < (int)p.m ? *reinterpret_cast<const uint4*>(A + (warp + i * WARPS) * SLICE + q * 8) : make_uint4(0, 0, 0, 0);
    if (NORM && p.norm != RS_NORM_NONE) {
        held_slices_stats<S>(p, av, red, stats);
        rs::named_barrier(1, WARPS * 32);
    }
    const bool normalize = NORM && p.norm != RS_NORM_NONE && g < (int)p.m;
    const float2 st = normalize ? stats[g] : make_float2(0.0f, 0.0f);
    if (normalize) {
#pragma unroll
        for (unsigned i = 0; i < S; ++i) av[i] = rs::normalize8(av[i], st, gamma, beta, p.norm, (warp + i * WARPS) * SLICE + q * 8);
    }
    unsigned held = 0;  // the part av holds
    // This lane's 16 bytes of a slice's atoms: rows g and g + 8 of the tile (swizzled pieces).
    const unsigned lo = g * ROW_BYTES + ((q ^ (g / 2 % 4)) * 16), hi = lo + HALF;
    __half* C = rs::ptr<__half>(p.c);
    const __half* R = p.residual ? rs::ptr<const __half>(p.residual) : nullptr;
    const __half* bias = p.bias ? rs::ptr<const __half>(p.bias) : nullptr;
    unsigned t = 0;
    // The output this thread stores in each unit (rs::skinny_store's: one each, M ≤ 8 rows of
    // BN columns for 256 threads), and its bias and residual, loaded as the unit begins: their
    // trip to L2 overlaps the unit's weights instead of following its sums.
    const unsigned out_row = threadIdx.x / BN, out_c = threadIdx.x % BN;
    static_assert(WARPS * 32 >= 8 * BN, "a consumer thread for every output of a unit");
    RS_FOR_EACH_STATIC_UNIT(u, tiles) {
        const unsigned out_col = (unsigned)u * BN + out_c;
        const bool stores = p.act != RS_ACT_SWIGLU && out_row < p.m && out_col < p.n;
        const float early_bias = bias && stores ? __half2float(bias[out_col]) : 0.0f;
        const float early_r = R && stores ? __half2float(R[(u64)out_row * p.ldr + out_col]) : 0.0f;
        float acc[4] = {};
        for (unsigned part = 0; part < parts; ++part) {
            if (part != held) {
                const unsigned c0 = part * S * WARPS * SLICE + (warp * SLICE + q * 8);
#pragma unroll
                for (unsigned i = 0; i < S; ++i) {
                    const unsigned c = c0 + i * WARPS * SLICE;
                    av[i] = g < (int)p.m ? *reinterpret_cast<const uint4*>(A + c) : make_uint4(0, 0, 0, 0);
                }
                held = part;
            }
#pragma unroll
            for (unsigned c = 0; c < PART; ++c, ++t) {
                const unsigned slot = t % stages;
                rs::mbar_wait(full + 8 * slot, (t / stages) & 1);
                const unsigned char* stage = smem + slot * STAGE;
#pragma unroll
                for (unsigned i = 0; i < WARP_SLICES; ++i) {
                    const unsigned char* bs = stage + (warp + i * WARPS) * ATOM;
                    rs::skinny_slice(acc, *reinterpret_cast<const uint4*>(bs + lo),
                                     *reinterpret_cast<const uint4*>(bs + hi), av[c * WARP_SLICES + i]);
                }
                // The warp's reads of the stage (generic proxy) ordered before the copy that
                // refills it (async proxy), which the barrier alone does not order. Without
                // this fence a launch's bits varied (gemm_f16_packed_halves_m8 at one unit a
                // block; the GPU test decode_gemm_rings_repeat_their_bits, docs/kernels-h200.md),
                // as a refill landing on bytes still being read would make them. Fencing only
                // the slots the ring refills made the steps slower (the same section).
                rs::fence_proxy_async();
                __syncwarp();
                if (lane == 0) rs::mbar_arrive(empty + 8 * slot);
            }
        }
        rs::named_barrier(1, WARPS * 32);  // the previous unit's sums have been read
        rs::skinny_partial<8>(red, 0, acc);
        rs::named_barrier(1, WARPS * 32);
        if (p.act == RS_ACT_SWIGLU) {
            rs::skinny_store_swiglu<WARPS, 8>(p, red, WARPS * 32, (unsigned)u * BN, C);
        } else if (stores) {
            // rs::gemm_store's arithmetic, so its bits.
            const float v = rs::skinny_sum<WARPS, 8>(red, out_c, out_row);
            C[(u64)out_row * p.ldc + out_col] = __float2half_rn(rs::gemm_value(v, p.act, bias, early_bias, R, early_r));
        }
    }
}

// K of one chunk (CS slices, S = CS / WARPS a warp), where a block has many units: each consumer
// warp takes whole units in turn (warp w the block's units w, w + TAKERS, …: 8 at K = 768, 6 at
// K = 1,024, whose ring has 6 stages), so that many units are in hand at once and no unit waits
// for the others' sums, barriers and stores. The
// bits are packed_gemm's: A is loaded, normalised and its statistics taken as there, then kept
// in shared memory a slice at a time (a_s: slice s's 16 bytes of lane (g, q) at s·32 + lane);
// the warp adds slice s into the sums of the consumer warp that takes it in packed_gemm
// (acc[s % WARPS], slices in order), then adds those WARPS sums in warp order, as skinny_sum
// does, and stores them with the same epilogue. Each stage is one unit, freed by its warp
// alone (its empty barrier counts one arrival).
template <unsigned S, unsigned CS>
__device__ __forceinline__ void packed_gemm_by_warps(const GemmParams& p, unsigned char* smem, float* red, float2* stats,
                                                     uint4* a_s) {
    constexpr unsigned STAGE = CS * SLICE * BN * 2;
    constexpr unsigned STAGES = RS_GEMM_D_RING_BYTES / STAGE;
    constexpr unsigned HALF = CS * ATOM;
    static_assert(CS == S * WARPS, "all of K in one chunk, held by the warps");
    static_assert(STAGES >= 2 && STAGES <= RS_GEMM_D_MAX_STAGES, "the ring and its barriers");
    // The warps that take units: as many as the ring has stages, at most all of them.
    constexpr unsigned TAKERS = STAGES < WARPS ? STAGES : WARPS;
    static_assert(STAGES % TAKERS == 0, "each slot of the ring taken by one warp");
    const unsigned base = rs::smem_addr(smem), full = base + RS_GEMM_D_RING_BYTES, empty = full + 8 * RS_GEMM_D_MAX_STAGES;
    const unsigned tiles = (p.n + BN - 1) / BN;
    if (threadIdx.x == 0) {
        for (unsigned s = 0; s < STAGES; ++s) {
            rs::mbar_init(full + 8 * s, 1);
            rs::mbar_init(empty + 8 * s, 1);
        }
        rs::mbar_init_fence();
    }
    __syncthreads();
    const unsigned total = blockIdx.x < tiles ? (tiles - 1 - blockIdx.x) / gridDim.x + 1 : 0;
    const bool producer = threadIdx.x == WARPS * 32;
    const char* B = rs::ptr<const char>(p.b);
    // Stage t: unit blockIdx.x + t·gridDim.x.
    auto fill = [&](unsigned t) {
        const unsigned slot = t % STAGES, u = blockIdx.x + t * gridDim.x;
        if (t >= STAGES) rs::mbar_wait(empty + 8 * slot, (t / STAGES - 1) & 1);
        rs::mbar_expect_tx(full + 8 * slot, STAGE);
        rs::bulk_load(base + slot * STAGE, B + (u64)u * STAGE, STAGE, full + 8 * slot);
    };
    const unsigned early = p.b_stable ? min(total, STAGES) : 0;
    if (producer)
        for (unsigned t = 0; t < early; ++t) fill(t);
    rs::pdl_sync();
    if (threadIdx.x >= WARPS * 32) {
        if (producer)
            for (unsigned t = early; t < total; ++t) fill(t);
        return;
    }
    if (total == 0) return;

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, q = lane & 3;
    // A as packed_gemm holds it (the same loads, statistics and normalisation), then shared.
    {
        uint4 av[S];
        const __half* A = rs::ptr<const __half>(p.a) + (u64)min(g, (int)p.m - 1) * p.lda;
#pragma unroll
        for (unsigned i = 0; i < S; ++i)
            av[i] = g < (int)p.m ? *reinterpret_cast<const uint4*>(A + (warp + i * WARPS) * SLICE + q * 8)
                                 : make_uint4(0, 0, 0, 0);
        if (p.norm != RS_NORM_NONE) {
            held_slices_stats<S>(p, av, red, stats);
            rs::named_barrier(1, WARPS * 32);
            if (g < (int)p.m) {
                const __half* gamma = rs::ptr<const __half>(p.norm_gamma);
                const __half* beta = p.norm_beta ? rs::ptr<const __half>(p.norm_beta) : nullptr;
#pragma unroll
                for (unsigned i = 0; i < S; ++i)
                    av[i] = rs::normalize8(av[i], stats[g], gamma, beta, p.norm, (warp + i * WARPS) * SLICE + q * 8);
            }
        }
#pragma unroll
        for (unsigned i = 0; i < S; ++i) a_s[(warp + i * WARPS) * 32 + lane] = av[i];
        rs::named_barrier(1, WARPS * 32);
    }
    const unsigned lo = g * ROW_BYTES + ((q ^ (g / 2 % 4)) * 16), hi = lo + HALF;
    __half* C = rs::ptr<__half>(p.c);
    const __half* R = p.residual ? rs::ptr<const __half>(p.residual) : nullptr;
    const __half* bias = p.bias ? rs::ptr<const __half>(p.bias) : nullptr;
    const bool swiglu = p.act == RS_ACT_SWIGLU;
    // Warp w takes stages w, w + TAKERS, …: each slot of the ring has one warp taking its
    // stages, in order (a parity wait cannot tell a phase from the one two ahead of it).
    if (warp >= (int)TAKERS) return;
    for (unsigned t = warp; t < total; t += TAKERS) {
        const unsigned u = blockIdx.x + t * gridDim.x, slot = t % STAGES;
        // This lane's outputs: columns c0 = 16u + g and c0 + 8 of rows 2q and 2q + 1 (with
        // SwiGLU, gate and up of output column 8u + g); their bias and residual loaded first.
        const unsigned c0 = u * BN + g, r0 = 2 * q;
        float eb[2] = {}, er[2][2] = {};
#pragma unroll
        for (int j = 0; j < 2; ++j) {
            const unsigned col = c0 + 8 * j;
            if (swiglu || col >= p.n) continue;
            if (bias) eb[j] = __half2float(bias[col]);
#pragma unroll
            for (int i = 0; i < 2; ++i)
                if (R && r0 + i < p.m) er[j][i] = __half2float(R[(u64)(r0 + i) * p.ldr + col]);
        }
        rs::mbar_wait(full + 8 * slot, (t / STAGES) & 1);
        const unsigned char* stage = smem + slot * STAGE;
        float acc[WARPS][4] = {};
        // Slice s0 + w into warp w's sums, a round of WARPS slices at a time.
#pragma unroll 1
        for (unsigned s0 = 0; s0 < CS; s0 += WARPS) {
#pragma unroll
            for (unsigned w = 0; w < WARPS; ++w) {
                const unsigned char* bs = stage + (s0 + w) * ATOM;
                rs::skinny_slice(acc[w], *reinterpret_cast<const uint4*>(bs + lo), *reinterpret_cast<const uint4*>(bs + hi),
                                 a_s[(s0 + w) * 32 + lane]);
            }
        }
        rs::fence_proxy_async();  // the reads before the refill (packed_gemm)
        __syncwarp();
        if (lane == 0) rs::mbar_arrive(empty + 8 * slot);
        // acc[w][2j + i]: column c0 + 8j, row r0 + i (skinny_partial's layout).
        float v[2][2];
#pragma unroll
        for (int j = 0; j < 2; ++j)
#pragma unroll
            for (int i = 0; i < 2; ++i) {
                float sum = 0.0f;
#pragma unroll
                for (unsigned w = 0; w < WARPS; ++w) sum += acc[w][2 * j + i];
                v[j][i] = sum;
            }
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            const unsigned row = r0 + i;
            if (row >= p.m) continue;
            if (swiglu) {
                // skinny_store_swiglu's arithmetic: gate and up rounded as stored, then swiglu.
                const float gv = rs::round_half(v[0][i]), uv = rs::round_half(v[1][i]);
                C[(u64)row * p.ldc + u * (BN / 2) + g] = __float2half_rn(rs::swiglu(gv, uv));
                continue;
            }
#pragma unroll
            for (int j = 0; j < 2; ++j) {
                const unsigned col = c0 + 8 * j;
                if (col < p.n)
                    C[(u64)row * p.ldc + col] = __float2half_rn(rs::gemm_value(v[j][i], p.act, bias, eb[j], R, er[j][i]));
            }
        }
    }
}

#endif

}  // namespace

extern __shared__ __align__(128) unsigned char rs_gemm_p_smem[];

// The long-K entries, one K each, and at K = 2,048 (Llama-3.2-1B's width) one with the fused
// input norm's code (gemm_f16_packed_norm_m8: its QKV, MLP up and LM head) and one without
// (gemm_f16_packed_m8: its attention output): each entry holds only the code of the GEMMs it
// runs. A decode step runs its kernels' code cold on every SM (four other kernels ran there
// since), and the smaller entries made Llama-3.2-1B's steps 1–3% shorter (docs/kernels-h200.md),
// as entries of their own had before: with the four-chunk and two-half cases in
// gemm_f16_packed_m8 beside one-part cases built for their K, their GEMMs ran 5–7 µs slower in
// the decode step (mistral-7b's step 4.51 → 5.10 ms), which no register count or spill showed.
// Three chunks (gemm_f16_packed_k3_m8, GPT-2's MLP down) and the two halves of 6,144 and 8,192
// (gemm_f16_packed_halves_k6_m8, gemm_f16_packed_halves_m8) take no fused norm; four chunks
// (gemm_f16_packed_k4_m8, mistral-7b's width) take one or not.
static_assert(RS_GEMM_P_MAX_K == 4 * RS_GEMM_P_KC, "the cases below");

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
// An entry's body: K of CHUNKS chunks (the params' check refuses other K).
template <unsigned CHUNKS, bool NORM, unsigned S, unsigned PARTS = 1>
__device__ __forceinline__ void packed_long_k(const GemmParams& p) {
    __shared__ float red[WARPS * BN * 8];
    __shared__ float2 stats[8];
    switch (p.k / RS_GEMM_P_KC) {
        case CHUNKS: packed_gemm<NORM, S, CHUNK_SLICES, PARTS>(p, rs_gemm_p_smem, red, stats); break;
        default: __trap();
    }
}
#endif

RS_KERNEL void __launch_bounds__(RS_GEMM_D_THREADS, 1) gemm_f16_packed_m8(const __grid_constant__ GemmParams p, RS_TICKET t) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    packed_long_k<2, false, 8>(p);
#else
    rs::pdl_sync();
    __trap();
#endif
}

RS_KERNEL void __launch_bounds__(RS_GEMM_D_THREADS, 1) gemm_f16_packed_norm_m8(const __grid_constant__ GemmParams p, RS_TICKET t) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    packed_long_k<2, true, 8>(p);
#else
    rs::pdl_sync();
    __trap();
#endif
}

RS_KERNEL void __launch_bounds__(RS_GEMM_D_THREADS, 1) gemm_f16_packed_k3_m8(const __grid_constant__ GemmParams p, RS_TICKET t) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    packed_long_k<3, false, 12>(p);
#else
    rs::pdl_sync();
    __trap();
#endif
}

RS_KERNEL void __launch_bounds__(RS_GEMM_D_THREADS, 1) gemm_f16_packed_k4_m8(const __grid_constant__ GemmParams p, RS_TICKET t) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    packed_long_k<4, true, 16>(p);
#else
    rs::pdl_sync();
    __trap();
#endif
}

// Two halves: the parts counted at run time (PARTS = 0), as when one entry held every long K.
RS_KERNEL void __launch_bounds__(RS_GEMM_D_THREADS, 1) gemm_f16_packed_halves_k6_m8(const __grid_constant__ GemmParams p, RS_TICKET t) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    packed_long_k<6, false, 12, 0>(p);
#else
    rs::pdl_sync();
    __trap();
#endif
}

RS_KERNEL void __launch_bounds__(RS_GEMM_D_THREADS, 1) gemm_f16_packed_halves_m8(const __grid_constant__ GemmParams p, RS_TICKET t) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    packed_long_k<8, false, 16, 0>(p);
#else
    rs::pdl_sync();
    __trap();
#endif
}

// K of one chunk: RS_GEMM_P_SHORT_K (768, GPT-2's width: 24 slices, 24 KiB a stage) or
// RS_GEMM_P_KC (1,024).
RS_KERNEL void __launch_bounds__(RS_GEMM_D_THREADS, 1)
    gemm_f16_packed_short_m8(const __grid_constant__ GemmParams p, RS_TICKET t) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    __shared__ float red[WARPS * BN * 8];
    __shared__ float2 stats[8];
    static_assert(RS_GEMM_P_SHORT_K == 3 * 256, "the cases below");
    switch (p.k) {
        case RS_GEMM_P_SHORT_K: packed_gemm<true, 3, 24>(p, rs_gemm_p_smem, red, stats); break;
        case RS_GEMM_P_KC: packed_gemm<true, 4>(p, rs_gemm_p_smem, red, stats); break;
        default: __trap();  // the params' check refuses other K
    }
#else
    rs::pdl_sync();
    __trap();
#endif
}

// The build of gemm_f16_packed_short_m8 whose warps take whole units (packed_gemm_by_warps),
// the same bits: the runtime launches it where a block gets RS_GEMM_P_WARP_UNITS units or more
// (runtime/rt.rs, Runtime::issue). An entry of its own, so the plain build's machine code is
// what it was (one entry holding both paths made every GPT-2 decode step 3–7% slower on the
// whole device, docs/kernels-h200.md). A in 16 KiB of static shared memory beside the whole
// ring (A inside the ring, one stage fewer, made gpt2-medium's steps 6–8% slower on 32 and 48
// SMs); at most 128 registers a thread (uncapped, 136; the plain build takes 127).
RS_KERNEL void __maxnreg__(128) gemm_f16_packed_short_m8_warps(const __grid_constant__ GemmParams p, RS_TICKET t) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    __shared__ float red[WARPS * BN * 8];
    __shared__ float2 stats[8];
    __shared__ uint4 a_s[CHUNK_SLICES * 32];
    switch (p.k) {
        case RS_GEMM_P_SHORT_K: packed_gemm_by_warps<3, 24>(p, rs_gemm_p_smem, red, stats, a_s); break;
        case RS_GEMM_P_KC: packed_gemm_by_warps<4, CHUNK_SLICES>(p, rs_gemm_p_smem, red, stats, a_s); break;
        default: __trap();  // the params' check refuses other K
    }
#else
    rs::pdl_sync();
    __trap();
#endif
}

// The weights of a GEMM into the packed layout (abi.h, PackParams), or back: one tile a unit,
// its 16 rows × K in 16-byte pieces, taken by consecutive threads in the packed order; with
// p.pairs a tile's halves are 8 gate rows and the 8 up rows of the same columns.
RS_KERNEL_PAIR(__launch_bounds__(RS_PACK_THREADS), pack_tiles_f16, PackParams) {
    rs::pdl_sync();
    using rs::u64;
    const __half* src = rs::ptr<const __half>(p.src);
    __half* dst = rs::ptr<__half>(p.dst);
    const unsigned pieces = p.k * RS_GEMM_T_BN / 8;  // of 8 halves, a tile
    const unsigned kc = rs::packed_chunk(p.k), slices = kc / RS_GEMM_D_SLICE;
    RS_FOR_EACH_UNIT(u, (p.n + RS_GEMM_T_BN - 1) / RS_GEMM_T_BN, t) {
        for (unsigned j = threadIdx.x; j < pieces; j += blockDim.x) {
            // j = (((chunk·2 + half)·slices + slice)·8 + r)·4 + stored piece, the packed order.
            const unsigned r = j / 4 % 8, piece = (j % 4) ^ (r / 2 % 4), s = j / 32 % slices, h = j / (32 * slices) % 2;
            const unsigned c = j / (64 * slices);
            // With pairs, half h of tile u is rows 8u … 8u + 7 of the gate (h = 0) or up half.
            const u64 row = p.pairs ? h * (p.n / 2) + 8 * u + r : u * RS_GEMM_T_BN + 8 * h + r;
            const u64 rows = row * p.k + c * kc + s * RS_GEMM_D_SLICE + piece * 8;
            const u64 tiles = u * RS_GEMM_T_BN * p.k + (u64)j * 8;
            if (p.unpack) {
                if (row < p.n) *reinterpret_cast<uint4*>(dst + rows) = *reinterpret_cast<const uint4*>(src + tiles);
                continue;
            }
            uint4 v = make_uint4(0, 0, 0, 0);
            if (row < p.n) v = *reinterpret_cast<const uint4*>(src + rows);
            *reinterpret_cast<uint4*>(dst + tiles) = v;
        }
    }
}
