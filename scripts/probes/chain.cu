// chain.cu — two decode GEMMs of a layer in one launch, against two launches with PDL.
//
// A decode step loses most of its time at kernel boundaries (docs/engine-h200.md, "Decode
// steps kernel by kernel"): a GEMM's blocks take a whole SM's shared memory, so the next
// GEMM's blocks start copying weights only as the previous GEMM's blocks leave, and HBM idles
// through each drain. This probe measures what a launch that runs two dependent GEMMs in turn
// recovers: its producer copies the second GEMM's weights into the ring while the consumers
// still finish the first, then wait on a counter of the first GEMM's finished tiles.
//
// The pair is a layer's attention-output GEMM then its MLP up GEMM:
//   y = a·W1ᵀ                      (N1 × K, no norm, no residual)
//   z = swiglu(rmsnorm(y)·W2ᵀ)      (W2 packed as gate/up pairs: N2 rows, z has N2 / 2 columns)
// at mistral-7b's shapes (K = 4,096: 4,096 and 28,672 rows) and Llama-3.2-1B's (K = 2,048:
// 2,048 and 16,384 rows), M = 8, random FP16 values (weights of random bits in the packed
// layout are random weights).
//
// Ways, each timed over 200 pairs on one stream, launches with PDL, the weights rotated over
// enough copies that they are read from HBM:
//   two:   the library's packed decode GEMM (gemm_f16_packed_m8 and, with the norm, _norm_m8 at
//          K = 2,048, _k4_m8 at 4,096;
//          kernels/gemm_packed.cu, included), launched
//          twice: what the engine runs today.
//   chain: one launch of `chain_kernel` below (K ≤ 4,096). Block b takes tiles b, b + grid, … of the
//          first GEMM, then of the second, in one stream of ring stages; after its first-GEMM
//          tiles its consumers add their count to a counter (red.release.gpu) and, before the
//          second GEMM's tiles, wait until the counter reaches every first-GEMM tile of this
//          launch (ld.acquire.gpu). Every block of the grid must be resident (grid ≤ SMs: one
//          block an SM), which a library kernel could not assume (decoder.cu's ticket order
//          removes that need). The arithmetic is the library kernel's, so z has its bits.
// Grids: the whole device, and 48 blocks (the library kernel on 48 SMs would get 48 blocks).
// 48 blocks are not a 48-SM partition: with PDL the next launch's blocks land on the other
// SMs and copy their first stages before their wait.
// Output: µs a pair, the share of the copy's bandwidth (weights' bytes), chain ÷ two; and
// whether z (and y) are bit for bit the same both ways.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <utility>
#include <random>
#include <vector>

#include "../../kernels/gemm_packed.cu"
#include "check.h"

namespace {

using rs::u64;

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
// A full chunk's stages, as gemm_packed.cu's packed_gemm lays them out for K of whole chunks.
constexpr unsigned WARP_SLICES = CHUNK_SLICES / WARPS;  // a warp's slices a stage
constexpr unsigned STAGE = RS_GEMM_P_KC * BN * 2;       // bytes a stage: a tile's chunk
constexpr unsigned STAGES = RS_GEMM_D_RING_BYTES / STAGE;
constexpr unsigned HALF = CHUNK_SLICES * ATOM;  // a chunk's rows 0–7 (or 8–15)

__device__ __forceinline__ void release_add(unsigned* p, unsigned v) {
    asm volatile("red.release.gpu.global.add.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
__device__ __forceinline__ unsigned acquire_load(const unsigned* p) {
    unsigned v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

// The first GEMM (p1: no norm) and the second (p2: fused RMSNorm of p1's output, SwiGLU), K =
// 256·S for both. `done` counts first-GEMM tiles finished over every launch; this launch's are
// all done when it reaches `target`.
template <unsigned S>
__device__ void chain_pair(const GemmParams& p1, const GemmParams& p2, unsigned* done, unsigned target,
                           unsigned char* smem, float* red, float2* stats) {
    constexpr unsigned CHUNKS = S / WARP_SLICES;  // stages a tile: all of K
    const unsigned base = rs::smem_addr(smem), full = base + RS_GEMM_D_RING_BYTES, empty = full + 8 * RS_GEMM_D_MAX_STAGES;
    const unsigned tiles1 = (p1.n + BN - 1) / BN, tiles2 = (p2.n + BN - 1) / BN;
    const unsigned n1 = blockIdx.x < tiles1 ? (tiles1 - 1 - blockIdx.x) / gridDim.x + 1 : 0;
    const unsigned n2 = blockIdx.x < tiles2 ? (tiles2 - 1 - blockIdx.x) / gridDim.x + 1 : 0;
    if (threadIdx.x == 0) {
        for (unsigned s = 0; s < STAGES; ++s) {
            rs::mbar_init(full + 8 * s, 1);
            rs::mbar_init(empty + 8 * s, WARPS);
        }
        rs::mbar_init_fence();
    }
    __syncthreads();
    const unsigned total = (n1 + n2) * CHUNKS;
    const bool producer = threadIdx.x == WARPS * 32;
    // Stage t: chunk t % CHUNKS of this block's j-th tile, j = t / CHUNKS, of the first GEMM
    // while j < n1, then of the second.
    auto fill = [&](unsigned t) {
        const unsigned slot = t % STAGES, j = t / CHUNKS;
        const bool first = j < n1;
        const unsigned u = blockIdx.x + (first ? j : j - n1) * gridDim.x;
        const char* B = rs::ptr<const char>(first ? p1.b : p2.b);
        if (t >= STAGES) rs::mbar_wait(empty + 8 * slot, (t / STAGES - 1) & 1);
        rs::mbar_expect_tx(full + 8 * slot, STAGE);
        rs::bulk_load(base + slot * STAGE, B + ((u64)u * CHUNKS + t % CHUNKS) * STAGE, STAGE, full + 8 * slot);
    };
    const unsigned early = min(total, STAGES);
    if (producer)
        for (unsigned t = 0; t < early; ++t) fill(t);
    rs::pdl_sync();
    if (threadIdx.x >= WARPS * 32) {
        if (producer)
            for (unsigned t = early; t < total; ++t) fill(t);
        return;
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, q = lane & 3;
    const unsigned lo = g * ROW_BYTES + ((q ^ (g / 2 % 4)) * 16), hi = lo + HALF;
    uint4 av[S];
    unsigned t = 0;
    // One tile of GEMM p from the ring into C (the library kernel's loop body, one part).
    auto tile = [&](const GemmParams& p, unsigned u) {
        float acc[4] = {};
#pragma unroll
        for (unsigned c = 0; c < CHUNKS; ++c, ++t) {
            const unsigned slot = t % STAGES;
            rs::mbar_wait(full + 8 * slot, (t / STAGES) & 1);
            const unsigned char* stage = smem + slot * STAGE;
#pragma unroll
            for (unsigned i = 0; i < WARP_SLICES; ++i) {
                const unsigned char* bs = stage + (warp + i * WARPS) * ATOM;
                rs::skinny_slice(acc, *reinterpret_cast<const uint4*>(bs + lo), *reinterpret_cast<const uint4*>(bs + hi),
                                 av[c * WARP_SLICES + i]);
            }
            __syncwarp();
            if (lane == 0) rs::mbar_arrive(empty + 8 * slot);
        }
        rs::named_barrier(1, WARPS * 32);
        rs::skinny_partial<8>(red, 0, acc);
        rs::named_barrier(1, WARPS * 32);
        if (p.act == RS_ACT_SWIGLU)
            rs::skinny_store_swiglu<WARPS, 8>(p, red, WARPS * 32, u * BN, rs::ptr<__half>(p.c));
        else
            rs::skinny_store<WARPS, 8>(p, red, WARPS * 32, u * BN, rs::ptr<__half>(p.c), nullptr, nullptr);
    };
    // A's slices of a lane, as the library kernel loads them (zeros past M).
    auto load_a = [&](const GemmParams& p) {
        const __half* A = rs::ptr<const __half>(p.a) + (u64)min(g, (int)p.m - 1) * p.lda;
#pragma unroll
        for (unsigned i = 0; i < S; ++i)
            av[i] = g < (int)p.m ? *reinterpret_cast<const uint4*>(A + (warp + i * WARPS) * SLICE + q * 8) : make_uint4(0, 0, 0, 0);
    };
    load_a(p1);
    for (unsigned j = 0; j < n1; ++j) tile(p1, blockIdx.x + j * gridDim.x);
    // This block's first-GEMM tiles are stored (the barrier orders every consumer's stores
    // before thread 0's release, which is cumulative).
    rs::named_barrier(1, WARPS * 32);
    if (threadIdx.x == 0) {
        if (n1) release_add(done, n1);
        if (n2)
            while (acquire_load(done) < target) {
            }
    }
    rs::named_barrier(1, WARPS * 32);
    if (n2 == 0) return;
    // y is read for the first time in this launch by this block (it wrote parts of it, which
    // stores do not leave stale in L1), so plain loads see every block's tiles.
    load_a(p2);
    rs::skinny_norm_stats<4>(p2, stats, WARPS);
    rs::named_barrier(1, WARPS * 32);
    const float2 st = g < (int)p2.m ? stats[g] : make_float2(0.0f, 0.0f);
    const __half* gamma = rs::ptr<const __half>(p2.norm_gamma);
    if (g < (int)p2.m) {
#pragma unroll
        for (unsigned i = 0; i < S; ++i) av[i] = rs::normalize8(av[i], st, gamma, nullptr, p2.norm, (warp + i * WARPS) * SLICE + q * 8);
    }
    for (unsigned j = 0; j < n2; ++j) tile(p2, blockIdx.x + j * gridDim.x);
}

#endif

__global__ void __launch_bounds__(RS_GEMM_D_THREADS, 1)
    chain_kernel(const __grid_constant__ GemmParams p1, const __grid_constant__ GemmParams p2, unsigned* done, unsigned target) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    __shared__ float red[WARPS * BN * 8];
    __shared__ float2 stats[8];
    if (p1.k == 2048)
        chain_pair<8>(p1, p2, done, target, rs_gemm_p_smem, red, stats);
    else
        chain_pair<16>(p1, p2, done, target, rs_gemm_p_smem, red, stats);
#else
    __trap();
#endif
}

constexpr size_t SMEM = RS_GEMM_D_RING_BYTES + 16 * RS_GEMM_D_MAX_STAGES;

template <typename... Args>
void launch(void (*k)(Args...), unsigned grid, cudaStream_t s, Args... args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(grid);
    cfg.blockDim = dim3(RS_GEMM_D_THREADS);
    cfg.dynamicSmemBytes = SMEM;
    cfg.stream = s;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    CK(cudaLaunchKernelEx(&cfg, k, args...));
}

}  // namespace

int main() {
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    const int all = prop.multiProcessorCount;
    // The library's entry for each K (kernels::packed_decode_kernel): 2,048 columns on
    // gemm_f16_packed_m8 (gemm_f16_packed_norm_m8 with the fused norm), 4,096 on gemm_f16_packed_k4_m8.
    CK(cudaFuncSetAttribute(gemm_f16_packed_m8, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)SMEM));
    CK(cudaFuncSetAttribute(gemm_f16_packed_norm_m8, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)SMEM));
    CK(cudaFuncSetAttribute(gemm_f16_packed_k4_m8, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)SMEM));
    CK(cudaFuncSetAttribute(chain_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)SMEM));
    cudaStream_t s;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    const double copy_gbs = copy_bandwidth_gbs(s);
    printf("%s, %d SMs; copy bandwidth %.0f GB/s\n", prop.name, all, copy_gbs);
    printf("| pair (M = 8) | grid | two launches µs | %% copy | chain µs | %% copy | chain ÷ two | z, y bits |\n");
    printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n");

    struct Shape {
        const char* name;
        unsigned k, n1, n2;
    };
    const Shape shapes[] = {{"mistral-7b o → gate/up", 4096, 4096, 28672}, {"llama-3.2-1b o → gate/up", 2048, 2048, 16384}};
    std::mt19937 rng(2027);
    std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
    bool ok = true;
    unsigned* done;
    CK(cudaMalloc(&done, 4));
    for (const Shape& sh : shapes) {
        const unsigned m = 8, k = sh.k;
        const size_t w1 = (size_t)sh.n1 * k, w2 = (size_t)sh.n2 * k, wbytes = 2 * (w1 + w2);
        const int copies = (int)std::max<size_t>(1, (3 * (size_t)prop.l2CacheSize + wbytes - 1) / wbytes);
        std::vector<__half> ha(m * k), hw(w1 + w2), hg(k);
        for (auto& x : ha) x = __float2half(uni(rng));
        for (auto& x : hw) x = __float2half(uni(rng) * 0.05f);
        for (auto& x : hg) x = __float2half(1.0f + 0.25f * uni(rng));
        __half *da, *dw, *dg, *dy, *dz;
        CK(cudaMalloc(&da, ha.size() * 2));
        CK(cudaMalloc(&dg, hg.size() * 2));
        CK(cudaMalloc(&dw, wbytes * copies));
        CK(cudaMalloc(&dy, (size_t)m * sh.n1 * 2));
        CK(cudaMalloc(&dz, (size_t)m * sh.n2 / 2 * 2));
        CK(cudaMemcpy(da, ha.data(), ha.size() * 2, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(dg, hg.data(), hg.size() * 2, cudaMemcpyHostToDevice));
        for (int c = 0; c < copies; ++c)
            CK(cudaMemcpy((char*)dw + c * wbytes, hw.data(), wbytes, cudaMemcpyHostToDevice));
        auto params = [&](int c) {
            GemmParams p1 = {}, p2 = {};
            const char* w = (const char*)dw + (size_t)c * wbytes;
            p1.a = (u64)da, p1.b = (u64)w, p1.c = (u64)dy, p1.m = m, p1.n = sh.n1, p1.k = k, p1.batch = 1;
            p1.lda = k, p1.ldb = k, p1.ldc = sh.n1, p1.act = RS_ACT_NONE, p1.b_stable = 1, p1.b_layout = RS_B_TILES;
            p2 = p1;
            p2.a = (u64)dy, p2.b = (u64)(w + 2 * w1), p2.c = (u64)dz, p2.n = sh.n2, p2.lda = sh.n1, p2.ldc = sh.n2 / 2;
            p2.act = RS_ACT_SWIGLU, p2.norm = RS_NORM_RMS, p2.norm_gamma = (u64)dg, p2.norm_eps = 1e-5f;
            return std::make_pair(p1, p2);
        };
        for (unsigned grid : {(unsigned)all, 48u}) {
            const RsTicket none = {};
            unsigned launches = 0;  // chain launches since `done` was zeroed
            const unsigned tiles1 = (sh.n1 + 15) / 16;
            auto two = [&](int c) {
                auto [p1, p2] = params(c);
                const bool k4 = p1.k == RS_GEMM_P_MAX_K;
                launch(k4 ? gemm_f16_packed_k4_m8 : gemm_f16_packed_m8, std::min(grid, tiles1), s, p1, none);
                launch(k4 ? gemm_f16_packed_k4_m8 : gemm_f16_packed_norm_m8, std::min(grid, (sh.n2 + 15) / 16), s, p2, none);
            };
            auto one = [&](int c) {
                auto [p1, p2] = params(c);
                ++launches;
                launch(chain_kernel, grid, s, p1, p2, done, launches * tiles1);
            };
            std::vector<__half> z_two(m * sh.n2 / 2), z_one(z_two.size()), y_two(m * sh.n1), y_one(y_two.size());
            CK(cudaDeviceSynchronize());  // the copies above, on the default stream
            two(0);
            CK(cudaStreamSynchronize(s));
            CK(cudaMemcpy(z_two.data(), dz, z_two.size() * 2, cudaMemcpyDeviceToHost));
            CK(cudaMemcpy(y_two.data(), dy, y_two.size() * 2, cudaMemcpyDeviceToHost));
            CK(cudaMemset(dz, 0xff, z_two.size() * 2));
            CK(cudaMemset(dy, 0xff, y_two.size() * 2));
            CK(cudaMemset(done, 0, 4));
            CK(cudaDeviceSynchronize());  // the memsets, on the default stream, before `s` runs
            one(0);
            CK(cudaStreamSynchronize(s));
            CK(cudaMemcpy(z_one.data(), dz, z_one.size() * 2, cudaMemcpyDeviceToHost));
            CK(cudaMemcpy(y_one.data(), dy, y_one.size() * 2, cudaMemcpyDeviceToHost));
            const bool same = !memcmp(z_two.data(), z_one.data(), z_two.size() * 2) &&
                              !memcmp(y_two.data(), y_one.data(), y_two.size() * 2);
            ok = ok && same;
            double us[2];
            for (int way = 0; way < 2; ++way) {
                std::vector<float> v;
                for (int rep = 0; rep < 5; ++rep) {
                    CK(cudaEventRecord(e0, s));
                    for (int i = 0; i < 200; ++i) {
                        if (way) one(i % copies);
                        else two(i % copies);
                    }
                    CK(cudaEventRecord(e1, s));
                    CK(cudaEventSynchronize(e1));
                    float ms;
                    CK(cudaEventElapsedTime(&ms, e0, e1));
                    v.push_back(ms * 1e3f / 200);
                }
                std::sort(v.begin(), v.end());
                us[way] = v[v.size() / 2];
            }
            auto pct = [&](double t) { return 100.0 * wbytes / (t * 1e-6) / (copy_gbs * 1e9); };
            printf("| %s | %u | %.2f | %.0f%% | %.2f | %.0f%% | %.3f | %s |\n", sh.name, grid, us[0], pct(us[0]), us[1],
                   pct(us[1]), us[1] / us[0], same ? "same" : "DIFFER");
        }
        CK(cudaFree(da));
        CK(cudaFree(dg));
        CK(cudaFree(dw));
        CK(cudaFree(dy));
        CK(cudaFree(dz));
    }
    CK(cudaFree(done));
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
    CK(cudaStreamDestroy(s));
    printf("%s\n", ok ? "every chain output has the two launches' bits" : "SOME OUTPUTS DIFFER");
    return ok ? 0 : 1;
}
