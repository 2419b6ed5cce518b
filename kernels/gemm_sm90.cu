// gemm_sm90.cu — C = act(A·Bᵀ + bias) + R on Hopper: TMA loads into a shared-memory ring on
// mbarriers, wgmma (HGMMA) from shared memory, persistent over output tiles.
//
// Computes:   as gemm.cu (GemmParams: bias, GELU tanh/erf, FP16 rounding before the residual
//             add), for batch = 1.
// Work unit:  one BM×BN output tile; units = ⌈M/BM⌉·⌈N/BN⌉. Prefill tiles 128×256, 128×192,
//             128×160, 128×128, 128×96, 128×80, 128×64 and 128×48 (gemm_f16_wgmma_128xBN;
//             params/gemm.rs::gemm_wgmma_kernel picks one for the SMs the launch runs on; 160,
//             96, 80 and 48 make one round of tiles fill the SMs where the others leave many
//             idle or take two rounds: BERT-base's QKV at M = 128 in 29 tiles of 80 on 32 SMs),
//             and
//             64×32 and 64×64 for small M (gemm_f16_wgmma_64x32/_64x64: 8 < M ≤ 64, where
//             enough tiles to keep every SM streaming weights matter most). Each block loops over units (u = blockIdx.x,
//             and later ones as the ticket hands them out; along M first when M ≤ N, see
//             tile_origin), so any grid and any claims are correct; a tile's K order is fixed,
//             so the output does not depend on the grid. Counted, a block whose SM is claimed
//             in the middle of a tile pauses it between two K steps (where two or more
//             remain after the next one): its consumers store the FP32 accumulators into a slot
//             (abi.h, RS_PAUSE_*) and another block of the launch, or of its continuation,
//             loads them and goes on from that K step, adding the same products in the same
//             order, so a claimed SM is held for about the ring's K steps, not a whole tile,
//             and the bits do not change. A thread of the producer warpgroup reads the claim
//             about once a microsecond (a 256-ns sleep and two loads from global memory), so
//             the producer looks at shared memory at each K step.
// Block:      a producer warpgroup and BM/64 consumer warpgroups. The producer's first
//             thread issues the TMA loads of A (BM×64) and B (BN×64) per K step into stage s
//             of a 192 KiB ring (4 to 16 stages) and arms full[s] with their bytes. Each
//             consumer computes 64 rows × BN columns with wgmma.m64nBNk16 (4 per K step,
//             operands from shared memory, 128-byte swizzle, FP32 accumulators in registers),
//             keeps one K step's group in flight while the next is issued, and releases each
//             stage through empty[s] once the group reading it is done. With p.b_stable the
//             B of a block's first stages is requested before the wait for the kernel before it
//             (PDL), in the plain order (the decode GEMMs do the same). The epilogue goes
//             through shared memory 32 columns at a time (16 for the last of a 48- or 80-wide
//             tile).
// Packed B:   with p.b_layout = RS_B_TILES, B is in pack_tiles_f16's layout (abi.h): a K step's
//             B is one TMA box of a 5-D view (an atom of 8 rows × 32 columns, slices, halves of
//             a tile, chunks, tiles) of 2 slices × 2 halves × BN / 16 tiles: atoms
//             [tile][half][slice], so a slice's 8-row groups are 1,024 bytes apart, stored
//             swizzled as wgmma's 64-byte swizzle reads them. The products and their order are
//             those of row-major B, so are the outputs' bits.
// Shapes:     any M, N ≥ 1; K ≥ 8 and a multiple of 8 (16-byte global strides for TMA); A and B
//             16-byte aligned; lda, ldb multiples of 8. TMA zero-fills past M, N and K. Packed
//             B: K as pack_tiles_f16 takes it, N padded to whole tiles of 16 rows by the packing.
// Params:     GemmTmaParams — the tensor maps of A and B (made on the host, see
//             kernels/params.rs::GemmTmaParams::new) and the GemmParams of the epilogue.
// Only sm_90a has wgmma/TMA; on other targets the kernels trap (the runtime never picks them).
// Reference:  kernels/reference.rs::gemm.
#include "common.cuh"
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#include "sm90.cuh"
#endif

namespace {

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

using namespace rs;
constexpr int BK = RS_GEMM_W_BK, EPI_STRIDE = RS_GEMM_W_EPI_STRIDE;

// Stores C[row + 8h][col + j] = gemm_value(src[8h·EPI_STRIDE + j], …) for h = 0, 1 and j < 8,
// those with row + 8h < M and col + j < N, from the epilogue buffer `src`. When `vec` (C, R and
// the bias 16-byte aligned, ldc and ldr multiples of 8) and all eight columns are in range:
// one 16-byte load of the bias, and per row one of R and one 16-byte store, every load issued
// before the arithmetic.
__device__ __forceinline__ void store8x2(const GemmParams& p, __half* C, const __half* R, const __half* bias,
                                         unsigned row, unsigned col, const float* src, bool vec) {
    if (vec && col + 8 <= p.n) {
        float x[2][8];
        uint4 rw[2];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const float4 lo = *reinterpret_cast<const float4*>(src + 8 * h * EPI_STRIDE);
            const float4 hi = *reinterpret_cast<const float4*>(src + 8 * h * EPI_STRIDE + 4);
            x[h][0] = lo.x, x[h][1] = lo.y, x[h][2] = lo.z, x[h][3] = lo.w;
            x[h][4] = hi.x, x[h][5] = hi.y, x[h][6] = hi.z, x[h][7] = hi.w;
            rw[h] = R && row + 8 * h < p.m ? *reinterpret_cast<const uint4*>(R + (u64)(row + 8 * h) * p.ldr + col)
                                           : make_uint4(0, 0, 0, 0);
        }
        const uint4 bw = bias ? *reinterpret_cast<const uint4*>(bias + col) : make_uint4(0, 0, 0, 0);
        const __half* b = reinterpret_cast<const __half*>(&bw);
        // rs::gemm_value's steps, each branch taken once for the sixteen values.
        if (bias) {
#pragma unroll
            for (int j = 0; j < 16; ++j) x[j / 8][j % 8] += __half2float(b[j % 8]);
        }
        if (p.act == RS_ACT_GELU_TANH) {
#pragma unroll
            for (int j = 0; j < 16; ++j) x[j / 8][j % 8] = rs::gelu(x[j / 8][j % 8], RS_ACT_GELU_TANH);
        } else if (p.act == RS_ACT_GELU_ERF) {
#pragma unroll
            for (int j = 0; j < 16; ++j) x[j / 8][j % 8] = rs::gelu(x[j / 8][j % 8], RS_ACT_GELU_ERF);
        }
        if (R) {
#pragma unroll
            for (int j = 0; j < 16; ++j) {
                const __half* r = reinterpret_cast<const __half*>(&rw[j / 8]);
                x[j / 8][j % 8] = rs::round_half(x[j / 8][j % 8]) + __half2float(r[j % 8]);
            }
        }
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            if (row + 8 * h >= p.m) break;
            uint4 out;
            __half2* o2 = reinterpret_cast<__half2*>(&out);
#pragma unroll
            for (int j = 0; j < 4; ++j) o2[j] = __floats2half2_rn(x[h][2 * j], x[h][2 * j + 1]);
            *reinterpret_cast<uint4*>(C + (u64)(row + 8 * h) * p.ldc + col) = out;
        }
        return;
    }
#pragma unroll 1
    for (unsigned e = 0; e < 16; ++e) {
        const unsigned r = row + 8 * (e / 8), c = col + e % 8;
        if (r >= p.m || c >= p.n) continue;
        const float b = bias ? __half2float(bias[c]) : 0.0f;
        const float res = R ? __half2float(R[(u64)r * p.ldr + c]) : 0.0f;
        C[(u64)r * p.ldc + c] = __float2half_rn(rs::gemm_value(src[8 * (e / 8) * EPI_STRIDE + e % 8], p.act, bias, b, R, res));
    }
}

// Tile order: along M first when A is no larger than B (M ≤ N), so that a wave of blocks
// shares few B tiles and A's rows stay in L2 while B streams once; else along N first.
__device__ __forceinline__ void tile_origin(u64 u, const GemmParams& p, unsigned tiles_m, unsigned tiles_n, int bm,
                                           int bn, unsigned& m0, unsigned& n0) {
    const bool m_first = p.m <= p.n;
    m0 = (m_first ? u % tiles_m : u / tiles_n) * bm;
    n0 = (m_first ? u / tiles_m : u % tiles_n) * bn;
}

__device__ __forceinline__ void st_shared_u64(unsigned addr, u64 v) {
    asm volatile("st.shared.u64 [%0], %1;" ::"r"(addr), "l"(v) : "memory");
}

__device__ __forceinline__ unsigned ld_volatile_shared_u32(unsigned addr) {
    unsigned v;
    asm volatile("ld.volatile.shared.u32 %0, [%1];" : "=r"(v) : "r"(addr) : "memory");
    return v;
}

__device__ __forceinline__ u64 ld_shared_u64(unsigned addr) {
    u64 v;
    asm volatile("ld.shared.u64 %0, [%1];" : "=l"(v) : "r"(addr) : "memory");
    return v;
}

// A tile's accumulators: where `resumed`, this thread's BN/2 values from `src` (16-byte
// aligned, one predicated 16-byte load per four); otherwise 0.
// Every tile defines its accumulators in this same straight-line code: defined on two paths
// (zeros, or loads under a branch), ptxas serializes the wgmma pipeline.
template <int BN>
__device__ __forceinline__ void load_accumulators(float (&d)[BN / 2], bool resumed, const float* src, unsigned stride) {
#pragma unroll
    for (int i = 0; i < BN / 2; i += 4)
        asm volatile(
            "{ .reg .pred q; setp.ne.b32 q, %4, 0; mov.f32 %0, 0f00000000; mov.f32 %1, 0f00000000; "
            "mov.f32 %2, 0f00000000; mov.f32 %3, 0f00000000; @q ld.global.cg.v4.f32 {%0, %1, %2, %3}, [%5]; }"
            : "=f"(d[i]), "=f"(d[i + 1]), "=f"(d[i + 2]), "=f"(d[i + 3])
            : "r"((unsigned)resumed), "l"(src + (i / 4) * stride)
            : "memory");
}

// CONSUMERS warpgroups of 64 rows each (BM = 64·CONSUMERS) and one producer warpgroup.
// `wait` waits for the kernel before (rs::pdl_sync), after the weights asked for early.
// What the producer, its watcher thread and the consumers of a block that pauses tiles share
// (the `_paused` builds only): the claim on the SM's group as the watcher last read it,
// whether the stream's pause list then held a paused tile not taken, and whether the producer
// is done (the watcher then ends).
struct PauseShared {
    unsigned seen_claim, seen_paused, producer_done;
};

__device__ __forceinline__ volatile PauseShared& pause_shared() {
    __shared__ PauseShared state;
    return state;
}

// The wait of a `_paused` build: `wait` (below) wrapped, so the build is told apart by its
// type and the plain and counted builds keep their template arguments, names and code.
template <typename F>
struct PausedWait {
    F f;
    __device__ void operator()() const { f(); }
};

template <typename F>
__device__ __forceinline__ PausedWait<F> paused_wait(F f) {
    return PausedWait<F>{f};
}

template <typename W>
struct Pauses {
    static constexpr bool value = false;
};

template <typename F>
struct Pauses<PausedWait<F>> {
    static constexpr bool value = true;
};

// CONSUMERS warpgroups of 64 rows each (BM = 64·CONSUMERS) and one producer warpgroup.
// `wait` waits for the kernel before (rs::pdl_sync), after the weights asked for early; a
// PausedWait makes the `_paused` build (counted), whose claimed blocks may pause their tiles
// between K steps (below).
template <bool RS_COUNTED, int BN, int CONSUMERS, typename Wait>
__device__ __forceinline__ void gemm_wgmma(const GemmTmaParams& tp, unsigned char* smem_raw, const RsTicket& ticket,
                                           Wait wait) {
    constexpr bool PAUSES = Pauses<Wait>::value;
    constexpr int BM = 64 * CONSUMERS;
    constexpr unsigned STAGE_BYTES = (BM + BN) * BK * 2;
    constexpr int STAGES = RS_GEMM_W_RING_BYTES / STAGE_BYTES;
    const GemmParams& p = tp.g;
    // Stages at a 1024-byte boundary (the swizzle atom), barriers after them.
    // (Pointer arithmetic on the shared array, so the compiler knows the epilogue buffers are
    // shared memory and uses LDS/STS, not generic loads and stores.)
    unsigned char* smem = smem_raw + ((1024 - (smem_addr(smem_raw) & 1023)) & 1023);
    // (In a build whose tiles pause, the address is kept in a register: recomputed from the
    // CTA's shared window, it was, at every K step of the producer.)
    unsigned base = smem_addr(smem);
    if constexpr (PAUSES) asm volatile("mov.u32 %0, %0;" : "+r"(base));
    const unsigned full = base + STAGES * STAGE_BYTES, empty = full + STAGES * 8;
    // Each consumer warpgroup's epilogue buffer: 64 rows × 32 FP32 columns, rows padded to
    // EPI_STRIDE floats (conflict-free float2 writes), after the barriers.
    float* epi = reinterpret_cast<float*>(smem + RS_GEMM_W_RING_BYTES + 256);
    const int wg = threadIdx.x / 128, t = threadIdx.x % 128;
    const unsigned tiles_m = (p.m + BM - 1) / BM, tiles_n = (p.n + BN - 1) / BN;
    const u64 units = (u64)tiles_m * tiles_n;
    const int kblocks = (p.k + BK - 1) / BK;
    // Taking units from the counter, the producer (rs::Taker) tells the consumers which one a
    // stage starts: unit[s] is written before the first K step's loads arm full[s]; END there
    // (armed without loads) ends the consumers' loop, and `left` is what the trace records of
    // the block. In the plain order every warpgroup walks b, b + gridDim.x, … on its own.
    __shared__ u64 unit[STAGES > 16 ? STAGES : 16], left;
    constexpr u64 END = ~0ull;
    // Pauses (abi.h, RS_PAUSE_*; `_paused` builds): where a launch may pause (`pausing`), the
    // word of a tile's first stage also holds the K step it starts from and its slot + 1 (0: a
    // new tile), and the producer marks the last stage of a tile it pauses with PAUSE | slot
    // + 1 << 48 | K step << 32 | tile: after that step the consumers store their accumulators
    // into the slot. (Only a tile's first stage and a mark are written, so a mark stays in
    // its stage's word; naming its tile and step, it is never taken for a later one's.)
    constexpr u64 PAUSE = 1ull << 62;
    // A paused tile's accumulators in its slot: four at a time, thread by thread (float4 i / 4
    // of consumer thread r at r + (i / 4) · threads), so a warp's stores and loads are whole
    // 512-byte runs.
    constexpr unsigned SLOT_STRIDE = 4 * 128 * CONSUMERS;
    static_assert(BM * BN * 4 <= RS_PAUSE_SLOT_BYTES, "a tile's accumulators fit its slot");
    static_assert(RS_PAUSE_MAX_SLOTS < 0x7ff, "a mark holds its slot + 1 in 11 bits");
    // A counted launch that takes tiles from its counter, with claims and slots; entries hold
    // a tile index below 2^32 and a K step below 2^16.
    const bool pausing = PAUSES && RS_COUNTED && Taker::dynamic(ticket, units) && ticket.claims &&
                         pause_slots(ticket) && units >> 32 == 0 && kblocks < 0x10000;
    // The shared address of unit[0], kept in a register (recomputed from the CTA's shared
    // window, it was at every K step of the producer and the consumers).
    unsigned unit_at = smem_addr(unit);
    if constexpr (PAUSES) asm volatile("mov.u32 %0, %0;" : "+r"(unit_at));

    if (threadIdx.x == 0) {
        for (int s = 0; s < STAGES; ++s) {
            mbar_init(full + 8 * s, 1);
            mbar_init(empty + 8 * s, CONSUMERS * 128);
        }
        if constexpr (PAUSES) {
            // Shared memory keeps what an earlier block on this SM left there: a stage word that
            // one of its pauses marked could name this block's tile and step and stop its
            // consumers where its producer does not pause. Only a tile's first stage and a mark
            // are written, so the words start at 0.
            for (int s = 0; s < STAGES; ++s) unit[s] = 0;
            pause_shared().seen_claim = pause_shared().seen_paused = pause_shared().producer_done = 0;
        }
        mbar_init_fence();
    }
    __syncthreads();

    // B of a K step into stage s (its bytes counted on full[s] with A's).
    const auto load_b = [&](int kb, unsigned n0, int s) {
        const unsigned b = base + s * STAGE_BYTES + BM * BK * 2;
        if (p.b_layout == RS_B_TILES) {
            // Packed B: the two slices of this K step, both halves of the BN / 16 tiles. Where
            // K is one chunk shorter than RS_GEMM_P_KC (768), 2·kb + 1 < K / 32 < 32: the
            // coordinates are (2·kb, 0) all the same.
            const int slices = RS_GEMM_P_KC / 32;
            tma_load_5d(b, &tp.map_b, 0, (2 * kb) % slices, 0, 2 * kb / slices, (int)(n0 / 16), full + 8 * s);
        } else {
            tma_load(b, &tp.map_b, kb * BK, (int)n0, full + 8 * s);
        }
    };
    // With b_stable (B is weights, which the kernel before this one does not write), the B of
    // the first stages of this block's first unit is requested before the wait for that
    // kernel (PDL), which may still be writing A: the weights stream while it ends. Only in
    // the plain order, where the first unit is the block's own (a counted launch learns its
    // first unit from the counter, which is set after the kernel before it).
    const int early = !RS_COUNTED && p.b_stable && blockIdx.x < units ? min(kblocks, STAGES) : 0;
    if (wg == 0 && t == 0 && early > 0) {
        unsigned m0, n0;
        tile_origin(blockIdx.x, p, tiles_m, tiles_n, BM, BN, m0, n0);
        for (int kb = 0; kb < early; ++kb) {
            mbar_expect_tx(full + 8 * kb, STAGE_BYTES);
            load_b(kb, n0, kb);
        }
    }
    wait();

    // With two consumer warpgroups, registers move from the producer (one thread issues the
    // loads) to the consumers: 40 + 2 × 232 per thread fit the SM's 64 Ki with room for the
    // 128×256 tile's accumulators and its epilogue. A producer whose tiles pause keeps more
    // where the tile is narrow (56 + 2 × 224): its K steps are short, and under 40 registers
    // its state spills to local memory, which it would reload every step.
    constexpr unsigned PRODUCER_REGS = PAUSES ? 56 : 40, CONSUMER_REGS = PAUSES ? 224 : 232;
    if (wg == 0) {
        if constexpr (CONSUMERS == 2) asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(PRODUCER_REGS));
        if constexpr (PAUSES) {
            // The producer of a build whose tiles pause; its watcher thread (t = 32) reads the
            // claim and the pause word.
            volatile PauseShared& ps = pause_shared();
            // The shared address of the claim the watcher writes, kept in a register for the
            // producer's K steps.
            unsigned claim_at = smem_addr(const_cast<const unsigned*>(&ps.seen_claim));
            asm volatile("mov.u32 %0, %0;" : "+r"(claim_at));
            const bool dynamic = Taker::dynamic(ticket, units);
            if (pausing && t == 32) {
                // The watcher: reads the claim on its SM's group and the pause word about once a
                // microsecond, so the producer sees them at every K step and every take without a
                // round trip of its own.
                const unsigned* word = ptr<const unsigned>(ticket.claims) +
                                       __ldg(ptr<const unsigned char>(ticket.group_of) + smid());
                while (!ps.producer_done) {
                    const unsigned level = load_relaxed_if(true, word);
                    const u64 list = load_relaxed64(pause_word(ticket));
                    ps.seen_claim = level;
                    ps.seen_paused = (unsigned)(list >> 32) != (unsigned)list;
                    __nanosleep(256);
                }
                return;
            }
            if (t != 0) return;
            int stage = 0;
            unsigned phase = 0;
            Taker taker;
            taker.init(ticket, units);
            trace_start(ticket);
            // A launch that takes all (RsTicket.chain: a continuation, or a launch one follows)
            // does no first unit: it takes every unit from the counter, or has none to do.
            const Tile none{units, 0, Tile::NO_SLOT};
            // The first take of a launch that takes all reads the claim itself (the watcher may
            // not have read it yet); the others use the watcher's reads, where it runs.
            Tile w = dynamic && takes_all(ticket) ? taker.next_tile(ticket, units, -1, true, pausing)
                     : takes_all(ticket)               ? none
                                                       : Tile{blockIdx.x, 0, Tile::NO_SLOT};
            while (w.unit < units) {
                const u64 u = w.unit;  // (NO_SLOT + 1 is 0: a new tile)
                unsigned m0, n0;
                tile_origin(u, p, tiles_m, tiles_n, BM, BN, m0, n0);
                bool paused = false, leaves = false, pause_next = false;
                unsigned slot, entry;
                for (int kb = w.kstep; kb < kblocks; ++kb) {
                    // The claim as the watcher last read it, read before the wait and used
                    // after the loads are issued, so its latency is not on the way to them.
                    const unsigned seen = ld_volatile_shared_u32(claim_at);
                    mbar_wait(empty + 8 * stage, phase ^ 1);
                    if (dynamic && (kb == (int)w.kstep || pause_next)) {
                        const u64 to = pause_next ? PAUSE | (u64)(slot + 1) << 48 | (u64)kb << 32 | u
                                       : pausing ? (u64)(w.slot + 1) << 48 | (u64)w.kstep << 32 | u
                                                 : u;
                        st_shared_u64(unit_at + 8 * stage, to);
                    }
                    mbar_expect_tx(full + 8 * stage, STAGE_BYTES);
                    tma_load(base + stage * STAGE_BYTES, &tp.map_a, kb * BK, (int)m0, full + 8 * stage);
                    load_b(kb, n0, stage);
                    if (++stage == STAGES) {
                        stage = 0;
                        phase ^= 1;
                    }
                    if (pause_next) {
                        // The consumers store the accumulators of the steps up to this one; the
                        // block counts itself out while they do.
                        paused = true;
                        leaves = taker.pause(ticket, units, u, kb + 1, slot, entry);
                        break;
                    }
                    // Claimed in the middle of the tile, with at least two K steps to go after
                    // the next one: the tile pauses after the next step (storing and reloading
                    // its accumulators costs about what two steps of the tile do; a claim
                    // waits for every step the block does first). Looked at once this step's
                    // loads are issued, while the producer waits for the consumers anyway. The
                    // claim is looked at first: unclaimed, a step costs one comparison more.
                    if (seen > ticket.level) [[unlikely]]
                        pause_next = pausing && kblocks - (kb + 2) >= 2 && !taker.last && !taker.leaving &&
                                     taker.reserve_pause(ticket, slot, entry);
                }
                // A block that paused its tile leaves, unless it is the last block out: that one
                // takes what is left, its own paused tile among it (so it looks at the list).
                w = !dynamic ? Tile{u + gridDim.x, 0, Tile::NO_SLOT}
                    : leaves   ? none
                    : pausing  ? taker.next_tile(ticket, units, (int)ps.seen_claim, paused || ps.seen_paused, true)
                               : taker.next_tile(ticket, units, -1, false, false);
            }
            if (dynamic) {
                left = taker.leave_word();
                mbar_wait(empty + 8 * stage, phase ^ 1);
                unit[stage] = END;
                mbar_arrive(full + 8 * stage);
            }
            ps.producer_done = 1;
            return;
        }
        if (t != 0) return;
        int stage = 0;
        unsigned phase = 0;
        Taker taker;
        taker.init(ticket, units);
        const bool dynamic = RS_COUNTED && Taker::dynamic(ticket, units);
        if (RS_COUNTED) trace_start(ticket);
        // A launch that takes all (RsTicket.chain: a continuation, or a launch one follows)
        // does no first unit: it takes every unit from the counter, or has none to do.
        for (u64 u = dynamic ? taker.first(ticket, units, 1) : RS_COUNTED && takes_all(ticket) ? units : blockIdx.x;
             u < units;) {
            unsigned m0, n0;
            tile_origin(u, p, tiles_m, tiles_n, BM, BN, m0, n0);
            for (int kb = 0; kb < kblocks; ++kb) {
                mbar_wait(empty + 8 * stage, phase ^ 1);
                if (dynamic && kb == 0) unit[stage] = u;
                // The first unit's first stages: B and the bytes are already asked for.
                const bool asked = kb < early && u == blockIdx.x;
                if (!asked) mbar_expect_tx(full + 8 * stage, STAGE_BYTES);
                tma_load(base + stage * STAGE_BYTES, &tp.map_a, kb * BK, (int)m0, full + 8 * stage);
                if (!asked) load_b(kb, n0, stage);
                if (++stage == STAGES) {
                    stage = 0;
                    phase ^= 1;
                }
            }
            u = dynamic ? taker.take(ticket, units, 1) : u + gridDim.x;
        }
        if (dynamic) {
            left = taker.leave_word();
            mbar_wait(empty + 8 * stage, phase ^ 1);
            unit[stage] = END;
            mbar_arrive(full + 8 * stage);
        }
        return;
    }

    // Consumers: warpgroup 1 takes rows 0–63 of the tile, warpgroup 2 rows 64–127.
    if constexpr (CONSUMERS == 2) asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(CONSUMER_REGS));
    const int half = wg - 1, warp = t / 32, lane = t % 32;
    int stage = 0;
    unsigned phase = 0;
    const __half* R = p.residual ? rs::ptr<const __half>(p.residual) : nullptr;
    const __half* bias = p.bias ? rs::ptr<const __half>(p.bias) : nullptr;
    __half* C = rs::ptr<__half>(p.c);
    const bool packed = p.b_layout == RS_B_TILES;
    const bool vec = (p.ldc & 7) == 0 && (p.c & 15) == 0 && (!R || ((p.ldr & 7) == 0 && (p.residual & 15) == 0)) &&
                     (p.bias & 15) == 0;
    // In the plain order (no counter, or no more units than blocks in a launch that does
    // first units) the consumers follow it themselves, as the producer does.
    const bool dynamic = RS_COUNTED && Taker::dynamic(ticket, units);
    for (u64 u = RS_COUNTED && takes_all(ticket) ? units : blockIdx.x;; u += gridDim.x) {
        // A paused tile goes on from K step k0 with the accumulators in `slot`.
        unsigned k0 = 0, slot = Tile::NO_SLOT;
        if (dynamic) {
            mbar_wait(full + 8 * stage, phase);
            u = unit[stage];
            if (u == END) break;
            if (PAUSES && pausing) {
                k0 = (unsigned)(u >> 32) & 0xffff;
                slot = (unsigned)(u >> 48) - 1;
                u &= 0xffffffffu;
            }
        } else if (u >= units) {
            break;
        }
        unsigned m0, n0;
        tile_origin(u, p, tiles_m, tiles_n, BM, BN, m0, n0);
        float d[BN / 2];
        if constexpr (PAUSES) {
            // A paused tile: its accumulators from the slot, once the pausing block's
            // warpgroup has stored them; then the slot's words are reset, and the slot freed
            // by the last warpgroup to load it.
            const unsigned bar = 1 + half;  // this warpgroup's named barrier
            const bool resumed = pausing && slot != Tile::NO_SLOT;
            if (resumed) {
                if (t == 0) {
                    while (!load_acquire(slot_ready(ticket, slot, half))) __nanosleep(64);
                    *slot_ready(ticket, slot, half) = 0;
                }
                named_barrier(bar, 128);
            }
            // (The slot's address only where resumed: a launch that takes no units from a
            // counter, a traced one of the plain order, has no unit area to read it from.)
            const float* src = resumed ? slot_data(ticket, slot) + 4 * (half * 128 + t) : nullptr;
            load_accumulators<BN>(d, resumed, src, SLOT_STRIDE);
            if (resumed) {
                __threadfence();
                named_barrier(bar, 128);
                if (t == 0 && atomicAdd(slot_loaded(ticket, slot), 1u) == CONSUMERS - 1) {
                    *slot_loaded(ticket, slot) = 0;
                    __threadfence();
                    free_slot(ticket, slot);
                }
            }
        } else {
#pragma unroll
            for (int i = 0; i < BN / 2; ++i) d[i] = 0.0f;
        }
        // One K step's wgmma group stays in flight while the next is issued; a stage is
        // released once the group reading it has completed.
        int held = -1;
        if constexpr (PAUSES) {
            bool paused = false;
            for (int kb = k0; kb < kblocks; ++kb) {
                mbar_wait(full + 8 * stage, phase);
                const unsigned a = base + stage * STAGE_BYTES + half * 64 * BK * 2,
                               b = base + stage * STAGE_BYTES + BM * BK * 2;
                wgmma_fence();
#pragma unroll
                for (int j = 0; j < BK / 16; ++j)
                    mma_step<BN>(d, desc(a + 32 * j),
                                 packed ? desc64(b + (j / 2) * 512 + 32 * (j % 2), 1024) : desc(b + 32 * j));
                wgmma_commit();
                // Read once the products are issued, off the way from the data to them.
                const u64 mark = pausing ? ld_shared_u64(unit_at + 8 * stage) : 0;
                wgmma_wait<1>();
                if (held >= 0) mbar_arrive(empty + 8 * held);
                held = stage;
                if (++stage == STAGES) {
                    stage = 0;
                    phase ^= 1;
                }
                if ((mark & (PAUSE | 0xffffffffffffull)) == (PAUSE | (u64)kb << 32 | u)) {
                    // Paused after this K step: the accumulators of the steps up to it into
                    // the slot; the next stage starts a tile or ends.
                    const unsigned to = (unsigned)(mark >> 48 & 0x7ff) - 1;
                    wgmma_wait<0>();
                    mbar_arrive(empty + 8 * held);
                    float* dst = slot_data(ticket, to) + 4 * (half * 128 + t);
#pragma unroll
                    for (int i = 0; i < BN / 2; i += 4)
                        __stcg(reinterpret_cast<float4*>(dst + (i / 4) * SLOT_STRIDE),
                               make_float4(d[i], d[i + 1], d[i + 2], d[i + 3]));
                    __threadfence();
                    named_barrier(1 + half, 128);
                    if (t == 0) store_release(slot_ready(ticket, to, half), 1);
                    paused = true;
                    break;
                }
            }
            if (paused) continue;
        } else {
        for (int kb = 0; kb < kblocks; ++kb) {
            mbar_wait(full + 8 * stage, phase);
            const unsigned a = base + stage * STAGE_BYTES + half * 64 * BK * 2, b = base + stage * STAGE_BYTES + BM * BK * 2;
            wgmma_fence();
#pragma unroll
            for (int j = 0; j < BK / 16; ++j)
                mma_step<BN>(d, desc(a + 32 * j),
                             packed ? desc64(b + (j / 2) * 512 + 32 * (j % 2), 1024) : desc(b + 32 * j));
            wgmma_commit();
            wgmma_wait<1>();
            if (held >= 0) mbar_arrive(empty + 8 * held);
            held = stage;
            if (++stage == STAGES) {
                stage = 0;
                phase ^= 1;
            }
        }
        }
        wgmma_wait<0>();
        if (held >= 0) mbar_arrive(empty + 8 * held);
        // The epilogue goes through shared memory, 32 columns at a time: each warp writes the
        // 16×32 chunk of its accumulators to its rows of the warpgroup's buffer (unrolled,
        // compile-time register indexes; a warp's fragment is 16 whole rows, so warps need
        // not wait for each other), then each lane stores runs of 8 columns of two rows
        // (16-byte loads of the bias and residual and 16-byte stores), so the epilogue's code
        // is small (one chunk's, not BN/4 pairs': an unrolled epilogue of a 128×256 tile was
        // ~200 KB of instructions) and its global accesses are coalesced.
        // d[4i + e]: row 16·warp + lane/4 (+8 for e ≥ 2), column 8i + 2·(lane%4) (+1 for odd e).
        // With BN = 48 or 80 the last chunk has 16 columns.
        float* chunk = epi + half * 64 * EPI_STRIDE;
        constexpr int CHUNKS = (BN + 31) / 32;
        static_assert(BN % 16 == 0, "chunks of 32 columns, the last one possibly of 16");
#pragma unroll 1
        for (int c = 0; c < CHUNKS; ++c) {
            __syncwarp();  // this warp has read its rows of the previous chunk
            // Chunk c's accumulators, d[16c …16c + 15]: one unrolled copy of the stores per
            // chunk, of which the one for c runs (registers cannot be indexed at run time).
#pragma unroll
            for (int cc = 0; cc < CHUNKS; ++cc) {
                if (cc != c) continue;
#pragma unroll
                for (int i = 0; i < 4; ++i)
#pragma unroll
                    for (int h = 0; h < 2; ++h) {
                        if (32 * cc + 8 * i >= BN) continue;
                        float2* dst = reinterpret_cast<float2*>(chunk + (warp * 16 + lane / 4 + 8 * h) * EPI_STRIDE +
                                                                8 * i + 2 * (lane % 4));
                        *dst = make_float2(d[16 * cc + 4 * i + 2 * h], d[16 * cc + 4 * i + 2 * h + 1]);
                    }
            }
            __syncwarp();
            // Each lane stores rows lane/4 and lane/4 + 8 of the warp's 16, columns 8·(lane%4) + 0…7.
            const unsigned r = warp * 16 + lane / 4, c8 = 8 * (lane % 4);
            const unsigned row = m0 + half * 64 + r, col = n0 + 32 * c + c8;
            const bool in_tile = BN % 32 == 0 || 32 * c + c8 < BN;  // a 48- or 80-wide tile's last chunk
            if (row < p.m && col < p.n && in_tile) store8x2(p, C, R, bias, row, col, chunk + r * EPI_STRIDE + c8, vec);
        }
    }
    if (RS_COUNTED && wg == 1 && t == 0 && ticket.trace)
        trace_leave(ticket, dynamic ? left : Taker::plain_word(units));
}

#endif

}  // namespace

extern __shared__ __align__(1024) unsigned char rs_gemm_w_smem[];

// The entry points, one per tile: gemm_wgmma<BN, consumer warpgroups> on sm_90a, which calls
// WAIT (the wait for the kernel before) once it has asked for its first weights.
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define RS_GEMM_WGMMA(BN, CONSUMERS, WAIT) gemm_wgmma<RS_COUNTED, BN, CONSUMERS>(p, rs_gemm_w_smem, t, WAIT)
#define RS_GEMM_WGMMA_PAUSED(BN, CONSUMERS, WAIT) gemm_wgmma<true, BN, CONSUMERS>(p, rs_gemm_w_smem, t, paused_wait(WAIT))
#else
#define RS_GEMM_WGMMA(BN, CONSUMERS, WAIT) ((WAIT)(), __trap())
#define RS_GEMM_WGMMA_PAUSED(BN, CONSUMERS, WAIT) ((WAIT)(), __trap())
#endif

RS_KERNEL_PAIR(__launch_bounds__(RS_GEMM_W_THREADS, 1), gemm_f16_wgmma_128x48, GemmTmaParams) {
    RS_GEMM_WGMMA(48, 2, [] { rs::pdl_sync(); });
}

RS_KERNEL_PAIR(__launch_bounds__(RS_GEMM_W_THREADS, 1), gemm_f16_wgmma_128x64, GemmTmaParams) {
    RS_GEMM_WGMMA(64, 2, [] { rs::pdl_sync(); });
}

RS_KERNEL_PAIR(__launch_bounds__(RS_GEMM_W_THREADS, 1), gemm_f16_wgmma_128x80, GemmTmaParams) {
    RS_GEMM_WGMMA(80, 2, [] { rs::pdl_sync(); });
}

RS_KERNEL_PAIR(__launch_bounds__(RS_GEMM_W_THREADS, 1), gemm_f16_wgmma_128x96, GemmTmaParams) {
    RS_GEMM_WGMMA(96, 2, [] { rs::pdl_sync(); });
}

RS_KERNEL_PAIR(__launch_bounds__(RS_GEMM_W_THREADS, 1), gemm_f16_wgmma_128x128, GemmTmaParams) {
    RS_GEMM_WGMMA(128, 2, [] { rs::pdl_sync(); });
}

RS_KERNEL_PAIR(__launch_bounds__(RS_GEMM_W_THREADS, 1), gemm_f16_wgmma_128x160, GemmTmaParams) {
    RS_GEMM_WGMMA(160, 2, [] { rs::pdl_sync(); });
}

RS_KERNEL_PAIR(__launch_bounds__(RS_GEMM_W_THREADS, 1), gemm_f16_wgmma_128x192, GemmTmaParams) {
    RS_GEMM_WGMMA(192, 2, [] { rs::pdl_sync(); });
}

RS_KERNEL_PAIR(__launch_bounds__(RS_GEMM_W_THREADS, 1), gemm_f16_wgmma_128x256, GemmTmaParams) {
    RS_GEMM_WGMMA(256, 2, [] { rs::pdl_sync(); });
}

RS_KERNEL_PAIR(__launch_bounds__(RS_GEMM_WS_THREADS, 1), gemm_f16_wgmma_64x32, GemmTmaParams) {
    RS_GEMM_WGMMA(32, 1, [] { rs::pdl_sync(); });
}

RS_KERNEL_PAIR(__launch_bounds__(RS_GEMM_WS_THREADS, 1), gemm_f16_wgmma_64x64, GemmTmaParams) {
    RS_GEMM_WGMMA(64, 1, [] { rs::pdl_sync(); });
}

// The counted builds whose claimed blocks pause their tiles (`<name>_paused`: the runtime
// launches them where pauses are on, runtime/claims.rs).
#define RS_GEMM_PAUSED(NAME, THREADS, BN, CONSUMERS)                                                      \
    RS_KERNEL void __launch_bounds__(THREADS, 1) NAME##_paused(const __grid_constant__ GemmTmaParams p, RS_TICKET t) { \
        RS_GEMM_WGMMA_PAUSED(BN, CONSUMERS, [] { rs::pdl_sync(); });                                      \
    }
RS_GEMM_PAUSED(gemm_f16_wgmma_128x48, RS_GEMM_W_THREADS, 48, 2)
RS_GEMM_PAUSED(gemm_f16_wgmma_128x64, RS_GEMM_W_THREADS, 64, 2)
RS_GEMM_PAUSED(gemm_f16_wgmma_128x80, RS_GEMM_W_THREADS, 80, 2)
RS_GEMM_PAUSED(gemm_f16_wgmma_128x96, RS_GEMM_W_THREADS, 96, 2)
RS_GEMM_PAUSED(gemm_f16_wgmma_128x128, RS_GEMM_W_THREADS, 128, 2)
RS_GEMM_PAUSED(gemm_f16_wgmma_128x160, RS_GEMM_W_THREADS, 160, 2)
RS_GEMM_PAUSED(gemm_f16_wgmma_128x192, RS_GEMM_W_THREADS, 192, 2)
RS_GEMM_PAUSED(gemm_f16_wgmma_128x256, RS_GEMM_W_THREADS, 256, 2)
RS_GEMM_PAUSED(gemm_f16_wgmma_64x32, RS_GEMM_WS_THREADS, 32, 1)
RS_GEMM_PAUSED(gemm_f16_wgmma_64x64, RS_GEMM_WS_THREADS, 64, 1)
