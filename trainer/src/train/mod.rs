//! Training: the loop (`fit`), its loss terms (`loss`, the tree term in `tree_term`), the
//! backward pass into the encoder (`replay`), validation and model selection (`monitor`), the
//! optimizer (`optim`), checkpoints (`checkpoint`) and, after the last stage, the query map
//! (`query_map`). Depends on `model`, never on `eval`.

pub mod queries;
pub mod tree_term;
pub mod loss;
pub mod replay;
pub mod optim;
pub mod checkpoint;
pub mod monitor;
pub mod query_map;
pub mod fit;

pub use fit::{FitOptions, FitSummary, fit};

use crate::model::Embedder;
use crate::tables::{Codes, LeafIndex, TreeDistances};
use anyhow::Result;
use queries::Queries;

/// What training reads besides the shards: the code tree (levels, leaves, tree distances for
/// `loss.tree_weight` and monitored metrics) and the index-entry anchors.
pub struct TrainingData {
    pub codes: Codes,
    pub tree: TreeDistances,
    /// Whether each code is a leaf (what free text is coded to).
    pub is_leaf: Vec<bool>,
    /// The leaves, and those under each code.
    pub leaves: LeafIndex,
    pub queries: Queries,
}

impl TrainingData {
    pub fn load(model: &Embedder) -> Result<Self> {
        let dir = &model.config.data.dir;
        let codes = Codes::read(dir)?;
        let tree = TreeDistances::new(&codes);
        let mut is_leaf = vec![false; codes.len()];
        for i in codes.leaves() {
            is_leaf[i] = true;
        }
        let leaves = LeafIndex::new(&codes.parent);
        let queries = Queries::load(&codes, model)?;
        Ok(TrainingData {
            codes,
            tree,
            is_leaf,
            leaves,
            queries,
        })
    }
}
