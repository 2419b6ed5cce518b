//! Model weights in the engine's layout, on the device or on the host.
//!
//! The layout is what the kernels want: every matrix is `[out][in]` row-major (B of the GEMM),
//! q, k and v are one matrix `[q|k|v][hidden]`, and a Llama MLP's gate and up are one matrix
//! `[gate|up][hidden]`. [`ModelWeights`] is generic over the storage so the same struct holds
//! device buffers (for the engine) and host vectors (for the CPU reference and for loading).

use half::f16;

use super::config::{Family, ModelConfig};
use crate::kernels::{abi::FillParams, FILL};
use crate::runtime::{DeviceBuffer, Tenant};

/// LayerNorm or RMSNorm parameters.
#[derive(Debug, Clone)]
pub struct Norm<T> {
    /// Scale.
    pub gamma: T,
    /// Shift (LayerNorm only).
    pub beta: Option<T>,
}

/// One transformer layer.
#[derive(Debug, Clone)]
pub struct Layer<T> {
    /// `[qkv_width][hidden]`.
    pub qkv: T,
    /// `[qkv_width]` (BERT, GPT-2).
    pub qkv_bias: Option<T>,
    /// `[hidden][attn_width]`.
    pub out: T,
    /// `[hidden]`.
    pub out_bias: Option<T>,
    /// BERT: after attention (post-norm); decoders: before attention.
    pub norm1: Norm<T>,
    /// BERT: after the MLP; decoders: before the MLP.
    pub norm2: Norm<T>,
    /// `[ffn][hidden]`, or `[2·ffn][hidden]` (gate then up) for Llama.
    pub up: T,
    /// `[ffn]` (BERT, GPT-2).
    pub up_bias: Option<T>,
    /// `[hidden][ffn]`.
    pub down: T,
    /// `[hidden]`.
    pub down_bias: Option<T>,
}

/// All weights of a model.
#[derive(Debug, Clone)]
pub struct ModelWeights<T> {
    /// Token embedding `[vocab][hidden]` (also the LM head when tied).
    pub tok: T,
    /// Position embedding `[max_positions][hidden]` (BERT, GPT-2).
    pub pos: Option<T>,
    /// Token-type 0 embedding `[hidden]` (BERT).
    pub type_row: Option<T>,
    /// Embedding LayerNorm (BERT).
    pub emb_norm: Option<Norm<T>>,
    /// Layers.
    pub layers: Vec<Layer<T>>,
    /// Final norm (decoders).
    pub final_norm: Option<Norm<T>>,
    /// LM head `[vocab][hidden]` when not tied to `tok`.
    pub lm_head: Option<T>,
}

/// The shape (elements) of every tensor of a config, in the [`ModelWeights`] layout, with the
/// scale and mean of synthetic values for it.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Elements.
    pub len: usize,
    /// Half-width of the uniform synthetic values.
    pub scale: f32,
    /// Centre of the synthetic values.
    pub mean: f32,
}

impl<T> Norm<T> {
    fn map<U, E>(self, f: &mut impl FnMut(T) -> Result<U, E>) -> Result<Norm<U>, E> {
        Ok(Norm { gamma: f(self.gamma)?, beta: self.beta.map(&mut *f).transpose()? })
    }
}

impl<T> ModelWeights<T> {
    /// Converts every tensor with `f`, in a fixed order (the order of [`ModelWeights::specs`]).
    pub fn map<U, E>(self, mut f: impl FnMut(T) -> Result<U, E>) -> Result<ModelWeights<U>, E> {
        let f = &mut f;
        Ok(ModelWeights {
            tok: f(self.tok)?,
            pos: self.pos.map(&mut *f).transpose()?,
            type_row: self.type_row.map(&mut *f).transpose()?,
            emb_norm: self.emb_norm.map(|n| n.map(f)).transpose()?,
            layers: self
                .layers
                .into_iter()
                .map(|l| {
                    Ok(Layer {
                        qkv: f(l.qkv)?,
                        qkv_bias: l.qkv_bias.map(&mut *f).transpose()?,
                        out: f(l.out)?,
                        out_bias: l.out_bias.map(&mut *f).transpose()?,
                        norm1: l.norm1.map(f)?,
                        norm2: l.norm2.map(f)?,
                        up: f(l.up)?,
                        up_bias: l.up_bias.map(&mut *f).transpose()?,
                        down: f(l.down)?,
                        down_bias: l.down_bias.map(&mut *f).transpose()?,
                    })
                })
                .collect::<Result<_, E>>()?,
            final_norm: self.final_norm.map(|n| n.map(f)).transpose()?,
            lm_head: self.lm_head.map(f).transpose()?,
        })
    }
}

impl ModelWeights<Spec> {
    /// Every tensor's shape for `c`, with synthetic value ranges at realistic scale: matrices
    /// and embeddings with standard deviation 0.02 (uniform ±0.0346), biases ±0.02, norm
    /// scales 1 ± 0.1, norm shifts ±0.02.
    pub fn specs(c: &ModelConfig) -> ModelWeights<Spec> {
        let (h, f, v) = (c.hidden as usize, c.ffn as usize, c.vocab as usize);
        let w = |len: usize| Spec { len, scale: 0.0346, mean: 0.0 };
        let b = |len: usize| Spec { len, scale: 0.02, mean: 0.0 };
        let llama = c.family == Family::Llama;
        let norm = |len: usize| Norm { gamma: Spec { len, scale: 0.1, mean: 1.0 }, beta: (!llama).then(|| b(len)) };
        let biased = |len: usize| (!llama).then(|| b(len));
        let (qkv, attn) = (c.qkv_width() as usize, c.attn_width() as usize);
        let up_rows = if llama { 2 * f } else { f };
        ModelWeights {
            tok: w(v * h),
            pos: (!llama).then(|| w(c.max_positions as usize * h)),
            type_row: (c.family == Family::Bert).then(|| w(h)),
            emb_norm: (c.family == Family::Bert).then(|| norm(h)),
            layers: (0..c.layers)
                .map(|_| Layer {
                    qkv: w(qkv * h),
                    qkv_bias: biased(qkv),
                    out: w(h * attn),
                    out_bias: biased(h),
                    norm1: norm(h),
                    norm2: norm(h),
                    up: w(up_rows * h),
                    up_bias: biased(f),
                    down: w(h * f),
                    down_bias: biased(h),
                })
                .collect(),
            final_norm: c.is_decoder().then(|| norm(h)),
            lm_head: (c.is_decoder() && !c.tie_embeddings).then(|| w(v * h)),
        }
    }
}

/// Seed of the `index`-th tensor of a synthetic model: far apart, so fills never overlap.
fn tensor_seed(seed: u64, index: u64) -> u64 {
    seed.wrapping_add(index.wrapping_mul(0x1000_0000_0000))
}

impl ModelWeights<DeviceBuffer<f16>> {
    /// Deterministic synthetic weights for `c`, generated on the device by `fill_f16`
    /// (the same `seed` gives the same weights; [`ModelWeights::synthetic_host`] reproduces them).
    pub fn synthetic(tenant: &Tenant, c: &ModelConfig, seed: u64) -> crate::runtime::Result<Self> {
        let device = tenant.runtime().device();
        let mut index = 0u64;
        let weights = ModelWeights::specs(c).map(|s: Spec| -> crate::runtime::Result<DeviceBuffer<f16>> {
            let buf = DeviceBuffer::<f16>::filled(device, s.len, 0)?;
            let p = FillParams {
                x: buf.ptr(),
                n: s.len as u64,
                seed: tensor_seed(seed, index),
                scale: s.scale,
                mean: s.mean,
            };
            index += 1;
            // SAFETY: `buf` holds `s.len` halves and lives in the returned weights.
            unsafe { tenant.launch(FILL, &p) }?;
            Ok(buf)
        })?;
        tenant.synchronize()?;
        Ok(weights)
    }

    /// Copies host weights to the device.
    pub fn upload(tenant: &Tenant, host: ModelWeights<Vec<f16>>) -> crate::runtime::Result<Self> {
        let device = tenant.runtime().device();
        host.map(|v| DeviceBuffer::from_host(device, &v))
    }
}

impl ModelWeights<Vec<f16>> {
    /// The host copy of [`ModelWeights::synthetic`]'s weights, bit for bit.
    pub fn synthetic_host(c: &ModelConfig, seed: u64) -> Self {
        let mut index = 0u64;
        let r: Result<_, std::convert::Infallible> = ModelWeights::specs(c).map(|s: Spec| {
            let v = crate::kernels::reference::fill(s.len, tensor_seed(seed, index), s.scale, s.mean);
            index += 1;
            Ok(v)
        });
        match r {
            Ok(w) => w,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_count_every_parameter() {
        for name in crate::engine::config::NAMED {
            let c = ModelConfig::named(name).unwrap();
            let mut total = 0u64;
            let mut matrices = 0u64;
            let _ = ModelWeights::specs(&c).map(|s: Spec| {
                total += s.len as u64;
                if s.len >= (c.hidden as usize) * 8 {
                    matrices += s.len as u64;
                }
                Ok::<_, ()>(())
            });
            // Matrices and embeddings are what `parameters` counts; biases and norms are the rest.
            assert_eq!(matrices, c.parameters(), "{name}");
            assert!(total > matrices);
        }
    }

    #[test]
    fn synthetic_host_weights_are_seeded_and_not_zero() {
        let c = ModelConfig::tiny(Family::Llama);
        let a = ModelWeights::synthetic_host(&c, 1);
        let b = ModelWeights::synthetic_host(&c, 2);
        assert_ne!(a.tok[..8], b.tok[..8]);
        assert!(a.layers[0].qkv.iter().any(|v| v.to_f32() != 0.0));
        assert!(a.layers[0].norm1.gamma.iter().all(|v| (v.to_f32() - 1.0).abs() <= 0.11));
        assert!(a.layers[0].norm1.beta.is_none() && a.lm_head.is_some());
        // Different tensors of one model differ.
        assert_ne!(a.layers[0].qkv[..8], a.layers[1].qkv[..8]);
    }
}
