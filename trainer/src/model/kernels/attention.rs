//! Attention's probabilities: softmax(scale q kᵀ + bias) with each matrix of scores put through
//! the softmax while in cache ([`AttentionProbs`]), on [`product`](super::product)'s batched
//! products.

use super::math::{exp, sum};
use super::product::{Matrices, batch_product, counted, offsets, product_shape};
use super::widest;
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, bail};

/// Attention's probabilities, softmax(scale q kᵀ + bias) over the last dimension, from q, kᵀ
/// and the bias broadcast to the scores' shape (padding mask and MPNet's position bias): each
/// matrix of scores goes through the softmax while in cache instead of as a tensor of its own
/// (at 32 x 128 tokens, 25 MB a layer written and read again).
pub struct AttentionProbs {
    pub scale: f32,
}

impl CustomOp3 for AttentionProbs {
    fn name(&self) -> &'static str {
        "attention-probs-f32"
    }

    fn cpu_fwd(
        &self,
        q_s: &CpuStorage,
        q_l: &Layout,
        k_s: &CpuStorage,
        k_l: &Layout,
        bias_s: &CpuStorage,
        bias_l: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (q, k) = (Matrices::new(q_s, q_l)?, Matrices::new(k_s, k_l)?);
        let shape = product_shape(q_l, k.cols);
        let (CpuStorage::F32(bias), [leading @ .., 1]) = (bias_s, bias_l.stride()) else {
            bail!("attention probabilities: expected an f32 bias with contiguous rows")
        };
        if bias_l.dims() != shape.dims() {
            bail!("attention probabilities: bias {:?} for scores {shape:?}", bias_l.dims());
        }
        let width = k.cols;
        let rows = q.rows;
        let bias_rows = offsets(bias_l.start_offset(), &shape.dims()[..shape.rank() - 1], leading);
        if bias_rows.iter().any(|&start| start + width > bias.len()) {
            bail!("attention probabilities: bias layout {bias_l:?} reaches past its buffer")
        }
        // Counted as a product, its softmax (done in cache) included.
        let probs = counted(&q, &k, || {
            batch_product(&q, &k, self.scale, |pair, scores| {
                widest(
                    #[inline(always)]
                    || {
                        for (r, row) in scores.chunks_exact_mut(width).enumerate() {
                            let start = bias_rows[pair * rows + r];
                            softmax_in_place(row, &bias[start..start + width]);
                        }
                    },
                )
            })
        })?;
        Ok((CpuStorage::F32(probs), shape))
    }
}

/// row <- softmax(row + bias).
#[inline(always)]
fn softmax_in_place(row: &mut [f32], bias: &[f32]) {
    row.iter_mut().zip(bias).for_each(|(v, &b)| *v += b);
    let max = row.iter().fold(f32::MIN, |m, &v| if v > m { v } else { m });
    row.iter_mut().for_each(|v| *v = exp(*v - max));
    let scale = 1.0
        / sum(
            row,
            row,
            #[inline(always)]
            |e, _| e,
        );
    row.iter_mut().for_each(|v| *v *= scale);
}
