//! The two pictures of `eval`: the codes in the Poincare disk, and tree against embedding distance.

use crate::disk::Disk;
use crate::embedded::Embedded;
use crate::plots::{Series, chart};
use anyhow::Result;
use plotters::style::{Color, Palette, Palette99, RGBColor};
use std::path::Path;

/// The codes in the Poincare disk ([`Disk`]), one colour per sector.
pub fn poincare_disk(e: &Embedded, out: &Path) -> Result<()> {
    let disk = Disk::new(e)?;
    let mut sectors: Vec<&String> = e.codes.sector.iter().collect();
    sectors.sort();
    sectors.dedup();
    let series = sectors
        .iter()
        .enumerate()
        .map(|(s, sector)| {
            let points = (0..e.codes.len())
                .filter(|&i| &&e.codes.sector[i] == sector)
                .map(|i| disk.codes[i])
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
