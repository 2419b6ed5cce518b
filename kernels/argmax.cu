// argmax.cu — greedy sampling: the index of each row's largest value.
//
// Computes:   out[r] = smallest index of the maximum of row r; NaNs are ignored (a row of
//             only NaN gives 0).
// Work unit:  a part of a row, RS_ARGMAX_PART_COLS columns (the last part the rest): unit u is
//             part u % parts of row u / parts, parts = ⌈cols / RS_ARGMAX_PART_COLS⌉. Threads
//             scan 16-byte vectors of the part (the unaligned first and last columns one by
//             one), then a fixed-order tree merges them. A row of one part is written at once;
//             otherwise each part's best goes to p.partial, and the last part of the row to
//             finish (a count a row in p.arrived, left at zero for the next launch) merges them.
//             The order is total (larger value, then smaller index), so the result depends on
//             neither the grid nor which part merges. Why parts: one block a row read the
//             logits at about 20 GB/s a row (16 µs for Llama's 128,256 columns at batch 8, 8 SMs
//             busy); parts spread a row over as many SMs.
// Shapes:     any rows; cols ≥ 1 (vocabularies of 32,000, 50,257, 128,256, ...); stride ≥ cols.
//             With p.advance, the block that writes row r's index also adds p.delta to
//             advance[r], advance[r + rows], … (every one of advance_n words, each once).
// Reference:  kernels/reference.rs::argmax.
#include <math_constants.h>

#include "common.cuh"

namespace {

using rs::u64;

// Parts a row of `cols` columns is scanned in (ArgmaxParams).
__device__ __forceinline__ unsigned parts_of(unsigned cols) {
    return (cols + RS_ARGMAX_PART_COLS - 1) / RS_ARGMAX_PART_COLS;
}

// (value, index) ordering: larger value wins, ties go to the smaller index.
__device__ __forceinline__ bool better(float v, unsigned i, float bv, unsigned bi) {
    return v > bv || (v == bv && i < bi);
}

// The best (value, index) seen by the block: every thread's candidate merged by warp, then
// warp by warp in warp order; thread 0 has the result. Every thread must call it. sv and si
// hold a value and an index a warp; a barrier ends the previous call's use of them.
__device__ __forceinline__ void block_best(float& bv, unsigned& bi, float* sv, unsigned* si) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        const unsigned oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (better(ov, oi, bv, bi)) {
            bv = ov;
            bi = oi;
        }
    }
    __syncthreads();  // the previous merge is done with sv/si
    if (lane == 0) {
        sv[warp] = bv;
        si[warp] = bi;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < warps; ++w) {
            if (better(sv[w], si[w], bv, bi)) {
                bv = sv[w];
                bi = si[w];
            }
        }
    }
}

// Row r's index, and its share of the positions advanced (ArgmaxParams.advance).
__device__ __forceinline__ void write_row(const ArgmaxParams& p, unsigned r, unsigned bi) {
    rs::ptr<unsigned>(p.out)[r] = bi == 0xffffffffu ? 0u : bi;
    if (p.advance) {
        unsigned* const pos = rs::ptr<unsigned>(p.advance);
        for (u64 i = r; i < p.advance_n; i += p.rows) pos[i] += p.delta;
    }
}

}  // namespace

RS_KERNEL_PAIR(__launch_bounds__(RS_ARGMAX_THREADS), argmax_f16, ArgmaxParams) {
    rs::pdl_sync();
    __shared__ float sv[RS_ARGMAX_THREADS / 32];
    __shared__ unsigned si[RS_ARGMAX_THREADS / 32];
    __shared__ bool last;
    const unsigned parts = parts_of(p.cols);
    RS_FOR_EACH_UNIT(u, (u64)p.rows * parts, t) {
        const unsigned r = (unsigned)(u / parts), part = (unsigned)(u % parts);
        const unsigned c0 = part * RS_ARGMAX_PART_COLS, cols = min(p.cols - c0, (unsigned)RS_ARGMAX_PART_COLS);
        const __half* row = rs::ptr<const __half>(p.logits) + (u64)r * p.stride + c0;
        float bv = -CUDART_INF_F;
        unsigned bi = 0xffffffffu;
        auto consider = [&](float v, unsigned c) {
            if (better(v, c, bv, bi)) {
                bv = v;
                bi = c;
            }
        };
        // Columns before the first 16-byte boundary and after the last one, one at a time.
        const unsigned head = min(cols, (unsigned)((16 - (reinterpret_cast<u64>(row) & 15)) & 15) / 2);
        const unsigned vecs = (cols - head) / 8, tail = head + vecs * 8;
        if (threadIdx.x < head) consider(__half2float(row[threadIdx.x]), c0 + threadIdx.x);
        for (unsigned c = tail + threadIdx.x; c < cols; c += blockDim.x) consider(__half2float(row[c]), c0 + c);
        // The aligned middle, 16 bytes per load, U loads in flight per thread, then the
        // comparisons (the order is total, so the result does not depend on the scan order).
        const uint4* mid = reinterpret_cast<const uint4*>(row + head);
        constexpr int U = 2;
        for (unsigned v0 = threadIdx.x; v0 < vecs; v0 += U * blockDim.x) {
            uint4 w[U];
#pragma unroll
            for (int j = 0; j < U; ++j) {
                const unsigned v = v0 + j * blockDim.x;
                w[j] = v < vecs ? mid[v] : make_uint4(0, 0, 0, 0);
            }
#pragma unroll
            for (int j = 0; j < U; ++j) {
                const unsigned v = v0 + j * blockDim.x;
                if (v >= vecs) break;
                float f[8];
                rs::unpack8(w[j], f);
#pragma unroll
                for (int e = 0; e < 8; ++e) consider(f[e], c0 + head + v * 8 + e);
            }
        }
        block_best(bv, bi, sv, si);
        if (parts == 1) {
            if (threadIdx.x == 0) write_row(p, r, bi);
            continue;
        }
        // This part's best for the row's merge; thread 0 releases it (a GPU-scope fence),
        // counts the part, and where it is the row's last, takes the others'.
        uint2* const partial = rs::ptr<uint2>(p.partial) + (u64)r * parts;
        if (threadIdx.x == 0) {
            partial[part] = make_uint2(__float_as_uint(bv), bi);
            unsigned* const arrived = rs::ptr<unsigned>(p.arrived) + r;
            __threadfence();
            last = atomicAdd(arrived, 1u) == parts - 1;
            if (last) {
                *arrived = 0;  // every part has counted: ready for the next launch
                __threadfence();
            }
        }
        __syncthreads();
        if (!last) continue;
        bv = -CUDART_INF_F;
        bi = 0xffffffffu;
        for (unsigned k = threadIdx.x; k < parts; k += blockDim.x) {
            const uint2 c = __ldcg(partial + k);  // from L2: other SMs wrote them
            consider(__uint_as_float(c.x), c.y);
        }
        block_best(bv, bi, sv, si);
        if (threadIdx.x == 0) write_row(p, r, bi);
    }
}
