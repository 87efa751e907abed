//! What sits on the four channel vectors: their concatenation (4h) fused by the Mixture of
//! Experts, projected to a tangent vector (d) and mapped onto the hyperboloid at the origin.

use super::fusion::{Moe, MoeOutput};
use super::lorentz;
use crate::timing;
use candle_core::{Result, Tensor};
use candle_nn::{Linear, VarBuilder};
use naics_common::config::{LossConfig, MoeConfig};

pub struct Head {
    moe: Moe,
    project: Linear,
    curvature: f64,
}

pub struct HeadOutput {
    /// [n, d + 1] points on the hyperboloid.
    pub points: Tensor,
    /// [n, d] the tangent vectors at the origin.
    pub tangent: Tensor,
    pub moe: MoeOutput,
}

impl Head {
    /// `channels_dim` = 4 x the encoder's hidden size.
    pub fn new(vb: VarBuilder, channels_dim: usize, moe: &MoeConfig, dim: usize, loss: &LossConfig) -> Result<Self> {
        Ok(Head {
            moe: Moe::new(
                vb.pp("moe"),
                channels_dim,
                moe.hidden,
                moe.num_experts,
                moe.top_k,
                moe.dropout as f32,
            )?,
            project: candle_nn::linear(channels_dim, dim, vb.pp("project"))?,
            curvature: loss.curvature,
        })
    }

    /// `channels`: [n, 4h], the channel vectors of n codes concatenated.
    pub fn forward(&self, channels: &Tensor, train: bool) -> Result<HeadOutput> {
        let moe = timing::time("moe", || self.moe.forward(channels, train))?;
        let (tangent, points) = timing::time("projection", || -> Result<_> {
            let tangent = super::kernels::linear(&self.project, &moe.output)?;
            let points = lorentz::exp_map0(&tangent, self.curvature)?;
            Ok((tangent, points))
        })?;
        Ok(HeadOutput { points, tangent, moe })
    }

    /// Its products [`kernels::laid_out`](super::kernels::laid_out) for a model that only
    /// infers.
    pub fn lay_out_for_inference(&mut self) -> Result<()> {
        self.moe.lay_out_for_inference()?;
        self.project = super::kernels::laid_out(&self.project)?;
        Ok(())
    }

    /// The fusion, for its routing balance between steps.
    pub fn moe(&self) -> &Moe {
        &self.moe
    }

    pub fn curvature(&self) -> f64 {
        self.curvature
    }
}
