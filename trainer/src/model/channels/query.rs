//! Query channels: the codes' four channel vectors come from the frozen base, computed once and
//! cached ([`FrozenChannels`]); free text (index entries in training, queries in coding) goes
//! through one LoRA adapter set of its own (`lora.*.text.*`) over the same base, its one pooled
//! vector in all four channels. Training teaches the text side only: codes cost nothing per step,
//! and an entry is one short encoder pass, so the CPU default can afford it. Texts go through in
//! calls of similar length (`model.chunk_tokens` padded tokens at most: entries run from 3 to 60
//! tokens, and one call padded to the longest did three times the work), and training keeps
//! each call's activations for the backward pass instead of replaying it (a step's entries are a
//! few thousand tokens: tens of megabytes, for one forward pass less).
//!
//! The coder's nearest-entries signal compares texts in this adapted space too (the pooled
//! vector, normalized), so training it moves both the text's point and its nearest entries.

use super::frozen::FrozenChannels;
use super::{Channels, length_calls};
use crate::model::cache::{VectorCache, encode_sorted};
use crate::model::encoder::{Encoder, in_input_order, pool};
use crate::model::lora::Pass;
use crate::model::transformer::Forward;
use anyhow::Result;
use candle_core::Tensor;
use candle_core::backprop::GradStore;
use candle_nn::VarMap;
use indicatif::ProgressBar;
use naics_common::config::ModelConfig;
use naics_common::format::CHANNELS;
use naics_common::tokens::TokenCache;

/// The name of the text adapter set in the checkpoint's variables.
pub const TEXT_ADAPTER: &str = "text";

pub struct QueryChannels {
    /// The codes' cached channel vectors, and the encoder (with the text adapter).
    codes: FrozenChannels,
    chunk_tokens: usize,
}

impl QueryChannels {
    /// Adds the text adapter set to `encoder` (parameters in `varmap`), then the codes' frozen
    /// channels (computed without it, so the cache is frozen mode's).
    pub fn new(
        mut encoder: Encoder,
        varmap: &VarMap,
        tokens: &TokenCache,
        model: &ModelConfig,
        cache: &VectorCache,
    ) -> Result<Self> {
        encoder.add_lora(varmap, &[TEXT_ADAPTER.to_string()], &model.lora)?;
        Ok(QueryChannels {
            codes: FrozenChannels::new(encoder, tokens, model.pooling, cache)?,
            chunk_tokens: model.chunk_tokens,
        })
    }

    fn pass(train: bool) -> Pass {
        Pass {
            channel: Some(0),
            train,
        }
    }

    /// The encoder calls of texts: positions into `ids`, sorted by length.
    fn calls(&self, ids: &[Vec<u32>]) -> Vec<Vec<usize>> {
        length_calls(&ids.iter().map(Vec::len).collect::<Vec<_>>(), self.chunk_tokens)
    }

    /// The pooled vectors [n, h] of texts through the text adapter, in input order; in training
    /// also each call's forward pass, for [`Channels::backprop_texts`].
    fn encode(&self, ids: &[Vec<u32>], train: bool) -> Result<(Tensor, Vec<Forward>)> {
        let t = &self.codes.encoder.transformer;
        if ids.is_empty() {
            return Ok((
                Tensor::zeros((0, t.config.hidden_size), t.dtype(), t.device())?,
                Vec::new(),
            ));
        }
        let mut kept = Vec::new();
        let vectors = in_input_order(ids.len(), &self.calls(ids), |call| {
            let rows: Vec<Vec<u32>> = call.iter().map(|&i| ids[i].clone()).collect();
            if !train {
                return self
                    .codes
                    .encoder
                    .embed_ids(&rows, self.codes.pooling, Self::pass(false));
            }
            let forward = t.forward_taped(&rows, 0, Self::pass(true), false)?;
            let vectors = pool(&forward.hidden, &forward.mask, self.codes.pooling)?;
            kept.push(forward);
            Ok(vectors)
        })?;
        Ok((vectors, kept))
    }
}

/// One vector [n, h] in all four channels [n, 4h].
fn in_every_channel(v: Tensor) -> Result<Tensor> {
    Ok(Tensor::cat(&vec![v; CHANNELS.len()], 1)?)
}

impl Channels for QueryChannels {
    fn encoder(&self) -> &Encoder {
        &self.codes.encoder
    }

    fn encoder_mut(&mut self) -> &mut Encoder {
        &mut self.codes.encoder
    }

    fn vectors(&self, codes: &[u32], train: bool) -> Result<(Tensor, Vec<Forward>)> {
        self.codes.vectors(codes, train)
    }

    fn text_vectors(&self, ids: &[Vec<u32>], train: bool) -> Result<(Tensor, Vec<Forward>)> {
        let (v, kept) = self.encode(ids, train)?;
        Ok((in_every_channel(v)?, kept))
    }

    /// The base vector is the adapted one: the space the text adapter is trained in.
    fn text_vectors_and_base(&self, ids: &[Vec<u32>]) -> Result<(Tensor, Tensor)> {
        let v = self.encode(ids, false)?.0;
        Ok((in_every_channel(v.clone())?, v))
    }

    fn base_vectors(&self, ids: &[&[u32]], bar: &ProgressBar) -> Result<Tensor> {
        encode_sorted(
            &self.codes.encoder,
            ids,
            self.codes.pooling,
            Self::pass(false),
            bar,
            true,
        )
    }

    fn text_trains(&self) -> bool {
        true
    }

    /// The codes' vectors are the frozen base's, cached.
    fn codes_cached(&self) -> bool {
        true
    }

    /// The codes' vectors are frozen: nothing to carry.
    fn backprop(&self, _: &[u32], _: &Tensor, _: &[Forward], _: &mut GradStore) -> Result<()> {
        Ok(())
    }

    /// One encoder pass made all four channels: their gradients add up, then go back through
    /// each call's kept forward pass.
    fn backprop_texts(&self, ids: &[Vec<u32>], grad: &Tensor, kept: &[Forward], grads: &mut GradStore) -> Result<()> {
        let t = &self.codes.encoder.transformer;
        let h = t.config.hidden_size;
        let mut g = grad.narrow(1, 0, h)?;
        for c in 1..CHANNELS.len() {
            g = (g + grad.narrow(1, c * h, h)?)?;
        }
        let g = g.to_device(t.device())?;
        let pooling = self.codes.pooling;
        let calls = self.calls(ids);
        anyhow::ensure!(
            calls.len() == kept.len(),
            "the text vectors were not computed for training"
        );
        for (call, forward) in calls.iter().zip(kept) {
            let rows = Tensor::from_vec(
                call.iter().map(|&i| i as u32).collect::<Vec<_>>(),
                call.len(),
                g.device(),
            )?;
            let g = g.index_select(&rows, 0)?;
            t.backward(forward, |hidden, mask| pool(hidden, mask, pooling), &g, grads)?;
        }
        Ok(())
    }
}
