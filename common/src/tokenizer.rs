//! The model's tokenizer.json through the Hugging Face tokenizers crate, configured the same way
//! wherever ids are made: truncation at the configured length, special tokens added, no padding.

use anyhow::{Context, Result, anyhow};
use std::path::Path;
use tokenizers::{Tokenizer, TruncationParams};

use crate::format::sha256;

/// Loads tokenizer.json with truncation at `max_length` and no padding (the trainer pads per
/// batch). Returns the tokenizer and the sha256 of the file.
pub fn load_tokenizer(path: &Path, max_length: usize) -> Result<(Tokenizer, [u8; 32])> {
    let bytes = std::fs::read(path).with_context(|| {
        format!(
            "cannot read {}: fetch the model with `naics-trainer fetch-model minilm` (or mpnet)",
            path.display()
        )
    })?;
    let mut tokenizer =
        Tokenizer::from_bytes(&bytes).map_err(|e| anyhow!("{}: not a tokenizer.json: {e}", path.display()))?;
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length,
            ..Default::default()
        }))
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    tokenizer.with_padding(None);
    Ok((tokenizer, sha256(&bytes)))
}

/// Token ids of one batch of texts, special tokens added as the model expects. An empty text
/// gets the model's ids for "" (for BERT, `[CLS] [SEP]`).
pub fn encode(tokenizer: &Tokenizer, texts: &[String]) -> Result<Vec<Vec<u32>>> {
    Ok(encode_checked(tokenizer, texts)?
        .into_iter()
        .map(|(ids, _)| ids)
        .collect())
}

/// [`encode`], each row with whether truncation cut it: the text is longer than the model takes.
pub fn encode_checked(tokenizer: &Tokenizer, texts: &[String]) -> Result<Vec<(Vec<u32>, bool)>> {
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let encodings = tokenizer
        .encode_batch(refs, true)
        .map_err(|e| anyhow!("tokenizing: {e}"))?;
    Ok(encodings
        .iter()
        .map(|e| (e.get_ids().to_vec(), !e.get_overflowing().is_empty()))
        .collect())
}
