// activation.cu — elementwise activations.
//
// gelu_f16:   y = gelu(x), tanh or erf form; work unit RS_ACT_UNIT consecutive elements; any n.
// swiglu_f16: out = silu(gate)·up per row (Llama's MLP); work unit one row; any rows, cols.
// gelu computes in FP32 and rounds once; swiglu rounds silu(gate) to FP16 before the product. Reference: kernels/reference.rs::gelu, swiglu.
#include "common.cuh"

RS_KERNEL_PAIR(__launch_bounds__(RS_ACT_THREADS), gelu_f16, GeluParams) {
    rs::pdl_sync();
    using rs::u64;
    const __half* x = rs::ptr<const __half>(p.x);
    __half* y = rs::ptr<__half>(p.y);
    RS_FOR_EACH_UNIT_BY(u, (p.n + RS_ACT_UNIT - 1) / RS_ACT_UNIT, t, 8) {
        const u64 end = min((u + 1) * RS_ACT_UNIT, p.n);
        for (u64 i = u * RS_ACT_UNIT + threadIdx.x; i < end; i += blockDim.x)
            y[i] = __float2half_rn(rs::gelu(__half2float(x[i]), p.act));
    }
}

RS_KERNEL_PAIR(__launch_bounds__(RS_ACT_THREADS), swiglu_f16, SwigluParams) {
    rs::pdl_sync();
    using rs::u64;
    RS_FOR_EACH_UNIT_BY(r, p.rows, t, 8) {
        const __half* gate = rs::ptr<const __half>(p.gate) + r * p.gate_stride;
        const __half* up = rs::ptr<const __half>(p.up) + r * p.up_stride;
        __half* out = rs::ptr<__half>(p.out) + r * p.out_stride;
        for (unsigned c = threadIdx.x; c < p.cols; c += blockDim.x) {
            const float g = __half2float(gate[c]);
            // silu(gate) is rounded to FP16 before the product, as `act(gate) * up` in FP16 is.
            const float s = __half2float(__float2half_rn(g / (1.0f + expf(-g))));
            out[c] = __float2half_rn(s * __half2float(up[c]));
        }
    }
}
