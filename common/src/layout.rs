//! Where the two programs' files are, named in one place: the data folder's tables, an
//! experiment's shards, the frozen-vector cache, checkpoints and outputs.

use crate::samples::Split;
use std::path::{Path, PathBuf};

/// The ingested codes, in the data folder.
pub const CODES_TABLE: &str = "naics_codes.parquet";
/// The held-out index entries, in the data folder.
pub const HOLDOUT_TABLE: &str = "naics_index_holdout.parquet";
/// An experiment's token ids of every code text, in its shards folder.
pub const TOKENS_FILE: &str = "tokens.bin";
/// What `build-shards` made and from what, in an experiment's shards folder.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The sampled (anchor, positive, negatives) rows as a table, in an experiment's shards folder.
pub const SAMPLES_TABLE: &str = "samples.parquet";
/// Every code's coordinates (`naics-trainer embed`), in an experiment's outputs folder.
pub const EMBEDDINGS_FILE: &str = "embeddings.parquet";
/// A file of free texts coded by `naics-trainer classify`, in an experiment's outputs folder.
pub const CLASSIFIED_FILE: &str = "classified.parquet";
/// `./checkpoints/{experiment}/`.
pub const CHECKPOINTS_DIR: &str = "checkpoints";
/// `./outputs/{experiment}/`.
pub const OUTPUTS_DIR: &str = "outputs";

/// Where the tables of a data folder live.
#[derive(Debug, Clone)]
pub struct DataDir(pub PathBuf);

impl DataDir {
    /// The folder of `build`'s tables.
    pub fn tables(&self) -> PathBuf {
        self.0.join("tables")
    }
    /// A table of `build`: `tables/{name}.parquet`.
    pub fn table(&self, name: &str) -> PathBuf {
        self.tables().join(format!("{name}.parquet"))
    }
    pub fn codes(&self) -> PathBuf {
        self.0.join(CODES_TABLE)
    }
    pub fn holdout(&self) -> PathBuf {
        self.0.join(HOLDOUT_TABLE)
    }
    pub fn materialized_triplets(&self) -> PathBuf {
        self.tables().join("triplets")
    }
    pub fn shards(&self) -> PathBuf {
        self.0.join("shards")
    }
}

/// An experiment's shards folder: `{shards_dir}/{experiment}/`.
pub fn experiment_shards(shards_dir: &Path, experiment: &str) -> PathBuf {
    shards_dir.join(experiment)
}

/// The samples file of a training epoch or of the validation split.
pub fn samples_file(split: Split, epoch: usize) -> String {
    match split {
        Split::Train => format!("train-e{epoch:03}.samples"),
        Split::Validation => "validation.samples".to_string(),
    }
}

/// The frozen base's cached vectors, shared by the experiments: `{shards_dir}/cache/`.
pub fn cache_dir(shards_dir: &Path) -> PathBuf {
    shards_dir.join("cache")
}

/// `./checkpoints/{experiment}/`.
pub fn checkpoints(experiment: &str) -> PathBuf {
    Path::new(CHECKPOINTS_DIR).join(experiment)
}

/// `./outputs/{experiment}/`.
pub fn outputs(experiment: &str) -> PathBuf {
    Path::new(OUTPUTS_DIR).join(experiment)
}
