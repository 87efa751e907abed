//! Checkpoints in `checkpoints/{experiment}/`: `step-NNNNNNN.safetensors` (the trainable
//! weights), `.optim.safetensors` (AdamW moments and step) and `.json` (configuration, step,
//! metrics, model and shard hashes, where training stands), each written under a temporary name
//! and renamed. `index.json` lists them; the best 3 and the last are kept, "best" by
//! `training.trainer.monitor` (validation loss, or a hierarchy metric).

use super::optim::AdamW;
use crate::model::rng;
use anyhow::{Context, Result};
use candle_nn::VarMap;
use naics_common::atomic::{write_atomically, write_json};
use naics_common::config::{Config, Loaded, model_differences};
use naics_common::format::hex;
use naics_common::samples::SamplesFile;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const KEEP_BEST: usize = 3;

/// Where training stands; enough to resume exactly.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainState {
    pub epoch: usize,
    /// Next step's position within the epoch.
    pub batch: usize,
    pub step: usize,
    /// The best monitored value so far, as a score where lower is better (a metric negated).
    #[serde(alias = "best_val_loss")]
    pub best_score: f64,
    pub bad_validations: usize,
    pub rng_seed: String,
    pub rng_word_pos: String,
}

impl Default for TrainState {
    fn default() -> Self {
        TrainState {
            epoch: 0,
            batch: 0,
            step: 0,
            best_score: f64::INFINITY,
            bad_validations: 0,
            rng_seed: String::new(),
            rng_word_pos: String::new(),
        }
    }
}

pub struct Checkpoint<'a> {
    pub dir: &'a Path,
    pub state: &'a mut TrainState,
    /// The monitored value as a score, lower is better.
    pub score: f64,
    /// What validation measured: `val_loss` and the monitored metric.
    pub metrics: serde_json::Value,
    pub loaded: &'a Loaded,
    pub varmap: &'a VarMap,
    pub optimizer: &'a AdamW,
    pub validation: &'a SamplesFile,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    name: String,
    step: usize,
    #[serde(alias = "val_loss")]
    score: f64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    entries: Vec<Entry>,
    last: Option<String>,
}

fn read_index(dir: &Path) -> Result<Index> {
    let path = dir.join("index.json");
    if !path.exists() {
        return Ok(Index::default());
    }
    serde_json::from_slice(&std::fs::read(&path)?)
        .with_context(|| format!("{}: not a checkpoint index", path.display()))
}

pub fn save(c: &mut Checkpoint) -> Result<()> {
    std::fs::create_dir_all(c.dir)?;
    let (seed, pos) = rng::position();
    c.state.rng_seed = hex(&seed);
    c.state.rng_word_pos = pos.to_string();
    let name = format!("step-{:07}", c.state.step);
    let weights = c.dir.join(format!("{name}.safetensors"));
    write_atomically(&weights, |tmp| Ok(c.varmap.save(tmp)?))?;
    let optim = c.dir.join(format!("{name}.optim.safetensors"));
    let state = c.optimizer.state()?;
    write_atomically(&optim, |tmp| Ok(candle_core::safetensors::save(&state, tmp)?))?;
    let config = &c.loaded.config;
    let sidecar = serde_json::json!({
        "experiment": config.experiment,
        "step": c.state.step,
        "epoch": c.state.epoch,
        "metrics": c.metrics,
        "monitor": config.training.trainer.monitor,
        "model": {"name": config.model.name, "path": config.model.path, "encoder_mode": config.model.encoder_mode},
        "shards": {"config_hash": hex(&c.validation.meta.config_hash), "tokenizer_sha256": hex(&c.validation.meta.tokenizer_sha256)},
        "config_hash": hex(&c.loaded.hash()),
        "config": c.loaded.tree,
        "state": c.state,
    });
    write_json(&c.dir.join(format!("{name}.json")), &sidecar)?;

    let mut index = read_index(c.dir)?;
    index.entries.retain(|e| e.name != name);
    index.entries.push(Entry {
        name: name.clone(),
        step: c.state.step,
        score: c.score,
    });
    index.entries.sort_by(|a, b| a.score.total_cmp(&b.score));
    let keep: Vec<Entry> = index.entries.iter().take(KEEP_BEST).cloned().collect();
    for dropped in index
        .entries
        .iter()
        .filter(|e| e.name != name && !keep.iter().any(|k| k.name == e.name))
    {
        for suffix in [".safetensors", ".optim.safetensors", ".json"] {
            let _ = std::fs::remove_file(c.dir.join(format!("{}{suffix}", dropped.name)));
        }
    }
    index
        .entries
        .retain(|e| e.name == name || keep.iter().any(|k| k.name == e.name));
    index.last = Some(name);
    write_json(&c.dir.join("index.json"), &index)
}

/// The weights file of the last checkpoint, if any.
pub fn last(dir: &Path) -> Result<Option<PathBuf>> {
    Ok(read_index(dir)?.last.map(|n| dir.join(format!("{n}.safetensors"))))
}

/// The checkpoint a command (or the Python package) works from: `checkpoint` where given, else
/// the best of `experiment`, else the best of the last curriculum stage of `conf/` (paths
/// relative to the working directory, as everywhere in the command line).
pub fn chosen(checkpoint: Option<&Path>, experiment: Option<&str>) -> Result<PathBuf> {
    if let Some(p) = checkpoint {
        return Ok(p.to_path_buf());
    }
    let experiment = match experiment {
        Some(e) => e.to_string(),
        None => naics_common::config::stages(Path::new("conf"))?
            .pop()
            .expect("stages() is never empty"),
    };
    let dir = naics_common::layout::checkpoints(&experiment);
    best(&dir)?.map(|(p, _)| p).ok_or_else(|| {
        anyhow::anyhow!(
            "no checkpoint in {}: run `naics-trainer fit -c {experiment}` first",
            dir.display()
        )
    })
}

/// The weights file of the best checkpoint, and its score (lower is better).
pub fn best(dir: &Path) -> Result<Option<(PathBuf, f64)>> {
    let index = read_index(dir)?;
    Ok(index
        .entries
        .first()
        .map(|e| (dir.join(format!("{}.safetensors", e.name)), e.score)))
}

/// A checkpoint's JSON sidecar, found beside its weights file.
fn sidecar(weights: &Path) -> Result<serde_json::Value> {
    let path = PathBuf::from(format!("{}.json", stem(weights)));
    let bytes =
        std::fs::read(&path).with_context(|| format!("{}: the checkpoint's sidecar is missing", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{}: not a checkpoint sidecar", path.display()))
}

/// The configuration a checkpoint was made with (its sidecar's).
pub fn made_with(weights: &Path) -> Result<Config> {
    serde_json::from_value(sidecar(weights)?["config"].clone()).context("checkpoint sidecar: config")
}

fn stem(weights: &Path) -> String {
    weights.to_string_lossy().trim_end_matches(".safetensors").to_string()
}

/// Loads a checkpoint's weights into `varmap` (`fit --resume`, `--init`). Weights that do not
/// fit were made under another model configuration: the error names the keys that differ.
pub fn load_weights(weights: &Path, varmap: &VarMap, here: &Config) -> Result<()> {
    let Err(err) = varmap.clone().load(weights) else {
        return Ok(());
    };
    let differences = made_with(weights)
        .map(|c| model_differences(&c, here))
        .unwrap_or_default();
    let why = if differences.is_empty() {
        String::new()
    } else {
        format!(
            ": it was made under other model settings ({}); give the same ones as `key=value` \
             overrides, or fit afresh without --resume / --init",
            differences.join(", ")
        )
    };
    Err(anyhow::Error::from(err).context(format!("loading {}{why}", weights.display())))
}

/// Loads weights, optimizer state and training state from a checkpoint's weights file.
pub fn load(weights: &Path, varmap: &VarMap, optimizer: &mut AdamW, here: &Config) -> Result<TrainState> {
    load_weights(weights, varmap, here)?;
    let stem = stem(weights);
    let optim = candle_core::safetensors::load(format!("{stem}.optim.safetensors"), &candle_core::Device::Cpu)?;
    optimizer.load_state(&optim)?;
    let state: TrainState =
        serde_json::from_value(sidecar(weights)?["state"].clone()).context("checkpoint sidecar state")?;
    let mut seed = [0u8; 32];
    for (i, b) in seed.iter_mut().enumerate() {
        *b = u8::from_str_radix(&state.rng_seed[2 * i..2 * i + 2], 16).context("rng seed")?;
    }
    rng::restore(seed, state.rng_word_pos.parse().context("rng position")?);
    Ok(state)
}
