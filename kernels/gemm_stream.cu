// gemm_stream.cu — decode-sized GEMMs on Hopper (M ≤ 8): C = act(norm(A)·Bᵀ + bias) + R with
// the weights streamed through a shared-memory ring by bulk tensor copies.
//
// Computes:   as gemm.cu's gemm_f16_skinny_m8 (GemmParams: bias, GELU tanh/erf, FP16 rounding
//             before the residual add, the fused input norm), for M ≤ 8 and batch 1.
// Work unit:  T tiles of 16 output columns (16 rows of B), all M rows. Params::units counts
//             tiles (⌈N/16⌉, the skinny kernel's units); a launch groups them T to a unit, T = 1
//             or 2 by the grid it runs on (tiles_per_unit), and each block loops over units
//             u = blockIdx.x, + gridDim.x, …, so any grid is correct. A tile's sums do not
//             depend on T.
// Claims:     not read: the producer runs a whole ring ahead across this block's units (before
//             the PDL wait too), so units are assigned up front. A claimed SM is given back
//             when the launch ends: about 100 µs for most decode GEMMs on an H200, up to
//             151 µs (Llama-3.2-1B's LM head) on the whole device and 207 µs on 48 SMs
//             (docs/kernels-h200.md); GPT-2's and gpt2-medium's LM heads, which it runs on
//             ≤ 78 SMs (params/gemm.rs, STREAM_TILES_PER_SM), 38–149 µs on 16–64 SMs.
// Why:        at decode sizes reading B is the whole cost, and HBM is saturated only if each
//             of ~48 SMs takes ~85 GB/s. What bounds an SM is its shared memory: every byte
//             is written once by TMA and read once by the consumers (128 B a clock in all).
//             So the layout is conflict-free, and A, copied with each stage, is shared by the
//             unit's T tiles. (The previous layout, rows of 512 bytes, read with 2-way bank
//             conflicts and one tile a unit, spent ~1,100 clocks a 32 KiB of weights: ~56 GB/s
//             an SM, which the probe scripts/probes/decode_gemv.cu measured.)
// Block:      8 consumer warps and a producer warp. A stage holds one K chunk (≤ RS_GEMM_D_KC
//             columns) of the unit's T × 16 weight rows and of A's 8 rows. The producer's first
//             thread issues one copy a tile and one for A into the next free stage of the ring
//             (its full barrier armed with their bytes) and runs ahead across units by the whole
//             ring. With p.b_stable (weights, which the previous kernel does not write) the first
//             stages' weight copies are requested before the kernel waits for that kernel
//             (PDL), their A copies after. Each consumer warp frees a stage through its empty
//             barrier once it has read it.
// Layout:     the tensor maps view a matrix as 3-D (params.rs: `slice`): a K slice of 32
//             columns (64 bytes) of a row, rows, slices. A copy of 16 rows × a chunk lands as
//             [slice][row][32 halves], so a slice of 16 rows is 1 KiB of consecutive bytes and
//             the 8 lanes of a quarter warp (rows g, g + 1 × 4 lanes of 16 bytes) read 128
//             consecutive bytes: no bank conflict. A stage: tile 0's copy, tile 1's, then A's.
// Method:     the skinny kernel's, in the same order: Cᵀ on tensor cores (mma m16n8k16 with 16
//             weight rows as the first operand and the ≤ 8 rows of A as the second, each lane
//             using the 16 contiguous bytes it loads of each row as its fragment elements),
//             32-wide K slices, warp w taking slices w, w + 8, … (RS_GEMM_D_KC is a multiple of
//             256, so a chunk starts at a slice ≡ 0 mod 8), the 8 warps' sums added in warp
//             order through shared memory, and rs::gemm_store's epilogue. So both kernels give
//             the same bits, on any grid.
// Fused norm: with p.norm, consumer warp w computes the statistics of row w (rownorm.cuh, the
//             order norm.cu uses), and each A fragment is normalised as it is loaded, once for
//             the unit's tiles.
// Params:     GemmTmaParams (tensor maps made by params.rs::GemmTmaParams::map_specs).
// Shapes:     M ≤ 8, batch 1; K a multiple of RS_GEMM_D_SLICE; lda, ldb multiples of 8; A and
//             B 16-byte aligned.
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
constexpr unsigned BN = RS_GEMM_T_BN;                 // output columns a tile
constexpr unsigned MAX_M = 8;
constexpr unsigned MAX_T = RS_GEMM_D_MAX_TILES;
constexpr unsigned SLICE = RS_GEMM_D_SLICE;           // K columns a slice
constexpr unsigned CHUNK_SLICES = RS_GEMM_D_KC / SLICE;
constexpr int SLICES = CHUNK_SLICES / WARPS;          // a warp's K slices per full chunk
static_assert(SLICE == 32, "a slice is one mma pair's K");
static_assert(MAX_T == 2, "tiles_per_unit and the kernel's dispatch pick 1 or 2 tiles a unit");
static_assert(RS_GEMM_D_KC % (SLICE * WARPS) == 0, "a chunk starts at a slice of warp 0");
static_assert(RS_GEMM_D_THREADS == 32 * (WARPS + 1), "consumers and one producer warp");

// Tiles a unit for `tiles` tiles on `grid` blocks: 2 where that takes no more time, by shared
// memory traffic a unit (16·T weight rows and 8 rows of A a K column) times rounds of units.
__device__ __forceinline__ unsigned tiles_per_unit(unsigned tiles, unsigned grid) {
    const unsigned rounds1 = (tiles + grid - 1) / grid, rounds2 = ((tiles + 1) / 2 + grid - 1) / grid;
    return rounds2 * (2 * RS_GEMM_T_BN + 8) <= rounds1 * (RS_GEMM_T_BN + 8) ? 2 : 1;
}

constexpr unsigned ROW_BYTES = SLICE * 2;                       // a row's slice
constexpr unsigned COPY_B = CHUNK_SLICES * BN * ROW_BYTES;      // a tile's copy of a chunk
constexpr unsigned COPY_A = CHUNK_SLICES * MAX_M * ROW_BYTES;   // A's copy of a chunk

// The ring's geometry for this launch (the same in every thread).
struct Ring {
    unsigned base, full, empty;  // shared addresses: stage 0, the full and empty barriers
    unsigned tiles, per_unit, units, chunks, stage_bytes, stages;
};

__device__ __forceinline__ Ring ring_of(const GemmParams& p, const unsigned char* smem) {
    Ring r;
    r.tiles = (p.n + BN - 1) / BN;
    r.per_unit = tiles_per_unit(r.tiles, gridDim.x);
    r.units = (r.tiles + r.per_unit - 1) / r.per_unit;
    r.chunks = (p.k + RS_GEMM_D_KC - 1) / RS_GEMM_D_KC;
    r.stage_bytes = r.per_unit * COPY_B + COPY_A;
    r.stages = min((unsigned)RS_GEMM_D_MAX_STAGES, RS_GEMM_D_RING_BYTES / r.stage_bytes);
    r.base = rs::smem_addr(smem);
    r.full = r.base + RS_GEMM_D_RING_BYTES;
    r.empty = r.full + 8 * RS_GEMM_D_MAX_STAGES;
    return r;
}

// Stage t of this block holds chunk t % chunks of its unit blockIdx.x + (t / chunks)·gridDim.x.
__device__ __forceinline__ unsigned unit_of(const Ring& r, unsigned t) { return blockIdx.x + t / r.chunks * gridDim.x; }

// The tiles of unit u (the last unit may have fewer than per_unit).
__device__ __forceinline__ unsigned tiles_of(const Ring& r, unsigned u) { return min(r.per_unit, r.tiles - u * r.per_unit); }

// Producer (one thread): the copies of stage t — with `b`, its tiles' weights (the full barrier
// armed with the stage's bytes, B's and A's, once the slot is free); with `a`, A's. Slices past
// K and rows past M or N are zero-filled (and counted as copied).
__device__ __forceinline__ void fill(const GemmTmaParams& tp, const Ring& r, unsigned t, bool b, bool a) {
    const unsigned slot = t % r.stages, full = r.full + 8 * slot, dst = r.base + slot * r.stage_bytes;
    const unsigned u = unit_of(r, t), tiles = tiles_of(r, u);
    const int s0 = (int)((t % r.chunks) * CHUNK_SLICES);
    if (b) {
        if (t >= r.stages) rs::mbar_wait(r.empty + 8 * slot, (t / r.stages - 1) & 1);
        rs::mbar_expect_tx(full, tiles * COPY_B + COPY_A);
        for (unsigned i = 0; i < tiles; ++i)
            rs::tma_load_3d(dst + i * COPY_B, &tp.map_b, 0, (int)((u * r.per_unit + i) * BN), s0, full);
    }
    if (a) rs::tma_load_3d(dst + r.per_unit * COPY_B, &tp.map_a, 0, 0, s0, full);
}

// The consumers (warps 0..WARPS-1): every unit of this block, stage by stage, T tiles a unit.
template <unsigned T>
__device__ __forceinline__ void consume(const GemmParams& p, const Ring& r, const unsigned char* smem, float* red,
                                        float2* stats) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, q = lane & 3;
    constexpr unsigned CONSUMER_THREADS = WARPS * 32;
    const __half* gamma = rs::ptr<const __half>(p.norm_gamma);
    const __half* beta = p.norm_beta ? rs::ptr<const __half>(p.norm_beta) : nullptr;
    float2 st = make_float2(0.0f, 0.0f);
    if (p.norm != RS_NORM_NONE) {
        rs::skinny_norm_stats<4>(p, stats, WARPS);
        rs::named_barrier(1, CONSUMER_THREADS);
        if (g < (int)p.m) st = stats[g];
    }
    // This lane's 16 bytes of a slice: rows g and g + 8 of a tile, row g of A.
    const unsigned lo = g * ROW_BYTES + q * 16, hi = lo + 8 * ROW_BYTES;
    unsigned t = 0;
    RS_FOR_EACH_STATIC_UNIT(u, r.units) {
        const unsigned tiles = tiles_of(r, (unsigned)u), n0 = (unsigned)u * T * BN;
        float acc[T][4] = {};
        for (unsigned c = 0; c < r.chunks; ++c, ++t) {
            const unsigned slot = t % r.stages, slices = min(CHUNK_SLICES, (p.k - c * RS_GEMM_D_KC) / SLICE);
            rs::mbar_wait(r.full + 8 * slot, (t / r.stages) & 1);
            const unsigned char* b_stage = smem + slot * r.stage_bytes;
            const unsigned char* a_stage = b_stage + T * COPY_B;
#pragma unroll
            for (int i = 0; i < SLICES; ++i) {
                const unsigned s = warp + i * WARPS;
                if (s >= slices) break;  // warp-uniform: no slice left
                uint4 av = *reinterpret_cast<const uint4*>(a_stage + s * MAX_M * ROW_BYTES + lo);
                const unsigned kl = c * RS_GEMM_D_KC + s * SLICE + q * 8;
                if (p.norm != RS_NORM_NONE && g < (int)p.m) av = rs::normalize8(av, st, gamma, beta, p.norm, kl);
#pragma unroll
                for (unsigned j = 0; j < T; ++j) {
                    const unsigned char* bs = b_stage + j * COPY_B + s * BN * ROW_BYTES;
                    if (j < tiles)
                        rs::skinny_slice(acc[j], *reinterpret_cast<const uint4*>(bs + lo),
                                         *reinterpret_cast<const uint4*>(bs + hi), av);
                }
            }
            // The warp's reads of the stage ordered before the copy that refills it (generic
            // before async proxy), as in gemm_packed.cu.
            rs::fence_proxy_async();
            __syncwarp();
            if (lane == 0) rs::mbar_arrive(r.empty + 8 * slot);
        }

        rs::named_barrier(1, CONSUMER_THREADS);  // the previous unit's sums have been read
#pragma unroll
        for (unsigned j = 0; j < T; ++j) rs::skinny_partial<MAX_M>(red + j * WARPS * BN * MAX_M, 0, acc[j]);
        rs::named_barrier(1, CONSUMER_THREADS);
        for (unsigned j = 0; j < tiles; ++j)
            rs::skinny_store<WARPS, MAX_M>(p, red + j * WARPS * BN * MAX_M, CONSUMER_THREADS, n0 + j * BN,
                                           rs::ptr<__half>(p.c), p.residual ? rs::ptr<const __half>(p.residual) : nullptr,
                                           p.bias ? rs::ptr<const __half>(p.bias) : nullptr);
    }
}

#endif

}  // namespace

extern __shared__ __align__(128) unsigned char rs_gemm_d_smem[];

RS_KERNEL void __launch_bounds__(RS_GEMM_D_THREADS, 1) gemm_f16_stream_m8(const __grid_constant__ GemmTmaParams tp, RS_TICKET t) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    __shared__ float red[MAX_T * WARPS * BN * MAX_M];
    __shared__ float2 stats[MAX_M];
    const GemmParams& p = tp.g;
    const Ring r = ring_of(p, rs_gemm_d_smem);
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
    const unsigned total = blockIdx.x < r.units ? ((r.units - 1 - blockIdx.x) / gridDim.x + 1) * r.chunks : 0;
    // With b_stable, the weights of the first stages are requested before the wait for the
    // previous kernel (which may still be writing A).
    const unsigned early = p.b_stable ? min(total, r.stages) : 0;
    if (producer)
        for (unsigned s = 0; s < early; ++s) fill(tp, r, s, true, false);
    rs::pdl_sync();
    if (threadIdx.x >= WARPS * 32) {
        if (!producer) return;
        for (unsigned s = 0; s < early; ++s) fill(tp, r, s, false, true);
        for (unsigned s = early; s < total; ++s) fill(tp, r, s, true, true);
        return;
    }
    if (r.per_unit == 2)
        consume<2>(p, r, rs_gemm_d_smem, red, stats);
    else
        consume<1>(p, r, rs_gemm_d_smem, red, stats);
#else
    rs::pdl_sync();
    __trap();
#endif
}
