//! What the two programs share, and nothing heavy: the configuration, where files live, the shard format and the
//! token cache. DataFusion stays out of the trainer's build by living only in naics-pipeline.

pub mod atomic;
pub mod config;
pub mod format;
pub mod layout;
pub mod samples;
pub mod share;
pub mod tokenizer;
pub mod tokens;
pub mod tree_distance;
