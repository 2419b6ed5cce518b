// check.h — what the probes share: the one check of a CUDA runtime call and of a driver call
// (each prints where and why, then exits) and the copy bandwidth they compare against.
#pragma once
#include <cuda.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#define CK(x)                                                                                   \
    do {                                                                                        \
        cudaError_t e_ = (x);                                                                   \
        if (e_ != cudaSuccess) {                                                                \
            fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
            exit(1);                                                                            \
        }                                                                                       \
    } while (0)

// The same for a driver call.
#define CKD(x)                                                                     \
    do {                                                                           \
        CUresult r_ = (x);                                                         \
        if (r_ != CUDA_SUCCESS) {                                                  \
            const char* s_ = nullptr;                                              \
            cuGetErrorString(r_, &s_);                                             \
            fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, s_ ? s_ : "?"); \
            exit(1);                                                               \
        }                                                                          \
    } while (0)

// The bandwidth (read + write, GB/s) of a device-to-device copy of 2 GiB on `stream`, the
// median of five after one warm-up: the ceiling the decode issue compares against.
inline double copy_bandwidth_gbs(cudaStream_t stream = 0) {
    const size_t n = 2ull << 30;
    void *x, *y;
    CK(cudaMalloc(&x, n));
    CK(cudaMalloc(&y, n));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    std::vector<float> v;
    for (int i = 0; i < 6; ++i) {
        CK(cudaEventRecord(e0, stream));
        CK(cudaMemcpyAsync(y, x, n, cudaMemcpyDeviceToDevice, stream));
        CK(cudaEventRecord(e1, stream));
        CK(cudaEventSynchronize(e1));
        float ms;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        if (i) v.push_back(ms);
    }
    std::sort(v.begin(), v.end());
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
    CK(cudaFree(x));
    CK(cudaFree(y));
    return 2.0 * n / (v[v.size() / 2] * 1e6);
}
