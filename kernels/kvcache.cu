// kvcache.cu — appends new keys and values to a KV cache.
//
// Computes:   see KvAppendParams in abi.h: row b·tokens + t of k and v (head h at column
//             h·head_dim) goes to cache[b][h][start[b] + t].
// Work unit:  one token (b, t); 16-byte copies.
// Shapes:     head_dim a multiple of 8; strides multiples of 8; positions ≥ max_len skipped.
// Reference:  kernels/reference.rs::kv_append.
#include "common.cuh"

RS_KERNEL_PAIR(__launch_bounds__(RS_KV_THREADS), kv_append_f16, KvAppendParams) {
    rs::pdl_sync();
    using rs::u64;
    const unsigned chunks = p.head_dim / 8;
    RS_FOR_EACH_UNIT_BY(u, (u64)p.batch * p.tokens, t, 4) {
        const unsigned b = u / p.tokens, t = u % p.tokens;
        const unsigned pos = (p.start ? rs::ptr<const unsigned>(p.start)[b] : 0u) + t;
        if (pos >= p.max_len) continue;
        for (unsigned c = threadIdx.x; c < p.heads_kv * chunks; c += blockDim.x) {
            const unsigned h = c / chunks, d = (c % chunks) * 8;
            const u64 dst = (((u64)b * p.heads_kv + h) * p.max_len + pos) * p.head_dim + d;
            const uint4 kv = *rs::ptr<const uint4>(p.k + 2 * (u * p.k_stride + (u64)h * p.head_dim + d));
            const uint4 vv = *rs::ptr<const uint4>(p.v + 2 * (u * p.v_stride + (u64)h * p.head_dim + d));
            *rs::ptr<uint4>(p.k_cache + 2 * dst) = kv;
            *rs::ptr<uint4>(p.v_cache + 2 * dst) = vv;
        }
    }
}
