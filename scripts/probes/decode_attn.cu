// decode_attn.cu — decode attention on few SMs: a unit per query head, or per kv head's group.
//
// A probe, not project code. The decode issue asks for decode steps that keep their speed on a
// third of the device. The library's decode attention (kernels/attention_decode.cuh) takes a
// unit per (sequence, query head): 256 units at batch 8 for Llama-3.2-1B and mistral-7b (32
// query heads, 8 kv heads), two blocks an SM, so one wave on 132 SMs and three on 48 (the
// profiles: 10.1 µs on 132 SMs, 20.5 on 48, Llama). The heads of a kv group read the same K
// and V rows. This times, on green contexts of 16 … 132 SMs:
//   head   the library's unit (decode_attention_unit, included as it is), a block a unit;
//   group  a unit per (sequence, kv head) that attends the group's G query heads together
//          from one read of each K and V row: 64 units, each lane's arithmetic for each head
//          that of `head` (the same rows, order and combine), so the bits must be the same;
//          two blocks an SM, its registers capped at 128 (ptxas spills ~250 bytes a thread);
//   group1 the same, one block an SM, its registers not capped;
//   split  flash-decoding: a unit per (sequence, query head, chunk of 256 cached rows), then a
//          launch that merges each sequence's chunks in order (two launches; other bits);
//   chunks the kernel the library launches: where decode_chunks is more than 1, the split unit
//          (attention_decode_split_d*: the caches in that many chunks, merged in the same launch
//          by the last chunk of each sequence to finish), else `head`'s; after the bar, the
//          split unit with the caches in 1, 2, 4, 8 and 16 chunks (c1 … c16).
// Both append the new token's k and v to the cache (the same slot every launch). No RoPE.
// Checked against a CPU reference in double precision and `group` against `head` bit for bit.
// µs are of a launch (split: its two) in a run of 200 back to back, without PDL.
// Build and run on the GPU host, from this directory:
//   nvcc -O3 -std=c++17 -I../../kernels -gencode=arch=compute_90a,code=sm_90a -o decode_attn decode_attn.cu -lcuda
//   ./decode_attn
#include <cuda.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "attention_decode.cuh"

#include "check.h"

// The library's unit with a block of W warps, U rows a state at a time (by default the
// library's own block, whose bits `group` must give).
template <int D, int W = RS_DECODE_THREADS / 32, int U = RS_DECODE_U>
__global__ void __launch_bounds__(W * 32) head_k(const __grid_constant__ DecodeAttentionParams p) {
    const unsigned units = p.batch * p.heads_q;
    for (unsigned u = blockIdx.x; u < units; u += gridDim.x) rs::decode_attention_unit<D, W, U>(p, u);
}

// The library's unit and block with registers capped for three blocks an SM: the same
// arithmetic in the PTX (its floating-point instructions in the same order), so the same bits
// are expected, and on a partition where 256 units are more than two blocks an SM take at once, one
// round of units fewer.
template <int D>
__global__ void __launch_bounds__(RS_DECODE_THREADS, 3) head3_k(const __grid_constant__ DecodeAttentionParams p) {
    const unsigned units = p.batch * p.heads_q;
    for (unsigned u = blockIdx.x; u < units; u += gridDim.x)
        rs::decode_attention_unit<D, RS_DECODE_THREADS / 32, RS_DECODE_U>(p, u);
}

// The library's split decode attention kernel with the caches in `chunks` chunks (the library picks
// decode_chunks).
template <int D>
__global__ void __launch_bounds__(RS_DECODE_THREADS) chunked_k(const __grid_constant__ DecodeAttentionParams p,
                                                              unsigned chunks) {
    const unsigned units = chunks * p.batch * p.heads_q;
    for (unsigned u = blockIdx.x; u < units; u += gridDim.x)
        rs::decode_attention_unit<D, RS_DECODE_THREADS / 32, RS_DECODE_U, true>(p, u, chunks);
}

// head_k<D, W, U> launched with its block on stream `st`, a block a unit.
template <int D, int W, int U>
static void head_variant(const DecodeAttentionParams& p, cudaStream_t st) {
    head_k<D, W, U><<<p.batch * p.heads_q, W * 32, 0, st>>>(p);
}

// Query heads h0 … h0 + G − 1 of sequence b, all of kv head kh, attended over cache rows
// [begin, end): decode_attention_unit's arithmetic for each head (its lanes, rows, order and
// merge), each K and V row loaded once for all G. `append`: this unit writes the new token's k
// and v to the cache. Each head's merged state goes to `out(g, d, v, l_all, m_all)` for each
// of its D outputs (v unnormalised, m_all in log2 units). Without RoPE.
template <int D, int G, class Out>
__device__ __forceinline__ void attend(const DecodeAttentionParams& p, unsigned b, unsigned kh, unsigned h0,
                                       unsigned begin, unsigned end, bool append, Out out) {
    constexpr int WARPS = RS_DECODE_THREADS / 32;
    constexpr int LR = D / 8;
    constexpr int RPW = 32 / LR;
    constexpr int ROWS = WARPS * RPW;
    constexpr int U = 4;
    __shared__ float sm_m[G][ROWS], sm_l[G][ROWS], sm_w[G][ROWS], sm_o[G][ROWS][D], sm_max[G];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int sub = lane % LR, row_id = warp * RPW + lane / LR;
    const float scale_log2 = p.scale * 1.4426950408889634f;
    const unsigned long long kv = (unsigned long long)b * p.heads_kv + kh;
    const unsigned pos = rs::ptr<const unsigned>(p.pos)[b];
    const bool fresh = pos < p.max_len;
    const unsigned long long new_row = (unsigned long long)b * p.qkv_stride + kh * D;
    const __half* Kc = rs::ptr<const __half>(p.k_cache) + kv * p.max_len * D;
    const __half* Vc = rs::ptr<const __half>(p.v_cache) + kv * p.max_len * D;
    const uint4 k_new = *reinterpret_cast<const uint4*>(rs::ptr<const __half>(p.k) + new_row + sub * 8);
    const uint4 v_new = *reinterpret_cast<const uint4*>(rs::ptr<const __half>(p.v) + new_row + sub * 8);
    if (append && fresh && tid < 2 * LR) {
        __half* cache = rs::ptr<__half>(tid >= LR ? p.v_cache : p.k_cache);
        *reinterpret_cast<uint4*>(cache + (kv * p.max_len + pos) * D + sub * 8) = tid >= LR ? v_new : k_new;
    }
    float qv[G][8], acc[G][8], m[G], l[G];
#pragma unroll
    for (int g = 0; g < G; ++g) {
        const uint4 qr = *reinterpret_cast<const uint4*>(rs::ptr<const __half>(p.q) + (unsigned long long)b * p.qkv_stride +
                                                         (unsigned long long)(h0 + g) * D + sub * 8);
        rs::unpack8(qr, qv[g]);
#pragma unroll
        for (int e = 0; e < 8; ++e) {
            qv[g][e] *= scale_log2;
            acc[g][e] = 0.0f;
        }
        m[g] = -CUDART_INF_F;
        l[g] = 0.0f;
    }
    for (unsigned base = begin + warp * RPW; base < end; base += U * ROWS) {
        uint4 kr[U], vr[U];
#pragma unroll
        for (int j = 0; j < U; ++j) {
            const unsigned t = base + lane / LR + j * ROWS;
            const bool in = t < end, now = fresh && t == pos;
            kr[j] = !in ? make_uint4(0, 0, 0, 0) : now ? k_new : *reinterpret_cast<const uint4*>(Kc + (unsigned long long)t * D + sub * 8);
            vr[j] = !in ? make_uint4(0, 0, 0, 0) : now ? v_new : *reinterpret_cast<const uint4*>(Vc + (unsigned long long)t * D + sub * 8);
        }
#pragma unroll
        for (int g = 0; g < G; ++g) {
            float dot[U], m_new = m[g];
#pragma unroll
            for (int j = 0; j < U; ++j) {
                float kf[8], d = 0.0f;
                rs::unpack8(kr[j], kf);
#pragma unroll
                for (int e = 0; e < 8; ++e) d += qv[g][e] * kf[e];
#pragma unroll
                for (int o = LR / 2; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
                dot[j] = base + lane / LR + j * ROWS < end ? d : -CUDART_INF_F;
                m_new = fmaxf(m_new, dot[j]);
            }
            const float corr = m[g] == -CUDART_INF_F ? 0.0f : exp2f(m[g] - m_new);
            l[g] *= corr;
#pragma unroll
            for (int e = 0; e < 8; ++e) acc[g][e] *= corr;
#pragma unroll
            for (int j = 0; j < U; ++j) {
                const float pv = m_new == -CUDART_INF_F ? 0.0f : exp2f(dot[j] - m_new);
                float vf[8];
                rs::unpack8(vr[j], vf);
                l[g] += pv;
#pragma unroll
                for (int e = 0; e < 8; ++e) acc[g][e] += pv * vf[e];
            }
            m[g] = m_new;
        }
    }
    __syncthreads();  // the previous unit's merge has read the shared arrays
#pragma unroll
    for (int g = 0; g < G; ++g) {
        if (sub == 0) {
            sm_m[g][row_id] = m[g];
            sm_l[g][row_id] = l[g];
        }
#pragma unroll
        for (int e = 0; e < 8; ++e) sm_o[g][row_id][sub * 8 + e] = acc[g][e];
    }
    __syncthreads();
    if (tid < G * ROWS) {
        const int g = tid / ROWS, r = tid % ROWS;
        float m_all = -CUDART_INF_F;
        for (int i = 0; i < ROWS; ++i) m_all = fmaxf(m_all, sm_m[g][i]);
        sm_w[g][r] = sm_m[g][r] == -CUDART_INF_F ? 0.0f : exp2f(sm_m[g][r] - m_all);
        if (r == 0) sm_max[g] = m_all;
    }
    __syncthreads();
    for (int i = tid; i < G * D; i += RS_DECODE_THREADS) {
        const int g = i / D, d = i % D;
        float v = 0.0f, l_all = 0.0f;
        for (int r = 0; r < ROWS; ++r) {
            v += sm_o[g][r][d] * sm_w[g][r];
            l_all += sm_l[g][r] * sm_w[g][r];
        }
        out(g, d, v, l_all, sm_max[g]);
    }
}

// The output of head h of sequence b, as decode_attention_unit writes it.
__device__ __forceinline__ void store_head(const DecodeAttentionParams& p, unsigned b, unsigned h, unsigned head_dim, int d,
                                           float v, float l_all) {
    rs::ptr<__half>(p.o)[(unsigned long long)b * p.o_stride + (unsigned long long)h * head_dim + d] =
        __float2half_rn(l_all > 0.0f ? v / l_all : 0.0f);
}

// MINB blocks an SM: 2 caps the registers at 128 (some spill), 1 leaves them uncapped.
template <int D, int G, int MINB>
__global__ void __launch_bounds__(RS_DECODE_THREADS, MINB) group_k(const __grid_constant__ DecodeAttentionParams p) {
    const unsigned units = p.batch * p.heads_kv;
    for (unsigned u = blockIdx.x; u < units; u += gridDim.x) {
        const unsigned kh = u % p.heads_kv, b = u / p.heads_kv;
        const unsigned pos = rs::ptr<const unsigned>(p.pos)[b], len = min(pos + 1, p.max_len);
        attend<D, G>(p, b, kh, kh * G, 0, len, true,
                     [&](int g, int d, float v, float l_all, float) { store_head(p, b, kh * G + g, D, d, v, l_all); });
    }
}

// ---- split: a unit per (sequence, query head, chunk of CH cached rows), then a combine ----
//
// Flash-decoding's way: each unit attends its query over one chunk of the cache and writes the
// chunk's max m (log2 units), sum l and unnormalised output; `combine_k` merges a sequence's
// chunks in chunk order. Other bits than `head` (the sums are grouped by chunk).
constexpr unsigned CH = 256;

template <int D>
__global__ void __launch_bounds__(RS_DECODE_THREADS) split_k(const __grid_constant__ DecodeAttentionParams p, unsigned chunks,
                                                             float* part_m, float* part_l, float* part_o) {
    const unsigned units = p.batch * p.heads_q * chunks, group = p.heads_q / p.heads_kv;
    for (unsigned u = blockIdx.x; u < units; u += gridDim.x) {
        const unsigned c = u % chunks, bh = u / chunks, h = bh % p.heads_q, b = bh / p.heads_q;
        const unsigned pos = rs::ptr<const unsigned>(p.pos)[b], len = min(pos + 1, p.max_len);
        const unsigned begin = min(c * CH, len), end = min(begin + CH, len);
        attend<D, 1>(p, b, h / group, h, begin, end, h % group == 0 && pos / CH == c,
                     [&](int, int d, float v, float l_all, float m_all) {
                         part_o[(unsigned long long)u * D + d] = v;
                         if (d == 0) {
                             part_l[u] = l_all;
                             part_m[u] = m_all;
                         }
                     });
    }
}

// A block per (sequence, query head), a thread per output: the chunks merged in chunk order.
template <int D>
__global__ void __launch_bounds__(D) combine_k(const __grid_constant__ DecodeAttentionParams p, unsigned chunks,
                                              const float* part_m, const float* part_l, const float* part_o) {
    const unsigned bh = blockIdx.x, b = bh / p.heads_q, h = bh % p.heads_q, d = threadIdx.x;
    const unsigned pos = rs::ptr<const unsigned>(p.pos)[b];
    const unsigned used = (min(pos + 1, p.max_len) + CH - 1) / CH;
    float m_all = -CUDART_INF_F;
    for (unsigned c = 0; c < used; ++c) m_all = fmaxf(m_all, part_m[bh * chunks + c]);
    float v = 0.0f, l_all = 0.0f;
    for (unsigned c = 0; c < used; ++c) {
        const float mc = part_m[bh * chunks + c];
        const float w = mc == -CUDART_INF_F ? 0.0f : exp2f(mc - m_all);
        v += part_o[(bh * chunks + c) * D + d] * w;
        l_all += part_l[bh * chunks + c] * w;
    }
    rs::ptr<__half>(p.o)[(unsigned long long)b * p.o_stride + (unsigned long long)h * D + d] =
        __float2half_rn(l_all > 0.0f ? v / l_all : 0.0f);
}

struct Shape {
    const char* name;
    unsigned batch, heads_q, heads_kv, head_dim, len;
};

// A green context of at least `sms` SMs (the whole device where that is all of it).
static CUgreenCtx green_of(CUdevice dev, unsigned sms, unsigned* got) {
    CUdevResource all;
    CKD(cuDeviceGetDevResource(dev, &all, CU_DEV_RESOURCE_TYPE_SM));
    CUdevResource use = all;
    if (sms < all.sm.smCount) {
        CUdevResource groups[1], rest;
        unsigned n = 1;
        CKD(cuDevSmResourceSplitByCount(groups, &n, &all, &rest, 0, sms));
        use = groups[0];
    }
    CUdevResourceDesc desc;
    CKD(cuDevResourceGenerateDesc(&desc, &use, 1));
    CUgreenCtx g;
    CKD(cuGreenCtxCreate(&g, desc, dev, CU_GREEN_CTX_DEFAULT_STREAM));
    *got = use.sm.smCount;
    return g;
}

static float half_to_float(__half h) { return __half2float(h); }

// o[b][h] of the reference: softmax over the cache rows (the new row at pos) of q·k·scale, by v.
static std::vector<double> reference(const Shape& s, const std::vector<__half>& qkv, const std::vector<__half>& kc,
                                     const std::vector<__half>& vc, unsigned max_len) {
    const unsigned D = s.head_dim, stride = (s.heads_q + 2 * s.heads_kv) * D, pos = s.len - 1;
    std::vector<double> out((size_t)s.batch * s.heads_q * D);
    for (unsigned b = 0; b < s.batch; ++b)
        for (unsigned h = 0; h < s.heads_q; ++h) {
            const unsigned kh = h / (s.heads_q / s.heads_kv);
            const __half* q = &qkv[(size_t)b * stride + h * D];
            const __half* kn = &qkv[(size_t)b * stride + s.heads_q * D + kh * D];
            const __half* vn = &qkv[(size_t)b * stride + (s.heads_q + s.heads_kv) * D + kh * D];
            const size_t cache = ((size_t)b * s.heads_kv + kh) * max_len * D;
            std::vector<double> sc(s.len);
            double mx = -INFINITY;
            for (unsigned t = 0; t < s.len; ++t) {
                const __half* k = t == pos ? kn : &kc[cache + (size_t)t * D];
                double d = 0;
                for (unsigned e = 0; e < D; ++e) d += (double)half_to_float(q[e]) * half_to_float(k[e]);
                sc[t] = d / std::sqrt((double)D);
                mx = std::max(mx, sc[t]);
            }
            double sum = 0;
            for (unsigned t = 0; t < s.len; ++t) sum += (sc[t] = std::exp(sc[t] - mx));
            for (unsigned e = 0; e < D; ++e) {
                double v = 0;
                for (unsigned t = 0; t < s.len; ++t) v += sc[t] * half_to_float(t == pos ? vn[e] : vc[cache + (size_t)t * D + e]);
                out[((size_t)b * s.heads_q + h) * D + e] = v / sum;
            }
        }
    return out;
}

template <int D, int G>
static void run(const Shape& s, CUdevice dev, const unsigned* sms_list, int n_sms) {
    const unsigned max_len = s.len, stride = (s.heads_q + 2 * s.heads_kv) * D;
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
    auto fill = [&](size_t n) {
        std::vector<__half> v(n);
        for (auto& x : v) x = __float2half(uni(rng));
        return v;
    };
    const size_t cache_n = (size_t)s.batch * s.heads_kv * max_len * D, o_n = (size_t)s.batch * s.heads_q * D;
    const std::vector<__half> qkv = fill((size_t)s.batch * stride), kc = fill(cache_n), vc = fill(cache_n);
    __half *d_qkv, *d_kc, *d_vc, *d_o;
    unsigned* d_pos;
    CK(cudaMalloc(&d_qkv, qkv.size() * 2));
    CK(cudaMalloc(&d_kc, cache_n * 2));
    CK(cudaMalloc(&d_vc, cache_n * 2));
    CK(cudaMalloc(&d_o, o_n * 2));
    CK(cudaMalloc(&d_pos, s.batch * 4));
    CK(cudaMemcpy(d_qkv, qkv.data(), qkv.size() * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_kc, kc.data(), cache_n * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_vc, vc.data(), cache_n * 2, cudaMemcpyHostToDevice));
    const std::vector<unsigned> pos(s.batch, s.len - 1);
    CK(cudaMemcpy(d_pos, pos.data(), s.batch * 4, cudaMemcpyHostToDevice));
    DecodeAttentionParams p{};
    p.q = (unsigned long long)d_qkv;
    p.k = (unsigned long long)(d_qkv + s.heads_q * D);
    p.v = (unsigned long long)(d_qkv + (s.heads_q + s.heads_kv) * D);
    p.k_cache = (unsigned long long)d_kc;
    p.v_cache = (unsigned long long)d_vc;
    p.o = (unsigned long long)d_o;
    p.pos = (unsigned long long)d_pos;
    p.inv_freq = 0;
    p.batch = s.batch;
    p.heads_q = s.heads_q;
    p.heads_kv = s.heads_kv;
    p.head_dim = D;
    p.max_len = max_len;
    p.qkv_stride = stride;
    p.o_stride = s.heads_q * D;
    p.scale = 1.0f / std::sqrt((float)D);

    const unsigned chunks = (max_len + CH - 1) / CH;
    float *part_m, *part_l, *part_o;
    CK(cudaMalloc(&part_m, (size_t)s.batch * s.heads_q * chunks * 4));
    CK(cudaMalloc(&part_l, (size_t)s.batch * s.heads_q * chunks * 4));
    CK(cudaMalloc(&part_o, (size_t)s.batch * s.heads_q * chunks * D * 4));
    // The library kernel's chunk states and counts (zero: each launch leaves them so).
    DecodeAttentionParams pc = p;
    const unsigned lib_chunks = rs::decode_chunks(s.batch, s.heads_q, max_len), lib_units = lib_chunks * s.batch * s.heads_q;
    float* lib_partial;
    unsigned* lib_arrived;
    CK(cudaMalloc(&lib_partial, (size_t)RS_DECODE_MAX_CHUNKS * s.batch * s.heads_q * (D + 2) * 4));
    CK(cudaMalloc(&lib_arrived, (size_t)s.batch * s.heads_q * 4));
    CK(cudaMemset(lib_arrived, 0, (size_t)s.batch * s.heads_q * 4));
    pc.partial = (unsigned long long)lib_partial;
    pc.arrived = (unsigned long long)lib_arrived;
    auto split = [&](cudaStream_t st) {
        split_k<D><<<s.batch * s.heads_q * chunks, RS_DECODE_THREADS, 0, st>>>(p, chunks, part_m, part_l, part_o);
        combine_k<D><<<s.batch * s.heads_q, D, 0, st>>>(p, chunks, part_m, part_l, part_o);
    };

    // Correctness on the whole device: each against the reference, and group against head.
    const std::vector<double> ref = reference(s, qkv, kc, vc, max_len);
    std::vector<__half> o_head(o_n), o_group(o_n);
    head_k<D><<<s.batch * s.heads_q, RS_DECODE_THREADS>>>(p);
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(o_head.data(), d_o, o_n * 2, cudaMemcpyDeviceToHost));
    CK(cudaMemset(d_o, 0, o_n * 2));
    group_k<D, G, 2><<<s.batch * s.heads_kv, RS_DECODE_THREADS>>>(p);
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(o_group.data(), d_o, o_n * 2, cudaMemcpyDeviceToHost));
    std::vector<__half> o_group1(o_n);
    CK(cudaMemset(d_o, 0, o_n * 2));
    group_k<D, G, 1><<<s.batch * s.heads_kv, RS_DECODE_THREADS>>>(p);
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(o_group1.data(), d_o, o_n * 2, cudaMemcpyDeviceToHost));
    std::vector<__half> o_split(o_n);
    CK(cudaMemset(d_o, 0, o_n * 2));
    split(0);
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(o_split.data(), d_o, o_n * 2, cudaMemcpyDeviceToHost));
    std::vector<__half> o_chunked(o_n);
    CK(cudaMemset(d_o, 0, o_n * 2));
    if (lib_chunks == 1)
        head_k<D><<<s.batch * s.heads_q, RS_DECODE_THREADS>>>(p);
    else
        chunked_k<D><<<lib_units, RS_DECODE_THREADS>>>(pc, lib_chunks);
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(o_chunked.data(), d_o, o_n * 2, cudaMemcpyDeviceToHost));
    const unsigned sweep[] = {1, 2, 4, 8, 16};
    double err_sweep = 0;
    size_t differ_c1 = 0;  // the split unit at one chunk against `head`, bit for bit
    for (unsigned ch : sweep) {
        CK(cudaMemset(d_o, 0, o_n * 2));
        chunked_k<D><<<ch * s.batch * s.heads_q, RS_DECODE_THREADS>>>(pc, ch);
        CK(cudaDeviceSynchronize());
        std::vector<__half> o(o_n);
        CK(cudaMemcpy(o.data(), d_o, o_n * 2, cudaMemcpyDeviceToHost));
        for (size_t i = 0; i < o_n; ++i) {
            err_sweep = std::max(err_sweep, std::fabs(half_to_float(o[i]) - ref[i]));
            differ_c1 += ch == 1 && memcmp(&o[i], &o_head[i], 2) != 0;
        }
    }
    size_t differ_3 = 0;  // three blocks an SM against `head`, bit for bit, at two grids
    for (unsigned grid : {s.batch * s.heads_q, 7u}) {
        CK(cudaMemset(d_o, 0, o_n * 2));
        head3_k<D><<<grid, RS_DECODE_THREADS>>>(p);
        CK(cudaDeviceSynchronize());
        std::vector<__half> o(o_n);
        CK(cudaMemcpy(o.data(), d_o, o_n * 2, cudaMemcpyDeviceToHost));
        for (size_t i = 0; i < o_n; ++i) differ_3 += memcmp(&o[i], &o_head[i], 2) != 0;
    }
    printf("three blocks an SM: %zu outputs differ from head (two grids)%s\n", differ_3, differ_3 == 0 ? "" : "  ** FAILED **");
    printf("chunk sweep (1 … 16 chunks): max |err| %.2e, %zu outputs of one chunk differ from head%s\n", err_sweep,
           differ_c1, err_sweep < 2e-2 && differ_c1 == 0 ? "" : "  ** FAILED **");
    // The variants against the reference.
    double err_v = 0;
    auto check_variant = [&](auto launch) {
        CK(cudaMemset(d_o, 0, o_n * 2));
        launch();
        CK(cudaDeviceSynchronize());
        std::vector<__half> o(o_n);
        CK(cudaMemcpy(o.data(), d_o, o_n * 2, cudaMemcpyDeviceToHost));
        for (size_t i = 0; i < o_n; ++i) err_v = std::max(err_v, std::fabs(half_to_float(o[i]) - ref[i]));
    };
    check_variant([&] { head_variant<D, 2, 8>(p, 0); });
    check_variant([&] { head_variant<D, 2, 4>(p, 0); });
    check_variant([&] { head_variant<D, 4, 8>(p, 0); });
    check_variant([&] { head_variant<D, 8, 8>(p, 0); });
    printf("variants (head's unit with W warps, U rows a state at a time): max |err| %.2e%s\n", err_v,
           err_v < 2e-2 ? "" : "  ** FAILED **");
    double err_h = 0, err_g = 0, err_s = 0, err_c = 0;
    size_t differ = 0, differ_c = 0;
    for (size_t i = 0; i < o_n; ++i) {
        err_c = std::max(err_c, std::fabs(half_to_float(o_chunked[i]) - ref[i]));
        differ_c += memcmp(&o_head[i], &o_chunked[i], 2) != 0;
        err_h = std::max(err_h, std::fabs(half_to_float(o_head[i]) - ref[i]));
        err_g = std::max({err_g, std::fabs(half_to_float(o_group[i]) - ref[i]), std::fabs(half_to_float(o_group1[i]) - ref[i])});
        err_s = std::max(err_s, std::fabs(half_to_float(o_split[i]) - ref[i]));
        differ += memcmp(&o_head[i], &o_group[i], 2) != 0 || memcmp(&o_head[i], &o_group1[i], 2) != 0;
    }
    // One chunk: the library's kernel must give head's bits.
    const bool ok = err_h < 2e-2 && err_g < 2e-2 && err_s < 2e-2 && err_c < 2e-2 && (lib_chunks > 1 || differ_c == 0);
    printf("\n%s (batch %u, %u query heads, %u kv heads, head_dim %u, %u cached tokens, %u chunks): max |err| head %.2e, "
           "group %.2e, split %.2e, chunks %.2e; %zu of %zu outputs differ between head and group, %zu between head and "
           "chunks%s\n",
           s.name, s.batch, s.heads_q, s.heads_kv, D, s.len, lib_chunks, err_h, err_g, err_s, err_c, differ, o_n, differ_c,
           ok ? "" : "  ** FAILED **");
    const double kv_bytes = 2.0 * s.batch * s.heads_kv * s.len * D * 2;
    printf("%8s %10s %10s %10s %10s %10s %10s %10s %10s %11s\n", "SMs", "head µs", "group µs", "group1 µs", "split µs",
           "head GB/s", "group GB/s", "split GB/s", "chunks µs", "chunks GB/s");

    CUcontext primary;
    CKD(cuCtxGetCurrent(&primary));
    for (int i = 0; i < n_sms; ++i) {
        unsigned got = 0;
        CUgreenCtx g = green_of(dev, sms_list[i], &got);
        CUcontext ctx;
        CKD(cuCtxFromGreenCtx(&ctx, g));
        CKD(cuCtxSetCurrent(ctx));
        cudaStream_t st;
        CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
        cudaEvent_t a, z;
        CK(cudaEventCreate(&a));
        CK(cudaEventCreate(&z));
        auto time_us = [&](auto launch) {
            for (int w = 0; w < 10; ++w) launch();
            CK(cudaEventRecord(a, st));
            const int n = 200;
            for (int r = 0; r < n; ++r) launch();
            CK(cudaEventRecord(z, st));
            CK(cudaEventSynchronize(z));
            float ms = 0;
            CK(cudaEventElapsedTime(&ms, a, z));
            return ms * 1e3 / n;
        };
        const double th = time_us([&] { head_k<D><<<s.batch * s.heads_q, RS_DECODE_THREADS, 0, st>>>(p); });
        const double tg = time_us([&] { group_k<D, G, 2><<<s.batch * s.heads_kv, RS_DECODE_THREADS, 0, st>>>(p); });
        const double t1 = time_us([&] { group_k<D, G, 1><<<s.batch * s.heads_kv, RS_DECODE_THREADS, 0, st>>>(p); });
        const double ts = time_us([&] { split(st); });
        const double tc =
            lib_chunks == 1 ? th : time_us([&] { chunked_k<D><<<lib_units, RS_DECODE_THREADS, 0, st>>>(pc, lib_chunks); });
        double tsw[5];
        for (int k = 0; k < 5; ++k)
            tsw[k] = time_us([&] { chunked_k<D><<<sweep[k] * s.batch * s.heads_q, RS_DECODE_THREADS, 0, st>>>(pc, sweep[k]); });
        const double v28 = time_us([&] { head_variant<D, 2, 8>(p, st); });
        const double v24 = time_us([&] { head_variant<D, 2, 4>(p, st); });
        const double v48 = time_us([&] { head_variant<D, 4, 8>(p, st); });
        const double v88 = time_us([&] { head_variant<D, 8, 8>(p, st); });
        const double t3 = time_us([&] { head3_k<D><<<s.batch * s.heads_q, RS_DECODE_THREADS, 0, st>>>(p); });
        CK(cudaGetLastError());
        printf("%8u %10.2f %10.2f %10.2f %10.2f %10.0f %10.0f %10.0f %10.2f %11.0f | w2u8 %7.2f w2u4 %7.2f w4u8 %7.2f "
               "w8u8 %7.2f | c1 %7.2f c2 %7.2f c4 %7.2f c8 %7.2f c16 %7.2f | head3 %7.2f\n",
               got, th, tg, t1, ts, kv_bytes / th / 1e3, kv_bytes / tg / 1e3, kv_bytes / ts / 1e3, tc, kv_bytes / tc / 1e3,
               v28, v24, v48, v88, tsw[0], tsw[1], tsw[2], tsw[3], tsw[4], t3);
        CK(cudaEventDestroy(a));
        CK(cudaEventDestroy(z));
        CK(cudaStreamDestroy(st));
        CKD(cuCtxSetCurrent(primary));
        CKD(cuGreenCtxDestroy(g));
    }
    CK(cudaFree(d_qkv));
    CK(cudaFree(d_kc));
    CK(cudaFree(d_vc));
    CK(cudaFree(d_o));
    CK(cudaFree(d_pos));
    CK(cudaFree(part_m));
    CK(cudaFree(part_l));
    CK(cudaFree(part_o));
    CK(cudaFree(lib_partial));
    CK(cudaFree(lib_arrived));
}

int main() {
    CK(cudaFree(0));  // the primary context, current, before any green one
    CUdevice dev;
    CKD(cuCtxGetDevice(&dev));
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("%s, %d SMs. Back-to-back launches (no PDL), µs each; GB/s of the K and V rows once each.\n", prop.name,
           prop.multiProcessorCount);
    const unsigned sms[] = {16, 32, 48, 64, (unsigned)prop.multiProcessorCount};
    const int n = sizeof(sms) / sizeof(sms[0]);
    run<64, 4>({"llama-3.2-1b b8", 8, 32, 8, 64, 160}, dev, sms, n);
    run<128, 4>({"mistral-7b b8", 8, 32, 8, 128, 160}, dev, sms, n);
    run<64, 1>({"gpt2-medium b8", 8, 16, 16, 64, 160}, dev, sms, n);
    run<64, 4>({"llama-3.2-1b b1", 1, 32, 8, 64, 160}, dev, sms, n);
    run<128, 4>({"mistral-7b b8, long cache", 8, 32, 8, 128, 2048}, dev, sms, n);
    run<64, 4>({"llama-3.2-1b b1, long cache", 1, 32, 8, 64, 4096}, dev, sms, n);
    return 0;
}
