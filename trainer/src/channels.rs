//! The four channel vectors (title, description, excluded, examples) of codes, [n, 4h].
//!
//! - `frozen`: the base model is not trained, so every code's vectors are computed once and
//!   cached in `{shards_dir}/cache/channels-{key}.safetensors` (memory-mapped), keyed by the
//!   model weights, tokenizer, token ids and pooling. Steps then only gather rows.
//! - `lora`: each step encodes the batch's distinct codes, each channel through its own adapter
//!   set over the one shared base, padded only to that channel's longest sequence.

use crate::model::Encoder;
use crate::model::lora::Pass;
use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use naics_common::config::Pooling;
use naics_common::format::{CHANNELS, hex, sha256};
use naics_common::tokens::TokenCache;
use sha2::{Digest, Sha256};
use std::path::Path;

pub enum ChannelSource {
    /// The cached table, and the base encoder for texts outside it (free-text queries).
    Frozen {
        table: Tensor,
        encoder: Encoder,
        pooling: Pooling,
    },
    Lora {
        encoder: Encoder,
        tokens: TokenCache,
        pooling: Pooling,
    },
}

/// Codes are encoded in chunks of this many texts, sorted by length to waste little padding.
const CHUNK: usize = 64;

impl ChannelSource {
    pub fn vectors(&self, codes: &[u32], train: bool) -> Result<Tensor> {
        match self {
            ChannelSource::Frozen { table, .. } => {
                let idx = Tensor::from_vec(codes.to_vec(), codes.len(), table.device())?;
                Ok(table.index_select(&idx, 0)?)
            }
            ChannelSource::Lora {
                encoder,
                tokens,
                pooling,
            } => {
                let per_channel = (0..CHANNELS.len())
                    .map(|c| {
                        let ids: Vec<Vec<u32>> = codes
                            .iter()
                            .map(|&code| tokens.ids(c, code as usize).to_vec())
                            .collect();
                        encoder.embed_ids(
                            &ids,
                            *pooling,
                            Pass {
                                channel: Some(c),
                                train,
                            },
                        )
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(Tensor::cat(&per_channel, 1)?)
            }
        }
    }

    /// Channel vectors of free texts: each text fills all four channels (a query has one text),
    /// every channel through its own adapter in `lora` mode.
    pub fn text_vectors(&self, ids: &[Vec<u32>]) -> Result<Tensor> {
        let (encoder, pooling, lora) = match self {
            ChannelSource::Frozen { encoder, pooling, .. } => (encoder, *pooling, false),
            ChannelSource::Lora { encoder, pooling, .. } => (encoder, *pooling, true),
        };
        let mut per_channel: Vec<Tensor> = Vec::new();
        for c in 0..CHANNELS.len() {
            if !lora && c > 0 {
                per_channel.push(per_channel[0].clone());
                continue;
            }
            let channel = if lora { Some(c) } else { None };
            per_channel.push(encoder.embed_ids(ids, pooling, Pass { channel, train: false })?);
        }
        Ok(Tensor::cat(&per_channel, 1)?)
    }

    pub fn encoder(&self) -> &Encoder {
        match self {
            ChannelSource::Frozen { encoder, .. } | ChannelSource::Lora { encoder, .. } => encoder,
        }
    }

    /// The frozen table, from the cache or computed (with a progress bar) and cached.
    pub fn frozen(
        encoder: Encoder,
        tokens: &TokenCache,
        pooling: Pooling,
        cache_dir: &Path,
        device: &Device,
    ) -> Result<Self> {
        let weights = std::fs::read(encoder.folder.join("model.safetensors"))?;
        let mut key = Sha256::new();
        key.update(sha256(&weights));
        key.update(tokens.meta.tokenizer_sha256);
        key.update(tokens.meta.texts_hash);
        key.update([pooling as u8, tokens.meta.max_length as u8]);
        let path = cache_dir.join(format!("channels-{}.safetensors", &hex(&key.finalize())[..16]));
        if path.exists() {
            let table = candle_core::safetensors::load(&path, device)?
                .remove("vectors")
                .with_context(|| format!("{}: no `vectors` tensor; delete it to rebuild", path.display()))?;
            return Ok(ChannelSource::Frozen {
                table,
                encoder,
                pooling,
            });
        }
        let codes = tokens.meta.codes;
        let bar = ProgressBar::new((codes * CHANNELS.len()) as u64);
        bar.set_style(ProgressStyle::with_template(
            "{bar:40} {pos}/{len} channel texts encoded (frozen cache) {per_sec} {eta}",
        )?);
        let mut columns = Vec::new();
        for c in 0..CHANNELS.len() {
            let mut order: Vec<usize> = (0..codes).collect();
            order.sort_by_key(|&i| tokens.ids(c, i).len());
            let mut rows: Vec<Option<Tensor>> = vec![None; codes];
            for chunk in order.chunks(CHUNK) {
                let ids: Vec<Vec<u32>> = chunk.iter().map(|&i| tokens.ids(c, i).to_vec()).collect();
                let vectors = encoder
                    .embed_ids(&ids, pooling, Pass::default())?
                    .to_dtype(DType::F32)?;
                for (k, &i) in chunk.iter().enumerate() {
                    rows[i] = Some(vectors.get(k)?);
                }
                bar.inc(chunk.len() as u64);
            }
            let rows: Vec<Tensor> = rows.into_iter().map(|r| r.expect("every code encoded")).collect();
            columns.push(Tensor::stack(&rows, 0)?);
        }
        bar.finish_and_clear();
        let table = Tensor::cat(&columns, 1)?.to_device(device)?;
        let tensors = std::collections::HashMap::from([("vectors".to_string(), table.to_device(&Device::Cpu)?)]);
        naics_common::atomic::write_atomically(&path, |tmp| Ok(candle_core::safetensors::save(&tensors, tmp)?))?;
        Ok(ChannelSource::Frozen {
            table,
            encoder,
            pooling,
        })
    }
}
