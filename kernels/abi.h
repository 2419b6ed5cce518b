/*
 * abi.h — the one definition of every kernel's parameter struct.
 *
 * Included by the CUDA sources and run through bindgen by build.rs, so Rust and CUDA
 * share each layout. Rules: plain C, fixed-width fields, device pointers as
 * `unsigned long long` (a CUdeviceptr), no pointers to host memory, and every kernel
 * takes one of these structs by value (`__grid_constant__ const XParams p`), then its
 * RsTicket (`__grid_constant__ const RsTicket t`).
 */
#ifndef RIGHTSIZE_ABI_H
#define RIGHTSIZE_ABI_H

/* ---- every kernel: work units and claims --------------------------------------- */

/** Most SMs and SM groups the claim tables describe. */
#define RS_MAX_SMS 256
#define RS_MAX_GROUPS 64
/** group_of entry of an SM no group holds: never claimed. */
#define RS_NO_GROUP 255

/**
 * The second argument of every kernel: where its blocks take work units and when they give
 * their SMs back (kernels/common.cuh, rs::Units).
 * Block b does unit b first. With counter = 0, or no more units than blocks, it then takes
 * b + gridDim.x, … (the plain contract). Otherwise it takes each later unit (or group of
 * units) from the counter, and before each take it reads the claim on its SM's group:
 * claims[group_of[%smid]] > level means another tenant claimed the group, and the block leaves
 * with the units it has done; the blocks still in take the rest, and the last block out takes
 * whatever is left (claims no longer stop it) and zeroes the counter. A counter is zero before
 * and after every launch, so launches that run one after another may share it; a launch and
 * its continuation (`chain`) share it as one launch.
 */
typedef struct RsTicket {
    unsigned long long counter;  /* unsigned long long: blocks left for a claim << 32 | tickets taken; or 0 */
    unsigned long long claims;   /* const unsigned[RS_NO_GROUP + 1]: each group's claim level (0: none; RS_NO_GROUP's
                                    always 0), or 0 */
    unsigned long long group_of; /* const unsigned char[RS_MAX_SMS]: each SM's group */
    unsigned long long trace;    /* optional: unsigned long long[gridDim.x][3] per block: %globaltimer (ns) when it
                                    started on its units and when it left, and smid << 32 |
                                    left-for-a-claim << 31 | paused-a-tile << 30 |
                                    units it finished (a tile it paused is counted by the block
                                    that finishes it) */
    unsigned int level;          /* the launch's own level: it yields groups claimed above it */
    unsigned int chain;          /* 0: a launch alone. RS_CHAIN_FOLLOWS: a continuation follows on its stream: its
                                    blocks do no first unit (each take reads the claim first, so a block that
                                    starts on a claimed SM does nothing there), a block that leaves for a
                                    claim never finishes the rest, and the last block out leaves the counter
                                    at the tickets taken, for it. Otherwise this launch is the continuation of
                                    a launch of `chain` blocks: its blocks take the tickets left, laid out by
                                    that grid, under the rules of a launch alone. */
} RsTicket;

/**
 * Paused tiles (the Hopper GEMM, kernels/gemm_sm90.cu). A counted launch's block whose SM is
 * claimed in the middle of a tile pauses it between two K steps: its FP32 accumulators go to a
 * free slot of the pool's pause slots (whose address the stream's unit area holds, below) and
 * the tile, the slot and the K step reached to the stream's pause list; a block of the launch
 * (or of its continuation) takes paused tiles before new tickets, loads the accumulators and
 * goes on from that K step, so the products are added in the same order and the output's
 * bits are those of an unpaused run.
 *
 * The counter (RsTicket.counter) is the first word of its stream's unit area of
 * RS_UNIT_AREA_BYTES: the counter; at byte 8 the address of the pool's pause slots (below)
 * and at byte 16 (32 bits) how many there are (at most RS_PAUSE_MAX_SLOTS), both written once
 * when the pool is made; at byte 128 (a cache line of its own, which a thread of each block
 * polls) the pause word (entries reserved << 32 | entries taken; zero before and
 * after every launch, as the counter); from byte 256, RS_PAUSE_ENTRIES entries (0: not yet
 * written; else 1 << 63 | slot << 48 | K step << 32 | tile, with slot RS_PAUSE_CANCELLED where
 * the block that reserved it found no free slot). Reservations past RS_PAUSE_ENTRIES have no
 * entry: the blocks that made them do not pause, and takers skip them.
 * The pause slots: RS_PAUSE_MAX_SLOTS / 64 words of the slots in use (a bit each), then a
 * 32-bit word per slot and consumer warpgroup (1 from when the pausing block's warpgroup has
 * stored its accumulators until the resuming one has loaded them), then a 32-bit count per
 * slot of warpgroups that have loaded it, then, RS_PAUSE_HEADER_BYTES from the start, the
 * slots of RS_PAUSE_SLOT_BYTES each.
 */
#define RS_PAUSE_ENTRIES 256
#define RS_UNIT_AREA_BYTES (256 + 8 * RS_PAUSE_ENTRIES)
#define RS_PAUSE_MAX_SLOTS 1024
#define RS_PAUSE_CANCELLED 0x7fffu
/** A slot holds one 128×256 tile's FP32 accumulators. */
#define RS_PAUSE_SLOT_BYTES (128 * 256 * 4)
/** Bytes of the pause slots' header, before the first slot. */
#define RS_PAUSE_HEADER_BYTES 16384

/** RsTicket.chain of a launch a continuation follows (above any grid). */
#define RS_CHAIN_FOLLOWS 0x80000000u

/* ---- smid.cu ---------------------------------------------------------------- */

/** Threads per block of `smid_record`. */
#define RS_SMID_THREADS 128

/**
 * smid_record: work unit u writes the %smid of the SM that ran it to sm[u],
 * after spinning for `spin_cycles` clock cycles (so that all SMs get work).
 */
typedef struct SmidParams {
    unsigned long long sm;       /* unsigned int[units], output */
    unsigned long long spin_cycles;
    unsigned int units;
    unsigned int _pad;
} SmidParams;

/* ---- vector.cu -------------------------------------------------------------- */

/** Threads per block of `vector_add_f16`. */
#define RS_VECTOR_THREADS 256
/** Elements each thread handles per work unit (one 16-byte vector of halves). */
#define RS_VECTOR_ELEMS_PER_THREAD 8
/** Elements in one work unit of `vector_add_f16`. */
#define RS_VECTOR_UNIT (RS_VECTOR_THREADS * RS_VECTOR_ELEMS_PER_THREAD)

/** vector_add_f16: c[i] = a[i] + b[i] for i < n, FP16 in and out, FP32 arithmetic. */
typedef struct VectorAddParams {
    unsigned long long a;        /* const half[n] */
    unsigned long long b;        /* const half[n] */
    unsigned long long c;        /* half[n], output */
    unsigned long long n;
} VectorAddParams;

/** add_u32: x[i] += delta for i < n. One work unit of RS_VECTOR_UNIT. (A decode step moves its
 *  positions on in the argmax's launch instead: ArgmaxParams.advance.) */
typedef struct AddU32Params {
    unsigned long long x, n;
    unsigned int delta;
    unsigned int _pad;
} AddU32Params;

/** set_u32: x[i] = value for i < n. Work unit: RS_VECTOR_UNIT elements. */
typedef struct SetU32Params {
    unsigned long long x, n;
    unsigned int value;
    unsigned int _pad;
} SetU32Params;

/** copy_u32: dst[i] = src[i] for i < n. Work unit: RS_VECTOR_UNIT elements. */
typedef struct CopyU32Params {
    unsigned long long src, dst, n;
} CopyU32Params;

/* ---- gemm.cu ---------------------------------------------------------------- */

/** Epilogue activations of the GEMM (and the forms of gelu_f16). */
#define RS_ACT_NONE 0
#define RS_ACT_GELU_TANH 1
#define RS_ACT_GELU_ERF 2
/* Only the packed decode GEMMs (gemm_f16_packed_*_m8), on weights packed with PackParams.pairs: B's 16-row tiles are 8 gate
 * rows then the 8 up rows of the same columns, and C[m][8t + c] = swiglu(gate, up) of tile t's
 * columns c and 8 + c, each rounded to FP16 first (swiglu_f16's bits on the GEMM's output);
 * C has n / 2 columns. No bias or residual. */
#define RS_ACT_SWIGLU 3

/** Input norms a skinny GEMM can fuse (GemmParams.norm). */
#define RS_NORM_NONE 0
#define RS_NORM_LAYER 1
#define RS_NORM_RMS 2

/** K step of every GEMM tile; K must be a multiple of RS_GEMM_K_ALIGN. */
#define RS_GEMM_BK 32
#define RS_GEMM_K_ALIGN 8
#define RS_GEMM_STAGES 3
/** Large tile: 128x128, 8 warps. */
#define RS_GEMM_L_BM 128
#define RS_GEMM_L_BN 128
#define RS_GEMM_L_THREADS 256
/** Skinny: M ≤ 32 rows (decode), 16 output columns per block of 8 warps splitting K. */
#define RS_GEMM_T_MAX_M 32
#define RS_GEMM_T_BN 16
#define RS_GEMM_T_THREADS 256
/** Streamed decode GEMM (gemm_stream.cu, sm_90a, M ≤ 8): units of 1 to RS_GEMM_D_MAX_TILES
 *  tiles of RS_GEMM_T_BN columns; a producer thread streams weights and A in K chunks of
 *  ≤ RS_GEMM_D_KC columns, viewed as slices of RS_GEMM_D_SLICE columns, into a ring of
 *  RS_GEMM_D_RING_BYTES (≤ RS_GEMM_D_MAX_STAGES stages) for RS_GEMM_D_CONSUMERS warps. */
#define RS_GEMM_D_CONSUMERS 8
#define RS_GEMM_D_THREADS 288
#define RS_GEMM_D_KC 512
#define RS_GEMM_D_SLICE 32
#define RS_GEMM_D_MAX_TILES 2
#define RS_GEMM_D_RING_BYTES 204800
#define RS_GEMM_D_MAX_STAGES 16
/** Decode GEMM on packed weights (gemm_packed.cu, sm_90a, M ≤ 8): B in the layout of
 *  pack_tiles_f16, each stage one 1-D bulk copy of a tile's chunk (RS_GEMM_P_KC columns, or
 *  all of a shorter K); a consumer lane keeps its fragments of A in registers, up to
 *  RS_GEMM_P_MAX_K columns at a time (twice that in two halves, each loaded again for every
 *  unit), so K is RS_GEMM_P_SHORT_K (one chunk of 768 columns, GPT-2's width), a multiple of
 *  RS_GEMM_P_KC up to RS_GEMM_P_MAX_K, or 6,144 or 8,192 (two halves). Threads, consumers and
 *  ring: RS_GEMM_D_*; a launch whose blocks read fewer stages than RS_GEMM_D_RING_BYTES holds
 *  gets a ring of only those (its dynamic shared memory, the barriers after it). */
#define RS_GEMM_P_KC 1024
#define RS_GEMM_P_SHORT_K 768
#define RS_GEMM_P_MAX_K 4096
/** With K of one chunk, where a launch gives each block this many units or more, the runtime runs
 *  gemm_f16_packed_short_m8_warps, whose consumer warps each take whole units (the same bits):
 *  on partitions, and for the LM heads. From 2 units it made GPT-2's decode steps 6–23% slower
 *  on the whole device (docs/kernels-h200.md). */
#define RS_GEMM_P_WARP_UNITS 4
/** Small tile: 64x64, 4 warps (decode-sized M). */
#define RS_GEMM_S_BM 64
#define RS_GEMM_S_BN 64
#define RS_GEMM_S_THREADS 128

/**
 * gemm_f16_*: for each batch z < batch,
 *   C[z][i][j] = act(sum_k A[z][i][k] * B[z][j][k] + bias[j]) + R[z][i][j]
 * i.e. C = A·Bᵀ: A is M×K row-major (row stride lda), B is N×K row-major (ldb), C and R are
 * M×N (ldc, ldr). FP16 in and out, FP32 accumulation. bias (N halves) and residual are
 * optional (0). Batch strides are in elements (0 broadcasts).
 * Fused input norm (the skinny and streamed kernels only, batch 1): with norm = RS_NORM_LAYER or
 * RS_NORM_RMS, each row of A is first normalised as layer_norm_f16 / rms_norm_f16 do
 * (norm_gamma required, norm_beta optional for LayerNorm, norm_eps) and rounded to FP16, and
 * that row takes A's place. A itself is not written.
 * b_stable = 1 promises that B is not written by the kernel launched before this one on its
 * stream (weights): a kernel may then start reading B before it waits for that kernel (PDL).
 * With act = RS_ACT_SWIGLU (the packed decode GEMMs only) C is M × N/2 (ldc ≥ N/2): see its define.
 * Constraints: K, lda, ldb multiples of 8; a, b 16-byte aligned; ldc, ldr ≥ N.
 */
/** GemmParams.b_layout: B row-major (N × K, leading dimension ldb), or packed by
 *  pack_tiles_f16 (RS_B_TILES: read by the wgmma GEMMs and the packed decode GEMMs only). */
#define RS_B_ROWS 0
#define RS_B_TILES 1

typedef struct GemmParams {
    unsigned long long a, b, c, bias, residual;
    unsigned long long stride_a, stride_b, stride_c, stride_r;
    unsigned long long norm_gamma, norm_beta;
    unsigned int m, n, k, batch;
    unsigned int lda, ldb, ldc, ldr;
    unsigned int act;
    unsigned int norm;
    float norm_eps;
    unsigned int b_stable;
    unsigned int b_layout;
} GemmParams;

/** Hopper GEMM (gemm_sm90.cu): 128x256, 128x192, 128x160, 128x128, 128x96, 128x80, 128x64 or
 *  128x48 tiles (3 warpgroups), BK 64, a 192 KiB ring of as many stages as fit (4, 4, 5, 6, 6,
 *  7, 8, 8; 16 for the small-M kernel below). */
#define RS_GEMM_W_BM 128
#define RS_GEMM_W_BN_WIDE 256
#define RS_GEMM_W_BN_MID 192
#define RS_GEMM_W_BN 128
#define RS_GEMM_W_BN_NARROW 64
/** Tiles whose widths make one round of tiles fill the SMs where the others leave many idle
 *  (BERT-base at M = 1024: N = 768 in 16 tiles of 48, N = 2304 in 15 of 160). */
#define RS_GEMM_W_BN_SLIM 48
#define RS_GEMM_W_BN_WIDER_MID 160
/** Tiles whose widths make one round of tiles fill a partition's SMs where the others take two
 *  (BERT-base at M = 128 on 32 SMs: N = 2304 in 29 tiles of 80, N = 3072 in 32 of 96). Whole
 *  tiles of 16 rows, as packed weights (RS_B_TILES) come. */
#define RS_GEMM_W_BN_80 80
#define RS_GEMM_W_BN_96 96
#define RS_GEMM_W_BK 64
#define RS_GEMM_W_RING_BYTES 196608
/** Row stride (floats) of the Hopper GEMM's epilogue buffers: 2 warpgroups × 64 rows × 32 columns. */
#define RS_GEMM_W_EPI_STRIDE 40
/** The small-M Hopper GEMM (gemm_f16_wgmma_64x32): 64×32 tiles, one consumer warpgroup. */
#define RS_GEMM_WS_BM 64
#define RS_GEMM_WS_BN 32
#define RS_GEMM_WS_THREADS 256
#define RS_GEMM_W_THREADS 384

/** A CUtensorMap (the driver's opaque TMA descriptor), as the kernel receives it. */
typedef struct __attribute__((aligned(128))) RsTensorMap {
    unsigned long long opaque[16];
} RsTensorMap;

/**
 * The Hopper GEMMs (gemm_f16_wgmma_*, gemm_f16_stream_m8): GemmParams `g` (batch 1) with the
 * tensor maps of A (K × M) and B (K × N), FP16: boxes of 64 columns × the tile's rows with
 * 128-byte swizzle for the wgmma kernels; for the streamed one, 3-D views (a slice of
 * RS_GEMM_D_SLICE columns, rows, slices) in boxes of RS_GEMM_D_KC columns × 8 (A) or 16 (B)
 * rows without swizzle; for packed B (g.b_layout = RS_B_TILES), a 5-D view of its atoms in
 * boxes of a K step of the tile's rows, without swizzle (params.rs::GemmTmaParams::map_specs).
 */
typedef struct GemmTmaParams {
    RsTensorMap map_a;
    RsTensorMap map_b;
    GemmParams g;
} GemmTmaParams;

/* ---- norm.cu ---------------------------------------------------------------- */

#define RS_NORM_THREADS 256
/** Rows per work unit of the norms: one per warp. */
#define RS_NORM_ROWS 8
/** Longest row the norms take (the row is staged in shared memory as FP32). */
#define RS_NORM_MAX_COLS 8192
/** Longest row a warp normalises alone, held in registers (16 × 16 bytes per lane). */
#define RS_NORM_WARP_COLS 4096

/**
 * layer_norm_f16 / rms_norm_f16, RS_NORM_ROWS rows of `cols` per work unit:
 *   s = x + residual (residual optional); sum_out = s (optional);
 *   layer_norm: y = (s - mean(s)) / sqrt(var(s) + eps) * gamma + beta (beta optional)
 *   rms_norm:   y = s / sqrt(mean(s²) + eps) * gamma
 * Rows are contiguous (stride = cols). y may alias x; sum_out may alias x or residual.
 */
typedef struct NormParams {
    unsigned long long x, residual, sum_out, gamma, beta, y;
    unsigned int rows, cols;
    float eps;
    unsigned int _pad;
} NormParams;

/* ---- attention.cu, attention_sm90.cu ------------------------------------------ */

/** Prefill attention: queries per work unit (4 warps of 16: one warpgroup) and keys per step. */
#define RS_ATTN_BQ 64
#define RS_ATTN_BKV 64
#define RS_ATTN_THREADS 128
/** The wide wgmma kernels: two warpgroups of 64 query rows share each block of keys. */
#define RS_ATTN_WIDE_BQ 128
#define RS_ATTN_WIDE_THREADS 256
/** Decode attention (attention_decode_d* and attention_decode_split_d*): a block of
 *  RS_DECODE_THREADS threads a unit (a sequence's query head, or a chunk of its cache), each of
 *  its partial softmax states loading RS_DECODE_U cached rows at a time
 *  (kernels/attention_decode.cuh). */
#define RS_DECODE_THREADS 256
#define RS_DECODE_U 4
/** Before waiting for the previous kernel, a decode attention block asks L2 for the cached rows
 *  of its first RS_DECODE_PREFETCH_UNITS units, at most RS_DECODE_PREFETCH_BYTES of K (and as
 *  much of V) a query head: about 17 MB for a whole H200's blocks, a third of its L2. */
#define RS_DECODE_PREFETCH_UNITS 2
#define RS_DECODE_PREFETCH_BYTES 16384
/** Where a launch has fewer than RS_DECODE_TARGET_UNITS (sequence, query head) pairs, their
 *  caches are split into chunks, each a work unit of its own, merged in chunk order
 *  (DecodeAttentionParams): as many as bring the launch to about that many units, at most
 *  RS_DECODE_MAX_CHUNKS and no more than a chunk a RS_DECODE_MIN_CHUNK positions of capacity. */
#define RS_DECODE_TARGET_UNITS 128
#define RS_DECODE_MAX_CHUNKS 16
#define RS_DECODE_MIN_CHUNK 256

/**
 * attention_prefill_d{32,64,128} (mma.sync), attention_prefill_wgmma_d{64,128} and
 * attention_prefill_wgmma_wide_d{64,128} (sm_90a): softmax(scale · Q Kᵀ + mask) V per
 * (sequence, query head), flash-style (online softmax; no seq×seq matrix). Token t of
 * sequence b is row b·seq + t of q, k, v and o; head h starts at column h·head_dim. Query head h reads key/value head
 * h / (heads_q / heads_kv) (grouped-query attention). Keys at positions ≥ seq_lens[b] are
 * masked (padding; seq_lens optional = all valid); with causal, key j > query i is masked.
 * Work unit: (b, h, block of RS_ATTN_BQ queries; RS_ATTN_WIDE_BQ for the wide kernels). Rows
 * of a query with no valid key are 0.
 * Constraints: row strides multiples of 8, pointers 16-byte aligned, heads_q % heads_kv == 0.
 */
typedef struct AttentionParams {
    unsigned long long q, k, v, o, seq_lens;
    unsigned int batch, seq, heads_q, heads_kv, head_dim;
    unsigned int q_stride, k_stride, v_stride, o_stride;
    unsigned int causal;
    float scale;
    unsigned int _pad;
} AttentionParams;

/**
 * attention_decode_d{32,64,128} and attention_decode_split_d{32,64,128}: one new token per
 * sequence against its KV cache. Sequence b has pos[b] cached tokens; its new token's q, k and v
 * are row b of q, k and v (stride qkv_stride; head h at h·head_dim). The kernel first appends k
 * and v at position pos[b] of the cache (layout [batch][heads_kv][max_len][head_dim]; not when
 * pos[b] ≥ max_len), then attends over positions 0 ..= min(pos[b], max_len − 1); the units of a
 * kv group run in no fixed order, and each reads the new token's row from k and v, not from the
 * slot being written. With inv_freq (head_dim / 2 floats; 0 = none) the new token's q and k are
 * first rotated by RoPE at position pos[b], exactly as rope_f16 would (q and k in memory stay as
 * they are; the cache gets the rotated k).
 * Work unit of attention_decode_d*: (b, query head), over the whole cache; the first query head
 * of each kv group appends. partial and arrived are not read.
 * Work unit of attention_decode_split_d*, for shapes whose caches are split (chunks > 1): (chunk
 * c, b, query head), unit (c · batch + b) · heads_q + h, with chunks =
 * clamp(⌈RS_DECODE_TARGET_UNITS / (batch · heads_q)⌉, 1, min(RS_DECODE_MAX_CHUNKS,
 * ⌈max_len / RS_DECODE_MIN_CHUNK⌉)) and rows = ⌈max_len / chunks⌉ rounded up to a multiple of
 * 64: chunk c attends over positions c·rows … c·rows + rows − 1 (of those the sequence has). A
 * sequence with positions in one chunk only gets its output from it (the bits of
 * attention_decode_d*); where it has more, each chunk writes its softmax state (max, sum,
 * unnormalised output: head_dim + 2 floats) to partial[((b · heads_q + h) · chunks + c) ·
 * (head_dim + 2)], counts itself in arrived[b · heads_q + h], and the last one to arrive merges
 * the states in chunk order, writes the output and sets the count back to 0: the same bits
 * whichever unit merges, at any grid. The first query head of each kv group appends, in chunk 0.
 * Constraints: q, k, v and the caches 16-byte aligned, qkv_stride a multiple of 8; for the split
 * kernels, partial (batch · heads_q · chunks · (head_dim + 2) floats, 16-byte aligned) and
 * arrived (batch · heads_q words, all 0 before the first launch; each launch, with its
 * continuation where claims split it, leaves them 0), used by one launch at a time.
 */
typedef struct DecodeAttentionParams {
    unsigned long long q, k, v, k_cache, v_cache, o, pos, inv_freq;
    unsigned int batch, heads_q, heads_kv, head_dim, max_len;
    unsigned int qkv_stride, o_stride;
    float scale;
    unsigned long long partial, arrived;
} DecodeAttentionParams;

/* ---- kvcache.cu ------------------------------------------------------------- */

#define RS_KV_THREADS 128

/**
 * kv_append_f16: copies `tokens` new tokens per sequence into the cache:
 *   cache[b][h][start[b] + t][:] = src[b·tokens + t][h·head_dim : (h+1)·head_dim]
 * for K and V. start optional (0). Work unit: one token (b, t).
 * Positions past max_len are not written. Constraints: strides multiples of 8, 16-byte alignment.
 */
typedef struct KvAppendParams {
    unsigned long long k, v, k_cache, v_cache, start;
    unsigned int batch, tokens, heads_kv, head_dim, max_len;
    unsigned int k_stride, v_stride;
    unsigned int _pad;
} KvAppendParams;

/* ---- rope.cu ---------------------------------------------------------------- */

#define RS_ROPE_THREADS 128
#define RS_ROPE_UNIT 512

/**
 * rope_f16: rotary position embedding in place (Llama's rotate-half form) on the first
 * heads_q heads of q and heads_kv heads of k of every token: for i < head_dim/2, with
 * angle = pos · inv_freq[i] and pos = start[b] + t (start optional = 0),
 *   x[i]' = x[i]·cos − x[i+d/2]·sin,  x[i+d/2]' = x[i+d/2]·cos + x[i]·sin.
 * inv_freq (head_dim/2 floats) is computed by the host, so θ and scaling are the caller's.
 * Work unit: RS_ROPE_UNIT of one token's (head, i) pairs, q's heads then k's
 * (units = batch · tokens · ⌈(heads_q + heads_kv) · head_dim/2 / RS_ROPE_UNIT⌉).
 */
typedef struct RopeParams {
    unsigned long long q, k, inv_freq, start;
    unsigned int batch, tokens, heads_q, heads_kv, head_dim;
    unsigned int q_stride, k_stride;
    unsigned int _pad;
} RopeParams;

/* ---- embedding.cu ----------------------------------------------------------- */

#define RS_EMBED_THREADS 128

/**
 * embedding_f16: out[b·tokens + t] = tok[ids[b·tokens + t]] + pos[start[b] + t] + type
 * (pos, type and start optional). An id ≥ vocab or a position ≥ max_pos writes NaN. With
 * tok_packed, tok is packed by pack_tiles_f16 (a tied LM head's weights; hidden as PackParams
 * takes k). Work unit: one token.
 */
typedef struct EmbeddingParams {
    unsigned long long ids, tok, pos, type, start, out;
    unsigned int batch, tokens, hidden, vocab, max_pos;
    unsigned int tok_packed;
} EmbeddingParams;

/* ---- activation.cu ---------------------------------------------------------- */

#define RS_ACT_THREADS 256
#define RS_ACT_UNIT 2048

/** gelu_f16: y[i] = gelu(x[i]) (act = RS_ACT_GELU_TANH or RS_ACT_GELU_ERF); y may alias x.
 *  Work unit: RS_ACT_UNIT elements. */
typedef struct GeluParams {
    unsigned long long x, y, n;
    unsigned int act;
    unsigned int _pad;
} GeluParams;

/** swiglu_f16: out[r][c] = silu(gate[r][c]) · up[r][c], rows with their own strides. With
 *  `paired`, gate's and up's column c is read at 16·(c / 8) + c % 8 (the output of a GEMM on
 *  weights packed with PackParams.pairs: up = gate + 8 columns); out must then not overlap
 *  gate's or up's rows (unpaired, it may alias gate or up).
 *  Work unit: RS_ACT_UNIT columns of one row (units = rows · ⌈cols / RS_ACT_UNIT⌉). */
typedef struct SwigluParams {
    unsigned long long gate, up, out;
    unsigned int rows, cols, gate_stride, up_stride, out_stride;
    unsigned int paired;
} SwigluParams;

/* ---- argmax.cu -------------------------------------------------------------- */

#define RS_ARGMAX_THREADS 256
/** Columns of a part of a row: a work unit. */
#define RS_ARGMAX_PART_COLS 4096

/** argmax_f16: out[r] = the smallest index of the largest value of row r (NaNs ignored;
 *  a row of only NaN gives 0). Work unit: a part of a row (RS_ARGMAX_PART_COLS columns; parts
 *  = ⌈cols / RS_ARGMAX_PART_COLS⌉). Where parts > 1: `partial` holds rows × parts pairs of
 *  words (a part's best value's bits and its index; 8-byte aligned), `arrived` a count a row
 *  of its parts done, zero before a launch and left at zero after it (both unread where
 *  parts = 1). One launch (with its continuations) uses them at a time.
 *  With `advance` (0: none), also advance[i] += delta for i < advance_n (a decoder's cache
 *  positions, which a decode step moves on after its token: add_u32's work, without its
 *  launch); needs rows ≥ 1, and words apart from out, partial and arrived. A launch with
 *  `advance` is not idempotent: each launch (a replay included) moves the positions on. */
typedef struct ArgmaxParams {
    unsigned long long logits, out, partial, arrived, advance, advance_n;
    unsigned int rows, cols, stride, delta;
} ArgmaxParams;

/* ---- decoder.cu ------------------------------------------------------------ */

#define RS_DEC_THREADS 256
/** Rows (sequences) the decoder kernel takes: one token each. */
#define RS_DEC_MAX_BATCH 8
/** Bytes of the weight tile a block holds (its columns × K × 2). */
#define RS_DEC_STAGE_BYTES 49152
/** Most columns of one weight tile. */
#define RS_DEC_MAX_COLS 64
/** Counters per layer in DecoderParams.sync: one per phase. */
#define RS_DEC_PHASES 5
/** Most layers (the layer table is kept in shared memory). */
#define RS_DEC_MAX_LAYERS 48

/** One layer of a GPT-2-style decoder as decoder_layers_d64 reads it (device addresses).
 *  Weights are [out][in] row-major and contiguous; every field is required. */
typedef struct DecoderLayerWeights {
    unsigned long long norm1_gamma, norm1_beta; /* half[hidden] */
    unsigned long long qkv, qkv_bias;           /* half[(heads + 2·heads_kv)·64][hidden], half[…] */
    unsigned long long out, out_bias;           /* half[hidden][heads·64], half[hidden] */
    unsigned long long norm2_gamma, norm2_beta; /* half[hidden] */
    unsigned long long up, up_bias;             /* half[ffn][hidden], half[ffn] */
    unsigned long long down, down_bias;         /* half[hidden][ffn], half[hidden] */
    unsigned long long k_cache, v_cache;        /* half[batch][heads_kv][max_len][64] */
} DecoderLayerWeights;

/**
 * decoder_layers_d64: the transformer layers of one decode step of a GPT-2-style decoder
 * (pre-norm LayerNorm, GELU-tanh MLP, multi-head or grouped-query attention with head_dim 64),
 * `batch` ≤ RS_DEC_MAX_BATCH sequences of one token. For each layer, in place on x:
 *   qkv = LN1(x)·Wqkvᵀ + b;  attention_decode on qkv (appends k, v at pos[b]) → attn;
 *   x = x + (attn·Woᵀ + bo);  ffn = gelu_tanh(LN2(x)·Wupᵀ + bup);  x = x + (ffn·Wdownᵀ + bdown)
 * with the roundings of the separate kernels. `sync` is 2 + RS_DEC_PHASES·n_layers counters,
 * zero before the first launch; every launch leaves them zero.
 * Constraints: hidden and ffn multiples of 64 and ≤ 3072, heads·64 = hidden, n_layers ≤ 48,
 * heads % heads_kv == 0, pointers 16-byte aligned.
 */
typedef struct DecoderParams {
    unsigned long long layers; /* const DecoderLayerWeights[n_layers] */
    unsigned long long x;      /* half[batch][hidden], in and out */
    unsigned long long qkv;    /* half[batch][(heads + 2·heads_kv)·64], scratch */
    unsigned long long attn;   /* half[batch][hidden], scratch */
    unsigned long long ffn;    /* half[batch][ffn], scratch */
    unsigned long long pos;    /* unsigned[batch]: cached tokens before this one */
    unsigned long long sync;   /* unsigned[2 + RS_DEC_PHASES·n_layers] */
    unsigned long long trace;  /* optional: unsigned long long[units][4] per unit: %globaltimer (ns)
                                  when its block took it up, when its inputs were ready and when it
                                  was done, and smid << 32 | blockIdx.x */
    unsigned int n_layers, batch, hidden, ffn_dim, heads, heads_kv, max_len;
    float eps, scale;
    unsigned int _pad;
} DecoderParams;

/* ---- init.cu ---------------------------------------------------------------- */

#define RS_PACK_THREADS 256

/**
 * pack_tiles_f16: the weights of a GEMM (B, n × k row-major, leading dimension k) into the
 * layout the library's Hopper GEMMs stream: tiles of 16 rows; a tile's chunks of KC columns
 * (RS_GEMM_P_KC, or all of k where k is shorter), each KC·32 bytes in a row; in a chunk, its
 * rows 0–7, then 8–15; in each, the chunk's S = KC / 32 slices of 32 columns, each an atom of
 * 8 rows × 64 bytes whose 16-byte pieces are stored swizzled as wgmma's 64-byte swizzle reads
 * them (piece p of row r at p ^ (r / 2 % 4)). So halves (t, c, h, s, r, i), of row 16t + 8h + r
 * and column KC·c + 32s + i, are at ((((t·C + c)·2 + h)·S + s)·8 + r)·32 + 8·((i / 8) ^
 * (r / 2 % 4)) + i % 8, C = k / KC, zero for rows past n. dst holds ⌈n / 16⌉·16·k halves and
 * must not overlap src; k a multiple of RS_GEMM_P_KC, or below it a multiple of 256 (8 warps'
 * slices of 32). With `unpack`, the reverse: the rows below n of packed src into
 * row-major dst. With `pairs` (n a multiple of 16), the rows are taken as gate/up pairs, the
 * first n / 2 rows gate and the rest up: tile t's rows 0–7 are gate rows 8t … 8t + 7 and its
 * rows 8–15 the up rows of the same columns, n / 2 + 8t … (for RS_ACT_SWIGLU). Work unit: one
 * tile.
 */
typedef struct PackParams {
    unsigned long long src, dst;
    unsigned int n, k;
    /** 0: src row-major, dst packed; 1: the reverse (src packed, dst n × k row-major). */
    unsigned int unpack;
    /** 1: rows as gate/up pairs (above); 0: in order. */
    unsigned int pairs;
} PackParams;

#define RS_FILL_THREADS 256
#define RS_FILL_UNIT 4096

/**
 * fill_f16: x[i] = mean + scale·(2u − 1) with u = (splitmix64(seed + i) >> 40) / 2²⁴, i.e.
 * uniform in [mean − scale, mean + scale), computed in f32 without contraction and rounded
 * once, so the host can reproduce every value (kernels/reference.rs::fill).
 * Work unit: RS_FILL_UNIT elements.
 */
typedef struct FillParams {
    unsigned long long x, n, seed;
    float scale, mean;
} FillParams;

#endif
