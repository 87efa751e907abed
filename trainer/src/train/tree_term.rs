//! The tree term of the loss: 1 - Pearson correlation between the Lorentz distances among a
//! step's distinct codes and their tree distances, over every pair.
//!
//! Written twice. [`correlation_loss`] over [`lorentz::pairwise`] composes candle ops, and
//! candle's autograd differentiates it: a dozen element-wise ops over the [m, m] matrix of pairs
//! (m is about 1,400 codes in a NAICS step), each of whose gradients candle adds into a
//! zero-filled buffer of its own, several times the forward pass's cost (docs/benchmarks.md).
//! [`tree_term`] computes the value and its gradient at the points together, by hand: one
//! product for the inner products, three passes over the pairs, one product back to the points.
//! Training runs it on the CPU in f32; the tests check it against the composed one.

use crate::model::kernels::{applies, matmul};
use crate::model::lorentz;
use anyhow::Result;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

/// 1 - Pearson(d, `tree`) over the off-diagonal pairs, d the [m, m] Lorentz distances among
/// `points` [m, d + 1] at curvature `c` (the value of [`correlation_loss`] over
/// [`lorentz::pairwise`]), with its gradient at `points`.
///
/// With e and t the centered distances and tree distances, S = sqrt(|e|² |t|² + 1e-12) and
/// cov = e · t, the loss is 1 - cov / S, and its derivative at pair (i, j) is
/// -t_ij / S + cov |t|² e_ij / S³ (the centering adds nothing: e and t sum to 0). The distance
/// is acosh(1 + w) / sqrt(c) of w = -c <p_i, p_j>_L - 1, whose derivative at the inner product
/// is -sqrt(c) / sqrt(w (w + 2)) (0 where w is clamped, as candle's clamp makes it). With G those
/// products, the gradient at the points is (G + Gᵀ) P with P's time column negated.
pub fn tree_term(points: &Tensor, tree: &Tensor, c: f64) -> Result<Tensor> {
    let m = points.dim(0)?;
    if !applies(points) || m < 3 {
        return correlation_loss(&lorentz::pairwise(points, points, c)?, tree);
    }
    let p = points.detach();
    let dim = p.dim(1)?;
    let flipped = Tensor::cat(&[&p.narrow(1, 0, 1)?.neg()?, &p.narrow(1, 1, dim - 1)?], 1)?;
    let inner = matmul(&flipped, &p.t()?)?.flatten_all()?.to_vec1::<f32>()?;
    let tree = tree.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let (c32, root_c) = (c as f32, c.sqrt() as f32);

    // First pass: each pair's distance (in place of its inner product) and the distance's
    // derivative at the inner product; each row's sums for the means. Rows' sums are added in
    // row order, so the value is the same on any number of threads.
    let mut distance = inner;
    let mut slope = vec![0f32; m * m];
    let rows: Vec<[f64; 2]> = distance
        .par_chunks_mut(m)
        .zip(slope.par_chunks_mut(m))
        .zip(tree.par_chunks(m))
        .enumerate()
        .map(|(i, ((d_row, s_row), t_row))| {
            let mut sums = [0f64; 2];
            for (j, ((d, s), &t)) in d_row.iter_mut().zip(s_row.iter_mut()).zip(t_row).enumerate() {
                let w = -c32 * *d - 1.0;
                let clamped = w.max(1e-12);
                let root = (clamped * (clamped + 2.0)).sqrt();
                *d = (clamped + 1.0 + root).ln() / root_c;
                *s = if w >= 1e-12 { -root_c / root } else { 0.0 };
                if i != j {
                    sums[0] += *d as f64;
                    sums[1] += t as f64;
                }
            }
            sums
        })
        .collect();
    let sums = rows.iter().fold([0.0; 2], |a, b| [a[0] + b[0], a[1] + b[1]]);
    let count = (m * (m - 1)) as f64;
    let (mean_d, mean_t) = ((sums[0] / count) as f32, (sums[1] / count) as f32);
    let off_diagonal = |i: usize, j: usize, x: f32| if i == j { 0.0 } else { x };
    // Second pass: the moments of the centered values.
    let rows: Vec<[f64; 3]> = distance
        .par_chunks(m)
        .zip(tree.par_chunks(m))
        .enumerate()
        .map(|(i, (d_row, t_row))| {
            let mut sums = [0f64; 3];
            for (j, (&d, &t)) in d_row.iter().zip(t_row).enumerate() {
                let (e, t) = (
                    off_diagonal(i, j, d - mean_d) as f64,
                    off_diagonal(i, j, t - mean_t) as f64,
                );
                sums[0] += e * t;
                sums[1] += e * e;
                sums[2] += t * t;
            }
            sums
        })
        .collect();
    let [cov, var_e, var_t] = rows
        .iter()
        .fold([0.0; 3], |a, b| [a[0] + b[0], a[1] + b[1], a[2] + b[2]]);
    let scale = (var_e * var_t + 1e-12).sqrt();
    let value = 1.0 - cov / scale;

    // Third pass: G, the loss's derivative at each inner product (in place of the slope).
    let (over_s, over_s3) = ((1.0 / scale) as f32, (cov * var_t / scale.powi(3)) as f32);
    let mut g = slope;
    g.par_chunks_mut(m)
        .zip(distance.par_chunks(m).zip(tree.par_chunks(m)))
        .enumerate()
        .for_each(|(i, (g_row, (d_row, t_row)))| {
            for (j, ((g, &d), &t)) in g_row.iter_mut().zip(d_row).zip(t_row).enumerate() {
                let at_distance = -(t - mean_t) * over_s + (d - mean_d) * over_s3;
                *g = off_diagonal(i, j, at_distance * *g);
            }
        });
    let g = Tensor::from_vec(g, (m, m), p.device())?;
    let grad = matmul(&(&g + g.t()?)?, &flipped)?;
    Ok(points.apply_op1(KnownGradient {
        value: value as f32,
        grad,
    })?)
}

/// A scalar function of its input whose value and gradient were computed together: the op's
/// forward pass returns the value, its backward pass the gradient (times the output's).
struct KnownGradient {
    value: f32,
    grad: Tensor,
}

impl CustomOp1 for KnownGradient {
    fn name(&self) -> &'static str {
        "known-gradient"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        Ok((CpuStorage::F32(vec![self.value]), Shape::from(())))
    }

    fn bwd(&self, _: &Tensor, _: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(self.grad.broadcast_mul(grad)?))
    }
}

/// 1 - Pearson correlation between two [m, m] distance matrices over their off-diagonal entries
/// (both symmetric, so each pair counts twice, which leaves the correlation unchanged).
/// 0 when fewer than 3 points: there is no correlation to measure.
pub fn correlation_loss(embedded: &Tensor, tree: &Tensor) -> Result<Tensor> {
    let m = embedded.dim(0)?;
    let device = embedded.device();
    if m < 3 {
        return Ok(Tensor::zeros((), DType::F32, device)?);
    }
    let mask = (Tensor::ones((m, m), DType::F32, device)? - Tensor::eye(m, DType::F32, device)?)?;
    let count = (m * (m - 1)) as f64;
    let centered = |x: &Tensor| -> Result<Tensor> {
        let mean = ((x * &mask)?.sum_all()? / count)?;
        Ok((x.broadcast_sub(&mean)? * &mask)?)
    };
    let (e, t) = (centered(embedded)?, centered(tree)?);
    let cov = (&e * &t)?.sum_all()?;
    let var = ((e.sqr()?.sum_all()? * t.sqr()?.sum_all()?)? + 1e-12)?;
    Ok((cov / var.sqrt()?)?.neg()?.affine(1.0, 1.0)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::pearson;
    use crate::model::max_diff;
    use candle_core::{Device, Var};

    fn symmetric(values: &[f64], m: usize) -> Vec<f64> {
        let mut out = vec![0.0; m * m];
        let mut k = 0;
        for i in 0..m {
            for j in (i + 1)..m {
                out[i * m + j] = values[k];
                out[j * m + i] = values[k];
                k += 1;
            }
        }
        out
    }

    fn tensor(v: &[f64], m: usize) -> Tensor {
        Tensor::from_vec(v.iter().map(|&x| x as f32).collect::<Vec<_>>(), (m, m), &Device::Cpu).unwrap()
    }

    #[test]
    fn equals_one_minus_pearson_over_pairs() {
        let m = 4;
        let d = [0.3, 1.2, 2.5, 0.9, 2.2, 1.7];
        let t = [0.5, 2.0, 10.0, 2.0, 10.0, 10.0];
        let loss = correlation_loss(&tensor(&symmetric(&d, m), m), &tensor(&symmetric(&t, m), m))
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64;
        assert!((loss - (1.0 - pearson(&d, &t))).abs() < 1e-5, "{loss}");
    }

    #[test]
    fn zero_for_distances_proportional_to_the_tree() {
        let m = 4;
        let t = [0.5, 2.0, 10.0, 2.0, 10.0, 10.0];
        let d: Vec<f64> = t.iter().map(|x| 0.3 * x + 0.1).collect();
        let loss = correlation_loss(&tensor(&symmetric(&d, m), m), &tensor(&symmetric(&t, m), m))
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(loss.abs() < 1e-5, "{loss}");
    }

    /// The value and gradient by hand equal the composed ops' under candle's autograd, on
    /// random points of the hyperboloid and a random symmetric tree.
    #[test]
    fn by_hand_equals_the_composed_term() {
        let device = Device::Cpu;
        let (m, c) = (37, 1.0);
        let tangent = (Tensor::randn(0f32, 1., (m, 8), &device).unwrap() * 0.7).unwrap();
        let points = Var::from_tensor(&lorentz::exp_map0(&tangent, c).unwrap()).unwrap();
        let levels: Vec<f64> = (0..m * (m - 1) / 2).map(|k| ((k * 7919) % 5) as f64 * 2.0).collect();
        let tree = tensor(&symmetric(&levels, m), m);
        let composed = correlation_loss(&lorentz::pairwise(&points, &points, c).unwrap(), &tree).unwrap();
        let by_hand = tree_term(&points, &tree, c).unwrap();
        let (want, got) = (
            composed.to_scalar::<f32>().unwrap(),
            by_hand.to_scalar::<f32>().unwrap(),
        );
        assert!((want - got).abs() < 1e-5, "{got} vs {want}");
        assert!(want > 0.05, "a loss away from its minimum: {want}");
        let want = composed.backward().unwrap().get(&points).unwrap().clone();
        let got = by_hand.backward().unwrap().get(&points).unwrap().clone();
        let size = want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(
            max_diff(&got, &want) < 1e-4 * size,
            "gradient off by {}",
            max_diff(&got, &want)
        );
        // Fewer than three points: no correlation, and no gradient to give.
        let two = tree_term(
            &points.narrow(0, 0, 2).unwrap(),
            &tree.narrow(0, 0, 2).unwrap().narrow(1, 0, 2).unwrap(),
            c,
        );
        assert_eq!(two.unwrap().to_scalar::<f32>().unwrap(), 0.0);
    }
}
