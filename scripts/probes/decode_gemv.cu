// decode_gemv.cu — layouts of a streamed decode GEMM's stages (M = 8), one arithmetic.
//
// A probe, not project code. The decode issue asks for decode GEMMs at ≥ 80% of the copy
// bandwidth on 48 SMs. This times, on grids of one block per SM (16 … 132 SMs), the same GEMM
// C = A·Wᵀ (A 8 × K, W N × K, FP16, FP32 sums) four ways (and variants of the first):
//   stream    the library's kernel (kernels/gemm_stream.cu, included as it is), with the
//             library's tensor maps: stages of [slice][row][32 halves], one 3-D copy a tile of
//             16 rows and one for A, 1 or 2 tiles a unit;
//   packed    weights and A packed ahead of time so that a stage is two contiguous 1-D bulk
//             copies (32 KiB of B, 16 KiB of A) in the library kernel's stage layout;
//             `packed B` packs only the weights and copies A as the library does;
//   resident  the library's layout, with A copied once per block and kept, and a stage's B
//             one box of the unit's 16 or 32 rows (section "resident" below);
//   stream3d  the rows of the library's kernel until 2026-11-25 (1 KiB, two 512-byte boxes side
//             by side), at today's 512-column chunks: a stage is one 3-D copy of B (256 × 2 × 16)
//             and one of A, read with 2-way bank conflicts, one tile a unit. (That kernel
//             itself streamed 1,024-column chunks in four 2-D boxes of B and four of A.)
// (Another way, each warp streaming its own slices with 16-byte cp.async copies, reached only
// 18–30% of the copy bandwidth on 48 SMs on an H200 and was dropped; docs/kernels-h200.md.)
// All use the skinny kernel's slices, warp split and sum order (kernels/skinny.cuh), so they
// must give the same bits on every grid; each is also checked against a CPU reference in
// double precision. `run.sh kc1024` builds it once more against kernels/ with 1,024-column
// chunks (RS_GEMM_D_KC), so `stream` is the library's kernel with 32-KiB tile copies (the
// ways that take UKC follow). Build and run on the GPU host, from this directory:
//   nvcc -O3 -std=c++17 -I../../kernels -gencode=arch=compute_90a,code=sm_90a -o decode_gemv decode_gemv.cu -lcuda
//   ./decode_gemv
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "gemm_stream.cu"

#include "check.h"

constexpr unsigned UN = RS_GEMM_T_BN;    // 16 output columns a unit
constexpr unsigned UKC = RS_GEMM_D_KC;  // K columns a stage

// The sum of a unit's 8 warp partials in warp order, then the library's epilogue: the loop of
// rs::skinny_store for threads `tid` of `threads`.
__device__ __forceinline__ void store_unit(const GemmParams& p, const float* red, unsigned tid, unsigned threads, unsigned n0) {
    for (unsigned t = tid; t < p.m * UN; t += threads) {
        const unsigned row = t / UN, c = t % UN, col = n0 + c;
        if (col >= p.n) continue;
        float v = 0.0f;
#pragma unroll
        for (int w = 0; w < 8; ++w) v += red[(w * UN + c) * 8 + row];
        rs::gemm_store(p, rs::ptr<__half>(p.c), nullptr, nullptr, row, col, v, 0.0f, false, false);
    }
}

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
// Thread 0 makes a ring's barriers, a full one (one arrival) and an empty one (`consumers`
// warps) a stage, and `single` (one arrival) where not 0; then the block meets.
__device__ __forceinline__ void init_ring(unsigned full, unsigned empty, unsigned stages, unsigned consumers,
                                          unsigned single = 0) {
    if (threadIdx.x == 0) {
        for (unsigned s = 0; s < stages; ++s) {
            rs::mbar_init(full + 8 * s, 1);
            rs::mbar_init(empty + 8 * s, consumers);
        }
        if (single) rs::mbar_init(single, 1);
        rs::mbar_init_fence();
    }
    __syncthreads();
}

// A unit's outputs from the consumer warps' sums of its `tiles` tiles (of T), as the library's
// kernel writes them: each warp's partial tiles, then their sum in warp order.
template <unsigned T>
__device__ __forceinline__ void finish_unit(const GemmParams& p, float* red, const float (&acc)[T][4], unsigned tiles,
                                            unsigned n0) {
    rs::named_barrier(1, WARPS * 32);
#pragma unroll
    for (unsigned j = 0; j < T; ++j) rs::skinny_partial<MAX_M>(red + j * WARPS * BN * MAX_M, 0, acc[j]);
    rs::named_barrier(1, WARPS * 32);
    for (unsigned j = 0; j < tiles; ++j) store_unit(p, red + j * WARPS * BN * MAX_M, threadIdx.x, WARPS * 32, n0 + j * BN);
}

// The stages of this block: its units (blockIdx.x, + gridDim.x, …) × the chunks of K.
__device__ __forceinline__ unsigned block_stages(unsigned units, unsigned chunks) {
    return blockIdx.x < units ? ((units - 1 - blockIdx.x) / gridDim.x + 1) * chunks : 0;
}
#endif

// ---- stream3d ----------------------------------------------------------------------------


// As gemm_f16_stream_m8 (batch 1, no norm), with K a multiple of 256 and the stage's B and A
// each one 3-D box: the stage holds B's 16 rows × UKC columns, then A's 8 rows × UKC, row-major.
__global__ void __launch_bounds__(RS_GEMM_D_THREADS, 1) stream3d(const __grid_constant__ GemmTmaParams tp) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    extern __shared__ __align__(128) unsigned char smem3d[];
    __shared__ float red[8 * UN * 8];
    unsigned char* smem = smem3d;
    const GemmParams& p = tp.g;
    constexpr unsigned STAGE_B = UN * UKC * 2, STAGE_A = 8 * UKC * 2, STAGE = STAGE_B + STAGE_A;
    constexpr unsigned STAGES = RS_GEMM_D_RING_BYTES / STAGE;
    const unsigned base = rs::smem_addr(smem), full = base + RS_GEMM_D_RING_BYTES, empty = full + 8 * STAGES;
    const unsigned chunks = (p.k + UKC - 1) / UKC, units = (p.n + UN - 1) / UN;
    init_ring(full, empty, STAGES, 8);
    const unsigned total = block_stages(units, chunks);
    if (threadIdx.x == 8 * 32) {
        for (unsigned t = 0; t < total; ++t) {
            const unsigned slot = t % STAGES, f = full + 8 * slot, dst = base + slot * STAGE;
            const int n0 = (int)((blockIdx.x + t / chunks * gridDim.x) * UN), g0 = (int)(t % chunks * (UKC / 256));
            if (t >= STAGES) rs::mbar_wait(empty + 8 * slot, (t / STAGES - 1) & 1);
            rs::mbar_expect_tx(f, STAGE);
            rs::tma_load_3d(dst, &tp.map_b, 0, g0, n0, f);
            rs::tma_load_3d(dst + STAGE_B, &tp.map_a, 0, g0, 0, f);
        }
        return;
    }
    if (threadIdx.x >= 8 * 32) return;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, q = lane & 3;
    unsigned t = 0;
    RS_FOR_EACH_STATIC_UNIT(u, units) {
        float acc[1][4] = {};
        for (unsigned c = 0; c < chunks; ++c, ++t) {
            const unsigned slot = t % STAGES, kc = min(UKC, p.k - c * UKC);
            rs::mbar_wait(full + 8 * slot, (t / STAGES) & 1);
            const unsigned char* b_stage = smem + slot * STAGE;
            const unsigned char* a_stage = b_stage + STAGE_B;
#pragma unroll
            for (int i = 0; i < (int)(UKC / 256); ++i) {
                if ((warp + i * 8) * 32 >= kc) break;
                const unsigned kl = (warp + i * 8) * 32 + q * 8;
                const uint4 blo = *reinterpret_cast<const uint4*>(b_stage + (g * UKC + kl) * 2);
                const uint4 bhi = *reinterpret_cast<const uint4*>(b_stage + ((g + 8) * UKC + kl) * 2);
                const uint4 av = *reinterpret_cast<const uint4*>(a_stage + (g * UKC + kl) * 2);
                rs::skinny_slice(acc[0], blo, bhi, av);
            }
            __syncwarp();
            if (lane == 0) rs::mbar_arrive(empty + 8 * slot);
        }
        finish_unit(p, red, acc, 1, (unsigned)u * UN);
    }
#endif
}

// ---- variants of the library's kernel -----------------------------------------------------
//
// What holds the library's kernel below the copy rate an SM reaches alone (hbm_read.cu)? Each
// variant keeps its ring, units and tiles (gemm_stream.cu's Ring, tiles_per_unit) and changes
// one thing:
//   l1a         A is not copied with each stage: the consumers read their A fragments from
//               global memory (L1) as they use them. Same bits as the library's kernel.
//   copies      the library's copies, but the consumers only wait for each stage and free it
//               (no loads, no math): the rate the copies alone allow. No output.
//   copies -A   as `copies`, without A's copies. No output.
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
template <int MODE>
__device__ __forceinline__ void variant_fill(const GemmTmaParams& tp, const Ring& r, unsigned stage_bytes, unsigned t) {
    const unsigned slot = t % r.stages, full = r.full + 8 * slot, dst = r.base + slot * stage_bytes;
    const unsigned u = unit_of(r, t), tiles = tiles_of(r, u);
    const int s0 = (int)((t % r.chunks) * CHUNK_SLICES);
    if (t >= r.stages) rs::mbar_wait(r.empty + 8 * slot, (t / r.stages - 1) & 1);
    const bool with_a = MODE == 1;
    rs::mbar_expect_tx(full, tiles * COPY_B + (with_a ? COPY_A : 0));
    for (unsigned i = 0; i < tiles; ++i) rs::tma_load_3d(dst + i * COPY_B, &tp.map_b, 0, (int)((u * r.per_unit + i) * BN), s0, full);
    if (with_a) rs::tma_load_3d(dst + r.per_unit * COPY_B, &tp.map_a, 0, 0, s0, full);
}
#endif

template <int MODE>
__global__ void __launch_bounds__(RS_GEMM_D_THREADS, 1) variant(const __grid_constant__ GemmTmaParams tp) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    extern __shared__ __align__(128) unsigned char smem_v[];
    __shared__ float red[MAX_T * WARPS * BN * MAX_M];
    const GemmParams& p = tp.g;
    Ring r = ring_of(p, smem_v);
    const unsigned stage_bytes = r.per_unit * COPY_B + (MODE == 1 ? COPY_A : 0);
    r.stages = min((unsigned)RS_GEMM_D_MAX_STAGES, RS_GEMM_D_RING_BYTES / stage_bytes);
    init_ring(r.full, r.empty, r.stages, WARPS);
    const unsigned total = block_stages(r.units, r.chunks);
    if (threadIdx.x >= WARPS * 32) {
        if (threadIdx.x == WARPS * 32)
            for (unsigned t = 0; t < total; ++t) variant_fill<MODE>(tp, r, stage_bytes, t);
        return;
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, q = lane & 3;
    const unsigned lo = g * ROW_BYTES + q * 16, hi = lo + 8 * ROW_BYTES;
    const __half* A = rs::ptr<const __half>(p.a) + (u64)min(g, (int)p.m - 1) * p.lda;
    unsigned t = 0;
    RS_FOR_EACH_STATIC_UNIT(u, r.units) {
        const unsigned tiles = tiles_of(r, (unsigned)u), n0 = (unsigned)u * r.per_unit * BN;
        float acc[MAX_T][4] = {};
        for (unsigned c = 0; c < r.chunks; ++c, ++t) {
            const unsigned slot = t % r.stages, slices = min(CHUNK_SLICES, (p.k - c * RS_GEMM_D_KC) / SLICE);
            rs::mbar_wait(r.full + 8 * slot, (t / r.stages) & 1);
            if (MODE == 0) {
                const unsigned char* b_stage = smem_v + slot * stage_bytes;
#pragma unroll
                for (int i = 0; i < SLICES; ++i) {
                    const unsigned sl = warp + i * WARPS;
                    if (sl >= slices) break;
                    const unsigned kl = c * RS_GEMM_D_KC + sl * SLICE + q * 8;
                    uint4 av = make_uint4(0, 0, 0, 0);
                    if (g < (int)p.m) av = __ldg(reinterpret_cast<const uint4*>(A + kl));
#pragma unroll
                    for (unsigned j = 0; j < MAX_T; ++j) {
                        const unsigned char* bs = b_stage + j * COPY_B + sl * BN * ROW_BYTES;
                        if (j < tiles)
                            rs::skinny_slice(acc[j], *reinterpret_cast<const uint4*>(bs + lo), *reinterpret_cast<const uint4*>(bs + hi), av);
                    }
                }
            }
            __syncwarp();
            if (lane == 0) rs::mbar_arrive(r.empty + 8 * slot);
        }
        if (MODE != 0) continue;
        finish_unit(p, red, acc, tiles, n0);
    }
#endif
}

// ---- packed -------------------------------------------------------------------------------
//
// Weights packed ahead of time (as an engine could at load) so that what a stage holds is one
// contiguous block: [tile of 16 rows][chunk of PKC columns][slice of 32][row][32 halves], and A
// as [chunk][slice][row of 8][32]. Each stage is then two 1-D bulk copies (cp.async.bulk), B's
// 16·PKC·2 bytes and A's 8·PKC·2, landing in the library kernel's stage layout, read by the
// library's arithmetic: the same bits. PKC = 1024: copies of 32 KiB and 16 KiB. K and N must be
// multiples of PKC and 16 (the probe's shapes are).
constexpr unsigned PKC = 1024, PSLICES = PKC / 32;
constexpr unsigned PSTAGE_B = 16 * PKC * 2, PSTAGE_A = 8 * PKC * 2, PSTAGE = PSTAGE_B + PSTAGE_A;
constexpr unsigned PSTAGES = RS_GEMM_D_RING_BYTES / PSTAGE;

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
// One 1-D bulk copy of `bytes` from global `src` to shared `dst`, completing on barrier `bar`.
__device__ __forceinline__ void bulk_copy(unsigned dst, const char* src, unsigned bytes, unsigned bar) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(dst),
                 "l"(src), "r"(bytes), "r"(bar)
                 : "memory");
}

// The consumers of `packed` and `packed B`: every unit of this block, a stage of B's 16 rows
// and A's 8 rows of a PKC-column chunk at a time, in the library kernel's slices and order.
__device__ __forceinline__ void packed_consume(const GemmParams& p, const unsigned char* smem, unsigned full,
                                               unsigned empty, float* red, unsigned units, unsigned chunks) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, q = lane & 3;
    const unsigned lo = g * 64 + q * 16, hi = lo + 8 * 64;
    unsigned t = 0;
    RS_FOR_EACH_STATIC_UNIT(u, units) {
        float acc[1][4] = {};
        for (unsigned c = 0; c < chunks; ++c, ++t) {
            const unsigned slot = t % PSTAGES;
            rs::mbar_wait(full + 8 * slot, (t / PSTAGES) & 1);
            const unsigned char* b_stage = smem + slot * PSTAGE;
            const unsigned char* a_stage = b_stage + PSTAGE_B;
#pragma unroll
            for (unsigned i = 0; i < PSLICES / 8; ++i) {
                const unsigned sl = warp + i * 8;
                const uint4 av = *reinterpret_cast<const uint4*>(a_stage + sl * 8 * 64 + lo);
                const unsigned char* bs = b_stage + sl * 16 * 64;
                rs::skinny_slice(acc[0], *reinterpret_cast<const uint4*>(bs + lo), *reinterpret_cast<const uint4*>(bs + hi), av);
            }
            __syncwarp();
            if (lane == 0) rs::mbar_arrive(empty + 8 * slot);
        }
        finish_unit(p, red, acc, 1, (unsigned)u * UN);
    }
}
#endif

// `packed B` (A_MAP): only the weights packed (what an engine can do once, at load); A as the
// library copies it, from the activations as the previous kernel wrote them (the library's 3-D
// tensor map, tp.map_a, boxes of UKC columns: PKC / UKC boxes a stage, landing as `packed` lays
// A out). Else tp.g.a is the packed A. tp.g.b is the packed W; tp.map_b is not read. The same
// arithmetic either way: the same bits.
constexpr unsigned PA_BOX = 8 * UKC * 2;
static_assert(PKC % UKC == 0 && PSTAGE_A == (PKC / UKC) * PA_BOX, "A's boxes fill a packed stage's A");

template <bool A_MAP>
__global__ void __launch_bounds__(RS_GEMM_D_THREADS, 1) packed(const __grid_constant__ GemmTmaParams tp) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    extern __shared__ __align__(128) unsigned char smem_p[];
    __shared__ float red[8 * UN * 8];
    const GemmParams& p = tp.g;
    const unsigned base = rs::smem_addr(smem_p), full = base + RS_GEMM_D_RING_BYTES, empty = full + 8 * PSTAGES;
    const unsigned chunks = p.k / PKC, units = p.n / UN;
    init_ring(full, empty, PSTAGES, 8);
    const unsigned total = block_stages(units, chunks);
    if (threadIdx.x >= 8 * 32) {
        if (threadIdx.x != 8 * 32) return;
        const char* B = rs::ptr<const char>(p.b);
        const char* A = rs::ptr<const char>(p.a);
        for (unsigned t = 0; t < total; ++t) {
            const unsigned slot = t % PSTAGES, f = full + 8 * slot, dst = base + slot * PSTAGE;
            const unsigned u = blockIdx.x + t / chunks * gridDim.x, c = t % chunks;
            if (t >= PSTAGES) rs::mbar_wait(empty + 8 * slot, (t / PSTAGES - 1) & 1);
            rs::mbar_expect_tx(f, PSTAGE);
            bulk_copy(dst, B + ((u64)u * chunks + c) * PSTAGE_B, PSTAGE_B, f);
            if (A_MAP)
                for (unsigned h = 0; h < PKC / UKC; ++h)
                    rs::tma_load_3d(dst + PSTAGE_B + h * PA_BOX, &tp.map_a, 0, 0, (int)(c * PSLICES + h * (UKC / 32)), f);
            else
                bulk_copy(dst + PSTAGE_B, A + (u64)c * PSTAGE_A, PSTAGE_A, f);
        }
        return;
    }
    packed_consume(p, smem_p, full, empty, red, units, chunks);
#endif
}

// The packed layouts of W (n × k) and A (8 × k) for `packed`.
static std::vector<__half> pack_w(const std::vector<__half>& w, unsigned n, unsigned k) {
    std::vector<__half> out(w.size());
    size_t o = 0;
    for (unsigned t = 0; t < n / UN; ++t)
        for (unsigned c = 0; c < k / PKC; ++c)
            for (unsigned s = 0; s < PSLICES; ++s)
                for (unsigned r = 0; r < UN; ++r)
                    for (unsigned i = 0; i < 32; ++i) out[o++] = w[(size_t)(t * UN + r) * k + c * PKC + s * 32 + i];
    return out;
}

static std::vector<__half> pack_a(const std::vector<__half>& a, unsigned k) {
    std::vector<__half> out(a.size());
    size_t o = 0;
    for (unsigned c = 0; c < k / PKC; ++c)
        for (unsigned s = 0; s < PSLICES; ++s)
            for (unsigned r = 0; r < 8; ++r)
                for (unsigned i = 0; i < 32; ++i) out[o++] = a[(size_t)r * k + c * PKC + s * 32 + i];
    return out;
}

// ---- resident -----------------------------------------------------------------------------
//
// What the copy counts say (docs/kernels-h200.md): an SM takes a TMA box in ~400 ns whatever
// its size up to 32 KiB, and the library kernel copies 2 or 3 boxes a stage (a tile's 16 KiB
// of B each, A's 8 KiB), so its copies allow ~40–60 GB/s an SM where 48 SMs need ~85. This way
// changes two things and keeps the library's layout (no packing of the weights): A is copied
// once per block into shared memory, where it stays (16·K bytes; K ≤ 4096, so that 128 KiB
// of ring stay in flight, else A comes with each stage as in the library), and a stage's B is
// one 3-D box of the unit's 16·T rows (T = tiles_per_unit: 16 or 32 KiB). So a stage is one box
// of 32 KiB where the grid gives two tiles a unit. Same slices, warps and sums as the
// library's kernel: the same bits. `resident copies` is the same copies with consumers that
// only wait for each stage and free it (no loads, no math, no output): what the copies allow.
constexpr unsigned RES_SMEM = 216 * 1024;  // dynamic shared memory (A, the ring, the barriers);
                                           // with `red`'s 8 KiB, under an SM's 227 KiB
constexpr unsigned RES_BARS = 8 * (2 * RS_GEMM_D_MAX_STAGES + 1);
constexpr unsigned RES_A_MAX = 64 * 1024;

struct ResParams {
    RsTensorMap map_a, map_b16, map_b32;  // A {32, 8, 16 slices}; B {32, 16 or 32 rows, 16 slices}
    GemmParams g;
};

template <bool COMPUTE>
__global__ void __launch_bounds__(RS_GEMM_D_THREADS, 1) resident(const __grid_constant__ ResParams rp) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    extern __shared__ __align__(128) unsigned char smem_r[];
    __shared__ float red[MAX_T * WARPS * BN * MAX_M];
    const GemmParams& p = rp.g;
    const unsigned tiles = (p.n + BN - 1) / BN, per_unit = tiles_per_unit(tiles, gridDim.x);
    const unsigned units = (tiles + per_unit - 1) / per_unit, chunks = (p.k + RS_GEMM_D_KC - 1) / RS_GEMM_D_KC;
    const bool a_res = chunks * COPY_A <= RES_A_MAX;
    const unsigned a_bytes = a_res ? chunks * COPY_A : 0, stage_bytes = per_unit * COPY_B + (a_res ? 0 : COPY_A);
    const unsigned stages = min((unsigned)RS_GEMM_D_MAX_STAGES, (RES_SMEM - RES_BARS - a_bytes) / stage_bytes);
    const unsigned base = rs::smem_addr(smem_r), ring = base + a_bytes, bars = base + RES_SMEM - RES_BARS;
    const unsigned full = bars, empty = bars + 8 * RS_GEMM_D_MAX_STAGES, a_full = empty + 8 * RS_GEMM_D_MAX_STAGES;
    init_ring(full, empty, stages, WARPS, a_full);
    const unsigned total = block_stages(units, chunks);
    if (threadIdx.x >= WARPS * 32) {
        if (threadIdx.x != WARPS * 32) return;
        const void* map_b = per_unit == 2 ? (const void*)&rp.map_b32 : (const void*)&rp.map_b16;
        // The stages' weights first (they do not wait for A), then A once, then the rest.
        const unsigned early = min(total, stages);
        for (unsigned t = 0; t < total; ++t) {
            if (t == early && a_res && total > 0) {
                rs::mbar_expect_tx(a_full, a_bytes);
                for (unsigned c = 0; c < chunks; ++c) rs::tma_load_3d(base + c * COPY_A, &rp.map_a, 0, 0, (int)(c * CHUNK_SLICES), a_full);
            }
            const unsigned slot = t % stages, f = full + 8 * slot, dst = ring + slot * stage_bytes;
            const unsigned u = blockIdx.x + t / chunks * gridDim.x;
            const int s0 = (int)((t % chunks) * CHUNK_SLICES);
            if (t >= stages) rs::mbar_wait(empty + 8 * slot, (t / stages - 1) & 1);
            rs::mbar_expect_tx(f, stage_bytes);
            rs::tma_load_3d(dst, map_b, 0, (int)(u * per_unit * BN), s0, f);
            if (!a_res) rs::tma_load_3d(dst + per_unit * COPY_B, &rp.map_a, 0, 0, s0, f);
        }
        if (total > 0 && total <= early && a_res) {
            rs::mbar_expect_tx(a_full, a_bytes);
            for (unsigned c = 0; c < chunks; ++c) rs::tma_load_3d(base + c * COPY_A, &rp.map_a, 0, 0, (int)(c * CHUNK_SLICES), a_full);
        }
        return;
    }
    if (total == 0) return;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, q = lane & 3;
    const unsigned lo = g * ROW_BYTES + q * 16, hi = lo + 8 * ROW_BYTES;
    if (a_res) rs::mbar_wait(a_full, 0);
    unsigned t = 0;
    RS_FOR_EACH_STATIC_UNIT(u, units) {
        const unsigned mine = min(per_unit, tiles - (unsigned)u * per_unit), n0 = (unsigned)u * per_unit * BN;
        float acc[MAX_T][4] = {};
        for (unsigned c = 0; c < chunks; ++c, ++t) {
            const unsigned slot = t % stages, slices = min(CHUNK_SLICES, (p.k - c * RS_GEMM_D_KC) / SLICE);
            rs::mbar_wait(full + 8 * slot, (t / stages) & 1);
            const unsigned char* b_stage = smem_r + a_bytes + slot * stage_bytes;
            const unsigned char* a_stage = a_res ? smem_r + c * COPY_A : b_stage + per_unit * COPY_B;
#pragma unroll
            for (int i = 0; i < SLICES; ++i) {
                const unsigned sl = warp + i * WARPS;
                if (!COMPUTE || sl >= slices) break;
                const uint4 av = *reinterpret_cast<const uint4*>(a_stage + sl * MAX_M * ROW_BYTES + lo);
                // A box of 16·T rows lands as [slice][16·T rows][32 halves]: tile j's slice
                // starts at row 16·j of it.
                const unsigned char* bs = b_stage + sl * per_unit * BN * ROW_BYTES;
#pragma unroll
                for (unsigned j = 0; j < MAX_T; ++j) {
                    const unsigned char* bj = bs + j * BN * ROW_BYTES;
                    if (j < mine)
                        rs::skinny_slice(acc[j], *reinterpret_cast<const uint4*>(bj + lo), *reinterpret_cast<const uint4*>(bj + hi), av);
                }
            }
            __syncwarp();
            if (lane == 0) rs::mbar_arrive(empty + 8 * slot);
        }
        if (COMPUTE) finish_unit(p, red, acc, mine, n0);
    }
#endif
}

// ---- direct and packed res (2026-11-26) ---------------------------------------------------
//
// The packed layout of W above is [tile of 16 rows][K slice of 32][row][32 halves] whatever PKC
// is: a tile's slice is 1 KiB of consecutive bytes.
//   packed res  `packed B` with A resident: copied once per block (the library's A map, K ≤
//               4096), so a stage is one 1-D bulk copy of 32 KiB; A a stage as `packed B`
//               where K is larger.
// Same slices, warps and sums: the same bits as `stream`. (A way without TMA, each warp loading
// its slices of the packed W straight into registers 8 slices ahead, one or two blocks an SM,
// read 21–33% of the copy bandwidth on 48 SMs of an H200 and was dropped.)
__global__ void __launch_bounds__(RS_GEMM_D_THREADS, 1) pres(const __grid_constant__ GemmTmaParams tp) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    extern __shared__ __align__(128) unsigned char smem_pr[];
    __shared__ float red[8 * UN * 8];
    const GemmParams& p = tp.g;
    const unsigned chunks = p.k / PKC, units = p.n / UN;
    const bool a_res = chunks * PSTAGE_A <= RES_A_MAX;
    const unsigned a_bytes = a_res ? chunks * PSTAGE_A : 0, stage = PSTAGE_B + (a_res ? 0 : PSTAGE_A);
    const unsigned stages = min((unsigned)RS_GEMM_D_MAX_STAGES, (RES_SMEM - RES_BARS - a_bytes) / stage);
    const unsigned base = rs::smem_addr(smem_pr), ring = base + a_bytes, bars = base + RES_SMEM - RES_BARS;
    const unsigned full = bars, empty = bars + 8 * RS_GEMM_D_MAX_STAGES, a_full = empty + 8 * RS_GEMM_D_MAX_STAGES;
    init_ring(full, empty, stages, 8, a_full);
    const unsigned total = block_stages(units, chunks);
    if (threadIdx.x >= 8 * 32) {
        if (threadIdx.x != 8 * 32 || total == 0) return;
        const char* B = rs::ptr<const char>(p.b);
        const unsigned early = min(total, stages);
        for (unsigned t = 0; t < total; ++t) {
            const unsigned slot = t % stages, f = full + 8 * slot, dst = ring + slot * stage;
            const unsigned u = blockIdx.x + t / chunks * gridDim.x, c = t % chunks;
            if (t >= stages) rs::mbar_wait(empty + 8 * slot, (t / stages - 1) & 1);
            rs::mbar_expect_tx(f, stage);
            bulk_copy(dst, B + ((u64)u * chunks + c) * PSTAGE_B, PSTAGE_B, f);
            if (!a_res)
                for (unsigned h = 0; h < PKC / UKC; ++h)
                    rs::tma_load_3d(dst + PSTAGE_B + h * PA_BOX, &tp.map_a, 0, 0, (int)(c * PSLICES + h * (UKC / 32)), f);
            if (a_res && t + 1 == early) {  // A once, after the first stages' weights
                rs::mbar_expect_tx(a_full, a_bytes);
                for (unsigned h = 0; h < p.k / UKC; ++h)
                    rs::tma_load_3d(base + h * PA_BOX, &tp.map_a, 0, 0, (int)(h * (UKC / 32)), a_full);
            }
        }
        return;
    }
    if (total == 0) return;
    if (a_res) rs::mbar_wait(a_full, 0);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, q = lane & 3;
    const unsigned lo = g * 64 + q * 16, hi = lo + 8 * 64;
    unsigned t = 0;
    RS_FOR_EACH_STATIC_UNIT(u, units) {
        float acc[1][4] = {};
        for (unsigned c = 0; c < chunks; ++c, ++t) {
            const unsigned slot = t % stages;
            rs::mbar_wait(full + 8 * slot, (t / stages) & 1);
            const unsigned char* b_stage = smem_pr + a_bytes + slot * stage;
            const unsigned char* a_stage = a_res ? smem_pr + c * PSTAGE_A : b_stage + PSTAGE_B;
#pragma unroll
            for (unsigned i = 0; i < PSLICES / 8; ++i) {
                const unsigned sl = warp + i * 8;
                const uint4 av = *reinterpret_cast<const uint4*>(a_stage + sl * 8 * 64 + lo);
                const unsigned char* bs = b_stage + sl * 16 * 64;
                rs::skinny_slice(acc[0], *reinterpret_cast<const uint4*>(bs + lo), *reinterpret_cast<const uint4*>(bs + hi), av);
            }
            __syncwarp();
            if (lane == 0) rs::mbar_arrive(empty + 8 * slot);
        }
        finish_unit(p, red, acc, 1, (unsigned)u * UN);
    }
#endif
}

// ---- packed regA (2026-11-26) -------------------------------------------------------------
//
// `packed` with A in registers: a warp uses the same K slices of A in every unit (w, w + 8,
// …), so each lane loads its 16 bytes of each of them once, at the start, and keeps them; a
// stage is then one 1-D bulk copy of a tile's 1,024 columns (32 KiB) and nothing of A, and the
// consumers read no A from shared memory. S = K / 256 slices a warp (registers: 4·S), so K ≤
// 8192 here. Same slices, warps and sums: the same bits.
constexpr unsigned REG_STAGES = RS_GEMM_D_RING_BYTES / PSTAGE_B;

template <unsigned S>
__global__ void __launch_bounds__(RS_GEMM_D_THREADS, 1) pregs(const __grid_constant__ GemmTmaParams tp) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    extern __shared__ __align__(128) unsigned char smem_rg[];
    __shared__ float red[8 * UN * 8];
    constexpr unsigned CHUNKS = S * 256 / PKC;
    static_assert(S * 256 % PKC == 0, "whole chunks");
    const GemmParams& p = tp.g;
    const unsigned units = p.n / UN;
    const unsigned base = rs::smem_addr(smem_rg), full = base + RS_GEMM_D_RING_BYTES, empty = full + 8 * REG_STAGES;
    init_ring(full, empty, REG_STAGES, 8);
    const unsigned total = block_stages(units, CHUNKS);
    if (threadIdx.x >= 8 * 32) {
        if (threadIdx.x != 8 * 32) return;
        const char* B = rs::ptr<const char>(p.b);
        for (unsigned t = 0; t < total; ++t) {
            const unsigned slot = t % REG_STAGES, f = full + 8 * slot;
            const unsigned u = blockIdx.x + t / CHUNKS * gridDim.x, c = t % CHUNKS;
            if (t >= REG_STAGES) rs::mbar_wait(empty + 8 * slot, (t / REG_STAGES - 1) & 1);
            rs::mbar_expect_tx(f, PSTAGE_B);
            bulk_copy(base + slot * PSTAGE_B, B + ((u64)u * CHUNKS + c) * PSTAGE_B, PSTAGE_B, f);
        }
        return;
    }
    if (total == 0) return;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, q = lane & 3;
    uint4 av[S];
    {
        const __half* A = rs::ptr<const __half>(p.a) + (u64)min(g, (int)p.m - 1) * p.lda + q * 8;
#pragma unroll
        for (unsigned i = 0; i < S; ++i)
            av[i] = g < (int)p.m ? __ldg(reinterpret_cast<const uint4*>(A + (warp + 8 * i) * 32)) : make_uint4(0, 0, 0, 0);
    }
    const unsigned lo = g * 64 + q * 16, hi = lo + 8 * 64;
    unsigned t = 0;
    RS_FOR_EACH_STATIC_UNIT(u, units) {
        float acc[1][4] = {};
#pragma unroll
        for (unsigned c = 0; c < CHUNKS; ++c, ++t) {
            const unsigned slot = t % REG_STAGES;
            rs::mbar_wait(full + 8 * slot, (t / REG_STAGES) & 1);
            const unsigned char* b_stage = smem_rg + slot * PSTAGE_B;
#pragma unroll
            for (unsigned i = 0; i < PSLICES / 8; ++i) {
                const unsigned char* bs = b_stage + (warp + i * 8) * 16 * 64;
                rs::skinny_slice(acc[0], *reinterpret_cast<const uint4*>(bs + lo), *reinterpret_cast<const uint4*>(bs + hi),
                                 av[c * (PSLICES / 8) + i]);
            }
            __syncwarp();
            if (lane == 0) rs::mbar_arrive(empty + 8 * slot);
        }
        finish_unit(p, red, acc, 1, (unsigned)u * UN);
    }
#endif
}

// ---- host --------------------------------------------------------------------------------

static PFN_cuTensorMapEncodeTiled_v12000 encode;

static RsTensorMap map_of(const void* p, int dims, const cuuint64_t* size, const cuuint64_t* stride, const cuuint32_t* box) {
    CUtensorMap m;
    const cuuint32_t es[3] = {1, 1, 1};
    const CUresult r = encode(&m, CU_TENSOR_MAP_DATA_TYPE_FLOAT16, dims, const_cast<void*>(p), size, stride, box, es,
                              CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_NONE, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                              CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS) {
        fprintf(stderr, "cuTensorMapEncodeTiled: %d\n", (int)r);
        exit(1);
    }
    RsTensorMap out;
    static_assert(sizeof(out) == sizeof(m), "a tensor map is 128 bytes");
    memcpy(&out, &m, sizeof(m));
    return out;
}

static float h2f(__half h) { return __half2float(h); }

struct Way {
    const char* name;
    int id;
    bool computes;  // writes C (else timed only)
};

int main() {
    cudaDriverEntryPointQueryResult q;
    CK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", (void**)&encode, 12000, cudaEnableDefault, &q));
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    const int all = prop.multiProcessorCount;
    CK(cudaFuncSetAttribute(gemm_f16_stream_m8, cudaFuncAttributeMaxDynamicSharedMemorySize, RS_GEMM_D_RING_BYTES + 256));
    CK(cudaFuncSetAttribute(stream3d, cudaFuncAttributeMaxDynamicSharedMemorySize, RS_GEMM_D_RING_BYTES + 256));
    CK(cudaFuncSetAttribute(variant<0>, cudaFuncAttributeMaxDynamicSharedMemorySize, RS_GEMM_D_RING_BYTES + 256));
    CK(cudaFuncSetAttribute(variant<1>, cudaFuncAttributeMaxDynamicSharedMemorySize, RS_GEMM_D_RING_BYTES + 256));
    CK(cudaFuncSetAttribute(variant<2>, cudaFuncAttributeMaxDynamicSharedMemorySize, RS_GEMM_D_RING_BYTES + 256));
    CK(cudaFuncSetAttribute(packed<false>, cudaFuncAttributeMaxDynamicSharedMemorySize, RS_GEMM_D_RING_BYTES + 256));
    CK(cudaFuncSetAttribute(packed<true>, cudaFuncAttributeMaxDynamicSharedMemorySize, RS_GEMM_D_RING_BYTES + 256));
    CK(cudaFuncSetAttribute(resident<true>, cudaFuncAttributeMaxDynamicSharedMemorySize, RES_SMEM));
    CK(cudaFuncSetAttribute(resident<false>, cudaFuncAttributeMaxDynamicSharedMemorySize, RES_SMEM));
    CK(cudaFuncSetAttribute(pres, cudaFuncAttributeMaxDynamicSharedMemorySize, RES_SMEM));
    CK(cudaFuncSetAttribute(pregs<8>, cudaFuncAttributeMaxDynamicSharedMemorySize, RS_GEMM_D_RING_BYTES + 256));
    CK(cudaFuncSetAttribute(pregs<16>, cudaFuncAttributeMaxDynamicSharedMemorySize, RS_GEMM_D_RING_BYTES + 256));
    CK(cudaFuncSetAttribute(pregs<32>, cudaFuncAttributeMaxDynamicSharedMemorySize, RS_GEMM_D_RING_BYTES + 256));

    const double copy_gbs = copy_bandwidth_gbs();
    printf("%s, %d SMs; copy bandwidth %.0f GB/s\n", prop.name, all, copy_gbs);

    const Way ways[] = {{"stream", 0, true}, {"stream3d", 1, true}, {"l1a", 2, true}, {"copies", 3, false}, {"copies -A", 4, false}, {"packed", 5, true}, {"packed B", 8, true}, {"resident", 6, true}, {"resident copies", 7, false}, {"packed res", 11, true}, {"packed regA", 12, true}};
    const unsigned shapes[][2] = {{4096, 4096}, {28672, 4096}, {4096, 14336}, {16384, 2048}, {2048, 8192}, {6144, 4096}};
    const int grids[] = {16, 32, 48, 64, 96, 132};
    std::mt19937 rng(12345);
    std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
    bool all_ok = true;
    for (const auto& s : shapes) {
        const unsigned m = 8, n = s[0], k = s[1];
        const size_t wn = (size_t)n * k, wbytes = wn * 2;
        const int copies = (int)std::min<size_t>(16, std::max<size_t>(1, (3 * (size_t)prop.l2CacheSize + wbytes - 1) / wbytes));
        std::vector<__half> ha(m * k), hw(wn);
        for (auto& x : ha) x = __float2half(uni(rng));
        for (auto& x : hw) x = __float2half(uni(rng) * 0.05f);
        __half *da, *dw, *dc;
        CK(cudaMalloc(&da, ha.size() * 2));
        CK(cudaMalloc(&dw, wbytes * copies));
        CK(cudaMalloc(&dc, (size_t)m * n * 2 * copies));
        CK(cudaMemcpy(da, ha.data(), ha.size() * 2, cudaMemcpyHostToDevice));
        for (int c = 0; c < copies; ++c) CK(cudaMemcpy(dw + c * wn, hw.data(), wbytes, cudaMemcpyHostToDevice));
        // The packed copies for `packed`.
        __half *dpa, *dpw;
        CK(cudaMalloc(&dpa, ha.size() * 2));
        CK(cudaMalloc(&dpw, wbytes * copies));
        {
            const std::vector<__half> pa = pack_a(ha, k), pw = pack_w(hw, n, k);
            CK(cudaMemcpy(dpa, pa.data(), pa.size() * 2, cudaMemcpyHostToDevice));
            for (int c = 0; c < copies; ++c) CK(cudaMemcpy(dpw + c * wn, pw.data(), wbytes, cudaMemcpyHostToDevice));
        }
        std::vector<double> ref((size_t)m * n);
        for (unsigned i = 0; i < m; ++i)
            for (unsigned j = 0; j < n; ++j) {
                double acc = 0;
                for (unsigned kk = 0; kk < k; ++kk) acc += (double)h2f(ha[i * k + kk]) * h2f(hw[(size_t)j * k + kk]);
                ref[(size_t)i * n + j] = acc;
            }
        std::vector<GemmTmaParams> tp2(copies), tp3(copies);
        std::vector<ResParams> res(copies);
        std::vector<GemmTmaParams> tpk(copies), tpb(copies);  // `packed`, `packed B`
        for (int c = 0; c < copies; ++c) {
            GemmParams g{};
            g.a = (unsigned long long)da;
            g.b = (unsigned long long)(dw + c * wn);
            g.c = (unsigned long long)(dc + (size_t)c * m * n);
            g.m = m, g.n = n, g.k = k, g.batch = 1, g.lda = k, g.ldb = k, g.ldc = n, g.ldr = n;
            g.b_stable = 1;
            // The library's view (params.rs::TensorMapSpec::view): slices of 32 columns, rows, slices.
            const cuuint64_t sb[3] = {32, n, k / 32}, stb[2] = {(cuuint64_t)k * 2, 64};
            const cuuint64_t sa[3] = {32, m, k / 32}, sta[2] = {(cuuint64_t)k * 2, 64};
            const cuuint32_t bb[3] = {32, 16, UKC / 32}, ba[3] = {32, 8, UKC / 32};
            tp2[c] = GemmTmaParams{map_of(da, 3, sa, sta, ba), map_of(dw + c * wn, 3, sb, stb, bb), g};
            const cuuint64_t sb3[3] = {256, k / 256, n}, stb3[2] = {512, (cuuint64_t)k * 2};
            const cuuint64_t sa3[3] = {256, k / 256, m}, sta3[2] = {512, (cuuint64_t)k * 2};
            const cuuint32_t bb3[3] = {256, UKC / 256, 16}, ba3[3] = {256, UKC / 256, 8};
            tp3[c] = GemmTmaParams{map_of(da, 3, sa3, sta3, ba3), map_of(dw + c * wn, 3, sb3, stb3, bb3), g};
            const cuuint32_t bb32[3] = {32, 32, UKC / 32};
            res[c] = ResParams{tp2[c].map_a, tp2[c].map_b, map_of(dw + c * wn, 3, sb, stb, bb32), g};
            tpb[c] = tp2[c];
            tpb[c].g.b = (unsigned long long)(dpw + c * wn);
            tpk[c] = tpb[c];
            tpk[c].g.a = (unsigned long long)dpa;
        }
        const RsTicket ticket{};
        auto launch = [&](int way, int grid, int c) {
            switch (way) {
                case 0: gemm_f16_stream_m8<<<grid, RS_GEMM_D_THREADS, RS_GEMM_D_RING_BYTES + 256>>>(tp2[c], ticket); break;
                case 1: stream3d<<<grid, RS_GEMM_D_THREADS, RS_GEMM_D_RING_BYTES + 256>>>(tp3[c]); break;
                case 2: variant<0><<<grid, RS_GEMM_D_THREADS, RS_GEMM_D_RING_BYTES + 256>>>(tp2[c]); break;
                case 3: variant<1><<<grid, RS_GEMM_D_THREADS, RS_GEMM_D_RING_BYTES + 256>>>(tp2[c]); break;
                case 4: variant<2><<<grid, RS_GEMM_D_THREADS, RS_GEMM_D_RING_BYTES + 256>>>(tp2[c]); break;
                case 5: packed<false><<<grid, RS_GEMM_D_THREADS, RS_GEMM_D_RING_BYTES + 256>>>(tpk[c]); break;
                case 8: packed<true><<<grid, RS_GEMM_D_THREADS, RS_GEMM_D_RING_BYTES + 256>>>(tpb[c]); break;
                case 12:
                    if (k == 2048) pregs<8><<<grid, RS_GEMM_D_THREADS, RS_GEMM_D_RING_BYTES + 256>>>(tpb[c]);
                    else if (k == 4096) pregs<16><<<grid, RS_GEMM_D_THREADS, RS_GEMM_D_RING_BYTES + 256>>>(tpb[c]);
                    else if (k == 8192) pregs<32><<<grid, RS_GEMM_D_THREADS, RS_GEMM_D_RING_BYTES + 256>>>(tpb[c]);
                    break;
                case 11: pres<<<grid, RS_GEMM_D_THREADS, RES_SMEM>>>(tpb[c]); break;
                case 6: resident<true><<<grid, RS_GEMM_D_THREADS, RES_SMEM>>>(res[c]); break;
                default: resident<false><<<grid, RS_GEMM_D_THREADS, RES_SMEM>>>(res[c]); break;
            }
        };
        printf("\n8×%u×%u (W %.1f MB, %d copies): GB/s of A, W and C, %% of the copy bandwidth in brackets\n", n, k,
               wbytes / 1e6, copies);
        printf("%-14s", "way \\ SMs");
        for (int g : grids) printf(" %13d", std::min(g, all));
        printf("   check\n");
        std::vector<__half> first((size_t)m * n), out((size_t)m * n);
        const double bytes = wbytes + 2.0 * m * k + 2.0 * m * n;
        for (const Way& w : ways) {
            printf("%-14s", w.name);
            if (w.id == 12 && k != 2048 && k != 4096 && k != 8192) {
                printf("   (built for K = 2048, 4096, 8192)\n");
                continue;
            }
            bool bitwise = true;
            double err = 0;
            for (int g0 : grids) {
                const int grid = std::min(g0, all);
                CK(cudaMemset(dc, 0xff, (size_t)m * n * 2));  // poison: NaN unless written
                launch(w.id, grid, 0);
                CK(cudaGetLastError());
                CK(cudaDeviceSynchronize());
                CK(cudaMemcpy(out.data(), dc, out.size() * 2, cudaMemcpyDeviceToHost));
                if (w.id == 0 && g0 == grids[0]) first = out;
                if (w.computes) {
                    bitwise = bitwise && memcmp(first.data(), out.data(), out.size() * 2) == 0;
                    double num = 0, den = 0;
                    for (size_t i = 0; i < out.size(); ++i) {
                        const double d = h2f(out[i]) - ref[i];
                        num += std::isnan(d) ? 1e30 : d * d;
                        den += ref[i] * ref[i];
                    }
                    err = std::max(err, std::sqrt(num / den));
                }
                cudaEvent_t e0, e1;
                CK(cudaEventCreate(&e0));
                CK(cudaEventCreate(&e1));
                const int reps = std::max(1, 40 / copies) * copies;
                std::vector<float> v;
                for (int r = 0; r < 6; ++r) {
                    CK(cudaEventRecord(e0));
                    for (int i = 0; i < reps; ++i) launch(w.id, grid, i % copies);
                    CK(cudaEventRecord(e1));
                    CK(cudaEventSynchronize(e1));
                    float ms;
                    CK(cudaEventElapsedTime(&ms, e0, e1));
                    if (r) v.push_back(ms / reps);
                }
                CK(cudaGetLastError());
                std::sort(v.begin(), v.end());
                const double gbs = bytes / (v[v.size() / 2] * 1e6);
                printf(" %6.0f (%3.0f%%)", gbs, 100.0 * gbs / copy_gbs);
                CK(cudaEventDestroy(e0));
                CK(cudaEventDestroy(e1));
            }
            const bool ok = err <= 1e-2 && bitwise;
            all_ok = all_ok && ok;
            if (w.computes)
                printf("   err %.1e, %s\n", err, bitwise ? "bitwise = stream" : "BITS DIFFER");
            else
                printf("   (timed only)\n");
        }
        CK(cudaFree(da));
        CK(cudaFree(dw));
        CK(cudaFree(dc));
        CK(cudaFree(dpa));
        CK(cudaFree(dpw));
    }
    printf("\n%s\n", all_ok ? "all ways correct" : "SOME WAY WRONG");
    return all_ok ? 0 : 1;
}
