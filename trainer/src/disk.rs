//! The 2-D hyperbolic picture of a trained model, shared by `eval`'s `poincare.png` and the
//! search page: tangent vectors at the origin projected on the codes' principal plane, then
//! mapped into the Poincare disk, p = tanh(sqrt(c) |v| / 2) v / (sqrt(c) |v|). A free text is
//! placed by the same map from its point's tangent vector, so it lands among its codes.

use crate::embedded::Embedded;
use crate::model::lorentz::log_map0;
use anyhow::Result;
use candle_core::{DType, Device, Tensor};

pub struct Disk {
    axes: [Vec<f64>; 2],
    sqrt_c: f64,
    /// Every code's place, in code order.
    pub codes: Vec<(f64, f64)>,
}

impl Disk {
    pub fn new(e: &Embedded) -> Result<Disk> {
        let rows: Vec<Vec<f32>> = e.tangent()?.to_vec2()?;
        let mut disk = Disk {
            axes: principal_plane(&rows)?,
            sqrt_c: e.curvature().sqrt(),
            codes: Vec::new(),
        };
        disk.codes = rows.iter().map(|r| disk.place_tangent(r)).collect();
        Ok(disk)
    }

    /// The place of a tangent vector at the origin.
    pub fn place_tangent(&self, v: &[f32]) -> (f64, f64) {
        let dot = |axis: &[f64]| v.iter().zip(axis).map(|(x, y)| *x as f64 * y).sum::<f64>();
        let (x, y) = (dot(&self.axes[0]), dot(&self.axes[1]));
        let norm = (x * x + y * y).sqrt().max(1e-12);
        let scale = (self.sqrt_c * norm / 2.0).tanh() / (self.sqrt_c * norm);
        (x * scale, y * scale)
    }

    /// The place of a point on the hyperboloid (d + 1 coordinates).
    pub fn place_point(&self, point: &[f32]) -> Result<(f64, f64)> {
        let c = self.sqrt_c * self.sqrt_c;
        let x = Tensor::from_slice(point, (1, point.len()), &Device::Cpu)?;
        let tangent = log_map0(&x, c)?.flatten_all()?.to_vec1::<f32>()?;
        Ok(self.place_tangent(&tangent))
    }
}

/// Rows a block of the covariance's sum reads.
const COVARIANCE_ROWS: usize = 4096;

/// The two leading principal directions of the rows: power iteration with deflation on their
/// covariance, formed once by one product (iterating over the rows themselves, 200 passes over
/// ICD-10-CM's 47,200 tangent vectors, took seconds of every `eval` and server start).
fn principal_plane(rows: &[Vec<f32>]) -> Result<[Vec<f64>; 2]> {
    let (n, d) = (rows.len(), rows[0].len());
    let mean: Vec<f64> = (0..d)
        .map(|k| rows.iter().map(|r| r[k] as f64).sum::<f64>() / n as f64)
        .collect();
    // Summed a block of rows at a time: the centered rows whole were 97 MB on ICD-10-CM, held
    // by the server for the search page's disk.
    let mut cov = Tensor::zeros((d, d), DType::F64, &Device::Cpu)?;
    for block in rows.chunks(COVARIANCE_ROWS) {
        let centered: Vec<f64> = block
            .iter()
            .flat_map(|r| r.iter().zip(&mean).map(|(x, m)| *x as f64 - m))
            .collect();
        let x = Tensor::from_vec(centered, (block.len(), d), &Device::Cpu)?;
        cov = (cov + x.t()?.matmul(&x)?)?;
    }
    let cov: Vec<Vec<f64>> = cov.to_vec2()?;
    let mut axes: Vec<Vec<f64>> = Vec::new();
    for a in 0..2 {
        let mut v: Vec<f64> = (0..d).map(|k| ((k * 7 + a * 3) % 11) as f64 + 1.0).collect();
        for _ in 0..100 {
            let mut next: Vec<f64> = cov
                .iter()
                .map(|row| row.iter().zip(&v).map(|(x, y)| x * y).sum())
                .collect();
            for prev in &axes {
                let dot: f64 = next.iter().zip(prev).map(|(x, y)| x * y).sum();
                next.iter_mut().zip(prev).for_each(|(n, p)| *n -= dot * p);
            }
            let norm = next.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
            v = next.into_iter().map(|x| x / norm).collect();
        }
        axes.push(v);
    }
    Ok([axes[0].clone(), axes[1].clone()])
}

#[cfg(test)]
mod tests {
    use super::principal_plane;

    /// Points spread along x, less along y, hardly along z: the plane is x then y.
    #[test]
    fn principal_plane_finds_the_widest_directions() {
        let rows: Vec<Vec<f32>> = (0..40)
            .map(|i| {
                let t = i as f32 - 20.0;
                vec![3.0 * t, (t * 0.7).sin() * 10.0, 0.01 * (i % 3) as f32]
            })
            .collect();
        let [a, b] = principal_plane(&rows).unwrap();
        assert!(a[0].abs() > 0.99, "{a:?}");
        assert!(b[1].abs() > 0.99, "{b:?}");
        let dot: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!(dot.abs() < 1e-6);
    }
}
