//! f32 CPU kernels for the encoder's element-wise work (GELU, its gradient, the softmax's and
//! LayerNorm's gradients) and attention's batched products (the softmax with attention's bias
//! applied to each matrix of scores as it comes out of its product).
//!
//! candle runs the element-wise work as chains of ops, each a pass over memory with a fresh
//! buffer, and calls libm's scalar `exp` and `erf` per element (its softmax and the GELU gradient
//! took a fifth of a forward + backward pass). Here each is one pass on all threads, and `exp` and
//! `erf` are branch-free polynomial approximations the compiler vectorizes. Other devices and
//! dtypes use candle's ops (`model::frozen` dispatches).

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Device, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;
use std::f32::consts::{FRAC_1_SQRT_2, LOG2_E, PI};

/// Whether `x` takes these kernels: an f32 tensor on the CPU.
pub fn applies(x: &Tensor) -> bool {
    matches!(x.device(), Device::Cpu) && x.dtype() == DType::F32
}

/// e^x within 2 ulp (Cephes' expf: x = n ln 2 + r, e^r by a degree-6 polynomial, 2^n by the
/// exponent bits); 0 below -87.3, where e^x leaves the normal f32 range.
#[inline(always)]
#[allow(clippy::manual_clamp)] // `clamp` keeps NaN; `max` and `min` take it to a bound
pub fn exp(x: f32) -> f32 {
    // `max` and `min` take NaN to a bound, so that the cast below is always defined; NaN comes
    // back out at the end.
    let clamped = x.max(-87.3).min(88.3);
    let nf = (clamped * LOG2_E + 0.5).floor();
    // SAFETY: |nf| < 128 after the clamp, in i32's range.
    let n = unsafe { nf.to_int_unchecked::<i32>() };
    // ln 2 in two parts, so that r keeps its low bits.
    let r = clamped - nf * 0.693_359_4 + nf * 2.121_944_4e-4;
    let p = [
        1.987_569_1e-4,
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        0.166_666_65,
        0.5,
    ]
    .iter()
    .fold(0.0, |acc, c| acc * r + c);
    let y = p * r * r + r + 1.0;
    // Wrapping: the tests' build checks overflow, and a check would stop vectorizing.
    let scale = f32::from_bits((n.wrapping_add(127) << 23) as u32);
    if x < -87.3 {
        0.0
    } else if x.is_nan() {
        x
    } else {
        y * scale
    }
}

/// Σ f(a_i, b_i) in 16 interleaved partial sums (one running sum would serialize on the adder).
#[inline(always)]
fn sum(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0f32; LANES];
    let (a_lanes, b_lanes) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a_lanes
        .remainder()
        .iter()
        .zip(b_lanes.remainder())
        .map(|(&a, &b)| f(a, b))
        .sum();
    for (a, b) in a_lanes.zip(b_lanes) {
        for i in 0..LANES {
            acc[i] += f(a[i], b[i]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// erf(x): odd rational function of x on [-4, 4] (Eigen's, error about 1e-7; erf is ±1 in f32
/// beyond).
#[allow(clippy::excessive_precision)] // Eigen's coefficients as published
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = [
        -2.726_142_2e-10,
        2.770_681_4e-8,
        -2.101_024e-6,
        -5.692_506_4e-5,
        -7.349_906_3e-4,
        -2.954_599_8e-3,
        -1.609_603_3e-2,
    ]
    .iter()
    .fold(0.0, |acc, c| acc * x2 + c);
    let q = [
        -1.456_607_2e-5,
        -2.133_740_6e-4,
        -1.682_827e-3,
        -7.373_329e-3,
        -1.426_474e-2,
    ]
    .iter()
    .fold(0.0, |acc, c| acc * x2 + c);
    x * p / q
}

/// Φ(x), the standard normal CDF.
#[inline(always)]
fn cdf(x: f32) -> f32 {
    0.5 * (1.0 + erf(x * FRAC_1_SQRT_2))
}

/// The contiguous f32 values of a storage (the callers make their operands contiguous).
fn values<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(data), Some((start, end))) => Ok(&data[start..end]),
        _ => bail!("expected a contiguous f32 tensor on the CPU"),
    }
}

/// Runs `f` compiled for the widest vector unit of this CPU (AVX-512, AVX2 + FMA, else the
/// SSE2 baseline the crate is built for); `f` and what it calls are inlined into each version.
#[inline(always)]
pub fn widest<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx2,fma")]
        fn avx512<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        #[target_feature(enable = "avx2,fma")]
        fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the features (checked just above).
            return unsafe { avx512(f) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: as above.
            return unsafe { avx2(f) };
        }
    }
    f()
}

/// out_i = f(a_i, b_i).
#[inline(always)]
fn map(out: &mut [f32], a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) {
    for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
        *o = f(a, b);
    }
}

/// `f` over aligned elements of `a` and `b`, in parallel: [`zip_rows`] over rows of 16K.
#[allow(clippy::redundant_closure)] // the closure calls `f` itself; `&f` would not inline
fn zip_map(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    // The closures are all marked to inline: each level's code lands in `widest`'s vectorized
    // versions (a call through `&F`, say, would stay a call per element).
    zip_rows(
        a,
        b,
        16 * 1024,
        #[inline(always)]
        |_, out, a, b| {
            map(
                out,
                a,
                b,
                #[inline(always)]
                |a, b| f(a, b),
            )
        },
    )
}

/// `f(row, out_row, a_row, b_row)` over aligned rows of `width` elements, in parallel.
fn zip_rows(a: &[f32], b: &[f32], width: usize, f: impl Fn(usize, &mut [f32], &[f32], &[f32]) + Sync) -> Vec<f32> {
    let width = width.max(1);
    let task_rows = (16 * 1024 / width).max(1);
    let chunk = task_rows * width;
    let mut out = vec![0f32; a.len()];
    out.par_chunks_mut(chunk)
        .zip(a.par_chunks(chunk).zip(b.par_chunks(chunk)))
        .enumerate()
        .for_each(|(task, (out, (a, b)))| {
            widest(
                #[inline(always)]
                || {
                    let rows = out.chunks_mut(width).zip(a.chunks(width)).zip(b.chunks(width));
                    for (i, ((out, a), b)) in rows.enumerate() {
                        f(task * task_rows + i, out, a, b);
                    }
                },
            )
        });
    out
}

/// x Φ(x).
pub struct Gelu;

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "gelu-erf-f32"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = values(storage, layout)?;
        Ok((
            CpuStorage::F32(zip_map(
                x,
                x,
                #[inline(always)]
                |x, _| x * cdf(x),
            )),
            layout.shape().clone(),
        ))
    }
}

/// (x, g) -> g (Φ(x) + x φ(x)).
pub struct GeluGrad;

impl CustomOp2 for GeluGrad {
    fn name(&self) -> &'static str {
        "gelu-erf-f32-grad"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, gs: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
        let inv_sqrt_2pi = 1.0 / (2.0 * PI).sqrt();
        let grads = zip_map(
            values(xs, xl)?,
            values(gs, gl)?,
            #[inline(always)]
            move |x, g| g * (cdf(x) + x * exp(-0.5 * x * x) * inv_sqrt_2pi),
        );
        Ok((CpuStorage::F32(grads), xl.shape().clone()))
    }
}

/// LayerNorm's input gradient from its input x and the output's gradient g (γ and ε its own):
/// with x̂ the normalized row, σ its standard deviation and h = g γ,
/// (h - mean(h) - x̂ mean(h x̂)) / σ.
pub struct LayerNormGrad {
    pub gamma: Vec<f32>,
    pub eps: f32,
}

impl CustomOp2 for LayerNormGrad {
    fn name(&self) -> &'static str {
        "layer-norm-f32-grad"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, gs: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
        let width = self.gamma.len();
        if xl.dims().last() != Some(&width) {
            bail!("layer norm gradient: rows of {:?} for a norm over {width}", xl.dims());
        }
        let (gamma, eps, n) = (&self.gamma[..], self.eps, width as f32);
        let grads = zip_rows(
            values(xs, xl)?,
            values(gs, gl)?,
            width,
            #[inline(always)]
            |_, out, x, g| {
                let mean = sum(
                    x,
                    x,
                    #[inline(always)]
                    |x, _| x,
                ) / n;
                let var = sum(
                    x,
                    x,
                    #[inline(always)]
                    move |x, _| (x - mean) * (x - mean),
                ) / n;
                let inv_sigma = 1.0 / (var + eps).sqrt();
                // out holds h = g γ first.
                map(
                    out,
                    g,
                    gamma,
                    #[inline(always)]
                    |g, gamma| g * gamma,
                );
                let mean_h = sum(
                    out,
                    out,
                    #[inline(always)]
                    |h, _| h,
                ) / n;
                let mean_hx = sum(
                    out,
                    x,
                    #[inline(always)]
                    move |h, x| h * (x - mean) * inv_sigma,
                ) / n;
                for (o, &x) in out.iter_mut().zip(x) {
                    *o = (*o - mean_h - (x - mean) * inv_sigma * mean_hx) * inv_sigma;
                }
            },
        );
        Ok((CpuStorage::F32(grads), xl.shape().clone()))
    }
}

/// The softmax's input gradient from its output p and the output's gradient g: p (g - sum(g p)).
pub struct SoftmaxGrad;

impl CustomOp2 for SoftmaxGrad {
    fn name(&self) -> &'static str {
        "softmax-last-dim-f32-grad"
    }

    fn cpu_fwd(&self, ps: &CpuStorage, pl: &Layout, gs: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
        let width = pl.shape().dims().last().copied().unwrap_or(1);
        let grads = zip_rows(
            values(ps, pl)?,
            values(gs, gl)?,
            width,
            #[inline(always)]
            |_, out, p, g| {
                let dot = sum(
                    p,
                    g,
                    #[inline(always)]
                    |p, g| p * g,
                );
                map(
                    out,
                    p,
                    g,
                    #[inline(always)]
                    move |p, g| p * (g - dot),
                );
            },
        );
        Ok((CpuStorage::F32(grads), pl.shape().clone()))
    }
}

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

/// `x Wᵀ + b` by one MKL call (`--features mkl`) into a buffer the bias rows fill (beta = 1).
/// candle's MKL product zero-fills its output, MKL then scales it by 0, and the bias is a pass
/// of its own: three passes over the largest activations of a layer, here one.
#[cfg(feature = "mkl")]
pub struct MklLinear;

#[cfg(feature = "mkl")]
unsafe extern "C" {
    /// BLAS's column-major product (MKL, linked by candle's `mkl` feature).
    fn sgemm_(
        transa: *const u8,
        transb: *const u8,
        m: *const i32,
        n: *const i32,
        k: *const i32,
        alpha: *const f32,
        a: *const f32,
        lda: *const i32,
        b: *const f32,
        ldb: *const i32,
        beta: *const f32,
        c: *mut f32,
        ldc: *const i32,
    );
}

#[cfg(feature = "mkl")]
impl CustomOp3 for MklLinear {
    fn name(&self) -> &'static str {
        "mkl-linear-f32"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w, bias) = (values(xs, xl)?, values(ws, wl)?, values(bs, bl)?);
        let (&[o, k], Some(&width)) = (wl.dims(), xl.dims().last()) else {
            bail!("linear: a weight [out, in] expected, got {:?}", wl.dims())
        };
        if width != k || bias.len() != o || k == 0 || o == 0 {
            bail!(
                "linear: input {:?}, weight {:?}, bias {:?}",
                xl.dims(),
                wl.dims(),
                bl.dims()
            );
        }
        let n = x.len() / k;
        let mut out = Vec::<f32>::with_capacity(n * o);
        out.spare_capacity_mut().par_chunks_mut(o).for_each(|row| {
            for (r, &b) in row.iter_mut().zip(bias) {
                r.write(b);
            }
        });
        // SAFETY: every one of the n * o entries was just written.
        unsafe { out.set_len(n * o) };
        // Row-major C = X Wᵀ is column-major Cᵀ = W Xᵀ: W's buffer read transposed, X's as is.
        let (m, n, k) = (o as i32, n as i32, k as i32);
        // SAFETY: the buffers hold o x k, n x k and n x o values, as the dimensions passed say.
        unsafe {
            sgemm_(
                b"T".as_ptr(),
                b"N".as_ptr(),
                &m,
                &n,
                &k,
                &1.0,
                w.as_ptr(),
                &k,
                x.as_ptr(),
                &k,
                &1.0,
                out.as_mut_ptr(),
                &m,
            );
        }
        let mut dims = xl.dims().to_vec();
        *dims.last_mut().expect("a row") = o;
        Ok((CpuStorage::F32(out), Shape::from(dims)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::max_diff;

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

    #[cfg(feature = "mkl")]
    #[test]
    fn mkl_linear_matches_candle() {
        let device = candle_core::Device::Cpu;
        let x = Tensor::randn(0f32, 1., (2, 7, 5), &device).unwrap();
        let w = Tensor::randn(0f32, 1., (3, 5), &device).unwrap();
        let b = Tensor::randn(0f32, 1., 3, &device).unwrap();
        let want = x.broadcast_matmul(&w.t().unwrap()).unwrap().broadcast_add(&b).unwrap();
        let ours = x.apply_op3_no_bwd(&w, &b, &MklLinear).unwrap();
        let diff = max_diff(&ours, &want);
        assert!(diff < 1e-5, "differs by {diff}");
    }

    #[test]
    fn exp_is_within_two_ulp_of_libm() {
        for i in -87_000..=88_000 {
            let x = i as f32 / 1000.0 + 0.000_37;
            let (ours, want) = (exp(x), x.exp());
            assert!(
                (ours - want).abs() <= 2.0 * f32::EPSILON * want,
                "exp({x}): {ours} vs {want}"
            );
        }
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(f32::MIN), 0.0);
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(f32::INFINITY), exp(88.3));
    }
}
