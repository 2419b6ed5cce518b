// rope.cu — rotary position embedding (Llama's rotate-half form), in place.
//
// Computes:   see RopeParams in abi.h; angles pos·inv_freq[i] in FP32 with full-range sincosf,
//             then FP16 arithmetic (rounded cos, sin, products and sums) as frameworks do.
// Work unit:  RS_ROPE_UNIT of one token's (head, i < head_dim/2) pairs, q's heads then k's;
//             each pair is read and written by one thread.
// Shapes:     even head_dim; any batch, tokens, heads.
// Reference:  kernels/reference.rs::rope.
#include "common.cuh"

RS_KERNEL_PAIR(__launch_bounds__(RS_ROPE_THREADS), rope_f16, RopeParams) {
    rs::pdl_sync();
    using rs::u64;
    const unsigned half_dim = p.head_dim / 2, pairs = (p.heads_q + p.heads_kv) * half_dim;
    const unsigned chunks = (pairs + RS_ROPE_UNIT - 1) / RS_ROPE_UNIT;
    const float* inv_freq = rs::ptr<const float>(p.inv_freq);
    RS_FOR_EACH_UNIT_BY(u, (u64)p.batch * p.tokens * chunks, t, 4) {
        const u64 tok = u / chunks;
        const unsigned b = tok / p.tokens, t = tok % p.tokens, c0 = (unsigned)(u % chunks) * RS_ROPE_UNIT;
        const float pos = (float)((p.start ? rs::ptr<const unsigned>(p.start)[b] : 0u) + t);
        for (unsigned c = c0 + threadIdx.x; c < pairs && c < c0 + RS_ROPE_UNIT; c += blockDim.x) {
            const unsigned hh = c / half_dim, i = c % half_dim;
            __half* x = hh < p.heads_q ? rs::ptr<__half>(p.q) + tok * p.q_stride + (u64)hh * p.head_dim
                                       : rs::ptr<__half>(p.k) + tok * p.k_stride + (u64)(hh - p.heads_q) * p.head_dim;
            rs::rope_pair(__half2float(x[i]), __half2float(x[i + half_dim]), pos * inv_freq[i], x[i], x[i + half_dim]);
        }
    }
}
