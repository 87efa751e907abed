//! Parquet files written whole (temporary name, then rename) with zstd compression.

use crate::atomic::{self, write_atomically};
use anyhow::{Context, Result};
use arrow::array::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use std::fs::File;
use std::path::Path;

pub fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build()
}

/// Writes one in-memory batch to `path` as a Parquet file.
pub fn write_batch(path: &Path, batch: &RecordBatch) -> Result<()> {
    write_atomically(path, |tmp| {
        let file = File::create(tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(writer_properties()))?;
        writer.write(batch)?;
        writer.close()?;
        Ok(())
    })
    .with_context(|| format!("writing {}", path.display()))
}

/// Streams a DataFusion result into one Parquet file, batch by batch.
pub async fn write_stream(path: &Path, mut stream: SendableRecordBatchStream) -> Result<usize> {
    let tmp = atomic::prepare(path)?;
    let result = async {
        let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut writer = ArrowWriter::try_new(file, stream.schema(), Some(writer_properties()))?;
        let mut rows = 0;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            rows += batch.num_rows();
            writer.write(&batch)?;
        }
        writer.close()?;
        Ok(rows)
    }
    .await;
    atomic::finish(&tmp, path, result).with_context(|| format!("writing {}", path.display()))
}
