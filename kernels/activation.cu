// activation.cu — elementwise activations.
//
// gelu_f16:   y = gelu(x), tanh or erf form; work unit RS_ACT_UNIT consecutive elements; any n.
// swiglu_f16: out = silu(gate)·up per row (Llama's MLP); work unit RS_ACT_UNIT columns of a row;
//             any rows, cols; gate and up columns in order or paired (abi.h).
// gelu computes in FP32 and rounds once; swiglu rounds silu(gate) to FP16 before the product. Reference: kernels/reference.rs::gelu, swiglu.
#include "common.cuh"

static_assert(RS_ACT_UNIT % RS_ACT_THREADS == 0, "a unit is whole rounds of the block's threads");

RS_KERNEL_PAIR(__launch_bounds__(RS_ACT_THREADS), gelu_f16, GeluParams) {
    rs::pdl_sync();
    using rs::u64;
    const __half* x = rs::ptr<const __half>(p.x);
    __half* y = rs::ptr<__half>(p.y);
    constexpr unsigned PER = RS_ACT_UNIT / RS_ACT_THREADS;
    RS_FOR_EACH_UNIT_BY(u, (p.n + RS_ACT_UNIT - 1) / RS_ACT_UNIT, t, 8) {
        const u64 i0 = u * RS_ACT_UNIT + threadIdx.x;
        // Every load of the unit before any store (y may alias x): one wait for memory.
        float v[PER];
#pragma unroll
        for (unsigned k = 0; k < PER; ++k) v[k] = i0 + k * RS_ACT_THREADS < p.n ? __half2float(x[i0 + k * RS_ACT_THREADS]) : 0.0f;
#pragma unroll
        for (unsigned k = 0; k < PER; ++k)
            if (i0 + k * RS_ACT_THREADS < p.n) y[i0 + k * RS_ACT_THREADS] = __float2half_rn(rs::gelu(v[k], p.act));
    }
}

RS_KERNEL_PAIR(__launch_bounds__(RS_ACT_THREADS), swiglu_f16, SwigluParams) {
    rs::pdl_sync();
    using rs::u64;
    constexpr unsigned PER = RS_ACT_UNIT / RS_ACT_THREADS;
    const unsigned chunks = (p.cols + RS_ACT_UNIT - 1) / RS_ACT_UNIT;
    RS_FOR_EACH_UNIT_BY(u, (u64)p.rows * chunks, t, 8) {
        const u64 r = u / chunks;
        const unsigned c0 = (unsigned)(u % chunks) * RS_ACT_UNIT + threadIdx.x;
        const __half* gate = rs::ptr<const __half>(p.gate) + r * p.gate_stride;
        const __half* up = rs::ptr<const __half>(p.up) + r * p.up_stride;
        // Column c's place in gate and up rows: c, or 16·(c / 8) + c % 8 when paired.
        const auto at = [&](unsigned c) { return p.paired ? c + c / 8 * 8 : c; };
        __half* out = rs::ptr<__half>(p.out) + r * p.out_stride;
        // Every load of the unit before any store (out may alias gate or up), so a thread
        // waits for memory once per unit.
        float g[PER], v[PER];
#pragma unroll
        for (unsigned k = 0; k < PER; ++k) {
            const unsigned c = c0 + k * RS_ACT_THREADS;
            g[k] = c < p.cols ? __half2float(gate[at(c)]) : 0.0f;
            v[k] = c < p.cols ? __half2float(up[at(c)]) : 0.0f;
        }
#pragma unroll
        for (unsigned k = 0; k < PER; ++k) {
            const unsigned c = c0 + k * RS_ACT_THREADS;
            if (c < p.cols) out[c] = __float2half_rn(rs::swiglu(g[k], v[k]));
        }
    }
}
