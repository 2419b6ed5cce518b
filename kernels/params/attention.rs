//! Params of the attention kernels and those around them: prefill and decode attention, the
//! KV-cache append and RoPE (all laid out by heads), which attention kernel runs a head_dim,
//! and the head checks the fused decoder shares.

use super::{ensure, has, key, optional, pointers, ParamError, Params};
use crate::kernels::abi::*;
use crate::kernels::{Kernel, KernelId};

fn head_dim_of(k: KernelId) -> u32 {
    match k {
        KernelId::AttentionPrefillD32 | KernelId::AttentionDecodeD32 | KernelId::AttentionDecodeSplitD32 => 32,
        KernelId::AttentionPrefillD64
        | KernelId::AttentionPrefillWgmmaD64
        | KernelId::AttentionPrefillWgmmaWideD64
        | KernelId::AttentionDecodeD64
        | KernelId::AttentionDecodeSplitD64
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
    use crate::kernels::{
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

/// The decode attention kernel for `p`'s head_dim (32, 64 or 128): `attention_decode_split_d*`
/// where its caches are split into chunks ([`decode_chunks`] > 1), else `attention_decode_d*`.
pub fn attention_decode_kernel(p: &DecodeAttentionParams) -> Option<Kernel<DecodeAttentionParams>> {
    use crate::kernels::{ATTENTION_DECODE_SPLIT_D128, ATTENTION_DECODE_SPLIT_D32, ATTENTION_DECODE_SPLIT_D64};
    if decode_chunks(p.batch, p.heads_q, p.max_len) == 1 {
        return attention_decode_unsplit(p.head_dim);
    }
    match p.head_dim {
        32 => Some(ATTENTION_DECODE_SPLIT_D32),
        64 => Some(ATTENTION_DECODE_SPLIT_D64),
        128 => Some(ATTENTION_DECODE_SPLIT_D128),
        _ => None,
    }
}

/// Whether `k` is a split decode attention kernel.
fn splits(k: KernelId) -> bool {
    matches!(
        k,
        KernelId::AttentionDecodeSplitD32 | KernelId::AttentionDecodeSplitD64 | KernelId::AttentionDecodeSplitD128
    )
}

pub(super) fn check_heads(k: KernelId, heads_q: u32, heads_kv: u32, head_dim: u32) -> Result<(), ParamError> {
    let d = head_dim_of(k);
    ensure(head_dim == d, k, || format!("head_dim = {head_dim}; this kernel takes {d}"))?;
    ensure(heads_kv >= 1 && heads_q % heads_kv == 0, k, || {
        format!("heads_q = {heads_q} must be a multiple of heads_kv = {heads_kv}")
    })
}

/// A cache of `max_len` rows of `head_dim` dims read by decode attention's units (also the
/// decoder kernel's): a lane reads its 16 bytes of a row at a 32-bit offset from the cache's start.
pub(super) fn check_cache_offsets(k: KernelId, max_len: u32, head_dim: u32) -> Result<(), ParamError> {
    ensure(u64::from(max_len) * u64::from(head_dim / 8) <= 1 << 32, k, || {
        format!("a cache of {max_len} positions × {head_dim} dims does not fit 32-bit offsets")
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

/// Chunks `attention_decode_split_d*` splits each cache of a launch of `batch` × `heads_q` (sequence,
/// query head) pairs and caches of `max_len` positions into (abi.h, `DecodeAttentionParams`;
/// kernels/attention_decode.cuh `decode_chunks`): enough for about `RS_DECODE_TARGET_UNITS`
/// units, at most `RS_DECODE_MAX_CHUNKS` and one per `RS_DECODE_MIN_CHUNK` positions.
pub fn decode_chunks(batch: u32, heads_q: u32, max_len: u32) -> u32 {
    let pairs = batch.saturating_mul(heads_q).max(1);
    let most = RS_DECODE_MAX_CHUNKS.min(max_len.div_ceil(RS_DECODE_MIN_CHUNK));
    RS_DECODE_TARGET_UNITS.div_ceil(pairs).min(most).max(1)
}

/// What `attention_decode_split_d*` needs beside caches of `max_len` positions for launches of
/// up to `batch` sequences (fewer pairs can mean more chunks): floats of `partial` and words of
/// `arrived` (zeroed before the first launch); `None` where no such launch is split.
pub fn decode_attention_scratch(batch: u32, heads_q: u32, head_dim: u32, max_len: u32) -> Option<(usize, usize)> {
    (1..=batch)
        .filter_map(|b| decode_attention_need(b, heads_q, head_dim, max_len))
        .reduce(|(f, w), (f2, w2)| (f.max(f2), w.max(w2)))
}

/// What one launch of exactly `batch` sequences needs of [`decode_attention_scratch`]'s buffers;
/// `None` where it is not split.
pub fn decode_attention_need(batch: u32, heads_q: u32, head_dim: u32, max_len: u32) -> Option<(usize, usize)> {
    let chunks = decode_chunks(batch, heads_q, max_len);
    let pairs = batch as usize * heads_q as usize;
    (chunks > 1).then(|| (pairs * chunks as usize * (head_dim as usize + 2), pairs))
}

/// The unsplit decode attention kernel for `head_dim` (32, 64 or 128), `attention_decode_d*`:
/// what [`attention_decode_kernel`] picks where the caches are not split.
pub fn attention_decode_unsplit(head_dim: u32) -> Option<Kernel<DecodeAttentionParams>> {
    use crate::kernels::{ATTENTION_DECODE_D128, ATTENTION_DECODE_D32, ATTENTION_DECODE_D64};
    match head_dim {
        32 => Some(ATTENTION_DECODE_D32),
        64 => Some(ATTENTION_DECODE_D64),
        128 => Some(ATTENTION_DECODE_D128),
        _ => None,
    }
}

impl Params for DecodeAttentionParams {
    fn units(&self, k: KernelId) -> u64 {
        let chunks = if splits(k) { decode_chunks(self.batch, self.heads_q, self.max_len) } else { 1 };
        u64::from(chunks) * u64::from(self.batch) * u64::from(self.heads_q)
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
        check_cache_offsets(k, self.max_len, self.head_dim)?;
        ensure(self.units(k) <= u64::from(u32::MAX), k, || {
            format!("{} units (chunks × batch × heads_q) do not fit 32 bits", self.units(k))
        })?;
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
        )?;
        optional(k, &[("inv_freq", self.inv_freq, 4)])?;
        if splits(k) {
            ensure(decode_chunks(self.batch, self.heads_q, self.max_len) > 1, k, || {
                format!(
                    "{} × {} heads over {} positions are not split: attention_decode_d* takes them",
                    self.batch, self.heads_q, self.max_len
                )
            })?;
            pointers(k, &[("partial", self.partial, 16), ("arrived", self.arrived, 4)])?;
        }
        Ok(())
    }
    fn shape_key(&self) -> u64 {
        // The cache's capacity (`max_len`) is a stride but for the chunks the split kernels make
        // of it: a profile taken with one capacity applies to caches of any other with as many
        // chunks (1: the unsplit kernels', whose key is as it was before chunks).
        let shape = [self.batch, self.heads_q, self.heads_kv, self.head_dim].map(u64::from);
        match decode_chunks(self.batch, self.heads_q, self.max_len) {
            1 => key(&shape),
            chunks => key(&[&shape[..], &[u64::from(chunks)]].concat()),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn decode_attention_splits_long_caches_of_few_heads_into_chunks_with_scratch() {
        let p = DecodeAttentionParams {
            q: 256,
            k: 256,
            v: 256,
            k_cache: 256,
            v_cache: 256,
            o: 256,
            pos: 256,
            batch: 8,
            heads_q: 32,
            heads_kv: 8,
            head_dim: 64,
            max_len: 4096,
            qkv_stride: 3072,
            o_stride: 2048,
            scale: 0.125,
            ..Default::default()
        };
        let (k, split) = (KernelId::AttentionDecodeD64, KernelId::AttentionDecodeSplitD64);
        // 256 (sequence, query head) pairs fill the launch: a unit a pair, however long the cache.
        assert_eq!(decode_chunks(8, 32, 4096), 1);
        assert_eq!(attention_decode_kernel(&p).map(|k| k.id()), Some(k));
        assert_eq!(p.units(k), 8 * 32);
        assert!(p.check(k).is_ok());
        assert!(DecodeAttentionParams { partial: 256, arrived: 256, ..p }.check(split).is_err());
        // A lane's offset into its cache is 32-bit: 2^29 positions of 64 dims fit, one more not.
        assert!(DecodeAttentionParams { max_len: 1 << 29, ..p }.check(k).is_ok());
        let far = DecodeAttentionParams { max_len: (1 << 29) + 1, ..p }.check(k).unwrap_err().to_string();
        assert!(far.contains("32-bit offsets"), "{far}");
        // (A workspace for 8 still keeps scratch for steps of 1–3 sequences: 3 × 32 pairs in 2
        // chunks need the most.)
        assert_eq!(decode_attention_scratch(8, 32, 64, 4096), Some((96 * 2 * 66, 96)));
        // One sequence: 32 pairs, 4 chunks of its cache (128 units) for the split kernel, which
        // needs both scratch buffers; a cache of one chunk's capacity is not split, and no cache
        // into more chunks than the cap allows.
        let one = DecodeAttentionParams { batch: 1, ..p };
        assert_eq!(attention_decode_kernel(&one).map(|k| k.id()), Some(split));
        assert_eq!(one.units(k), 32);
        assert_eq!(one.units(split), 4 * 32);
        let k = split;
        assert!(one.check(k).is_err());
        assert!(DecodeAttentionParams { partial: 256, ..one }.check(k).is_err());
        assert!(DecodeAttentionParams { partial: 256, arrived: 256, ..one }.check(k).is_ok());
        assert!(DecodeAttentionParams { partial: 260, arrived: 256, ..one }.check(k).is_err());
        assert_eq!(decode_attention_scratch(1, 32, 64, 4096), Some((32 * 4 * 66, 32)));
        // A workspace's scratch serves every batch up to its own: Llama-3.2-1B's 4 sequences are
        // not split, 1–3 are (3 need the most: 96 pairs in 2 chunks); GPT-2's (12 heads) 5 of 7
        // need the most states (60 pairs × 3 chunks), 7 the most counts.
        assert_eq!(decode_attention_scratch(4, 32, 64, 1024), Some((96 * 2 * 66, 96)));
        assert_eq!(decode_attention_scratch(7, 12, 64, 1024), Some((60 * 3 * 66, 84)));
        assert_eq!(decode_attention_scratch(4, 32, 64, 256), None);
        assert_eq!(decode_chunks(1, 32, RS_DECODE_MIN_CHUNK), 1);
        assert_eq!(decode_chunks(1, 32, RS_DECODE_MIN_CHUNK + 1), 2);
        assert_eq!(decode_chunks(1, 3, 1 << 20), RS_DECODE_MAX_CHUNKS);
        // A profile applies to caches of as many chunks, whatever their capacity.
        assert_eq!(p.shape_key(), DecodeAttentionParams { max_len: 1, ..p }.shape_key());
        assert_eq!(one.shape_key(), DecodeAttentionParams { max_len: 2000, ..one }.shape_key());
        assert_ne!(one.shape_key(), DecodeAttentionParams { max_len: 200, ..one }.shape_key());
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
}
