//! The four channel vectors (title, description, excluded, examples) of codes, [n, 4h].
//!
//! - `frozen`: the base model is not trained, so every code's vectors are computed once and
//!   cached in `{shards_dir}/cache/channels-{key}.safetensors` (memory-mapped), keyed by the
//!   model weights, tokenizer, token ids and pooling. Steps then only gather rows.
//! - `lora`: each step encodes the batch's distinct codes, each channel through its own adapter
//!   set over the one shared base, in calls of similar-length texts (`model.chunk_tokens` padded
//!   tokens at most). The vectors come back without a graph; the loss is backpropagated to them,
//!   and [`ChannelSource::backprop`] carries each call's share of the gradient into the adapters
//!   through the encoder's hand-written backward pass: by default replaying the calls one at a
//!   time (same dropout masks), so that one call's activations are alive at a time; with
//!   `model.keep_activations`, from each call's forward pass kept since the step's encoding (one
//!   forward pass less, every call's activations alive until the backward pass).

use crate::model::lora::Pass;
use crate::model::transformer::Forward;
use crate::model::{Encoder, pool};
use anyhow::{Context, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use naics_common::config::Pooling;
use naics_common::format::{CHANNELS, hex};
use naics_common::tokens::TokenCache;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

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
        chunk_tokens: usize,
        /// Activation checkpointing per layer in the backward replay (`model.checkpoint_layers`).
        checkpoint_layers: bool,
        /// Training keeps each call's forward pass instead of replaying it (`model.keep_activations`).
        keep_activations: bool,
    },
}

/// Codes are encoded in chunks of this many texts, sorted by length to waste little padding.
const CHUNK: usize = 64;

impl ChannelSource {
    /// The channel vectors [n, 4h] of `codes` and, in `lora` training with `keep_activations`,
    /// each encoder call's forward pass for [`Self::backprop`] (none otherwise: it replays them).
    pub fn vectors(&self, codes: &[u32], train: bool) -> Result<(Tensor, Vec<Forward>)> {
        let mut kept = Vec::new();
        let vectors = match self {
            ChannelSource::Frozen { table, .. } => {
                let idx = Tensor::from_vec(codes.to_vec(), codes.len(), table.device())?;
                table.index_select(&idx, 0)?
            }
            ChannelSource::Lora { .. } => {
                if codes.is_empty() {
                    let t = &self.encoder().transformer;
                    let width = CHANNELS.len() * t.config.hidden_size;
                    return Ok((Tensor::zeros((0, width), t.dtype(), t.device())?, kept));
                }
                let columns = (0..CHANNELS.len())
                    .map(|c| {
                        in_input_order(codes.len(), &self.calls(codes, c), |call| {
                            let (vectors, forward) = self.encode_call(&self.ids(codes, c, call), c, train)?;
                            kept.extend(forward);
                            Ok(vectors)
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                Tensor::cat(&columns, 1)?
            }
        };
        Ok((vectors, kept))
    }

    /// `lora` training: adds d(sum(vectors * grad))/d(adapters) to `grads`, `grad` being
    /// dL/d(vectors) of `vectors(codes, true)`, through the `kept` forward passes of its calls
    /// or, without them, by replaying the calls one at a time (the caller restores the random
    /// stream to where that pass began, so dropout masks repeat).
    pub fn backprop(&self, codes: &[u32], grad: &Tensor, kept: &[Forward], grads: &mut GradStore) -> Result<()> {
        // Frozen channel vectors have no adapters behind them.
        let ChannelSource::Lora { .. } = self else {
            return Ok(());
        };
        let mut kept = kept.iter();
        for c in 0..CHANNELS.len() {
            for call in self.calls(codes, c) {
                let rows = Tensor::from_vec(
                    call.iter().map(|&i| i as u32).collect::<Vec<_>>(),
                    call.len(),
                    grad.device(),
                )?;
                let g = self.channel_grad(grad, c)?.index_select(&rows, 0)?;
                self.backprop_call(&self.ids(codes, c, &call), c, &g, kept.next(), grads)?;
            }
        }
        Ok(())
    }

    /// [`Self::backprop`] for `text_vectors(ids, true)`.
    pub fn backprop_texts(
        &self,
        ids: &[Vec<u32>],
        grad: &Tensor,
        kept: &[Forward],
        grads: &mut GradStore,
    ) -> Result<()> {
        if let ChannelSource::Lora { .. } = self {
            let mut kept = kept.iter();
            for c in 0..CHANNELS.len() {
                self.backprop_call(ids, c, &self.channel_grad(grad, c)?, kept.next(), grads)?;
            }
        }
        Ok(())
    }

    /// Channel `c`'s columns of a gradient [n, 4h].
    fn channel_grad(&self, grad: &Tensor, c: usize) -> Result<Tensor> {
        let h = self.encoder().transformer.config.hidden_size;
        Ok(grad.narrow(1, c * h, h)?.contiguous()?)
    }

    /// One encoder call of channel `c` backward into its adapters, `g` being the gradient of its
    /// pooled vectors: from its `kept` forward pass, or run forward again (with
    /// `checkpoint_layers`, layer by layer).
    fn backprop_call(
        &self,
        ids: &[Vec<u32>],
        c: usize,
        g: &Tensor,
        kept: Option<&Forward>,
        grads: &mut GradStore,
    ) -> Result<()> {
        let ChannelSource::Lora {
            encoder,
            pooling,
            checkpoint_layers,
            ..
        } = self
        else {
            return Ok(());
        };
        let t = &encoder.transformer;
        let pool = |hidden: &Tensor, mask: &Tensor| pool(hidden, mask, *pooling);
        let g = g.to_device(t.device())?;
        match kept {
            Some(forward) => t.backward(forward, pool, &g, grads)?,
            None => t.backprop(ids, 0, Self::pass(c, true), *checkpoint_layers, pool, &g, grads)?,
        }
        Ok(())
    }

    fn pass(c: usize, train: bool) -> Pass {
        Pass {
            channel: Some(c),
            train,
        }
    }

    /// The encoder calls of channel `c` for `codes`: positions into `codes`.
    fn calls(&self, codes: &[u32], c: usize) -> Vec<Vec<usize>> {
        let ChannelSource::Lora {
            tokens, chunk_tokens, ..
        } = self
        else {
            return Vec::new();
        };
        let lengths: Vec<usize> = codes.iter().map(|&code| tokens.ids(c, code as usize).len()).collect();
        length_calls(&lengths, *chunk_tokens)
    }

    /// The token ids of channel `c` of the codes at positions `call`.
    fn ids(&self, codes: &[u32], c: usize, call: &[usize]) -> Vec<Vec<u32>> {
        let ChannelSource::Lora { tokens, .. } = self else {
            return Vec::new();
        };
        call.iter()
            .map(|&i| tokens.ids(c, codes[i] as usize).to_vec())
            .collect()
    }

    /// Pooled vectors of one encoder call through channel `c`'s adapter, without an autograd
    /// graph; in training with `keep_activations`, also its forward pass for the backward pass.
    fn encode_call(&self, ids: &[Vec<u32>], c: usize, train: bool) -> Result<(Tensor, Option<Forward>)> {
        let ChannelSource::Lora {
            encoder,
            pooling,
            keep_activations,
            ..
        } = self
        else {
            unreachable!("encoder calls are made in lora mode only")
        };
        if train && *keep_activations {
            let forward = encoder.transformer.forward_taped(ids, 0, Self::pass(c, train), false)?;
            let vectors = pool(&forward.hidden, &forward.mask, *pooling)?;
            return Ok((vectors, Some(forward)));
        }
        Ok((encoder.embed_ids(ids, *pooling, Self::pass(c, train))?, None))
    }

    /// Channel vectors of free texts: each text fills all four channels (a query has one text),
    /// every channel through its own adapter in `lora` mode (no graph; what training keeps for
    /// [`Self::backprop_texts`] as in [`Self::vectors`]).
    pub fn text_vectors(&self, ids: &[Vec<u32>], train: bool) -> Result<(Tensor, Vec<Forward>)> {
        let mut kept = Vec::new();
        let per_channel = match self {
            ChannelSource::Frozen { encoder, pooling, .. } => {
                vec![encoder.embed_ids(ids, *pooling, Pass::default())?; CHANNELS.len()]
            }
            ChannelSource::Lora { .. } => (0..CHANNELS.len())
                .map(|c| {
                    let (vectors, forward) = self.encode_call(ids, c, train)?;
                    kept.extend(forward);
                    Ok(vectors)
                })
                .collect::<Result<Vec<_>>>()?,
        };
        Ok((Tensor::cat(&per_channel, 1)?, kept))
    }

    pub fn encoder(&self) -> &Encoder {
        match self {
            ChannelSource::Frozen { encoder, .. } | ChannelSource::Lora { encoder, .. } => encoder,
        }
    }

    /// The frozen table, from the cache or computed (with a progress bar) and cached.
    pub fn frozen(encoder: Encoder, tokens: &TokenCache, pooling: Pooling, cache: &VectorCache) -> Result<Self> {
        let key = [
            &tokens.meta.tokenizer_sha256[..],
            &tokens.meta.texts_hash,
            &[pooling as u8, tokens.meta.max_length as u8],
        ];
        let table = cache.get_or_compute("channels", &key, || {
            let codes = tokens.meta.codes;
            let bar = progress(codes * CHANNELS.len(), "channel texts encoded (frozen cache)")?;
            let columns = (0..CHANNELS.len())
                .map(|c| {
                    let ids: Vec<Vec<u32>> = (0..codes).map(|i| tokens.ids(c, i).to_vec()).collect();
                    let ids: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
                    encode_sorted(&encoder, &ids, pooling, &bar)
                })
                .collect::<Result<Vec<_>>>()?;
            bar.finish_and_clear();
            Ok(Tensor::cat(&columns, 1)?)
        })?;
        Ok(ChannelSource::Frozen {
            table,
            encoder,
            pooling,
        })
    }
}

/// Positions 0..lengths.len() sorted by length and cut into calls that pad at most `budget`
/// tokens (a text longer than the budget goes alone).
pub fn length_calls(lengths: &[usize], budget: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| lengths[i]);
    let mut calls = Vec::new();
    let mut call: Vec<usize> = Vec::new();
    for i in order {
        // Sorted ascending: the call would pad every row to lengths[i].
        if !call.is_empty() && (call.len() + 1) * lengths[i].max(1) > budget {
            calls.push(std::mem::take(&mut call));
        }
        call.push(i);
    }
    if !call.is_empty() {
        calls.push(call);
    }
    calls
}

pub fn progress(len: usize, what: &str) -> Result<ProgressBar> {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(ProgressStyle::with_template(&format!(
        "{{bar:40}} {{pos}}/{{len}} {what} {{per_sec}} {{eta}}"
    ))?);
    Ok(bar)
}

/// The frozen base's pooled vectors [n, h] of `ids`, encoded in chunks of similar length so
/// that little padding is wasted, returned in the input order.
pub fn encode_sorted(encoder: &Encoder, ids: &[&[u32]], pooling: Pooling, bar: &ProgressBar) -> Result<Tensor> {
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by_key(|&i| ids[i].len());
    let calls: Vec<Vec<usize>> = order.chunks(CHUNK).map(<[usize]>::to_vec).collect();
    in_input_order(ids.len(), &calls, |call| {
        let batch: Vec<Vec<u32>> = call.iter().map(|&i| ids[i].to_vec()).collect();
        let vectors = encoder
            .embed_ids(&batch, pooling, Pass::default())?
            .to_dtype(DType::F32)?
            .to_device(&Device::Cpu)?;
        bar.inc(call.len() as u64);
        Ok(vectors)
    })
}

/// Runs `encode` on each call (positions into n inputs, one encoder pass each) and returns the
/// n rows in input order.
fn in_input_order(
    n: usize,
    calls: &[Vec<usize>],
    mut encode: impl FnMut(&[usize]) -> Result<Tensor>,
) -> Result<Tensor> {
    let parts = calls.iter().map(|call| encode(call)).collect::<Result<Vec<_>>>()?;
    let mut inverse = vec![0u32; n];
    for (k, &i) in calls.iter().flatten().enumerate() {
        inverse[i] = k as u32;
    }
    let all = Tensor::cat(&parts, 0)?.contiguous()?;
    Ok(all.index_select(&Tensor::from_vec(inverse, n, all.device())?, 0)?)
}

/// Frozen base vectors kept in `{shards_dir}/cache/{name}-{key}.safetensors`, the key hashing
/// the model's weights and what was encoded, so that a changed model or text recomputes them.
pub struct VectorCache {
    dir: PathBuf,
    weights: PathBuf,
    model: OnceLock<[u8; 32]>,
    device: Device,
}

impl VectorCache {
    pub fn new(dir: &Path, encoder: &Encoder, device: &Device) -> Self {
        VectorCache {
            dir: dir.to_path_buf(),
            weights: encoder.folder.join("model.safetensors"),
            model: OnceLock::new(),
            device: device.clone(),
        }
    }

    /// The weights' sha256, computed on first use (streamed: `lora` runs never pay for it).
    fn model(&self) -> Result<[u8; 32]> {
        if let Some(hash) = self.model.get() {
            return Ok(*hash);
        }
        let mut hasher = Sha256::new();
        let mut file =
            std::fs::File::open(&self.weights).with_context(|| format!("reading {}", self.weights.display()))?;
        std::io::copy(&mut file, &mut hasher)?;
        let hash: [u8; 32] = hasher.finalize().into();
        Ok(*self.model.get_or_init(|| hash))
    }

    pub fn get_or_compute(
        &self,
        name: &str,
        key: &[&[u8]],
        compute: impl FnOnce() -> Result<Tensor>,
    ) -> Result<Tensor> {
        let mut hasher = Sha256::new();
        hasher.update(self.model()?);
        key.iter().for_each(|k| hasher.update(k));
        let path = self
            .dir
            .join(format!("{name}-{}.safetensors", &hex(&hasher.finalize())[..16]));
        if path.exists() {
            return candle_core::safetensors::load(&path, &self.device)?
                .remove("vectors")
                .with_context(|| format!("{}: no `vectors` tensor; delete it to rebuild", path.display()));
        }
        let table = compute()?;
        let tensors = HashMap::from([("vectors".to_string(), table.to_device(&Device::Cpu)?)]);
        naics_common::atomic::write_atomically(&path, |tmp| Ok(candle_core::safetensors::save(&tensors, tmp)?))?;
        Ok(table.to_device(&self.device)?)
    }
}

#[cfg(test)]
mod tests {
    use super::length_calls;

    #[test]
    fn calls_sort_by_length_and_respect_the_budget() {
        let lengths = [5, 40, 3, 12, 12, 100];
        let calls = length_calls(&lengths, 30);
        assert_eq!(calls, vec![vec![2, 0], vec![3, 4], vec![1], vec![5]]);
        for call in &calls {
            let longest = call.iter().map(|&i| lengths[i]).max().unwrap();
            assert!(call.len() == 1 || call.len() * longest <= 30);
        }
        assert!(length_calls(&[], 30).is_empty());
    }
}
