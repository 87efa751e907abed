//! naics-pipeline: NAICS 2022 from the Census files to the training shards, over Apache
//! DataFusion. The data's path: [`ingest`] (xlsx/CSV -> `naics_codes.parquet`), [`build`] (the
//! SQL stages under `sql/build/` -> tree relations), then the sampler that writes shards. [`session`]
//! sees every table, and [`shell`] is the SQL shell over it.

pub use naics_common::atomic;
pub mod build;
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
