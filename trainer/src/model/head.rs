//! What sits on the four channel vectors: their concatenation (4h) fused by the Mixture of
//! Experts, projected to a tangent vector (d), a code's own trained offset added where the model
//! keeps one (`model.code_offsets`) or a free text's through the query map where it has one
//! (`model.query_map`), and mapped onto the hyperboloid at the origin.

use super::fusion::{Moe, MoeOutput};
use super::lorentz;
use super::query_map::QueryMap;
use crate::timing;
use candle_core::{Result, Tensor};
use candle_nn::{Linear, VarBuilder};
use naics_common::config::{LossConfig, MoeConfig};

pub struct Head {
    moe: Moe,
    project: Linear,
    /// [codes, d]: each code's offset in the tangent space (`model.code_offsets`), zero at first.
    offsets: Option<Tensor>,
    /// Free texts' map in the tangent space (`model.query_map`).
    query_map: Option<QueryMap>,
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
    /// `channels_dim` = 4 x the encoder's hidden size; `offsets`: the number of codes to keep an
    /// offset for (none: 0); `query_map`: the width of the query map's hidden layer (none: 0).
    pub fn new(
        vb: VarBuilder,
        channels_dim: usize,
        moe: &MoeConfig,
        dim: usize,
        loss: &LossConfig,
        offsets: usize,
        query_map: usize,
    ) -> Result<Self> {
        let offsets = (offsets > 0)
            .then(|| vb.get_with_hints((offsets, dim), "code_offset", candle_nn::Init::Const(0.0)))
            .transpose()?;
        let query_map = (query_map > 0)
            .then(|| QueryMap::new(vb.pp("query_map"), dim, channels_dim / 4, query_map))
            .transpose()?;
        Ok(Head {
            offsets,
            query_map,
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

    /// `channels`: [n, 4h], the channel vectors of n free texts (each in all four channels).
    pub fn forward(&self, channels: &Tensor, train: bool) -> Result<HeadOutput> {
        self.fused(channels, None, train)
    }

    /// The same for the codes `codes` (their channel vectors concatenated), their offsets added
    /// where the model keeps them.
    pub fn codes(&self, channels: &Tensor, codes: &[u32], train: bool) -> Result<HeadOutput> {
        self.fused(channels, Some(codes), train)
    }

    /// Free texts (`codes` none) or codes: the same path but for the codes' offsets and the
    /// texts' map.
    fn fused(&self, channels: &Tensor, codes: Option<&[u32]>, train: bool) -> Result<HeadOutput> {
        let moe = timing::time("moe", || self.moe.forward(channels, train))?;
        let (tangent, points) = timing::time("projection", || -> Result<_> {
            let mut tangent = super::kernels::linear(&self.project, &moe.output)?;
            match (codes, &self.offsets, &self.query_map) {
                (Some(codes), Some(offsets), _) => {
                    let rows = Tensor::from_slice(codes, codes.len(), offsets.device())?;
                    tangent = (tangent + offsets.index_select(&rows, 0)?)?;
                }
                // Unfitted (through every stage) the map is the identity and none of its
                // gradients is taken: skipping it is exact and spares each step its products.
                (None, _, Some(map)) if map.fitted()? => tangent = map.forward(&tangent, channels)?,
                _ => {}
            }
            let points = lorentz::exp_map0(&tangent, self.curvature)?;
            Ok((tangent, points))
        })?;
        Ok(HeadOutput { points, tangent, moe })
    }

    /// Free texts' tangent vectors [n, d] before the query map, for fitting it.
    pub fn text_tangents(&self, channels: &Tensor) -> Result<Tensor> {
        super::kernels::linear(&self.project, &self.moe.forward(channels, false)?.output)
    }

    /// The query map, where the model has one.
    pub fn query_map(&self) -> Option<&QueryMap> {
        self.query_map.as_ref()
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
