//! `naics-pipeline build`: runs the stages over `naics_codes.parquet` (SQL, and `anchor_groups`
//! from the pre-order tree), each stage's result stored as `tables/{stage}.parquet` and
//! registered for the stages after it. The all-pairs stages (`distances`, `positives`) are views
//! instead on trees past `all_pairs_max_codes`.

use crate::atomic;
use crate::parquet_io::write_stream;
use crate::relations;
use crate::session::{self, DataDir, Engine};
use crate::sql_files::{self, STAGES, Source};
use anyhow::{Context, Result};
use arrow::array::Int32Array;
use arrow::compute::filter_record_batch;
use arrow::compute::kernels::cmp::eq;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Rows written per table, in stage order (`None`: registered as a view, not stored).
pub type BuildSummary = Vec<(String, Option<usize>, Duration)>;

/// Trees up to this many codes get `distances` and `positives` stored (NAICS: 4.5 million rows);
/// larger ones get views.
pub const ALL_PAIRS_MAX_CODES: usize = 10_000;

pub async fn run(
    data: &DataDir,
    engine: &Engine,
    materialize_triplets: bool,
    all_pairs_max_codes: usize,
    memory_limit: usize,
) -> Result<BuildSummary> {
    let codes = data.codes();
    if !codes.exists() {
        anyhow::bail!("{} not found: run `naics-pipeline ingest` first", codes.display());
    }
    let ctx = engine.context(memory_limit).await?;
    session::register_parquet(&ctx, "naics_codes", &codes).await?;
    let bar = spinner();
    let tree = relations::code_tree(&ctx).await?;
    let unrelated = tree.tree.unrelated_distance();
    let all_pairs = tree.tree.len() <= all_pairs_max_codes;
    let mut summary = Vec::new();
    let mut shapes = crate::groups::Shapes::new();
    for stage in &STAGES {
        bar.set_message(format!("stage {}", stage.name));
        let started = Instant::now();
        let path = data.table(stage.name);
        let rows = match stage.source {
            Source::Paths => Some(relations::write_ancestors(&path, &tree)),
            Source::Groups => {
                let excluded = relations::exclusions(&ctx, tree.tree.len()).await?;
                let written = relations::write_anchor_groups(&path, &tree, &excluded);
                Some(written.map(|(rows, s)| {
                    shapes = s;
                    rows
                }))
            }
            Source::Shapes => Some(relations::write_triplet_shapes(&path, &shapes)),
            Source::Sql(_) => {
                let sql = stage.query(unrelated).expect("an SQL stage");
                if stage.all_pairs && !all_pairs {
                    std::fs::remove_file(&path).or_else(|e| if path.exists() { Err(e) } else { Ok(()) })?;
                    ctx.sql(&format!("CREATE VIEW {} AS {sql}", stage.name)).await?;
                    None
                } else {
                    Some(write_query(&ctx, &sql, &path).await)
                }
            }
        };
        let rows = rows.transpose().with_context(|| format!("stage `{}`", stage.name))?;
        if rows.is_some() {
            session::register_parquet(&ctx, stage.name, &path).await?;
        }
        summary.push((stage.name.to_string(), rows, started.elapsed()));
    }
    if materialize_triplets {
        bar.set_message("materializing triplets (about 10^9 rows)");
        let started = Instant::now();
        ctx.sql(&sql_files::triplets_view()).await?;
        let rows = materialize(&ctx, data).await?;
        summary.push(("triplets".to_string(), Some(rows), started.elapsed()));
    }
    bar.finish_and_clear();
    Ok(summary)
}

async fn write_query(ctx: &SessionContext, sql: &str, path: &std::path::Path) -> Result<usize> {
    write_stream(path, ctx.sql(sql).await?.execute_stream().await?).await
}

/// Writes the triplets view as Parquet (zstd), hive-partitioned by hardness
/// (`triplets/hardness=N/part-P.parquet`, the hardness column in the path, not in the files).
/// One pass: each of DataFusion's output partitions streams into its own eight writers, so both
/// cores encode Parquet and memory stays bounded by the row-group size. (DataFusion's own
/// partitioned writer demultiplexes on one task and was several times slower here.)
async fn materialize(ctx: &SessionContext, data: &DataDir) -> Result<usize> {
    let out = data.materialized_triplets();
    let tmp = atomic::prepare(&out)?;
    let result = async {
        let streams = ctx.table("triplets").await?.execute_stream_partitioned().await?;
        let tasks: Vec<_> = streams
            .into_iter()
            .enumerate()
            .map(|(part, stream)| tokio::spawn(write_partitioned(stream, tmp.clone(), part)))
            .collect();
        let mut rows = 0;
        for task in tasks {
            rows += task.await??;
        }
        Ok(rows)
    }
    .await;
    atomic::finish(&tmp, &out, result)
}

/// Splits a stream of triplets by hardness into one Parquet writer per value.
async fn write_partitioned(mut stream: SendableRecordBatchStream, dir: PathBuf, part: usize) -> Result<usize> {
    let schema = stream.schema();
    let column = schema.index_of("hardness")?;
    let kept: Vec<usize> = (0..schema.fields().len()).filter(|&i| i != column).collect();
    let file_schema = Arc::new(schema.project(&kept)?);
    let mut writers: BTreeMap<i32, ArrowWriter<File>> = BTreeMap::new();
    let mut rows = 0;
    while let Some(batch) = stream.next().await {
        let mut batch = batch?;
        let hardness = batch.remove_column(column);
        let hardness = hardness
            .as_any()
            .downcast_ref::<Int32Array>()
            .context("hardness is an INT column")?;
        let values: BTreeSet<i32> = hardness.iter().flatten().collect();
        for h in values {
            let rows_of_h = filter_record_batch(&batch, &eq(hardness, &Int32Array::new_scalar(h))?)?;
            let writer = match writers.entry(h) {
                Entry::Occupied(w) => w.into_mut(),
                Entry::Vacant(slot) => {
                    let folder = dir.join(format!("hardness={h}"));
                    std::fs::create_dir_all(&folder)?;
                    let file = File::create(folder.join(format!("part-{part}.parquet")))?;
                    slot.insert(ArrowWriter::try_new(
                        file,
                        file_schema.clone(),
                        Some(triplet_writer_properties()),
                    )?)
                }
            };
            writer.write(&rows_of_h)?;
        }
        rows += batch.num_rows();
    }
    for writer in writers.into_values() {
        writer.close()?;
    }
    Ok(rows)
}

/// zstd level 1 and row groups of 256k rows: 16 open writers stay well under a GiB.
fn triplet_writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("valid level")))
        .set_max_row_group_row_count(Some(1 << 18))
        .build()
}

pub fn spinner() -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}").expect("valid template"));
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}
