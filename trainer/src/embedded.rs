//! A trained model loaded from a checkpoint, with the point of every code: what `eval`, `embed`,
//! `search` and the coder work from.

use crate::model::Embedder;
use crate::model::cache::{read_mapped, remembered_sha256};
use crate::model::lorentz::{Targets, log_map0};
use crate::model::mapped::Mapped;
use crate::setup::device;
use crate::tables::Codes;
use crate::train::checkpoint::made_with;
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
    /// [n, d + 1] on the hyperboloid, read in place from the points cache.
    pub points: Mapped,
    /// The leaves' points (`codes.leaves()`, in order), kept beside them in the cache: what
    /// every text's distances are measured to, read where they lie.
    leaf_points: Mapped,
    /// Each expert's share of routing all codes (0.25 each when balanced).
    pub expert_share: Vec<f32>,
    /// The first 16 hex digits of the checkpoint's sha256: what caches of its vectors are keyed by.
    pub key: String,
}

/// Loads the checkpoint's configuration (its JSON sidecar) and weights, and embeds all codes.
pub fn load(checkpoint: &Path) -> Result<Embedded> {
    let config = made_with(checkpoint)?;
    let (device, dtype) = device::best(config.training.trainer.precision)?;
    // The model and the code table side by side: each is mostly one thread's reading.
    let (model, codes) = rayon::join(
        || -> Result<Embedder> {
            let loading = || format!("loading {}", checkpoint.display());
            use candle_core::safetensors::{Load, MmapedSafetensors};
            // Read through a map, one copy of each tensor (a whole-file read first made two).
            // SAFETY: checkpoints are written under a temporary name and renamed into place,
            // never rewritten in place.
            let file = unsafe { MmapedSafetensors::new(checkpoint) }.with_context(loading)?;
            let weights = file
                .tensors()
                .into_iter()
                .map(|(name, view)| Ok((name, view.load(&device)?)))
                .collect::<Result<_>>()
                .with_context(loading)?;
            Embedder::with_weights(&config, &device, dtype, weights).with_context(loading)
        },
        || Codes::read(&config.data.dir),
    );
    let (model, codes) = (model?, codes?);
    let cache = layout::cache_dir(&config.data.shards_dir);
    let key = hex(&remembered_sha256(checkpoint, &cache)?)[..16].to_string();
    let (points, leaf_points, expert_share) = cached_points(&model, &key, &cache, &codes)?;
    Ok(Embedded {
        config,
        model,
        codes,
        points,
        leaf_points,
        expert_share,
        key,
    })
}

/// The codes' points for a checkpoint, the leaves' among them and the experts' shares of routing
/// them, computed once and then read in place from `{cache}/points-{key}.safetensors` (the shards'
/// cache folder; `key`: from the checkpoint), so that `search` after the first call loads without
/// encoding or copying anything. Their tangent vectors are not kept: [`Embedded::tangent`] is
/// their log map.
fn cached_points(model: &Embedder, key: &str, cache: &Path, codes: &Codes) -> Result<(Mapped, Mapped, Vec<f32>)> {
    let path = cache.join(format!("points-{key}.safetensors"));
    let leaves = codes.leaves();
    let read = || -> Result<(Mapped, Mapped, Vec<f32>)> {
        let (points, leaf_points) = (Mapped::open(&path, "points")?, Mapped::open(&path, "leaves")?);
        let shares = read_mapped(&path, "expert_share", &Device::Cpu)?.to_vec1()?;
        if (points.rows(), leaf_points.rows()) != (codes.len(), leaves.len()) {
            anyhow::bail!("{}: made for another tree", path.display())
        }
        Ok((points, leaf_points, shares))
    };
    if path.exists()
        && let Ok(cached) = read()
    {
        return Ok(cached);
    }
    let (points, shares) = model.embed_codes(codes.len())?;
    let tensors = std::collections::HashMap::from([
        ("leaves".to_string(), crate::model::select_rows(&points, &leaves)?),
        ("points".to_string(), points),
        (
            "expert_share".to_string(),
            Tensor::new(shares.as_slice(), &Device::Cpu)?,
        ),
    ]);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    naics_common::atomic::write_atomically(&path, |tmp| Ok(candle_core::safetensors::save(&tensors, tmp)?))?;
    read()
}

impl Embedded {
    pub fn curvature(&self) -> f64 {
        self.config.loss.curvature
    }

    /// The codes' tangent vectors at the origin [n, d]: their points' log map (the disk picture,
    /// the radii per level and `embed` use them; nothing keeps them).
    pub fn tangent(&self) -> Result<Tensor> {
        Ok(log_map0(&self.points.tensor()?, self.curvature())?)
    }

    /// Points of free texts.
    pub fn query_points(&self, texts: &[String]) -> Result<Tensor> {
        if texts.is_empty() {
            return Ok(Tensor::zeros((0, self.points.cols()), DType::F32, &Device::Cpu)?);
        }
        self.model.text_points(texts)
    }

    /// The leaves' points (`codes.leaves()`, in order), for the distances of many texts to them.
    pub fn leaf_targets(&self) -> Targets<'_> {
        Targets::in_place(self.leaf_points.values(), self.leaf_points.cols())
    }
}
