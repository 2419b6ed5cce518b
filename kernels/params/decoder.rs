//! Params of the fused decoder layers (`decoder_layers_d64`): the work units of each phase of a
//! layer, as decoder.cu schedules them, and the constraints of `DecoderParams`.

use super::attention::{check_cache_offsets, check_heads};
use super::{ensure, key, optional, pointers, ParamError, Params};
use crate::kernels::abi::*;
use crate::kernels::KernelId;

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
        p.batch * p.heads,
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
        check_cache_offsets(k, self.max_len, 64)?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(decoder_phase_units(&tiny), [4, 6, 2, 8, 3], "attention: a unit per (sequence, query head)");
        let refused = |p: DecoderParams| p.check(KernelId::DecoderLayersD64).is_err();
        assert!(refused(gpt2_decoder(9)));
        assert!(refused(gpt2_decoder(0)));
        assert!(refused(DecoderParams { ffn_dim: 4096, ..gpt2_decoder(8) }));
        assert!(refused(DecoderParams { hidden: 800, heads: 12, ..gpt2_decoder(8) }));
        assert!(refused(DecoderParams { heads_kv: 5, ..gpt2_decoder(8) }));
        assert!(refused(DecoderParams { x: 18, ..gpt2_decoder(8) }));
        assert!(refused(DecoderParams { sync: 0, ..gpt2_decoder(8) }));
        assert!(refused(DecoderParams { n_layers: 49, ..gpt2_decoder(8) }));
        // 2^29 positions of 64 dims fit a lane's 32-bit offsets into its cache, one more not.
        assert!(DecoderParams { max_len: 1 << 29, ..gpt2_decoder(8) }.check(KernelId::DecoderLayersD64).is_ok());
        assert!(refused(DecoderParams { max_len: (1 << 29) + 1, ..gpt2_decoder(8) }));
    }
}
