//! Safe launches of the kernel library for the models: each op checks that every matrix view
//! fits inside its buffer before the (unsafe) launch, so a shape mistake is an error, never an
//! out-of-bounds access. All launches go through the tenant.

use half::f16;

use super::EngineError;
use crate::kernels::abi::*;
use crate::kernels::{
    self as k, argmax_parts, argmax_scratch, attention_decode_kernel, attention_prefill_kernel, decode_attention_need,
    fuses_norm, gemm_kernel, hopper_gemm, packed_decode_kernel, Params as _,
};
use crate::runtime::work::Blas;
use crate::runtime::{Device, DeviceBuffer, DeviceCopy, Tenant};

type Result<T> = std::result::Result<T, EngineError>;

/// A row-major matrix view into a device buffer: `rows` rows of `cols` elements, `ld` apart,
/// starting `offset` elements in.
#[derive(Debug, Clone, Copy)]
pub struct Mat {
    ptr: u64,
    /// Rows.
    pub rows: u32,
    /// Elements per row.
    pub cols: u32,
    /// Elements from one row to the next.
    pub ld: u32,
}

impl Mat {
    /// The whole buffer as `rows × cols`, contiguous.
    pub fn of<T: DeviceCopy>(buf: &DeviceBuffer<T>, rows: u32, cols: u32) -> Result<Mat> {
        Self::view(buf, 0, rows, cols, cols)
    }

    /// `rows × cols` starting at element `offset`, rows `ld` apart.
    pub fn view<T: DeviceCopy>(buf: &DeviceBuffer<T>, offset: usize, rows: u32, cols: u32, ld: u32) -> Result<Mat> {
        let need = if rows == 0 { 0 } else { offset + (rows as usize - 1) * ld as usize + cols as usize };
        if need > buf.len() || cols > ld {
            return Err(EngineError::Shape(format!(
                "view of {rows}×{cols} (ld {ld}, offset {offset}) does not fit a buffer of {} elements",
                buf.len()
            )));
        }
        Ok(Mat { ptr: buf.ptr() + (offset * std::mem::size_of::<T>()) as u64, rows, cols, ld })
    }

    /// The sub-view of columns `first..first + cols`.
    pub fn columns(self, first: u32, cols: u32) -> Result<Mat> {
        if first + cols > self.cols {
            return Err(EngineError::Shape(format!("columns {first}..{} of a {}-wide view", first + cols, self.cols)));
        }
        Ok(Mat { ptr: self.ptr + 2 * u64::from(first), cols, ..self })
    }

    /// Every `step`-th row starting at row `first` (e.g. each sequence's last token).
    pub fn rows_every(self, first: u32, step: u32) -> Result<Mat> {
        if step == 0 || first >= step || self.rows % step != 0 {
            return Err(EngineError::Shape(format!("rows {first} mod {step} of {} rows", self.rows)));
        }
        Ok(Mat {
            ptr: self.ptr + 2 * u64::from(first) * u64::from(self.ld),
            rows: self.rows / step,
            ld: self.ld * step,
            ..self
        })
    }

    /// Device address of the first element.
    pub fn ptr(&self) -> u64 {
        self.ptr
    }

    fn expect(&self, rows: u32, cols: u32, what: &str) -> Result<()> {
        if self.rows != rows || self.cols != cols {
            return Err(EngineError::Shape(format!(
                "{what}: {}×{} where {rows}×{cols} is needed",
                self.rows, self.cols
            )));
        }
        Ok(())
    }
}

fn vector(buf: &DeviceBuffer<f16>, len: u32, what: &str) -> Result<u64> {
    if buf.len() < len as usize {
        return Err(EngineError::Shape(format!("{what}: {} elements where {len} are needed", buf.len())));
    }
    Ok(buf.ptr())
}

/// Which GEMM implementation the engine uses. Both go through the tenant, so partitions
/// apply to both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GemmBackend {
    /// The library's own grid-agnostic kernels (deterministic on every placement).
    #[default]
    Rightsize,
    /// cuBLASLt, planned for the partition's SM count; activations run as a separate kernel.
    CublasLt,
}

/// A norm's weights: LayerNorm (with `beta`) or RMSNorm (`rms`).
#[derive(Debug, Clone, Copy)]
pub struct NormWeights<'a> {
    /// RMSNorm rather than LayerNorm.
    pub rms: bool,
    /// Scale.
    pub gamma: &'a DeviceBuffer<f16>,
    /// Shift (LayerNorm only, optional).
    pub beta: Option<&'a DeviceBuffer<f16>>,
    /// Added to the variance.
    pub eps: f32,
}

/// `out = act(norm(x)·wᵀ + bias)`: one launch when the GEMM is a kernel of this library that
/// normalises its input rows as it loads them (the decode-sized ones, skinny and streamed);
/// otherwise the norm into `scratch` (x's shape) and then the GEMM.
#[allow(clippy::too_many_arguments)]
pub fn norm_linear<'w>(
    t: &Tenant,
    backend: GemmBackend,
    norm: NormWeights,
    x: Mat,
    scratch: Mat,
    w: impl Into<Weight<'w>>,
    bias: Option<&DeviceBuffer<f16>>,
    act: u32,
    out: Mat,
) -> Result<()> {
    linear_with(t, backend, x, Some((norm, scratch)), w.into(), bias, act, None, out)
}

/// A GEMM's weights `[n][k]`: row-major, or packed at load for the library's Hopper GEMMs
/// (`pack_tiles_f16`; the model packs those whose K the packed decode GEMM takes,
/// [`crate::kernels::packs_decode_weights`]).
#[derive(Debug, Clone, Copy)]
pub struct Weight<'a> {
    /// The buffer.
    pub buf: &'a DeviceBuffer<f16>,
    /// Packed (`pack_tiles_f16`), else row-major.
    pub packed: bool,
    /// Packed as gate/up pairs (`PackParams.pairs`: the first half of the rows gate, the rest
    /// up): a GEMM on it leaves gate and up columns interleaved by 8 (`swiglu`'s `paired`), or
    /// takes `RS_ACT_SWIGLU` ([`fuses_swiglu`]).
    pub pairs: bool,
}

impl<'a> From<&'a DeviceBuffer<f16>> for Weight<'a> {
    fn from(buf: &'a DeviceBuffer<f16>) -> Self {
        Weight { buf, packed: false, pairs: false }
    }
}

/// Whether [`linear`] runs a packed decode GEMM ([`packed_decode_kernel`]) for `w` on `m` rows.
fn packed_decode(w: &Weight, m: u32) -> bool {
    w.packed && m <= 8
}

/// Whether [`linear`] of `rows` rows on `w` can take `RS_ACT_SWIGLU`: the packed decode GEMM on
/// gate/up pairs, whose epilogue writes silu(gate)·up (`out` then has half of w's rows as
/// columns). Elsewhere run the GEMM, then [`swiglu`] with `paired` = `w.pairs`.
pub fn fuses_swiglu(backend: GemmBackend, w: Weight, rows: u32) -> bool {
    backend == GemmBackend::Rightsize && w.pairs && packed_decode(&w, rows)
}

/// `out = act(x·wᵀ + bias) + residual`, w `[n][k]`.
#[allow(clippy::too_many_arguments)]
pub fn linear<'w>(
    t: &Tenant,
    backend: GemmBackend,
    x: Mat,
    w: impl Into<Weight<'w>>,
    bias: Option<&DeviceBuffer<f16>>,
    act: u32,
    residual: Option<Mat>,
    out: Mat,
) -> Result<()> {
    linear_with(t, backend, x, None, w.into(), bias, act, residual, out)
}

/// [`linear`] of `norm(x)` when `norm` is given: the kernel picked for the shape fuses the
/// norm, or the norm runs first into the scratch view.
#[allow(clippy::too_many_arguments)]
fn linear_with(
    t: &Tenant,
    backend: GemmBackend,
    x: Mat,
    norm: Option<(NormWeights, Mat)>,
    w: Weight,
    bias: Option<&DeviceBuffer<f16>>,
    act: u32,
    residual: Option<Mat>,
    out: Mat,
) -> Result<()> {
    let swiglu = act == RS_ACT_SWIGLU;
    if w.pairs && (!w.packed || bias.is_some()) {
        return Err(EngineError::Shape("gate/up pairs are packed weights without a bias".into()));
    }
    if swiglu && !fuses_swiglu(backend, w, x.rows) {
        return Err(EngineError::Shape(format!(
            "a SwiGLU epilogue needs gate/up-paired packed weights, M ≤ 8 and the library's GEMMs (M = {})",
            x.rows
        )));
    }
    // With SwiGLU, w's rows are twice out's columns.
    let (m, kk, n) = (x.rows, x.cols, if swiglu { 2 * out.cols } else { out.cols });
    let packed = w.packed;
    if packed && w.buf.len() as u64 != PackParams::packed_len(n, kk) {
        return Err(EngineError::Shape(format!("packed weights of {n}×{kk} in a buffer of {} elements", w.buf.len())));
    }
    // Packed weights: the packed decode GEMM for M ≤ 8, the wgmma GEMMs above.
    let decode = packed_decode(&w, m);
    let w = Mat::of(w.buf, n, kk)?;
    out.expect(m, out.cols, "linear output")?;
    if let Some(r) = residual {
        r.expect(m, n, "linear residual")?;
    }
    let info = t.runtime().device().info();
    // Tiles for the SMs the GEMM will get, so a partition does not pay a whole device's waves.
    let hopper = hopper_gemm(m, n, kk, info.compute_capability, t.sms_hint());
    let own = if decode {
        packed_decode_kernel(kk, norm.is_some()).ok_or_else(|| {
            EngineError::Shape(format!("packed {n}×{kk} weights: no packed decode GEMM takes K = {kk}"))
        })?
    } else {
        gemm_kernel(m)
    };
    let hopper = hopper.filter(|_| !decode);
    if packed && (backend != GemmBackend::Rightsize || (m > 8 && hopper.is_none())) {
        return Err(EngineError::Shape(format!(
            "packed {n}×{kk} weights: only the library's Hopper GEMMs read them (backend {backend:?}, M = {m})"
        )));
    }
    let picked = hopper.map_or(own.id(), |k| k.id());
    let fused = backend == GemmBackend::Rightsize && fuses_norm(picked);
    let (x, norm) = match norm {
        Some((nw, _)) if fused => (x, Some(nw)),
        Some((nw, scratch)) => {
            self::norm(t, nw.rms, x, None, nw.gamma, nw.beta, nw.eps, scratch)?;
            (scratch, None)
        }
        None => (x, None),
    };
    let p = GemmParams {
        a: x.ptr,
        b: w.ptr,
        c: out.ptr,
        bias: bias.map(|b| vector(b, n, "bias")).transpose()?.unwrap_or(0),
        residual: residual.map_or(0, |r| r.ptr),
        m,
        n,
        k: kk,
        batch: 1,
        lda: x.ld,
        ldb: kk,
        ldc: out.ld,
        ldr: residual.map_or(0, |r| r.ld),
        act,
        norm: norm.map_or(RS_NORM_NONE, |nw| if nw.rms { RS_NORM_RMS } else { RS_NORM_LAYER }),
        norm_gamma: norm.map(|nw| vector(nw.gamma, kk, "norm gamma")).transpose()?.unwrap_or(0),
        norm_beta: norm.and_then(|nw| nw.beta).map(|b| vector(b, kk, "norm beta")).transpose()?.unwrap_or(0),
        norm_eps: norm.map_or(0.0, |nw| nw.eps),
        // Weights: no kernel writes them once loaded.
        b_stable: 1,
        b_layout: if packed { RS_B_TILES } else { RS_B_ROWS },
        ..Default::default()
    };
    match backend {
        // On Hopper: the TMA kernels (streamed for decode sizes, wgmma above).
        GemmBackend::Rightsize if let Some(kernel) = hopper => {
            let tp = crate::runtime::gemm_tma_params(&p, kernel)?;
            // SAFETY: every view was checked against its live buffer above; the tensor maps
            // describe the same views.
            unsafe { t.launch(kernel, &tp) }.map(|_| ())?
        }
        // SAFETY: every view was checked against its live buffer above.
        GemmBackend::Rightsize => unsafe { t.launch(own, &p) }.map(|_| ())?,
        GemmBackend::CublasLt => {
            if act != RS_ACT_NONE && (residual.is_some() || out.ld != n) {
                return Err(EngineError::Shape(
                    "cuBLASLt backend: an activation needs a contiguous output and no residual".into(),
                ));
            }
            // SAFETY: as above.
            unsafe { t.submit(Blas(&GemmParams { act: RS_ACT_NONE, ..p })) }?;
            if act != RS_ACT_NONE {
                let g = GeluParams { x: out.ptr, y: out.ptr, n: u64::from(m) * u64::from(n), act, _pad: 0 };
                // SAFETY: in place over the m·n contiguous output checked above.
                unsafe { t.launch(k::GELU, &g) }?;
            }
        }
    }
    Ok(())
}

/// LayerNorm (with `beta`) or RMSNorm (without) of `x` (+ `residual`, summed into `sum_out`)
/// into `y`. Views must be contiguous.
#[allow(clippy::too_many_arguments)]
pub fn norm(
    t: &Tenant,
    rms: bool,
    x: Mat,
    residual: Option<(Mat, Mat)>,
    gamma: &DeviceBuffer<f16>,
    beta: Option<&DeviceBuffer<f16>>,
    eps: f32,
    y: Mat,
) -> Result<()> {
    let (rows, cols) = (x.rows, x.cols);
    let contiguous = |m: &Mat| m.ld == m.cols;
    y.expect(rows, cols, "norm output")?;
    if !contiguous(&x) || !contiguous(&y) || residual.is_some_and(|(r, s)| !contiguous(&r) || !contiguous(&s)) {
        return Err(EngineError::Shape("norm views must be contiguous".into()));
    }
    if let Some((r, s)) = residual {
        r.expect(rows, cols, "norm residual")?;
        s.expect(rows, cols, "norm sum")?;
    }
    let p = NormParams {
        x: x.ptr,
        residual: residual.map_or(0, |(r, _)| r.ptr),
        sum_out: residual.map_or(0, |(_, s)| s.ptr),
        gamma: vector(gamma, cols, "gamma")?,
        beta: beta.map(|b| vector(b, cols, "beta")).transpose()?.unwrap_or(0),
        y: y.ptr,
        rows,
        cols,
        eps,
        _pad: 0,
    };
    let kernel = if rms { k::RMS_NORM } else { k::LAYER_NORM };
    // SAFETY: views checked above.
    unsafe { t.launch(kernel, &p) }?;
    Ok(())
}

/// Attention heads: counts and size.
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    /// Query heads.
    pub q: u32,
    /// Key/value heads.
    pub kv: u32,
    /// Elements per head.
    pub dim: u32,
}

fn unsupported_head(dim: u32) -> EngineError {
    EngineError::Shape(format!("head_dim {dim}: attention kernels take 32, 64 or 128"))
}

/// Prefill attention over `qkv` rows (`[q heads | k heads | v heads]` per token) into `out`.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    t: &Tenant,
    qkv: Mat,
    heads: Heads,
    batch: u32,
    seq: u32,
    lens: Option<&DeviceBuffer<u32>>,
    causal: bool,
    out: Mat,
) -> Result<()> {
    let (qw, kw) = (heads.q * heads.dim, heads.kv * heads.dim);
    qkv.expect(batch * seq, qw + 2 * kw, "attention qkv")?;
    out.expect(batch * seq, qw, "attention output")?;
    if lens.is_some_and(|l| l.len() < batch as usize) {
        return Err(EngineError::Shape("attention: fewer lengths than sequences".into()));
    }
    let p = AttentionParams {
        q: qkv.ptr,
        k: qkv.ptr + 2 * u64::from(qw),
        v: qkv.ptr + 2 * u64::from(qw + kw),
        o: out.ptr,
        seq_lens: lens.map_or(0, |l| l.ptr()),
        batch,
        seq,
        heads_q: heads.q,
        heads_kv: heads.kv,
        head_dim: heads.dim,
        q_stride: qkv.ld,
        k_stride: qkv.ld,
        v_stride: qkv.ld,
        o_stride: out.ld,
        causal: u32::from(causal),
        scale: 1.0 / (heads.dim as f32).sqrt(),
        _pad: 0,
    };
    let info = t.runtime().device().info();
    let kernel = attention_prefill_kernel(&p, info.compute_capability, info.sm_count)
        .ok_or_else(|| unsupported_head(heads.dim))?;
    // SAFETY: views checked above.
    unsafe { t.launch(kernel, &p) }?;
    Ok(())
}

/// A layer's KV cache: `[batch][kv heads][max_len][head_dim]` for K and for V.
#[derive(Debug)]
pub struct KvCache {
    /// Keys.
    pub k: DeviceBuffer<f16>,
    /// Values.
    pub v: DeviceBuffer<f16>,
    /// Positions per sequence.
    pub max_len: u32,
}

impl KvCache {
    fn check(&self, batch: u32, heads: Heads) -> Result<()> {
        let need = batch as usize * heads.kv as usize * self.max_len as usize * heads.dim as usize;
        if self.k.len() < need || self.v.len() < need {
            return Err(EngineError::Shape(format!("KV cache holds {} elements, {need} needed", self.k.len())));
        }
        Ok(())
    }
}

/// What a kernel needs whose last unit of a group merges the group's partial results (decode
/// attention's chunks of a cache, the argmax's parts of a row): the partials, and a count a
/// group of its units done, zeroed before the first launch and left at zero by each. One
/// launch uses it at a time (a workspace's launches, one after another).
#[derive(Debug)]
pub struct Scratch<T: DeviceCopy> {
    partial: DeviceBuffer<T>,
    arrived: DeviceBuffer<u32>,
}

/// Decode attention's chunk states ([`decode_attention_scratch`] sizes it).
pub type DecodeScratch = Scratch<f32>;

/// The argmax's parts of rows ([`argmax_scratch`] sizes it).
pub type ArgmaxScratch = Scratch<u32>;

impl<T: DeviceCopy> Scratch<T> {
    /// `need`'s elements of partials and words of counts, zeroed; `None` for none.
    pub fn new(device: &Device, need: Option<(usize, usize)>) -> Result<Option<Scratch<T>>> {
        let Some((partial, arrived)) = need else { return Ok(None) };
        Ok(Some(Scratch {
            partial: DeviceBuffer::filled(device, partial, 0)?,
            arrived: DeviceBuffer::filled(device, arrived, 0)?,
        }))
    }

    /// The partials' and counts' addresses for a launch that needs `need` of them ((0, 0)
    /// where it needs none), or `None` where `scratch` is missing or too small.
    fn for_launch(scratch: Option<&Scratch<T>>, need: Option<(usize, usize)>) -> Option<(u64, u64)> {
        let Some((partial, arrived)) = need else { return Some((0, 0)) };
        let s = scratch.filter(|s| s.partial.len() >= partial && s.arrived.len() >= arrived)?;
        Some((s.partial.ptr(), s.arrived.ptr()))
    }
}

/// The layer table and counters `decoder_layers_d64` reads, for one model's weights and one
/// workspace's caches: each layer as `DecoderLayerWeights`, in device memory.
#[derive(Debug)]
pub struct DecoderTable {
    words: Vec<u64>,
    table: DeviceBuffer<u64>,
    sync: DeviceBuffer<u32>,
}

type Layer = super::weights::Layer<DeviceBuffer<f16>>;

/// A layer and its cache as `DecoderLayerWeights`'s words, or None when the layer lacks a bias
/// or a LayerNorm shift (the kernel needs them all).
fn layer_words(l: &Layer, c: &KvCache) -> Option<[u64; 14]> {
    let ptr = |b: &Option<DeviceBuffer<f16>>| b.as_ref().map(DeviceBuffer::ptr);
    let w = DecoderLayerWeights {
        norm1_gamma: l.norm1.gamma.ptr(),
        norm1_beta: ptr(&l.norm1.beta)?,
        qkv: l.qkv.ptr(),
        qkv_bias: ptr(&l.qkv_bias)?,
        out: l.out.ptr(),
        out_bias: ptr(&l.out_bias)?,
        norm2_gamma: l.norm2.gamma.ptr(),
        norm2_beta: ptr(&l.norm2.beta)?,
        up: l.up.ptr(),
        up_bias: ptr(&l.up_bias)?,
        down: l.down.ptr(),
        down_bias: ptr(&l.down_bias)?,
        k_cache: c.k.ptr(),
        v_cache: c.v.ptr(),
    };
    // SAFETY: `DecoderLayerWeights` is #[repr(C)] with 14 u64 fields and no padding (the
    // transmute checks the size), so its bytes are these words in field order.
    Some(unsafe { std::mem::transmute::<DecoderLayerWeights, [u64; 14]>(w) })
}

impl DecoderTable {
    /// The table of a GPT-2-style model's `layers` with `caches` (zeroed counters), or None when
    /// a layer lacks a bias or a LayerNorm shift.
    pub fn new(device: &Device, layers: &[Layer], caches: &[KvCache]) -> Result<Option<DecoderTable>> {
        let words: Option<Vec<[u64; 14]>> = layers.iter().zip(caches).map(|(l, c)| layer_words(l, c)).collect();
        let Some(words) = words.map(|w| w.concat()) else {
            return Ok(None);
        };
        let table = DeviceBuffer::from_host(device, &words)?;
        let sync = DeviceBuffer::filled(device, 2 + (RS_DEC_PHASES as usize) * layers.len(), 0)?;
        Ok(Some(DecoderTable { words, table, sync }))
    }

    /// Whether it was built for these layers and caches (compared word by word, no allocation).
    fn describes(&self, layers: &[Layer], caches: &[KvCache]) -> bool {
        layers.len() == caches.len()
            && self.words.len() == 14 * layers.len()
            && self
                .words
                .chunks(14)
                .zip(layers.iter().zip(caches))
                .all(|(w, (l, c))| layer_words(l, c).is_some_and(|lw| lw[..] == *w))
    }
}

/// Dimensions of [`decoder_layers`].
#[derive(Debug, Clone, Copy)]
pub struct DecoderDims {
    /// Model width (heads × 64).
    pub hidden: u32,
    /// MLP width.
    pub ffn: u32,
    /// Heads.
    pub heads: Heads,
    /// LayerNorm epsilon.
    pub eps: f32,
}

/// Every transformer layer of a GPT-2-style decode step in one launch (`decoder_layers_d64`):
/// `x` (`batch` rows) in place, appending to `caches` at `pos`. `table` must have been built for
/// `layers` and `caches`. Returns false, launching nothing, when the kernel does not take this
/// shape (then the caller runs the layers one kernel at a time).
#[allow(clippy::too_many_arguments)]
pub fn decoder_layers(
    t: &Tenant,
    table: &DecoderTable,
    layers: &[Layer],
    caches: &[KvCache],
    dims: DecoderDims,
    x: Mat,
    qkv: Mat,
    attn: Mat,
    ffn: Mat,
    pos: &DeviceBuffer<u32>,
) -> Result<bool> {
    if !table.describes(layers, caches) {
        return Err(EngineError::Shape("the workspace's decoder table was built for other weights".into()));
    }
    let batch = x.rows;
    let h = dims.heads;
    x.expect(batch, dims.hidden, "decoder x")?;
    qkv.expect(batch, (h.q + 2 * h.kv) * h.dim, "decoder qkv")?;
    attn.expect(batch, dims.hidden, "decoder attention output")?;
    ffn.expect(batch, dims.ffn, "decoder MLP")?;
    for (m, what) in [(x, "x"), (qkv, "qkv"), (attn, "attention output"), (ffn, "MLP")] {
        if m.ld != m.cols {
            return Err(EngineError::Shape(format!("decoder {what}: rows must be contiguous")));
        }
    }
    let max_len = caches.first().map_or(0, |c| c.max_len);
    for c in caches {
        if c.max_len != max_len {
            return Err(EngineError::Shape("decoder caches of different lengths".into()));
        }
        c.check(batch, h)?;
    }
    let p = DecoderParams {
        layers: table.table.ptr(),
        x: x.ptr,
        qkv: qkv.ptr,
        attn: attn.ptr,
        ffn: ffn.ptr,
        pos: counts(pos, batch)?,
        sync: table.sync.ptr(),
        trace: 0,
        n_layers: layers.len() as u32,
        batch,
        hidden: dims.hidden,
        ffn_dim: dims.ffn,
        heads: h.q,
        heads_kv: h.kv,
        max_len,
        eps: dims.eps,
        scale: 1.0 / (h.dim as f32).sqrt(),
        _pad: 0,
    };
    if h.dim != 64 || p.check(k::DECODER_LAYERS_D64.id()).is_err() {
        return Ok(false);
    }
    // SAFETY: views and caches checked above; the table holds exactly these layers' weights and
    // caches.
    unsafe { t.launch(k::DECODER_LAYERS_D64, &p) }?;
    Ok(true)
}

/// Writes the k and v of `tokens` new tokens per sequence (from `qkv` rows) into `cache` at
/// positions `start[b]..`.
pub fn kv_append(
    t: &Tenant,
    qkv: Mat,
    heads: Heads,
    batch: u32,
    tokens: u32,
    start: &DeviceBuffer<u32>,
    cache: &KvCache,
) -> Result<()> {
    let (qw, kw) = (heads.q * heads.dim, heads.kv * heads.dim);
    qkv.expect(batch * tokens, qw + 2 * kw, "kv_append qkv")?;
    cache.check(batch, heads)?;
    let p = KvAppendParams {
        k: qkv.ptr + 2 * u64::from(qw),
        v: qkv.ptr + 2 * u64::from(qw + kw),
        k_cache: cache.k.ptr(),
        v_cache: cache.v.ptr(),
        start: counts(start, batch)?,
        batch,
        tokens,
        heads_kv: heads.kv,
        head_dim: heads.dim,
        max_len: cache.max_len,
        k_stride: qkv.ld,
        v_stride: qkv.ld,
        _pad: 0,
    };
    // SAFETY: views checked above.
    unsafe { t.launch(k::KV_APPEND, &p) }?;
    Ok(())
}

fn counts(buf: &DeviceBuffer<u32>, batch: u32) -> Result<u64> {
    if buf.len() < batch as usize {
        return Err(EngineError::Shape(format!("{} positions for {batch} sequences", buf.len())));
    }
    Ok(buf.ptr())
}

/// Decode attention: appends each sequence's new k and v (a `qkv` row) to its cache at
/// position `pos[b]`, then attends its query over the cache's first `pos[b] + 1` positions.
/// With `inv_freq`, q and k are first rotated by RoPE at `pos[b]` (in registers: the same bits
/// as [`rope`] before the attention, one launch fewer).
#[allow(clippy::too_many_arguments)]
pub fn decode_attention(
    t: &Tenant,
    qkv: Mat,
    heads: Heads,
    batch: u32,
    cache: &KvCache,
    pos: &DeviceBuffer<u32>,
    inv_freq: Option<&DeviceBuffer<f32>>,
    scratch: Option<&DecodeScratch>,
    out: Mat,
) -> Result<()> {
    let (qw, kw) = (heads.q * heads.dim, heads.kv * heads.dim);
    qkv.expect(batch, qw + 2 * kw, "decode qkv")?;
    out.expect(batch, qw, "decode output")?;
    cache.check(batch, heads)?;
    if let Some(inv) = inv_freq {
        check_inv_freq(inv, heads)?;
    }
    let need = decode_attention_need(batch, heads.q, heads.dim, cache.max_len);
    let (partial, arrived) = Scratch::for_launch(scratch, need).ok_or_else(|| {
        let (floats, words) = need.unwrap_or_default();
        EngineError::Shape(format!(
            "decode attention over {} positions needs a scratch of {floats} floats and {words} words",
            cache.max_len
        ))
    })?;
    let p = DecodeAttentionParams {
        q: qkv.ptr,
        k: qkv.ptr + 2 * u64::from(qw),
        v: qkv.ptr + 2 * u64::from(qw + kw),
        k_cache: cache.k.ptr(),
        v_cache: cache.v.ptr(),
        o: out.ptr,
        pos: counts(pos, batch)?,
        inv_freq: inv_freq.map_or(0, DeviceBuffer::ptr),
        batch,
        heads_q: heads.q,
        heads_kv: heads.kv,
        head_dim: heads.dim,
        max_len: cache.max_len,
        qkv_stride: qkv.ld,
        o_stride: out.ld,
        scale: 1.0 / (heads.dim as f32).sqrt(),
        partial,
        arrived,
    };
    let kernel = attention_decode_kernel(&p).ok_or_else(|| unsupported_head(heads.dim))?;
    // SAFETY: views checked above.
    unsafe { t.launch(kernel, &p) }?;
    Ok(())
}

fn check_inv_freq(inv_freq: &DeviceBuffer<f32>, heads: Heads) -> Result<()> {
    if inv_freq.len() < (heads.dim / 2) as usize {
        return Err(EngineError::Shape("rope: too few inverse frequencies".into()));
    }
    Ok(())
}

/// RoPE in place on the q and k heads of `qkv` rows; positions `start[b] + t`.
pub fn rope(
    t: &Tenant,
    qkv: Mat,
    heads: Heads,
    batch: u32,
    tokens: u32,
    start: &DeviceBuffer<u32>,
    inv_freq: &DeviceBuffer<f32>,
) -> Result<()> {
    qkv.expect(batch * tokens, (heads.q + 2 * heads.kv) * heads.dim, "rope qkv")?;
    check_inv_freq(inv_freq, heads)?;
    let p = RopeParams {
        q: qkv.ptr,
        k: qkv.ptr + 2 * u64::from(heads.q * heads.dim),
        inv_freq: inv_freq.ptr(),
        start: counts(start, batch)?,
        batch,
        tokens,
        heads_q: heads.q,
        heads_kv: heads.kv,
        head_dim: heads.dim,
        q_stride: qkv.ld,
        k_stride: qkv.ld,
        _pad: 0,
    };
    // SAFETY: views checked above.
    unsafe { t.launch(k::ROPE, &p) }?;
    Ok(())
}

/// Token (+ position from `start[b] + t`, + type row) embeddings of `ids` into `out`; `tok` holds
/// `vocab` rows, row-major or packed (a tied LM head's weights).
#[allow(clippy::too_many_arguments)]
pub fn embedding(
    t: &Tenant,
    ids: &DeviceBuffer<u32>,
    batch: u32,
    tokens: u32,
    tok: Weight,
    vocab: u32,
    pos: Option<&DeviceBuffer<f16>>,
    type_row: Option<&DeviceBuffer<f16>>,
    start: Option<&DeviceBuffer<u32>>,
    out: Mat,
) -> Result<()> {
    let hidden = out.cols;
    out.expect(batch * tokens, hidden, "embedding output")?;
    if out.ld != hidden || ids.len() < (batch * tokens) as usize {
        return Err(EngineError::Shape("embedding: contiguous output and one id per token needed".into()));
    }
    if tok.pairs {
        return Err(EngineError::Shape("token rows cannot be gate/up pairs".into()));
    }
    let len = if tok.packed { PackParams::packed_len(vocab, hidden) } else { u64::from(vocab) * u64::from(hidden) };
    if (tok.buf.len() as u64) < len || (tok.packed && tok.buf.len() as u64 != len) {
        return Err(EngineError::Shape(format!("{vocab} token rows of {hidden} in a buffer of {}", tok.buf.len())));
    }
    let p = EmbeddingParams {
        ids: ids.ptr(),
        tok: tok.buf.ptr(),
        pos: pos.map_or(0, |p| p.ptr()),
        type_: type_row.map(|r| vector(r, hidden, "type row")).transpose()?.unwrap_or(0),
        start: start.map(|s| counts(s, batch)).transpose()?.unwrap_or(0),
        out: out.ptr,
        batch,
        tokens,
        hidden,
        vocab,
        max_pos: pos.map_or(0, |p| (p.len() / hidden as usize) as u32),
        tok_packed: u32::from(tok.packed),
    };
    // SAFETY: the kernel never reads past vocab rows, which `tok` holds (checked above), or
    // max_pos rows, which come from the buffer.
    unsafe { t.launch(k::EMBEDDING, &p) }?;
    Ok(())
}

/// `out = silu(gate) · up` where `gate_up` rows hold `[gate | up]`, or with `paired` gate and up
/// interleaved by 8 columns (a GEMM's output on gate/up-paired packed weights, [`Weight::pairs`]).
pub fn swiglu(t: &Tenant, gate_up: Mat, out: Mat, paired: bool) -> Result<()> {
    let cols = out.cols;
    gate_up.expect(out.rows, 2 * cols, "swiglu input")?;
    if paired && cols % 8 != 0 {
        return Err(EngineError::Shape(format!("paired swiglu: {cols} columns are not whole groups of 8")));
    }
    // Paired, up's columns start 8 after gate's.
    let up = if paired { 8 } else { cols };
    let p = SwigluParams {
        gate: gate_up.ptr,
        up: gate_up.ptr + 2 * u64::from(up),
        out: out.ptr,
        rows: out.rows,
        cols,
        gate_stride: gate_up.ld,
        up_stride: gate_up.ld,
        out_stride: out.ld,
        paired: u32::from(paired),
    };
    // SAFETY: views checked above.
    unsafe { t.launch(k::SWIGLU, &p) }?;
    Ok(())
}

/// Each row's argmax into `out`; `scratch` where a row is scanned in parts ([`ArgmaxScratch`]
/// for at least these rows and columns). With `advance` (`(x, delta)`), also `x[i] += delta`
/// for every element, in the same launch (a decode step's positions, moved on after its
/// token): each launch, a plan's replay included, moves them on again.
pub fn argmax(
    t: &Tenant,
    logits: Mat,
    out: &DeviceBuffer<u32>,
    scratch: Option<&ArgmaxScratch>,
    advance: Option<(&DeviceBuffer<u32>, u32)>,
) -> Result<()> {
    if out.len() < logits.rows as usize {
        return Err(EngineError::Shape("argmax: output shorter than the rows".into()));
    }
    let (partial, arrived) =
        Scratch::for_launch(scratch, argmax_scratch(logits.rows, logits.cols)).ok_or_else(|| {
            EngineError::Shape(format!(
                "argmax: {} rows of {} columns ({} parts a row) need scratch for them",
                logits.rows,
                logits.cols,
                argmax_parts(logits.cols)
            ))
        })?;
    let p = ArgmaxParams {
        logits: logits.ptr,
        out: out.ptr(),
        partial,
        arrived,
        advance: advance.map_or(0, |(x, _)| x.ptr()),
        advance_n: advance.map_or(0, |(x, _)| x.len() as u64),
        rows: logits.rows,
        cols: logits.cols,
        stride: logits.ld,
        delta: advance.map_or(0, |(_, d)| d),
    };
    // SAFETY: views checked above; the scratch holds the rows' parts; `advance` is a whole
    // buffer.
    unsafe { t.launch(k::ARGMAX, &p) }?;
    Ok(())
}

/// `x[i] = value` for every element.
pub fn set_u32(t: &Tenant, x: &DeviceBuffer<u32>, value: u32) -> Result<()> {
    let p = SetU32Params { x: x.ptr(), n: x.len() as u64, value, _pad: 0 };
    // SAFETY: the whole buffer.
    unsafe { t.launch(k::SET_U32, &p) }?;
    Ok(())
}
