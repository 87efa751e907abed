//! Element-wise kernels: GELU and its gradient, and the LayerNorm and softmax input gradients,
//! each one pass over memory on all threads, vectorized by [`widest`].

use super::math::{cdf, exp, sum};
use super::{values, widest};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, bail};
use rayon::prelude::*;
use std::f32::consts::PI;

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
