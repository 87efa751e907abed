//! Matrix products through the `gemm` crate, along the instruction-set path [`isa`] allows.
//!
//! gemm picks its widest path (AVX-512, AVX2 + FMA, scalar) once per process, with no switch;
//! [`gemm`] here runs each of gemm's own paths (its public generic product with that path's
//! microkernels, what gemm's dispatch calls), so one machine can run, test and time every path.
//! [`Matmul`] (any f32 product on the CPU, with its backward pass) and [`BatchMatmul`] (many
//! small products in parallel) read transposed and strided views without copying them, and
//! count their floating-point operations and time (`timing::counters`) for the step's
//! accounting.

use super::{Isa, applies, isa, values, widest};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, D, Layout, Result, Shape, Tensor, bail};
use candle_nn::Linear;
use gemm::Parallelism;
use gemm_common::microkernel::{HMicroKernelFn, MicroKernelFn};
use gemm_common::simd::MixedSimd;
use rayon::prelude::*;
use std::time::Instant;

/// One of gemm's paths: its generic product with the path's SIMD type and microkernels (`N`
/// lanes per register, `MR` = `MR_DIV_N` x `N` rows per microkernel).
///
/// # Safety
/// As gemm's: `dst`, `lhs` and `rhs` hold m x n, m x k and k x n values at the strides given.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_path<
    S: MixedSimd<f32, f32, f32, f32>,
    const N: usize,
    const MR: usize,
    const NR: usize,
    const MR_DIV_N: usize,
    const H_M: usize,
    const H_N: usize,
>(
    kernels: &[[MicroKernelFn<f32>; NR]; MR_DIV_N],
    horizontal: &[[HMicroKernelFn<f32>; H_N]; H_M],
    [m, n, k]: [usize; 3],
    dst: (*mut f32, isize, isize),
    lhs: (*const f32, isize, isize),
    rhs: (*const f32, isize, isize),
    scale: f32,
    parallelism: Parallelism,
) {
    let simd = S::try_new().expect("the path is one the CPU has");
    // SAFETY: as the caller's.
    unsafe {
        gemm_common::gemm::gemm_basic_generic::<S, f32, N, MR, NR, MR_DIV_N, H_M, H_N>(
            simd,
            m,
            n,
            k,
            dst.0,
            dst.1,
            dst.2,
            false,
            lhs.0,
            lhs.1,
            lhs.2,
            rhs.0,
            rhs.1,
            rhs.2,
            0.0,
            scale,
            false,
            false,
            false,
            |a, b, c| a * b + c,
            kernels,
            horizontal,
            false,
            parallelism,
        )
    }
}

/// out (m x n, row-major) = scale A B for the matrices of `a` and `b` starting at `a_start` and
/// `b_start`, along `isa`'s path of gemm. Every value of `out` is written and none is read
/// (gemm's `read_dst` off), so it need not be initialized: zero-filling each product's buffer
/// first was a pass of its own over the encoder's largest activations.
///
/// # Safety
/// `isa` is one the CPU has; `out` has room for m x n values; a's matrix is m x k and b's k x n,
/// in their buffers (as [`Matrices::new`] checks).
#[allow(clippy::too_many_arguments)]
unsafe fn gemm(
    isa: Isa,
    [m, n, k]: [usize; 3],
    out: *mut f32,
    a: &Matrices,
    a_start: usize,
    b: &Matrices,
    b_start: usize,
    scale: f32,
    parallelism: Parallelism,
) {
    let a_ptr = a.data[a_start..].as_ptr();
    let b_ptr = b.data[b_start..].as_ptr();
    // (pointer, column stride, row stride) of C, A and B. gemm's microkernels write column-major
    // blocks, so a row-major C is computed as Cᵀ = Bᵀ Aᵀ, as gemm's own entry point does (3x
    // faster than handing the row-major C to the product).
    let (shape, dst, lhs, rhs) = if n > 1 {
        (
            [n, m, k],
            (out, n as isize, 1),
            (b_ptr, b.row_stride as isize, b.col_stride as isize),
            (a_ptr, a.row_stride as isize, a.col_stride as isize),
        )
    } else {
        (
            [m, n, k],
            (out, 1, n as isize),
            (a_ptr, a.col_stride as isize, a.row_stride as isize),
            (b_ptr, b.col_stride as isize, b.row_stride as isize),
        )
    };
    use gemm_f32::microkernel as ukr;
    // Without the `avx512` feature gemm is built without its AVX-512 path.
    let isa = if cfg!(feature = "avx512") {
        isa
    } else {
        isa.min(Isa::Avx2)
    };
    // gemm's path `$path`: its SIMD type, `$lanes` f32 lanes a register, its microkernels.
    macro_rules! path {
        ($simd:ty, $lanes:literal, $path:ident) => {
            gemm_path::<$simd, $lanes, { $lanes * ukr::$path::f32::MR_DIV_N }, _, _, _, _>(
                &ukr::$path::f32::UKR,
                &ukr::$path::f32::H_UKR,
                shape,
                dst,
                lhs,
                rhs,
                scale,
                parallelism,
            )
        };
    }
    // SAFETY (each arm): as the caller's.
    unsafe {
        match isa {
            #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
            Isa::Avx512 => path!(gemm_common::simd::V4, 16, avx512f),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => path!(gemm_common::simd::V3, 8, fma),
            _ => path!(gemm_common::simd::Scalar, 1, scalar),
        }
    }
}

/// Runs the product of `a` and `b`, adding it to the process's counters.
pub(super) fn counted<R>(a: &Matrices, b: &Matrices, product: impl FnOnce() -> R) -> R {
    let started = Instant::now();
    let out = product();
    let flops = 2 * a.starts.len() * a.rows * a.cols * b.cols;
    crate::timing::count_product(flops as u64, started.elapsed());
    out
}

/// A buffer of `len` values that `write` fills whole through the pointer it is given (a
/// [`gemm`] output), never zero-filled.
///
/// # Safety
/// `write` writes every one of the `len` values.
unsafe fn written(len: usize, write: impl FnOnce(*mut f32)) -> Vec<f32> {
    let mut out = Vec::<f32>::with_capacity(len);
    write(out.as_mut_ptr());
    // SAFETY: the caller's: all `len` values are written.
    unsafe { out.set_len(len) };
    out
}

/// Where each entry of `dims` (row-major order) starts, at `strides` from `start` (stride 0
/// along broadcast dimensions).
pub(super) fn offsets(start: usize, dims: &[usize], strides: &[usize]) -> Vec<usize> {
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
pub(super) struct Matrices<'a> {
    data: &'a [f32],
    /// The leading (batch) dimensions, and where each matrix starts.
    batch: Vec<usize>,
    starts: Vec<usize>,
    pub rows: usize,
    pub cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Matrices<'a> {
    pub fn new(storage: &'a CpuStorage, layout: &Layout) -> Result<Self> {
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
pub(super) fn batch_product(
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
    let mut out = Vec::<f32>::with_capacity(a.starts.len() * m * n);
    if m * n == 0 {
        return Ok(out);
    }
    let isa = isa();
    out.spare_capacity_mut()
        .par_chunks_mut(m * n)
        .enumerate()
        .for_each(|(pair, out)| {
            let out = out.as_mut_ptr().cast::<f32>();
            // SAFETY: `out` has room for m x n values; a and b hold their matrices at the strides
            // given (checked in `Matrices::new`) and agree in k (checked above).
            unsafe {
                gemm(
                    isa,
                    [m, n, k],
                    out,
                    a,
                    a.starts[pair],
                    b,
                    b.starts[pair],
                    scale,
                    Parallelism::None,
                )
            };
            // SAFETY: gemm wrote all m x n values.
            finish(pair, unsafe { std::slice::from_raw_parts_mut(out, m * n) });
        });
    // SAFETY: every pair's m x n values were written above.
    unsafe { out.set_len(a.starts.len() * m * n) };
    Ok(out)
}

/// A B of one pair of matrices that agree in k, on every thread of the current rayon pool.
fn single_product(a: &Matrices, b: &Matrices) -> Vec<f32> {
    let parallelism = match rayon::current_num_threads() {
        1 => Parallelism::None,
        threads => Parallelism::Rayon(threads),
    };
    // SAFETY: gemm writes all m x n values; the operands' layouts were checked by
    // `Matrices::new`, and the caller's agree in k.
    unsafe {
        written(a.rows * b.cols, |out| {
            gemm(
                isa(),
                [a.rows, b.cols, a.cols],
                out,
                a,
                a.starts[0],
                b,
                b.starts[0],
                1.0,
                parallelism,
            )
        })
    }
}

/// A B for an f32 matrix A [m, k] on the CPU (any layout [`Matrices`] reads: a narrowed view
/// too) and B [k, n] as row-major values: a table read in place from its file
/// ([`crate::model::mapped::Mapped`]), which no tensor can hold without a copy. On every thread.
pub fn times_values(a: &Tensor, b: &[f32], n: usize) -> Result<Vec<f32>> {
    let (storage, layout) = a.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        bail!("times_values: expected a matrix on the CPU")
    };
    let a = Matrices::new(cpu, layout)?;
    if a.starts.len() != 1 || a.cols * n != b.len() {
        bail!(
            "times_values: {:?} and {} values in rows of {n} do not multiply",
            layout.dims(),
            b.len()
        )
    }
    if a.rows * n == 0 || a.cols == 0 {
        return Ok(vec![0.0; a.rows * n]);
    }
    let b = Matrices {
        data: b,
        batch: Vec::new(),
        starts: vec![0],
        rows: a.cols,
        cols: n,
        row_stride: n,
        col_stride: 1,
    };
    Ok(counted(&a, &b, || single_product(&a, &b)))
}

/// The shape of A B: A's with B's column count last.
pub(super) fn product_shape(a: &Layout, cols: usize) -> Shape {
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
        let out = counted(&a, &b, || batch_product(&a, &b, self.scale, |_, _| {}))?;
        Ok((CpuStorage::F32(out), product_shape(a_l, b.cols)))
    }
}

/// A B over matrices [.., m, k] x [.., k, n] with the same leading dimensions, in any layout
/// [`Matrices`] reads, with a backward pass: what the model's products (linear layers, LoRA,
/// the fusion, the head, pairwise distances) run on the CPU in f32. One product takes every
/// thread of the current rayon pool; a batch of them runs one per thread.
pub struct Matmul;

impl CustomOp2 for Matmul {
    fn name(&self) -> &'static str {
        "matmul-f32"
    }

    fn cpu_fwd(&self, a_s: &CpuStorage, a_l: &Layout, b_s: &CpuStorage, b_l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (a, b) = (Matrices::new(a_s, a_l)?, Matrices::new(b_s, b_l)?);
        let out = counted(&a, &b, || match a.starts.len() {
            1 if b.starts.len() == 1 && b.rows == a.cols => Ok(single_product(&a, &b)),
            _ => batch_product(&a, &b, 1.0, |_, _| {}),
        })?;
        Ok((CpuStorage::F32(out), product_shape(a_l, b.cols)))
    }

    /// dA = dC Bᵀ and dB = Aᵀ dC, each only where the operand takes part in the graph (a
    /// linear layer's input is often a constant: the frozen cache's vectors).
    fn bwd(&self, a: &Tensor, b: &Tensor, _c: &Tensor, g: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad_a = a.track_op().then(|| matmul(g, &b.t()?)).transpose()?;
        let grad_b = b.track_op().then(|| matmul(&a.t()?, g)).transpose()?;
        Ok((grad_a, grad_b))
    }
}

/// A B (see [`Matmul`]); other devices and dtypes take candle's product, as does everything in
/// a build with `--features mkl` (candle's product is then MKL's).
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if applies(a) && applies(b) && !cfg!(feature = "mkl") {
        a.apply_op2(b, Matmul)
    } else {
        a.matmul(b)
    }
}

/// `x Wᵀ + b` from rows x [n, in], Wᵀ [in, out] (any layout [`Matrices`] reads) and b [out], for
/// a layer no gradient is taken through by candle (the frozen base's: its backward pass is
/// written out): the product straight into its buffer, then the bias added in place, where
/// [`linear`] zero-filled a buffer for the product and made another for the sum. The same
/// values as [`linear`]'s, to the bit (each is the product's value plus the bias).
pub struct Affine;

impl CustomOp3 for Affine {
    fn name(&self) -> &'static str {
        "affine-f32"
    }

    fn cpu_fwd(
        &self,
        x_s: &CpuStorage,
        x_l: &Layout,
        w_s: &CpuStorage,
        w_l: &Layout,
        b_s: &CpuStorage,
        b_l: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w, bias) = (Matrices::new(x_s, x_l)?, Matrices::new(w_s, w_l)?, values(b_s, b_l)?);
        if x.starts.len() != 1 || w.starts.len() != 1 || w.rows != x.cols || bias.len() != w.cols {
            bail!(
                "linear: input {:?}, weight (transposed) {:?}, bias {:?} do not fit",
                x_l.dims(),
                w_l.dims(),
                b_l.dims()
            );
        }
        let mut out = counted(&x, &w, || single_product(&x, &w));
        if !bias.is_empty() {
            out.par_chunks_mut(bias.len() * AFFINE_ROWS).for_each(|rows| {
                widest(|| {
                    for row in rows.chunks_mut(bias.len()) {
                        row.iter_mut().zip(bias).for_each(|(y, b)| *y += b);
                    }
                })
            });
        }
        Ok((CpuStorage::F32(out), product_shape(x_l, w.cols)))
    }
}

/// Rows of a product a thread adds the bias to at a time.
const AFFINE_ROWS: usize = 64;

/// `x Wᵀ + b` by [`Affine`] ([.., in] -> [.., out]), without a backward pass.
pub fn affine(layer: &Linear, bias: &Tensor, x: &Tensor) -> Result<Tensor> {
    let y = rows(x)?.apply_op3_no_bwd(&layer.weight().t()?, bias, &Affine)?;
    unrows(&y, x)
}

/// A linear layer, `x W^T + b`, as one product over all rows ([.., in] -> [.., out]),
/// differentiable: candle's `Linear` broadcasts the weight over the batch and multiplies batch
/// by batch, through candle's own product.
pub fn linear(layer: &Linear, x: &Tensor) -> Result<Tensor> {
    let y = matmul(&rows(x)?, &layer.weight().t()?)?;
    let y = match layer.bias() {
        Some(bias) => y.broadcast_add(bias)?,
        None => y,
    };
    unrows(&y, x)
}

/// `layer` with its weight [out, in] kept transposed in memory ([in, out], viewed back as
/// [out, in]), for a model that only infers: [`linear`]'s product x Wᵀ then hands gemm a matrix
/// it reads in place, where the weight as stored was copied element by strided element into
/// gemm's layout at every call (most of a server's one-query time, in the encoder's layers and
/// the fusion's experts). The encoder's products give the same values; the fusion's differ in
/// the last bits (`classify`'s confidences by 3e-6 at most on NAICS and ICD-10-CM). Training keeps the stored layout:
/// its backward pass multiplies by the weight the other way round (a NAICS stage took a
/// quarter longer so laid out). On the CPU in f32, without MKL (whose product reads the weight
/// as stored).
pub fn laid_out(layer: &Linear) -> Result<Linear> {
    let w = layer.weight();
    if !applies(w) || cfg!(feature = "mkl") {
        return Ok(layer.clone());
    }
    Ok(Linear::new(w.t()?.contiguous()?.t()?, layer.bias().cloned()))
}

/// [.., n] -> [rows, n]
pub fn rows(x: &Tensor) -> Result<Tensor> {
    x.flatten_to(x.rank().saturating_sub(2))
}

/// [rows, m] -> the leading dimensions of `like`, then m.
pub fn unrows(y: &Tensor, like: &Tensor) -> Result<Tensor> {
    let mut dims = like.dims().to_vec();
    *dims.last_mut().expect("a tensor with rows") = y.dim(D::Minus1)?;
    y.reshape(dims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::max_diff;
    use candle_core::{DType, Tensor};

    /// Against candle's matmul, A a row range of a larger matrix (as the coder's chunks of texts
    /// are), at one row and at many, and an empty B.
    #[test]
    fn times_values_matches_candle() {
        let device = candle_core::Device::Cpu;
        let a = Tensor::randn(0f32, 1., (40, 33), &device).unwrap();
        let b = Tensor::randn(0f32, 1., (33, 70), &device).unwrap();
        let values = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (start, rows) in [(0, 40), (5, 1), (7, 20)] {
            let x = a.narrow(0, start, rows).unwrap();
            let want = x.contiguous().unwrap().matmul(&b).unwrap();
            let ours = Tensor::from_vec(times_values(&x, &values, 70).unwrap(), (rows, 70), &device).unwrap();
            assert!(max_diff(&ours, &want) < 1e-4, "rows {start}..+{rows}");
        }
        assert!(times_values(&a, &values, 69).is_err());
        assert_eq!(
            times_values(&a.narrow(1, 0, 0).unwrap(), &[], 3).unwrap(),
            vec![0.0; 120]
        );
    }

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

    /// Against candle's product: plain, transposed operands (the backward's views), one row or
    /// one column, a batch, and sizes past gemm's blocking (split across threads).
    #[test]
    fn matmul_matches_candle() {
        let device = candle_core::Device::Cpu;
        let randn = |dims: &[usize]| Tensor::randn(0f32, 1., dims, &device).unwrap();
        for (m, k, n) in [(1, 7, 5), (9, 7, 1), (37, 48, 29), (300, 200, 130)] {
            let (a, b, a_t, b_t) = (randn(&[m, k]), randn(&[k, n]), randn(&[k, m]), randn(&[n, k]));
            for (x, y) in [
                (a.clone(), b.clone()),
                (a.clone(), b_t.t().unwrap()),
                (a_t.t().unwrap(), b.clone()),
                (a_t.t().unwrap(), b_t.t().unwrap()),
            ] {
                let want = x.contiguous().unwrap().matmul(&y.contiguous().unwrap()).unwrap();
                let ours = x.apply_op2(&y, Matmul).unwrap();
                assert_eq!(ours.dims(), want.dims());
                let diff = max_diff(&ours, &want);
                assert!(diff <= 1e-5 * k as f32, "{m} x {k} x {n}: differs by {diff}");
            }
        }
        let (a, b) = (randn(&[3, 2, 6, 5]), randn(&[3, 2, 5, 4]));
        assert!(max_diff(&a.apply_op2(&b, Matmul).unwrap(), &a.matmul(&b).unwrap()) <= 1e-5);
    }

    /// The backward pass gives candle's gradients, and none for an operand outside the graph.
    #[test]
    fn matmul_gradients_match_candle() {
        let device = candle_core::Device::Cpu;
        let a = candle_core::Var::randn(0f32, 1., (6, 5), &device).unwrap();
        let w = candle_core::Var::randn(0f32, 1., (4, 5), &device).unwrap();
        let c = Tensor::randn(0f32, 1., (6, 4), &device).unwrap();
        let ours = (a.apply_op2(&w.t().unwrap(), Matmul).unwrap() * &c)
            .unwrap()
            .sum_all()
            .unwrap();
        let want = (a.matmul(&w.t().unwrap()).unwrap() * &c).unwrap().sum_all().unwrap();
        let (ours, want) = (ours.backward().unwrap(), want.backward().unwrap());
        for var in [&a, &w] {
            let diff = max_diff(ours.get(var).unwrap(), want.get(var).unwrap());
            assert!(diff <= 1e-5, "gradient differs by {diff}");
        }
        let constant = Tensor::randn(0f32, 1., (6, 5), &device).unwrap();
        let grads = constant
            .apply_op2(&w.t().unwrap(), Matmul)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(grads.get(&constant).is_none() && grads.get(&w).is_some());
    }

    /// The product and its bias in place give [`Matmul`]'s product plus the bias (what
    /// [`linear`] runs without MKL) to the bit, the weight as stored or laid out, on a batch of
    /// sequences and past gemm's blocking. (With `--features mkl`, [`linear`] is MKL's product,
    /// which rounds its own way.)
    #[test]
    fn affine_equals_linear() {
        let device = candle_core::Device::Cpu;
        let randn = |dims: &[usize]| Tensor::randn(0f32, 1., dims, &device).unwrap();
        for (tokens, k, n) in [(1, 7, 5), (37, 48, 29), (300, 700, 130)] {
            let x = randn(&[3, tokens, k]);
            let layer = Linear::new(randn(&[n, k]), Some(randn(&[n])));
            for layer in [layer.clone(), laid_out(&layer).unwrap()] {
                let product = rows(&x).unwrap().apply_op2(&layer.weight().t().unwrap(), Matmul);
                let want = product.unwrap().broadcast_add(layer.bias().unwrap()).unwrap();
                let want = unrows(&want, &x).unwrap();
                let ours = affine(&layer, layer.bias().unwrap(), &x).unwrap();
                assert_eq!(ours.dims(), want.dims());
                assert_eq!(max_diff(&ours, &want), 0.0, "{tokens} x {k} x {n}");
            }
        }
        let layer = Linear::new(randn(&[4, 5]), Some(randn(&[3])));
        let err = affine(&layer, layer.bias().unwrap(), &randn(&[2, 5])).unwrap_err();
        assert!(err.to_string().contains("do not fit"), "{err}");
    }

    /// Every product adds its 2 m n k operations to the counters.
    #[test]
    fn products_are_counted() {
        let device = candle_core::Device::Cpu;
        let a = Tensor::randn(0f32, 1., (2, 3, 4), &device).unwrap();
        let b = Tensor::randn(0f32, 1., (2, 4, 5), &device).unwrap();
        let before = crate::timing::counters();
        a.apply_op2_no_bwd(&b, &Matmul).unwrap();
        a.apply_op2_no_bwd(&b, &BatchMatmul { scale: 1.0 }).unwrap();
        let spent = crate::timing::counters() - before;
        // Other tests run products at the same time: at least these two.
        assert!(spent.calls >= 2 && spent.flops >= 2 * 2 * (2 * 3 * 4 * 5), "{spent:?}");
    }
}
