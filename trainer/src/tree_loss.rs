//! Distances that follow the tree. InfoNCE only orders each anchor's candidates; this term asks
//! the Lorentz distances themselves to grow with the tree distances: 1 - Pearson(Lorentz, tree)
//! over every pair of a step's distinct codes, the cophenetic correlation that `eval` reports.

use crate::tables;
use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use std::path::Path;

/// The pipeline's tree distances of all codes, dense n x n.
pub struct TreeDistances {
    n: usize,
    pub matrix: Vec<f64>,
}

impl TreeDistances {
    pub fn load(data_dir: &Path, n: usize) -> Result<Self> {
        Ok(TreeDistances {
            n,
            matrix: tables::tree_distances(data_dir, n)?,
        })
    }

    /// The [m, m] tree distances among `codes`.
    pub fn among(&self, codes: &[u32], device: &Device) -> Result<Tensor> {
        let m = codes.len();
        let values: Vec<f32> = codes
            .iter()
            .flat_map(|&i| {
                codes
                    .iter()
                    .map(move |&j| self.matrix[i as usize * self.n + j as usize] as f32)
            })
            .collect();
        Ok(Tensor::from_vec(values, (m, m), device)?)
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
    use crate::eval::metrics::pearson;

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

    #[test]
    fn among_gathers_the_submatrix() {
        let n = 3;
        let tree = TreeDistances {
            n,
            matrix: vec![0.0, 1.0, 2.0, 1.0, 0.0, 3.0, 2.0, 3.0, 0.0],
        };
        let sub = tree.among(&[2, 0], &Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(sub, vec![vec![0.0, 2.0], vec![2.0, 0.0]]);
    }
}
