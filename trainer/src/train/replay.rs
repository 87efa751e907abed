//! The backward pass through the encoder. Channel vectors enter the loss's graph as leaves
//! ([`Replay::leaf`]); candle's autograd runs from the loss down to them, and each leaf's gradient
//! is then carried into the encoder's adapters by the channels' hand-written backward pass,
//! replaying each encoder call with the random stream restored to where its forward pass began
//! (so dropout masks repeat), or from the forward passes training kept.

use super::loss::BatchLoss;
use crate::model::Embedder;
use crate::model::channels::Channels;
use crate::model::rng;
use crate::model::transformer::Forward;
use anyhow::Result;
use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};

/// An encoder pass of a micro-batch whose gradient goes on into the encoder: what it encoded,
/// its channel vectors (computed without a graph) as a leaf of the loss's graph, and where the
/// random stream stood when it began.
pub struct Replay {
    encoded: Encoded,
    vectors: Var,
    rng: ([u8; 32], u128),
    /// The encoder calls' forward passes (`model.keep_activations`); none: replay them.
    kept: Vec<Forward>,
}

pub enum Encoded {
    Codes(Vec<u32>),
    /// Free texts (index entries), each in all four channels.
    Texts(Vec<Vec<u32>>),
}

impl Replay {
    /// `vectors` as an input of the loss's graph, and its replay where the channels train (none
    /// otherwise: nothing to replay).
    pub fn leaf(
        channels: &dyn Channels,
        train: bool,
        (vectors, kept): (Tensor, Vec<Forward>),
        encoded: Encoded,
        rng: ([u8; 32], u128),
    ) -> Result<(Tensor, Option<Replay>)> {
        let (input, leaf) = channels.leaf(vectors.to_dtype(DType::F32)?, train)?;
        let replay = leaf.map(|vectors| Replay {
            encoded,
            vectors,
            rng,
            kept,
        });
        Ok((input, replay))
    }
}

/// Gradients of the step's loss: backward through the head to the channel vectors and on, for
/// each micro-batch's encoder passes, into the encoder.
pub fn backward(model: &Embedder, loss: &Tensor, parts: &[BatchLoss]) -> Result<GradStore> {
    let mut grads = loss.backward()?;
    let end = rng::position();
    for replay in parts.iter().flat_map(|p| &p.replays) {
        let Some(grad) = grads.remove(replay.vectors.as_tensor()) else {
            continue;
        };
        rng::restore(replay.rng.0, replay.rng.1);
        let channels = &model.channels;
        match &replay.encoded {
            Encoded::Codes(codes) => channels.backprop(codes, &grad, &replay.kept, &mut grads)?,
            Encoded::Texts(ids) => channels.backprop_texts(ids, &grad, &replay.kept, &mut grads)?,
        }
    }
    rng::restore(end.0, end.1);
    Ok(grads)
}
