// l2_evict.cu — does a co-runner that streams memory slow its neighbours less when its loads
// ask L2 to evict their lines first?
//
// Tenants slow each other through memory (docs/harness-h200.md: where decoders run, the
// measured STP lies near the best fair split the profiles give beside a memory-streaming
// co-runner, well below the idle one). A decode step reads its weights once per step, so its lines are of no use to L2
// afterwards, yet by default they push out what a neighbour reuses (a prefill GEMM's tiles,
// activations). This probe measures how much of a neighbour's slowdown that is.
//
// A streamer holds S SMs (one block an SM, kept alone there by its shared memory) and reads a
// 4 GiB buffer round and round with 16-byte loads, eight in flight a thread, until the host
// says stop. Its loads, by variant:
//   idle     none: the blocks only hold their SMs (the victims' baseline on the same SMs);
//   normal   ld.global.nc (what the skinny decode kernel issues);
//   first    the same with an L2::evict_first cache policy (createpolicy.fractional);
//   last     with L2::evict_last, for contrast (its lines crowd the victims' out longer).
// Victims run meanwhile on the other SMs (their blocks do not fit beside a streamer block):
//   gemm     cuBLAS FP16 GEMM, M 1,024 × N 4,096 × K 1,024 (BERT-large's MLP up at 8 × 128
//            tokens), 200 in a row;
//   reuse    each block reads its own slice of a 24 MiB buffer eight times through L2 (.cg),
//            100 in a row: data that stays in L2 alone;
//   stream   a read of 256 MiB, once (an HBM-bound neighbour), 50 in a row.
// Printed: each victim's median time of three (µs a launch) and ÷ beside the idle streamer,
// and the streamer's GB/s over its whole run (5 ms of it alone before the victims start).
// Victims' placement off the streamer's SMs: by shared memory for the two kernels here; for
// cuBLAS's kernel it is assumed (its shared memory), not checked. Build and run on the GPU host (scripts/probes/run.sh l2evict):
//   nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -o l2_evict l2_evict.cu -lcublas && ./l2_evict
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "check.h"

namespace {

constexpr int STREAMER_SMS = 56;
constexpr int THREADS = 1024, UNROLL = 8;
constexpr size_t STREAM_BYTES = 4ull << 30;
constexpr unsigned STREAMER_SMEM = 160u << 10;  // no victim block (≥ 100 KiB) fits beside it
constexpr unsigned VICTIM_SMEM = 100u << 10;

enum Variant { IDLE, NORMAL, FIRST, LAST };
const char* NAMES[] = {"idle", "normal", "evict_first", "evict_last"};

template <int V>
__device__ __forceinline__ uint4 load(const uint4* p, unsigned long long policy) {
    uint4 v;
    if constexpr (V == NORMAL) {
        asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                     : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                     : "l"(p));
    } else {
        asm volatile("ld.global.nc.L1::no_allocate.L2::cache_hint.v4.u32 {%0,%1,%2,%3}, [%4], %5;"
                     : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                     : "l"(p), "l"(policy));
    }
    return v;
}

// Reads `buf` round and round until *stop; adds the bytes it read to *bytes.
template <int V>
__global__ void __launch_bounds__(THREADS) streamer(const uint4* buf, size_t n16, const volatile int* stop,
                                                    unsigned long long* bytes, unsigned* sink) {
    extern __shared__ unsigned char unused[];
    unsigned long long policy = 0;
    if constexpr (V == FIRST) asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
    if constexpr (V == LAST) asm volatile("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;" : "=l"(policy));
    const size_t chunk = (size_t)THREADS * UNROLL;
    size_t off = (size_t)blockIdx.x * chunk;
    unsigned long long done = 0;
    unsigned acc = 0;
    __shared__ int stopped;
    for (unsigned it = 0;; ++it) {
        // One thread a block reads the host's word, now and then: reads of host memory from
        // every thread clog the memory system for everyone (a first build did that).
        if ((it & 63) == 0) {
            if (threadIdx.x == 0) stopped = *stop;
            __syncthreads();
            const bool out = stopped;
            __syncthreads();
            if (out) break;
        }
        if constexpr (V == IDLE) {
            if (threadIdx.x == 0) __nanosleep(1000);
            continue;
        } else {
            uint4 v[UNROLL];
#pragma unroll
            for (int i = 0; i < UNROLL; ++i) v[i] = load<V>(buf + off + (size_t)i * THREADS + threadIdx.x, policy);
#pragma unroll
            for (int i = 0; i < UNROLL; ++i) acc ^= v[i].x ^ v[i].y ^ v[i].z ^ v[i].w;
            done += chunk * 16;
            off += (size_t)gridDim.x * chunk;
            if (off + chunk > n16) off = (size_t)blockIdx.x * chunk;
        }
    }
    if (threadIdx.x == 0) atomicAdd(bytes, done);
    if (acc == 0x12345678u) sink[0] = acc;  // keeps the loads
    (void)unused;
}

// Each block reads its slice of `buf` `passes` times through L2 (.cg: not kept in L1).
__global__ void __launch_bounds__(512) reuse(const uint4* buf, size_t n16, int passes, unsigned* sink) {
    extern __shared__ unsigned char unused[];
    const size_t per = n16 / gridDim.x, base = (size_t)blockIdx.x * per;
    unsigned acc = 0;
    for (int p = 0; p < passes; ++p)
        for (size_t i = threadIdx.x; i < per; i += blockDim.x) {
            uint4 v;
            asm volatile("ld.global.cg.v4.u32 {%0,%1,%2,%3}, [%4];"
                         : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                         : "l"(buf + base + i));
            acc ^= v.x ^ v.y ^ v.z ^ v.w;
        }
    if (acc == 0x12345678u) sink[1] = acc;
    (void)unused;
}

// One read of `buf` (grid-stride, 16 bytes a load).
__global__ void __launch_bounds__(512) stream_once(const uint4* buf, size_t n16, unsigned* sink) {
    extern __shared__ unsigned char unused[];
    unsigned acc = 0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n16; i += (size_t)gridDim.x * blockDim.x) {
        const uint4 v = load<NORMAL>(buf + i, 0);
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (acc == 0x12345678u) sink[2] = acc;
    (void)unused;
}

template <int V>
void launch_streamer(const uint4* buf, const volatile int* stop, unsigned long long* bytes, unsigned* sink,
                     cudaStream_t s) {
    CK(cudaFuncSetAttribute(streamer<V>, cudaFuncAttributeMaxDynamicSharedMemorySize, STREAMER_SMEM));
    streamer<V><<<STREAMER_SMS, THREADS, STREAMER_SMEM, s>>>(buf, STREAM_BYTES / 16, stop, bytes, sink);
    CK(cudaGetLastError());
}

}  // namespace

int main() {
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    const int victims_sms = prop.multiProcessorCount - STREAMER_SMS;
    printf("%s, %d SMs: streamer on %d SMs, victims on the other %d\n", prop.name, prop.multiProcessorCount,
           STREAMER_SMS, victims_sms);
    cudaStream_t s1, s2;
    CK(cudaStreamCreateWithFlags(&s1, cudaStreamNonBlocking));
    CK(cudaStreamCreateWithFlags(&s2, cudaStreamNonBlocking));
    uint4* big;
    CK(cudaMalloc(&big, STREAM_BYTES));
    CK(cudaMemset(big, 1, STREAM_BYTES));
    const size_t reuse_bytes = 24ull << 20, once_bytes = 256ull << 20;
    uint4 *rbuf, *obuf;
    CK(cudaMalloc(&rbuf, reuse_bytes));
    CK(cudaMalloc(&obuf, once_bytes));
    CK(cudaMemset(rbuf, 2, reuse_bytes));
    CK(cudaMemset(obuf, 3, once_bytes));
    unsigned* sink;
    CK(cudaMalloc(&sink, 64));
    unsigned long long* bytes;
    CK(cudaMalloc(&bytes, 8));
    int* stop;
    CK(cudaHostAlloc(&stop, sizeof(int), cudaHostAllocMapped));
    int* stop_dev;
    CK(cudaHostGetDevicePointer(&stop_dev, stop, 0));
    CK(cudaFuncSetAttribute(reuse, cudaFuncAttributeMaxDynamicSharedMemorySize, VICTIM_SMEM));
    CK(cudaFuncSetAttribute(stream_once, cudaFuncAttributeMaxDynamicSharedMemorySize, VICTIM_SMEM));

    cublasHandle_t h;
    if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "cublasCreate failed\n");
        return 1;
    }
    if (cublasSetStream(h, s2) != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "cublasSetStream failed\n");
        return 1;
    }
    const int M = 1024, N = 4096, K = 1024;
    __half *A, *B, *C;
    CK(cudaMalloc(&A, (size_t)M * K * 2));
    CK(cudaMalloc(&B, (size_t)K * N * 2));
    CK(cudaMalloc(&C, (size_t)M * N * 2));
    CK(cudaMemset(A, 0, (size_t)M * K * 2));
    CK(cudaMemset(B, 0, (size_t)K * N * 2));
    const float one = 1.0f, zero = 0.0f;

    const char* victims[] = {"gemm", "reuse", "stream"};
    auto run_victim = [&](int v) {
        switch (v) {
            case 0:
                for (int i = 0; i < 200; ++i)
                    if (cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, N, M, K, &one, B, CUDA_R_16F, N, A, CUDA_R_16F, K,
                                     &zero, C, CUDA_R_16F, N, CUBLAS_COMPUTE_32F,
                                     CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS) {
                        fprintf(stderr, "cublasGemmEx failed\n");
                        exit(1);
                    }
                return 200;
            case 1:
                for (int i = 0; i < 100; ++i)
                    reuse<<<2 * victims_sms, 512, VICTIM_SMEM, s2>>>(rbuf, reuse_bytes / 16, 8, sink);
                return 100;
            default:
                for (int i = 0; i < 50; ++i)
                    stream_once<<<2 * victims_sms, 512, VICTIM_SMEM, s2>>>(obuf, once_bytes / 16, sink);
                return 50;
        }
    };
    // Warm-up: cuBLAS's kernel choice and every kernel's first launch.
    for (int v = 0; v < 3; ++v) run_victim(v);
    CK(cudaStreamSynchronize(s2));

    cudaEvent_t e0, e1, f0, f1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    CK(cudaEventCreate(&f0));
    CK(cudaEventCreate(&f1));
    double base[3] = {0, 0, 0};
    printf("%-12s %-7s %12s %10s %14s\n", "streamer", "victim", "us a launch", "÷ idle", "streamer GB/s");
    for (int var = IDLE; var <= LAST; ++var) {
        for (int v = 0; v < 3; ++v) {
            std::vector<double> t, g;
            for (int rep = 0; rep < 3; ++rep) {
                *stop = 0;
                CK(cudaMemsetAsync(bytes, 0, 8, s1));
                CK(cudaEventRecord(f0, s1));
                switch (var) {
                    case IDLE: launch_streamer<IDLE>(big, stop_dev, bytes, sink, s1); break;
                    case NORMAL: launch_streamer<NORMAL>(big, stop_dev, bytes, sink, s1); break;
                    case FIRST: launch_streamer<FIRST>(big, stop_dev, bytes, sink, s1); break;
                    default: launch_streamer<LAST>(big, stop_dev, bytes, sink, s1); break;
                }
                CK(cudaEventRecord(f1, s1));
                std::this_thread::sleep_for(std::chrono::milliseconds(5));  // its blocks resident
                CK(cudaEventRecord(e0, s2));
                const int n = run_victim(v);
                CK(cudaEventRecord(e1, s2));
                CK(cudaEventSynchronize(e1));
                *stop = 1;
                CK(cudaEventSynchronize(f1));
                float ms, fms;
                CK(cudaEventElapsedTime(&ms, e0, e1));
                CK(cudaEventElapsedTime(&fms, f0, f1));
                unsigned long long b = 0;
                CK(cudaMemcpy(&b, bytes, 8, cudaMemcpyDeviceToHost));
                t.push_back(ms * 1e3 / n);
                g.push_back(b / (fms * 1e6));
            }
            std::sort(t.begin(), t.end());
            std::sort(g.begin(), g.end());
            if (var == IDLE) base[v] = t[1];
            printf("%-12s %-7s %12.2f %10.3f %14.0f\n", NAMES[var], victims[v], t[1], t[1] / base[v], g[1]);
            fflush(stdout);
        }
    }
    printf("copy bandwidth (read + write) %.0f GB/s\n", copy_bandwidth_gbs(s1));
    return 0;
}
