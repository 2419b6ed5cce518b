// attention_decode.cuh — one work unit of decode attention, (chunk c, sequence b, query head h):
// the first query head of each kv group appends the token's k and v to the cache (in chunk 0),
// then the unit attends its query over the chunk's positions of the cache (the other heads of
// the group read the new row from k and v, never from the slot being written). With
// p.inv_freq, q and the new k are rotated by RoPE in registers first (rope_angle's cosines and
// sines, once a unit in shared memory, then rope_rotate: the bits rope_f16 gives). Used by
// attention_decode_d* and the decoder kernel (decoder.cu), whose units attend over the whole
// cache, and by attention_decode_split_d* (attention.cu), which splits
// the caches of a launch with few (sequence, query head) pairs into chunks (decode_chunks),
// with a block of WARPS warps. Every thread of the block must call it; it reads q, k and v
// with ordinary loads, so a caller that produced them in the same launch must have made them
// visible to the block first.
//
// Layout: a cached row is D / 8 lanes of 16 bytes; warp w holds 32 / (D / 8) rows at a time, and
// each of the block's ROWS rows (a partial softmax state) takes positions t0 + r, t0 + r + ROWS,
// … of its chunk in order, U of them loaded before their math. The states are merged in row
// order; a sequence's chunks, in chunk order (abi.h, DecodeAttentionParams). WARPS and U fix
// the bits, and the chunks (a function of the shape: batch, heads and capacity): a kernel's
// choice of them is part of its arithmetic, never of its grid. A sequence within its first
// chunk gets the bits of an unsplit unit.
// Reference: kernels/reference.rs::decode_attention (after ::rope when fused).
#pragma once
#include <math_constants.h>

#include "common.cuh"

namespace rs {

// RoPE of a lane's 8 consecutive dims (d0 … d0 + 7, FP16 in v) of a head of D dims whose
// other half is held by lane ^ (D / 16): the lanes of a row are D / 8 consecutive lanes; cs and
// sn hold each of the D / 2 angles' rounded cosine and sine (rope_angle). Every lane of the
// warp must call it.
template <int D>
__device__ __forceinline__ uint4 rope8(uint4 v, unsigned d0, const float* cs, const float* sn) {
    constexpr unsigned HALF = D / 2;
    uint4 o;
    o.x = __shfl_xor_sync(0xffffffffu, v.x, D / 16);
    o.y = __shfl_xor_sync(0xffffffffu, v.y, D / 16);
    o.z = __shfl_xor_sync(0xffffffffu, v.z, D / 16);
    o.w = __shfl_xor_sync(0xffffffffu, v.w, D / 16);
    float mine[8], other[8];
    unpack8(v, mine);
    unpack8(o, other);
    const bool first = d0 < HALF;
    __half y[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) {
        const unsigned i = (d0 + e) % HALF;
        __half y1, y2;
        rope_rotate(first ? mine[e] : other[e], first ? other[e] : mine[e], cs[i], sn[i], y1, y2);
        y[e] = first ? y1 : y2;
    }
    return *reinterpret_cast<const uint4*>(y);
}

// Chunks attention_decode_split_d* splits each cache of a launch into (abi.h,
// DecodeAttentionParams); the library launches it where that is more than 1.
__host__ __device__ __forceinline__ unsigned decode_chunks(unsigned batch, unsigned heads_q, unsigned max_len) {
    const unsigned pairs = batch * heads_q, want = (RS_DECODE_TARGET_UNITS + pairs - 1) / pairs;
    const unsigned most = min((unsigned)RS_DECODE_MAX_CHUNKS, (max_len + RS_DECODE_MIN_CHUNK - 1) / RS_DECODE_MIN_CHUNK);
    return max(1u, min(want, most));
}

// Positions of each chunk where a cache of max_len positions is split into `chunks`.
__host__ __device__ __forceinline__ unsigned decode_chunk_rows(unsigned max_len, unsigned chunks) {
    return chunks == 1 ? max_len : ((max_len + chunks - 1) / chunks + 63) / 64 * 64;
}

// Asks L2 for the cached rows unit u (of a launch whose caches are in `chunks` chunks) reads
// first: its query head's part of its kv head's rows (the group's heads ask for a part each, so
// a launch asks for each row once), at most RS_DECODE_PREFETCH_BYTES of K and as much of V.
// Called before the wait for the kernel or the units that write q, k and v: the rows before the
// new token's were written by earlier steps; p.pos, which gives how many, may be read before it
// is final, since a prefetch is only a hint and changes no value.
template <int D>
__device__ __forceinline__ void decode_attention_prefetch_unit(const DecodeAttentionParams& p, u64 u, unsigned chunks) {
    const u64 pairs = (u64)p.batch * p.heads_q;
    if (u >= chunks * pairs) return;
    const unsigned c = (unsigned)(u / pairs), bh = (unsigned)(u % pairs);
    const unsigned h = bh % p.heads_q, b = bh / p.heads_q, group = p.heads_q / p.heads_kv;
    const unsigned filled = min(ptr<const unsigned>(p.pos)[b], p.max_len);  // rows of earlier steps
    const unsigned rows = decode_chunk_rows(p.max_len, chunks), t0 = c * rows, t1 = min(filled, t0 + rows);
    if (t0 >= t1) return;
    constexpr unsigned MOST = RS_DECODE_PREFETCH_BYTES / (D * 2);  // rows a part
    const unsigned part = min(MOST, (t1 - t0 + group - 1) / group), r0 = t0 + (h % group) * part, r1 = min(t1, r0 + part);
    if (r0 >= r1) return;
    const u64 at = ((u64)b * p.heads_kv + h / group) * p.max_len + r0;
    prefetch_l2(ptr<const __half>(p.k_cache) + at * D, (r1 - r0) * D * 2);
    prefetch_l2(ptr<const __half>(p.v_cache) + at * D, (r1 - r0) * D * 2);
}

// The same for a launch's block: thread i asks for the block's unit i in the plain order
// (u = blockIdx.x + i·gridDim.x; the first is the same in the counted order), i <
// RS_DECODE_PREFETCH_UNITS. Not inlined: the kernel's registers and schedule stay as they were.
template <int D>
__device__ __noinline__ void decode_attention_prefetch(const DecodeAttentionParams& p, unsigned chunks) {
    if (threadIdx.x < RS_DECODE_PREFETCH_UNITS)
        decode_attention_prefetch_unit<D>(p, blockIdx.x + (u64)threadIdx.x * gridDim.x, chunks);
}

// Unit u of a launch: unsplit, (b, h), attending over the whole cache and writing its output;
// SPLIT, (c, b, h) of a launch whose caches are in `chunks` chunks. The unsplit unit is the code
// of the unit before chunks were added, so are its registers and schedule.
template <int D, int WARPS, int U, bool SPLIT = false>
__device__ __forceinline__ void decode_attention_unit(const DecodeAttentionParams& p, u64 u, unsigned chunks = 1) {
    constexpr int THREADS = WARPS * 32;
    constexpr int LR = D / 8;          // lanes per cached row, 16 bytes each
    constexpr int RPW = 32 / LR;       // rows a warp loads at once
    constexpr int ROWS = WARPS * RPW;  // rows per block step = partial softmax states
    static_assert(LR == 4 || LR == 8 || LR == 16, "head_dim 32, 64 or 128");
    static_assert(RS_DECODE_MAX_CHUNKS <= THREADS, "a thread a chunk state");
    __shared__ float sm_m[ROWS], sm_l[ROWS], sm_w[ROWS], sm_o[ROWS][D];
    __shared__ float sm_max, sm_cm[RS_DECODE_MAX_CHUNKS], sm_cl[RS_DECODE_MAX_CHUNKS];
    __shared__ bool sm_last;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int sub = lane % LR, row_id = warp * RPW + lane / LR;
    const unsigned group = p.heads_q / p.heads_kv;
    const float scale_log2 = p.scale * 1.4426950408889634f;

    // Split, a launch's units number less than 2^32 (the params' check).
    const unsigned pairs = p.batch * p.heads_q;
    const unsigned c = SPLIT ? (unsigned)u / pairs : 0;
    const u64 bh = SPLIT ? (u64)((unsigned)u - c * pairs) : u;  // b · heads_q + h
    const unsigned h = bh % p.heads_q;
    const unsigned b = bh / p.heads_q;
    const u64 kv = (u64)b * p.heads_kv + h / group;  // the cache's (b, kv head)
    const unsigned pos = ptr<const unsigned>(p.pos)[b];
    const bool fresh = pos < p.max_len;  // the new token has a slot in the cache
    const unsigned len = min(pos + 1, p.max_len);
    const u64 new_row = (u64)b * p.qkv_stride + (h / group) * D;
    const __half* Kc = ptr<const __half>(p.k_cache) + kv * p.max_len * D;
    const __half* Vc = ptr<const __half>(p.v_cache) + kv * p.max_len * D;
    // This lane's 16 bytes of q and of the new k and v rows (q and k rotated when RoPE is fused).
    uint4 qr = *reinterpret_cast<const uint4*>(ptr<const __half>(p.q) + (u64)b * p.qkv_stride + (u64)h * D + sub * 8);
    uint4 k_new = *reinterpret_cast<const uint4*>(ptr<const __half>(p.k) + new_row + sub * 8);
    const uint4 v_new = *reinterpret_cast<const uint4*>(ptr<const __half>(p.v) + new_row + sub * 8);
    // This unit's positions [t0, t1), and the chunks the sequence has (uniform in the block).
    const unsigned rows = SPLIT ? decode_chunk_rows(p.max_len, chunks) : p.max_len;
    const unsigned t0 = c * rows;
    if (SPLIT && t0 >= len) return;
    const unsigned t1 = SPLIT ? min(len, t0 + rows) : len;
    const unsigned parts = SPLIT ? (len + rows - 1) / rows : 1;
    if (p.inv_freq) {
        // Each angle's cosine and sine once a unit, not in every lane that rotates by it (a lane
        // rotated 8 dims of q and 8 of k, so 16 sincosf, and a row's two halves the same 8).
        // The previous unit read them before its merge's barriers.
        __shared__ float sm_cs[D / 2], sm_sn[D / 2];
        const float* inv_freq = ptr<const float>(p.inv_freq);
        static_assert(D / 2 <= THREADS, "a thread an angle");
        if (tid < D / 2) rope_angle((float)pos * inv_freq[tid], sm_cs[tid], sm_sn[tid]);
        __syncthreads();
        qr = rope8<D>(qr, sub * 8, sm_cs, sm_sn);
        k_new = rope8<D>(k_new, sub * 8, sm_cs, sm_sn);
    }
    // Append: the group's first head is the only writer of its slot; lanes 0 … 2·LR − 1 of warp 0
    // hold the new k (then v) row's pieces 0 … LR − 1.
    if (fresh && c == 0 && h % group == 0 && tid < 2 * LR) {
        __half* cache = ptr<__half>(tid >= LR ? p.v_cache : p.k_cache);
        *reinterpret_cast<uint4*>(cache + (kv * p.max_len + pos) * D + sub * 8) = tid >= LR ? v_new : k_new;
    }
    float qv[8], acc[8];
    unpack8(qr, qv);
#pragma unroll
    for (int e = 0; e < 8; ++e) {
        qv[e] *= scale_log2;
        acc[e] = 0.0f;
    }
    float m = -CUDART_INF_F, l = 0.0f;
    // Row r of warp w takes positions t0 + w·RPW + r + i·ROWS; the loop bound is per warp,
    // so the shuffles below never diverge.
    // This lane's 16 bytes of cached row t are Kl[t · LR] and Vl[t · LR] (32-bit offsets: a
    // cache's rows · D / 8 pieces fit the params' check).
    const uint4* const Kl = reinterpret_cast<const uint4*>(Kc) + sub;
    const uint4* const Vl = reinterpret_cast<const uint4*>(Vc) + sub;
    const unsigned now_at = fresh ? pos : ~0u;  // the new token's position, if it has a slot
    for (unsigned row = t0 + warp * RPW + lane / LR; row - lane / LR < t1; row += U * ROWS) {
        uint4 kr[U], vr[U];
#pragma unroll
        for (int j = 0; j < U; ++j) {
            const unsigned t = row + j * ROWS;
            const bool in = t < t1, now = t == now_at;
            kr[j] = !in ? make_uint4(0, 0, 0, 0) : now ? k_new : Kl[t * LR];
            vr[j] = !in ? make_uint4(0, 0, 0, 0) : now ? v_new : Vl[t * LR];
        }
        float dot[U], m_new = m;
#pragma unroll
        for (int j = 0; j < U; ++j) {
            float kf[8], d = 0.0f;
            unpack8(kr[j], kf);
#pragma unroll
            for (int e = 0; e < 8; ++e) d += qv[e] * kf[e];
#pragma unroll
            for (int o = LR / 2; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
            dot[j] = row + j * ROWS < t1 ? d : -CUDART_INF_F;
            m_new = fmaxf(m_new, dot[j]);
        }
        const float corr = m == -CUDART_INF_F ? 0.0f : exp2f(m - m_new);
        l *= corr;
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[e] *= corr;
#pragma unroll
        for (int j = 0; j < U; ++j) {
            const float pv = m_new == -CUDART_INF_F ? 0.0f : exp2f(dot[j] - m_new);
            float vf[8];
            unpack8(vr[j], vf);
            l += pv;
#pragma unroll
            for (int e = 0; e < 8; ++e) acc[e] += pv * vf[e];
        }
        m = m_new;
    }
    __syncthreads();  // the previous unit's merge has read the shared arrays
    if (sub == 0) {
        sm_m[row_id] = m;
        sm_l[row_id] = l;
    }
#pragma unroll
    for (int e = 0; e < 8; ++e) sm_o[row_id][sub * 8 + e] = acc[e];
    __syncthreads();
    if (tid < ROWS) {
        float m_all = -CUDART_INF_F;
        for (int r = 0; r < ROWS; ++r) m_all = fmaxf(m_all, sm_m[r]);
        sm_w[tid] = sm_m[tid] == -CUDART_INF_F ? 0.0f : exp2f(sm_m[tid] - m_all);
        if (SPLIT && tid == 0) sm_max = m_all;
    }
    __syncthreads();
    __half* o = ptr<__half>(p.o) + (u64)b * p.o_stride + (u64)h * D;
    if (!SPLIT || parts == 1) {
        for (int d = tid; d < D; d += THREADS) {
            float v = 0.0f, l_all = 0.0f;
            for (int r = 0; r < ROWS; ++r) {
                v += sm_o[r][d] * sm_w[r];
                l_all += sm_l[r] * sm_w[r];
            }
            o[d] = __float2half_rn(l_all > 0.0f ? v / l_all : 0.0f);
        }
        return;
    }
    // This chunk's state: its max, sum and unnormalised output (the sums above, in row order).
    const float* const states = ptr<const float>(p.partial) + bh * chunks * (D + 2);
    float* const mine = ptr<float>(p.partial) + (bh * chunks + c) * (D + 2);
    for (int d = tid; d < D; d += THREADS) {
        float v = 0.0f, l_all = 0.0f;
        for (int r = 0; r < ROWS; ++r) {
            v += sm_o[r][d] * sm_w[r];
            l_all += sm_l[r] * sm_w[r];
        }
        mine[2 + d] = v;
        if (d == 0) {
            mine[0] = sm_max;
            mine[1] = l_all;
        }
    }
    __syncthreads();
    // Thread 0 releases the block's state (the barrier, then a GPU-scope fence), counts the chunk,
    // and where it is the last of its sequence's, acquires the others'.
    if (tid == 0) {
        unsigned* const arrived = ptr<unsigned>(p.arrived) + bh;
        __threadfence();
        const bool last = atomicAdd(arrived, 1u) == parts - 1;
        if (last) {
            *arrived = 0;  // every chunk has counted: ready for the next launch
            __threadfence();
        }
        sm_last = last;
    }
    __syncthreads();
    if (!sm_last) return;
    // The last to arrive merges the sequence's chunks in chunk order (from L2: other SMs wrote
    // them).
    if (tid < (int)parts) {
        sm_cm[tid] = __ldcg(states + (u64)tid * (D + 2));
        sm_cl[tid] = __ldcg(states + (u64)tid * (D + 2) + 1);
    }
    __syncthreads();
    float m_all = -CUDART_INF_F;
    for (unsigned k = 0; k < parts; ++k) m_all = fmaxf(m_all, sm_cm[k]);
    for (int d = tid; d < D; d += THREADS) {
        float v = 0.0f, l_all = 0.0f;
#pragma unroll 4
        for (unsigned k = 0; k < parts; ++k) {
            const float w = exp2f(sm_cm[k] - m_all);  // each chunk has a position: its max is finite
            v += __ldcg(states + (u64)k * (D + 2) + 2 + d) * w;
            l_all += sm_cl[k] * w;
        }
        o[d] = __float2half_rn(v / l_all);
    }
}

}  // namespace rs
