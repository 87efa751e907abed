//! Where a model's files are: a local folder (config.json, model.safetensors, tokenizer.json),
//! or, with the `hub` cargo feature, a Hugging Face hub id downloaded into the hub's cache.

use super::MODEL_FILES;
use anyhow::Result;
use std::path::{Path, PathBuf};

/// The local folder of a model given as a folder or, failing that, as a hub id (`hub_id`, or the
/// location itself when it looks like `owner/name`).
pub fn locate(location: &Path, hub_id: Option<&str>) -> Result<PathBuf> {
    if location.join("config.json").is_file() {
        return Ok(location.to_path_buf());
    }
    let as_id = location
        .to_str()
        .filter(|s| s.split('/').count() == 2 && !location.exists());
    match hub_id.or(as_id) {
        Some(id) => download(id),
        None => Ok(location.to_path_buf()),
    }
}

#[cfg(feature = "hub")]
fn download(id: &str) -> Result<PathBuf> {
    use anyhow::Context;
    let repo = hf_hub::api::sync::Api::new()?.model(id.to_string());
    let mut folder = None;
    for file in MODEL_FILES {
        let path = repo
            .get(file)
            .with_context(|| format!("downloading {file} of {id} from the Hugging Face hub"))?;
        folder = path.parent().map(Path::to_path_buf);
    }
    folder.context("no files downloaded")
}

#[cfg(not(feature = "hub"))]
fn download(id: &str) -> Result<PathBuf> {
    anyhow::bail!(
        "the model is not in a local folder, and this build cannot download hub id `{id}`: fetch it with \
         `naics-trainer fetch-model minilm|mpnet`, or rebuild with `--features hub` where the hub is reachable \
         (files needed: {MODEL_FILES:?})"
    )
}
