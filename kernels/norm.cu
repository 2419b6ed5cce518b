// norm.cu — LayerNorm and RMSNorm over rows, with an optional fused residual add.
//
// Computes:   see NormParams in abi.h. s = x + residual is rounded to FP16 (it is the
//             residual stream the caller keeps), and the statistics are taken over that
//             rounded s in FP32: mean first, then the centred variance (two passes). RMSNorm
//             rounds s/rms to FP16 before multiplying by gamma (as Llama's reference does).
// Work unit:  one row; the block keeps the row in shared memory as FP32, so y, sum_out, x
//             and residual may alias.
// Shapes:     rows ≥ 0, 1 ≤ cols ≤ RS_NORM_MAX_COLS.
// Reference:  kernels/reference.rs::layer_norm, rms_norm.
#include "common.cuh"

namespace {

using rs::u64;

template <bool RMS>
__device__ __forceinline__ void norm_rows(const NormParams& p) {
    __shared__ float row[RS_NORM_MAX_COLS];
    __shared__ float scratch[32];
    const __half* x = rs::ptr<const __half>(p.x);
    const __half* res = p.residual ? rs::ptr<const __half>(p.residual) : nullptr;
    __half* sum_out = p.sum_out ? rs::ptr<__half>(p.sum_out) : nullptr;
    const __half* gamma = rs::ptr<const __half>(p.gamma);
    const __half* beta = p.beta ? rs::ptr<const __half>(p.beta) : nullptr;
    __half* y = rs::ptr<__half>(p.y);
    RS_FOR_EACH_UNIT(r, p.rows) {
        const u64 base = r * p.cols;
        float sum = 0.0f;
        for (unsigned c = threadIdx.x; c < p.cols; c += blockDim.x) {
            float v = __half2float(x[base + c]);
            if (res) {
                const __half s = __float2half_rn(v + __half2float(res[base + c]));
                if (sum_out) sum_out[base + c] = s;
                v = __half2float(s);
            }
            row[c] = v;
            sum += RMS ? v * v : v;
        }
        // Each thread reads back only the columns it wrote, so no barrier is needed for `row`.
        const float total = rs::block_sum(sum, scratch);
        float mean = 0.0f, rstd;
        if (RMS) {
            rstd = rsqrtf(total / p.cols + p.eps);
        } else {
            mean = total / p.cols;
            float sq = 0.0f;
            for (unsigned c = threadIdx.x; c < p.cols; c += blockDim.x) {
                const float d = row[c] - mean;
                sq += d * d;
            }
            rstd = rsqrtf(rs::block_sum(sq, scratch) / p.cols + p.eps);
        }
        for (unsigned c = threadIdx.x; c < p.cols; c += blockDim.x) {
            float v;
            if (RMS) {
                // Llama's RMSNorm rounds the normalised value to FP16 before the scale.
                v = __half2float(__float2half_rn(row[c] * rstd)) * __half2float(gamma[c]);
            } else {
                v = (row[c] - mean) * rstd * __half2float(gamma[c]);
                if (beta) v += __half2float(beta[c]);
            }
            y[base + c] = __float2half_rn(v);
        }
    }
}

}  // namespace

RS_KERNEL void __launch_bounds__(RS_NORM_THREADS) layer_norm_f16(const __grid_constant__ NormParams p) {
    rs::pdl_sync();
    norm_rows<false>(p);
}

RS_KERNEL void __launch_bounds__(RS_NORM_THREADS) rms_norm_f16(const __grid_constant__ NormParams p) {
    rs::pdl_sync();
    norm_rows<true>(p);
}
