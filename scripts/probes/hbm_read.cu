// hbm_read.cu — how many SMs does it take to read HBM at full speed, and by which loads?
//
// A probe, not project code: it times pure reads of a 2 GiB buffer (each byte read once per
// launch, so from DRAM) on grids of one block per SM, 8 … 132 SMs, in the ways the decode
// GEMMs could stream their weights:
//   ldg U     1024 threads a block, each keeping U 16-byte loads in flight (ld.global.nc);
//   bulk C S  one thread per block copies chunks of C bytes (cp.async.bulk, 1-D) into a ring of
//             S stages that the block's warps wait on and free (mbarriers), as a TMA ring does;
//   box R S   the streamed decode GEMM's copies: 2-D TMA boxes of 256 columns × 16 rows
//             (8 KiB, rows of 512 bytes) of a [rows × 4096] FP16 matrix, 4 boxes a stage
//             (`+a`: and 4 boxes of 256 × 8 from an 8-row matrix, as A's rows are), or one
//             3-D box of 256 × 4 × 16 (32 KiB, rows of 2 KiB) a stage (`3d`);
//   rowN R×S  one 3-D TMA box a stage whose innermost dimension holds N bytes of a row: R rows
//             × S slices of 32 (N = 64) or 64 columns (N = 128), or × S chunks of 256 (N = 512),
//             as the streamed GEMM's stage layouts would load them; `2d 256xR`: one 2-D box
//             of 256 columns × R rows a stage.
// It prints GB/s and GB/s per SM beside a device-to-device copy (read + write bytes) of the
// same buffer. Build and run on the GPU host:
//   nvcc -O3 -I../../kernels -gencode=arch=compute_90a,code=sm_90a -o hbm_read hbm_read.cu -lcuda && ./hbm_read
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include "common.cuh"
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#include "sm90.cuh"
#endif

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "check.h"

__device__ unsigned sink;

__device__ __forceinline__ uint4 ld_stream(const uint4* p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

// Block b reads 64 KiB chunks b, b + grid, …; each thread U 16-byte loads at a time.
template <int U>
__global__ void __launch_bounds__(1024) read_ldg(const uint4* p, size_t n16) {
    constexpr size_t CHUNK = 8192;  // uint4s: 128 KiB, one pass of U = 8
    static_assert(U * 1024 <= CHUNK, "a pass stays in its chunk");
    unsigned x = 0;
    for (size_t c = blockIdx.x; c * CHUNK < n16; c += gridDim.x) {
        const uint4* q = p + c * CHUNK;
        for (unsigned i = threadIdx.x; i < CHUNK; i += U * blockDim.x) {
            uint4 v[U];
#pragma unroll
            for (int u = 0; u < U; ++u) v[u] = ld_stream(q + i + u * blockDim.x);
#pragma unroll
            for (int u = 0; u < U; ++u) x ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
        }
    }
    if (x == 0x9e3779b9u) sink = x;
}

using rs::smem_addr;
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
using rs::mbar_arrive, rs::mbar_expect_tx, rs::mbar_init, rs::mbar_wait;
#endif

// How a stage of the ring is filled.
enum Fill { BULK, BOX2D, BOX2D_A, BOX3D, SLICED, ROWS3D, ROWS2D };

struct RingArgs {
    const char* src;      // BULK: the buffer
    size_t bytes;         // BULK: its size
    unsigned chunk;       // bytes a stage holds (B's part)
    unsigned stages;
    unsigned units, chunks;  // boxes: units of 16 rows, K chunks of 1024 columns
    Fill fill;
    unsigned br, bk;         // SLICED, ROWS3D: a box's rows, and its extent along K's outer dimension
};

// One producer thread (the last warp's lane 0) fills the ring; the other warps wait on each
// stage, read a word of it, and free it.
__global__ void __launch_bounds__(288, 1) read_ring(const __grid_constant__ RingArgs a, const __grid_constant__ CUtensorMap mb,
                                                   const __grid_constant__ CUtensorMap ma) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    extern __shared__ __align__(1024) unsigned char ring[];
    __shared__ __align__(8) unsigned long long bars[32];
    const unsigned consumers = blockDim.x / 32 - 1, base = smem_addr(ring);
    const unsigned a_bytes = a.fill == BOX2D_A ? a.chunk / 2 : 0, stage_bytes = a.chunk + a_bytes;
    if (threadIdx.x == 0) {
        for (unsigned s = 0; s < a.stages; ++s) {
            mbar_init(smem_addr(&bars[s]), 1);
            mbar_init(smem_addr(&bars[16 + s]), consumers);
        }
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads();
    const size_t total_chunks = a.fill == BULK ? a.bytes / a.chunk : (size_t)a.units * a.chunks;
    const unsigned mine = blockIdx.x < total_chunks ? (unsigned)((total_chunks - 1 - blockIdx.x) / gridDim.x + 1) : 0;
    if (threadIdx.x == consumers * 32) {
        for (unsigned t = 0; t < mine; ++t) {
            const unsigned slot = t % a.stages, full = smem_addr(&bars[slot]), dst = base + slot * stage_bytes;
            if (t >= a.stages) mbar_wait(smem_addr(&bars[16 + slot]), (t / a.stages - 1) & 1);
            mbar_expect_tx(full, stage_bytes);
            const size_t c = blockIdx.x + (size_t)t * gridDim.x;
            if (a.fill == BULK) {
                asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(dst),
                             "l"(a.src + c * a.chunk), "r"(a.chunk), "r"(full)
                             : "memory");
            } else {
                const int row = (int)(c / a.chunks * 16), k0 = (int)(c % a.chunks * 1024);
                if (a.fill == ROWS2D) {
                    // One 2-D box of 256 columns × br rows.
                    const int r0 = (int)(c / a.chunks * a.br), k0 = (int)(c % a.chunks * 256);
                    asm volatile(
                        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];" ::"r"(dst),
                        "l"(&mb), "r"(k0), "r"(r0), "r"(full)
                        : "memory");
                } else if (a.fill == SLICED || a.fill == ROWS3D) {
                    // A box of br rows × bk slices (SLICED: view {slice, rows, slices}) or
                    // × bk chunks of 256 columns (ROWS3D: view {256, chunks, rows}).
                    const int r0 = (int)(c / a.chunks * a.br), k1 = (int)(c % a.chunks * a.bk);
                    const int c1 = a.fill == SLICED ? r0 : k1, c2 = a.fill == SLICED ? k1 : r0;
                    asm volatile(
                        "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], [%5];" ::"r"(dst),
                        "l"(&mb), "r"(0), "r"(c1), "r"(c2), "r"(full)
                        : "memory");
                } else if (a.fill == BOX3D) {
                    asm volatile(
                        "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], [%5];" ::"r"(dst),
                        "l"(&mb), "r"(0), "r"(k0 / 256), "r"(row), "r"(full)
                        : "memory");
                } else {
                    for (int i = 0; i < 4; ++i)
                        asm volatile(
                            "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];" ::"r"(
                                dst + i * 8192),
                            "l"(&mb), "r"(k0 + 256 * i), "r"(row), "r"(full)
                            : "memory");
                    if (a.fill == BOX2D_A)
                        for (int i = 0; i < 4; ++i)
                            asm volatile(
                                "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];" ::"r"(
                                    dst + a.chunk + i * 4096),
                                "l"(&ma), "r"(k0 + 256 * i), "r"(0), "r"(full)
                                : "memory");
                }
            }
        }
        return;
    }
    if (threadIdx.x >= consumers * 32) return;
    unsigned x = 0;
    for (unsigned t = 0; t < mine; ++t) {
        const unsigned slot = t % a.stages;
        mbar_wait(smem_addr(&bars[slot]), (t / a.stages) & 1);
        x ^= reinterpret_cast<const unsigned*>(ring + slot * stage_bytes)[threadIdx.x];
        __syncwarp();
        if ((threadIdx.x & 31) == 0) mbar_arrive(smem_addr(&bars[16 + slot]));
    }
    if (x == 0x9e3779b9u) sink = x;
#endif
}

static PFN_cuTensorMapEncodeTiled_v12000 encode;

static CUtensorMap map_of(void* p, int dims, const cuuint64_t* size, const cuuint64_t* stride, const cuuint32_t* box) {
    CUtensorMap m;
    cuuint32_t es[3] = {1, 1, 1};
    CUresult r = encode(&m, CU_TENSOR_MAP_DATA_TYPE_FLOAT16, dims, p, size, stride, box, es, CU_TENSOR_MAP_INTERLEAVE_NONE,
                        CU_TENSOR_MAP_SWIZZLE_NONE, CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS) {
        fprintf(stderr, "cuTensorMapEncodeTiled: %d\n", (int)r);
        exit(1);
    }
    return m;
}

template <class F>
static double time_us(F launch) {
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    launch();
    CK(cudaDeviceSynchronize());
    std::vector<float> v;
    for (int i = 0; i < 7; ++i) {
        CK(cudaEventRecord(e0));
        launch();
        CK(cudaEventRecord(e1));
        CK(cudaEventSynchronize(e1));
        float ms;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        v.push_back(ms);
    }
    CK(cudaGetLastError());
    std::sort(v.begin(), v.end());
    return v[3] * 1e3;
}

int main() {
    const size_t bytes = 2ull << 30;
    char *buf, *dst, *a8;
    CK(cudaMalloc(&buf, bytes));
    CK(cudaMalloc(&dst, bytes));
    CK(cudaMalloc(&a8, 8 * 4096 * 2));
    CK(cudaMemset(buf, 0x3c, bytes));
    CK(cudaMemset(a8, 0x3c, 8 * 4096 * 2));
    cudaDriverEntryPointQueryResult q;
    CK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", (void**)&encode, 12000, cudaEnableDefault, &q));
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    const int sms_all = prop.multiProcessorCount;

    const double copy = time_us([&] { CK(cudaMemcpyAsync(dst, buf, bytes, cudaMemcpyDeviceToDevice)); });
    const double copy_gbs = 2.0 * bytes / copy / 1e3;
    printf("%s, %d SMs; device copy of %zu MiB: %.0f GB/s (read + write)\n", prop.name, sms_all, bytes >> 20, copy_gbs);

    // The weights as a [rows × 4096] FP16 matrix: 2-D boxes of 256 × 16, or 3-D of 256 × 4 × 16.
    const cuuint64_t rows = bytes / 8192;
    const cuuint64_t s2[2] = {4096, rows}, st2[1] = {8192};
    const cuuint32_t b2[2] = {256, 16};
    const CUtensorMap m2 = map_of(buf, 2, s2, st2, b2);
    const cuuint64_t s3[3] = {256, 16, rows}, st3[2] = {512, 8192};
    const cuuint32_t b3[3] = {256, 4, 16};
    const CUtensorMap m3 = map_of(buf, 3, s3, st3, b3);
    const cuuint64_t sa[2] = {4096, 8}, sta[1] = {8192};
    const cuuint32_t ba[2] = {256, 8};
    const CUtensorMap ma = map_of(a8, 2, sa, sta, ba);
    CK(cudaFuncSetAttribute(read_ring, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024));
    // The box geometries a decode GEMM's stage could use (B alone), by the bytes of a row a
    // box's innermost dimension holds: 64 (slices of 32 columns: view {32, rows, 128}), 128
    // (view {64, rows, 64}), 512 (view {256, 16, rows}).
    auto sliced = [&](cuuint64_t inner, cuuint32_t br, cuuint32_t bk) {
        const cuuint64_t sz[3] = {inner, rows, 4096 / inner}, st[2] = {8192, inner * 2};
        const cuuint32_t bx[3] = {(cuuint32_t)inner, br, bk};
        return map_of(buf, 3, sz, st, bx);
    };
    const CUtensorMap s64_16_16 = sliced(32, 16, 16), s64_16_32 = sliced(32, 16, 32), s64_32_16 = sliced(32, 32, 16);
    const CUtensorMap s128_16_8 = sliced(64, 16, 8), s128_16_16 = sliced(64, 16, 16);
    const cuuint64_t sr[3] = {256, 16, rows}, str[2] = {512, 8192};
    const cuuint32_t br2[3] = {256, 2, 16};
    const CUtensorMap r512_16_2 = map_of(buf, 3, sr, str, br2);
    const CUtensorMap s64_16_64 = sliced(32, 16, 64), s64_32_32 = sliced(32, 32, 32);
    auto rows2d = [&](cuuint32_t br) {
        const cuuint32_t bx[2] = {256, br};
        return map_of(buf, 2, s2, st2, bx);
    };
    const CUtensorMap d2_32 = rows2d(32), d2_64 = rows2d(64);

    struct Way {
        const char* name;
        int kind;  // 0: ldg; 1: ring
        int u;
        RingArgs r;
        const CUtensorMap* mb;
    };
    const unsigned units = (unsigned)(rows / 16), chunks = 4;
    const unsigned r16 = (unsigned)(rows / 16), r32 = (unsigned)(rows / 32);
    std::vector<Way> ways = {
        {"ldg 8", 0, 8, {}, nullptr},
        {"bulk 32K x4", 1, 0, {buf, bytes, 32768, 4, 0, 0, BULK}, nullptr},
        {"box 8K x4/stage x4", 1, 0, {nullptr, 0, 32768, 4, units, chunks, BOX2D}, &m2},
        {"box +a x3 (kernel)", 1, 0, {nullptr, 0, 32768, 3, units, chunks, BOX2D_A}, &m2},
        {"box 3d 32K x4", 1, 0, {nullptr, 0, 32768, 4, units, chunks, BOX3D}, &m3},
        {"row64 16x16s 16K x8", 1, 0, {nullptr, 0, 16384, 8, r16, 8, SLICED, 16, 16}, &s64_16_16},
        {"row64 16x32s 32K x4", 1, 0, {nullptr, 0, 32768, 4, r16, 4, SLICED, 16, 32}, &s64_16_32},
        {"row64 32x16s 32K x4", 1, 0, {nullptr, 0, 32768, 4, r32, 8, SLICED, 32, 16}, &s64_32_16},
        {"row128 16x8 16K x8", 1, 0, {nullptr, 0, 16384, 8, r16, 8, SLICED, 16, 8}, &s128_16_8},
        {"row128 16x16 32K x4", 1, 0, {nullptr, 0, 32768, 4, r16, 4, SLICED, 16, 16}, &s128_16_16},
        {"row512 16x2 16K x8", 1, 0, {nullptr, 0, 16384, 8, r16, 8, ROWS3D, 16, 2}, &r512_16_2},
        {"row64 16x64s 64K x3", 1, 0, {nullptr, 0, 65536, 3, r16, 2, SLICED, 16, 64}, &s64_16_64},
        {"row64 32x32s 64K x3", 1, 0, {nullptr, 0, 65536, 3, r32, 4, SLICED, 32, 32}, &s64_32_32},
        {"2d 256x32 16K x8", 1, 0, {nullptr, 0, 16384, 8, r32, 16, ROWS2D, 32, 0}, &d2_32},
        {"2d 256x64 32K x4", 1, 0, {nullptr, 0, 32768, 4, (unsigned)(rows / 64), 16, ROWS2D, 64, 0}, &d2_64},
    };
    const int grids[] = {8, 16, 32, 48, 64, 96, 132};
    printf("\nGB/s of reads (per SM in brackets), one block per SM; %% of the copy's rate at the end of each row\n");
    printf("%-20s", "way \\ SMs");
    for (int g : grids) printf(" %14d", std::min(g, sms_all));
    printf("\n");
    for (const Way& w : ways) {
        printf("%-20s", w.name);
        double last = 0;
        for (int g0 : grids) {
            const int g = std::min(g0, sms_all);
            double us;
            if (w.kind == 0) {
                const size_t n16 = bytes / 16;
                us = time_us([&] {
                    if (w.u == 2) read_ldg<2><<<g, 1024>>>((const uint4*)buf, n16);
                    if (w.u == 4) read_ldg<4><<<g, 1024>>>((const uint4*)buf, n16);
                    if (w.u == 8) read_ldg<8><<<g, 1024>>>((const uint4*)buf, n16);
                });
            } else {
                const unsigned smem = w.r.stages * (w.r.chunk + (w.r.fill == BOX2D_A ? w.r.chunk / 2 : 0));
                us = time_us([&] { read_ring<<<g, 288, smem>>>(w.r, w.mb ? *w.mb : m2, ma); });
            }
            last = bytes / us / 1e3;
            printf(" %6.0f (%5.1f)", last, last / g);
        }
        printf("  %3.0f%%\n", 100.0 * last / copy_gbs);
    }
    return 0;
}
