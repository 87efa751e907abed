//! The token cache: every code's four channels tokenized once with the model's tokenizer.json.

use anyhow::{Context, Result, anyhow};
use naics_common::format::{CHANNELS, sha256};
use naics_common::tokens::{ChannelIds, TokensMeta};
use sha2::{Digest, Sha256};
use std::path::Path;
use tokenizers::{Tokenizer, TruncationParams};

/// The four texts of every code, channel-major: `texts[channel][code]`.
pub type CodeTexts = [Vec<String>; 4];

/// Hash of the texts and the truncation length: the cache is rebuilt when it changes.
pub fn texts_hash(texts: &CodeTexts, max_length: usize) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((max_length as u64).to_le_bytes());
    for channel in texts {
        for text in channel {
            h.update((text.len() as u64).to_le_bytes());
            h.update(text.as_bytes());
        }
    }
    h.finalize().into()
}

/// Loads tokenizer.json with truncation at `max_length` and no padding (the trainer pads per
/// batch). Returns the tokenizer and the sha256 of the file.
pub fn load_tokenizer(path: &Path, max_length: usize) -> Result<(Tokenizer, [u8; 32])> {
    let bytes = std::fs::read(path).with_context(|| {
        format!("cannot read {}: fetch the model with `scripts/fetch_model.sh minilm` (or mpnet)", path.display())
    })?;
    let mut tokenizer =
        Tokenizer::from_bytes(&bytes).map_err(|e| anyhow!("{}: not a tokenizer.json: {e}", path.display()))?;
    tokenizer
        .with_truncation(Some(TruncationParams { max_length, ..Default::default() }))
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    tokenizer.with_padding(None);
    Ok((tokenizer, sha256(&bytes)))
}

/// Token ids of one batch of texts, special tokens added as the model expects. An empty text
/// gets the model's ids for "" (for BERT, `[CLS] [SEP]`).
pub fn encode(tokenizer: &Tokenizer, texts: &[String]) -> Result<Vec<Vec<u32>>> {
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let encodings = tokenizer.encode_batch(refs, true).map_err(|e| anyhow!("tokenizing: {e}"))?;
    Ok(encodings.iter().map(|e| e.get_ids().to_vec()).collect())
}

/// Tokenizes every channel of every code.
pub fn tokenize_all(
    tokenizer: &Tokenizer,
    tokenizer_sha256: [u8; 32],
    texts: &CodeTexts,
    max_length: usize,
) -> Result<(TokensMeta, [ChannelIds; 4])> {
    let mut channels: [ChannelIds; 4] = Default::default();
    for (c, channel_texts) in texts.iter().enumerate() {
        for ids in encode(tokenizer, channel_texts).with_context(|| format!("channel {}", CHANNELS[c]))? {
            channels[c].push(&ids);
        }
    }
    let id_width = if tokenizer.get_vocab_size(true) <= 1 << 16 { 2 } else { 4 };
    let meta = TokensMeta {
        codes: texts[0].len(),
        max_length: max_length as u32,
        id_width,
        tokenizer_sha256,
        texts_hash: texts_hash(texts, max_length),
    };
    Ok((meta, channels))
}
