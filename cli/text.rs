//! `rightsize embed` and `rightsize generate`: text in, through a checkpoint's tokenizer.json.

use std::io::BufRead as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context as _};

use rightsize::engine::{checkpoint, Family, Mode, Model, ModelConfig, ModelWeights, Text};
use rightsize::runtime::{Device, Placement, PoolSpec, Runtime, Tenant};

/// A checkpoint's tokenizer, config and weights on the GPU, for one tenant on the whole
/// device; `check` vets the config before anything heavy is read.
fn load(dir: &Path, check: impl FnOnce(&ModelConfig) -> anyhow::Result<()>) -> anyhow::Result<(Text, Tenant, Model)> {
    let text = Text::from_dir(dir)?;
    check(&checkpoint::config_from_hf(dir)?)?;
    let (config, host) =
        checkpoint::load(dir).with_context(|| format!("loading the checkpoint in {}", dir.display()))?;
    let device = Device::open(0).context("cannot open the GPU")?;
    let rt = Arc::new(Runtime::new(device, &PoolSpec::default())?);
    let t = Tenant::new(rt, 0, Placement::WHOLE)?;
    let model = Model::new(&t, config, ModelWeights::upload(&t, host)?)?;
    Ok((text, t, model))
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
pub fn embed(dir: &Path, args: Vec<String>, max_tokens: u32, similarity: bool) -> anyhow::Result<()> {
    let texts = texts(args)?;
    let (text, t, model) = load(dir, |c| {
        if c.family != Family::Bert {
            bail!("{} is a decoder; `embed` needs an encoder checkpoint (BERT, MiniLM)", c.name);
        }
        Ok(())
    })?;
    let c = model.config();
    let limit = max_tokens.min(c.max_positions);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let batch = text.batch(&refs, limit)?;
    for &i in &batch.truncated {
        eprintln!("warning: text {} was cut to {limit} tokens", i + 1);
    }
    let mut ws = model.workspace(&t, refs.len() as u32, batch.seq)?;
    let vectors = model.embed(&t, &mut ws, &batch)?;
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
pub fn generate(dir: &Path, prompt: &str, tokens: u32) -> anyhow::Result<()> {
    anyhow::ensure!(tokens > 0, "--tokens must be at least 1");
    let (text, t, model) = load(dir, |c| {
        if !c.is_decoder() {
            bail!("{} is an encoder; `generate` needs a decoder checkpoint (GPT-2, Llama)", c.name);
        }
        Ok(())
    })?;
    let c = model.config();
    let ids = text.ids(prompt)?;
    anyhow::ensure!(!ids.is_empty(), "the prompt has no tokens");
    let len = ids.len() as u32;
    anyhow::ensure!(
        len + tokens <= c.max_positions,
        "{len} prompt tokens + {tokens} new exceed {}'s {} positions",
        c.name,
        c.max_positions
    );
    let mut ws = model.workspace(&t, 1, len + tokens)?;
    let out = model.generate(&t, &mut ws, &ids, 1, len, tokens, Mode::Plan)?;
    let new = out.into_iter().next().unwrap_or_default();
    println!("{prompt}{}", text.decode(&new)?);
    Ok(())
}
