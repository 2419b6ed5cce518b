//! Model architectures: the named configs and a serde format for others.
//!
//! A config describes an architecture only (no weights). Three families: BERT-style
//! encoders, GPT-2 decoders (learned positions, LayerNorm, GELU MLP) and Llama-style
//! decoders (RoPE, RMSNorm, SwiGLU MLP, grouped-query attention).

use serde::{Deserialize, Serialize};

/// Architecture family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Post-LayerNorm encoder with token-type embeddings (BERT, MiniLM).
    Bert,
    /// Pre-LayerNorm decoder with learned positions and a GELU (tanh) MLP.
    Gpt2,
    /// Pre-RMSNorm decoder with RoPE, SwiGLU and grouped-query attention.
    Llama,
}

/// Llama 3's RoPE frequency scaling ("rope_type": "llama3").
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Llama3Scaling {
    /// Overall factor.
    pub factor: f64,
    /// Low-frequency factor.
    pub low_freq_factor: f64,
    /// High-frequency factor.
    pub high_freq_factor: f64,
    /// Context the model was pre-trained with.
    pub original_max_position_embeddings: f64,
}

/// An architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Name, e.g. "bert-base".
    pub name: String,
    /// Family.
    pub family: Family,
    /// Vocabulary size.
    pub vocab: u32,
    /// Hidden size.
    pub hidden: u32,
    /// Transformer layers.
    pub layers: u32,
    /// Query heads.
    pub heads: u32,
    /// Key/value heads (= heads without grouped-query attention).
    pub kv_heads: u32,
    /// Elements per head (32, 64 or 128).
    pub head_dim: u32,
    /// MLP inner size.
    pub ffn: u32,
    /// Longest sequence: the position table's rows (BERT, GPT-2) or the RoPE context (Llama).
    pub max_positions: u32,
    /// Token-type vocabulary (BERT; 0 otherwise).
    #[serde(default)]
    pub type_vocab: u32,
    /// Norm epsilon.
    pub norm_eps: f32,
    /// RoPE base θ (Llama).
    #[serde(default)]
    pub rope_theta: f64,
    /// RoPE scaling (Llama 3).
    #[serde(default)]
    pub rope_scaling: Option<Llama3Scaling>,
    /// Whether the LM head reuses the token embedding (GPT-2, small Llamas).
    #[serde(default)]
    pub tie_embeddings: bool,
}

/// Names [`ModelConfig::named`] knows.
pub const NAMED: &[&str] = &[
    "bert-base",
    "bert-large",
    "minilm-l6",
    "distilgpt2",
    "gpt2",
    "gpt2-medium",
    "gpt2-large",
    "llama-3.2-1b",
    "llama-3.2-3b",
    "mistral-7b",
];

/// Why a config is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No named config of that name.
    #[error("unknown model {0:?}; known: {known}", known = NAMED.join(", "))]
    Unknown(String),
    /// A config the kernels cannot run.
    #[error("model {name}: {reason}")]
    Invalid {
        /// Config name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A config file that does not parse.
    #[error("config {path}: {reason}")]
    Parse {
        /// File.
        path: String,
        /// Parser's message.
        reason: String,
    },
}

impl ModelConfig {
    fn bert(name: &str, hidden: u32, layers: u32, heads: u32, ffn: u32) -> ModelConfig {
        ModelConfig {
            name: name.into(),
            family: Family::Bert,
            vocab: 30522,
            hidden,
            layers,
            heads,
            kv_heads: heads,
            head_dim: hidden / heads,
            ffn,
            max_positions: 512,
            type_vocab: 2,
            norm_eps: 1e-12,
            rope_theta: 0.0,
            rope_scaling: None,
            tie_embeddings: false,
        }
    }

    fn gpt2(name: &str, hidden: u32, layers: u32, heads: u32) -> ModelConfig {
        ModelConfig {
            name: name.into(),
            family: Family::Gpt2,
            vocab: 50257,
            hidden,
            layers,
            heads,
            kv_heads: heads,
            head_dim: hidden / heads,
            ffn: 4 * hidden,
            max_positions: 1024,
            type_vocab: 0,
            norm_eps: 1e-5,
            rope_theta: 0.0,
            rope_scaling: None,
            tie_embeddings: true,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn llama(
        name: &str,
        vocab: u32,
        hidden: u32,
        layers: u32,
        heads: u32,
        kv_heads: u32,
        head_dim: u32,
        ffn: u32,
        theta: f64,
        tie: bool,
    ) -> ModelConfig {
        ModelConfig {
            name: name.into(),
            family: Family::Llama,
            vocab,
            hidden,
            layers,
            heads,
            kv_heads,
            head_dim,
            ffn,
            max_positions: 131_072,
            type_vocab: 0,
            norm_eps: 1e-5,
            rope_theta: theta,
            rope_scaling: None,
            tie_embeddings: tie,
        }
    }

    /// A named architecture (see [`NAMED`]), as published by its authors.
    pub fn named(name: &str) -> Result<ModelConfig, ConfigError> {
        let llama3 = Some(Llama3Scaling {
            factor: 32.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192.0,
        });
        let c = match name {
            "bert-base" => Self::bert(name, 768, 12, 12, 3072),
            "bert-large" => Self::bert(name, 1024, 24, 16, 4096),
            "minilm-l6" => Self::bert(name, 384, 6, 12, 1536),
            "distilgpt2" => Self::gpt2(name, 768, 6, 12),
            "gpt2" => Self::gpt2(name, 768, 12, 12),
            "gpt2-medium" => Self::gpt2(name, 1024, 24, 16),
            "gpt2-large" => Self::gpt2(name, 1280, 36, 20),
            "llama-3.2-1b" => ModelConfig {
                rope_scaling: llama3,
                ..Self::llama(name, 128_256, 2048, 16, 32, 8, 64, 8192, 500_000.0, true)
            },
            "llama-3.2-3b" => ModelConfig {
                rope_scaling: llama3,
                ..Self::llama(name, 128_256, 3072, 28, 24, 8, 128, 8192, 500_000.0, true)
            },
            "mistral-7b" => ModelConfig {
                max_positions: 32_768,
                ..Self::llama(name, 32_000, 4096, 32, 32, 8, 128, 14_336, 10_000.0, false)
            },
            _ => return Err(ConfigError::Unknown(name.into())),
        };
        c.validate()?;
        Ok(c)
    }

    /// A config from a JSON file of this struct's fields.
    pub fn from_json(path: &std::path::Path) -> Result<ModelConfig, ConfigError> {
        let parse = |reason: String| ConfigError::Parse { path: path.display().to_string(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| parse(e.to_string()))?;
        let c: ModelConfig = serde_json::from_str(&text).map_err(|e| parse(e.to_string()))?;
        c.validate()?;
        Ok(c)
    }

    /// Checks the config against what the kernels support.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |reason: String| Err(ConfigError::Invalid { name: self.name.clone(), reason });
        if ![32, 64, 128].contains(&self.head_dim) {
            return bad(format!("head_dim {} (the attention kernels take 32, 64 or 128)", self.head_dim));
        }
        // Bounds no real model comes near, so sizes computed from the config cannot overflow.
        for (what, value, most) in [
            ("heads", self.heads, 1 << 10),
            ("layers", self.layers, 1 << 10),
            ("ffn", self.ffn, 1 << 18),
            ("vocab", self.vocab, 1 << 22),
            ("max_positions", self.max_positions, 1 << 22),
            ("type_vocab", self.type_vocab, 1 << 10),
        ] {
            if value > most {
                return bad(format!("{what} {value} exceeds the {most} this engine supports"));
            }
        }
        if self.kv_heads == 0 || self.heads % self.kv_heads != 0 {
            return bad(format!("{} query heads are not a multiple of {} KV heads", self.heads, self.kv_heads));
        }
        if self.family != Family::Llama && self.heads * self.head_dim != self.hidden {
            return bad(format!("heads × head_dim = {} ≠ hidden {}", self.heads * self.head_dim, self.hidden));
        }
        if self.hidden % 8 != 0 || self.ffn % 8 != 0 {
            return bad("hidden and ffn must be multiples of 8 (GEMM K alignment)".into());
        }
        if self.hidden > crate::kernels::abi::RS_NORM_MAX_COLS {
            return bad(format!(
                "hidden {} exceeds the norm kernels' {}",
                self.hidden,
                crate::kernels::abi::RS_NORM_MAX_COLS
            ));
        }
        if self.layers == 0 || self.vocab == 0 || self.max_positions == 0 {
            return bad("layers, vocab and max_positions must be positive".into());
        }
        if self.family == Family::Llama && (self.rope_theta.is_nan() || self.rope_theta <= 0.0) {
            return bad("a Llama-family model needs rope_theta > 0".into());
        }
        Ok(())
    }

    /// Whether the model generates tokens (has a KV cache and an LM head).
    pub fn is_decoder(&self) -> bool {
        self.family != Family::Bert
    }

    /// Width of one token's packed q|k|v row.
    pub fn qkv_width(&self) -> u32 {
        (self.heads + 2 * self.kv_heads) * self.head_dim
    }

    /// Width of the attention output (query heads × head_dim).
    pub fn attn_width(&self) -> u32 {
        self.heads * self.head_dim
    }

    /// RoPE inverse frequencies (θ^(−2i/d), with Llama 3 scaling when configured).
    pub fn rope_inv_freq(&self) -> Vec<f32> {
        let d = f64::from(self.head_dim);
        (0..self.head_dim / 2)
            .map(|i| {
                let f = self.rope_theta.powf(-2.0 * f64::from(i) / d);
                match self.rope_scaling {
                    None => f as f32,
                    Some(s) => llama3_scale(f, s) as f32,
                }
            })
            .collect()
    }

    /// Parameters (elements) of the model's weights.
    pub fn parameters(&self) -> u64 {
        let (h, f, v) = (u64::from(self.hidden), u64::from(self.ffn), u64::from(self.vocab));
        let attn = h * u64::from(self.qkv_width()) + u64::from(self.attn_width()) * h;
        let mlp = match self.family {
            Family::Llama => 3 * h * f,
            _ => 2 * h * f,
        };
        let emb = v * h
            + match self.family {
                Family::Llama => 0,
                _ => u64::from(self.max_positions) * h,
            };
        let head = if self.is_decoder() && !self.tie_embeddings { v * h } else { 0 };
        u64::from(self.layers) * (attn + mlp) + emb + head
    }

    /// A tiny config of `family` for tests (few layers, small widths, real structure).
    pub fn tiny(family: Family) -> ModelConfig {
        let mut c = match family {
            Family::Bert => Self::bert("tiny-bert", 128, 2, 2, 256),
            Family::Gpt2 => Self::gpt2("tiny-gpt2", 128, 2, 2),
            Family::Llama => Self::llama("tiny-llama", 1000, 128, 2, 4, 2, 32, 320, 10_000.0, false),
        };
        c.vocab = c.vocab.min(1000);
        c.max_positions = c.max_positions.min(256);
        c
    }
}

/// Llama 3's wavelength-dependent frequency scaling.
fn llama3_scale(freq: f64, s: Llama3Scaling) -> f64 {
    let low_wavelen = s.original_max_position_embeddings / s.low_freq_factor;
    let high_wavelen = s.original_max_position_embeddings / s.high_freq_factor;
    let wavelen = 2.0 * std::f64::consts::PI / freq;
    if wavelen < high_wavelen {
        freq
    } else if wavelen > low_wavelen {
        freq / s.factor
    } else {
        let smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor)
            / (s.high_freq_factor - s.low_freq_factor);
        (1.0 - smooth) * freq / s.factor + smooth * freq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_config_is_valid() {
        for name in NAMED {
            let c = ModelConfig::named(name).unwrap();
            assert_eq!(&c.name, name);
        }
        assert!(matches!(ModelConfig::named("gpt5"), Err(ConfigError::Unknown(_))));
    }

    #[test]
    fn parameter_counts_match_published_sizes() {
        let millions = |n: &str| ModelConfig::named(n).unwrap().parameters() as f64 / 1e6;
        // Weights only (biases and norms excluded): within 2% of the published sizes.
        for (name, published) in
            [("bert-base", 109.0), ("gpt2", 124.0), ("gpt2-medium", 355.0), ("llama-3.2-1b", 1236.0)]
        {
            let got = millions(name);
            assert!((got - published).abs() / published < 0.02, "{name}: {got:.1}M vs {published}M");
        }
    }

    #[test]
    fn invalid_configs_are_refused_with_a_reason() {
        let mut c = ModelConfig::named("gpt2").unwrap();
        c.head_dim = 96;
        assert!(c.validate().unwrap_err().to_string().contains("head_dim 96"));
        let mut c = ModelConfig::named("llama-3.2-1b").unwrap();
        c.kv_heads = 5;
        assert!(c.validate().is_err());
    }

    #[test]
    fn json_round_trip() {
        let c = ModelConfig::named("llama-3.2-1b").unwrap();
        let dir = std::env::temp_dir().join(format!("rightsize-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.json");
        std::fs::write(&path, serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(ModelConfig::from_json(&path).unwrap(), c);
        std::fs::write(&path, "{").unwrap();
        assert!(matches!(ModelConfig::from_json(&path), Err(ConfigError::Parse { .. })));
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn llama3_scaling_keeps_high_and_divides_low_frequencies() {
        let c = ModelConfig::named("llama-3.2-1b").unwrap();
        let plain = ModelConfig { rope_scaling: None, ..c.clone() }.rope_inv_freq();
        let scaled = c.rope_inv_freq();
        assert_eq!(scaled[0], plain[0]);
        let last = plain.len() - 1;
        assert!((scaled[last] - plain[last] / 32.0).abs() < 1e-12);
    }
}
