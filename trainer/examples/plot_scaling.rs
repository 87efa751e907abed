//! The curve of `bench/taxonomy.sh`: wall time and peak memory of ingest + build + build-shards
//! against the tree's size, on log-log axes (slope 1 is linear), with linear references through
//! the 20k-code tree. Usage: plot_scaling CSV PNG.

use anyhow::{Context, Result};
use naics_trainer::plots::{Series, chart};
use plotters::style::RGBColor;
use std::path::Path;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [csv, png] = args.as_slice() else {
        anyhow::bail!("usage: plot_scaling CSV PNG");
    };
    let text = std::fs::read_to_string(csv).with_context(|| format!("reading {csv}"))?;
    // tree,codes,ingest_s,build_s,shards_s,total_s,peak_mib (synthetic rows only).
    let rows: Vec<(f64, f64, f64)> = text
        .lines()
        .skip(1)
        .filter(|l| l.starts_with("synth,"))
        .map(|l| {
            let f: Vec<f64> = l.split(',').skip(1).map(|x| x.parse().unwrap_or(f64::NAN)).collect();
            (f[0], f[4], f[5])
        })
        .collect();
    let log = |v: f64| v.log10();
    let base = rows.iter().find(|r| r.0 == 20_000.0).copied().unwrap_or(rows[0]);
    let series = |name: &str, pick: fn(&(f64, f64, f64)) -> f64, color: RGBColor| {
        let measured = Series {
            name: name.to_string(),
            points: rows.iter().map(|r| (log(r.0), log(pick(r)))).collect(),
            color,
            line: true,
        };
        let linear = Series {
            name: format!("{name}: linear from 20k"),
            points: rows
                .iter()
                .map(|r| (log(r.0), log(pick(&base) * r.0 / base.0)))
                .collect(),
            color: RGBColor(color.0 / 2 + 100, color.1 / 2 + 100, color.2 / 2 + 100),
            line: false,
        };
        [measured, linear]
    };
    let mut all = Vec::new();
    all.extend(series("wall seconds", |r| r.1, RGBColor(31, 119, 180)));
    all.extend(series("peak MiB", |r| r.2, RGBColor(214, 39, 40)));
    chart(
        Path::new(png),
        "ingest + build + build-shards against tree size",
        "log10 codes",
        "log10 (seconds | MiB)",
        &all,
    )?;
    println!("wrote {png}");
    Ok(())
}
