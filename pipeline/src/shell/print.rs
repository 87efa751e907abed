//! Rendering query results: an aligned table for people, CSV, JSON or Parquet for programs.

use anyhow::{Result, bail};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use clap::ValueEnum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
    Parquet,
}

/// The bytes of a result in `format`. JSON is an array of row objects, as datafusion-cli prints.
pub fn render(schema: &SchemaRef, batches: &[RecordBatch], format: Format) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    match format {
        Format::Table => {
            let table = arrow::util::pretty::pretty_format_batches(batches)?;
            out.extend_from_slice(format!("{table}\n").as_bytes());
        }
        Format::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new().with_header(true).build(&mut out);
            if batches.is_empty() {
                writer.write(&RecordBatch::new_empty(schema.clone()))?;
            }
            for batch in batches {
                writer.write(batch)?;
            }
        }
        Format::Json => {
            let mut writer = arrow::json::ArrayWriter::new(&mut out);
            for batch in batches {
                writer.write(batch)?;
            }
            writer.finish()?;
            if out.is_empty() {
                out.extend_from_slice(b"[]");
            }
            out.push(b'\n');
        }
        Format::Parquet => {
            let mut writer = parquet::arrow::ArrowWriter::try_new(
                &mut out,
                schema.clone(),
                Some(crate::parquet_io::writer_properties()),
            )?;
            for batch in batches {
                writer.write(batch)?;
            }
            writer.close()?;
        }
    }
    Ok(out)
}

/// Parquet is binary: it goes to a file, never to the terminal.
pub fn check_destination(format: Format, has_output_file: bool) -> Result<()> {
    if format == Format::Parquet && !has_output_file {
        bail!("--format parquet needs an output file: add -o FILE.parquet");
    }
    Ok(())
}
