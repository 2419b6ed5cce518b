// common.cuh — helpers shared by every kernel file. Device code only.
#pragma once
#include <cuda_fp16.h>
#include "abi.h"

// Every kernel is launched with its params struct by value as the only argument.
#define RS_KERNEL extern "C" __global__

// Work-unit loop of the kernel contract: correct for every grid >= 1.
#define RS_FOR_EACH_UNIT(u, units) \
    for (unsigned long long u = blockIdx.x; u < (unsigned long long)(units); u += gridDim.x)

namespace rs {

typedef unsigned long long u64;

__device__ __forceinline__ unsigned int smid() {
    unsigned int s;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(s));
    return s;
}

template <typename T>
__device__ __forceinline__ T* ptr(u64 p) {
    return reinterpret_cast<T*>(p);
}

// ---- programmatic dependent launch (sm_90) ------------------------------------------
// On Hopper the launch path lets a kernel start while the previous kernel of its stream is
// still running (PDL), so its launch and any prologue that reads only weights overlap that
// kernel. Every kernel therefore calls pdl_wait() before it reads anything an earlier kernel
// wrote and before it writes anything, in every block (so a kernel's completion implies its
// predecessor's). pdl_release() then lets the next kernel launch. Both are no-ops before sm_90
// and when the launch did not ask for PDL.
__device__ __forceinline__ void pdl_wait() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_release() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// The usual kernel start: wait for the predecessor, then let the successor launch.
__device__ __forceinline__ void pdl_sync() {
    pdl_wait();
    pdl_release();
}

// Asks L2 to fetch [p, p + bytes) (bytes a multiple of 16, p 16-byte aligned) without
// waiting for it: weights a kernel will read, fetched before pdl_wait().
__device__ __forceinline__ void prefetch_l2(const void* p, unsigned bytes) {
#if __CUDA_ARCH__ >= 900
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"(bytes) : "memory");
#endif
}

// x rounded to the nearest FP16, as a float.
__device__ __forceinline__ float round_half(float x) { return __half2float(__float2half_rn(x)); }

__device__ __forceinline__ float gelu(float x, unsigned int act) {
    if (act == RS_ACT_GELU_TANH) {
        const float k0 = 0.7978845608028654f;  // sqrt(2/pi)
        return 0.5f * x * (1.0f + tanhf(k0 * (x + 0.044715f * x * x * x)));
    }
    if (act == RS_ACT_GELU_ERF) return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
    return x;
}

// ---- GEMM epilogue (every GEMM kernel) ----------------------------------------------------
// One output value before its final rounding: act(v + bias) (+ r): the activation's result is
// rounded to FP16 before the residual is added, as frameworks do (`residual + proj(x)` in
// FP16).
__device__ __forceinline__ float gemm_value(float v, unsigned int act, bool has_bias, float bias, bool has_r, float r) {
    if (has_bias) v += bias;
    v = gelu(v, act);
    return has_r ? round_half(v) + r : v;
}

// Stores C[row][col] (and C[row][col+1] when `pair`) = gemm_value(…), for a GemmParams `p` of
// batch entry C/R. `pairs_ok`: C takes 4-byte stores.
__device__ __forceinline__ void gemm_store(const GemmParams& p, __half* C, const __half* R, const __half* bias,
                                           unsigned row, unsigned col, float v0, float v1, bool pair,
                                           bool pairs_ok) {
    const __half* r = R ? R + (u64)row * p.ldr + col : nullptr;
    v0 = gemm_value(v0, p.act, bias, bias ? __half2float(bias[col]) : 0.0f, R, R ? __half2float(r[0]) : 0.0f);
    if (pair)
        v1 = gemm_value(v1, p.act, bias, bias ? __half2float(bias[col + 1]) : 0.0f, R, R ? __half2float(r[1]) : 0.0f);
    __half* c = C + (u64)row * p.ldc + col;
    if (pair && pairs_ok) {
        *reinterpret_cast<__half2*>(c) = __floats2half2_rn(v0, v1);
    } else {
        c[0] = __float2half_rn(v0);
        if (pair) c[1] = __float2half_rn(v1);
    }
}

// ---- reductions: fixed order, so results do not depend on the grid ----------------------
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the block; every thread gets the same value. `scratch` holds one float per warp.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    v = warp_sum(v);
    __syncthreads();  // scratch may still be read by a previous call
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float total = 0.0f;
    for (int w = 0; w < warps; ++w) total += scratch[w];
    return total;
}

// ---- async copies, ldmatrix and mma.sync (sm_80+) ------------------------------------
__device__ __forceinline__ unsigned smem_addr(const void* p) {
    return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

// 16-byte global->shared copy; when !pred the destination is zero-filled and src not read.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool pred) {
    const int bytes = pred ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src), "r"(bytes));
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }

template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(unsigned (&r)[4], const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}

__device__ __forceinline__ void ldmatrix_x4_trans(unsigned (&r)[4], const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}

// d += a·b for a 16x16 (row) by 16x8 (col) FP16 tile with FP32 accumulators.
__device__ __forceinline__ void mma_16816(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Eight FP16 values (16 bytes) as floats.
__device__ __forceinline__ void unpack8(uint4 v, float (&f)[8]) {
    const __half2* h = reinterpret_cast<const __half2*>(&v);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const float2 t = __half22float2(h[i]);
        f[2 * i] = t.x;
        f[2 * i + 1] = t.y;
    }
}

__device__ __forceinline__ unsigned pack_half2(float lo, float hi) {
    __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<unsigned*>(&h);
}

}  // namespace rs
