//! `rightsize embed` and `rightsize generate`: text in, through a checkpoint's tokenizer.json.

use std::io::BufRead as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context as _};

use crate::engine::{checkpoint, Family, Mode, Model, ModelWeights, Text};
use crate::runtime::{Device, Placement, PoolSpec, Runtime, Tenant};

/// A checkpoint on the GPU with its tokenizer: one tenant on the whole device of GPU 0.
pub struct TextModel {
    text: Text,
    // Dropped before the tenant whose runtime holds its memory.
    model: Model,
    tenant: Tenant,
}

impl std::fmt::Debug for TextModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TextModel({})", self.model.config().name)
    }
}

/// What a [`TextModel`] is loaded for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// Sentence embeddings: an encoder (BERT, MiniLM).
    Embed,
    /// Greedy generation: a decoder (GPT-2, Llama).
    Generate,
}

impl TextModel {
    /// Loads the Hugging Face model directory `dir` (config.json, safetensors weights,
    /// tokenizer.json) onto GPU 0 for `task`; a checkpoint of the other kind is refused before
    /// its weights are read.
    pub fn load(dir: &Path, task: Task) -> anyhow::Result<TextModel> {
        // A named model (`bert-base`) has synthetic weights and no vocabulary: text needs a
        // checkpoint's directory.
        anyhow::ensure!(
            dir.is_dir(),
            "--model {}: {} (a Hugging Face model directory: config.json, safetensors weights, tokenizer.json)",
            dir.display(),
            if dir.exists() { "not a directory" } else { "no such directory" }
        );
        let text = Text::from_dir(dir)?;
        let c = checkpoint::config_from_hf(dir)?;
        match task {
            Task::Embed if c.family != Family::Bert => {
                bail!("{} is a decoder; embedding needs an encoder checkpoint (BERT, MiniLM)", c.name)
            }
            Task::Generate if !c.is_decoder() => {
                bail!("{} is an encoder; generation needs a decoder checkpoint (GPT-2, Llama)", c.name)
            }
            _ => {}
        }
        let (config, host) =
            checkpoint::load(dir).with_context(|| format!("loading the checkpoint in {}", dir.display()))?;
        let device = Device::open(0).context("cannot open the GPU")?;
        let rt = Arc::new(Runtime::new(device, &PoolSpec::default())?);
        let tenant = Tenant::new(rt, 0, Placement::WHOLE)?;
        let model = Model::new(&tenant, config, ModelWeights::upload(&tenant, host)?)?;
        Ok(TextModel { text, model, tenant })
    }

    /// Sentence embeddings of `texts` (mean pooling, L2-normalised, as sentence-transformers
    /// does), each text cut to `max_tokens` tokens (special tokens included); also the indices
    /// of the texts that were cut.
    pub fn embed(&self, texts: &[&str], max_tokens: u32) -> anyhow::Result<(Vec<Vec<f32>>, Vec<usize>)> {
        anyhow::ensure!(!texts.is_empty(), "no text to embed");
        let limit = max_tokens.min(self.model.config().max_positions);
        let batch = self.text.batch(texts, limit)?;
        let mut ws = self.model.workspace(&self.tenant, texts.len() as u32, batch.seq)?;
        let vectors = self.model.embed(&self.tenant, &mut ws, &batch)?;
        Ok((vectors, batch.truncated.clone()))
    }

    /// `prompt` continued by `tokens` greedily decoded tokens (decode steps replayed from a
    /// plan): the new text only.
    pub fn generate(&self, prompt: &str, tokens: u32) -> anyhow::Result<String> {
        anyhow::ensure!(tokens > 0, "generate at least one token");
        let c = self.model.config();
        let ids = self.text.ids(prompt)?;
        anyhow::ensure!(!ids.is_empty(), "the prompt has no tokens");
        let len = ids.len() as u32;
        anyhow::ensure!(
            len + tokens <= c.max_positions,
            "{len} prompt tokens + {tokens} new exceed {}'s {} positions",
            c.name,
            c.max_positions
        );
        let mut ws = self.model.workspace(&self.tenant, 1, len + tokens)?;
        let out = self.model.generate(&self.tenant, &mut ws, &ids, 1, len, tokens, Mode::Plan)?;
        Ok(self.text.decode(&out.into_iter().next().unwrap_or_default())?)
    }
}

/// Texts from the arguments, or one per line of stdin when there are none.
fn texts(args: Vec<String>) -> anyhow::Result<Vec<String>> {
    if !args.is_empty() {
        return Ok(args);
    }
    let lines: Vec<String> = std::io::stdin()
        .lock()
        .lines()
        .collect::<Result<Vec<_>, _>>()
        .context("reading texts from stdin")?
        .into_iter()
        .filter(|l| !l.trim().is_empty())
        .collect();
    anyhow::ensure!(!lines.is_empty(), "no text: give texts as arguments or one per line on stdin");
    Ok(lines)
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Sentence embeddings (mean pooling, L2-normalised), one JSON object per line, or with
/// `similarity` the matrix of cosine similarities.
pub(super) fn embed(dir: &Path, args: Vec<String>, max_tokens: u32, similarity: bool) -> anyhow::Result<()> {
    let texts = texts(args)?;
    let model = TextModel::load(dir, Task::Embed)?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (vectors, truncated) = model.embed(&refs, max_tokens)?;
    for i in truncated {
        eprintln!("warning: text {} was cut to {max_tokens} tokens", i + 1);
    }
    if similarity {
        for (i, a) in vectors.iter().enumerate() {
            let row: Vec<String> = vectors.iter().map(|b| format!("{:6.3}", cosine(a, b))).collect();
            println!("{}  {}", row.join(" "), texts[i]);
        }
    } else {
        for (s, v) in texts.iter().zip(&vectors) {
            println!("{}", serde_json::json!({ "text": s, "embedding": v }));
        }
    }
    Ok(())
}

/// Greedy generation of `tokens` tokens after `prompt`, decode steps replayed from a plan.
pub(super) fn generate(dir: &Path, prompt: &str, tokens: u32) -> anyhow::Result<()> {
    anyhow::ensure!(tokens > 0, "--tokens must be at least 1");
    let model = TextModel::load(dir, Task::Generate)?;
    println!("{prompt}{}", model.generate(prompt, tokens)?);
    Ok(())
}
