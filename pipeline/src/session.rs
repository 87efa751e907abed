//! One DataFusion session that sees every table of a data folder: the ingest outputs, the
//! stages of `build`, the `triplets` view, materialized triplets, the sampled shards and, when
//! the trainer has written them, the code embeddings.

use crate::sql_files;
use anyhow::{Context, Result};
use arrow::datatypes::DataType;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use naics_common::layout;
use std::path::{Path, PathBuf};

pub use crate::engine::{DEFAULT_MEMORY_LIMIT, Engine};
pub use naics_common::layout::DataDir;

/// Registers by absolute path: on Ballista the path travels in the plan to executors, which
/// may run in other folders (or on other machines sharing the storage).
pub async fn register_parquet(ctx: &SessionContext, name: &str, path: &Path) -> Result<()> {
    ctx.deregister_table(name)?;
    let absolute = std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))?;
    ctx.register_parquet(name, absolute.to_string_lossy().as_ref(), ParquetReadOptions::default())
        .await
        .with_context(|| format!("registering {} as table `{name}`", path.display()))
}

/// A session with every table present under `data` (and `outputs`: embeddings, classified files). As in
/// datafusion-cli, a file path can also be queried directly: `SELECT * FROM 'x.parquet'`.
pub async fn open(data: &DataDir, outputs: &Path, engine: &Engine, memory_limit: usize) -> Result<SessionContext> {
    let ctx = engine.context(memory_limit).await?.enable_url_table();
    for (name, path) in [("naics_codes", data.codes()), ("naics_index_holdout", data.holdout())] {
        if path.exists() {
            register_parquet(&ctx, name, &path).await?;
        }
    }
    for stage in &sql_files::STAGES {
        let path = data.table(stage.name);
        if path.exists() {
            register_parquet(&ctx, stage.name, &path).await?;
        } else if stage.all_pairs && data.table("ancestors").exists() && data.table("exclusions").exists() {
            // Not stored (a tree past `build --all-pairs-max-codes`): the same SQL as a view.
            let sql = stage.query(unrelated_distance(&ctx).await?).expect("an SQL stage");
            ctx.sql(&format!("CREATE VIEW {} AS {sql}", stage.name)).await?;
        }
    }
    if ctx.table_exist("positives")? && ctx.table_exist("distances")? {
        ctx.sql(&sql_files::triplets_view()).await?;
    }
    if data.materialized_triplets().is_dir() {
        let partitioned =
            ParquetReadOptions::default().table_partition_cols(vec![("hardness".to_string(), DataType::Int32)]);
        let path = std::path::absolute(data.materialized_triplets())?;
        ctx.register_parquet("triplets_materialized", path.to_string_lossy().as_ref(), partitioned)
            .await
            .with_context(|| format!("registering {}", path.display()))?;
    }
    for (name, path) in experiment_files(&data.shards(), layout::SAMPLES_TABLE) {
        register_parquet(&ctx, &format!("samples_{name}"), &path).await?;
    }
    for (name, path) in experiment_files(outputs, layout::EMBEDDINGS_FILE) {
        register_parquet(&ctx, &format!("embeddings_{name}"), &path).await?;
    }
    // `naics-trainer classify`'s outputs: each as `classified_{experiment}`, the newest also as
    // `classified`.
    let classified = experiment_files(outputs, layout::CLASSIFIED_FILE);
    for (name, path) in &classified {
        register_parquet(&ctx, &format!("classified_{name}"), path).await?;
    }
    let modified = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if let Some((_, newest)) = classified.iter().max_by_key(|(_, p)| modified(p)) {
        register_parquet(&ctx, "classified", newest).await?;
    }
    Ok(ctx)
}

/// [`naics_common::tree_distance::unrelated`] of the registered `naics_codes`.
async fn unrelated_distance(ctx: &SessionContext) -> Result<f64> {
    let batches = ctx
        .sql("SELECT CAST(max(depth) AS DOUBLE) FROM naics_codes")
        .await?
        .collect()
        .await?;
    let max_depth = batches
        .first()
        .and_then(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<arrow::array::Float64Array>()?
                .iter()
                .next()?
        })
        .context("naics_codes has no depth column: run `naics-pipeline ingest` again")?;
    Ok(naics_common::tree_distance::unrelated(max_depth as u8))
}

/// `(experiment, folder/experiment/file)` for every experiment folder holding `file`, with the
/// experiment name made into an SQL identifier (`01_stage_easy` -> `01_stage_easy`).
fn experiment_files(folder: &Path, file: &str) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Vec::new();
    };
    let mut found: Vec<(String, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path().join(file))
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p
                .parent()
                .and_then(|d| d.file_name())
                .unwrap_or_default()
                .to_string_lossy();
            (
                name.chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect(),
                p,
            )
        })
        .collect();
    found.sort();
    found
}
