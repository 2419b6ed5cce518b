// gemm.cu — C = act(A·Bᵀ + bias) + R on tensor cores (mma.sync m16n8k16, FP16 in, FP32 accumulate).
//
// Computes:   see GemmParams in abi.h (batched, optional bias, GELU tanh/erf, residual add;
//             act(A·Bᵀ + bias) is rounded to FP16 before the residual is added).
// Work unit:  one BM×BN output tile of one batch entry; units = batch·⌈M/BM⌉·⌈N/BN⌉.
//             gemm_f16_128x128 (8 warps, each 64×32) for large M; gemm_f16_64x64 (4 warps,
//             each 32×32) for small M. Each tile is computed by one block in a fixed K order,
//             so the output does not depend on the grid.
// Shapes:     any M, N ≥ 1; K ≥ 8 and a multiple of 8 (16-byte rows for cp.async); lda, ldb
//             multiples of 8; A, B 16-byte aligned; any ldc ≥ N, ldr ≥ N (paired stores when
//             ldc is even and C 4-byte aligned).
//             Tiles past M, N or K are zero-filled and never stored.
// Pipeline:   RS_GEMM_STAGES-deep cp.async ring of BK=32 slices; ldmatrix from rows padded by
//             16 bytes (conflict-free).
// Reference:  kernels/reference.rs::gemm.
#include "common.cuh"
#include "rownorm.cuh"
#include "skinny.cuh"

namespace {

using rs::u64;

template <bool RS_COUNTED, int BM, int BN, int WARPS_M, int WARPS_N>
__device__ __forceinline__ void gemm_tiles(const GemmParams& p, __half* smem, const RsTicket& t) {
    constexpr int BK = RS_GEMM_BK, STAGES = RS_GEMM_STAGES, LDS = BK + 8;
    constexpr int THREADS = WARPS_M * WARPS_N * 32;
    constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N;
    constexpr int MT = WM / 16, NT = WN / 8;
    static_assert(NT % 2 == 0, "B fragments are loaded two n-tiles at a time");
    __half* As = smem;                     // [STAGES][BM][LDS]
    __half* Bs = smem + STAGES * BM * LDS; // [STAGES][BN][LDS]
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp / WARPS_N, wn = warp % WARPS_N;
    const unsigned tiles_m = (p.m + BM - 1) / BM, tiles_n = (p.n + BN - 1) / BN;
    const u64 units = (u64)p.batch * tiles_m * tiles_n;
    const int ktiles = (p.k + BK - 1) / BK;

    RS_FOR_EACH_UNIT(u, units, t) {
        const unsigned tn = u % tiles_n;
        const u64 rest = u / tiles_n;
        const unsigned tm = rest % tiles_m;
        const u64 z = rest / tiles_m;
        const __half* A = rs::ptr<const __half>(p.a) + z * p.stride_a;
        const __half* B = rs::ptr<const __half>(p.b) + z * p.stride_b;
        const unsigned m0 = tm * BM, n0 = tn * BN;

        auto load_tile = [&](int stage, int kt) {
            const unsigned k0 = kt * BK;
            constexpr int CH = BK / 8;
#pragma unroll
            for (int c = tid; c < BM * CH; c += THREADS) {
                const unsigned r = c / CH, kc = (c % CH) * 8;
                const bool ok = m0 + r < p.m && k0 + kc < p.k;
                const __half* src = ok ? A + (u64)(m0 + r) * p.lda + k0 + kc : A;
                rs::cp_async16(As + (stage * BM + r) * LDS + kc, src, ok);
            }
#pragma unroll
            for (int c = tid; c < BN * CH; c += THREADS) {
                const unsigned r = c / CH, kc = (c % CH) * 8;
                const bool ok = n0 + r < p.n && k0 + kc < p.k;
                const __half* src = ok ? B + (u64)(n0 + r) * p.ldb + k0 + kc : B;
                rs::cp_async16(Bs + (stage * BN + r) * LDS + kc, src, ok);
            }
        };

        float acc[MT][NT][4];
#pragma unroll
        for (int i = 0; i < MT; ++i)
#pragma unroll
            for (int j = 0; j < NT; ++j)
#pragma unroll
                for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

#pragma unroll
        for (int s = 0; s < STAGES - 1; ++s) {
            if (s < ktiles) load_tile(s, s);
            rs::cp_async_commit();
        }
        for (int kt = 0; kt < ktiles; ++kt) {
            rs::cp_async_wait<STAGES - 2>();
            __syncthreads();  // slice kt landed for everyone; slice kt-1 is no longer read
            const int next = kt + STAGES - 1;
            if (next < ktiles) load_tile(next % STAGES, next);
            rs::cp_async_commit();
            const __half* as = As + (kt % STAGES) * BM * LDS;
            const __half* bs = Bs + (kt % STAGES) * BN * LDS;
#pragma unroll
            for (int kk = 0; kk < BK; kk += 16) {
                unsigned af[MT][4], bf[NT][2];
#pragma unroll
                for (int mt = 0; mt < MT; ++mt)
                    rs::ldmatrix_x4(af[mt], as + (wm * WM + mt * 16 + (lane & 15)) * LDS + kk + (lane >> 4) * 8);
#pragma unroll
                for (int nt = 0; nt < NT; nt += 2) {
                    unsigned r[4];
                    rs::ldmatrix_x4(r, bs + (wn * WN + nt * 8 + (lane & 7) + ((lane >> 4) << 3)) * LDS + kk +
                                           ((lane >> 3) & 1) * 8);
                    bf[nt][0] = r[0];
                    bf[nt][1] = r[1];
                    bf[nt + 1][0] = r[2];
                    bf[nt + 1][1] = r[3];
                }
#pragma unroll
                for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                    for (int nt = 0; nt < NT; ++nt) rs::mma_16816(acc[mt][nt], af[mt], bf[nt][0], bf[nt][1]);
            }
        }
        rs::cp_async_wait<0>();
        __syncthreads();  // shared memory is free for the next tile

        __half* C = rs::ptr<__half>(p.c) + z * p.stride_c;
        const __half* R = p.residual ? rs::ptr<const __half>(p.residual) + z * p.stride_r : nullptr;
        const __half* bias = p.bias ? rs::ptr<const __half>(p.bias) : nullptr;
        // Paired stores need an even row stride and a 4-byte aligned C (col is always even).
        const bool pairs_ok = (p.ldc & 1) == 0 && (p.c & 3) == 0;
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    const unsigned row = m0 + wm * WM + mt * 16 + (lane >> 2) + h * 8;
                    const unsigned col = n0 + wn * WN + nt * 8 + (lane & 3) * 2;
                    if (row >= p.m || col >= p.n) continue;
                    rs::gemm_store(p, C, R, bias, row, col, acc[mt][nt][2 * h], acc[mt][nt][2 * h + 1],
                                   col + 1 < p.n, pairs_ok);
                }
    }
}

}  // namespace

extern __shared__ __align__(128) unsigned char rs_gemm_smem[];

RS_KERNEL_PAIR(__launch_bounds__(RS_GEMM_L_THREADS), gemm_f16_128x128, GemmParams) {
    rs::pdl_sync();
    gemm_tiles<RS_COUNTED, RS_GEMM_L_BM, RS_GEMM_L_BN, 2, 4>(p, reinterpret_cast<__half*>(rs_gemm_smem), t);
}

RS_KERNEL_PAIR(__launch_bounds__(RS_GEMM_S_THREADS), gemm_f16_64x64, GemmParams) {
    rs::pdl_sync();
    gemm_tiles<RS_COUNTED, RS_GEMM_S_BM, RS_GEMM_S_BN, 2, 2>(p, reinterpret_cast<__half*>(rs_gemm_smem), t);
}

// ---- gemm_f16_skinny_m8 / _m32: M ≤ 8 or ≤ RS_GEMM_T_MAX_M (decode) -------------------------
//
// Work unit:  16 output columns (16 rows of B) of one batch entry, all M rows;
//             units = batch·⌈N/16⌉. Reading B is the whole cost at decode sizes, so units are
//             narrow (many blocks stream B at once) and each block's 8 warps split K.
// Method:     C-transposed on tensor cores: mma m16n8k16 with A := 16 rows of B and
//             B := up to NB = 1 (m8) or 4 (m32) blocks of 8 rows of A (fewer registers for
//             M ≤ 8, so more blocks per SM stream B). Each lane loads 16 contiguous bytes of its
//             B rows and A rows per 32-wide K slice and uses them as its fragment elements;
//             the same K permutation applies to both operands, so the dot products are exact
//             permutations of the sums. Warp w takes slices w, w+8, …, four at a time (loads
//             first, then the mmas); the 8 partial tiles are summed in warp order through
//             shared memory, so the output does not depend on the grid.
// Prologue:   before waiting for the previous kernel (PDL), each block asks L2 for the B rows
//             of its first unit: weights, which no kernel writes.
// Fused norm: with p.norm, warp w computes the statistics of rows w, w+8, … (as one warp, in
//             a fixed order, identically in every block), and each A fragment is normalised
//             and rounded to FP16 as it is loaded (A is read from L2 by every block).
// Registers:  the first unit's first B fragments are requested before anything else; with
//             M ≤ 8 and K ≤ 1024 a lane's A fragments are loaded once per block, not per unit.
// Epilogue:   as gemm_tiles (bias, activation, FP16 rounding before the residual add).
namespace {

constexpr int T_WARPS = RS_GEMM_T_THREADS / 32, T_UNROLL = 4;

__device__ __forceinline__ uint4 ldg16(const __half* p, bool ok) {
    if (!ok) return make_uint4(0, 0, 0, 0);
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

// L2 prefetch of the B rows of this block's first unit.
__device__ __forceinline__ void skinny_prefetch(const GemmParams& p) {
    const unsigned tiles_n = (p.n + RS_GEMM_T_BN - 1) / RS_GEMM_T_BN;
    const u64 u = blockIdx.x;
    if (u >= (u64)p.batch * tiles_n || threadIdx.x >= RS_GEMM_T_BN) return;
    const unsigned row = (u % tiles_n) * RS_GEMM_T_BN + threadIdx.x;
    if (row < p.n) rs::prefetch_l2(rs::ptr<const __half>(p.b) + (u / tiles_n) * p.stride_b + (u64)row * p.ldb, p.k * 2);
}

template <bool RS_COUNTED, int T_NB>
__device__ __forceinline__ void gemm_skinny(const GemmParams& p, float* red, const RsTicket& t) {
    __shared__ float2 stats[RS_GEMM_T_MAX_M];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, q = lane & 3;
    const unsigned tiles_n = (p.n + RS_GEMM_T_BN - 1) / RS_GEMM_T_BN;
    const u64 units = (u64)p.batch * tiles_n;
    const int nb = (p.m + 7) / 8;          // 8-row blocks of A in use
    const int slices = (p.k + 31) / 32;    // 32-wide K slices
    // With one 8-row block of A and K ≤ 1024 (one round of slices per warp), a lane's A
    // fragments are the same for every unit of batch 1: loaded (and normalised) once.
    const bool keep_a = T_NB == 1 && p.batch == 1 && slices <= T_WARPS * T_UNROLL;

    uint4 blo[T_UNROLL], bhi[T_UNROLL], av[T_UNROLL][T_NB];
    // B fragments of slices s0, s0 + 8, … of unit u (16 output columns).
    auto load_b = [&](u64 u, int s0) {
        const unsigned n0 = (u % tiles_n) * RS_GEMM_T_BN;
        const __half* B = rs::ptr<const __half>(p.b) + (u / tiles_n) * p.stride_b;
        const bool b_lo = n0 + g < p.n, b_hi = n0 + g + 8 < p.n;
#pragma unroll
        for (int i = 0; i < T_UNROLL; ++i) {
            const int s = s0 + i * T_WARPS;
            const unsigned k = s * 32 + q * 8;
            const bool kin = s < slices && k < p.k;
            blo[i] = ldg16(B + (u64)(n0 + g) * p.ldb + k, kin && b_lo);
            bhi[i] = ldg16(B + (u64)(n0 + g + 8) * p.ldb + k, kin && b_hi);
        }
    };
    // A fragments (normalised with the fused norm) of the same slices, batch entry z.
    float2 st[T_NB];
    const __half* gamma = rs::ptr<const __half>(p.norm_gamma);
    const __half* beta = p.norm_beta ? rs::ptr<const __half>(p.norm_beta) : nullptr;
    auto load_a = [&](u64 z, int s0) {
        const __half* A = rs::ptr<const __half>(p.a) + z * p.stride_a;
#pragma unroll
        for (int i = 0; i < T_UNROLL; ++i) {
            const int s = s0 + i * T_WARPS;
            const unsigned k = s * 32 + q * 8;
            const bool kin = s < slices && k < p.k;
#pragma unroll
            for (int j = 0; j < T_NB; ++j) {
                const unsigned row = j * 8 + g;
                const bool ok = kin && j < nb && row < p.m;
                av[i][j] = ok ? __ldg(reinterpret_cast<const uint4*>(A + (u64)row * p.lda + k)) : make_uint4(0, 0, 0, 0);
                if (ok && p.norm != RS_NORM_NONE) av[i][j] = rs::normalize8(av[i][j], st[j], gamma, beta, p.norm, k);
            }
        }
    };

    // The first unit's first B fragments are requested before the norm's statistics (where
    // the launch takes all, rs::takes_all, the first unit comes from the counter: it loads
    // them in the loop).
    bool have_b = !(RS_COUNTED && rs::takes_all(t)) && blockIdx.x < units;
    if (have_b) load_b(blockIdx.x, warp);
    if (p.norm != RS_NORM_NONE) {
        rs::skinny_norm_stats<1>(p, stats, T_WARPS);
        __syncthreads();
#pragma unroll
        for (int j = 0; j < T_NB; ++j) st[j] = j * 8 + g < (int)p.m ? stats[j * 8 + g] : make_float2(0.0f, 0.0f);
    }
    if (keep_a) load_a(0, warp);

    // A unit streams 16 rows of B (24–64 KiB at decode sizes): taken four at a time.
    RS_FOR_EACH_UNIT_BY(u, units, t, 4) {
        const unsigned n0 = (u % tiles_n) * RS_GEMM_T_BN;
        const u64 z = u / tiles_n;

        float acc[T_NB][4];
#pragma unroll
        for (int j = 0; j < T_NB; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[j][e] = 0.0f;

        for (int s0 = warp; s0 < slices; s0 += T_WARPS * T_UNROLL) {
            if (!have_b) load_b(u, s0);
            have_b = false;
            if (!keep_a) load_a(z, s0);
#pragma unroll
            for (int i = 0; i < T_UNROLL; ++i)
#pragma unroll
                for (int j = 0; j < T_NB; ++j) {
                    if (j >= nb) break;
                    rs::skinny_slice(acc[j], blo[i], bhi[i], av[i][j]);
                }
        }
        have_b = false;  // a warp with no slice of this unit did not use its preload

        __syncthreads();  // the previous unit's sums have been read
#pragma unroll
        for (int j = 0; j < T_NB; ++j) rs::skinny_partial<RS_GEMM_T_MAX_M>(red, j, acc[j]);
        __syncthreads();
        rs::skinny_store<T_WARPS, RS_GEMM_T_MAX_M>(
            p, red, RS_GEMM_T_THREADS, n0, rs::ptr<__half>(p.c) + z * p.stride_c,
            p.residual ? rs::ptr<const __half>(p.residual) + z * p.stride_r : nullptr,
            p.bias ? rs::ptr<const __half>(p.bias) : nullptr);
    }
}

}  // namespace

RS_KERNEL_PAIR(__launch_bounds__(RS_GEMM_T_THREADS, 3), gemm_f16_skinny_m8, GemmParams) {
    __shared__ float red[T_WARPS * RS_GEMM_T_BN * RS_GEMM_T_MAX_M];
    skinny_prefetch(p);
    rs::pdl_sync();
    gemm_skinny<RS_COUNTED, 1>(p, red, t);
}

RS_KERNEL_PAIR(__launch_bounds__(RS_GEMM_T_THREADS), gemm_f16_skinny_m32, GemmParams) {
    __shared__ float red[T_WARPS * RS_GEMM_T_BN * RS_GEMM_T_MAX_M];
    skinny_prefetch(p);
    rs::pdl_sync();
    gemm_skinny<RS_COUNTED, RS_GEMM_T_MAX_M / 8>(p, red, t);
}
