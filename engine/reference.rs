//! CPU reference forward passes, built from the kernel references
//! ([`crate::kernels::reference`]), for checking the engine on small configs.
//!
//! Decoders are run without a KV cache (the whole sequence is recomputed), so comparing them
//! with the engine also checks the cache, positions and decode attention.

use half::f16;

use super::config::{Family, ModelConfig};
use super::weights::{ModelWeights, Norm};
use crate::kernels::abi::{RS_ACT_GELU_ERF, RS_ACT_GELU_TANH, RS_ACT_NONE};
use crate::kernels::reference as r;

type W = ModelWeights<Vec<f16>>;

fn norm(c: &ModelConfig, x: &[f16], n: &Norm<Vec<f16>>) -> Vec<f16> {
    let h = c.hidden as usize;
    match c.family {
        Family::Llama => r::rms_norm(x, None, &n.gamma, h, c.norm_eps).y,
        _ => r::layer_norm(x, None, &n.gamma, n.beta.as_deref(), h, c.norm_eps).y,
    }
}

/// Splits rows of width `w` into column blocks of the given widths.
fn split_columns(x: &[f16], widths: &[usize]) -> Vec<Vec<f16>> {
    let w: usize = widths.iter().sum();
    let mut parts: Vec<Vec<f16>> = widths.iter().map(|_| Vec::new()).collect();
    for row in x.chunks(w) {
        let mut at = 0;
        for (p, &pw) in parts.iter_mut().zip(widths) {
            p.extend_from_slice(&row[at..at + pw]);
            at += pw;
        }
    }
    parts
}

fn linear(x: &[f16], w: &[f16], bias: Option<&[f16]>, residual: Option<&[f16]>, n: usize, act: u32) -> Vec<f16> {
    let k = w.len() / n;
    r::gemm(x, w, bias, residual, x.len() / k, n, k, act)
}

/// Encoder forward: final hidden states `[batch·seq][hidden]`.
pub fn encode(c: &ModelConfig, w: &W, ids: &[u32], batch: usize, seq: usize, lens: &[u32]) -> Vec<f16> {
    let h = c.hidden as usize;
    let mut x = r::embedding(ids, &w.tok, w.pos.as_deref(), w.type_row.as_deref(), None, seq, h);
    if let Some(n) = &w.emb_norm {
        x = norm(c, &x, n);
    }
    let heads = (c.heads as usize, c.kv_heads as usize, c.head_dim as usize);
    for l in &w.layers {
        let qkv = linear(&x, &l.qkv, l.qkv_bias.as_deref(), None, c.qkv_width() as usize, RS_ACT_NONE);
        let attn = attention(&qkv, heads, batch, seq, Some(lens), false);
        let h1 = linear(&attn, &l.out, l.out_bias.as_deref(), Some(&x), h, RS_ACT_NONE);
        x = norm(c, &h1, &l.norm1);
        let f = linear(&x, &l.up, l.up_bias.as_deref(), None, c.ffn as usize, RS_ACT_GELU_ERF);
        let h2 = linear(&f, &l.down, l.down_bias.as_deref(), Some(&x), h, RS_ACT_NONE);
        x = norm(c, &h2, &l.norm2);
    }
    x
}

fn attention(
    qkv: &[f16],
    (hq, hkv, d): (usize, usize, usize),
    batch: usize,
    seq: usize,
    lens: Option<&[u32]>,
    causal: bool,
) -> Vec<f16> {
    let parts = split_columns(qkv, &[hq * d, hkv * d, hkv * d]);
    let shape = r::AttentionShape { batch, seq, heads_q: hq, heads_kv: hkv, head_dim: d };
    r::attention(&parts[0], &parts[1], &parts[2], shape, lens, causal, 1.0 / (d as f32).sqrt())
}

/// Decoder forward over whole sequences (`tokens` is `[batch][len]`): the logits at every
/// position, `[batch·len][vocab]`.
pub fn decoder_logits(c: &ModelConfig, w: &W, tokens: &[u32], batch: usize, len: usize) -> Vec<f16> {
    let (h, d) = (c.hidden as usize, c.head_dim as usize);
    let (hq, hkv) = (c.heads as usize, c.kv_heads as usize);
    let llama = c.family == Family::Llama;
    let mut x = r::embedding(tokens, &w.tok, if llama { None } else { w.pos.as_deref() }, None, None, len, h);
    let inv = c.rope_inv_freq();
    for l in &w.layers {
        let a = norm(c, &x, &l.norm1);
        let mut qkv = linear(&a, &l.qkv, l.qkv_bias.as_deref(), None, c.qkv_width() as usize, RS_ACT_NONE);
        if llama {
            let mut parts = split_columns(&qkv, &[hq * d, hkv * d, hkv * d]);
            r::rope(&mut parts[0], hq, d, &inv, None, len);
            r::rope(&mut parts[1], hkv, d, &inv, None, len);
            qkv = (0..batch * len)
                .flat_map(|i| {
                    [
                        &parts[0][i * hq * d..(i + 1) * hq * d],
                        &parts[1][i * hkv * d..(i + 1) * hkv * d],
                        &parts[2][i * hkv * d..(i + 1) * hkv * d],
                    ]
                    .concat()
                })
                .collect();
        }
        let attn = attention(&qkv, (hq, hkv, d), batch, len, None, true);
        x = linear(&attn, &l.out, l.out_bias.as_deref(), Some(&x), h, RS_ACT_NONE);
        let a = norm(c, &x, &l.norm2);
        x = if llama {
            let gu = linear(&a, &l.up, None, None, 2 * c.ffn as usize, RS_ACT_NONE);
            let parts = split_columns(&gu, &[c.ffn as usize, c.ffn as usize]);
            let act = r::swiglu(&parts[0], &parts[1]);
            linear(&act, &l.down, None, Some(&x), h, RS_ACT_NONE)
        } else {
            let f = linear(&a, &l.up, l.up_bias.as_deref(), None, c.ffn as usize, RS_ACT_GELU_TANH);
            linear(&f, &l.down, l.down_bias.as_deref(), Some(&x), h, RS_ACT_NONE)
        };
    }
    let fnorm = w.final_norm.as_ref().expect("decoder weights have a final norm");
    let a = norm(c, &x, fnorm);
    let head = w.lm_head.as_deref().unwrap_or(&w.tok);
    linear(&a, head, None, None, c.vocab as usize, RS_ACT_NONE)
}

/// Mean of each sequence's first `lens[b]` hidden states (sentence-transformers pooling),
/// L2-normalised: `[batch][hidden]` in f32.
pub fn mean_pool(hidden: &[f16], hidden_size: usize, seq: usize, lens: &[u32]) -> Vec<Vec<f32>> {
    lens.iter()
        .enumerate()
        .map(|(b, &len)| {
            let len = (len as usize).clamp(1, seq);
            let mut v = vec![0f32; hidden_size];
            for t in 0..len {
                for (acc, x) in v.iter_mut().zip(&hidden[(b * seq + t) * hidden_size..][..hidden_size]) {
                    *acc += x.to_f32();
                }
            }
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            v.iter().map(|x| x / norm).collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize, vocab: u32, salt: u32) -> Vec<u32> {
        (0..n as u32).map(|i| (i * 7919 + salt * 104_729) % vocab).collect()
    }

    #[test]
    fn decoders_are_causal() {
        for family in [Family::Gpt2, Family::Llama] {
            let c = ModelConfig::tiny(family);
            let w = ModelWeights::synthetic_host(&c, 3);
            let (len, v) = (6usize, c.vocab as usize);
            let toks = ids(2 * len, c.vocab, 1);
            let full = decoder_logits(&c, &w, &toks, 2, len);
            // The logits at position 3 only depend on tokens 0..=3.
            let prefix: Vec<u32> = toks.chunks(len).flat_map(|s| s[..4].to_vec()).collect();
            let short = decoder_logits(&c, &w, &prefix, 2, 4);
            for b in 0..2 {
                let a = &full[(b * len + 3) * v..][..v];
                let s = &short[(b * 4 + 3) * v..][..v];
                assert!(r::relative_error(a, s) < 1e-6, "{family:?} seq {b}");
            }
            assert!(full.iter().all(|x| x.is_finite()));
        }
    }

    #[test]
    fn encoder_ignores_padding_tokens() {
        let c = ModelConfig::tiny(Family::Bert);
        let w = ModelWeights::synthetic_host(&c, 5);
        let (seq, h) = (8usize, c.hidden as usize);
        let lens = [5u32, 8];
        let mut a = ids(2 * seq, c.vocab, 2);
        let x1 = encode(&c, &w, &a, 2, seq, &lens);
        a[6] = (a[6] + 1) % c.vocab; // a padding position of sequence 0
        let x2 = encode(&c, &w, &a, 2, seq, &lens);
        assert_eq!(x1[..5 * h], x2[..5 * h], "valid tokens must not see padding");
        assert_eq!(x1[seq * h..], x2[seq * h..], "other sequences are untouched");
        let pooled = mean_pool(&x1, h, seq, &lens);
        assert!((pooled[0].iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-4);
    }

    #[test]
    fn split_columns_round_trips() {
        let x: Vec<f16> = (0..12).map(|i| f16::from_f32(i as f32)).collect();
        let p = split_columns(&x, &[1, 2, 3]);
        assert_eq!(p[0], vec![f16::from_f32(0.0), f16::from_f32(6.0)]);
        assert_eq!(p[2].len(), 6);
    }
}
