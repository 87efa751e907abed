//! A trained model loaded from a checkpoint, with the point of every code: what `eval`, `embed`,
//! `search` and the coder work from.

use crate::model::Embedder;
use crate::model::cache::{read_mapped, remembered_sha256};
use crate::model::lorentz::{Targets, log_map0};
use crate::setup::device;
use crate::tables::Codes;
use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use naics_common::config::Config;
use naics_common::format::hex;
use naics_common::layout;
use std::path::Path;

/// A trained model loaded from a checkpoint, and the embedding of every code.
pub struct Embedded {
    pub config: Config,
    pub model: Embedder,
    pub codes: Codes,
    /// [n, d + 1] on the hyperboloid, CPU f32.
    pub points: Tensor,
    /// Each expert's share of routing all codes (0.25 each when balanced).
    pub expert_share: Vec<f32>,
    /// The first 16 hex digits of the checkpoint's sha256: what caches of its vectors are keyed by.
    pub key: String,
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
    let (device, dtype) = device::best(config.training.trainer.precision)?;
    let bytes = std::fs::read(checkpoint).with_context(|| format!("reading {}", checkpoint.display()))?;
    let weights = candle_core::safetensors::load_buffer(&bytes, &device)
        .with_context(|| format!("loading {}", checkpoint.display()))?;
    let model = Embedder::with_weights(&config, &device, dtype, weights)
        .with_context(|| format!("loading {}", checkpoint.display()))?;
    let codes = Codes::read(&config.data.dir)?;
    let cache = layout::cache_dir(&config.data.shards_dir);
    let key = hex(&remembered_sha256(checkpoint, &cache)?)[..16].to_string();
    let (points, expert_share) = cached_points(&model, &key, &cache, codes.len())?;
    Ok(Embedded {
        config,
        model,
        codes,
        points,
        expert_share,
        key,
    })
}

/// The codes' points for a checkpoint and the experts' shares of routing them, computed once
/// and then read from `{cache}/points-{key}.safetensors` (the shards' cache folder; `key`: from
/// the checkpoint), so that `search` after the first call loads without encoding anything.
/// Their tangent vectors are not kept: [`Embedded::tangent`] is their log map.
fn cached_points(model: &Embedder, key: &str, cache: &Path, n: usize) -> Result<(Tensor, Vec<f32>)> {
    let path = cache.join(format!("points-{key}.safetensors"));
    if path.exists()
        && let Ok(points) = read_mapped(&path, "points", &Device::Cpu)
        && let Ok(shares) = read_mapped(&path, "expert_share", &Device::Cpu)
        && points.dim(0)? == n
    {
        return Ok((points, shares.to_vec1()?));
    }
    let (points, shares) = model.embed_codes(n)?;
    let tensors = std::collections::HashMap::from([
        ("points".to_string(), points.clone()),
        (
            "expert_share".to_string(),
            Tensor::new(shares.as_slice(), &Device::Cpu)?,
        ),
    ]);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    naics_common::atomic::write_atomically(&path, |tmp| Ok(candle_core::safetensors::save(&tensors, tmp)?))?;
    Ok((points, shares))
}

impl Embedded {
    pub fn curvature(&self) -> f64 {
        self.config.loss.curvature
    }

    /// The codes' tangent vectors at the origin [n, d]: their points' log map (the disk picture,
    /// the radii per level and `embed` use them; nothing keeps them).
    pub fn tangent(&self) -> Result<Tensor> {
        Ok(log_map0(&self.points, self.curvature())?)
    }

    /// Points of free texts.
    pub fn query_points(&self, texts: &[String]) -> Result<Tensor> {
        if texts.is_empty() {
            return Ok(Tensor::zeros((0, self.points.dim(1)?), DType::F32, &Device::Cpu)?);
        }
        self.model.text_points(texts)
    }

    /// The points of the codes `columns`, gathered once for the distances of many texts to them.
    pub fn targets(&self, columns: &[usize]) -> Result<Targets> {
        Ok(Targets::new(&crate::model::select_rows(&self.points, columns)?)?)
    }
}
