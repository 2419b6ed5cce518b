//! Params of the GEMM kernels: work units (tiles) and constraints of `GemmParams` and
//! `GemmTmaParams`, which GEMM kernel runs an M × N × K GEMM, and the tensor maps the Hopper
//! (TMA + wgmma) kernels read.

use super::{ensure, has, key, optional, pointers, ParamError, Params};
use crate::kernels::abi::*;
use crate::kernels::{
    Kernel, KernelId, GEMM_LARGE, GEMM_PACKED_8, GEMM_PACKED_HALVES_8, GEMM_PACKED_HALVES_K6_8, GEMM_PACKED_K3_8,
    GEMM_PACKED_K4_8, GEMM_PACKED_NORM_8, GEMM_PACKED_SHORT_8, GEMM_SKINNY, GEMM_SKINNY_8, GEMM_SMALL, GEMM_STREAM_8,
    GEMM_WGMMA, GEMM_WGMMA_80, GEMM_WGMMA_96, GEMM_WGMMA_MID, GEMM_WGMMA_NARROW, GEMM_WGMMA_SLIM, GEMM_WGMMA_SMALL,
    GEMM_WGMMA_SMALL_WIDE, GEMM_WGMMA_WIDE, GEMM_WGMMA_WIDER_MID,
};

/// The GEMM kernel for `m` rows: the skinny kernels up to 8 and 32 rows (decode), 64×64 tiles
/// up to 64, 128×128 otherwise.
pub fn gemm_kernel(m: u32) -> Kernel<GemmParams> {
    if m <= 8 {
        GEMM_SKINNY_8
    } else if m <= RS_GEMM_T_MAX_M {
        GEMM_SKINNY
    } else if m <= RS_GEMM_S_BM {
        GEMM_SMALL
    } else {
        GEMM_LARGE
    }
}

impl Params for GemmParams {
    fn units(&self, k: KernelId) -> u64 {
        let (bm, bn) = match k {
            KernelId::GemmSmall => (RS_GEMM_S_BM, RS_GEMM_S_BN),
            KernelId::GemmSkinny | KernelId::GemmSkinny8 => (RS_GEMM_T_MAX_M, RS_GEMM_T_BN),
            _ if reads_packed_decode(k) => (RS_GEMM_T_MAX_M, RS_GEMM_T_BN),
            _ => (RS_GEMM_L_BM, RS_GEMM_L_BN),
        };
        u64::from(self.batch) * u64::from(self.m.div_ceil(bm)) * u64::from(self.n.div_ceil(bn))
    }
    /// A decode GEMM on packed weights takes a ring of as many stages as its blocks read (at
    /// most RS_GEMM_D_RING_BYTES), and the ring's barriers (kernels/gemm_packed.cu, ring_bytes).
    fn dynamic_smem(&self, k: KernelId, blocks: u32) -> Option<u32> {
        if !reads_packed_decode(k) || blocks == 0 {
            return None;
        }
        let chunk = packed_chunk(self.k)?;
        let stage = chunk * RS_GEMM_T_BN * 2;
        let stages = self.units(k).div_ceil(u64::from(blocks)) * u64::from(self.k / chunk);
        (stages < u64::from(RS_GEMM_D_RING_BYTES / stage))
            .then(|| stages.max(1) as u32 * stage + 2 * 8 * RS_GEMM_D_MAX_STAGES)
    }
    fn check(&self, k: KernelId) -> Result<(), ParamError> {
        let a = RS_GEMM_K_ALIGN;
        if matches!(k, KernelId::GemmSkinny | KernelId::GemmSkinny8 | KernelId::GemmStream8) || reads_packed_decode(k) {
            let max = if k == KernelId::GemmSkinny { RS_GEMM_T_MAX_M } else { 8 };
            ensure(self.m <= max, k, || format!("M = {} exceeds its {max} rows", self.m))?;
        }
        ensure(self.k >= a && self.k % a == 0, k, || format!("K = {} must be a positive multiple of {a}", self.k))?;
        if k == KernelId::GemmStream8 {
            let s = RS_GEMM_D_SLICE;
            ensure(self.k % s == 0, k, || format!("K = {} must be a multiple of its {s}-column slices", self.k))?;
        }
        if reads_packed_decode(k) {
            let norm = self.norm != RS_NORM_NONE;
            ensure(packed_decode_kernel(self.k, norm).is_some_and(|p| p.id() == k), k, || {
                format!(
                    "K = {} (fused norm: {norm}) is not this kernel's: {} takes one chunk ({RS_GEMM_P_SHORT_K} or \
                     {RS_GEMM_P_KC}), {} two chunks of {RS_GEMM_P_KC} and {} the same with a fused norm, {} three, {} \
                     four ({RS_GEMM_P_MAX_K}), {} 6144 and {} 8192 (a lane keeps its slices of A in registers, at most \
                     in two halves)",
                    self.k,
                    KernelId::GemmPackedShort8,
                    KernelId::GemmPacked8,
                    KernelId::GemmPackedNorm8,
                    KernelId::GemmPackedK3x8,
                    KernelId::GemmPackedK4x8,
                    KernelId::GemmPackedHalvesK6x8,
                    KernelId::GemmPackedHalves8,
                )
            })?;
        }
        ensure(self.lda >= self.k && self.lda % a == 0, k, || format!("lda = {} (K = {})", self.lda, self.k))?;
        ensure(self.ldb >= self.k && self.ldb % a == 0, k, || format!("ldb = {} (K = {})", self.ldb, self.k))?;
        ensure(self.act <= RS_ACT_SWIGLU, k, || format!("unknown activation {}", self.act))?;
        let cols = if self.act == RS_ACT_SWIGLU { self.n / 2 } else { self.n };
        ensure(self.ldc >= cols, k, || format!("ldc = {} ({cols} output columns)", self.ldc))?;
        self.check_swiglu(k)?;
        ensure(self.b_stable <= 1, k, || format!("b_stable = {} (0 or 1)", self.b_stable))?;
        self.check_layout(k)?;
        pointers(k, &[("a", self.a, 16), ("b", self.b, 16), ("c", self.c, 2)])?;
        optional(k, &[("bias", self.bias, 2), ("residual", self.residual, 2)])?;
        if self.residual != 0 {
            ensure(self.ldr >= self.n, k, || format!("ldr = {} (N = {})", self.ldr, self.n))?;
        }
        let strides = [self.stride_a, self.stride_b, self.stride_c, self.stride_r];
        ensure(strides.iter().all(|s| s % 8 == 0), k, || format!("batch strides {strides:?} must be multiples of 8"))?;
        self.check_norm(k)
    }
    fn shape_key(&self) -> u64 {
        key(&[self.m, self.n, self.k, self.batch, self.lda, self.ldb, self.ldc, self.ldr, self.act, self.norm]
            .map(u64::from)
            .into_iter()
            .chain([has(self.bias), has(self.residual), has(self.norm_beta)])
            .collect::<Vec<_>>())
    }
}

/// Whether GEMM kernel `k` can normalise its input rows itself (`GemmParams.norm`).
pub fn fuses_norm(k: KernelId) -> bool {
    use KernelId::*;
    matches!(k, GemmSkinny | GemmSkinny8 | GemmStream8 | GemmPackedShort8 | GemmPackedNorm8 | GemmPackedK4x8)
}

/// Whether `k` is a decode GEMM on packed weights ([`packed_decode_kernel`]).
fn reads_packed_decode(k: KernelId) -> bool {
    use KernelId::*;
    matches!(
        k,
        GemmPacked8
            | GemmPackedNorm8
            | GemmPackedK3x8
            | GemmPackedShort8
            | GemmPackedK4x8
            | GemmPackedHalvesK6x8
            | GemmPackedHalves8
    )
}

/// The decode GEMM on packed weights (sm_90, M ≤ 8) for weights of `k` columns, with a fused
/// input `norm` or not, if one takes them: `gemm_f16_packed_short_m8` for one chunk
/// (RS_GEMM_P_SHORT_K = 768, or RS_GEMM_P_KC), `gemm_f16_packed_m8` for two chunks
/// (`gemm_f16_packed_norm_m8` with the norm), `gemm_f16_packed_k3_m8` for three,
/// `gemm_f16_packed_k4_m8` for four (RS_GEMM_P_MAX_K), `gemm_f16_packed_halves_k6_m8` and
/// `gemm_f16_packed_halves_m8` for twice three and twice four chunks (A's slices in two halves).
/// Kernels of their own, so that each one's machine code is compiled for its own cases and
/// holds no other's (kernels/gemm_packed.cu says what sharing one cost). Where the kernel
/// returned does not fuse a norm ([`fuses_norm`]: three chunks and the halves), the caller
/// normalises the rows first.
pub fn packed_decode_kernel(k: u32, norm: bool) -> Option<Kernel<GemmParams>> {
    const TWO: u32 = 2 * RS_GEMM_P_KC;
    const THREE: u32 = 3 * RS_GEMM_P_KC;
    const EIGHT: u32 = 2 * RS_GEMM_P_MAX_K;
    match k {
        RS_GEMM_P_SHORT_K | RS_GEMM_P_KC => Some(GEMM_PACKED_SHORT_8),
        TWO if norm => Some(GEMM_PACKED_NORM_8),
        TWO => Some(GEMM_PACKED_8),
        THREE => Some(GEMM_PACKED_K3_8),
        RS_GEMM_P_MAX_K => Some(GEMM_PACKED_K4_8),
        _ if k == 2 * THREE => Some(GEMM_PACKED_HALVES_K6_8),
        EIGHT => Some(GEMM_PACKED_HALVES_8),
        _ => None,
    }
}

/// The columns of a chunk of `k`-column weights in the packed layout (abi.h, PackParams), if
/// it takes `k`: RS_GEMM_P_KC where `k` is a multiple of it, or all of a shorter `k` that is a
/// multiple of 256 (each of the packed GEMM's 8 warps has as many 32-column slices).
pub fn packed_chunk(k: u32) -> Option<u32> {
    let warp_slices = RS_GEMM_D_CONSUMERS * RS_GEMM_D_SLICE;
    match k {
        0 => None,
        _ if k % RS_GEMM_P_KC == 0 => Some(RS_GEMM_P_KC),
        _ if k < RS_GEMM_P_KC && k % warp_slices == 0 => Some(k),
        _ => None,
    }
}

/// Whether a decode GEMM on packed weights ([`packed_decode_kernel`], sm_90) takes weights of
/// `k` columns: RS_GEMM_P_SHORT_K (768, one chunk), a multiple of RS_GEMM_P_KC up to
/// RS_GEMM_P_MAX_K, or 6,144 and 8,192 (A's slices in two halves). An engine
/// packs such weights at load ([`PackParams`], `pack_tiles_f16`) and runs their decode GEMMs
/// (M ≤ 8) on it; their prefill GEMMs read them too (the wgmma GEMMs' packed view), the
/// others need the row-major weights.
pub fn packs_decode_weights(k: u32) -> bool {
    packed_decode_kernel(k, false).is_some()
}

impl PackParams {
    /// Halves of the packed copy of `n` × `k` weights: whole tiles of RS_GEMM_T_BN rows.
    pub fn packed_len(n: u32, k: u32) -> u64 {
        u64::from(n.div_ceil(RS_GEMM_T_BN)) * u64::from(RS_GEMM_T_BN) * u64::from(k)
    }
}

impl Params for PackParams {
    fn units(&self, _: KernelId) -> u64 {
        u64::from(self.n.div_ceil(RS_GEMM_T_BN))
    }
    fn check(&self, k: KernelId) -> Result<(), ParamError> {
        let kc = RS_GEMM_P_KC;
        ensure(self.n >= 1, k, || "n = 0".into())?;
        ensure(self.unpack <= 1, k, || format!("unpack = {} (0 or 1)", self.unpack))?;
        ensure(self.pairs <= 1, k, || format!("pairs = {} (0 or 1)", self.pairs))?;
        ensure(self.pairs == 0 || self.n % RS_GEMM_T_BN == 0, k, || {
            format!("n = {}: gate/up pairs fill whole tiles of {RS_GEMM_T_BN} rows", self.n)
        })?;
        ensure(packed_chunk(self.k).is_some(), k, || {
            format!("k = {} must be a positive multiple of {kc}, or below it of 256", self.k)
        })?;
        pointers(k, &[("src", self.src, 16), ("dst", self.dst, 16)])?;
        let (rows, tiles) = (2 * u64::from(self.n) * u64::from(self.k), 2 * PackParams::packed_len(self.n, self.k));
        let (src_end, dst_end) =
            if self.unpack == 1 { (self.src + tiles, self.dst + rows) } else { (self.src + rows, self.dst + tiles) };
        ensure(dst_end <= self.src || src_end <= self.dst, k, || "dst overlaps src".into())
    }
    fn shape_key(&self) -> u64 {
        key(&[u64::from(self.n), u64::from(self.k), u64::from(self.pairs)])
    }
}

impl GemmParams {
    /// C (M × N) = A (M × K) · Bᵀ (N × K) at addresses `a`, `b`, `c`: one GEMM of packed
    /// row-major matrices, nothing fused; the rest of the fields set with `..` on it.
    pub fn dense(a: u64, b: u64, c: u64, m: u32, n: u32, k: u32) -> GemmParams {
        GemmParams { a, b, c, m, n, k, batch: 1, lda: k, ldb: k, ldc: n, ldr: n, ..Default::default() }
    }

    /// B packed (`RS_B_TILES`): read by the wgmma GEMMs and the packed decode GEMMs, which
    /// need it; packed weights have K a whole number of chunks ([`packed_chunk`]) and K a
    /// row. (The tensor maps are encoded for `b_layout`: params of one layout with the maps of
    /// the other are not made by `runtime::gemm_tma_params`.)
    fn check_layout(&self, k: KernelId) -> Result<(), ParamError> {
        ensure(self.b_layout <= RS_B_TILES, k, || format!("unknown b_layout {}", self.b_layout))?;
        if reads_packed_decode(k) {
            ensure(self.b_layout == RS_B_TILES, k, || "B must be packed (pack_tiles_f16)".into())?;
        }
        if self.b_layout == RS_B_ROWS {
            return Ok(());
        }
        let reads_tiles =
            reads_packed_decode(k) || HOPPER_PREFILL_GEMMS.iter().chain(&HOPPER_SMALL_GEMMS).any(|g| g.id() == k);
        ensure(reads_tiles, k, || {
            "packed B (b_layout 1): only the wgmma GEMMs and the packed decode GEMMs read it".into()
        })?;
        ensure(packed_chunk(self.k).is_some(), k, || {
            format!("K = {}: packed B has whole {RS_GEMM_P_KC}-column chunks, or one of a multiple of 256", self.k)
        })?;
        ensure(self.ldb == self.k, k, || format!("ldb = {} (packed B has K = {} a row)", self.ldb, self.k))?;
        ensure(self.batch == 1, k, || format!("batch = {}: packed B takes batch 1", self.batch))
    }

    /// RS_ACT_SWIGLU: only the packed decode GEMM, on weights packed as gate/up pairs (whole
    /// tiles), nothing else in the epilogue.
    fn check_swiglu(&self, k: KernelId) -> Result<(), ParamError> {
        if self.act != RS_ACT_SWIGLU {
            return Ok(());
        }
        ensure(reads_packed_decode(k), k, || "swiglu epilogue: only the packed decode GEMMs have it".into())?;
        ensure(self.n % RS_GEMM_T_BN == 0, k, || {
            format!("swiglu epilogue: N = {} must be whole tiles of gate/up pairs ({})", self.n, RS_GEMM_T_BN)
        })?;
        ensure(self.bias == 0 && self.residual == 0, k, || "swiglu epilogue: no bias or residual".into())
    }

    /// The fused input norm: only the decode kernels (skinny, streamed) take one, for batch 1,
    /// with gamma and (LayerNorm only) an optional beta.
    fn check_norm(&self, k: KernelId) -> Result<(), ParamError> {
        if self.norm == RS_NORM_NONE {
            return ensure(self.norm_gamma == 0 && self.norm_beta == 0, k, || "norm weights without a norm".into());
        }
        ensure(fuses_norm(k), k, || "only the decode GEMMs (skinny, streamed) fuse an input norm".into())?;
        ensure(self.norm <= RS_NORM_RMS, k, || format!("unknown norm {}", self.norm))?;
        ensure(self.batch == 1, k, || format!("batch = {}: a fused norm takes batch 1", self.batch))?;
        ensure(self.norm_eps >= 0.0 && self.norm_eps.is_finite(), k, || format!("norm_eps = {}", self.norm_eps))?;
        ensure(self.norm == RS_NORM_LAYER || self.norm_beta == 0, k, || "RMSNorm has no beta".into())?;
        pointers(k, &[("norm_gamma", self.norm_gamma, 16)])?;
        optional(k, &[("norm_beta", self.norm_beta, 16)])
    }
}

/// The Hopper GEMM kernels (TMA + wgmma, sm_90a) for M > 64: tiles 128×48, 128×64, 128×80,
/// 128×96, 128×128, 128×160, 128×192 and 128×256, narrowest first.
pub const HOPPER_PREFILL_GEMMS: [Kernel<GemmTmaParams>; 8] = [
    GEMM_WGMMA_SLIM,
    GEMM_WGMMA_NARROW,
    GEMM_WGMMA_80,
    GEMM_WGMMA_96,
    GEMM_WGMMA,
    GEMM_WGMMA_WIDER_MID,
    GEMM_WGMMA_MID,
    GEMM_WGMMA_WIDE,
];

/// The Hopper GEMM kernels for 8 < M ≤ 64: tiles 64×32 and 64×64.
pub const HOPPER_SMALL_GEMMS: [Kernel<GemmTmaParams>; 2] = [GEMM_WGMMA_SMALL, GEMM_WGMMA_SMALL_WIDE];

/// The Hopper GEMM's tile for an `m` × `n` × `k` GEMM (M > 64) on `sms` SMs: the width with
/// the least estimated time, waves of tiles (⌈tiles / sms⌉) × one tile's time. A tile's time,
/// in units of about 2 ns fitted to the kernels' measured times on an H200
/// (docs/kernels-h200.md): BN + 25 per K step of 64 and 7.5·BN for its epilogue (not
/// overlapped with the next tile's main loop), so wide tiles win at large K and narrow ones
/// when K is short or tiles are few. Ties go to the wider tile.
pub fn gemm_wgmma_kernel(m: u32, n: u32, k: u32, sms: u32) -> Kernel<GemmTmaParams> {
    let ksteps = u64::from(k.div_ceil(RS_GEMM_W_BK));
    let cost = |kernel: &Kernel<GemmTmaParams>| {
        let b = tma_boxes(kernel.id());
        let bn = u64::from(b.b_rows);
        b.tiles(m, n).div_ceil(u64::from(sms.max(1))) * (2 * ksteps * (bn + 25) + 15 * bn)
    };
    // min_by_key keeps the first of equals: try the widest first.
    *HOPPER_PREFILL_GEMMS.iter().rev().min_by_key(|k| cost(k)).expect("tiles")
}

/// K above which a decode GEMM streams its weights: with K ≤ 1024 one round of the skinny
/// kernel's loads holds a whole unit, and it starts sooner (but see [`STREAM_TILES_PER_SM`]).
const STREAM_MIN_K: u32 = 1024;

/// Tiles an SM at and above which a decode GEMM of K ≤ 1024 streams its weights all the same:
/// then each SM reads so many weights that its own rate, not HBM's, sets the time, and the
/// streamed kernel's ring reads faster per SM than the skinny kernel's rounds of units. On an
/// H200 (docs/kernels-h200.md, 2026-11-27) the streamed kernel took GPT-2's and gpt2-medium's
/// LM heads (3,142 tiles) 1.14–1.17× faster than the skinny one on 16 to 64 SMs (49 tiles an
/// SM and more) and 0.77–0.96× as fast on 80, 96 and 132 (39, 33 and 24); on 72 (44) GPT-2's
/// 1.14× faster but gpt2-medium's 0.95×, so the crossover falls with K and this one threshold
/// mispicks there; on their layers' GEMMs (at most 256 tiles) never more than 1.05× faster.
const STREAM_TILES_PER_SM: u32 = 40;

/// The Hopper GEMM the library runs for an `m` × `n` × `k` GEMM on a GPU of compute
/// capability `cc` with `sms` SMs, if any: on sm_90, for M ≤ 8 (decode) the streamed kernel
/// when K is a whole number of its slices and K > 1024 or the GEMM has at least
/// [`STREAM_TILES_PER_SM`] tiles of 16 columns an SM (else [`gemm_kernel`]'s kernel runs), for
/// 8 < M ≤ 64 the 64×64 tiles when they give every SM one, else the 64×32 ones (twice as many
/// units streaming the weights); above, [`gemm_wgmma_kernel`]'s tile; elsewhere none (the
/// cubin is sm_90a only).
pub fn hopper_gemm(m: u32, n: u32, k: u32, cc: (u32, u32), sms: u32) -> Option<Kernel<GemmTmaParams>> {
    let many_tiles = n.div_ceil(RS_GEMM_T_BN) >= STREAM_TILES_PER_SM.saturating_mul(sms.max(1));
    match m {
        _ if cc != (9, 0) => None,
        ..=8 if k % RS_GEMM_D_SLICE == 0 && (k > STREAM_MIN_K || many_tiles) => Some(GEMM_STREAM_8),
        ..=8 => None,
        9..=RS_GEMM_WS_BM if n.div_ceil(2 * RS_GEMM_WS_BN) >= sms => Some(GEMM_WGMMA_SMALL_WIDE),
        9..=RS_GEMM_WS_BM => Some(GEMM_WGMMA_SMALL),
        _ => Some(gemm_wgmma_kernel(m, n, k, sms)),
    }
}

/// The boxes the tensor maps of Hopper GEMM `k` load: rows of A and of B — the kernel's work
/// unit, a tile of A-rows × B-rows outputs — and their columns: 64 (128 bytes) with the
/// 128-byte swizzle the wgmma kernels' descriptors expect, or for the streamed kernel a K
/// chunk of RS_GEMM_D_KC columns, without swizzle, in slices of RS_GEMM_D_SLICE.
struct TmaBoxes {
    a_rows: u32,
    b_rows: u32,
    cols: u32,
    swizzle: bool,
    slice: u32,
}

impl TmaBoxes {
    /// Work units (tiles) of an `m` × `n` output.
    fn tiles(&self, m: u32, n: u32) -> u64 {
        u64::from(m.div_ceil(self.a_rows)) * u64::from(n.div_ceil(self.b_rows))
    }
}

fn tma_boxes(k: KernelId) -> TmaBoxes {
    let wgmma = |a_rows, b_rows| TmaBoxes { a_rows, b_rows, cols: RS_GEMM_W_BK, swizzle: true, slice: 0 };
    match k {
        KernelId::GemmStream8 => {
            TmaBoxes { a_rows: 8, b_rows: RS_GEMM_T_BN, cols: RS_GEMM_D_KC, swizzle: false, slice: RS_GEMM_D_SLICE }
        }
        KernelId::GemmWgmmaSmall => wgmma(RS_GEMM_WS_BM, RS_GEMM_WS_BN),
        KernelId::GemmWgmmaSmallWide => wgmma(RS_GEMM_WS_BM, 2 * RS_GEMM_WS_BN),
        KernelId::GemmWgmmaNarrow => wgmma(RS_GEMM_W_BM, RS_GEMM_W_BN_NARROW),
        KernelId::GemmWgmmaWide => wgmma(RS_GEMM_W_BM, RS_GEMM_W_BN_WIDE),
        KernelId::GemmWgmmaMid => wgmma(RS_GEMM_W_BM, RS_GEMM_W_BN_MID),
        KernelId::GemmWgmmaWiderMid => wgmma(RS_GEMM_W_BM, RS_GEMM_W_BN_WIDER_MID),
        KernelId::GemmWgmmaSlim => wgmma(RS_GEMM_W_BM, RS_GEMM_W_BN_SLIM),
        KernelId::GemmWgmma80 => wgmma(RS_GEMM_W_BM, RS_GEMM_W_BN_80),
        KernelId::GemmWgmma96 => wgmma(RS_GEMM_W_BM, RS_GEMM_W_BN_96),
        _ => wgmma(RS_GEMM_W_BM, RS_GEMM_W_BN),
    }
}

/// An FP16 tensor map to encode (the runtime encodes it: `runtime::gemm_tma_params`): a
/// row-major `rows` × `cols` matrix at `ptr` with leading dimension `ld` (elements), read in
/// boxes of `box_cols` columns × `box_rows` rows, with 128-byte swizzle or none; out-of-bounds
/// elements read as zeros. With `slice` > 0 the map is 3-D: a slice of `slice` columns of a
/// row, rows, slices (`cols` a multiple of `slice`), so a box lands in shared memory slice by
/// slice, each slice's rows `slice` elements apart. With `tiles` the matrix is packed
/// (pack_tiles_f16, abi.h) and the map 5-D: an atom (8 rows × 32 columns, stored swizzled),
/// slices of a chunk, halves of a tile, chunks, tiles; a box is a K step's 2 slices of both
/// halves of `box_rows` / 16 tiles, without the map's swizzle (the packing applied it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorMapSpec {
    /// Which operand ("A" or "B"), for messages.
    pub name: &'static str,
    /// Device address of the matrix.
    pub ptr: u64,
    /// Rows.
    pub rows: u32,
    /// Columns.
    pub cols: u32,
    /// Leading dimension, elements.
    pub ld: u32,
    /// Rows per box.
    pub box_rows: u32,
    /// Columns per box.
    pub box_cols: u32,
    /// 128-byte swizzle (else none).
    pub swizzle: bool,
    /// Columns a slice of the 3-D view; 0: a 2-D map.
    pub slice: u32,
    /// The packed layout's 5-D view (`ld` is then `cols`).
    pub tiles: bool,
}

impl TensorMapSpec {
    /// The view's dimensions (elements, innermost first), the byte strides of all but the
    /// first, and the box (elements a dimension).
    pub fn view(&self) -> (Vec<u64>, Vec<u64>, Vec<u32>) {
        let (cols, rows, ld) = (u64::from(self.cols), u64::from(self.rows), u64::from(self.ld));
        if self.tiles {
            let kc = packed_chunk(self.cols).map_or(0, u64::from);
            let (s, bn) = (u64::from(RS_GEMM_D_SLICE), u64::from(RS_GEMM_T_BN));
            // The packing and the GEMMs' checks make K a whole number of chunks and box_rows
            // whole tiles.
            assert!(
                kc > 0 && self.box_rows % RS_GEMM_T_BN == 0,
                "a packed view needs whole chunks and tiles: {} columns, boxes of {} rows",
                self.cols,
                self.box_rows
            );
            let atom = 8 * s; // elements
            return (
                vec![atom, kc / s, 2, cols / kc, rows.div_ceil(bn)],
                vec![atom * 2, kc * 8 * 2, kc * bn * 2, cols * bn * 2],
                vec![atom as u32, 2, 2, 1, self.box_rows / RS_GEMM_T_BN],
            );
        }
        if self.slice == 0 {
            return (vec![cols, rows], vec![ld * 2], vec![self.box_cols, self.box_rows]);
        }
        let s = self.slice;
        // The GEMMs' checks refuse a K that is not a whole number of slices; the box is set so.
        assert!(
            self.cols % s == 0 && self.box_cols % s == 0,
            "a 3-D view needs whole slices: {} and {} columns in slices of {s}",
            self.cols,
            self.box_cols
        );
        (
            vec![u64::from(s), rows, cols / u64::from(s)],
            vec![ld * 2, u64::from(s) * 2],
            vec![s, self.box_rows, self.box_cols / s],
        )
    }
}

impl GemmTmaParams {
    /// Checks `g` for Hopper GEMM `kernel` (batch 1) and returns the tensor maps of A and B
    /// that kernel's tiles read, to encode.
    pub fn map_specs(g: &GemmParams, kernel: Kernel<GemmTmaParams>) -> Result<[TensorMapSpec; 2], ParamError> {
        let k = kernel.id();
        g.check(k)?;
        ensure(g.batch == 1, k, || format!("batch = {} (this kernel does batch 1)", g.batch))?;
        let b = tma_boxes(k);
        let spec = |name, ptr, rows, ld, box_rows| TensorMapSpec {
            name,
            ptr,
            rows,
            cols: g.k,
            ld,
            box_rows,
            box_cols: b.cols,
            swizzle: b.swizzle,
            slice: b.slice,
            tiles: false,
        };
        let mut b_spec = spec("B", g.b, g.n, g.ldb, b.b_rows);
        if g.b_layout == RS_B_TILES {
            b_spec = TensorMapSpec { swizzle: false, slice: 0, tiles: true, ..b_spec };
        }
        Ok([spec("A", g.a, g.m, g.lda, b.a_rows), b_spec])
    }

    /// The params of `g` with its encoded tensor maps (those of [`GemmTmaParams::map_specs`]).
    pub fn with_maps(g: &GemmParams, map_a: RsTensorMap, map_b: RsTensorMap) -> GemmTmaParams {
        GemmTmaParams { map_a, map_b, g: *g }
    }
}

impl Params for GemmTmaParams {
    fn units(&self, k: KernelId) -> u64 {
        tma_boxes(k).tiles(self.g.m, self.g.n)
    }
    fn check(&self, k: KernelId) -> Result<(), ParamError> {
        self.g.check(k)?;
        ensure(self.g.batch == 1, k, || format!("batch = {} (this kernel does batch 1)", self.g.batch))?;
        ensure(self.map_a.opaque != [0; 16] && self.map_b.opaque != [0; 16], k, || {
            "tensor maps not encoded (make the params with runtime::gemm_tma_params)".into()
        })
    }
    fn shape_key(&self) -> u64 {
        self.g.shape_key()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gemm(m: u32, n: u32, k: u32) -> GemmParams {
        GemmParams { ldr: 0, ..GemmParams::dense(256, 512, 1024, m, n, k) }
    }

    #[test]
    fn only_skinny_gemms_fuse_a_norm() {
        let p = GemmParams { norm: RS_NORM_LAYER, norm_gamma: 4096, norm_eps: 1e-5, ..gemm(8, 768, 768) };
        assert!(p.check(KernelId::GemmSkinny8).is_ok());
        assert!(p.check(KernelId::GemmSkinny).is_ok());
        assert!(p.check(KernelId::GemmStream8).is_ok());
        for k in [KernelId::GemmLarge, KernelId::GemmSmall, KernelId::GemmWgmmaSmall] {
            assert!(p.check(k).unwrap_err().reason.contains("fuse"), "{k}");
        }
        let bad = |q: GemmParams| q.check(KernelId::GemmSkinny8).unwrap_err().reason;
        assert!(bad(GemmParams { norm_gamma: 0, ..p }).contains("norm_gamma is null"));
        assert!(bad(GemmParams { norm_gamma: 4098, ..p }).contains("aligned"));
        assert!(bad(GemmParams { norm: 3, ..p }).contains("unknown norm"));
        assert!(bad(GemmParams { batch: 2, ..p }).contains("batch"));
        assert!(bad(GemmParams { norm: RS_NORM_RMS, norm_beta: 8192, ..p }).contains("beta"));
        assert!(bad(GemmParams { norm_eps: f32::NAN, ..p }).contains("norm_eps"));
        assert!(bad(GemmParams { norm: RS_NORM_NONE, ..p }).contains("without a norm"));
        assert_ne!(p.shape_key(), gemm(8, 768, 768).shape_key(), "the norm is part of the shape");
    }

    #[test]
    fn gemm_units_count_tiles() {
        let p = gemm(1000, 2304, 768);
        assert_eq!(p.units(KernelId::GemmLarge), 8 * 18);
        assert_eq!(p.units(KernelId::GemmSmall), 16 * 36);
        assert_eq!(GemmParams { batch: 3, ..gemm(8, 50257, 768) }.units(KernelId::GemmSmall), 3 * 786);
        assert_eq!(GemmParams { batch: 3, ..gemm(8, 50257, 768) }.units(KernelId::GemmSkinny), 3 * 3142);
        assert_eq!(gemm_kernel(8).id(), KernelId::GemmSkinny8);
        assert_eq!(gemm_kernel(9).id(), KernelId::GemmSkinny);
        assert!(gemm(9, 8, 8).check(KernelId::GemmSkinny8).unwrap_err().to_string().contains("M = 9"));
        assert!(gemm(9, 8, 8).check(KernelId::GemmStream8).unwrap_err().to_string().contains("M = 9"));
        assert!(GemmParams { b_stable: 2, ..gemm(8, 8, 8) }.check(KernelId::GemmStream8).is_err());
        // The streamed kernel's units are the skinny kernel's: 16 output columns each.
        let tp = GemmTmaParams {
            map_a: RsTensorMap { opaque: [0; 16] },
            map_b: RsTensorMap { opaque: [0; 16] },
            g: gemm(8, 4100, 4096),
        };
        assert_eq!(tp.units(KernelId::GemmStream8), 257);
        assert!(tp.check(KernelId::GemmStream8).unwrap_err().reason.contains("tensor maps"));
        assert_eq!(gemm_kernel(33).id(), KernelId::GemmSmall);
        assert!(gemm(33, 8, 8).check(KernelId::GemmSkinny).unwrap_err().to_string().contains("M = 33"));
        assert_eq!(gemm_kernel(1024).id(), KernelId::GemmLarge);
    }

    #[test]
    fn the_packed_decode_gemm_takes_whole_chunks_of_k_and_refuses_the_rest() {
        use KernelId::*;
        let (k, k3, k4) = (GemmPacked8, GemmPackedK3x8, GemmPackedK4x8);
        let (normed, k6, halves) = (GemmPackedNorm8, GemmPackedHalvesK6x8, GemmPackedHalves8);
        let gemm = |m, n, kk| GemmParams { b_layout: RS_B_TILES, ..gemm(m, n, kk) };
        assert!(gemm(8, 4096, 4096).check(k4).is_ok());
        assert!(gemm(1, 100, 2048).check(k).is_ok());
        assert!(gemm(8, 100, 2048).check(k).is_ok());
        assert!(GemmParams { b_layout: RS_B_ROWS, ..gemm(8, 100, 2048) }
            .check(k)
            .unwrap_err()
            .reason
            .contains("packed"));
        assert!(GemmParams { b_layout: 2, ..gemm(8, 100, 2048) }.check(k).unwrap_err().reason.contains("b_layout"));
        // Packed B: only the wgmma GEMMs read it besides; whole slices, K a row, batch 1.
        for other in [KernelId::GemmSkinny8, KernelId::GemmSkinny, KernelId::GemmStream8, KernelId::GemmLarge] {
            assert!(gemm(8, 100, 4096).check(other).unwrap_err().reason.contains("only the wgmma"), "{other}");
        }
        assert!(gemm(200, 100, 4096).check(KernelId::GemmWgmma).is_ok());
        assert!(gemm(20, 100, 8192).check(KernelId::GemmWgmmaSmall).is_ok());
        assert!(gemm(200, 100, 200).check(KernelId::GemmWgmma).unwrap_err().reason.contains("chunks"));
        // Each K class has its own entry, which refuses the others'.
        for (kk, id) in [(2048, k), (3072, k3), (4096, k4), (6144, k6), (8192, halves)] {
            assert_eq!(packed_decode_kernel(kk, false).map(|p| p.id()), Some(id), "{kk}");
            assert!(packs_decode_weights(kk) && gemm(8, 100, kk).check(id).is_ok(), "{kk}");
            for other in [k, normed, k3, k4, k6, halves].into_iter().filter(|&o| o != id) {
                assert!(
                    gemm(8, 100, kk).check(other).unwrap_err().reason.contains("not this kernel's"),
                    "{kk} {other}"
                );
            }
        }
        // One chunk: the short kernel, which takes nothing else.
        let short = KernelId::GemmPackedShort8;
        for kk in [768, 1024] {
            assert_eq!(packed_decode_kernel(kk, true).map(|p| p.id()), Some(short), "{kk}");
            assert!(gemm(8, 100, kk).check(short).is_ok(), "{kk}");
            assert!(gemm(8, 100, kk).check(k).unwrap_err().reason.contains("one chunk"), "{kk}");
        }
        for kk in [512, 2048, 4096] {
            assert!(gemm(8, 100, kk).check(short).unwrap_err().reason.contains("registers"), "{kk}");
        }
        assert!(fuses_norm(short) && gemm(8, 32, 768).check(short).is_ok());
        // One chunk below RS_GEMM_P_KC is laid out (whole 256-column slices of the 8 warps), but
        // only 768 has a kernel case; 1,536 (twice 768) is not whole chunks.
        assert_eq!((packed_chunk(512), packed_chunk(768), packed_chunk(800)), (Some(512), Some(768), None));
        assert_eq!((packed_chunk(1536), packed_chunk(3072), packed_chunk(0)), (None, Some(1024), None));
        assert!(gemm(200, 100, 768).check(KernelId::GemmWgmma).is_ok(), "a wgmma GEMM reads one 768-column chunk");
        for kk in [256, 512, 1536, 3000, 4104, 5120, 7168, 10240, 14336] {
            assert!(!packs_decode_weights(kk), "{kk}");
            assert!(gemm(8, 100, kk).check(k).unwrap_err().reason.contains("registers"), "{kk}");
        }
        assert!(gemm(9, 100, 4096).check(k4).unwrap_err().reason.contains("M = 9"));
        assert!(GemmParams { ldb: 4104, ..gemm(8, 100, 4096) }.check(k4).unwrap_err().reason.contains("ldb"));
        assert!(GemmParams { batch: 2, ..gemm(8, 100, 4096) }.check(k4).unwrap_err().reason.contains("batch"));
        assert_eq!(gemm(8, 4100, 4096).units(k), 257, "the skinny kernel's units");
        // A fused norm: at 2,048 on an entry of its own (each holds only the code it runs), at
        // 4,096 on the same entry; three chunks and the halves take none.
        let rms = |kk| GemmParams { norm: RS_NORM_RMS, norm_gamma: 4096, norm_eps: 1e-5, ..gemm(8, 100, kk) };
        assert_eq!(packed_decode_kernel(2048, true).map(|p| p.id()), Some(normed));
        assert!(rms(2048).check(normed).is_ok() && rms(4096).check(k4).is_ok());
        assert!(rms(2048).check(k).unwrap_err().reason.contains("not this kernel's"));
        assert!(gemm(8, 100, 2048).check(normed).unwrap_err().reason.contains("not this kernel's"));
        assert!(fuses_norm(normed) && fuses_norm(k4) && !fuses_norm(k) && !fuses_norm(k3));
        for (kk, id) in [(3072, k3), (6144, k6), (8192, halves)] {
            assert!(!fuses_norm(id) && rms(kk).check(id).unwrap_err().reason.contains("fuse"), "{kk}");
        }
        // The SwiGLU epilogue: whole tiles of gate/up pairs, output N / 2 wide, nothing else.
        let sw = GemmParams { act: RS_ACT_SWIGLU, ldc: 48, ..gemm(8, 96, 2048) };
        assert!(sw.check(k).is_ok());
        assert!(GemmParams { n: 100, ldc: 50, ..sw }.check(k).unwrap_err().reason.contains("gate/up"));
        assert!(GemmParams { ldc: 47, ..sw }.check(k).unwrap_err().reason.contains("ldc"));
        assert!(GemmParams { bias: 1 << 20, ..sw }.check(k).unwrap_err().reason.contains("bias"));
        assert!(GemmParams { act: RS_ACT_SWIGLU + 1, ..sw }.check(k).unwrap_err().reason.contains("activation"));
        let rows = GemmParams { b_layout: RS_B_ROWS, ..sw };
        assert!(rows.check(KernelId::GemmSkinny8).unwrap_err().reason.contains("swiglu"));

        let pack = PackParams { src: 1 << 24, dst: 2 << 24, n: 100, k: 1024, unpack: 0, pairs: 0 };
        let tiles = 2 * 112 * 1024;
        assert_eq!(pack.units(KernelId::PackTiles), 7);
        assert_eq!(PackParams::packed_len(100, 1024), 112 * 1024);
        assert!(pack.check(KernelId::PackTiles).is_ok());
        let bad = |p: PackParams| p.check(KernelId::PackTiles).unwrap_err().reason;
        assert!(bad(PackParams { k: 1056, ..pack }).contains("multiple of 1024"));
        assert!(PackParams { k: 768, ..pack }.check(KernelId::PackTiles).is_ok(), "one chunk of 768");
        assert!(bad(PackParams { k: 800, ..pack }).contains("of 256"));
        assert!(bad(PackParams { n: 0, ..pack }).contains("n = 0"));
        assert!(bad(PackParams { dst: (1 << 24) + 64, ..pack }).contains("overlaps"));
        assert!(bad(PackParams { dst: (1 << 24) - tiles + 16, ..pack }).contains("overlaps"));
        assert!(PackParams { dst: (1 << 24) - tiles, ..pack }.check(KernelId::PackTiles).is_ok());
        assert!(bad(PackParams { src: (1 << 24) + 2, ..pack }).contains("aligned"));
        assert!(bad(PackParams { unpack: 2, ..pack }).contains("unpack"));
        assert!(bad(PackParams { pairs: 1, ..pack }).contains("pairs"), "100 rows are not whole tiles");
        assert!(PackParams { pairs: 1, n: 96, ..pack }.check(KernelId::PackTiles).is_ok());
        // Unpacking reads the packed extent and writes the rows.
        let unpack = PackParams { src: 2 << 24, dst: 1 << 24, unpack: 1, ..pack };
        assert!(unpack.check(KernelId::PackTiles).is_ok());
        assert!(bad(PackParams { dst: (2 << 24) + tiles - 16, ..unpack }).contains("overlaps"));
        assert!(PackParams { dst: (2 << 24) + tiles, ..unpack }.check(KernelId::PackTiles).is_ok());

        // The wgmma GEMMs' packed B: a 5-D view of atoms (8 rows × 32 columns), slices of a
        // chunk, halves of a tile, chunks and tiles; a K step's box is 2 slices of both halves
        // of the tile's 16-row tiles, not swizzled by the map (the packing did).
        let g = GemmParams { b_layout: RS_B_TILES, ..GemmParams::dense(256, 512, 1024, 200, 100, 4096) };
        let [a, b] = GemmTmaParams::map_specs(&g, GEMM_WGMMA_NARROW).unwrap();
        assert!(!a.tiles && a.swizzle);
        assert!(b.tiles && !b.swizzle);
        let (dims, strides, boxes) = b.view();
        assert_eq!(dims, vec![256, 32, 2, 4, 7]);
        assert_eq!(strides, vec![512, 16384, 32768, 4096 * 32]);
        assert_eq!(boxes, vec![256, 2, 2, 1, 4]);
        assert_eq!(boxes.iter().product::<u32>() * 2, 64 * 128, "a K step of the tile's rows");
        // K of one chunk shorter than RS_GEMM_P_KC (768): 24 slices, one chunk.
        let g = GemmParams { b_layout: RS_B_TILES, ..GemmParams::dense(256, 512, 1024, 200, 100, 768) };
        let [_, b] = GemmTmaParams::map_specs(&g, GEMM_WGMMA_NARROW).unwrap();
        let (dims, strides, boxes) = b.view();
        assert_eq!(dims, vec![256, 24, 2, 1, 7]);
        assert_eq!(strides, vec![512, 12288, 24576, 768 * 32]);
        assert_eq!(boxes, vec![256, 2, 2, 1, 4]);
    }

    #[test]
    fn hopper_gemm_serves_prefill_on_sm90_with_tiles_that_fill_the_sms() {
        let h = |m, cc| hopper_gemm(m, 768, 768, cc, 132).map(|k| k.id());
        assert_eq!(h(1024, (9, 0)), Some(KernelId::GemmWgmmaSlim));
        assert_eq!(h(8, (9, 0)), None, "M ≤ 8, K ≤ 1024, few tiles an SM: the skinny kernel");
        let decode = |m, k| hopper_gemm(m, 4096, k, (9, 0), 132).map(|k| k.id());
        assert_eq!(decode(8, 4096), Some(KernelId::GemmStream8));
        assert_eq!(decode(1, 2048), Some(KernelId::GemmStream8));
        assert_eq!(decode(8, 1024), None);
        assert_eq!(decode(8, 4104), None, "K not a whole number of slices: the skinny kernel");
        // K ≤ 1024 streams only where every SM reads many tiles: GPT-2's LM head on few SMs.
        let head = |sms| hopper_gemm(8, 50257, 768, (9, 0), sms).map(|k| k.id());
        assert_eq!(head(132), None, "24 tiles an SM: the skinny kernel");
        assert_eq!(head(96), None, "33 tiles an SM");
        assert_eq!(head(64), Some(KernelId::GemmStream8), "49 tiles an SM");
        assert_eq!(head(78), Some(KernelId::GemmStream8), "40 tiles an SM");
        assert_eq!(head(79), None, "39 tiles an SM");
        assert_eq!(head(16), Some(KernelId::GemmStream8));
        assert!(hopper_gemm(8, 4096, 1024, (9, 0), 16).is_none(), "a layer's GEMM: 16 tiles an SM");
        assert!(hopper_gemm(8, 50264, 1000, (9, 0), 16).is_none(), "K not a whole number of slices");
        let sliced = gemm(8, 4096, 4104).check(KernelId::GemmStream8).unwrap_err().reason;
        assert!(sliced.contains("32-column slices"), "{sliced}");
        assert!(gemm(8, 4096, 4096).check(KernelId::GemmStream8).is_ok());
        assert_eq!(h(9, (9, 0)), Some(KernelId::GemmWgmmaSmall));
        assert_eq!(h(64, (9, 0)), Some(KernelId::GemmWgmmaSmall));
        let small = |n| hopper_gemm(64, n, 4096, (9, 0), 132).map(|k| k.id());
        assert_eq!(small(4096), Some(KernelId::GemmWgmmaSmall), "64 tiles of 64 columns: too few");
        assert_eq!(small(50257), Some(KernelId::GemmWgmmaSmallWide));
        assert_eq!(h(65, (9, 0)), Some(KernelId::GemmWgmmaSlim));
        assert!(h(1024, (8, 0)).is_none() && h(1024, (10, 0)).is_none(), "sm_90a only");
        // BERT-base at batch 8 × 128 (short K, few tiles): one round of tiles that fills most
        // SMs — 128×48 for N = 768 (128 tiles, against 96 of 128×64), 128×160 for 2304 (120,
        // against 96 of 128×192), 128×192 for 3072 (128).
        assert_eq!(gemm_wgmma_kernel(1024, 768, 768, 132).id(), KernelId::GemmWgmmaSlim);
        assert_eq!(gemm_wgmma_kernel(1024, 768, 3072, 132).id(), KernelId::GemmWgmmaSlim);
        assert_eq!(gemm_wgmma_kernel(1024, 2304, 768, 132).id(), KernelId::GemmWgmmaWiderMid);
        assert_eq!(gemm_wgmma_kernel(1024, 3072, 768, 132).id(), KernelId::GemmWgmmaMid);
        // At M = 4096 the same widths run several rounds; the wider tiles stay.
        assert_eq!(gemm_wgmma_kernel(4096, 768, 768, 132).id(), KernelId::GemmWgmmaMid);
        assert_eq!(gemm_wgmma_kernel(4096, 2304, 768, 132).id(), KernelId::GemmWgmmaMid);
        // Long K: the wide tiles, unless they would leave most SMs idle.
        assert_eq!(gemm_wgmma_kernel(4096, 4096, 4096, 132).id(), KernelId::GemmWgmmaWide);
        assert_eq!(gemm_wgmma_kernel(1024, 16384, 2048, 132).id(), KernelId::GemmWgmmaWide);
        assert_eq!(gemm_wgmma_kernel(1024, 2048, 2048, 132).id(), KernelId::GemmWgmma);
        assert_eq!(gemm_wgmma_kernel(1024, 2048, 8192, 132).id(), KernelId::GemmWgmma);
        // A batch-1 encoder (M = 128) on a partition: one round of tiles where 128×48 would
        // take two — BERT-base's QKV (N = 2304) in 29 tiles of 80 and its FFN-up (3072) in 32 of
        // 96 on 32 SMs; on the whole device the 48 tiles of 48 columns fill more SMs.
        assert_eq!(gemm_wgmma_kernel(128, 2304, 768, 32).id(), KernelId::GemmWgmma80);
        assert_eq!(gemm_wgmma_kernel(128, 3072, 768, 32).id(), KernelId::GemmWgmma96);
        assert_eq!(gemm_wgmma_kernel(128, 2304, 768, 132).id(), KernelId::GemmWgmmaSlim);
        assert_eq!(gemm_wgmma_kernel(128, 3072, 768, 132).id(), KernelId::GemmWgmmaSlim);
        let t = GemmTmaParams {
            map_a: RsTensorMap { opaque: [0; 16] },
            map_b: RsTensorMap { opaque: [0; 16] },
            g: gemm(1000, 2304, 768),
        };
        assert_eq!(t.units(KernelId::GemmWgmma), 8 * 18);
        assert_eq!(t.units(KernelId::GemmWgmmaNarrow), 8 * 36);
        assert_eq!(t.units(KernelId::GemmWgmma80), 8 * 29);
        assert_eq!(t.units(KernelId::GemmWgmma96), 8 * 24);
        assert_eq!(t.units(KernelId::GemmWgmmaMid), 8 * 12);
        assert_eq!(t.units(KernelId::GemmWgmmaWide), 8 * 9);
        assert_eq!(t.units(KernelId::GemmWgmmaSmall), 16 * 72);
        let e = t.check(KernelId::GemmWgmma).unwrap_err().to_string();
        assert!(e.contains("tensor maps not encoded"), "{e}");
    }

    #[test]
    fn gemm_refuses_what_it_cannot_do() {
        assert!(gemm(7, 9, 768).check(KernelId::GemmLarge).is_ok());
        let bad = [
            gemm(8, 8, 12),                                           // K not a multiple of 8
            GemmParams { lda: 770, ..gemm(8, 8, 768) },               // lda not a multiple of 8
            GemmParams { a: 258, ..gemm(8, 8, 768) },                 // A misaligned
            GemmParams { ldc: 6, ..gemm(8, 7, 768) },                 // ldc < N
            GemmParams { act: 9, ..gemm(8, 8, 768) },                 // unknown activation
            GemmParams { residual: 2048, ldr: 0, ..gemm(8, 8, 768) }, // ldr < N
            GemmParams { c: 0, ..gemm(8, 8, 768) },                   // null output
        ];
        for p in bad {
            let e = p.check(KernelId::GemmLarge).unwrap_err();
            assert!(e.to_string().starts_with("gemm_f16_128x128: "), "{e}");
        }
    }

    #[test]
    fn a_packed_decode_gemm_takes_a_ring_of_the_stages_its_blocks_read() {
        use KernelId::*;
        let full = GemmPacked8.dynamic_smem_bytes();
        let barriers = 2 * 8 * RS_GEMM_D_MAX_STAGES;
        let chunk = RS_GEMM_P_KC * RS_GEMM_T_BN * 2; // 32 KiB
        let gemm = |n, kk| GemmParams { b_layout: RS_B_TILES, ..gemm(8, n, kk) };
        // Llama-3.2-1B's attention output (128 units of two chunks) on 132 blocks: two stages.
        assert_eq!(gemm(2048, 2048).dynamic_smem(GemmPacked8, 132), Some(2 * chunk + barriers));
        // On 64 blocks, two units each: four.
        assert_eq!(gemm(2048, 2048).dynamic_smem(GemmPacked8, 64), Some(4 * chunk + barriers));
        // GPT-2's width: one stage of 24 KiB where each block has one unit.
        assert_eq!(gemm(1024, 768).dynamic_smem(GemmPackedShort8, 132), Some(768 * 32 + barriers));
        // Blocks that read more stages than the whole ring holds take the kernel's own.
        assert_eq!(gemm(16384, 2048).dynamic_smem(GemmPackedNorm8, 132), None);
        assert_eq!(gemm(2048, 8192).dynamic_smem(GemmPackedHalves8, 132), None);
        assert_eq!(gemm(2048, 2048).dynamic_smem(GemmPacked8, 1), None);
        assert!(full > 6 * chunk);
        // Other kernels, and no blocks, take their own.
        assert_eq!(gemm(2048, 2048).dynamic_smem(GemmStream8, 132), None);
        assert_eq!(gemm(2048, 2048).dynamic_smem(GemmPacked8, 0), None);
    }

    #[test]
    fn shape_keys_ignore_addresses_but_not_dimensions() {
        let a = gemm(1024, 768, 768);
        assert_eq!(a.shape_key(), GemmParams { a: 4096, c: 8192, ..a }.shape_key());
        assert_ne!(a.shape_key(), gemm(1024, 768, 3072).shape_key());
        assert_ne!(a.shape_key(), GemmParams { bias: 2, ..a }.shape_key());
    }
}
