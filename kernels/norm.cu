// norm.cu — LayerNorm and RMSNorm over rows, with an optional fused residual add.
//
// Computes:   see NormParams in abi.h. s = x + residual is rounded to FP16 (it is the
//             residual stream the caller keeps), and the statistics are taken over that
//             rounded s in FP32: mean first, then the centred variance (two passes). RMSNorm
//             rounds s/rms to FP16 before multiplying by gamma (as Llama's reference does).
// Work unit:  RS_NORM_ROWS rows (one per warp of the block). Rows of at most
//             RS_NORM_WARP_COLS columns, a multiple of 8, with every operand 16-byte aligned
//             go one row per warp: the row stays in registers as FP16, 16-byte loads and
//             stores, warp reductions only. Other rows go one at a time through the whole
//             block, staged in shared memory as FP32. Either way a row's loads all come before
//             its stores, so y, sum_out, x and residual may alias.
// Shapes:     rows ≥ 0, 1 ≤ cols ≤ RS_NORM_MAX_COLS.
// Reference:  kernels/reference.rs::layer_norm, rms_norm.
#include "rownorm.cuh"

namespace {

using rs::u64;

static_assert(RS_NORM_ROWS * 32 == RS_NORM_THREADS, "a warp per row of a unit");
constexpr int HELD = RS_NORM_WARP_COLS / 256;  // 16-byte chunks of a row per lane

struct Rows {
    const __half* x;
    const __half* res;
    __half* sum_out;
    const __half* gamma;
    const __half* beta;
    __half* y;
};

// Row r as one warp (see the header): s in registers, then its statistics, then y.
template <bool RMS>
__device__ __forceinline__ void norm_row_warp(const NormParams& p, const Rows& t, u64 r) {
    const int lane = threadIdx.x & 31;
    const unsigned k = p.cols;
    const u64 base = r * k;
    uint4 h[HELD];
#pragma unroll
    for (int i = 0; i < HELD; ++i) {
        const unsigned c = lane * 8 + i * 256;
        h[i] = make_uint4(0, 0, 0, 0);
        if (c >= k) continue;
        h[i] = *reinterpret_cast<const uint4*>(t.x + base + c);
        if (t.res) {
            float v[8], a[8];
            rs::unpack8(h[i], v);
            rs::unpack8(*reinterpret_cast<const uint4*>(t.res + base + c), a);
            unsigned* w = reinterpret_cast<unsigned*>(&h[i]);
#pragma unroll
            for (int j = 0; j < 4; ++j) w[j] = rs::pack_half2(v[2 * j] + a[2 * j], v[2 * j + 1] + a[2 * j + 1]);
            if (t.sum_out) *reinterpret_cast<uint4*>(t.sum_out + base + c) = h[i];
        }
    }
    constexpr unsigned NORM = RMS ? RS_NORM_RMS : RS_NORM_LAYER;
    const float2 st = rs::held_stats(h, k, NORM, p.eps);
#pragma unroll
    for (int i = 0; i < HELD; ++i) {
        const unsigned c = lane * 8 + i * 256;
        if (c >= k) continue;
        *reinterpret_cast<uint4*>(t.y + base + c) =
            rs::normalize8(h[i], st, t.gamma, t.beta, NORM, c);
    }
}

// Rows through the whole block, one at a time (see the header).
template <bool RMS>
__device__ __forceinline__ void norm_row_block(const NormParams& p, const Rows& t, u64 r, float* row, float* scratch) {
    const __half *x = t.x, *res = t.res, *gamma = t.gamma, *beta = t.beta;
    __half *sum_out = t.sum_out, *y = t.y;
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
    // Each thread reads back only the columns it wrote (in every row), so `row` needs no barrier.
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

template <bool RS_COUNTED, bool RMS>
__device__ __forceinline__ void norm_rows(const NormParams& p, const RsTicket& tk) {
    __shared__ float row[RS_NORM_MAX_COLS];
    __shared__ float scratch[32];
    const Rows t = {rs::ptr<const __half>(p.x),
                    p.residual ? rs::ptr<const __half>(p.residual) : nullptr,
                    p.sum_out ? rs::ptr<__half>(p.sum_out) : nullptr,
                    rs::ptr<const __half>(p.gamma),
                    p.beta ? rs::ptr<const __half>(p.beta) : nullptr,
                    rs::ptr<__half>(p.y)};
    const u64 any = p.x | p.residual | p.sum_out | p.gamma | p.beta | p.y;
    const bool per_warp = p.cols <= RS_NORM_WARP_COLS && p.cols % 8 == 0 && (any & 15) == 0;
    const unsigned warp = threadIdx.x >> 5;
    RS_FOR_EACH_UNIT_BY(u, (p.rows + RS_NORM_ROWS - 1) / RS_NORM_ROWS, tk, 8) {
        if (per_warp) {
            const u64 r = u * RS_NORM_ROWS + warp;
            if (r < p.rows) norm_row_warp<RMS>(p, t, r);
        } else {
            for (u64 r = u * RS_NORM_ROWS; r < p.rows && r < (u + 1) * RS_NORM_ROWS; ++r)
                norm_row_block<RMS>(p, t, r, row, scratch);
        }
    }
}

}  // namespace

RS_KERNEL_PAIR(__launch_bounds__(RS_NORM_THREADS), layer_norm_f16, NormParams) {
    rs::pdl_sync();
    norm_rows<RS_COUNTED, false>(p, t);
}

RS_KERNEL_PAIR(__launch_bounds__(RS_NORM_THREADS), rms_norm_f16, NormParams) {
    rs::pdl_sync();
    norm_rows<RS_COUNTED, true>(p, t);
}
