// embedding.cu — token (+ position, + token-type) embedding lookup.
//
// Computes:   see EmbeddingParams in abi.h; the sum in FP32, rounded once.
// Work unit:  one token. An id ≥ vocab or a position ≥ max_pos fills the row with NaN, so
//             a bad input cannot pass unnoticed (nothing is read out of bounds).
// Shapes:     any hidden, vocab, batch, tokens; packed token rows (a tied LM head's packed
//             weights) with hidden as pack_tiles_f16 takes K (abi.h, PackParams). Rows are
//             read in 16-byte pieces where hidden % 8 == 0 and tok, pos, type and out are
//             16-byte aligned, a column at a time otherwise (the same bits).
// Reference:  kernels/reference.rs::embedding.
#include <math_constants.h>

#include "common.cuh"

RS_KERNEL_PAIR(__launch_bounds__(RS_EMBED_THREADS), embedding_f16, EmbeddingParams) {
    rs::pdl_sync();
    using rs::u64;
    const __half* tok = rs::ptr<const __half>(p.tok);
    const __half* pos_table = p.pos ? rs::ptr<const __half>(p.pos) : nullptr;
    const __half* type = p.type ? rs::ptr<const __half>(p.type) : nullptr;
    __half* out = rs::ptr<__half>(p.out);
    // 16-byte pieces of 8 columns where every row allows them (a packed row's 8 columns from
    // a multiple of 8 are one swizzled piece): a thread's loads of a row are issued together,
    // one round trip for Llama's 2,048 columns where a column at a time took 16.
    const bool pieces = p.hidden % 8 == 0 && ((p.tok | p.pos | p.type | p.out) & 15) == 0;
    RS_FOR_EACH_UNIT_BY(u, (u64)p.batch * p.tokens, t, 4) {
        const unsigned b = u / p.tokens, t = u % p.tokens;
        const unsigned id = rs::ptr<const unsigned>(p.ids)[u];
        const unsigned pos = (p.start ? rs::ptr<const unsigned>(p.start)[b] : 0u) + t;
        const bool bad = id >= p.vocab || (pos_table && pos >= p.max_pos);
        auto tok_at = [&](unsigned c) { return p.tok_packed ? rs::packed_index(id, c, p.hidden) : (u64)id * p.hidden + c; };
        if (!pieces) {
            for (unsigned c = threadIdx.x; c < p.hidden; c += blockDim.x) {
                float v = CUDART_NAN_F;
                if (!bad) {
                    v = __half2float(tok[tok_at(c)]);
                    if (pos_table) v += __half2float(pos_table[(u64)pos * p.hidden + c]);
                    if (type) v += __half2float(type[c]);
                }
                out[u * p.hidden + c] = __float2half_rn(v);
            }
            continue;
        }
        // V pieces a thread in flight: every load of the group, then the sums and stores.
        constexpr unsigned V = 4;
        const unsigned n = p.hidden / 8;
        for (unsigned i0 = threadIdx.x; i0 < n; i0 += V * blockDim.x) {
            uint4 w[V], q[V], y[V];
#pragma unroll
            for (unsigned j = 0; j < V; ++j) {
                const unsigned c = (i0 + j * blockDim.x) * 8;
                const bool in = c < p.hidden && !bad;
                const uint4 zero = make_uint4(0, 0, 0, 0);
                w[j] = in ? *reinterpret_cast<const uint4*>(tok + tok_at(c)) : zero;
                q[j] = in && pos_table ? *reinterpret_cast<const uint4*>(pos_table + (u64)pos * p.hidden + c) : zero;
                y[j] = in && type ? *reinterpret_cast<const uint4*>(type + c) : zero;
            }
#pragma unroll
            for (unsigned j = 0; j < V; ++j) {
                const unsigned c = (i0 + j * blockDim.x) * 8;
                if (c >= p.hidden) break;
                float a[8], e[8], f[8];
                rs::unpack8(w[j], a);
                rs::unpack8(q[j], e);
                rs::unpack8(y[j], f);
                unsigned packed[4];
#pragma unroll
                for (int k = 0; k < 4; ++k) {
                    float v[2];
#pragma unroll
                    for (int h = 0; h < 2; ++h) {
                        // The scalar path's sum, term by term: the same bits.
                        const int i = 2 * k + h;
                        v[h] = a[i];
                        if (pos_table) v[h] += e[i];
                        if (type) v[h] += f[i];
                        if (bad) v[h] = CUDART_NAN_F;
                    }
                    packed[k] = rs::pack_half2(v[0], v[1]);
                }
                *reinterpret_cast<uint4*>(out + u * p.hidden + c) = make_uint4(packed[0], packed[1], packed[2], packed[3]);
            }
        }
    }
}
