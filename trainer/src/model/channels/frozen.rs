//! Frozen channels: the base model is not trained, so every code's four vectors are computed
//! once and cached in `{shards_dir}/cache/channels-{key}.safetensors`, keyed by the model
//! weights, tokenizer, token ids and pooling; a step only gathers rows. Free texts go through the
//! base, their one vector in all four channels.

use super::Channels;
use crate::model::cache::{Lazy, VectorCache, encode_sorted, ids_key, progress};
use crate::model::encoder::{Encoder, pool};
use crate::model::lora::Pass;
use crate::model::transformer::Forward;
use anyhow::Result;
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use naics_common::config::Pooling;
use naics_common::format::CHANNELS;
use naics_common::tokens::TokenCache;

pub struct FrozenChannels {
    /// [codes, 4h]: every code's channel vectors (read when first needed).
    table: Lazy,
    pub(super) encoder: Encoder,
    pub(super) pooling: Pooling,
}

impl FrozenChannels {
    /// The table from the cache, or computed (with a progress bar) and cached.
    pub fn new(encoder: Encoder, tokens: &TokenCache, pooling: Pooling, cache: &VectorCache) -> Result<Self> {
        let key = [
            &tokens.meta.tokenizer_sha256[..],
            &tokens.meta.texts_hash,
            &[pooling as u8, tokens.meta.max_length as u8],
        ];
        let table = cache.lazily("channels", &key, || {
            let codes = tokens.meta.codes;
            let bar = progress(codes * CHANNELS.len(), "channel texts encoded (frozen cache)")?;
            let columns = (0..CHANNELS.len())
                .map(|c| {
                    let ids: Vec<Vec<u32>> = (0..codes).map(|i| tokens.ids(c, i).to_vec()).collect();
                    let ids: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
                    encode_sorted(&encoder, &ids, pooling, Pass::default(), &bar, true)
                })
                .collect::<Result<Vec<_>>>()?;
            bar.finish_and_clear();
            Ok(Tensor::cat(&columns, 1)?)
        })?;
        Ok(FrozenChannels {
            table,
            encoder,
            pooling,
        })
    }
}

impl Channels for FrozenChannels {
    fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    fn encoder_mut(&mut self) -> &mut Encoder {
        &mut self.encoder
    }

    fn vectors(&self, codes: &[u32], _train: bool) -> Result<(Tensor, Vec<Forward>)> {
        let table = self.table.get()?;
        let idx = Tensor::from_vec(codes.to_vec(), codes.len(), table.device())?;
        Ok((table.index_select(&idx, 0)?, Vec::new()))
    }

    fn text_vectors(&self, ids: &[Vec<u32>], _train: bool) -> Result<(Tensor, Vec<Forward>)> {
        let v = self.encoder.embed_ids(ids, self.pooling, Pass::default())?;
        Ok((Tensor::cat(&vec![v; CHANNELS.len()], 1)?, Vec::new()))
    }

    /// One pass through the base, pooled both ways.
    fn text_vectors_and_base(&self, ids: &[Vec<u32>]) -> Result<(Tensor, Tensor)> {
        let (hidden, mask) = self.encoder.transformer.forward(ids, Pass::default())?;
        let v = pool(&hidden, &mask, self.pooling)?;
        let base = pool(&hidden, &mask, Pooling::Mean)?;
        Ok((Tensor::cat(&vec![v; CHANNELS.len()], 1)?, base))
    }

    fn codes_cached(&self) -> bool {
        true
    }

    fn fixed_texts(&self, name: &str, ids: &[Vec<u32>], cache: &VectorCache) -> Result<Option<Tensor>> {
        let table = cache.get_or_compute(name, &[&ids_key(ids), &[self.pooling as u8]], || {
            let bar = progress(ids.len(), &format!("{name} encoded (frozen cache)"))?;
            let rows: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
            let table = encode_sorted(&self.encoder, &rows, self.pooling, Pass::default(), &bar, true)?;
            bar.finish_and_clear();
            Ok(table)
        })?;
        Ok(Some(table))
    }

    /// Nothing behind frozen vectors trains: the loss's graph starts at them.
    fn leaf(&self, vectors: Tensor, _train: bool) -> Result<(Tensor, Option<Var>)> {
        Ok((vectors, None))
    }

    fn backprop(&self, _: &[u32], _: &Tensor, _: &[Forward], _: &mut GradStore) -> Result<()> {
        Ok(())
    }

    fn backprop_texts(&self, _: &[Vec<u32>], _: &Tensor, _: &[Forward], _: &mut GradStore) -> Result<()> {
        Ok(())
    }
}
