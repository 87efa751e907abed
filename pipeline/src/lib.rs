//! naics-pipeline: a classification tree (NAICS 2022's Census files, ICD-10-CM's XML, or any
//! tree as one table) to the training shards, over Apache DataFusion. The data's path: [`ingest`]
//! (-> `naics_codes.parquet`, codes in pre-order), [`tree`] and [`groups`] (each anchor's codes
//! by relation, as spans of the pre-order tree), [`build`] (the stages: SQL under `sql/build/`,
//! and [`relations`] for the tables written from the tree), then the sampler that writes
//! [`shards`]. [`session`] sees every table, on the [`engine`] chosen (DataFusion in the process,
//! or Ballista, whose processes `cluster` runs), and [`shell`] is the SQL shell over it;
//! [`synth`] makes random trees for the scaling benchmark.

pub use naics_common::atomic;
pub mod build;
#[cfg(feature = "ballista")]
pub mod cluster;
pub mod engine;
pub mod error;
pub mod groups;
pub mod ingest;
pub mod parquet_io;
pub mod relations;
pub mod session;
pub mod shards;
pub mod shell;
pub mod sql_files;
pub mod synth;
pub mod tree;
