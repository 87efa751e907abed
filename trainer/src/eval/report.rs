//! The `eval` report: every metric on all codes, held-out retrieval against the frozen-model
//! baseline, the two pictures, `eval.json` and a printed table.

use super::coding::{self, Coding};
use super::{Baseline, RANKED_AT_ONCE, Retrieval, Tally, plots};
use crate::embedded::Embedded;
use crate::metrics as m;
use crate::model::lorentz;
use crate::tables;
use anyhow::Result;
use serde::Serialize;
use std::path::Path;

#[derive(Debug, Serialize)]
pub struct Report {
    pub experiment: String,
    pub checkpoint: String,
    pub codes: usize,
    /// The codes the hierarchy metrics (cophenetic .. distortion) use every pair of: all of
    /// them, or a sample closed under parents past `tables::METRIC_MAX_CODES`.
    pub metric_codes: usize,
    #[serde(flatten)]
    pub hierarchy: Hierarchy,
    pub manifold_max_error: f64,
    /// Mean distance from the origin per level, from the top (NAICS: levels 2..6).
    pub radius_per_level: Vec<f64>,
    /// Warnings: points collapsed onto one another or onto the origin.
    pub collapse: Vec<String>,
    /// Each expert's share of the routed rows over all codes (0.25 each when balanced).
    pub expert_share: Vec<f32>,
    /// Held-out retrieval by the trained points alone.
    pub retrieval: Retrieval,
    pub baseline_retrieval: Retrieval,
    /// Held-out coding by the coder (points, nearest entries and words fused), calibration,
    /// level-wise answers and abstention.
    pub coding: Coding,
}

/// How the codes' distances follow the tree's, over every pair of the metric codes.
#[derive(Debug, Serialize)]
pub struct Hierarchy {
    pub cophenetic: f64,
    pub spearman: f64,
    pub spearman_ceiling: f64,
    pub ndcg_at_5: f64,
    pub ndcg_at_10: f64,
    pub ndcg_at_20: f64,
    pub neighbourhood_map: f64,
    pub parent_at_1: f64,
    pub sibling_precision_at_5: f64,
    pub distortion_scale: f64,
    pub distortion_mean: f64,
    pub distortion_worst: f64,
}

impl Hierarchy {
    /// From the tree's and the embedding's distances among `n` codes (`tree`, `emb`: [n * n];
    /// `t`, `d`: their upper triangles) and the codes' parents and levels within them. Each
    /// measure is single-threaded, so they run side by side.
    fn measure(
        (tree, emb): (&[f64], &[f64]),
        (t, d): (&[f64], &[f64]),
        parents: &[Option<usize>],
        levels: &[u8],
        n: usize,
    ) -> Hierarchy {
        let (((cophenetic, spearman), spearman_ceiling), ((ndcg_at_5, ndcg_at_10), ndcg_at_20)) = rayon::join(
            || {
                rayon::join(
                    || rayon::join(|| m::pearson(t, d), || m::spearman(t, d)),
                    || m::spearman_ceiling(t),
                )
            },
            || {
                rayon::join(
                    || rayon::join(|| m::ndcg_at(tree, emb, n, 5), || m::ndcg_at(tree, emb, n, 10)),
                    || m::ndcg_at(tree, emb, n, 20),
                )
            },
        );
        let (
            ((neighbourhood_map, parent_at_1), sibling_precision_at_5),
            (distortion_scale, distortion_mean, distortion_worst),
        ) = rayon::join(
            || {
                rayon::join(
                    || {
                        rayon::join(
                            || m::neighbourhood_map(parents, emb, n),
                            || m::parent_at_1(parents, levels, emb, n),
                        )
                    },
                    || m::sibling_precision_at_5(parents, emb, n),
                )
            },
            || m::distortion(t, d),
        );
        Hierarchy {
            cophenetic,
            spearman,
            spearman_ceiling,
            ndcg_at_5,
            ndcg_at_10,
            ndcg_at_20,
            neighbourhood_map,
            parent_at_1,
            sibling_precision_at_5,
            distortion_scale,
            distortion_mean,
            distortion_worst,
        }
    }
}

pub fn evaluate(e: &Embedded, checkpoint: &Path, out_dir: &Path) -> Result<Report> {
    let sample = tables::metric_codes(&e.codes, tables::METRIC_MAX_CODES);
    let n = sample.len();
    let tree = tables::TreeDistances::new(&e.codes).among_values(&sample);
    let emb = lorentz::distance_matrix(&e.points.tensor()?, &sample, e.curvature())?;
    let (parents, levels) = tables::sub_tree(&e.codes, &sample);
    let (t, d) = (m::upper_triangle(&tree, n), m::upper_triangle(&emb, n));
    let radius: Vec<f64> = e
        .tangent()?
        .sqr()?
        .sum(1)?
        .sqrt()?
        .to_vec1::<f32>()?
        .into_iter()
        .map(|r| r as f64)
        .collect();
    let radius_per_level: Vec<f64> = e
        .codes
        .levels()
        .into_iter()
        .map(|l| {
            let r: Vec<f64> = (0..e.codes.len())
                .filter(|&i| e.codes.level[i] == l)
                .map(|i| radius[i])
                .collect();
            r.iter().sum::<f64>() / r.len().max(1) as f64
        })
        .collect();
    let mut collapse = Vec::new();
    let spread = d.iter().sum::<f64>() / d.len() as f64;
    if spread < 1e-3 {
        collapse.push(format!("all codes within {spread:.2e} of one another"));
    }
    if radius.iter().all(|r| *r < 1e-3) {
        collapse.push("every code at the origin".into());
    }
    let near_duplicates = (0..n)
        .flat_map(|i| ((i + 1)..n).map(move |j| (i, j)))
        .filter(|&(i, j)| emb[i * n + j] < 1e-4)
        .count();
    if near_duplicates > 0 {
        collapse.push(format!("{near_duplicates} pairs of distinct codes closer than 1e-4"));
    }

    let (retrieval, baseline_retrieval) = held_out_retrieval(e)?;
    std::fs::create_dir_all(out_dir)?;
    // The pictures are drawn on one thread: beside the measures.
    let (hierarchy, pictures) = rayon::join(
        || Hierarchy::measure((&tree, &emb), (&t, &d), &parents, &levels, n),
        || -> Result<()> {
            plots::poincare_disk(e, &out_dir.join("poincare.png"))?;
            plots::distance_scatter(&tree, &emb, n, &out_dir.join("distances.png"))
        },
    );
    pictures?;
    let report = Report {
        experiment: e.config.experiment.clone(),
        checkpoint: checkpoint.display().to_string(),
        codes: e.codes.len(),
        metric_codes: n,
        hierarchy,
        manifold_max_error: super::manifold_error(e)?,
        radius_per_level,
        collapse,
        expert_share: e.expert_share.clone(),
        retrieval,
        baseline_retrieval,
        coding: coding::evaluate(e, out_dir)?,
    };
    naics_common::atomic::write_json(&out_dir.join("eval.json"), &report)?;
    Ok(report)
}

/// Every held-out index entry as a query against all leaf (NAICS: six-digit) codes: ours (Lorentz distance)
/// and the baseline (frozen base, mean pooling, cosine).
fn held_out_retrieval(e: &Embedded) -> Result<(Retrieval, Retrieval)> {
    let held = tables::holdout(&e.config.data.dir)?;
    let candidates = e.codes.leaves();
    let (truth, texts): (Vec<usize>, Vec<String>) = held
        .into_iter()
        .filter_map(|(c, t)| Some((*e.codes.position.get(&c)?, t)))
        .unzip();
    let baseline = Baseline::new(e, &candidates)?;
    let (mut ours, mut base) = (Tally::new(&e.codes, &candidates), Tally::new(&e.codes, &candidates));
    let leaves = e.leaf_targets();
    for (truth, texts) in truth.chunks(RANKED_AT_ONCE).zip(texts.chunks(RANKED_AT_ONCE)) {
        let distances = leaves.distances(&e.query_points(texts)?, e.curvature())?;
        let cosines = baseline.rows(texts)?;
        for ((&t, d), b) in truth.iter().zip(&distances).zip(&cosines) {
            ours.add(t, d);
            base.add(t, b);
        }
    }
    Ok((ours.finish(), base.finish()))
}

impl Report {
    pub fn table(&self) -> String {
        let r = |x: &Retrieval| {
            format!(
                "top-1 {:.3}  top-5 {:.3}  top-10 {:.3}  ancestors at depth 0/1/2/3 {:.3}/{:.3}/{:.3}/{:.3}",
                x.top1, x.top5, x.top10, x.prefix[0], x.prefix[1], x.prefix[2], x.prefix[3]
            )
        };
        let pairs = if self.metric_codes == self.codes {
            "all pairs".to_string()
        } else {
            format!("pairs among a sample of {} codes", self.metric_codes)
        };
        let mut out = format!("eval of {} ({} codes, {pairs})\n", self.checkpoint, self.codes);
        for (name, value) in [
            ("cophenetic (Pearson)", self.hierarchy.cophenetic),
            ("Spearman", self.hierarchy.spearman),
            ("Spearman ceiling (ties)", self.hierarchy.spearman_ceiling),
            ("NDCG@5", self.hierarchy.ndcg_at_5),
            ("NDCG@10", self.hierarchy.ndcg_at_10),
            ("NDCG@20", self.hierarchy.ndcg_at_20),
            ("neighbourhood MAP", self.hierarchy.neighbourhood_map),
            ("parent@1", self.hierarchy.parent_at_1),
            ("sibling precision@5", self.hierarchy.sibling_precision_at_5),
            ("distortion mean", self.hierarchy.distortion_mean),
            ("distortion worst", self.hierarchy.distortion_worst),
            ("manifold max error", self.manifold_max_error),
        ] {
            out.push_str(&format!("  {name:<26} {value:>9.4}\n"));
        }
        out.push_str(&format!(
            "  radius per level (top down) {:?}\n",
            self.radius_per_level
                .iter()
                .map(|r| (r * 1000.0).round() / 1000.0)
                .collect::<Vec<_>>()
        ));
        out.push_str(&format!(
            "  held-out ({} queries)  ours:     {}\n",
            self.retrieval.queries,
            r(&self.retrieval)
        ));
        out.push_str(&format!(
            "  held-out             baseline:  {}\n",
            r(&self.baseline_retrieval)
        ));
        out.push_str(&format!(
            "  expert share (all codes)   {:?}\n",
            self.expert_share
                .iter()
                .map(|l| (l * 1000.0).round() / 1000.0)
                .collect::<Vec<_>>()
        ));
        let c = &self.coding;
        out.push_str(&format!("  held-out             coder:     {}\n", r(&c.retrieval)));
        for (name, retrieval) in &c.ablation {
            out.push_str(&format!("    {name:<26} {}\n", r(retrieval)));
        }
        out.push_str(&format!(
            "  coder weights (points, entries, words) {:?} fitted on {} validation entries\n",
            c.fusion.weights.map(|w| (w * 1000.0).round() / 1000.0),
            c.fusion.fitted_on
        ));
        out.push_str(&format!(
            "  expected calibration error {:.4} (on the validation entries fitted on: {:.4}, top-1 {:.3})\n",
            c.expected_calibration_error, c.validation_calibration_error, c.validation_top1
        ));
        for l in &c.levels {
            out.push_str(&format!(
                "  answered at level {} (confidence >= {}): {:.3} of texts, accuracy {:.3}\n",
                l.level,
                coding::MIN_CONFIDENCE,
                l.coverage,
                l.accuracy
            ));
        }
        out.push_str(&format!("  no answer at any level: {:.3}\n", c.unanswered));
        for v in c
            .coverage
            .iter()
            .filter(|v| [0.0, 0.5, 0.7, 0.9].contains(&v.threshold))
        {
            out.push_str(&format!(
                "  abstaining below {:.1}: coverage {:.3}, accuracy {:.3}\n",
                v.threshold, v.coverage, v.accuracy
            ));
        }
        for c in &self.collapse {
            out.push_str(&format!("  warning: {c}\n"));
        }
        out
    }
}
