// decoder.cu — the transformer layers of one decode step in one persistent kernel (GPT-2 style).
//
// Computes:   see DecoderParams in abi.h: per layer LN1 → QKV GEMM → decode attention (with the
//             KV append) → attention-out GEMM + residual → LN2 → MLP-up GEMM + GELU → MLP-down
//             GEMM + residual, on ≤ 8 rows of one token, x updated in place.
// Work unit:  one ticket of the step's schedule. Per layer, in this order (5 phases): the QKV
//             GEMM's tiles of output columns, the attention units (sequence, query head), then the
//             tiles of the attention-out, MLP-up and MLP-down GEMMs. A tile has as many columns
//             (a multiple of 8, at most RS_DEC_MAX_COLS) as fit RS_DEC_STAGE_BYTES of weights.
// Schedule:   a block holds one ticket at a time, taken in increasing order from a counter
//             (sync[0]) when it has finished the last one. On taking a GEMM tile it starts
//             copying the tile's weight rows (contiguous), bias and norm vectors into shared
//             memory with cp.async (weights are never written, so this runs ahead of the data),
//             then waits until every unit of the phase it reads has finished: a per-(layer,
//             phase) counter of finished units, released and acquired at GPU scope. A unit
//             waits only for lower tickets, all taken by running blocks that finish them, so
//             any grid ≥ 1 finishes; and a unit computes the same values whichever block runs
//             it (deterministic). Holding one ticket keeps one phase's units on distinct blocks
//             (holding two, a block ran two units of a phase in turn). The last block to leave
//             sets the counters back to zero for the next launch. With DecoderParams.trace,
//             thread 0 records when each unit was taken up, had its inputs and was done.
// Claims:     not read (units wait for earlier ones, taken by blocks that must finish them): a
//             claimed SM is given back when the step ends (~0.1–1 ms for the GPT-2 family).
// GEMM tile:  warp w loads input row w (one L2 round trip, with the residual) and normalises it
//             in registers for LN1/LN2 (the statistics of rownorm.cuh, in its order); then
//             mma.sync m16n8k16 with 16 weight rows as the first operand and the ≤ 8 input rows
//             as the second; the 8 warps take
//             32-wide K slices in turn and their sums are added in warp order. Epilogue as
//             rs::gemm_store: bias, GELU, FP16 rounding before the residual add.
// Shapes:     batch 1..8; hidden and ffn multiples of 64, ≤ RS_DEC_STAGE_BYTES / 16; head_dim 64.
// Reference:  kernels/reference.rs::decoder_layers.
#include "attention_decode.cuh"
#include "common.cuh"
#include "rownorm.cuh"

namespace {

using rs::globaltimer;
using rs::u64;

constexpr int WARPS = RS_DEC_THREADS / 32;
constexpr int B = RS_DEC_MAX_BATCH;
constexpr unsigned MAX_K = RS_DEC_STAGE_BYTES / 16;  // a tile of 8 columns fills a stage
// Padding of each input row, in halves: with K a multiple of 64, rows then start 64 bytes
// apart modulo the banks' 128, so loads of two rows at one column do not conflict.
constexpr unsigned A_PAD = 32;
constexpr int TILES16 = RS_DEC_MAX_COLS / 16;
// A stage: the tile's weight rows, then its bias (RS_DEC_MAX_COLS halves) and the LayerNorm's
// gamma and beta (MAX_K halves each), all copied when the ticket is taken.
constexpr unsigned VEC_BIAS = RS_DEC_STAGE_BYTES / 2, VEC_GAMMA = VEC_BIAS + RS_DEC_MAX_COLS, VEC_BETA = VEC_GAMMA + MAX_K;
constexpr unsigned STAGE_HALVES = VEC_BETA + MAX_K;
static_assert(RS_DEC_THREADS == RS_DECODE_THREADS, "attention units with attention_decode_d64's block, so its bits");

// Columns of a weight tile at depth k: as many multiples of 8 as fit one stage.
__device__ __forceinline__ unsigned tile_cols(unsigned k) {
    return min((unsigned)RS_DEC_MAX_COLS, RS_DEC_STAGE_BYTES / (2u * k) / 8u * 8u);
}

__device__ __forceinline__ unsigned tiles(unsigned n, unsigned k) { return (n + tile_cols(k) - 1) / tile_cols(k); }

// One GEMM of a layer: c = act(norm(a)·wᵀ + bias) (+ c when residual); a's rows are k apart,
// c's rows n apart.
struct Gemm {
    const __half *w, *bias, *a, *gamma, *beta;
    __half* c;
    unsigned n, k, act;
    bool residual;
};

// A ticket's place in the schedule.
struct Unit {
    unsigned layer, phase, index;
};

struct Schedule {
    unsigned units[RS_DEC_PHASES];
    unsigned per_layer, total;

    __device__ explicit Schedule(const DecoderParams& p) {
        units[0] = tiles((p.heads + 2 * p.heads_kv) * 64, p.hidden);
        units[1] = p.batch * p.heads;
        units[2] = tiles(p.hidden, p.hidden);
        units[3] = tiles(p.ffn_dim, p.hidden);
        units[4] = tiles(p.hidden, p.ffn_dim);
        per_layer = 0;
        for (int i = 0; i < RS_DEC_PHASES; ++i) per_layer += units[i];
        total = per_layer * p.n_layers;
    }

    __device__ Unit at(unsigned t) const {
        Unit u{t / per_layer, 0, t % per_layer};
        while (u.index >= units[u.phase]) u.index -= units[u.phase++];
        return u;
    }
};

__device__ __forceinline__ Gemm gemm_of(const DecoderParams& p, const DecoderLayerWeights* layers, const Unit& u) {
    const DecoderLayerWeights& l = layers[u.layer];
    const unsigned qkv_n = (p.heads + 2 * p.heads_kv) * 64;
    const __half* x = rs::ptr<const __half>(p.x);
    __half* xw = rs::ptr<__half>(p.x);
    switch (u.phase) {
        case 0:
            return {rs::ptr<const __half>(l.qkv), rs::ptr<const __half>(l.qkv_bias), x,
                    rs::ptr<const __half>(l.norm1_gamma), rs::ptr<const __half>(l.norm1_beta),
                    rs::ptr<__half>(p.qkv), qkv_n, p.hidden, RS_ACT_NONE, false};
        case 2:
            return {rs::ptr<const __half>(l.out), rs::ptr<const __half>(l.out_bias), rs::ptr<const __half>(p.attn),
                    nullptr, nullptr, xw, p.hidden, p.hidden, RS_ACT_NONE, true};
        case 3:
            return {rs::ptr<const __half>(l.up), rs::ptr<const __half>(l.up_bias), x,
                    rs::ptr<const __half>(l.norm2_gamma), rs::ptr<const __half>(l.norm2_beta),
                    rs::ptr<__half>(p.ffn), p.ffn_dim, p.hidden, RS_ACT_GELU_TANH, false};
        default:
            return {rs::ptr<const __half>(l.down), rs::ptr<const __half>(l.down_bias), rs::ptr<const __half>(p.ffn),
                    nullptr, nullptr, xw, p.hidden, p.ffn_dim, RS_ACT_NONE, true};
    }
}

// 16-byte chunk `ch` of weight row r in a stage: rows are dense, and odd rows swap the two
// halves of each 128-byte line, so the two rows an 8-lane phase reads hit different banks.
__device__ __forceinline__ unsigned swizzle(unsigned r, unsigned ch) { return ch ^ ((r & 1u) << 2); }

// Starts copying tile `index`'s weight rows, bias and norm vectors into `stage` (every
// thread; the caller commits them as one cp.async group).
__device__ __forceinline__ void fill(const Gemm& g, unsigned index, __half* stage) {
    const unsigned cols = tile_cols(g.k), n0 = index * cols, rows = min(cols, g.n - n0);
    const unsigned per_row = g.k / 8, chunks = rows * per_row;
    const __half* src = g.w + (u64)n0 * g.k;
    // Chunk c = r · per_row + ch; (r, ch) advanced without a division per chunk.
    unsigned r = threadIdx.x / per_row, ch = threadIdx.x - r * per_row;
    for (unsigned c = threadIdx.x; c < chunks; c += RS_DEC_THREADS) {
        rs::cp_async16(stage + (u64)r * g.k + swizzle(r, ch) * 8, src + (u64)c * 8, true);
        for (ch += RS_DEC_THREADS; ch >= per_row; ch -= per_row) ++r;
    }
    // rows is a multiple of 8 (n and the tile's columns are), K of 64.
    const unsigned tid = threadIdx.x;
    if (g.bias && tid < rows / 8) rs::cp_async16(stage + VEC_BIAS + tid * 8, g.bias + n0 + tid * 8, true);
    if (g.gamma)
        for (unsigned c = tid; c < 2 * per_row; c += RS_DEC_THREADS) {
            const bool b = c >= per_row;
            const unsigned k = (b ? c - per_row : c) * 8;
            if (!b || g.beta) rs::cp_async16(stage + (b ? VEC_BETA : VEC_GAMMA) + k, (b ? g.beta : g.gamma) + k, true);
        }
}

__device__ __forceinline__ uint4 ld_cg16(const void* p) {
    uint4 v;
    asm volatile("ld.global.cg.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
    return v;
}

// Waits until *c ≥ need, then orders this thread's later reads after the writes that the
// counter's increments released (GPU scope).
__device__ __forceinline__ void wait_for(const unsigned* c, unsigned need) {
    unsigned v;
    do {
        asm volatile("ld.relaxed.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(c) : "memory");
    } while (v < need);
    asm volatile("fence.acq_rel.gpu;" ::: "memory");
}

// *c += 1, ordered after this thread's earlier writes and those it has observed (GPU scope).
__device__ __forceinline__ void release_add(unsigned* c) {
    asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(c) : "memory");
}

// The block's shared memory after the stage.
struct Shared {
    DecoderLayerWeights* layers;  // [n_layers], copied from p.layers
    __half* a;      // [B][K + A_PAD] input rows
    float* red;     // [WARPS][RS_DEC_MAX_COLS][B] per-warp sums
    unsigned* ticket;  // the held ticket
};

// One GEMM tile; its weights and vectors are in `stage` (copies complete and visible).
__device__ __forceinline__ void gemm_tile(const Gemm& g, unsigned index, const __half* stage, const Shared& sh,
                                          unsigned batch, float eps) {
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, gi = lane >> 2, q = lane & 3;
    const unsigned cols = tile_cols(g.k), n0 = index * cols, rows = min(cols, g.n - n0);
    const unsigned lda = g.k + A_PAD, per_row = g.k / 8;

    // The epilogue's residual values are read with the input rows (one round trip).
    constexpr int EPI = RS_DEC_MAX_COLS * B / RS_DEC_THREADS;
    float res[EPI];
#pragma unroll
    for (int e = 0; e < EPI; ++e) {
        const unsigned i = tid + e * RS_DEC_THREADS, col = i / B, row = i % B;
        const bool ok = col < rows && row < batch;
        res[e] = ok && g.residual ? __half2float(__ldcg(g.c + (u64)row * g.n + n0 + col)) : 0.0f;
    }
    // Warp w loads input row w (lane: chunks lane, lane + 32, …), normalises it in registers
    // (rownorm.cuh's held_stats: row_stats' order) and stores it.
    constexpr int HELD = MAX_K / 8 / 32;
    if (warp < (int)batch) {
        const __half* row = g.a + (u64)warp * g.k;
        uint4 av[HELD];
#pragma unroll
        for (int i = 0; i < HELD; ++i) {
            const unsigned c = lane + 32 * i;
            av[i] = c < per_row ? ld_cg16(row + c * 8) : make_uint4(0, 0, 0, 0);
        }
        if (g.gamma) {
            const float2 st = rs::held_stats(av, g.k, RS_NORM_LAYER, eps);
            const uint4 zero = make_uint4(0, 0, 0, 0);
#pragma unroll
            for (int i = 0; i < HELD; ++i) {
                const unsigned c = lane + 32 * i;
                if (c >= per_row) break;
                const uint4 ga = *reinterpret_cast<const uint4*>(stage + VEC_GAMMA + c * 8);
                const uint4 be = g.beta ? *reinterpret_cast<const uint4*>(stage + VEC_BETA + c * 8) : zero;
                av[i] = rs::normalize8(av[i], st, ga, be, RS_NORM_LAYER);
            }
        }
#pragma unroll
        for (int i = 0; i < HELD; ++i) {
            const unsigned c = lane + 32 * i;
            if (c < per_row) *reinterpret_cast<uint4*>(sh.a + warp * lda + c * 8) = av[i];
        }
    }
    __syncthreads();

    // Lane (gi, q) holds weight rows gi and gi + 8 of each 16-row tile and input row gi, at
    // K offsets 8q .. 8q + 7 of each 32-wide slice (the same K order for both operands).
    float acc[TILES16][4] = {};
    const int nt = (rows + 15) / 16;
    const unsigned slices = g.k / 32;
    for (unsigned s = warp; s < slices; s += WARPS) {
        const unsigned ch = s * 4 + q;
        const uint4 x = gi < (int)batch ? *reinterpret_cast<const uint4*>(sh.a + gi * lda + ch * 8)
                                        : make_uint4(0, 0, 0, 0);
#pragma unroll
        for (int j = 0; j < TILES16; ++j) {
            if (j >= nt) break;
            const unsigned lo = j * 16 + gi, hi = lo + 8;
            const uint4 wl = lo < rows ? *reinterpret_cast<const uint4*>(stage + lo * g.k + swizzle(lo, ch) * 8)
                                       : make_uint4(0, 0, 0, 0);
            const uint4 wh = hi < rows ? *reinterpret_cast<const uint4*>(stage + hi * g.k + swizzle(hi, ch) * 8)
                                       : make_uint4(0, 0, 0, 0);
            const unsigned f0[4] = {wl.x, wh.x, wl.y, wh.y};
            const unsigned f1[4] = {wl.z, wh.z, wl.w, wh.w};
            rs::mma_16816(acc[j], f0, x.x, x.y);
            rs::mma_16816(acc[j], f1, x.z, x.w);
        }
    }
    // acc[j]: weight rows (output columns) j·16 + gi and + 8, input rows 2q and 2q + 1.
    float* mine = sh.red + warp * RS_DEC_MAX_COLS * B;
#pragma unroll
    for (int j = 0; j < TILES16; ++j) {
        if (j >= nt) break;
        const unsigned col = j * 16 + gi;
        mine[col * B + 2 * q] = acc[j][0];
        mine[col * B + 2 * q + 1] = acc[j][1];
        mine[(col + 8) * B + 2 * q] = acc[j][2];
        mine[(col + 8) * B + 2 * q + 1] = acc[j][3];
    }
    __syncthreads();
#pragma unroll
    for (int e = 0; e < EPI; ++e) {
        const unsigned i = tid + e * RS_DEC_THREADS, col = i / B, row = i % B;
        if (col >= rows || row >= batch) continue;
        float v = 0.0f;
#pragma unroll
        for (int w = 0; w < WARPS; ++w) v += sh.red[(w * RS_DEC_MAX_COLS + col) * B + row];
        if (g.bias) v += __half2float(stage[VEC_BIAS + col]);
        v = rs::gelu(v, g.act);
        if (g.residual) v = rs::round_half(v) + res[e];
        g.c[(u64)row * g.n + n0 + col] = __float2half_rn(v);
    }
}

// Layer l's decode attention as DecodeAttentionParams (GPT-2 has no RoPE: inv_freq 0).
__device__ __forceinline__ DecodeAttentionParams attention_of(const DecoderParams& p, const DecoderLayerWeights& l) {
    const unsigned qw = p.heads * 64, kw = p.heads_kv * 64;
    return {p.qkv,     p.qkv + 2ull * qw, p.qkv + 2ull * (qw + kw),
            l.k_cache, l.v_cache,         p.attn,
            p.pos,     0,                 p.batch,
            p.heads,   p.heads_kv,        64,
            p.max_len, qw + 2 * kw,       qw,
            p.scale};
}

// Starts the weight copies of unit u into `stage` as one group of copies; for an attention
// unit, asks L2 for its cached rows instead (written by earlier steps).
__device__ __forceinline__ void prefetch(const DecoderParams& p, const Shared& sh, const Unit& u, __half* stage) {
    if (u.phase != 1)
        fill(gemm_of(p, sh.layers, u), u.index, stage);
    else if (threadIdx.x == 0)
        rs::decode_attention_prefetch_unit<64>(attention_of(p, sh.layers[u.layer]), u.index, 1);
    rs::cp_async_commit();
}

__device__ __forceinline__ void run(const DecoderParams& p, unsigned char* smem) {
    const int tid = threadIdx.x;
    Shared sh;
    __half* stage = reinterpret_cast<__half*>(smem);
    unsigned char* rest = smem + STAGE_HALVES * 2;
    sh.a = reinterpret_cast<__half*>(rest);
    rest += B * (MAX_K + A_PAD) * 2;
    sh.red = reinterpret_cast<float*>(rest);
    rest += WARPS * RS_DEC_MAX_COLS * B * 4;
    sh.ticket = reinterpret_cast<unsigned*>(rest);
    rest += 8;  // (the layer table's words stay 8-byte aligned)
    sh.layers = reinterpret_cast<DecoderLayerWeights*>(rest);
    {
        const u64* from = rs::ptr<const u64>(p.layers);
        u64* to = reinterpret_cast<u64*>(sh.layers);
        constexpr unsigned WORDS = sizeof(DecoderLayerWeights) / 8;
        for (unsigned i = tid; i < p.n_layers * WORDS; i += RS_DEC_THREADS) to[i] = from[i];
    }

    unsigned* next = rs::ptr<unsigned>(p.sync);
    unsigned* left = next + 1;
    unsigned* done = next + 2;
    const Schedule sc(p);

    if (tid == 0) sh.ticket[0] = atomicAdd(next, 1u);
    __syncthreads();
    for (;;) {
        const unsigned t = sh.ticket[0];
        if (t >= sc.total) break;
        const Unit u = sc.at(t);
        u64* trace = p.trace ? rs::ptr<u64>(p.trace) + 4ull * t : nullptr;
        if (tid == 0 && trace) trace[0] = globaltimer();
        // The weights are copied while the unit waits for its inputs.
        prefetch(p, sh, u, stage);
        if (tid == 0) {
            // The phase this unit reads: the previous one, or the last of the previous layer.
            if (u.phase > 0 || u.layer > 0) {
                const unsigned* c = done + (u.phase > 0 ? u.layer * RS_DEC_PHASES + u.phase - 1
                                                        : (u.layer - 1) * RS_DEC_PHASES + RS_DEC_PHASES - 1);
                const unsigned need = sc.units[u.phase > 0 ? u.phase - 1 : RS_DEC_PHASES - 1];
                wait_for(c, need);
            }
            if (trace) trace[1] = globaltimer();
        }
        rs::cp_async_wait<0>();
        __syncthreads();
        if (u.phase == 1) {
            rs::decode_attention_unit<64, WARPS, RS_DECODE_U>(attention_of(p, sh.layers[u.layer]), u.index);
        } else {
            gemm_tile(gemm_of(p, sh.layers, u), u.index, stage, sh, p.batch, p.eps);
        }
        __syncthreads();  // outputs written, stage read
        if (tid == 0) {
            // The next ticket is asked for before the release, so the two round trips overlap.
            const unsigned t_next = atomicAdd(next, 1u);
            release_add(done + u.layer * RS_DEC_PHASES + u.phase);
            sh.ticket[0] = t_next;
            if (trace) {
                trace[2] = globaltimer();
                trace[3] = (u64)rs::smid() << 32 | blockIdx.x;
            }
        }
        __syncthreads();
    }
    // Every thread left together, with no copies in flight (each unit waited for its own).
    if (tid == 0) {
        __threadfence();
        if (atomicAdd(left, 1u) == gridDim.x - 1) {
            // Every block has left the loop: nothing reads the counters any more.
            for (unsigned i = 0; i < 2 + RS_DEC_PHASES * p.n_layers; ++i) next[i] = 0;
            __threadfence();
        }
    }
}

}  // namespace

extern __shared__ __align__(128) unsigned char rs_dec_smem[];

RS_KERNEL void __launch_bounds__(RS_DEC_THREADS, 1) decoder_layers_d64(const __grid_constant__ DecoderParams p, RS_TICKET t) {
    rs::pdl_sync();
    run(p, rs_dec_smem);
}
