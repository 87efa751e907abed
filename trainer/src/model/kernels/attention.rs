//! Attention's batched products: scale A B over batches of small matrices in any strided layout
//! ([`BatchMatmul`]), and softmax(scale q kᵀ + bias) with each matrix of scores put through the
//! softmax while in cache ([`AttentionProbs`]).

use super::math::{exp, sum};
use super::widest;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, bail};
use rayon::prelude::*;

/// Where each entry of `dims` (row-major order) starts, at `strides` from `start` (stride 0
/// along broadcast dimensions).
fn offsets(start: usize, dims: &[usize], strides: &[usize]) -> Vec<usize> {
    (0..dims.iter().product())
        .map(|mut entry: usize| {
            let mut offset = start;
            for (&dim, &stride) in dims.iter().zip(strides).rev() {
                offset += (entry % dim) * stride;
                entry /= dim;
            }
            offset
        })
        .collect()
}

/// A batch of matrices as a layout stores them: where each starts, and the strides of its rows
/// and columns. Any view candle makes without copying works: transposes, and attention's heads
/// split out of each token's row.
struct Matrices<'a> {
    data: &'a [f32],
    /// The leading (batch) dimensions, and where each matrix starts.
    batch: Vec<usize>,
    starts: Vec<usize>,
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Matrices<'a> {
    fn new(storage: &'a CpuStorage, layout: &Layout) -> Result<Self> {
        let (CpuStorage::F32(data), [leading @ .., rows, cols], [lead_strides @ .., row_stride, col_stride]) =
            (storage, layout.dims(), layout.stride())
        else {
            bail!(
                "attention product: expected f32 matrices on the CPU, got {:?}",
                layout.dims()
            )
        };
        let starts = offsets(layout.start_offset(), leading, lead_strides);
        // The products below read through raw pointers: every element must be in the buffer.
        let last = rows.saturating_sub(1) * row_stride + cols.saturating_sub(1) * col_stride;
        if rows * cols > 0 && starts.iter().any(|start| start + last >= data.len()) {
            bail!("attention product: layout {layout:?} reaches past its buffer")
        }
        Ok(Matrices {
            data,
            batch: leading.to_vec(),
            starts,
            rows: *rows,
            cols: *cols,
            row_stride: *row_stride,
            col_stride: *col_stride,
        })
    }
}

/// scale A B for each pair of matrices, in parallel over the batch (one single-threaded `gemm`
/// call per pair: a library call per matrix that splits each small product across threads
/// costs more than the product at attention's sizes, 32 x 128 x 128), then `finish(pair, out)`
/// on each result while it is still in cache.
fn batch_product(
    a: &Matrices,
    b: &Matrices,
    scale: f32,
    finish: impl Fn(usize, &mut [f32]) + Sync,
) -> Result<Vec<f32>> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if b.rows != k || a.batch != b.batch {
        bail!(
            "attention product: {:?} matrices of {m} x {k} and {:?} of {} x {n} do not multiply",
            a.batch,
            b.batch,
            b.rows
        );
    }
    let mut out = vec![0f32; a.starts.len() * m * n];
    if m * n == 0 {
        return Ok(out);
    }
    out.par_chunks_mut(m * n).enumerate().for_each(|(pair, out)| {
        // SAFETY: `out` holds m x n values; a and b hold their matrices at the strides given
        // (checked in `Matrices::new`).
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                out.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.data[a.starts[pair]..].as_ptr(),
                a.col_stride as isize,
                a.row_stride as isize,
                b.data[b.starts[pair]..].as_ptr(),
                b.col_stride as isize,
                b.row_stride as isize,
                0.0,
                scale,
                false,
                false,
                false,
                gemm::Parallelism::None,
            )
        };
        finish(pair, out);
    });
    Ok(out)
}

/// The shape of A B: A's with B's column count last.
fn product_shape(a: &Layout, cols: usize) -> Shape {
    let mut dims = a.dims().to_vec();
    *dims.last_mut().expect("matrices") = cols;
    Shape::from(dims)
}

/// scale A B over batches of matrices [.., m, k] x [.., k, n]: attention's p v and its
/// gradients, operands in any layout [`Matrices`] reads.
pub struct BatchMatmul {
    pub scale: f32,
}

impl CustomOp2 for BatchMatmul {
    fn name(&self) -> &'static str {
        "batch-matmul-f32"
    }

    fn cpu_fwd(&self, a_s: &CpuStorage, a_l: &Layout, b_s: &CpuStorage, b_l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (a, b) = (Matrices::new(a_s, a_l)?, Matrices::new(b_s, b_l)?);
        let out = batch_product(&a, &b, self.scale, |_, _| {})?;
        Ok((CpuStorage::F32(out), product_shape(a_l, b.cols)))
    }
}

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
        let probs = batch_product(&q, &k, self.scale, |pair, scores| {
            widest(
                #[inline(always)]
                || {
                    for (r, row) in scores.chunks_exact_mut(width).enumerate() {
                        let start = bias_rows[pair * rows + r];
                        softmax_in_place(row, &bias[start..start + width]);
                    }
                },
            )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::max_diff;
    use candle_core::{DType, Tensor};

    /// Against candle's matmul, scaled, the operands contiguous, transposed, or heads split out
    /// of each row ([b, t, heads, d] viewed as [b, heads, t, d]), at a short and a long sequence.
    #[test]
    fn batch_matmul_matches_candle() {
        let device = candle_core::Device::Cpu;
        for (t, d) in [(3usize, 5usize), (37, 32), (141, 32)] {
            let a = Tensor::randn(0f32, 1., (2, t, 3, d), &device)
                .unwrap()
                .transpose(1, 2)
                .unwrap();
            let b = Tensor::randn(0f32, 1., (2, 3, t, d), &device).unwrap();
            let scores = a.contiguous().unwrap().matmul(&b.t().unwrap()).unwrap();
            for (x, y) in [
                (a.clone(), b.t().unwrap()),
                (scores.clone(), b.clone()),
                (scores.t().unwrap(), a.clone()),
                (scores.t().unwrap(), scores.clone()),
            ] {
                let want = (x.contiguous().unwrap().matmul(&y.contiguous().unwrap()).unwrap() * 0.5).unwrap();
                let ours = x.apply_op2_no_bwd(&y, &BatchMatmul { scale: 0.5 }).unwrap();
                assert_eq!(ours.dims(), want.dims());
                let diff = max_diff(&ours, &want);
                let scale: f32 = want.abs().unwrap().max_all().unwrap().to_scalar().unwrap();
                assert!(
                    diff <= 1e-6 * scale * t as f32,
                    "t {t}: differs by {diff} (largest {scale})"
                );
            }
        }
    }

    /// Batches that do not pair up, or matrices that do not multiply, are errors.
    #[test]
    fn batch_matmul_refuses_mismatched_shapes() {
        let device = candle_core::Device::Cpu;
        let a = Tensor::zeros((2, 3, 4, 5), DType::F32, &device).unwrap();
        for b in [(3, 2, 5, 4), (2, 3, 4, 4)] {
            let b = Tensor::zeros(b, DType::F32, &device).unwrap();
            let err = a.apply_op2_no_bwd(&b, &BatchMatmul { scale: 1.0 }).unwrap_err();
            assert!(err.to_string().contains("do not multiply"), "{err}");
        }
    }
}
