//! PNG charts with plotters: loss curves for `fit`, and (for `eval`) scatter plots. The font is
//! compiled in (DejaVu Sans, assets/), so no system font is needed.

use anyhow::{Result, anyhow};
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

static FONT: Once = Once::new();

fn register_font() {
    FONT.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../assets/DejaVuSans.ttf");
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, bytes);
    });
}

/// One named series of (x, y) points.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub color: RGBColor,
    /// Drawn as a line when true, as dots otherwise.
    pub line: bool,
}

fn bounds(series: &[Series]) -> (f64, f64, f64, f64) {
    let all = series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|p| p.0.is_finite() && p.1.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in all {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x0 > x1 {
        return (0.0, 1.0, 0.0, 1.0);
    }
    let pad = |a: f64, b: f64| if b > a { (b - a) * 0.05 } else { 1.0 };
    (x0 - pad(x0, x1), x1 + pad(x0, x1), y0 - pad(y0, y1), y1 + pad(y0, y1))
}

/// A chart of `series` written to `path` (PNG, 900 x 600).
pub fn chart(path: &Path, title: &str, x_label: &str, y_label: &str, series: &[Series]) -> Result<()> {
    register_font();
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    let root = BitMapBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (x0, x1, y0, y1) = bounds(series);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .draw()
        .map_err(|e| err(&e))?;
    for s in series {
        let color = s.color;
        let drawn = if s.line {
            chart
                .draw_series(LineSeries::new(s.points.iter().copied(), color.stroke_width(2)))
                .map_err(|e| err(&e))?
        } else {
            chart
                .draw_series(s.points.iter().map(|&p| Circle::new(p, 2, color.filled())))
                .map_err(|e| err(&e))?
        };
        drawn
            .label(s.name.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 4), (x + 14, y + 4)], color.filled()));
    }
    if series.len() > 1 {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// The training and validation loss curves of a metrics.jsonl, as `fit` writes it.
pub fn loss_curves(metrics: &Path, out: &Path) -> Result<()> {
    let text = std::fs::read_to_string(metrics)?;
    let (mut train, mut val, mut balance) = (Vec::new(), Vec::new(), Vec::new());
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let step = v["step"].as_f64().unwrap_or(0.0);
        if let Some(x) = v["nce"].as_f64() {
            train.push((step, x));
        }
        if let Some(x) = v["load_balance"].as_f64() {
            balance.push((step, x));
        }
        if let Some(x) = v["val_loss"].as_f64() {
            val.push((step, x));
        }
    }
    let series = vec![
        Series {
            name: "training InfoNCE".into(),
            points: train,
            color: BLUE,
            line: true,
        },
        Series {
            name: "validation InfoNCE".into(),
            points: val,
            color: RED,
            line: true,
        },
    ];
    chart(out, "Loss", "step", "loss", &series)?;
    let balance = vec![Series {
        name: "load balancing".into(),
        points: balance,
        color: GREEN,
        line: true,
    }];
    chart(
        &out.with_file_name("load_balance.png"),
        "MoE load-balancing loss (top_k = balanced)",
        "step",
        "loss",
        &balance,
    )
}
