//! What each kernel's params mean to the runtime: how many work units a launch has, and
//! whether the params meet the constraints its `.cu` header documents. Pure code; the
//! runtime checks every launch with it, so a shape a kernel does not support is an error,
//! never a silently wrong result.

use super::abi::*;
use super::{
    Kernel, KernelId, GEMM_LARGE, GEMM_SKINNY, GEMM_SKINNY_8, GEMM_SMALL, GEMM_STREAM_8, GEMM_WGMMA, GEMM_WGMMA_MID,
    GEMM_WGMMA_NARROW, GEMM_WGMMA_SLIM, GEMM_WGMMA_SMALL, GEMM_WGMMA_SMALL_WIDE, GEMM_WGMMA_WIDE, GEMM_WGMMA_WIDER_MID,
};

/// Params refused before launch, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kernel}: {reason}")]
pub struct ParamError {
    /// The kernel.
    pub kernel: KernelId,
    /// What is wrong.
    pub reason: String,
}

/// A kernel parameter struct: its launch's work units and its constraints.
pub trait Params: Copy + Send + Sync + 'static {
    /// Work units of `kernel` launched with these params (grid-agnostic kernels loop over them).
    fn units(&self, kernel: KernelId) -> u64;
    /// Checks the documented constraints (shapes, strides, alignment, required pointers).
    fn check(&self, kernel: KernelId) -> Result<(), ParamError>;
    /// A key of the launch's shape: its dimensions and options, not its addresses, so the
    /// same layer of a model has the same key in every run (profiles are keyed by it).
    fn shape_key(&self) -> u64;
}

/// FNV-1a over dimension values.
fn key(values: &[u64]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for v in values {
        for b in v.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// 1 when an optional pointer is present, else 0 (presence changes the work, the address not).
fn has(ptr: u64) -> u64 {
    u64::from(ptr != 0)
}

fn ensure(ok: bool, kernel: KernelId, reason: impl FnOnce() -> String) -> Result<(), ParamError> {
    if ok {
        Ok(())
    } else {
        Err(ParamError { kernel, reason: reason() })
    }
}

fn aligned(ptr: u64, bytes: u64) -> bool {
    ptr % bytes == 0
}

/// Checks device pointers: none null, each aligned as given.
fn pointers(kernel: KernelId, list: &[(&str, u64, u64)]) -> Result<(), ParamError> {
    for &(name, ptr, align) in list {
        ensure(ptr != 0, kernel, || format!("{name} is null"))?;
        ensure(aligned(ptr, align), kernel, || format!("{name} ({ptr:#x}) is not {align}-byte aligned"))?;
    }
    Ok(())
}

/// Checks optional device pointers (0 = absent) for alignment.
fn optional(kernel: KernelId, list: &[(&str, u64, u64)]) -> Result<(), ParamError> {
    for &(name, ptr, align) in list {
        ensure(aligned(ptr, align), kernel, || format!("{name} ({ptr:#x}) is not {align}-byte aligned"))?;
    }
    Ok(())
}

/// Work units of `vector_add_f16` for `n` elements.
pub fn vector_units(n: u64) -> u64 {
    n.div_ceil(u64::from(RS_VECTOR_UNIT))
}

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

impl Params for SmidParams {
    fn units(&self, _: KernelId) -> u64 {
        u64::from(self.units)
    }
    fn check(&self, k: KernelId) -> Result<(), ParamError> {
        pointers(k, &[("sm", self.sm, 4)])
    }
    fn shape_key(&self) -> u64 {
        key(&[u64::from(self.units), self.spin_cycles])
    }
}

/// Elementwise kernels over `n` elements: work units of `RS_VECTOR_UNIT`, shape = n, and the
/// listed pointers (name, field, alignment) required.
macro_rules! elementwise {
    ($($t:ty => [$(($name:literal, $field:ident, $align:literal)),*];)*) => {$(
        impl Params for $t {
            fn units(&self, _: KernelId) -> u64 {
                vector_units(self.n)
            }
            fn check(&self, k: KernelId) -> Result<(), ParamError> {
                pointers(k, &[$(($name, self.$field, $align)),*])
            }
            fn shape_key(&self) -> u64 {
                key(&[self.n])
            }
        }
    )*};
}

elementwise! {
    VectorAddParams => [("a", a, 2), ("b", b, 2), ("c", c, 2)];
    AddU32Params => [("x", x, 4)];
    SetU32Params => [("x", x, 4)];
    CopyU32Params => [("src", src, 4), ("dst", dst, 4)];
}

impl Params for GemmParams {
    fn units(&self, k: KernelId) -> u64 {
        let (bm, bn) = match k {
            KernelId::GemmSmall => (RS_GEMM_S_BM, RS_GEMM_S_BN),
            KernelId::GemmSkinny | KernelId::GemmSkinny8 => (RS_GEMM_T_MAX_M, RS_GEMM_T_BN),
            _ => (RS_GEMM_L_BM, RS_GEMM_L_BN),
        };
        u64::from(self.batch) * u64::from(self.m.div_ceil(bm)) * u64::from(self.n.div_ceil(bn))
    }
    fn check(&self, k: KernelId) -> Result<(), ParamError> {
        let a = RS_GEMM_K_ALIGN;
        if matches!(k, KernelId::GemmSkinny | KernelId::GemmSkinny8 | KernelId::GemmStream8) {
            let max = if k == KernelId::GemmSkinny { RS_GEMM_T_MAX_M } else { 8 };
            ensure(self.m <= max, k, || format!("M = {} exceeds its {max} rows", self.m))?;
        }
        ensure(self.k >= a && self.k % a == 0, k, || format!("K = {} must be a positive multiple of {a}", self.k))?;
        ensure(self.lda >= self.k && self.lda % a == 0, k, || format!("lda = {} (K = {})", self.lda, self.k))?;
        ensure(self.ldb >= self.k && self.ldb % a == 0, k, || format!("ldb = {} (K = {})", self.ldb, self.k))?;
        ensure(self.ldc >= self.n, k, || format!("ldc = {} (N = {})", self.ldc, self.n))?;
        ensure(self.act <= RS_ACT_GELU_ERF, k, || format!("unknown activation {}", self.act))?;
        ensure(self.b_stable <= 1, k, || format!("b_stable = {} (0 or 1)", self.b_stable))?;
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
    matches!(k, KernelId::GemmSkinny | KernelId::GemmSkinny8 | KernelId::GemmStream8)
}

impl GemmParams {
    /// C (M × N) = A (M × K) · Bᵀ (N × K) at addresses `a`, `b`, `c`: one GEMM of packed
    /// row-major matrices, nothing fused; the rest of the fields set with `..` on it.
    pub fn dense(a: u64, b: u64, c: u64, m: u32, n: u32, k: u32) -> GemmParams {
        GemmParams { a, b, c, m, n, k, batch: 1, lda: k, ldb: k, ldc: n, ldr: n, ..Default::default() }
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

/// The Hopper GEMM kernels (TMA + wgmma, sm_90a) for M > 64: tiles 128×48, 128×64, 128×128,
/// 128×160, 128×192 and 128×256.
pub const HOPPER_PREFILL_GEMMS: [Kernel<GemmTmaParams>; 6] =
    [GEMM_WGMMA_SLIM, GEMM_WGMMA_NARROW, GEMM_WGMMA, GEMM_WGMMA_WIDER_MID, GEMM_WGMMA_MID, GEMM_WGMMA_WIDE];

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

/// The Hopper GEMM the library runs for an `m` × `n` × `k` GEMM on a GPU of compute
/// capability `cc` with `sms` SMs, if any: on sm_90, for M ≤ 8 (decode) the streamed kernel
/// when K > 1024 (with K ≤ 1024 one round of the skinny kernel's loads holds a whole unit, and
/// it starts sooner: [`gemm_kernel`]'s kernel runs), for 8 < M ≤ 64 the 64×64 tiles when they
/// give every SM one, else the 64×32 ones (twice as many units streaming the weights); above,
/// [`gemm_wgmma_kernel`]'s tile; elsewhere none (the cubin is sm_90a only).
pub fn hopper_gemm(m: u32, n: u32, k: u32, cc: (u32, u32), sms: u32) -> Option<Kernel<GemmTmaParams>> {
    match m {
        _ if cc != (9, 0) => None,
        ..=8 if k > RS_GEMM_D_KC => Some(GEMM_STREAM_8),
        ..=8 => None,
        9..=RS_GEMM_WS_BM if n.div_ceil(2 * RS_GEMM_WS_BN) >= sms => Some(GEMM_WGMMA_SMALL_WIDE),
        9..=RS_GEMM_WS_BM => Some(GEMM_WGMMA_SMALL),
        _ => Some(gemm_wgmma_kernel(m, n, k, sms)),
    }
}

/// The boxes the tensor maps of Hopper GEMM `k` load: rows of A and of B — the kernel's work
/// unit, a tile of A-rows × B-rows outputs — and their columns: 64 (128 bytes) with the
/// 128-byte swizzle the wgmma kernels' descriptors expect, or RS_GEMM_D_BOX as they are for
/// the streamed kernel.
struct TmaBoxes {
    a_rows: u32,
    b_rows: u32,
    cols: u32,
    swizzle: bool,
}

impl TmaBoxes {
    /// Work units (tiles) of an `m` × `n` output.
    fn tiles(&self, m: u32, n: u32) -> u64 {
        u64::from(m.div_ceil(self.a_rows)) * u64::from(n.div_ceil(self.b_rows))
    }
}

fn tma_boxes(k: KernelId) -> TmaBoxes {
    let wgmma = |a_rows, b_rows| TmaBoxes { a_rows, b_rows, cols: RS_GEMM_W_BK, swizzle: true };
    match k {
        KernelId::GemmStream8 => TmaBoxes { a_rows: 8, b_rows: RS_GEMM_T_BN, cols: RS_GEMM_D_BOX, swizzle: false },
        KernelId::GemmWgmmaSmall => wgmma(RS_GEMM_WS_BM, RS_GEMM_WS_BN),
        KernelId::GemmWgmmaSmallWide => wgmma(RS_GEMM_WS_BM, 2 * RS_GEMM_WS_BN),
        KernelId::GemmWgmmaNarrow => wgmma(RS_GEMM_W_BM, RS_GEMM_W_BN_NARROW),
        KernelId::GemmWgmmaWide => wgmma(RS_GEMM_W_BM, RS_GEMM_W_BN_WIDE),
        KernelId::GemmWgmmaMid => wgmma(RS_GEMM_W_BM, RS_GEMM_W_BN_MID),
        KernelId::GemmWgmmaWiderMid => wgmma(RS_GEMM_W_BM, RS_GEMM_W_BN_WIDER_MID),
        KernelId::GemmWgmmaSlim => wgmma(RS_GEMM_W_BM, RS_GEMM_W_BN_SLIM),
        _ => wgmma(RS_GEMM_W_BM, RS_GEMM_W_BN),
    }
}

/// A 2-D FP16 tensor map to encode (the runtime encodes it: `runtime::gemm_tma_params`): a
/// row-major `rows` × `cols` matrix at `ptr` with leading dimension `ld` (elements), read in
/// boxes of `box_cols` columns × `box_rows` rows, with 128-byte swizzle or none; out-of-bounds
/// elements read as zeros.
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
        };
        Ok([spec("A", g.a, g.m, g.lda, b.a_rows), spec("B", g.b, g.n, g.ldb, b.b_rows)])
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

impl Params for NormParams {
    fn units(&self, _: KernelId) -> u64 {
        u64::from(self.rows.div_ceil(RS_NORM_ROWS))
    }
    fn check(&self, k: KernelId) -> Result<(), ParamError> {
        ensure((1..=RS_NORM_MAX_COLS).contains(&self.cols), k, || {
            format!("cols = {} must be in 1..={RS_NORM_MAX_COLS}", self.cols)
        })?;
        ensure(self.eps >= 0.0 && self.eps.is_finite(), k, || format!("eps = {}", self.eps))?;
        pointers(k, &[("x", self.x, 2), ("gamma", self.gamma, 2), ("y", self.y, 2)])?;
        optional(k, &[("residual", self.residual, 2), ("sum_out", self.sum_out, 2), ("beta", self.beta, 2)])
    }
    fn shape_key(&self) -> u64 {
        key(&[u64::from(self.rows), u64::from(self.cols), has(self.residual), has(self.sum_out), has(self.beta)])
    }
}

fn head_dim_of(k: KernelId) -> u32 {
    match k {
        KernelId::AttentionPrefillD32 | KernelId::AttentionDecodeD32 => 32,
        KernelId::AttentionPrefillD64
        | KernelId::AttentionPrefillWgmmaD64
        | KernelId::AttentionPrefillWgmmaWideD64
        | KernelId::AttentionDecodeD64
        | KernelId::DecoderLayersD64 => 64,
        _ => 128,
    }
}

/// The prefill attention kernels of one head_dim: the mma.sync one (any GPU from sm_80) and,
/// for 64 and 128, the wgmma ones (sm_90a) with 64 and 128 queries a unit.
#[derive(Clone, Copy, Debug)]
pub struct PrefillAttentionKernels {
    /// `attention_prefill_d*`.
    pub mma_sync: Kernel<AttentionParams>,
    /// `attention_prefill_wgmma_d*` and `attention_prefill_wgmma_wide_d*`.
    pub wgmma: Option<[Kernel<AttentionParams>; 2]>,
}

/// The prefill attention kernels for `head_dim` (32, 64 or 128).
pub fn attention_prefill_kernels(head_dim: u32) -> Option<PrefillAttentionKernels> {
    use super::{
        ATTENTION_PREFILL_D128, ATTENTION_PREFILL_D32, ATTENTION_PREFILL_D64, ATTENTION_PREFILL_WGMMA_D128,
        ATTENTION_PREFILL_WGMMA_D64, ATTENTION_PREFILL_WGMMA_WIDE_D128, ATTENTION_PREFILL_WGMMA_WIDE_D64,
    };
    let (mma_sync, wgmma) = match head_dim {
        32 => (ATTENTION_PREFILL_D32, None),
        64 => (ATTENTION_PREFILL_D64, Some([ATTENTION_PREFILL_WGMMA_D64, ATTENTION_PREFILL_WGMMA_WIDE_D64])),
        128 => (ATTENTION_PREFILL_D128, Some([ATTENTION_PREFILL_WGMMA_D128, ATTENTION_PREFILL_WGMMA_WIDE_D128])),
        _ => return None,
    };
    Some(PrefillAttentionKernels { mma_sync, wgmma })
}

/// The prefill attention kernel the library runs for `p` on a GPU of compute capability `cc`
/// with `sms` SMs: on sm_90 the wgmma kernels for head_dim 64 and 128 — the wide one (128
/// queries a unit, two warpgroups sharing the keys) when its units make at least two rounds of
/// the SMs, measured faster there (docs/kernels-h200.md) and slower below — else the mma.sync
/// one.
pub fn attention_prefill_kernel(p: &AttentionParams, cc: (u32, u32), sms: u32) -> Option<Kernel<AttentionParams>> {
    let kernels = attention_prefill_kernels(p.head_dim)?;
    Some(match kernels.wgmma {
        Some([narrow, wide]) if cc == (9, 0) => {
            if p.units(wide.id()) >= 2 * u64::from(sms) {
                wide
            } else {
                narrow
            }
        }
        _ => kernels.mma_sync,
    })
}

/// The decode attention kernel for `head_dim` (32, 64 or 128).
pub fn attention_decode_kernel(head_dim: u32) -> Option<Kernel<DecodeAttentionParams>> {
    match head_dim {
        32 => Some(super::ATTENTION_DECODE_D32),
        64 => Some(super::ATTENTION_DECODE_D64),
        128 => Some(super::ATTENTION_DECODE_D128),
        _ => None,
    }
}

fn check_heads(k: KernelId, heads_q: u32, heads_kv: u32, head_dim: u32) -> Result<(), ParamError> {
    let d = head_dim_of(k);
    ensure(head_dim == d, k, || format!("head_dim = {head_dim}; this kernel takes {d}"))?;
    ensure(heads_kv >= 1 && heads_q % heads_kv == 0, k, || {
        format!("heads_q = {heads_q} must be a multiple of heads_kv = {heads_kv}")
    })
}

impl Params for AttentionParams {
    fn units(&self, k: KernelId) -> u64 {
        let bq = match k {
            KernelId::AttentionPrefillWgmmaWideD64 | KernelId::AttentionPrefillWgmmaWideD128 => RS_ATTN_WIDE_BQ,
            _ => RS_ATTN_BQ,
        };
        u64::from(self.batch) * u64::from(self.heads_q) * u64::from(self.seq.div_ceil(bq))
    }
    fn check(&self, k: KernelId) -> Result<(), ParamError> {
        check_heads(k, self.heads_q, self.heads_kv, self.head_dim)?;
        let d = self.head_dim;
        for (name, stride, heads) in [
            ("q_stride", self.q_stride, self.heads_q),
            ("k_stride", self.k_stride, self.heads_kv),
            ("v_stride", self.v_stride, self.heads_kv),
            ("o_stride", self.o_stride, self.heads_q),
        ] {
            ensure(stride % 8 == 0 && stride >= heads * d, k, || {
                format!("{name} = {stride} must be a multiple of 8 and at least {heads} heads × {d}")
            })?;
        }
        ensure(self.scale.is_finite(), k, || format!("scale = {}", self.scale))?;
        pointers(k, &[("q", self.q, 16), ("k", self.k, 16), ("v", self.v, 16), ("o", self.o, 16)])?;
        optional(k, &[("seq_lens", self.seq_lens, 4)])
    }
    fn shape_key(&self) -> u64 {
        key(&[self.batch, self.seq, self.heads_q, self.heads_kv, self.head_dim, self.causal]
            .map(u64::from)
            .into_iter()
            .chain([has(self.seq_lens)])
            .collect::<Vec<_>>())
    }
}

impl Params for DecodeAttentionParams {
    fn units(&self, _: KernelId) -> u64 {
        u64::from(self.batch) * u64::from(self.heads_kv)
    }
    fn check(&self, k: KernelId) -> Result<(), ParamError> {
        check_heads(k, self.heads_q, self.heads_kv, self.head_dim)?;
        ensure(self.qkv_stride % 8 == 0 && self.qkv_stride >= self.heads_q * self.head_dim, k, || {
            format!("qkv_stride = {} must be a multiple of 8 and hold the query heads", self.qkv_stride)
        })?;
        ensure(self.o_stride >= self.heads_q * self.head_dim, k, || {
            format!("o_stride = {} must hold {} query heads", self.o_stride, self.heads_q)
        })?;
        ensure(self.max_len >= 1, k, || "max_len = 0".into())?;
        ensure(self.scale.is_finite(), k, || format!("scale = {}", self.scale))?;
        pointers(
            k,
            &[
                ("q", self.q, 16),
                ("k", self.k, 16),
                ("v", self.v, 16),
                ("k_cache", self.k_cache, 16),
                ("v_cache", self.v_cache, 16),
                ("o", self.o, 2),
                ("pos", self.pos, 4),
            ],
        )
    }
    fn shape_key(&self) -> u64 {
        // The cache's capacity (`max_len`) is a stride, not work: a profile taken with one
        // capacity applies to caches of any other.
        key(&[self.batch, self.heads_q, self.heads_kv, self.head_dim].map(u64::from))
    }
}

impl Params for KvAppendParams {
    fn units(&self, _: KernelId) -> u64 {
        u64::from(self.batch) * u64::from(self.tokens)
    }
    fn check(&self, k: KernelId) -> Result<(), ParamError> {
        let d = self.head_dim;
        ensure(d >= 8 && d % 8 == 0, k, || format!("head_dim = {d} must be a multiple of 8"))?;
        for (name, stride) in [("k_stride", self.k_stride), ("v_stride", self.v_stride)] {
            ensure(stride % 8 == 0 && stride >= self.heads_kv * d, k, || {
                format!("{name} = {stride} must be a multiple of 8 and at least {} heads × {d}", self.heads_kv)
            })?;
        }
        pointers(
            k,
            &[("k", self.k, 16), ("v", self.v, 16), ("k_cache", self.k_cache, 16), ("v_cache", self.v_cache, 16)],
        )?;
        optional(k, &[("start", self.start, 4)])
    }
    fn shape_key(&self) -> u64 {
        // As for decode attention, the capacity is not part of the shape.
        key(&[self.batch, self.tokens, self.heads_kv, self.head_dim].map(u64::from))
    }
}

impl Params for RopeParams {
    fn units(&self, _: KernelId) -> u64 {
        let pairs = u64::from(self.heads_q + self.heads_kv) * u64::from(self.head_dim / 2);
        u64::from(self.batch) * u64::from(self.tokens) * pairs.div_ceil(u64::from(RS_ROPE_UNIT))
    }
    fn check(&self, k: KernelId) -> Result<(), ParamError> {
        let d = self.head_dim;
        ensure(d >= 2 && d % 2 == 0, k, || format!("head_dim = {d} must be even"))?;
        ensure(
            self.q_stride >= self.heads_q * d && (self.heads_kv == 0 || self.k_stride >= self.heads_kv * d),
            k,
            || format!("strides {} / {} too small for the heads", self.q_stride, self.k_stride),
        )?;
        pointers(k, &[("q", self.q, 2), ("inv_freq", self.inv_freq, 4)])?;
        if self.heads_kv > 0 {
            pointers(k, &[("k", self.k, 2)])?;
        }
        optional(k, &[("start", self.start, 4)])
    }
    fn shape_key(&self) -> u64 {
        key(&[self.batch, self.tokens, self.heads_q, self.heads_kv, self.head_dim].map(u64::from))
    }
}

impl Params for EmbeddingParams {
    fn units(&self, _: KernelId) -> u64 {
        u64::from(self.batch) * u64::from(self.tokens)
    }
    fn check(&self, k: KernelId) -> Result<(), ParamError> {
        ensure(self.hidden >= 1 && self.vocab >= 1, k, || "hidden and vocab must be positive".into())?;
        ensure(self.pos == 0 || self.max_pos >= 1, k, || "a position table needs max_pos ≥ 1".into())?;
        pointers(k, &[("ids", self.ids, 4), ("tok", self.tok, 2), ("out", self.out, 2)])?;
        optional(k, &[("pos", self.pos, 2), ("type", self.type_, 2), ("start", self.start, 4)])
    }
    fn shape_key(&self) -> u64 {
        key(&[self.batch, self.tokens, self.hidden, self.vocab, self.max_pos]
            .map(u64::from)
            .into_iter()
            .chain([has(self.pos), has(self.type_)])
            .collect::<Vec<_>>())
    }
}

impl Params for GeluParams {
    fn units(&self, _: KernelId) -> u64 {
        self.n.div_ceil(u64::from(RS_ACT_UNIT))
    }
    fn check(&self, k: KernelId) -> Result<(), ParamError> {
        ensure(self.act == RS_ACT_GELU_TANH || self.act == RS_ACT_GELU_ERF, k, || format!("act = {}", self.act))?;
        pointers(k, &[("x", self.x, 2), ("y", self.y, 2)])
    }
    fn shape_key(&self) -> u64 {
        key(&[self.n, u64::from(self.act)])
    }
}

impl Params for SwigluParams {
    fn units(&self, _: KernelId) -> u64 {
        u64::from(self.rows) * u64::from(self.cols).div_ceil(u64::from(RS_ACT_UNIT))
    }
    fn check(&self, k: KernelId) -> Result<(), ParamError> {
        let c = self.cols;
        ensure(self.gate_stride >= c && self.up_stride >= c && self.out_stride >= c, k, || {
            format!("strides must be at least cols = {c}")
        })?;
        pointers(k, &[("gate", self.gate, 2), ("up", self.up, 2), ("out", self.out, 2)])
    }
    fn shape_key(&self) -> u64 {
        key(&[u64::from(self.rows), u64::from(self.cols)])
    }
}

impl Params for FillParams {
    fn units(&self, _: KernelId) -> u64 {
        self.n.div_ceil(u64::from(RS_FILL_UNIT))
    }
    fn check(&self, k: KernelId) -> Result<(), ParamError> {
        ensure(self.scale.is_finite() && self.mean.is_finite(), k, || "scale and mean must be finite".into())?;
        pointers(k, &[("x", self.x, 2)])
    }
    fn shape_key(&self) -> u64 {
        key(&[self.n])
    }
}

/// Columns of a weight tile of `decoder_layers_d64` at depth `k` (decoder.cu `tile_cols`):
/// as many multiples of 8 as fit one shared-memory stage, at most RS_DEC_MAX_COLS.
fn decoder_tile_cols(k: u32) -> u32 {
    (RS_DEC_STAGE_BYTES / (2 * k.max(1)) / 8 * 8).min(RS_DEC_MAX_COLS)
}

/// Work units of each phase of one layer of `decoder_layers_d64` (decoder.cu `Schedule`): the
/// QKV GEMM's tiles, the attention units, the attention-out, MLP-up and MLP-down tiles.
pub fn decoder_phase_units(p: &DecoderParams) -> [u32; RS_DEC_PHASES as usize] {
    let tiles = |n: u32, k: u32| n.div_ceil(decoder_tile_cols(k).max(1));
    [
        tiles((p.heads + 2 * p.heads_kv) * 64, p.hidden),
        p.batch * p.heads_kv,
        tiles(p.hidden, p.hidden),
        tiles(p.ffn_dim, p.hidden),
        tiles(p.hidden, p.ffn_dim),
    ]
}

impl Params for DecoderParams {
    fn units(&self, _: KernelId) -> u64 {
        let per_layer: u32 = decoder_phase_units(self).iter().sum();
        u64::from(per_layer) * u64::from(self.n_layers)
    }
    fn check(&self, k: KernelId) -> Result<(), ParamError> {
        let max_k = RS_DEC_STAGE_BYTES / 16;
        ensure((1..=RS_DEC_MAX_BATCH).contains(&self.batch), k, || {
            format!("batch = {} must be 1..={RS_DEC_MAX_BATCH}", self.batch)
        })?;
        ensure((1..=RS_DEC_MAX_LAYERS).contains(&self.n_layers), k, || {
            format!("n_layers = {} must be 1..={RS_DEC_MAX_LAYERS}", self.n_layers)
        })?;
        for (name, v) in [("hidden", self.hidden), ("ffn_dim", self.ffn_dim)] {
            ensure(v >= 64 && v % 64 == 0 && v <= max_k, k, || {
                format!("{name} = {v} must be a multiple of 64 in 64..={max_k}")
            })?;
        }
        ensure(self.heads * 64 == self.hidden, k, || {
            format!("heads = {} of 64 must make hidden = {}", self.heads, self.hidden)
        })?;
        check_heads(k, self.heads, self.heads_kv, 64)?;
        ensure(self.max_len >= 1, k, || "max_len = 0".into())?;
        ensure(self.scale.is_finite() && self.eps.is_finite() && self.eps >= 0.0, k, || {
            format!("scale = {}, eps = {}", self.scale, self.eps)
        })?;
        pointers(
            k,
            &[
                ("layers", self.layers, 8),
                ("x", self.x, 16),
                ("qkv", self.qkv, 16),
                ("attn", self.attn, 16),
                ("ffn", self.ffn, 16),
                ("pos", self.pos, 4),
                ("sync", self.sync, 4),
            ],
        )?;
        optional(k, &[("trace", self.trace, 8)])
    }
    fn shape_key(&self) -> u64 {
        // As for decode attention, the cache's capacity is a stride, not work.
        key(&[self.n_layers, self.batch, self.hidden, self.ffn_dim, self.heads, self.heads_kv].map(u64::from))
    }
}

impl Params for ArgmaxParams {
    fn units(&self, _: KernelId) -> u64 {
        u64::from(self.rows)
    }
    fn check(&self, k: KernelId) -> Result<(), ParamError> {
        ensure(self.cols >= 1 && self.stride >= self.cols, k, || {
            format!("cols = {} must be ≥ 1 and ≤ stride = {}", self.cols, self.stride)
        })?;
        pointers(k, &[("logits", self.logits, 2), ("out", self.out, 4)])
    }
    fn shape_key(&self) -> u64 {
        key(&[u64::from(self.rows), u64::from(self.cols)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gemm(m: u32, n: u32, k: u32) -> GemmParams {
        GemmParams { ldr: 0, ..GemmParams::dense(256, 512, 1024, m, n, k) }
    }

    fn gpt2_decoder(batch: u32) -> DecoderParams {
        DecoderParams {
            layers: 8,
            x: 16,
            qkv: 32,
            attn: 48,
            ffn: 64,
            pos: 4,
            sync: 4,
            trace: 0,
            n_layers: 12,
            batch,
            hidden: 768,
            ffn_dim: 3072,
            heads: 12,
            heads_kv: 12,
            max_len: 160,
            eps: 1e-5,
            scale: 0.125,
            _pad: 0,
        }
    }

    #[test]
    fn decoder_schedules_gpt2_in_stage_sized_tiles() {
        let p = gpt2_decoder(8);
        // 32 columns of K = 768 and 8 of K = 3072 fill a 48 KiB stage.
        assert_eq!(decoder_phase_units(&p), [72, 96, 24, 96, 96]);
        assert_eq!(p.units(KernelId::DecoderLayersD64), 12 * 384);
        assert!(p.check(KernelId::DecoderLayersD64).is_ok());
        let tiny = DecoderParams { hidden: 128, ffn_dim: 512, heads: 2, heads_kv: 1, n_layers: 2, ..gpt2_decoder(3) };
        assert_eq!(decoder_phase_units(&tiny), [4, 3, 2, 8, 3]);
        let refused = |p: DecoderParams| p.check(KernelId::DecoderLayersD64).is_err();
        assert!(refused(gpt2_decoder(9)));
        assert!(refused(gpt2_decoder(0)));
        assert!(refused(DecoderParams { ffn_dim: 4096, ..gpt2_decoder(8) }));
        assert!(refused(DecoderParams { hidden: 800, heads: 12, ..gpt2_decoder(8) }));
        assert!(refused(DecoderParams { heads_kv: 5, ..gpt2_decoder(8) }));
        assert!(refused(DecoderParams { x: 18, ..gpt2_decoder(8) }));
        assert!(refused(DecoderParams { sync: 0, ..gpt2_decoder(8) }));
        assert!(refused(DecoderParams { n_layers: 49, ..gpt2_decoder(8) }));
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
    fn hopper_gemm_serves_prefill_on_sm90_with_tiles_that_fill_the_sms() {
        let h = |m, cc| hopper_gemm(m, 768, 768, cc, 132).map(|k| k.id());
        assert_eq!(h(1024, (9, 0)), Some(KernelId::GemmWgmmaSlim));
        assert_eq!(h(8, (9, 0)), None, "M ≤ 8, K ≤ 1024: the skinny kernel");
        let decode = |m, k| hopper_gemm(m, 4096, k, (9, 0), 132).map(|k| k.id());
        assert_eq!(decode(8, 4096), Some(KernelId::GemmStream8));
        assert_eq!(decode(1, 2048), Some(KernelId::GemmStream8));
        assert_eq!(decode(8, 1024), None);
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
        let t = GemmTmaParams {
            map_a: RsTensorMap { opaque: [0; 16] },
            map_b: RsTensorMap { opaque: [0; 16] },
            g: gemm(1000, 2304, 768),
        };
        assert_eq!(t.units(KernelId::GemmWgmma), 8 * 18);
        assert_eq!(t.units(KernelId::GemmWgmmaNarrow), 8 * 36);
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
    fn attention_head_dim_must_match_the_kernel() {
        let p = AttentionParams {
            q: 256,
            k: 256,
            v: 256,
            o: 256,
            batch: 8,
            seq: 130,
            heads_q: 12,
            heads_kv: 4,
            head_dim: 64,
            q_stride: 768,
            k_stride: 256,
            v_stride: 256,
            o_stride: 768,
            scale: 0.125,
            ..Default::default()
        };
        assert!(p.check(KernelId::AttentionPrefillD64).is_ok());
        assert!(p.check(KernelId::AttentionPrefillWgmmaD64).is_ok());
        assert_eq!(p.units(KernelId::AttentionPrefillD64), 8 * 12 * 3);
        assert_eq!(p.units(KernelId::AttentionPrefillWgmmaD64), 8 * 12 * 3);
        assert_eq!(p.units(KernelId::AttentionPrefillWgmmaWideD64), 8 * 12 * 2);
        assert!(p.check(KernelId::AttentionPrefillWgmmaWideD64).is_ok());
        assert!(p.check(KernelId::AttentionPrefillWgmmaWideD128).is_err());
        assert!(p.check(KernelId::AttentionPrefillD128).is_err());
        assert!(p.check(KernelId::AttentionPrefillWgmmaD128).is_err());
        assert!(AttentionParams { heads_kv: 5, ..p }.check(KernelId::AttentionPrefillD64).is_err());
        assert!(AttentionParams { k_stride: 200, ..p }.check(KernelId::AttentionPrefillD64).is_err());
    }

    #[test]
    fn hopper_prefill_attention_runs_on_wgmma_for_head_dims_64_and_128() {
        // BERT-base at batch 8 × 128 tokens (96 wide units for 132 SMs), Llama-3.2-1B over 4096
        // tokens (1024 wide units).
        let bert = |head_dim| AttentionParams { batch: 8, seq: 128, heads_q: 12, head_dim, ..Default::default() };
        let llama = |head_dim| AttentionParams { batch: 1, seq: 4096, heads_q: 32, head_dim, ..Default::default() };
        let pick = |p: AttentionParams, cc| attention_prefill_kernel(&p, cc, 132).map(|k| k.id());
        assert_eq!(pick(bert(64), (9, 0)), Some(KernelId::AttentionPrefillWgmmaD64));
        assert_eq!(pick(bert(128), (9, 0)), Some(KernelId::AttentionPrefillWgmmaD128));
        assert_eq!(pick(llama(64), (9, 0)), Some(KernelId::AttentionPrefillWgmmaWideD64));
        assert_eq!(pick(llama(128), (9, 0)), Some(KernelId::AttentionPrefillWgmmaWideD128));
        // Two rounds of 132 SMs: 264 units.
        assert_eq!(
            pick(AttentionParams { seq: 128 * 11, ..bert(64) }, (9, 0)),
            Some(KernelId::AttentionPrefillWgmmaWideD64)
        );
        assert_eq!(
            pick(AttentionParams { seq: 128 * 2, ..bert(64) }, (9, 0)),
            Some(KernelId::AttentionPrefillWgmmaD64)
        );
        assert_eq!(pick(llama(32), (9, 0)), Some(KernelId::AttentionPrefillD32));
        assert_eq!(pick(llama(64), (8, 0)), Some(KernelId::AttentionPrefillD64));
        assert_eq!(pick(llama(128), (8, 9)), Some(KernelId::AttentionPrefillD128));
        assert_eq!(pick(llama(128), (10, 0)), Some(KernelId::AttentionPrefillD128));
        assert_eq!(pick(llama(96), (9, 0)), None);
    }

    #[test]
    fn shape_keys_ignore_addresses_but_not_dimensions() {
        let a = gemm(1024, 768, 768);
        assert_eq!(a.shape_key(), GemmParams { a: 4096, c: 8192, ..a }.shape_key());
        assert_ne!(a.shape_key(), gemm(1024, 768, 3072).shape_key());
        assert_ne!(a.shape_key(), GemmParams { bias: 2, ..a }.shape_key());
    }

    #[test]
    fn row_kernels_count_rows() {
        let n = NormParams { x: 2, gamma: 2, y: 2, rows: 1024, cols: 768, eps: 1e-5, ..Default::default() };
        assert_eq!(n.units(KernelId::LayerNorm), 1024 / 8, "8 rows a unit, a warp each");
        assert_eq!(NormParams { rows: 1025, ..n }.units(KernelId::RmsNorm), 129);
        assert!(n.check(KernelId::LayerNorm).is_ok());
        assert!(NormParams { cols: RS_NORM_MAX_COLS + 1, ..n }.check(KernelId::LayerNorm).is_err());
        let a = ArgmaxParams { logits: 2, out: 4, rows: 8, cols: 50257, stride: 50257, _pad: 0 };
        assert_eq!(a.units(KernelId::Argmax), 8);
        assert!(ArgmaxParams { stride: 100, ..a }.check(KernelId::Argmax).is_err());
        let g = GeluParams { x: 2, y: 2, n: 4097, act: RS_ACT_GELU_ERF, _pad: 0 };
        assert_eq!(g.units(KernelId::Gelu), 3);
        assert!(GeluParams { act: RS_ACT_NONE, ..g }.check(KernelId::Gelu).is_err());
    }
}
