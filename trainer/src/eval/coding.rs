//! How well the coder codes the held-out index entries: its rankings, which signal each gain
//! came from (the fusion refitted on the validation entries with signals left out), whether its
//! confidences are calibrated, what answering at the right level and abstaining buy, and the
//! picture of the last two (`calibration.png`).

use super::{RANKED_AT_ONCE, Retrieval, Tally};
use crate::coder::calibration::{self, Bin, Coverage};
use crate::coder::{Coder, Fusion, SIGNALS};
use crate::embedded::Embedded;
use crate::plots::{Series, chart};
use crate::tables;
use anyhow::Result;
use plotters::style::RGBColor;
use serde::Serialize;
use std::path::Path;

/// The threshold of the level-wise answers `eval` reports.
pub const MIN_CONFIDENCE: f64 = 0.5;

#[derive(Debug, Serialize)]
pub struct Coding {
    pub fusion: Fusion,
    /// The coder: all signals, fitted weights.
    pub retrieval: Retrieval,
    /// The same with only some signals (weights refitted): what each contributes.
    pub ablation: Vec<(String, Retrieval)>,
    /// Of the top answer's confidence against its correctness, 10 bins.
    pub expected_calibration_error: f64,
    /// The same and the top-1 accuracy on the validation entries the fusion was fitted on: where
    /// these are calibrated and the held-out ones are not, the validation entries are easier
    /// than held-out text (a shift, not a fusion too simple for its signals).
    pub validation_calibration_error: f64,
    pub validation_top1: f64,
    pub reliability: Vec<Bin>,
    /// Answering only at top-1 confidence >= threshold.
    pub coverage: Vec<Coverage>,
    /// Level-wise answers at confidence >= 0.5: per level 2..6, the share of texts answered at
    /// that level and the accuracy there (right: the true code, an ancestor of it or, for a text
    /// of a code with children, a code under it); then the share with no answer at all.
    pub levels: Vec<LevelStats>,
    pub unanswered: f64,
    /// Wall time of coding the held-out entries (every signal of every candidate), seconds.
    pub seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct LevelStats {
    pub level: u8,
    pub coverage: f64,
    pub accuracy: f64,
}

/// The signals each ablation keeps (points, entries, words).
const ABLATIONS: [[bool; 3]; 4] = [
    [true, false, false],
    [true, true, false],
    [true, false, true],
    [false, true, true],
];

/// The coder on every held-out entry; `calibration.png` into `out_dir`.
pub fn evaluate(e: &Embedded, out_dir: &Path) -> Result<Coding> {
    let coder = Coder::new(e)?;
    let held = tables::holdout(&e.config.data.dir)?;
    let (truth, texts): (Vec<usize>, Vec<String>) = held
        .into_iter()
        .filter_map(|(c, t)| Some((*e.codes.position.get(&c)?, t)))
        .unzip();

    // Refit on the validation entries with some signals only, from the fusion's weights.
    let (val_truth, val_texts) = coder.validation();
    let val_features = coder.features(&val_texts)?;
    let ablations: Vec<(String, [f64; 3])> = ABLATIONS
        .iter()
        .map(|&keep| {
            let name: Vec<&str> = SIGNALS.iter().zip(keep).filter(|(_, k)| *k).map(|(s, _)| *s).collect();
            (
                name.join(" + "),
                calibration::fit_logit(&val_features, &val_truth, coder.fusion.weights, keep),
            )
        })
        .collect();
    let (val_confidence, val_correct) = calibration::top_answers(&val_features, &val_truth, &coder.fusion.weights);
    let val_confidence: Vec<f64> = val_confidence
        .into_iter()
        .map(|c| calibration::recalibrated(c, coder.fusion.top))
        .collect();
    drop(val_features);

    // The held-out texts a chunk at a time: each weighting (the fitted fusion first, then the
    // ablations') ranks the chunk's features, which are then dropped.
    let weightings: Vec<[f64; 3]> = std::iter::once(coder.fusion.weights)
        .chain(ablations.iter().map(|(_, w)| *w))
        .collect();
    let mut tallies: Vec<Tally> = weightings
        .iter()
        .map(|_| Tally::new(&e.codes, &coder.candidates))
        .collect();
    let (mut confidence, mut correct) = (Vec::new(), Vec::new());
    let all_levels = e.codes.levels();
    let mut per_level = vec![(0usize, 0usize); *all_levels.last().unwrap_or(&0) as usize + 1];
    let mut unanswered = 0;
    let mut seconds = 0.0;
    for (truth, texts) in truth.chunks(RANKED_AT_ONCE).zip(texts.chunks(RANKED_AT_ONCE)) {
        let started = std::time::Instant::now();
        let features = coder.features(texts)?;
        seconds += started.elapsed().as_secs_f64();
        for (&t, rows) in truth.iter().zip(&features) {
            for (w, tally) in weightings.iter().zip(&mut tallies).skip(1) {
                let p: Vec<f32> = calibration::probabilities(rows, w)
                    .into_iter()
                    .map(|x| -x as f32)
                    .collect();
                tally.add(t, &p);
            }
            // Ranked by the fused softmax; its top's confidence mapped, as in an answer.
            let mut p = calibration::probabilities(rows, &coder.fusion.weights);
            tallies[0].add(t, &p.iter().map(|x| -*x as f32).collect::<Vec<_>>());
            let best = calibration::with_top(&mut p, coder.fusion.top);
            confidence.push(best.map_or(0.0, |b| p[b]));
            correct.push(best.is_some_and(|b| coder.truth(t).contains(&b)));
            match coder.level(&p, MIN_CONFIDENCE) {
                Some(a) => {
                    let l = e.codes.level[a.code] as usize;
                    per_level[l].0 += 1;
                    // Right: the text's code, an ancestor of it, or (a text of a code with
                    // children) a code under it.
                    let right = e.codes.path(t).contains(&a.code) || e.codes.path(a.code).contains(&t);
                    per_level[l].1 += right as usize;
                }
                None => unanswered += 1,
            }
        }
    }
    let mut tallies = tallies.into_iter().map(Tally::finish);
    let retrieval = tallies.next().unwrap_or_default();
    let ablation: Vec<(String, Retrieval)> = ablations.into_iter().map(|(name, _)| name).zip(tallies).collect();

    let thresholds: Vec<f64> = (0..20).map(|i| i as f64 / 20.0).collect();
    let coverage = calibration::coverage_curve(&confidence, &correct, &thresholds);
    let reliability = calibration::reliability(&confidence, &correct, 10);

    let n = truth.len().max(1) as f64;
    let levels = all_levels
        .into_iter()
        .map(|l| {
            let (count, right) = per_level[l as usize];
            LevelStats {
                level: l,
                coverage: count as f64 / n,
                accuracy: if count == 0 { 0.0 } else { right as f64 / count as f64 },
            }
        })
        .collect();
    picture(&reliability, &coverage, &out_dir.join("calibration.png"))?;
    Ok(Coding {
        fusion: coder.fusion,
        retrieval,
        ablation,
        expected_calibration_error: calibration::expected_calibration_error(&confidence, &correct, 10),
        validation_calibration_error: calibration::expected_calibration_error(&val_confidence, &val_correct, 10),
        validation_top1: val_correct.iter().filter(|&&r| r).count() as f64 / val_correct.len().max(1) as f64,
        reliability,
        coverage,
        levels,
        unanswered: unanswered as f64 / n,
        seconds,
    })
}

/// The reliability diagram (accuracy against confidence, per bin, beside the diagonal) and the
/// accuracy of the answers given against the share given, as the abstention threshold rises.
fn picture(reliability: &[Bin], coverage: &[Coverage], path: &Path) -> Result<()> {
    let series = vec![
        Series {
            name: "perfect calibration".into(),
            points: vec![(0.0, 0.0), (1.0, 1.0)],
            color: RGBColor(160, 160, 160),
            line: true,
        },
        Series {
            name: "accuracy per confidence bin".into(),
            points: reliability
                .iter()
                .filter(|b| b.count > 0)
                .map(|b| (b.mean_confidence, b.accuracy))
                .collect(),
            color: RGBColor(30, 90, 200),
            line: true,
        },
        Series {
            name: "abstaining: accuracy (y) at coverage (x)".into(),
            points: coverage.iter().map(|c| (c.coverage, c.accuracy)).collect(),
            color: RGBColor(200, 60, 40),
            line: true,
        },
    ];
    chart(
        path,
        "Held-out coding: reliability and coverage",
        "confidence (reliability) / share answered (coverage)",
        "accuracy",
        &series,
    )
}
