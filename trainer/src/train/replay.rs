//! The backward pass through the encoder. Channel vectors enter the loss's graph as leaves
//! ([`Replay::leaf`]); candle's autograd runs from the loss down to them, and each leaf's gradient
//! is then carried into the encoder's adapters by the channels' hand-written backward pass,
//! replaying each encoder call with the random stream restored to where its forward pass began
//! (so dropout masks repeat), or from the forward passes training kept.

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

/// A step's loss, as its backward pass takes it.
pub struct StepLoss {
    /// The terms every parameter learns from.
    pub shared: Tensor,
    /// With `loss.text_apart` (`query` mode): the query and entries terms, whose gradient
    /// reaches the texts' adapters only. The codes' points enter them as constants and the head
    /// keeps none of it: the codes' geometry stays the tree's alone, but the adapters alone
    /// carry texts to their codes less well than through the head (docs/benchmarks.md).
    pub text: Option<Tensor>,
}

impl StepLoss {
    /// The value of every term together.
    pub fn value(&self) -> Result<f32> {
        let text = match &self.text {
            Some(t) => t.to_scalar::<f32>()?,
            None => 0.0,
        };
        Ok(self.shared.to_scalar::<f32>()? + text)
    }
}

/// Gradients of the step's loss: backward through the head to the channel vectors and on, for
/// each micro-batch's encoder passes, into the encoder. The text side's own terms
/// ([`StepLoss::text`]) are differentiated apart and only their gradients at the texts' vectors
/// kept.
pub fn backward(model: &Embedder, loss: &StepLoss, replays: &[&Replay]) -> Result<GradStore> {
    let mut grads = loss.shared.backward()?;
    if let Some(text) = &loss.text {
        let text_grads = text.backward()?;
        for replay in replays {
            let leaf = replay.vectors.as_tensor();
            if let Some(g) = text_grads.get(leaf) {
                let sum = match grads.remove(leaf) {
                    Some(shared) => (shared + g)?,
                    None => g.clone(),
                };
                grads.insert(leaf, sum);
            }
        }
    }
    let end = rng::position();
    for replay in replays {
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
