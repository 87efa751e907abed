//! The two pictures of `eval`: the codes in the Poincare disk, and tree against embedding distance.

use crate::embedded::Embedded;
use crate::plots::{Series, chart};
use anyhow::Result;
use plotters::style::{Color, Palette, Palette99, RGBColor};
use std::path::Path;

/// The two leading principal directions of the tangent vectors (power iteration with deflation).
fn principal_plane(rows: &[Vec<f32>]) -> [Vec<f64>; 2] {
    let d = rows[0].len();
    let mean: Vec<f64> = (0..d)
        .map(|k| rows.iter().map(|r| r[k] as f64).sum::<f64>() / rows.len() as f64)
        .collect();
    let centered: Vec<Vec<f64>> = rows
        .iter()
        .map(|r| r.iter().zip(&mean).map(|(x, m)| *x as f64 - m).collect())
        .collect();
    let mut axes: Vec<Vec<f64>> = Vec::new();
    for a in 0..2 {
        let mut v: Vec<f64> = (0..d).map(|k| ((k * 7 + a * 3) % 11) as f64 + 1.0).collect();
        for _ in 0..100 {
            let mut next = vec![0.0; d];
            for r in &centered {
                let dot: f64 = r.iter().zip(&v).map(|(x, y)| x * y).sum();
                next.iter_mut().zip(r).for_each(|(n, x)| *n += dot * x);
            }
            for prev in &axes {
                let dot: f64 = next.iter().zip(prev).map(|(x, y)| x * y).sum();
                next.iter_mut().zip(prev).for_each(|(n, p)| *n -= dot * p);
            }
            let norm = next.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
            v = next.into_iter().map(|x| x / norm).collect();
        }
        axes.push(v);
    }
    [axes[0].clone(), axes[1].clone()]
}

/// A 2-D hyperbolic picture: tangent vectors projected on their principal plane, then mapped into
/// the Poincare disk (p = tanh(sqrt(c) |v| / 2) v / (sqrt(c) |v|)), one colour per sector.
pub fn poincare_disk(e: &Embedded, out: &Path) -> Result<()> {
    let rows: Vec<Vec<f32>> = e.tangent.to_vec2()?;
    let [a, b] = principal_plane(&rows);
    let sc = e.curvature().sqrt();
    let mut sectors: Vec<&String> = e.codes.sector.iter().collect();
    sectors.sort();
    sectors.dedup();
    let series = sectors
        .iter()
        .enumerate()
        .map(|(s, sector)| {
            let points = rows
                .iter()
                .enumerate()
                .filter(|(i, _)| &&e.codes.sector[*i] == sector)
                .map(|(_, r)| {
                    let (x, y) = (dot(r, &a), dot(r, &b));
                    let norm = (x * x + y * y).sqrt().max(1e-12);
                    let scale = (sc * norm / 2.0).tanh() / (sc * norm);
                    (x * scale, y * scale)
                })
                .collect();
            let c = Palette99::pick(s).to_rgba();
            Series {
                name: format!("sector {sector}"),
                points,
                color: RGBColor(c.0, c.1, c.2),
                line: false,
            }
        })
        .collect::<Vec<_>>();
    chart(
        out,
        "NAICS codes in the Poincare disk (principal plane of the tangent space)",
        "x",
        "y",
        &series,
    )
}

fn dot(r: &[f32], axis: &[f64]) -> f64 {
    r.iter().zip(axis).map(|(x, y)| *x as f64 * y).sum()
}

/// Tree distance against embedding distance for every 50th pair i < j.
pub fn distance_scatter(tree: &[f64], emb: &[f64], n: usize, out: &Path) -> Result<()> {
    let points: Vec<(f64, f64)> = (0..n)
        .flat_map(|i| ((i + 1)..n).map(move |j| (i, j)))
        .step_by(50)
        .map(|(i, j)| (tree[i * n + j], emb[i * n + j]))
        .collect();
    let series = vec![Series {
        name: "pairs".into(),
        points,
        color: RGBColor(30, 90, 200),
        line: false,
    }];
    chart(
        out,
        "Tree distance vs Lorentz distance (every 50th pair)",
        "tree distance",
        "Lorentz distance",
        &series,
    )
}
