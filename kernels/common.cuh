// common.cuh — helpers shared by every kernel file. Device code only.
#pragma once
#include <cuda_fp16.h>
#include "abi.h"

// Every kernel is launched with its params struct by value as the only argument.
#define RS_KERNEL extern "C" __global__

namespace rs {

// Work-unit loop of the kernel contract: correct for every grid >= 1.
#define RS_FOR_EACH_UNIT(u, units) \
    for (unsigned long long u = blockIdx.x; u < (unsigned long long)(units); u += gridDim.x)

__device__ __forceinline__ unsigned int smid() {
    unsigned int s;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(s));
    return s;
}

template <typename T>
__device__ __forceinline__ T* ptr(unsigned long long p) {
    return reinterpret_cast<T*>(p);
}

}  // namespace rs
