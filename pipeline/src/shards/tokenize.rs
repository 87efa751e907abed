//! The token cache: every code's four channels tokenized once with the model's tokenizer.json.

use anyhow::{Context, Result};
use naics_common::format::CHANNELS;
pub use naics_common::tokenizer::{encode, load_tokenizer};
use naics_common::tokens::{ChannelIds, TokensMeta};
use sha2::{Digest, Sha256};
use tokenizers::Tokenizer;

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
    let id_width = if tokenizer.get_vocab_size(true) <= 1 << 16 {
        2
    } else {
        4
    };
    let meta = TokensMeta {
        codes: texts[0].len(),
        max_length: max_length as u32,
        id_width,
        tokenizer_sha256,
        texts_hash: texts_hash(texts, max_length),
    };
    Ok((meta, channels))
}
