//! Text in and out: a Hugging Face `tokenizer.json` (read by the `tokenizers` crate) turns
//! sentences into a padded batch of token ids, and generated ids back into text. Special
//! tokens are added as the tokenizer's post-processor says (BERT's `[CLS] … [SEP]`, Llama's
//! begin-of-text; none for GPT-2), as `transformers` does by default.

use std::path::{Path, PathBuf};

use super::EngineError;

type Result<T> = std::result::Result<T, EngineError>;

/// A tokenizer loaded from a `tokenizer.json`.
pub struct Text {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
}

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Text").field("path", &self.path).finish_non_exhaustive()
    }
}

/// Sentences as token ids, padded to the longest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// `[sentences·seq]`, each sentence's ids followed by padding ids (0).
    pub ids: Vec<u32>,
    /// Valid tokens of each sentence.
    pub lens: Vec<u32>,
    /// Tokens per row (the longest sentence).
    pub seq: u32,
    /// Sentences cut to the token limit.
    pub truncated: Vec<usize>,
}

fn text_err(what: impl std::fmt::Display) -> EngineError {
    EngineError::Text(what.to_string())
}

impl Text {
    /// Loads a `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Text> {
        if !path.is_file() {
            return Err(text_err(format!("no tokenizer file at {}", path.display())));
        }
        let json = std::fs::read_to_string(path).map_err(|e| text_err(format!("reading {}: {e}", path.display())))?;
        Text::from_json(&json, path)
    }

    /// A tokenizer from a `tokenizer.json`'s text (read from `path`, named in errors).
    pub fn from_json(json: &str, path: &Path) -> Result<Text> {
        let mut inner: tokenizers::Tokenizer =
            json.parse().map_err(|e| text_err(format!("reading {}: {e}", path.display())))?;
        // Lengths and padding are ours to decide, whatever the file configures.
        inner.with_padding(None);
        inner.with_truncation(None).map_err(text_err)?;
        Ok(Text { inner, path: path.to_path_buf() })
    }

    /// Loads `dir/tokenizer.json` (a Hugging Face model directory).
    pub fn from_dir(dir: &Path) -> Result<Text> {
        let path = dir.join("tokenizer.json");
        if !path.is_file() {
            return Err(text_err(format!(
                "{} has no tokenizer.json; text input needs the model's Hugging Face tokenizer",
                dir.display()
            )));
        }
        Text::from_file(&path)
    }

    /// Token ids of one text, special tokens included.
    pub fn ids(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, true).map_err(|e| text_err(format!("tokenizing {text:?}: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// `texts` as a padded batch; a text longer than `max_tokens` is cut to it (keeping its
    /// last token when that is a special token, as BERT's `[SEP]` is) and listed in
    /// [`Batch::truncated`].
    pub fn batch(&self, texts: &[&str], max_tokens: u32) -> Result<Batch> {
        if texts.is_empty() {
            return Err(text_err("no text given"));
        }
        if max_tokens == 0 {
            return Err(text_err("a token limit of 0"));
        }
        let mut rows = Vec::with_capacity(texts.len());
        let mut truncated = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            let enc = self.inner.encode(*text, true).map_err(|e| text_err(format!("tokenizing {text:?}: {e}")))?;
            let mut ids = enc.get_ids().to_vec();
            if ids.is_empty() {
                return Err(text_err(format!("text {i} ({text:?}) has no tokens")));
            }
            if ids.len() > max_tokens as usize {
                let ends_special = enc.get_special_tokens_mask().last() == Some(&1);
                let last = *ids.last().unwrap_or(&0);
                ids.truncate(max_tokens as usize);
                if ends_special && max_tokens > 1 {
                    *ids.last_mut().unwrap_or(&mut 0) = last;
                }
                truncated.push(i);
            }
            rows.push(ids);
        }
        let seq = rows.iter().map(Vec::len).max().unwrap_or(1);
        let mut ids = Vec::with_capacity(rows.len() * seq);
        for r in &rows {
            ids.extend_from_slice(r);
            ids.resize(ids.len() + seq - r.len(), 0);
        }
        let lens = rows.iter().map(|r| r.len() as u32).collect();
        Ok(Batch { ids, lens, seq: seq as u32, truncated })
    }

    /// The text of `ids`, special tokens left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(|e| text_err(format!("decoding {} ids: {e}", ids.len())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A WordPiece tokenizer (BERT's kind) over a tiny vocabulary, written as a tokenizer.json.
    fn wordpiece(dir: &Path) -> PathBuf {
        let path = dir.join("tokenizer.json");
        std::fs::write(&path, include_str!("../tests/data/wordpiece-tokenizer.json")).unwrap();
        path
    }

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rightsize-text-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn batches_pad_to_the_longest_and_keep_special_tokens() {
        let dir = tmp("batch");
        let text = Text::from_file(&wordpiece(&dir)).unwrap();
        // The file's own truncation (4 tokens) is ignored.
        assert_eq!(text.ids("The cats sat on the mat.").unwrap(), vec![2, 4, 5, 9, 6, 7, 4, 8, 10, 3]);
        let b = text.batch(&["The cat sat.", "Cats"], 16).unwrap();
        assert_eq!(b.seq, 6);
        assert_eq!(b.lens, vec![6, 4]);
        assert_eq!(b.ids, vec![2, 4, 5, 6, 10, 3, 2, 5, 9, 3, 0, 0]);
        assert!(b.truncated.is_empty());
        assert_eq!(text.decode(&b.ids[..6]).unwrap(), "the cat sat.");
        // Cut to 4 tokens, the [SEP] kept at the end.
        let cut = text.batch(&["the cat sat on the mat", "cat"], 4).unwrap();
        assert_eq!(cut.ids[..4], [2, 4, 5, 3]);
        assert_eq!(cut.truncated, vec![0]);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn missing_or_broken_files_say_what_is_wrong() {
        let dir = tmp("errors");
        let e = Text::from_dir(&dir).unwrap_err().to_string();
        assert!(e.contains("has no tokenizer.json"), "{e}");
        std::fs::write(dir.join("tokenizer.json"), "{ not json").unwrap();
        let e = Text::from_dir(&dir).unwrap_err().to_string();
        assert!(e.contains("reading") && e.contains("tokenizer.json"), "{e}");
        let text = Text::from_file(&wordpiece(&dir)).unwrap();
        assert!(text.batch(&[], 8).unwrap_err().to_string().contains("no text"));
        std::fs::remove_dir_all(dir).ok();
    }
}
