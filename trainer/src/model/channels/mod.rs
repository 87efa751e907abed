//! The four channel vectors (title, description, excluded, examples) of codes, [n, 4h], and of
//! free texts (one text in all four channels). How they are made is the encoder mode, chosen once
//! when the model is built ([`crate::model::Embedder::new`]); past that, nothing asks which mode
//! it is in:
//!
//! - [`frozen::FrozenChannels`]: the base model is not trained, so every code's vectors are
//!   computed once and cached (`model::cache`); steps only gather rows.
//! - [`query::QueryChannels`]: codes as frozen channels; free text through one adapter set of its
//!   own, which training teaches on the index entries.
//! - [`lora::LoraChannels`]: each step encodes the batch's distinct codes, each channel through
//!   its own adapter set over the one shared base, and carries the loss's gradient back into the
//!   adapters through the encoder's hand-written backward pass.

pub mod frozen;
pub mod query;
pub mod lora;

use super::cache::{VectorCache, encode_sorted};
use super::encoder::Encoder;
use super::lora::Pass;
use super::transformer::Forward;
use anyhow::Result;
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use indicatif::ProgressBar;
use naics_common::config::Pooling;

/// Where channel vectors come from, and where their gradients go.
pub trait Channels: Send + Sync {
    /// The encoder underneath (its tokenizer, and the base model for baselines).
    fn encoder(&self) -> &Encoder;

    /// The same, for a model that only infers to fold its adapters in (`Embedder::build`).
    fn encoder_mut(&mut self) -> &mut Encoder;

    /// The channel vectors [n, 4h] of `codes` and, where training keeps activations, each
    /// encoder call's forward pass for [`Channels::backprop`].
    fn vectors(&self, codes: &[u32], train: bool) -> Result<(Tensor, Vec<Forward>)>;

    /// Channel vectors [n, 4h] of free texts, each text in all four channels (a query has one
    /// text); what training keeps as in [`Channels::vectors`].
    fn text_vectors(&self, ids: &[Vec<u32>], train: bool) -> Result<(Tensor, Vec<Forward>)>;

    /// For coding: [`Channels::text_vectors`] of free texts, and their base vectors [n, h]
    /// (mean-pooled, unadapted: the space sentence-transformers compares sentences in). Frozen
    /// channels get both from one encoder pass.
    fn text_vectors_and_base(&self, ids: &[Vec<u32>]) -> Result<(Tensor, Tensor)> {
        let channels = self.text_vectors(ids, false)?.0;
        let base = self.encoder().embed_ids(ids, Pooling::Mean, Pass::default())?;
        Ok((channels, base))
    }

    /// [`Channels::text_vectors_and_base`]'s base vectors of many texts [n, h], unnormalized,
    /// sorted by length into calls (`bar` counts them): the coder's table of entries.
    fn base_vectors(&self, ids: &[&[u32]], bar: &ProgressBar) -> Result<Tensor> {
        encode_sorted(self.encoder(), ids, Pooling::Mean, Pass::default(), bar, true)
    }

    /// Whether the codes' vectors are computed once and kept (then more codes cost a step
    /// nothing to encode).
    fn codes_cached(&self) -> bool {
        false
    }

    /// Whether training changes the base vectors of free texts (then a table of them belongs to
    /// a checkpoint, not to the base model).
    fn text_trains(&self) -> bool {
        false
    }

    /// The pooled base vectors [m, h] of a fixed set of texts (training's index entries) where
    /// training does not change them: computed once and cached as `name`. None where it does
    /// (the default: adapters that change with every step); those texts go through
    /// [`Channels::text_vectors`] each time.
    fn fixed_texts(&self, _name: &str, _ids: &[Vec<u32>], _cache: &VectorCache) -> Result<Option<Tensor>> {
        Ok(None)
    }

    /// `vectors` as an input of the loss's graph: in training that moves the encoder, a leaf
    /// whose gradient [`Channels::backprop`] takes on into the encoder (returned too); else the
    /// tensor itself.
    fn leaf(&self, vectors: Tensor, train: bool) -> Result<(Tensor, Option<Var>)> {
        if !train {
            return Ok((vectors, None));
        }
        let var = Var::from_tensor(&vectors)?;
        Ok((var.as_tensor().clone(), Some(var)))
    }

    /// Adds d(sum(vectors * grad))/d(parameters) to `grads`, `grad` being dL/d(vectors) of
    /// `vectors(codes, true)`, through the `kept` forward passes of its calls or by replaying them
    /// (the caller restores the random stream to where that pass began, so dropout repeats).
    fn backprop(&self, codes: &[u32], grad: &Tensor, kept: &[Forward], grads: &mut GradStore) -> Result<()>;

    /// [`Channels::backprop`] for `text_vectors(ids, true)`.
    fn backprop_texts(&self, ids: &[Vec<u32>], grad: &Tensor, kept: &[Forward], grads: &mut GradStore) -> Result<()>;
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
