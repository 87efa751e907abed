//! `naics-trainer eval`, `embed` and `search`: the trained embedding of every code, measured
//! against the tree, exported, and searched with free text.
//!
//! A free-text query becomes a point the way a code does, with its one text in all four
//! channels: channel vectors -> MoE -> projection -> exponential map.

pub mod export;
pub mod plots;
pub mod report;

use crate::model::lorentz::{self, distance_rows};
use crate::model::{Embedder, transformer};
use crate::tables::Codes;
use anyhow::{Context, Result};
use candle_core::{D, DType, Device, Tensor};
use naics_common::config::{Config, Pooling};
use naics_common::format::{hex, sha256};
use naics_common::layout;
use serde::Serialize;
use std::path::Path;

/// A trained model loaded from a checkpoint, and the embedding of every code.
pub struct Embedded {
    pub config: Config,
    pub model: Embedder,
    pub codes: Codes,
    /// [n, d + 1] on the hyperboloid, CPU f32.
    pub points: Tensor,
    /// [n, d] tangent vectors at the origin.
    pub tangent: Tensor,
}

/// Loads the checkpoint's configuration (its JSON sidecar) and weights, and embeds all codes.
pub fn load(checkpoint: &Path) -> Result<Embedded> {
    let stem = checkpoint
        .to_string_lossy()
        .trim_end_matches(".safetensors")
        .to_string();
    let sidecar: serde_json::Value = serde_json::from_slice(
        &std::fs::read(format!("{stem}.json"))
            .with_context(|| format!("{stem}.json: the checkpoint's sidecar is missing"))?,
    )?;
    let config: Config = serde_json::from_value(sidecar["config"].clone()).context("checkpoint sidecar: config")?;
    let (device, dtype) = crate::setup::device::best(config.training.trainer.precision)?;
    let model = Embedder::new(&config, &device, dtype)?;
    model
        .varmap
        .clone()
        .load(checkpoint)
        .with_context(|| format!("loading {}", checkpoint.display()))?;
    let codes = Codes::read(&config.data.dir)?;
    let (points, tangent) = cached_points(&model, checkpoint, &config, codes.len())?;
    Ok(Embedded {
        config,
        model,
        codes,
        points,
        tangent,
    })
}

/// The codes' points and tangent vectors for `checkpoint`, computed once and then read from
/// `{shards_dir}/cache/points-{key}.safetensors` (keyed by the checkpoint's weights), so that
/// `search` after the first call loads without encoding anything.
fn cached_points(model: &Embedder, checkpoint: &Path, config: &Config, n: usize) -> Result<(Tensor, Tensor)> {
    let weights = std::fs::read(checkpoint).with_context(|| format!("reading {}", checkpoint.display()))?;
    let path = layout::cache_dir(&config.data.shards_dir)
        .join(format!("points-{}.safetensors", &hex(&sha256(&weights))[..16]));
    if path.exists() {
        let mut t = candle_core::safetensors::load(&path, &Device::Cpu)?;
        if let (Some(points), Some(tangent)) = (t.remove("points"), t.remove("tangent"))
            && points.dim(0)? == n
        {
            return Ok((points, tangent));
        }
    }
    let (points, tangent) = model.embed_codes(n)?;
    let tensors = std::collections::HashMap::from([
        ("points".to_string(), points.clone()),
        ("tangent".to_string(), tangent.clone()),
    ]);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    naics_common::atomic::write_atomically(&path, |tmp| Ok(candle_core::safetensors::save(&tensors, tmp)?))?;
    Ok((points, tangent))
}

impl Embedded {
    pub fn curvature(&self) -> f64 {
        self.config.loss.curvature
    }

    /// Points of free texts.
    pub fn query_points(&self, texts: &[String]) -> Result<Tensor> {
        if texts.is_empty() {
            return Ok(Tensor::zeros((0, self.points.dim(1)?), DType::F32, &Device::Cpu)?);
        }
        self.model.text_points(texts)
    }

    /// Lorentz distances [q, n] from query points to the codes `columns`.
    pub fn distances_to(&self, queries: &Tensor, columns: &[usize]) -> Result<Vec<Vec<f32>>> {
        let idx = Tensor::from_vec(
            columns.iter().map(|&c| c as u32).collect::<Vec<_>>(),
            columns.len(),
            &Device::Cpu,
        )?;
        Ok(distance_rows(
            queries,
            &self.points.index_select(&idx, 0)?,
            self.curvature(),
        )?)
    }
}

/// Held-out retrieval accuracies: top-1/5/10 and the top-1 code's agreement at 2..5 digits.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Retrieval {
    pub queries: usize,
    pub top1: f64,
    pub top5: f64,
    pub top10: f64,
    /// Top-1 prefix accuracy at 2 (same sector), 3, 4 and 5 digits.
    pub prefix: [f64; 4],
}

/// Scores rankings (`rows[q]` = distance-like scores to `candidates`, lower is nearer).
pub fn retrieval(codes: &Codes, candidates: &[usize], truth: &[usize], rows: &[Vec<f32>]) -> Retrieval {
    let mut r = Retrieval {
        queries: truth.len(),
        ..Default::default()
    };
    for (t, row) in truth.iter().zip(rows) {
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        order.sort_by(|&a, &b| row[a].total_cmp(&row[b]));
        let rank = order.iter().position(|&k| candidates[k] == *t).unwrap_or(usize::MAX);
        r.top1 += (rank < 1) as u8 as f64;
        r.top5 += (rank < 5) as u8 as f64;
        r.top10 += (rank < 10) as u8 as f64;
        let best = &codes.code[candidates[order[0]]];
        let truth = &codes.code[*t];
        r.prefix[0] += (codes.sector[candidates[order[0]]] == codes.sector[*t]) as u8 as f64;
        for (k, digits) in [3, 4, 5].into_iter().enumerate() {
            r.prefix[k + 1] += (best[..digits] == truth[..digits]) as u8 as f64;
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

/// The full n x n Lorentz distance matrix of the codes.
pub fn distance_matrix(e: &Embedded) -> Result<Vec<f64>> {
    Ok(lorentz::distance_matrix(&e.points, e.curvature())?)
}

/// Manifold check: max |<x, x>_L + 1/c| over codes.
pub fn manifold_error(e: &Embedded) -> Result<f64> {
    let m = lorentz::inner(&e.points, &e.points)?;
    let err = (m + 1.0 / e.curvature())?.abs()?.max(D::Minus1)?;
    Ok(err.to_scalar::<f32>()? as f64)
}

/// One search hit: the code, its distance to the query, and the path from its sector down.
#[derive(Debug, Serialize)]
pub struct Hit {
    pub code: String,
    pub title: String,
    pub distance: f32,
    pub path: Vec<(String, String)>,
}

/// The k codes nearest to a free-text query, any level.
pub fn search(e: &Embedded, query: &str, k: usize) -> Result<Vec<Hit>> {
    let all: Vec<usize> = (0..e.codes.len()).collect();
    let row = e.distances_to(&e.query_points(&[query.to_string()])?, &all)?.remove(0);
    let mut order = all;
    order.sort_by(|&a, &b| row[a].total_cmp(&row[b]));
    Ok(order
        .into_iter()
        .take(k)
        .map(|i| Hit {
            code: e.codes.code[i].clone(),
            title: e.codes.title[i].clone(),
            distance: row[i],
            path: e
                .codes
                .path(i)
                .into_iter()
                .map(|p| (e.codes.code[p].clone(), e.codes.title[p].clone()))
                .collect(),
        })
        .collect())
}
