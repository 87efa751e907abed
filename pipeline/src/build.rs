//! `naics-pipeline build`: runs the SQL stages over `naics_codes.parquet`, each stage's result
//! stored as `tables/{stage}.parquet` and registered for the stages after it.

use crate::atomic;
use crate::parquet_io::write_stream;
use crate::session::{self, DataDir};
use crate::sql_files::{self, STAGES};
use anyhow::{Context, Result};
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::SessionContext;
use indicatif::{ProgressBar, ProgressStyle};
use std::time::{Duration, Instant};

/// Rows written per table, in stage order.
pub type BuildSummary = Vec<(String, usize, Duration)>;

pub async fn run(data: &DataDir, materialize_triplets: bool, memory_limit: usize) -> Result<BuildSummary> {
    let codes = data.codes();
    if !codes.exists() {
        anyhow::bail!("{} not found: run `naics-pipeline ingest` first", codes.display());
    }
    let ctx = session::new_context(memory_limit)?;
    session::register_parquet(&ctx, "naics_codes", &codes).await?;
    let bar = spinner();
    let mut summary = Vec::new();
    for stage in &STAGES {
        bar.set_message(format!("stage {}", stage.name));
        let started = Instant::now();
        let path = data.table(stage.name);
        let rows = write_query(&ctx, &stage.query(), &path).await.with_context(|| format!("stage `{}`", stage.name))?;
        session::register_parquet(&ctx, stage.name, &path).await?;
        summary.push((stage.name.to_string(), rows, started.elapsed()));
    }
    if materialize_triplets {
        bar.set_message("materializing triplets (about 10^9 rows)");
        let started = Instant::now();
        ctx.sql(&sql_files::triplets_view()).await?;
        let rows = materialize(&ctx, data).await?;
        summary.push(("triplets".to_string(), rows, started.elapsed()));
    }
    bar.finish_and_clear();
    Ok(summary)
}

async fn write_query(ctx: &SessionContext, sql: &str, path: &std::path::Path) -> Result<usize> {
    write_stream(path, ctx.sql(sql).await?.execute_stream().await?).await
}

/// Writes the triplets view as Parquet (zstd), partitioned by hardness, with DataFusion's
/// streaming writer: memory stays bounded by the session's pool, not by the ~10^9 rows.
async fn materialize(ctx: &SessionContext, data: &DataDir) -> Result<usize> {
    let out = data.materialized_triplets();
    let tmp = atomic::prepare(&out)?;
    let result = async {
        std::fs::create_dir_all(&tmp)?;
        let df = ctx.table("triplets").await?;
        let options = DataFrameWriteOptions::new().with_partition_by(vec!["hardness".to_string()]);
        let mut parquet = datafusion::config::TableParquetOptions::default();
        parquet.global.compression = Some("zstd(3)".to_string());
        let written = df.write_parquet(&format!("{}/", tmp.display()), options, Some(parquet)).await?;
        Ok(written.iter().map(row_count).sum())
    }
    .await;
    atomic::finish(&tmp, &out, result)
}

fn row_count(batch: &arrow::array::RecordBatch) -> usize {
    batch
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::UInt64Array>()
        .map(|a| a.values().iter().sum::<u64>() as usize)
        .unwrap_or(0)
}

pub fn spinner() -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}").expect("valid template"));
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}
