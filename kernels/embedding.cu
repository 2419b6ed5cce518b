// embedding.cu — token (+ position, + token-type) embedding lookup.
//
// Computes:   see EmbeddingParams in abi.h; the sum in FP32, rounded once.
// Work unit:  one token. An id ≥ vocab or a position ≥ max_pos fills the row with NaN, so
//             a bad input cannot pass unnoticed (nothing is read out of bounds).
// Shapes:     any hidden, vocab, batch, tokens; packed token rows (a tied LM head's packed
//             weights) with hidden as pack_tiles_f16 takes K (abi.h, PackParams).
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
    RS_FOR_EACH_UNIT_BY(u, (u64)p.batch * p.tokens, t, 4) {
        const unsigned b = u / p.tokens, t = u % p.tokens;
        const unsigned id = rs::ptr<const unsigned>(p.ids)[u];
        const unsigned pos = (p.start ? rs::ptr<const unsigned>(p.start)[b] : 0u) + t;
        const bool bad = id >= p.vocab || (pos_table && pos >= p.max_pos);
        for (unsigned c = threadIdx.x; c < p.hidden; c += blockDim.x) {
            float v = CUDART_NAN_F;
            if (!bad) {
                v = __half2float(tok[p.tok_packed ? rs::packed_index(id, c, p.hidden) : (u64)id * p.hidden + c]);
                if (pos_table) v += __half2float(pos_table[(u64)pos * p.hidden + c]);
                if (type) v += __half2float(type[c]);
            }
            out[u * p.hidden + c] = __float2half_rn(v);
        }
    }
}
