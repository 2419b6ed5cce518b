// init.cu — deterministic pseudo-random fills, for synthetic model weights.
//
// Computes:   fill_f16 (see FillParams in abi.h): a counter-based hash (splitmix64) of
//             seed + i, so any element is reproducible on its own, on the GPU or the host.
// Work unit:  RS_FILL_UNIT consecutive elements; any n.
// Reference:  kernels/reference.rs::fill.
#include "common.cuh"

namespace {
__device__ __forceinline__ unsigned long long splitmix64(unsigned long long z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
}  // namespace

RS_KERNEL_PAIR(__launch_bounds__(RS_FILL_THREADS), fill_f16, FillParams) {
    rs::pdl_sync();
    using rs::u64;
    __half* x = rs::ptr<__half>(p.x);
    RS_FOR_EACH_UNIT_BY(u, (p.n + RS_FILL_UNIT - 1) / RS_FILL_UNIT, t, 8) {
        const u64 end = min((u + 1) * RS_FILL_UNIT, p.n);
        for (u64 i = u * RS_FILL_UNIT + threadIdx.x; i < end; i += blockDim.x) {
            const float r = (float)(splitmix64(p.seed + i) >> 40) * (1.0f / 16777216.0f);
            const float v = __fmaf_rn(2.0f, r, -1.0f);  // exact: r has 24 bits
            x[i] = __float2half_rn(__fadd_rn(__fmul_rn(p.scale, v), p.mean));
        }
    }
}
