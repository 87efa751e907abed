//! `--features mkl`: linear layers by one Intel MKL call.

use super::values;
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, bail};
use rayon::prelude::*;

/// `x Wᵀ + b` by one MKL call (`--features mkl`) into a buffer the bias rows fill (beta = 1).
/// candle's MKL product zero-fills its output, MKL then scales it by 0, and the bias is a pass
/// of its own: three passes over the largest activations of a layer, here one.
pub struct MklLinear;

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
    use candle_core::Tensor;

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
}
