//! The forward passes: BERT-style encoders, and GPT-2 and Llama-style decoders with a KV
//! cache and greedy decoding. Every kernel goes through the tenant; a pass enqueues work
//! only (no allocation, no host synchronization), on buffers preallocated in a [`Workspace`].

use half::f16;

use super::config::{Family, ModelConfig};
use super::ops::{self, GemmBackend, Heads, KvCache, Mat, Weight};
use super::weights::{ModelWeights, Norm};
use super::EngineError;
use crate::kernels::abi::{PackParams, RS_ACT_GELU_ERF, RS_ACT_GELU_TANH, RS_ACT_NONE, RS_ACT_SWIGLU};
use crate::kernels::{argmax_scratch, decode_attention_scratch, packs_decode_weights, PACK_TILES};
use crate::runtime::{DeviceBuffer, Plan, Tenant};

type Result<T> = std::result::Result<T, EngineError>;

/// How a request's kernels are issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One launch through the runtime per kernel, decided as it goes.
    Eager,
    /// Decode steps captured once as a CUDA graph and replayed.
    Plan,
}

/// How a decode step runs its transformer layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecodePath {
    /// A kernel per operation (a GEMM with its fused norm, decode attention, …), so the
    /// runtime sizes each one: the default, for sharing a GPU.
    #[default]
    Layered,
    /// All layers in one persistent kernel (`decoder_layers_d64`) where it applies: GPT-2-style
    /// models with the library's GEMMs and row-major weights ([`Model::set_packed`] false on
    /// sm_90), head_dim 64, up to 8 sequences, widths ≤ 3072 (elsewhere as `Layered`). A step
    /// is 5 launches instead of 64 (gpt2) and was 5% faster alone on an H200 than the layered
    /// step on row-major weights, but the runtime can size the layers only as a whole.
    Fused,
}

/// A model on the device: its config and weights.
///
/// On an sm_90 GPU with the library's GEMMs, a decoder (Llama or GPT-2 family) keeps the
/// weights of its layers' GEMMs and of its LM head packed (`pack_tiles_f16`) where the packed
/// decode GEMM takes their K ([`packs_decode_weights`]): its decode steps stream them in bulk
/// copies (`gemm_f16_packed_*_m8`, [`crate::kernels::packed_decode_kernel`]; Llama's MLP up as gate/up pairs, whose GEMM writes silu(gate)·up), its
/// prefill reads them through the wgmma GEMMs' packed view, a tied head's token embedding is
/// read packed by `embedding_f16`, and the model holds one copy. `RIGHTSIZE_PACK=0` keeps them
/// row-major by default, and [`Model::set_packed`] chooses for one model (for comparisons).
#[derive(Debug)]
pub struct Model {
    config: ModelConfig,
    backend: GemmBackend,
    decode: DecodePath,
    weights: ModelWeights<DeviceBuffer<f16>>,
    inv_freq: Option<DeviceBuffer<f32>>,
    /// Pack where the GPU and backend allow ([`Model::set_packed`]).
    pack: bool,
    /// The device addresses of the weights that are packed now, each entered once its
    /// rewrite has completed (so a relayout that fails half way leaves every matrix read in
    /// the layout it has).
    packed: std::collections::HashSet<u64>,
}

/// Device buffers for requests of up to `batch` sequences of up to `seq` tokens (prompt and
/// generated tokens together for a decoder).
#[derive(Debug)]
pub struct Workspace {
    /// Sequences.
    pub batch: u32,
    /// Tokens per sequence.
    pub seq: u32,
    /// Token ids, `[batch·seq]`.
    pub ids: DeviceBuffer<u32>,
    /// Valid tokens per sequence (encoder padding), `[batch]`.
    pub lens: DeviceBuffer<u32>,
    /// Hidden states (the residual stream), `[batch·seq][hidden]`.
    pub x: DeviceBuffer<f16>,
    norm: DeviceBuffer<f16>,
    qkv: DeviceBuffer<f16>,
    attn: DeviceBuffer<f16>,
    ffn: DeviceBuffer<f16>,
    ffn_act: DeviceBuffer<f16>,
    /// Logits of each sequence's last token, `[batch][vocab]` (decoders).
    pub logits: DeviceBuffer<f16>,
    /// The next token of each sequence, `[batch]` (decoders).
    pub next: DeviceBuffer<u32>,
    /// Tokens in each sequence's cache before the current step, `[batch]`.
    pos: DeviceBuffer<u32>,
    caches: Vec<KvCache>,
    /// Decode attention's chunk states, where a step of up to `batch` sequences splits caches.
    scratch: Option<ops::DecodeScratch>,
    /// The greedy argmax's parts of rows (decoders whose vocabulary is scanned in parts).
    argmax: Option<ops::ArgmaxScratch>,
    /// The decoder kernel's layer table (GPT-2-style models).
    decoder: Option<ops::DecoderTable>,
}

/// The elements of each buffer of a [`Workspace`] for `batch` × `seq` tokens: what
/// [`Model::workspace`] allocates, and what [`MemoryNeed`] counts.
struct WorkspaceLens {
    batch: usize,
    /// Token ids.
    tokens: usize,
    /// `x` and `norm`, each.
    hidden: usize,
    qkv: usize,
    attn: usize,
    ffn: usize,
    ffn_act: usize,
    logits: usize,
    /// KV caches (one per layer for a decoder), and each one's K and V.
    caches: u32,
    cache: usize,
    /// Decode attention's chunk states (floats) and counts (words), where a step of up to
    /// `batch` sequences splits caches.
    chunks: Option<(usize, usize)>,
    /// The argmax's parts and counts (words), where a row of logits is scanned in parts.
    argmax: Option<(usize, usize)>,
}

impl WorkspaceLens {
    fn of(c: &ModelConfig, batch: u32, seq: u32) -> WorkspaceLens {
        let (b, t) = (batch as usize, batch as usize * seq as usize);
        let ffn_rows = c.ffn as usize * if c.family == Family::Llama { 2 } else { 1 };
        WorkspaceLens {
            batch: b,
            tokens: t,
            hidden: t * c.hidden as usize,
            qkv: t * c.qkv_width() as usize,
            attn: t * c.attn_width() as usize,
            ffn: t * ffn_rows,
            ffn_act: if c.family == Family::Llama { t * c.ffn as usize } else { 0 },
            logits: if c.is_decoder() { b * c.vocab as usize } else { 0 },
            caches: if c.is_decoder() { c.layers } else { 0 },
            cache: t * c.kv_heads as usize * c.head_dim as usize,
            chunks: c.is_decoder().then(|| decode_attention_scratch(batch, c.heads, c.head_dim, seq)).flatten(),
            argmax: c.is_decoder().then(|| argmax_scratch(batch, c.vocab)).flatten(),
        }
    }

    /// Bytes, FP16 and u32 elements alike 2 and 4 bytes.
    fn bytes(&self) -> u64 {
        let half = 2 * self.hidden + self.qkv + self.attn + self.ffn + self.ffn_act + self.logits;
        let caches = 2 * self.caches as usize * self.cache;
        let scratch = |need: Option<(usize, usize)>| need.map_or(0, |(partial, counts)| partial + counts);
        let words = self.tokens + 3 * self.batch + scratch(self.chunks) + scratch(self.argmax);
        2 * (half + caches) as u64 + 4 * words as u64
    }
}

/// The (rows, K) of a layer's GEMM weights (QKV, attention out, MLP up, MLP down) and of the LM
/// head (untied, or the token embedding it is tied to).
fn gemm_shapes(c: &ModelConfig) -> ([(u32, u32); 4], (u32, u32)) {
    let up_rows = if c.family == Family::Llama { 2 * c.ffn } else { c.ffn };
    let layer = [(c.qkv_width(), c.hidden), (c.hidden, c.attn_width()), (up_rows, c.hidden), (c.hidden, c.ffn)];
    (layer, (c.vocab, c.hidden))
}

/// Device memory a model takes, counted before anything is allocated: its weights and a
/// workspace (activations, logits, KV cache). Not counted: the CUDA context, kernel images,
/// cuBLASLt's workspace and the decoder kernel's layer table, which do not grow with the
/// model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryNeed {
    /// Weights, bytes (packed ones padded to whole tiles of 16 rows).
    pub weights: u64,
    /// A workspace for the requests it serves, bytes.
    pub workspace: u64,
    /// Held only while the model loads (or changes its weights' layout): the second copy of
    /// the largest matrix it packs, bytes.
    pub load: u64,
}

impl MemoryNeed {
    /// What a model of `c` with a workspace for `batch` sequences of `seq` tokens (a
    /// decoder's prompt and generated tokens together) takes.
    pub fn of(c: &ModelConfig, batch: u32, seq: u32) -> MemoryNeed {
        let mut weights = 0u64;
        let _ = ModelWeights::specs(c).map(|s| {
            weights += 2 * s.len as u64;
            Ok::<_, ()>(())
        });
        let mut load = 0u64;
        if c.family == Family::Llama {
            // RoPE inverse frequencies, f32.
            weights += 4 * u64::from(c.head_dim / 2);
        }
        if c.family != Family::Bert {
            // A decoder's weights are packed where the GPU allows (`Model::relayout`): counted
            // wherever they could be, so a check made before the GPU is known holds on any.
            let (layer, head) = gemm_shapes(c);
            let packs = |&(n, k): &(u32, u32)| packs_decode_weights(k).then(|| 2 * PackParams::packed_len(n, k));
            let pad = |nk: &(u32, u32)| packs(nk).map_or(0, |p| p - 2 * u64::from(nk.0) * u64::from(nk.1));
            weights += u64::from(c.layers) * layer.iter().map(pad).sum::<u64>() + pad(&head);
            load = layer.iter().chain([&head]).filter_map(packs).max().unwrap_or(0);
        }
        MemoryNeed { weights, workspace: WorkspaceLens::of(c, batch, seq).bytes(), load }
    }

    /// What stays allocated, bytes: weights and workspace.
    pub fn total(&self) -> u64 {
        self.weights + self.workspace
    }

    /// The most it holds at once, bytes: [`MemoryNeed::total`] and, while it loads, `load`.
    pub fn peak(&self) -> u64 {
        self.total() + self.load
    }
}

fn norm_weights(n: &Norm<DeviceBuffer<f16>>, rms: bool, eps: f32) -> ops::NormWeights<'_> {
    ops::NormWeights { rms, gamma: &n.gamma, beta: n.beta.as_ref(), eps }
}

impl Model {
    /// A model from a config and device weights.
    pub fn new(tenant: &Tenant, config: ModelConfig, weights: ModelWeights<DeviceBuffer<f16>>) -> Result<Model> {
        config.validate()?;
        let inv_freq = match config.family {
            Family::Llama => Some(DeviceBuffer::from_host(tenant.runtime().device(), &config.rope_inv_freq())?),
            _ => None,
        };
        let pack = !matches!(std::env::var("RIGHTSIZE_PACK").as_deref(), Ok("0" | "false" | "no" | "off"));
        let (backend, decode) = (GemmBackend::default(), DecodePath::default());
        let packed = std::collections::HashSet::new();
        let mut model = Model { config, backend, decode, weights, inv_freq, pack, packed };
        model.relayout(tenant)?;
        Ok(model)
    }

    /// Chooses the GEMM implementation (the library's kernels by default); packs or unpacks
    /// the weights to suit it (cuBLASLt reads them row-major). Weights that move are new
    /// buffers: plans captured before read the old ones, so capture them again.
    pub fn set_backend(&mut self, tenant: &Tenant, backend: GemmBackend) -> Result<()> {
        self.backend = backend;
        self.relayout(tenant)
    }

    /// Packs the weights of this model's GEMMs where it can (`pack`), or keeps them row-major;
    /// the outputs are the same bits either way. As [`Model::set_backend`], capture plans again.
    pub fn set_packed(&mut self, tenant: &Tenant, pack: bool) -> Result<()> {
        self.pack = pack;
        self.relayout(tenant)
    }

    /// Whether some of its weights are packed now.
    pub fn packed(&self) -> bool {
        !self.packed.is_empty()
    }

    /// Whether the weights of this model's GEMMs are to be packed: a decoder (Llama or GPT-2
    /// family: encoders run no decode GEMMs), the library's GEMMs, an sm_90 GPU, and packing
    /// asked for (`RIGHTSIZE_PACK` not 0, or [`Model::set_packed`]).
    fn wants_packed(&self, tenant: &Tenant) -> bool {
        self.pack
            && self.config.family != Family::Bert
            && self.backend == GemmBackend::Rightsize
            && tenant.runtime().device().info().compute_capability == (9, 0)
    }

    /// Packs or unpacks the GEMM weights whose K the packed decode GEMM takes (the LM head's:
    /// the token embedding when tied), as [`Model::wants_packed`] says, one matrix at a time (a
    /// matrix's second copy lives only while it is rewritten: [`MemoryNeed::load`]). Matrices
    /// already in that layout are left; after a failure, the next call finishes the rest.
    fn relayout(&mut self, tenant: &Tenant) -> Result<()> {
        let pack = self.wants_packed(tenant);
        let c = &self.config;
        let packed = &mut self.packed;
        let (shapes, head_shape) = gemm_shapes(c);
        let device = tenant.runtime().device();
        let mut rewrite = |buf: &mut DeviceBuffer<f16>, (n, k): (u32, u32), pairs: bool| -> Result<()> {
            if !packs_decode_weights(k) || packed.contains(&buf.ptr()) == pack {
                return Ok(());
            }
            let (rows, tiles) = (u64::from(n) * u64::from(k), PackParams::packed_len(n, k));
            let (from, to) = if pack { (rows, tiles) } else { (tiles, rows) };
            if buf.len() as u64 != from {
                return Err(EngineError::Weights(format!("{n}×{k} weights in a buffer of {} elements", buf.len())));
            }
            let out = DeviceBuffer::<f16>::filled(device, to as usize, 0)?;
            let p =
                PackParams { src: buf.ptr(), dst: out.ptr(), n, k, unpack: u32::from(!pack), pairs: u32::from(pairs) };
            // SAFETY: `buf` holds `from` and `out` `to` halves, as the params' layouts need.
            unsafe { tenant.launch(PACK_TILES, &p) }?;
            tenant.synchronize()?;
            packed.remove(&buf.ptr());
            *buf = out;
            if pack {
                packed.insert(buf.ptr());
            }
            Ok(())
        };
        // Llama's MLP up (gate and up rows) as gate/up pairs, for the SwiGLU epilogue.
        let pairs = [false, false, c.family == Family::Llama, false];
        for l in &mut self.weights.layers {
            for ((buf, shape), pairs) in
                [&mut l.qkv, &mut l.out, &mut l.up, &mut l.down].into_iter().zip(shapes).zip(pairs)
            {
                rewrite(buf, shape, pairs)?;
            }
        }
        // The LM head, untied or tied (the token embedding, which embedding_f16 reads packed).
        rewrite(self.weights.lm_head.as_mut().unwrap_or(&mut self.weights.tok), head_shape, false)?;
        Ok(())
    }

    /// A GEMM weight of the layers or the LM head (untied, or the token embedding), as it is
    /// laid out.
    fn w<'a>(&self, buf: &'a DeviceBuffer<f16>) -> Weight<'a> {
        Weight { buf, packed: self.packed.contains(&buf.ptr()), pairs: false }
    }

    /// Llama's MLP-up weight (gate rows, then up rows), packed as gate/up pairs when packed.
    fn gate_up<'a>(&self, buf: &'a DeviceBuffer<f16>) -> Weight<'a> {
        let w = self.w(buf);
        Weight { pairs: w.packed, ..w }
    }

    /// Chooses how decode steps run their layers (a kernel per operation by default).
    pub fn set_decode_path(&mut self, path: DecodePath) {
        self.decode = path;
    }

    /// Its config.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn heads(&self) -> Heads {
        Heads { q: self.config.heads, kv: self.config.kv_heads, dim: self.config.head_dim }
    }

    /// Buffers for requests of up to `batch` × `seq` tokens.
    pub fn workspace(&self, tenant: &Tenant, batch: u32, seq: u32) -> Result<Workspace> {
        let c = &self.config;
        if batch == 0 || seq == 0 {
            return Err(EngineError::Shape("a workspace needs batch ≥ 1 and seq ≥ 1".into()));
        }
        if seq > c.max_positions {
            return Err(EngineError::Shape(format!("{seq} tokens exceed {}'s {} positions", c.name, c.max_positions)));
        }
        let d = tenant.runtime().device();
        let n = WorkspaceLens::of(c, batch, seq);
        let half = |n: usize| DeviceBuffer::<f16>::filled(d, n, 0);
        let words = |n: usize| DeviceBuffer::<u32>::filled(d, n, 0);
        let caches = (0..n.caches)
            .map(|_| Ok(KvCache { k: half(n.cache)?, v: half(n.cache)?, max_len: seq }))
            .collect::<Result<Vec<_>>>()?;
        let decoder =
            if c.family == Family::Gpt2 { ops::DecoderTable::new(d, &self.weights.layers, &caches)? } else { None };
        let scratch = ops::DecodeScratch::new(d, n.chunks)?;
        let argmax = ops::ArgmaxScratch::new(d, n.argmax)?;
        Ok(Workspace {
            decoder,
            scratch,
            argmax,
            batch,
            seq,
            ids: words(n.tokens)?,
            lens: DeviceBuffer::from_host(d, &vec![seq; n.batch])?,
            x: half(n.hidden)?,
            norm: half(n.hidden)?,
            qkv: half(n.qkv)?,
            attn: half(n.attn)?,
            ffn: half(n.ffn)?,
            ffn_act: half(n.ffn_act)?,
            logits: half(n.logits)?,
            next: words(n.batch)?,
            pos: words(n.batch)?,
            caches,
        })
    }

    fn check_request(&self, ws: &Workspace, batch: u32, tokens: u32) -> Result<()> {
        if batch == 0 || tokens == 0 || batch > ws.batch || tokens > ws.seq {
            return Err(EngineError::Shape(format!(
                "request of {batch}×{tokens} tokens for a workspace of {}×{}",
                ws.batch, ws.seq
            )));
        }
        Ok(())
    }

    /// Encoder forward of `batch` sequences of `seq` tokens (ids in `ws.ids`, valid lengths in
    /// `ws.lens`): final hidden states in `ws.x`.
    pub fn encode(&self, t: &Tenant, ws: &Workspace, batch: u32, seq: u32) -> Result<()> {
        let c = &self.config;
        if c.family != Family::Bert {
            return Err(EngineError::Shape(format!("{} is a decoder; encode needs an encoder", c.name)));
        }
        self.check_request(ws, batch, seq)?;
        let (rows, h) = (batch * seq, c.hidden);
        let w = &self.weights;
        let x = Mat::of(&ws.x, rows, h)?;
        let tmp = Mat::of(&ws.norm, rows, h)?;
        let qkv = Mat::of(&ws.qkv, rows, c.qkv_width())?;
        let attn = Mat::of(&ws.attn, rows, c.attn_width())?;
        let ffn = Mat::of(&ws.ffn, rows, c.ffn)?;
        ops::embedding(t, &ws.ids, batch, seq, self.w(&w.tok), c.vocab, w.pos.as_ref(), w.type_row.as_ref(), None, x)?;
        let en = w.emb_norm.as_ref().ok_or_else(|| EngineError::Weights("BERT without embedding norm".into()))?;
        ops::norm(t, false, x, None, &en.gamma, en.beta.as_ref(), c.norm_eps, x)?;
        for l in &w.layers {
            ops::linear(t, self.backend, x, self.w(&l.qkv), l.qkv_bias.as_ref(), RS_ACT_NONE, None, qkv)?;
            ops::attention(t, qkv, self.heads(), batch, seq, Some(&ws.lens), false, attn)?;
            // Post-norm: x = LN(x + attn·Woᵀ + b).
            ops::linear(t, self.backend, attn, self.w(&l.out), l.out_bias.as_ref(), RS_ACT_NONE, Some(x), tmp)?;
            ops::norm(t, false, tmp, None, &l.norm1.gamma, l.norm1.beta.as_ref(), c.norm_eps, x)?;
            ops::linear(t, self.backend, x, self.w(&l.up), l.up_bias.as_ref(), RS_ACT_GELU_ERF, None, ffn)?;
            ops::linear(t, self.backend, ffn, self.w(&l.down), l.down_bias.as_ref(), RS_ACT_NONE, Some(x), tmp)?;
            ops::norm(t, false, tmp, None, &l.norm2.gamma, l.norm2.beta.as_ref(), c.norm_eps, x)?;
        }
        Ok(())
    }

    /// Runs `tokens` new tokens per sequence (ids in `ids`) through the decoder, appending
    /// their keys and values to the cache after `ws.pos` tokens, and writes each sequence's
    /// greedy next token to `ws.next`.
    fn decoder_pass(&self, t: &Tenant, ws: &Workspace, ids: &DeviceBuffer<u32>, batch: u32, tokens: u32) -> Result<()> {
        let c = &self.config;
        let (rows, h) = (batch * tokens, c.hidden);
        let w = &self.weights;
        let llama = c.family == Family::Llama;
        let x = Mat::of(&ws.x, rows, h)?;
        let a = Mat::of(&ws.norm, rows, h)?;
        let qkv = Mat::of(&ws.qkv, rows, c.qkv_width())?;
        let attn = Mat::of(&ws.attn, rows, c.attn_width())?;
        let up_cols = if llama { 2 * c.ffn } else { c.ffn };
        let ffn = Mat::of(&ws.ffn, rows, up_cols)?;
        let heads = self.heads();
        let prefill = tokens > 1;
        let pos_table = if llama { None } else { w.pos.as_ref() };
        let norm_of = |n| norm_weights(n, llama, c.norm_eps);
        ops::embedding(t, ids, batch, tokens, self.w(&w.tok), c.vocab, pos_table, None, Some(&ws.pos), x)?;
        // The decoder kernel reads row-major weights.
        let fused = match (&ws.decoder, prefill, self.backend, self.decode) {
            (Some(table), false, GemmBackend::Rightsize, DecodePath::Fused) if !self.packed() => {
                let dims = ops::DecoderDims { hidden: h, ffn: c.ffn, heads, eps: c.norm_eps };
                ops::decoder_layers(t, table, &w.layers, &ws.caches, dims, x, qkv, attn, ffn, &ws.pos)?
            }
            _ => false,
        };
        // Unless the decoder kernel ran them, the layers run a kernel per operation.
        let layered = if fused { &w.layers[..0] } else { &w.layers[..] };
        for (l, cache) in layered.iter().zip(&ws.caches) {
            // Decode-sized GEMMs normalise their input rows themselves (one launch).
            ops::norm_linear(
                t,
                self.backend,
                norm_of(&l.norm1),
                x,
                a,
                self.w(&l.qkv),
                l.qkv_bias.as_ref(),
                RS_ACT_NONE,
                qkv,
            )?;
            if prefill {
                if let Some(inv) = &self.inv_freq {
                    ops::rope(t, qkv, heads, batch, tokens, &ws.pos, inv)?;
                }
                ops::kv_append(t, qkv, heads, batch, tokens, &ws.pos, cache)?;
                ops::attention(t, qkv, heads, batch, tokens, None, true, attn)?;
            } else {
                // RoPE (Llama), appends this token's k and v to the cache, then attends.
                ops::decode_attention(
                    t,
                    qkv,
                    heads,
                    batch,
                    cache,
                    &ws.pos,
                    self.inv_freq.as_ref(),
                    ws.scratch.as_ref(),
                    attn,
                )?;
            }
            // Pre-norm residual stream, updated in place: x += attn·Woᵀ + b.
            ops::linear(t, self.backend, attn, self.w(&l.out), l.out_bias.as_ref(), RS_ACT_NONE, Some(x), x)?;
            if llama {
                let act = Mat::of(&ws.ffn_act, rows, c.ffn)?;
                let up = self.gate_up(&l.up);
                if ops::fuses_swiglu(self.backend, up, rows) {
                    // One launch: gate and up never reach memory.
                    ops::norm_linear(t, self.backend, norm_of(&l.norm2), x, a, up, None, RS_ACT_SWIGLU, act)?;
                } else {
                    ops::norm_linear(t, self.backend, norm_of(&l.norm2), x, a, up, None, RS_ACT_NONE, ffn)?;
                    ops::swiglu(t, ffn, act, up.pairs)?;
                }
                ops::linear(t, self.backend, act, self.w(&l.down), None, RS_ACT_NONE, Some(x), x)?;
            } else {
                let up_bias = l.up_bias.as_ref();
                ops::norm_linear(
                    t,
                    self.backend,
                    norm_of(&l.norm2),
                    x,
                    a,
                    self.w(&l.up),
                    up_bias,
                    RS_ACT_GELU_TANH,
                    ffn,
                )?;
                ops::linear(t, self.backend, ffn, self.w(&l.down), l.down_bias.as_ref(), RS_ACT_NONE, Some(x), x)?;
            }
        }
        let fnorm = w.final_norm.as_ref().ok_or_else(|| EngineError::Weights("decoder without final norm".into()))?;
        let logits = Mat::of(&ws.logits, batch, c.vocab)?;
        // A tied head is the token embedding (packed with it, where it is).
        let head = self.w(w.lm_head.as_ref().unwrap_or(&w.tok));
        if prefill {
            // Every row is normalised (the norm takes contiguous rows), each sequence's last
            // one goes on to the LM head.
            ops::norm(t, llama, x, None, &fnorm.gamma, fnorm.beta.as_ref(), c.norm_eps, a)?;
            ops::linear(t, self.backend, a.rows_every(tokens - 1, tokens)?, head, None, RS_ACT_NONE, None, logits)?;
        } else {
            ops::norm_linear(t, self.backend, norm_of(fnorm), x, a, head, None, RS_ACT_NONE, logits)?;
        }
        // The cache now holds `tokens` more positions: moved on by the argmax's launch.
        ops::argmax(t, logits, &ws.next, ws.argmax.as_ref(), Some((&ws.pos, tokens)))
    }

    /// Prefill: `prompt` tokens per sequence (ids in `ws.ids`) into an empty cache; the first
    /// generated token of each sequence lands in `ws.next`. Enqueues work only (positions are
    /// reset by a kernel), so a prefill can be captured and replayed too.
    pub fn prefill(&self, t: &Tenant, ws: &Workspace, batch: u32, prompt: u32) -> Result<()> {
        if !self.config.is_decoder() {
            return Err(EngineError::Shape(format!("{} is an encoder; prefill needs a decoder", self.config.name)));
        }
        self.check_request(ws, batch, prompt)?;
        ops::set_u32(t, &ws.pos, 0)?;
        self.decoder_pass(t, ws, &ws.ids, batch, prompt)
    }

    /// One request as the profiler and harness see it: an encoder forward of `batch × seq`
    /// tokens, or a decoder prefill of `seq` tokens per sequence followed by one decode step
    /// (the workspace needs `seq + 1` positions). Ids are read from `ws.ids`.
    pub fn request(&self, t: &Tenant, ws: &Workspace, batch: u32, seq: u32) -> Result<()> {
        if self.config.is_decoder() {
            self.prefill(t, ws, batch, seq)?;
            self.decode_step(t, ws, batch)
        } else {
            self.encode(t, ws, batch, seq)
        }
    }

    /// A description of [`Model::request`] for reports.
    pub fn describe_request(&self, batch: u32, seq: u32) -> String {
        if self.config.is_decoder() {
            format!("prefill {batch}×{seq} + decode step (cache {seq})")
        } else {
            format!("forward {batch}×{seq}")
        }
    }

    /// Captures `record`'s launches as a plan; cuBLASLt, when it runs the GEMMs, is loaded first
    /// (a capture cannot allocate its workspace).
    fn capture(&self, t: &Tenant, record: impl FnOnce() -> Result<()>) -> Result<Plan> {
        if self.backend == GemmBackend::CublasLt {
            t.runtime().prepare_blas()?;
        }
        t.capture(record)
    }

    /// Captures a prefill of `prompt` tokens per sequence (the work of [`Model::prefill`]).
    pub fn capture_prefill(&self, t: &Tenant, ws: &Workspace, batch: u32, prompt: u32) -> Result<Plan> {
        self.capture(t, || self.prefill(t, ws, batch, prompt))
    }

    /// One greedy decode step: feeds `ws.next` and writes the following token to `ws.next`.
    /// Enqueues work only, so steps can be captured and replayed.
    pub fn decode_step(&self, t: &Tenant, ws: &Workspace, batch: u32) -> Result<()> {
        self.check_request(ws, batch, 1)?;
        self.decoder_pass(t, ws, &ws.next, batch, 1)
    }

    /// Captures one decode step (the work of [`Model::decode_step`]) as a plan; replaying it
    /// advances every sequence by one token, exactly as the eager step does.
    pub fn capture_decode_step(&self, t: &Tenant, ws: &Workspace, batch: u32) -> Result<Plan> {
        self.capture(t, || self.decode_step(t, ws, batch))
    }

    /// Captures an encoder forward (the work of [`Model::encode`]) as a plan.
    pub fn capture_encode(&self, t: &Tenant, ws: &Workspace, batch: u32, seq: u32) -> Result<Plan> {
        self.capture(t, || self.encode(t, ws, batch, seq))
    }

    /// Sentence embeddings of a tokenized batch, as sentence-transformers makes them: the
    /// mean of each sentence's final hidden states over its tokens, L2-normalised,
    /// `[sentences][hidden]`. `ws` must hold the batch's sentences × tokens.
    pub fn embed(&self, t: &Tenant, ws: &mut Workspace, batch: &super::text::Batch) -> Result<Vec<Vec<f32>>> {
        let (n, seq) = (batch.lens.len() as u32, batch.seq);
        self.check_request(ws, n, seq)?;
        if batch.ids.len() != (n * seq) as usize || batch.lens.iter().any(|&l| l == 0 || l > seq) {
            return Err(EngineError::Shape(format!(
                "a batch of {} ids and lengths {:?} for {n}×{seq}",
                batch.ids.len(),
                batch.lens
            )));
        }
        if let Some(&bad) = batch.ids.iter().find(|&&id| id >= self.config.vocab) {
            return Err(EngineError::Shape(format!("token id {bad} ≥ vocab {}", self.config.vocab)));
        }
        let mut ids = batch.ids.clone();
        ids.resize(ws.ids.len(), 0);
        ws.ids.copy_from_host(&ids)?;
        let mut lens = batch.lens.clone();
        lens.resize(ws.lens.len(), seq);
        ws.lens.copy_from_host(&lens)?;
        self.encode(t, ws, n, seq)?;
        t.synchronize()?;
        let x = ws.x.to_host()?;
        Ok(super::reference::mean_pool(&x, self.config.hidden as usize, seq as usize, &batch.lens))
    }

    /// Greedy generation: `prompts` holds `batch` prompts of `prompt` tokens; returns the
    /// `new_tokens` generated tokens of each sequence, `[batch][new_tokens]`.
    #[allow(clippy::too_many_arguments)]
    pub fn generate(
        &self,
        t: &Tenant,
        ws: &mut Workspace,
        prompts: &[u32],
        batch: u32,
        prompt: u32,
        new_tokens: u32,
        mode: Mode,
    ) -> Result<Vec<Vec<u32>>> {
        if prompts.len() != (batch * prompt) as usize {
            return Err(EngineError::Shape(format!("{} prompt tokens for {batch}×{prompt}", prompts.len())));
        }
        if prompt + new_tokens > ws.seq + 1 {
            return Err(EngineError::Shape(format!(
                "{prompt} + {new_tokens} tokens exceed the workspace's {} cache positions",
                ws.seq
            )));
        }
        if let Some(&bad) = prompts.iter().find(|&&id| id >= self.config.vocab) {
            return Err(EngineError::Shape(format!("token id {bad} ≥ vocab {}", self.config.vocab)));
        }
        let mut padded = prompts.to_vec();
        padded.resize(ws.ids.len(), 0);
        ws.ids.copy_from_host(&padded)?;
        let mut out = vec![Vec::with_capacity(new_tokens as usize); batch as usize];
        let plan = match mode {
            Mode::Plan if new_tokens > 1 => Some(self.capture_decode_step(t, ws, batch)?),
            _ => None,
        };
        for step in 0..new_tokens {
            match (step, &plan) {
                (0, _) => self.prefill(t, ws, batch, prompt)?,
                (_, Some(p)) => t.replay(p)?,
                (_, None) => self.decode_step(t, ws, batch)?,
            }
            t.synchronize()?;
            let next = ws.next.to_host()?;
            for (seq, &tok) in out.iter_mut().zip(&next) {
                seq.push(tok);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_need_counts_a_decoders_packing() {
        // GPT-2's largest packed matrix is its tied head (the token embedding, padded to whole
        // tiles of 16 rows): copied once more while it is rewritten.
        let gpt2 = MemoryNeed::of(&ModelConfig::named("gpt2").unwrap(), 8, 192);
        assert_eq!(gpt2.load, 2 * PackParams::packed_len(50257, 768));
        assert_eq!(gpt2.peak(), gpt2.total() + gpt2.load);
        assert!(MemoryNeed::of(&ModelConfig::named("llama-3.2-1b").unwrap(), 8, 192).load > 0);
        assert_eq!(MemoryNeed::of(&ModelConfig::named("bert-base").unwrap(), 8, 128).load, 0, "encoders keep rows");
    }
}
