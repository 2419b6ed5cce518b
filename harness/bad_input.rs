//! What users hand the tool, as arbitrary bytes: scenario files, profiles, Hugging Face
//! `config.json` and safetensors files, and text for the tokenizer. Each entry point parses its
//! input the way the tool does, uses whatever parses the way the tool would, and checks that
//! whatever does not parse is one error naming its origin. A panic anywhere is a bug.
//!
//! The cargo-fuzz targets under `fuzz/` call these (see docs/reliability.md), and the test
//! suite runs each on a few thousand generated and mutated inputs.

use std::path::Path;

use super::inproc::{equal_windows, krisp_shares, static_windows, Knees};
use super::scenario::{ScenarioFile, Sharing};
use crate::engine::checkpoint::{config_from_hf_json, load_weights_from_bytes};
use crate::engine::text::Text;
use crate::engine::ModelConfig;
use crate::profiler::Profile;
use crate::runtime::policy::Topology;

/// The name inputs go by in errors.
pub const ORIGIN: &str = "fuzz-input";

/// Panics unless `e` names [`ORIGIN`]: an error must say which file it is about.
fn names_origin(e: impl std::fmt::Display) {
    let msg = e.to_string();
    assert!(msg.contains(ORIGIN), "an error that does not name its input: {msg}");
}

/// An H200's split: 15 groups of 8 SMs and 12 more.
const TOPO: Topology = Topology { groups: 15, granularity: 8, rest_sms: 12 };

/// A scenario file; what parses is laid out as the harness would (static and krisp windows,
/// labels). Returns whether it parsed.
pub fn scenario_toml(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else { return false };
    match ScenarioFile::parse(text, ORIGIN) {
        Ok(f) => {
            for s in &f.scenarios {
                let _ = static_windows(s, TOPO.groups, TOPO.granularity);
                let _ = equal_windows(TOPO.groups, s.tenants.len() as u32);
                let shares = krisp_shares(s, Sharing::Krisp, &TOPO, &Knees::default());
                let _ = shares.layout((1u64 << s.tenants.len().min(63)) - 1, s.tenants.len() as u32, TOPO.groups);
                for t in &s.tenants {
                    let _ = (t.label(), t.shape(true));
                }
            }
            true
        }
        Err(e) => {
            names_origin(format!("{e:#}"));
            false
        }
    }
}

/// A profile; what parses is read as the comparison and the report read it.
pub fn profile_json(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else { return false };
    match Profile::from_json(text, ORIGIN) {
        Ok(p) => {
            let _ = (p.request_us(64), p.request_us_beside(64), p.sm_time_freed(), p.summary());
            let _ = crate::profiler::app::summary(&p);
            let mut table = p.min_sms();
            p.add_to(&mut table);
            for k in &p.kernels {
                let _ = k.efficiency_sms(p.epsilon);
            }
            true
        }
        Err(e) => {
            names_origin(e);
            false
        }
    }
}

/// A Hugging Face `config.json`; what parses is sized as the engine sizes a model.
pub fn hf_config_json(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else { return false };
    match config_from_hf_json(text, "fuzz", ORIGIN) {
        Ok(c) => {
            let _ = (c.parameters(), c.qkv_width(), c.attn_width(), c.rope_inv_freq());
            true
        }
        Err(e) => {
            names_origin(e);
            false
        }
    }
}

/// The config [`safetensors`] loads against: a one-layer GPT-2 of width 32, small enough for
/// a fuzzer to build whole checkpoints of.
pub fn tiny_gpt2() -> ModelConfig {
    let json = r#"{"model_type":"gpt2","n_embd":32,"n_layer":1,"n_head":1,"vocab_size":10,"n_positions":8}"#;
    config_from_hf_json(json, "tiny-gpt2", ORIGIN).expect("a valid config")
}

/// A safetensors file, loaded as [`tiny_gpt2`]'s weights.
pub fn safetensors(data: &[u8]) -> bool {
    match load_weights_from_bytes(&tiny_gpt2(), Path::new(ORIGIN), data.to_vec()) {
        Ok(_) => true,
        Err(e) => {
            let msg = e.to_string();
            // A tensor that is not there has no file to name: the checkpoint as a whole lacks it.
            if !msg.contains("missing tensor") {
                names_origin(msg);
            }
            false
        }
    }
}

/// A WordPiece tokenizer (BERT's kind) over a tiny vocabulary, as a `tokenizer.json`.
pub const WORDPIECE_JSON: &str = include_str!("../tests/data/wordpiece-tokenizer.json");

/// Text for the tokenizer: the first byte is the token limit, the rest lines of text (one
/// sentence each, as `rightsize embed` reads them), batched, decoded back, and also read as
/// token ids to decode.
pub fn tokenizer_input(data: &[u8]) -> bool {
    static TEXT: std::sync::OnceLock<Text> = std::sync::OnceLock::new();
    let text = TEXT.get_or_init(|| Text::from_json(WORDPIECE_JSON, Path::new(ORIGIN)).expect("the fixture loads"));
    let (limit, rest) = data.split_first().map_or((0, &[][..]), |(l, r)| (u32::from(*l), r));
    let s = String::from_utf8_lossy(rest);
    let lines: Vec<&str> = s.lines().collect();
    let ids: Vec<u32> = rest.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    let _ = text.decode(&ids);
    match text.batch(&lines, limit) {
        Ok(b) => {
            assert_eq!(b.ids.len(), b.lens.len() * b.seq as usize, "a batch is rows × seq");
            assert!(b.lens.iter().all(|&n| n >= 1 && n <= limit.max(1)), "lengths within the limit");
            let _ = text.decode(&b.ids);
            true
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A target: its name, its entry point and a valid input.
    type Seed = (&'static str, fn(&[u8]) -> bool, Vec<u8>);

    /// Valid inputs of each kind, for mutation.
    fn seeds() -> Vec<Seed> {
        let profile = std::fs::read("profiles/nvidia-h200/bert-base-b1-s128.json").expect("a committed profile");
        let app_profile = std::fs::read("profiles/nvidia-h200/app-gpt2.json").expect("a committed application profile");
        let config = br#"{"model_type":"llama","hidden_size":64,"num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":1,"intermediate_size":128,"vocab_size":10,"max_position_embeddings":64,"rope_theta":10000.0,"rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192}}"#;
        vec![
            (
                "scenario",
                scenario_toml as fn(&[u8]) -> bool,
                super::super::scenario::DEFAULT_SCENARIOS.as_bytes().to_vec(),
            ),
            ("profile", profile_json, profile),
            ("app profile", profile_json, app_profile),
            ("config", hf_config_json, config.to_vec()),
            ("safetensors", safetensors, tiny_checkpoint()),
            ("tokenizer", tokenizer_input, b"\x08the cats sat on the mat.\nthe cat".to_vec()),
        ]
    }

    /// A whole safetensors checkpoint of [`tiny_gpt2`] (F32 weights).
    fn tiny_checkpoint() -> Vec<u8> {
        checkpoint_with(safetensors::Dtype::F32)
    }

    /// The same with the token embedding's 4-byte elements typed `wte`.
    fn checkpoint_with(wte: safetensors::Dtype) -> Vec<u8> {
        let c = tiny_gpt2();
        let (h, v, p) = (c.hidden as usize, c.vocab as usize, c.max_positions as usize);
        let shapes: Vec<(&str, Vec<usize>)> = vec![
            ("wte.weight", vec![v, h]),
            ("wpe.weight", vec![p, h]),
            ("h.0.ln_1.weight", vec![h]),
            ("h.0.ln_1.bias", vec![h]),
            ("h.0.attn.c_attn.weight", vec![h, 3 * h]),
            ("h.0.attn.c_attn.bias", vec![3 * h]),
            ("h.0.attn.c_proj.weight", vec![h, h]),
            ("h.0.attn.c_proj.bias", vec![h]),
            ("h.0.ln_2.weight", vec![h]),
            ("h.0.ln_2.bias", vec![h]),
            ("h.0.mlp.c_fc.weight", vec![h, 4 * h]),
            ("h.0.mlp.c_fc.bias", vec![4 * h]),
            ("h.0.mlp.c_proj.weight", vec![4 * h, h]),
            ("h.0.mlp.c_proj.bias", vec![h]),
            ("ln_f.weight", vec![h]),
            ("ln_f.bias", vec![h]),
        ];
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = shapes
            .into_iter()
            .map(|(n, s)| {
                let count: usize = s.iter().product();
                (n.to_string(), s, (0..count).flat_map(|i| (i as f32 * 0.01).to_le_bytes()).collect())
            })
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView)> = bytes
            .iter()
            .map(|(n, s, b)| {
                let dtype = if n == "wte.weight" { wte } else { safetensors::Dtype::F32 };
                (n.clone(), safetensors::tensor::TensorView::new(dtype, s.clone(), b).unwrap())
            })
            .collect();
        safetensors::serialize(views, None).unwrap()
    }

    #[test]
    fn the_seeds_parse() {
        for (what, f, seed) in seeds() {
            assert!(f(&seed), "{what}'s seed does not parse");
        }
    }

    #[test]
    fn truncated_or_corrupted_checkpoints_are_refused_naming_the_file() {
        let good = tiny_checkpoint();
        for cut in [0, 4, 8, 100, good.len() / 2, good.len() - 1] {
            assert!(!safetensors(&good[..cut]), "{cut} bytes loaded");
        }
        let mut bad = good.clone();
        bad[0] ^= 0x40; // the header's length
        assert!(!safetensors(&bad));
        let e = load_weights_from_bytes(&tiny_gpt2(), Path::new(ORIGIN), good[..good.len() / 2].to_vec()).unwrap_err();
        assert!(e.to_string().contains(ORIGIN), "{e}");
    }

    #[test]
    fn what_the_fuzzers_found_stays_fixed() {
        // A tensor of an unsupported dtype: the error names the file (cargo-fuzz).
        let bytes = checkpoint_with(safetensors::Dtype::I32);
        let e = load_weights_from_bytes(&tiny_gpt2(), Path::new(ORIGIN), bytes).unwrap_err().to_string();
        assert!(e.contains(ORIGIN) && e.contains("I32"), "{e}");
        // Llama 3 scaling without one of its fields: the error names the file (proptest).
        let llama = r#"{"model_type":"llama","hidden_size":64,"num_hidden_layers":1,"num_attention_heads":2,"intermediate_size":128,"vocab_size":10,"max_position_embeddings":64,"rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0}}"#;
        let e = config_from_hf_json(llama, "x", ORIGIN).unwrap_err().to_string();
        assert!(e.contains(ORIGIN) && e.contains("original_max_position_embeddings"), "{e}");
        // An integer beyond 32 bits is refused, not cut to its low bits (768 here).
        let wide =
            r#"{"model_type":"gpt2","n_embd":4294968064,"n_layer":1,"n_head":12,"vocab_size":10,"n_positions":8}"#;
        let e = config_from_hf_json(wide, "x", ORIGIN).unwrap_err().to_string();
        assert!(e.contains("n_embd") && e.contains("not an integer below 2^32"), "{e}");
        // Sizes that would overflow are refused by the config's bounds.
        let huge =
            r#"{"model_type":"gpt2","n_embd":4294967040,"n_layer":1,"n_head":1,"vocab_size":10,"n_positions":8}"#;
        assert!(config_from_hf_json(huge, "x", ORIGIN).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        /// Arbitrary bytes into every parser.
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            for (_, f, _) in seeds() {
                f(&data);
            }
        }

        /// Valid inputs with a few bytes changed, cut or repeated.
        #[test]
        fn mutated_inputs_never_panic(
            which in 0usize..5,
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..6),
        ) {
            let (_, f, mut data) = seeds().swap_remove(which);
            for (at, byte, kind) in edits {
                if data.is_empty() {
                    break;
                }
                let i = at.index(data.len());
                match kind {
                    0 => data[i] = byte,
                    1 => data.truncate(i),
                    2 => data.insert(i, byte),
                    _ => {
                        let piece = data[i..(i + 16).min(data.len())].to_vec();
                        data.splice(i..i, piece);
                    }
                }
            }
            f(&data);
        }
    }
}
