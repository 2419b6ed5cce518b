//! Hugging Face checkpoints: `config.json` to a [`ModelConfig`], and `*.safetensors` files
//! (memory-mapped) to [`ModelWeights`] in the engine's layout, for BERT, GPT-2 and
//! Llama/Mistral naming. F32, F16 and BF16 tensors are converted to FP16.
//!
//! Every mismatch is an error that names the tensor, the expected shape and what was found.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

use super::config::{Family, Llama3Scaling, ModelConfig};
use super::weights::{Layer, ModelWeights, Norm};
use super::EngineError;

type Result<T> = std::result::Result<T, EngineError>;

fn werr(msg: impl Into<String>) -> EngineError {
    EngineError::Weights(msg.into())
}

/// Reads a Hugging Face `config.json` (model types bert, gpt2, llama, mistral).
pub fn config_from_hf(dir: &Path) -> Result<ModelConfig> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| werr(format!("{}: {e}", path.display())))?;
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("checkpoint");
    config_from_hf_json(&text, name, &path.display().to_string())
}

/// A Hugging Face `config.json`'s text (read from `origin`, named in errors) as the config
/// of a model called `name`.
pub fn config_from_hf_json(text: &str, name: &str, origin: &str) -> Result<ModelConfig> {
    hf_config(text, name, origin).map_err(|e| match e.to_string() {
        m if m.contains(origin) => e,
        reason => EngineError::Checkpoint { file: origin.to_string(), reason },
    })
}

fn hf_config(text: &str, name: &str, origin: &str) -> Result<ModelConfig> {
    let path = std::path::Path::new(origin);
    let v: Value = serde_json::from_str(text).map_err(|e| werr(format!("{}: {e}", path.display())))?;
    let name = name.to_string();
    let int = |key: &str| -> Result<u32> {
        let x = v.get(key).ok_or_else(|| werr(format!("{}: missing integer {key:?}", path.display())))?;
        x.as_u64()
            .and_then(|x| u32::try_from(x).ok())
            .ok_or_else(|| werr(format!("{}: {key:?} is {x}, not an integer below 2^32", path.display())))
    };
    let float = |key: &str, default: f64| v.get(key).and_then(Value::as_f64).unwrap_or(default);
    let model_type = v.get("model_type").and_then(Value::as_str).unwrap_or("");
    let act = |key: &str| v.get(key).and_then(Value::as_str).unwrap_or("").to_string();
    let c = match model_type {
        "bert" => {
            if !matches!(act("hidden_act").as_str(), "gelu" | "") {
                return Err(werr(format!("BERT activation {:?} (supported: gelu)", act("hidden_act"))));
            }
            let (hidden, heads) = (int("hidden_size")?, int("num_attention_heads")?);
            ModelConfig {
                name,
                family: Family::Bert,
                vocab: int("vocab_size")?,
                hidden,
                layers: int("num_hidden_layers")?,
                heads,
                kv_heads: heads,
                head_dim: hidden / heads.max(1),
                ffn: int("intermediate_size")?,
                max_positions: int("max_position_embeddings")?,
                type_vocab: int("type_vocab_size").unwrap_or(2),
                norm_eps: float("layer_norm_eps", 1e-12) as f32,
                rope_theta: 0.0,
                rope_scaling: None,
                tie_embeddings: false,
            }
        }
        "gpt2" => {
            if !matches!(act("activation_function").as_str(), "gelu_new" | "gelu_pytorch_tanh" | "") {
                return Err(werr(format!("GPT-2 activation {:?} (supported: gelu_new)", act("activation_function"))));
            }
            let (hidden, heads) = (int("n_embd")?, int("n_head")?);
            ModelConfig {
                name,
                family: Family::Gpt2,
                vocab: int("vocab_size")?,
                hidden,
                layers: int("n_layer")?,
                heads,
                kv_heads: heads,
                head_dim: hidden / heads.max(1),
                ffn: int("n_inner").unwrap_or(hidden.saturating_mul(4)),
                max_positions: int("n_positions")?,
                type_vocab: 0,
                norm_eps: float("layer_norm_epsilon", 1e-5) as f32,
                rope_theta: 0.0,
                rope_scaling: None,
                tie_embeddings: v.get("tie_word_embeddings").and_then(Value::as_bool).unwrap_or(true),
            }
        }
        "llama" | "mistral" => {
            if !matches!(act("hidden_act").as_str(), "silu" | "") {
                return Err(werr(format!("activation {:?} (supported: silu)", act("hidden_act"))));
            }
            let (hidden, heads) = (int("hidden_size")?, int("num_attention_heads")?);
            // Newer transformers keep θ and scaling in "rope_parameters", older at top level
            // and in "rope_scaling".
            let rope = v.get("rope_parameters").filter(|r| r.is_object());
            let theta =
                rope.and_then(|r| r.get("rope_theta")).and_then(Value::as_f64).unwrap_or(float("rope_theta", 10_000.0));
            let scaling = rope.or_else(|| v.get("rope_scaling")).filter(|r| r.is_object());
            let rope_type = scaling
                .and_then(|s| s.get("rope_type").or_else(|| s.get("type")))
                .and_then(Value::as_str)
                .unwrap_or("default");
            let rope_scaling = match rope_type {
                "default" => None,
                "llama3" => {
                    let s = scaling.unwrap_or(&Value::Null);
                    let f = |k: &str| {
                        s.get(k).and_then(Value::as_f64).ok_or_else(|| werr(format!("rope scaling: missing {k}")))
                    };
                    Some(Llama3Scaling {
                        factor: f("factor")?,
                        low_freq_factor: f("low_freq_factor")?,
                        high_freq_factor: f("high_freq_factor")?,
                        original_max_position_embeddings: f("original_max_position_embeddings")?,
                    })
                }
                other => return Err(werr(format!("RoPE scaling {other:?} (supported: default, llama3)"))),
            };
            ModelConfig {
                name,
                family: Family::Llama,
                vocab: int("vocab_size")?,
                hidden,
                layers: int("num_hidden_layers")?,
                heads,
                kv_heads: int("num_key_value_heads").unwrap_or(heads),
                head_dim: int("head_dim").unwrap_or(hidden / heads.max(1)),
                ffn: int("intermediate_size")?,
                max_positions: int("max_position_embeddings")?,
                type_vocab: 0,
                norm_eps: float("rms_norm_eps", 1e-5) as f32,
                rope_theta: theta,
                rope_scaling,
                tie_embeddings: v.get("tie_word_embeddings").and_then(Value::as_bool).unwrap_or(false),
            }
        }
        other => {
            return Err(werr(format!(
                "{}: model_type {other:?} (supported: bert, gpt2, llama, mistral)",
                path.display()
            )))
        }
    };
    c.validate()?;
    Ok(c)
}

/// A safetensors file's bytes: mapped from disk, or in memory.
enum Bytes {
    Map(Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Map(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// The safetensors files of a checkpoint, indexed by tensor name.
struct Source {
    maps: Vec<(PathBuf, Bytes)>,
    index: HashMap<String, usize>,
}

impl Source {
    /// One file's bytes, named `origin` in errors.
    fn of_bytes(origin: &Path, bytes: Vec<u8>) -> Result<Source> {
        let mut src = Source { maps: Vec::new(), index: HashMap::new() };
        src.add(origin.to_path_buf(), Bytes::Owned(bytes))?;
        Ok(src)
    }

    /// Indexes the tensors of one more file.
    fn add(&mut self, path: PathBuf, bytes: Bytes) -> Result<()> {
        let st = SafeTensors::deserialize(&bytes).map_err(|e| werr(format!("{}: {e}", path.display())))?;
        for name in st.names() {
            self.index.insert(name.to_string(), self.maps.len());
        }
        self.maps.push((path, bytes));
        Ok(())
    }

    fn open(dir: &Path) -> Result<Source> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| werr(format!("{}: {e}", dir.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(werr(format!("no .safetensors file in {}", dir.display())));
        }
        let mut src = Source { maps: Vec::new(), index: HashMap::new() };
        for path in files {
            let file = File::open(&path).map_err(|e| werr(format!("{}: {e}", path.display())))?;
            // SAFETY: the file is opened read-only; a checkpoint changing under a running load
            // is outside what this loader supports.
            let map = unsafe { Mmap::map(&file) }.map_err(|e| werr(format!("{}: {e}", path.display())))?;
            src.add(path, Bytes::Map(map))?;
        }
        Ok(src)
    }

    /// The first of `names` present, as FP16 with the expected `shape`.
    fn get(&self, names: &[String], shape: &[usize]) -> Result<Vec<f16>> {
        let Some((name, &file)) = names.iter().find_map(|n| self.index.get_key_value(n.as_str())) else {
            let mut near: Vec<&String> = self.index.keys().collect();
            near.sort();
            let tail = names[0].rsplit('.').nth(1).unwrap_or("");
            let near: Vec<&&String> = near.iter().filter(|k| k.contains(tail)).take(4).collect();
            return Err(werr(format!("missing tensor {:?}; similar names in the checkpoint: {near:?}", names[0])));
        };
        let (path, map) = &self.maps[file];
        let st = SafeTensors::deserialize(map).map_err(|e| werr(format!("{}: {e}", path.display())))?;
        let t = st.tensor(name).map_err(|e| werr(format!("{}: {name}: {e}", path.display())))?;
        if t.shape() != shape {
            return Err(werr(format!(
                "{}: tensor {name} has shape {:?}; the config needs {shape:?}",
                path.display(),
                t.shape()
            )));
        }
        let data = t.data();
        let values: Vec<f16> = match t.dtype() {
            Dtype::F16 => data.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]])).collect(),
            Dtype::BF16 => {
                data.chunks_exact(2).map(|b| f16::from_f32(bf16::from_le_bytes([b[0], b[1]]).to_f32())).collect()
            }
            Dtype::F32 => {
                data.chunks_exact(4).map(|b| f16::from_f32(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))).collect()
            }
            other => {
                return Err(werr(format!(
                    "{}: tensor {name} has dtype {other:?}; supported: F16, BF16, F32",
                    path.display()
                )))
            }
        };
        Ok(values)
    }
}

/// Name candidates: with and without the model's prefix (e.g. `bert.`, `transformer.`).
fn names(prefixes: &[&str], name: &str) -> Vec<String> {
    prefixes.iter().map(|p| format!("{p}{name}")).collect()
}

fn transpose(x: &[f16], rows: usize, cols: usize) -> Vec<f16> {
    let mut out = vec![f16::ZERO; x.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = x[r * cols + c];
        }
    }
    out
}

/// Loads the weights of `c` from the safetensors files in `dir`.
pub fn load_weights(c: &ModelConfig, dir: &Path) -> Result<ModelWeights<Vec<f16>>> {
    weights_of(c, &Source::open(dir)?)
}

/// Loads the weights of `c` from one safetensors file's bytes (read from `origin`, named in
/// errors).
pub fn load_weights_from_bytes(c: &ModelConfig, origin: &Path, bytes: Vec<u8>) -> Result<ModelWeights<Vec<f16>>> {
    weights_of(c, &Source::of_bytes(origin, bytes)?)
}

fn weights_of(c: &ModelConfig, src: &Source) -> Result<ModelWeights<Vec<f16>>> {
    let (h, f, v) = (c.hidden as usize, c.ffn as usize, c.vocab as usize);
    let (qw, kw) = (c.attn_width() as usize, (c.kv_heads * c.head_dim) as usize);
    match c.family {
        Family::Bert => {
            let p = ["", "bert."];
            let g = |n: &str, shape: &[usize]| src.get(&names(&p, n), shape);
            let ln = |n: &str| -> Result<Norm<Vec<f16>>> {
                // Old checkpoints call LayerNorm parameters gamma and beta.
                let gamma = g(&format!("{n}.weight"), &[h]).or_else(|_| g(&format!("{n}.gamma"), &[h]))?;
                let beta = g(&format!("{n}.bias"), &[h]).or_else(|_| g(&format!("{n}.beta"), &[h]))?;
                Ok(Norm { gamma, beta: Some(beta) })
            };
            let types = g("embeddings.token_type_embeddings.weight", &[c.type_vocab as usize, h])?;
            let layers = (0..c.layers)
                .map(|i| {
                    let l = format!("encoder.layer.{i}");
                    let part = |n: &str, shape: &[usize]| g(&format!("{l}.{n}"), shape);
                    let qkv = [
                        part("attention.self.query.weight", &[h, h])?,
                        part("attention.self.key.weight", &[h, h])?,
                        part("attention.self.value.weight", &[h, h])?,
                    ]
                    .concat();
                    let qkv_bias = [
                        part("attention.self.query.bias", &[h])?,
                        part("attention.self.key.bias", &[h])?,
                        part("attention.self.value.bias", &[h])?,
                    ]
                    .concat();
                    Ok(Layer {
                        qkv,
                        qkv_bias: Some(qkv_bias),
                        out: part("attention.output.dense.weight", &[h, h])?,
                        out_bias: Some(part("attention.output.dense.bias", &[h])?),
                        norm1: ln(&format!("{l}.attention.output.LayerNorm"))?,
                        norm2: ln(&format!("{l}.output.LayerNorm"))?,
                        up: part("intermediate.dense.weight", &[f, h])?,
                        up_bias: Some(part("intermediate.dense.bias", &[f])?),
                        down: part("output.dense.weight", &[h, f])?,
                        down_bias: Some(part("output.dense.bias", &[h])?),
                    })
                })
                .collect::<Result<_>>()?;
            Ok(ModelWeights {
                tok: g("embeddings.word_embeddings.weight", &[v, h])?,
                pos: Some(g("embeddings.position_embeddings.weight", &[c.max_positions as usize, h])?),
                type_row: Some(types[..h].to_vec()),
                emb_norm: Some(ln("embeddings.LayerNorm")?),
                layers,
                final_norm: None,
                lm_head: None,
            })
        }
        Family::Gpt2 => {
            let p = ["", "transformer."];
            let g = |n: &str, shape: &[usize]| src.get(&names(&p, n), shape);
            let ln = |n: &str| -> Result<Norm<Vec<f16>>> {
                Ok(Norm { gamma: g(&format!("{n}.weight"), &[h])?, beta: Some(g(&format!("{n}.bias"), &[h])?) })
            };
            // GPT-2's Conv1D stores weights [in][out]; the engine wants [out][in].
            let conv =
                |n: &str, inp: usize, out: usize| -> Result<Vec<f16>> { Ok(transpose(&g(n, &[inp, out])?, inp, out)) };
            let layers = (0..c.layers)
                .map(|i| {
                    let l = format!("h.{i}");
                    Ok(Layer {
                        qkv: conv(&format!("{l}.attn.c_attn.weight"), h, 3 * h)?,
                        qkv_bias: Some(g(&format!("{l}.attn.c_attn.bias"), &[3 * h])?),
                        out: conv(&format!("{l}.attn.c_proj.weight"), h, h)?,
                        out_bias: Some(g(&format!("{l}.attn.c_proj.bias"), &[h])?),
                        norm1: ln(&format!("{l}.ln_1"))?,
                        norm2: ln(&format!("{l}.ln_2"))?,
                        up: conv(&format!("{l}.mlp.c_fc.weight"), h, f)?,
                        up_bias: Some(g(&format!("{l}.mlp.c_fc.bias"), &[f])?),
                        down: conv(&format!("{l}.mlp.c_proj.weight"), f, h)?,
                        down_bias: Some(g(&format!("{l}.mlp.c_proj.bias"), &[h])?),
                    })
                })
                .collect::<Result<_>>()?;
            let lm_head =
                if c.tie_embeddings { None } else { Some(src.get(&names(&[""], "lm_head.weight"), &[v, h])?) };
            Ok(ModelWeights {
                tok: g("wte.weight", &[v, h])?,
                pos: Some(g("wpe.weight", &[c.max_positions as usize, h])?),
                type_row: None,
                emb_norm: None,
                layers,
                final_norm: Some(ln("ln_f")?),
                lm_head,
            })
        }
        Family::Llama => {
            let p = ["model.", ""];
            let g = |n: &str, shape: &[usize]| src.get(&names(&p, n), shape);
            let rms = |n: &str| -> Result<Norm<Vec<f16>>> { Ok(Norm { gamma: g(n, &[h])?, beta: None }) };
            let tok = g("embed_tokens.weight", &[v, h])?;
            let layers = (0..c.layers)
                .map(|i| {
                    let l = format!("layers.{i}");
                    let part = |n: &str, shape: &[usize]| g(&format!("{l}.{n}"), shape);
                    Ok(Layer {
                        qkv: [
                            part("self_attn.q_proj.weight", &[qw, h])?,
                            part("self_attn.k_proj.weight", &[kw, h])?,
                            part("self_attn.v_proj.weight", &[kw, h])?,
                        ]
                        .concat(),
                        qkv_bias: None,
                        out: part("self_attn.o_proj.weight", &[h, qw])?,
                        out_bias: None,
                        norm1: rms(&format!("{l}.input_layernorm.weight"))?,
                        norm2: rms(&format!("{l}.post_attention_layernorm.weight"))?,
                        up: [part("mlp.gate_proj.weight", &[f, h])?, part("mlp.up_proj.weight", &[f, h])?].concat(),
                        up_bias: None,
                        down: part("mlp.down_proj.weight", &[h, f])?,
                        down_bias: None,
                    })
                })
                .collect::<Result<_>>()?;
            let lm_head =
                if c.tie_embeddings { None } else { Some(src.get(&names(&[""], "lm_head.weight"), &[v, h])?) };
            Ok(ModelWeights {
                tok,
                pos: None,
                type_row: None,
                emb_norm: None,
                layers,
                final_norm: Some(rms("norm.weight")?),
                lm_head,
            })
        }
    }
}

/// Reads `config.json` and the safetensors weights of a checkpoint directory.
pub fn load(dir: &Path) -> Result<(ModelConfig, ModelWeights<Vec<f16>>)> {
    let c = config_from_hf(dir)?;
    let w = load_weights(&c, dir)?;
    Ok((c, w))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap as Map;

    fn write_checkpoint(dir: &Path, config: &str, tensors: Vec<(&str, Vec<usize>, Vec<f32>)>) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("config.json"), config).unwrap();
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
            .into_iter()
            .map(|(n, s, v)| (n.to_string(), s, v.iter().flat_map(|x| x.to_le_bytes()).collect()))
            .collect();
        let views: Map<String, safetensors::tensor::TensorView> = bytes
            .iter()
            .map(|(n, s, b)| (n.clone(), safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), b).unwrap()))
            .collect();
        safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
    }

    fn tmp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("rightsize-ckpt-{name}-{}", std::process::id()))
    }

    #[test]
    fn gpt2_checkpoint_loads_with_conv1d_transposed() {
        let dir = tmp("gpt2");
        let (h, v, p) = (32usize, 10usize, 8usize);
        let config = r#"{"model_type":"gpt2","n_embd":32,"n_layer":1,"n_head":1,"vocab_size":10,"n_positions":8,"layer_norm_epsilon":1e-5,"activation_function":"gelu_new"}"#;
        let seq = |n: usize| (0..n).map(|i| i as f32 / n as f32).collect::<Vec<f32>>();
        let t = |name: &'static str, shape: Vec<usize>| {
            let n = shape.iter().product();
            (name, shape, seq(n))
        };
        write_checkpoint(
            &dir,
            config,
            vec![
                t("wte.weight", vec![v, h]),
                t("wpe.weight", vec![p, h]),
                t("h.0.ln_1.weight", vec![h]),
                t("h.0.ln_1.bias", vec![h]),
                t("h.0.attn.c_attn.weight", vec![h, 3 * h]),
                t("h.0.attn.c_attn.bias", vec![3 * h]),
                t("h.0.attn.c_proj.weight", vec![h, h]),
                t("h.0.attn.c_proj.bias", vec![h]),
                t("h.0.ln_2.weight", vec![h]),
                t("h.0.ln_2.bias", vec![h]),
                t("h.0.mlp.c_fc.weight", vec![h, 4 * h]),
                t("h.0.mlp.c_fc.bias", vec![4 * h]),
                t("h.0.mlp.c_proj.weight", vec![4 * h, h]),
                t("h.0.mlp.c_proj.bias", vec![h]),
                t("ln_f.weight", vec![h]),
                t("ln_f.bias", vec![h]),
            ],
        );
        let (c, w) = load(&dir).unwrap();
        assert_eq!((c.family, c.hidden, c.ffn, c.tie_embeddings), (Family::Gpt2, 32, 128, true));
        // c_attn [32][96] transposed to [96][32]: out row 1, in column 0 is element (0, 1).
        let src = seq(h * 3 * h);
        assert_eq!(w.layers[0].qkv[h], f16::from_f32(src[1]));
        assert!(w.lm_head.is_none());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn missing_and_misshapen_tensors_are_named() {
        let dir = tmp("bad");
        let config = r#"{"model_type":"llama","hidden_size":64,"num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":1,"intermediate_size":128,"vocab_size":10,"max_position_embeddings":64,"rope_theta":10000.0}"#;
        write_checkpoint(&dir, config, vec![("model.embed_tokens.weight", vec![10, 32], vec![0.5; 320])]);
        let e = load(&dir).unwrap_err().to_string();
        assert!(e.contains("model.embed_tokens.weight") && e.contains("[10, 64]"), "{e}");
        write_checkpoint(&dir, config, vec![("model.embed_tokens.weight", vec![10, 64], vec![0.5; 640])]);
        let e = load(&dir).unwrap_err().to_string();
        assert!(e.contains("missing tensor") && e.contains("q_proj"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn hf_configs_of_each_family_parse() {
        let dir = tmp("cfg");
        std::fs::create_dir_all(&dir).unwrap();
        let cases = [
            (
                r#"{"model_type":"bert","hidden_size":384,"num_hidden_layers":6,"num_attention_heads":12,"intermediate_size":1536,"vocab_size":30522,"max_position_embeddings":512,"type_vocab_size":2,"layer_norm_eps":1e-12,"hidden_act":"gelu"}"#,
                Family::Bert,
                32,
            ),
            (
                r#"{"model_type":"llama","hidden_size":2048,"num_hidden_layers":16,"num_attention_heads":32,"num_key_value_heads":8,"head_dim":64,"intermediate_size":8192,"vocab_size":128256,"max_position_embeddings":131072,"rms_norm_eps":1e-5,"rope_parameters":{"rope_theta":500000.0,"rope_type":"llama3","factor":32.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192},"tie_word_embeddings":true}"#,
                Family::Llama,
                64,
            ),
        ];
        for (json, family, head_dim) in cases {
            std::fs::write(dir.join("config.json"), json).unwrap();
            let c = config_from_hf(&dir).unwrap();
            assert_eq!((c.family, c.head_dim), (family, head_dim));
        }
        let c = config_from_hf(&dir).unwrap();
        assert_eq!(c.rope_inv_freq(), ModelConfig::named("llama-3.2-1b").unwrap().rope_inv_freq());
        std::fs::write(dir.join("config.json"), r#"{"model_type":"t5"}"#).unwrap();
        assert!(config_from_hf(&dir).unwrap_err().to_string().contains("t5"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
