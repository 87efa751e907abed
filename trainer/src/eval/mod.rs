//! `naics-trainer eval`, `embed` and `search`: the trained embedding of every code, measured
//! against the tree, exported, and searched with free text.
//!
//! A free-text query becomes a point the way a code does, with its one text in all four
//! channels: channel vectors -> MoE -> projection -> exponential map.

pub mod coding;
pub mod export;
pub mod plots;
pub mod report;

use crate::embedded::Embedded;
use crate::model::lorentz;
use crate::model::transformer;
use crate::tables::{self, Codes};
use anyhow::Result;
use candle_core::{D, DType, Device, Tensor};
use naics_common::config::Pooling;
use serde::Serialize;

/// Held-out retrieval accuracies: top-1/5/10 and the top-1 code's agreement at 2..5 digits.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Retrieval {
    pub queries: usize,
    pub top1: f64,
    pub top5: f64,
    pub top10: f64,
    /// Top-1 agreement with the truth's ancestor at depth 0 (same root: NAICS's sector, 2
    /// digits), 1, 2 and 3 (NAICS: 3, 4 and 5 digits).
    pub prefix: [f64; 4],
}

/// Scores rankings (`rows[q]` = distance-like scores to `candidates`, lower is nearer). A
/// candidate codes a text right when it is the text's code or lies under it: ICD-10-CM's
/// inclusion terms belong to codes at every level, and a leaf under "C92.3 Myeloid sarcoma"
/// is a right answer for "Chloroma" (NAICS's index entries all belong to leaves).
pub fn retrieval(codes: &Codes, candidates: &[usize], truth: &[usize], rows: &[Vec<f32>]) -> Retrieval {
    let mut r = Retrieval {
        queries: truth.len(),
        ..Default::default()
    };
    let end = tables::subtree_ends(&codes.parent);
    for (&t, row) in truth.iter().zip(rows) {
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        order.sort_by(|&a, &b| row[a].total_cmp(&row[b]));
        let under = |k: usize| (t..end[t] as usize).contains(&candidates[k]);
        let rank = order.iter().position(|&k| under(k)).unwrap_or(usize::MAX);
        r.top1 += (rank < 1) as u8 as f64;
        r.top5 += (rank < 5) as u8 as f64;
        r.top10 += (rank < 10) as u8 as f64;
        let (best, truth) = (codes.path(candidates[order[0]]), codes.path(t));
        for (depth, p) in r.prefix.iter_mut().enumerate() {
            *p += (best.get(depth) == truth.get(depth)) as u8 as f64;
        }
    }
    let n = truth.len().max(1) as f64;
    r.top1 /= n;
    r.top5 /= n;
    r.top10 /= n;
    r.prefix.iter_mut().for_each(|p| *p /= n);
    r
}

/// The baseline a user would otherwise pick: the frozen base model's mean-pooled, normalized
/// vectors and cosine similarity, codes as "title. description".
pub fn baseline_rows(e: &Embedded, candidates: &[usize], queries: &[String]) -> Result<Vec<Vec<f32>>> {
    let encoder = e.model.channels.encoder();
    let embed = |texts: &[String]| -> Result<Tensor> {
        let mut parts = Vec::new();
        for chunk in texts.chunks(128) {
            let v = encoder.embed_ids(&encoder.tokenize(chunk)?, Pooling::Mean, Default::default())?;
            parts.push(
                transformer::normalize(&v)?
                    .to_dtype(DType::F32)?
                    .to_device(&Device::Cpu)?,
            );
        }
        Ok(Tensor::cat(&parts, 0)?)
    };
    let code_texts: Vec<String> = candidates
        .iter()
        .map(|&c| format!("{}. {}", e.codes.title[c], e.codes.description[c]))
        .collect();
    let (c, q) = (embed(&code_texts)?, embed(queries)?);
    // Cosine similarity as a distance: 1 - cos.
    Ok(q.matmul(&c.t()?)?.affine(-1.0, 1.0)?.to_vec2::<f32>()?)
}

/// Poincare-ball coordinates of every code.
pub fn poincare(e: &Embedded) -> Result<Tensor> {
    Ok(lorentz::to_poincare(&e.points, e.curvature())?)
}

/// Manifold check: max |<x, x>_L + 1/c| over codes.
pub fn manifold_error(e: &Embedded) -> Result<f64> {
    let m = lorentz::inner(&e.points, &e.points)?;
    let err = (m + 1.0 / e.curvature())?.abs()?.max(D::Minus1)?;
    Ok(err.to_scalar::<f32>()? as f64)
}
