//! LoRA channels: each step encodes the batch's distinct codes, each channel through its own
//! adapter set over the one shared base, in calls of similar-length texts (`model.chunk_tokens`
//! padded tokens at most). The vectors come back without a graph; the loss is backpropagated to
//! them, and [`Channels::backprop`] carries each call's share of the gradient into the adapters
//! through the encoder's hand-written backward pass: by default replaying the calls one at a
//! time (same dropout masks), so that one call's activations are alive at a time; with
//! `model.keep_activations`, from each call's forward pass kept since the step's encoding (one
//! forward pass less, every call's activations alive until the backward pass).

use super::{Channels, length_calls};
use crate::model::encoder::{Encoder, in_input_order, pool};
use crate::model::lora::{Pass, numbered};
use crate::model::transformer::Forward;
use anyhow::Result;
use candle_core::Tensor;
use candle_core::backprop::GradStore;
use candle_nn::VarMap;
use naics_common::config::{ModelConfig, Pooling};
use naics_common::format::CHANNELS;
use naics_common::tokens::TokenCache;

pub struct LoraChannels {
    encoder: Encoder,
    tokens: TokenCache,
    pooling: Pooling,
    chunk_tokens: usize,
    /// Activation checkpointing per layer in the backward replay (`model.checkpoint_layers`).
    checkpoint_layers: bool,
    /// Training keeps each call's forward pass instead of replaying it (`model.keep_activations`).
    keep_activations: bool,
}

impl LoraChannels {
    /// Adds one adapter set per channel to `encoder`, its parameters created in `varmap`.
    pub fn new(mut encoder: Encoder, varmap: &VarMap, tokens: TokenCache, model: &ModelConfig) -> Result<Self> {
        encoder.add_lora(varmap, &numbered(CHANNELS.len()), &model.lora)?;
        Ok(LoraChannels {
            encoder,
            tokens,
            pooling: model.pooling,
            chunk_tokens: model.chunk_tokens,
            checkpoint_layers: model.checkpoint_layers,
            keep_activations: model.keep_activations,
        })
    }

    fn pass(c: usize, train: bool) -> Pass {
        Pass {
            channel: Some(c),
            train,
        }
    }

    /// The encoder calls of channel `c` for `codes`: positions into `codes`.
    fn calls(&self, codes: &[u32], c: usize) -> Vec<Vec<usize>> {
        let lengths: Vec<usize> = codes
            .iter()
            .map(|&code| self.tokens.ids(c, code as usize).len())
            .collect();
        length_calls(&lengths, self.chunk_tokens)
    }

    /// The token ids of channel `c` of the codes at positions `call`.
    fn ids(&self, codes: &[u32], c: usize, call: &[usize]) -> Vec<Vec<u32>> {
        call.iter()
            .map(|&i| self.tokens.ids(c, codes[i] as usize).to_vec())
            .collect()
    }

    /// Channel `c`'s columns of a gradient [n, 4h].
    fn channel_grad(&self, grad: &Tensor, c: usize) -> Result<Tensor> {
        let h = self.encoder.transformer.config.hidden_size;
        Ok(grad.narrow(1, c * h, h)?.contiguous()?)
    }

    /// Pooled vectors of one encoder call through channel `c`'s adapter, without an autograd
    /// graph; in training with `keep_activations`, also its forward pass for the backward pass.
    fn encode_call(&self, ids: &[Vec<u32>], c: usize, train: bool) -> Result<(Tensor, Option<Forward>)> {
        if train && self.keep_activations {
            let forward = self
                .encoder
                .transformer
                .forward_taped(ids, 0, Self::pass(c, train), false)?;
            let vectors = pool(&forward.hidden, &forward.mask, self.pooling)?;
            return Ok((vectors, Some(forward)));
        }
        Ok((self.encoder.embed_ids(ids, self.pooling, Self::pass(c, train))?, None))
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
        let t = &self.encoder.transformer;
        let pool = |hidden: &Tensor, mask: &Tensor| pool(hidden, mask, self.pooling);
        let g = g.to_device(t.device())?;
        match kept {
            Some(forward) => t.backward(forward, pool, &g, grads)?,
            None => t.backprop(ids, 0, Self::pass(c, true), self.checkpoint_layers, pool, &g, grads)?,
        }
        Ok(())
    }
}

impl Channels for LoraChannels {
    fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    fn encoder_mut(&mut self) -> &mut Encoder {
        &mut self.encoder
    }

    fn vectors(&self, codes: &[u32], train: bool) -> Result<(Tensor, Vec<Forward>)> {
        let mut kept = Vec::new();
        if codes.is_empty() {
            let t = &self.encoder.transformer;
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
        Ok((Tensor::cat(&columns, 1)?, kept))
    }

    fn text_vectors(&self, ids: &[Vec<u32>], train: bool) -> Result<(Tensor, Vec<Forward>)> {
        let mut kept = Vec::new();
        let per_channel = (0..CHANNELS.len())
            .map(|c| {
                let (vectors, forward) = self.encode_call(ids, c, train)?;
                kept.extend(forward);
                Ok(vectors)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((Tensor::cat(&per_channel, 1)?, kept))
    }

    fn backprop(&self, codes: &[u32], grad: &Tensor, kept: &[Forward], grads: &mut GradStore) -> Result<()> {
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

    fn backprop_texts(&self, ids: &[Vec<u32>], grad: &Tensor, kept: &[Forward], grads: &mut GradStore) -> Result<()> {
        let mut kept = kept.iter();
        for c in 0..CHANNELS.len() {
            self.backprop_call(ids, c, &self.channel_grad(grad, c)?, kept.next(), grads)?;
        }
        Ok(())
    }
}
