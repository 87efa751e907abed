//! What `classify` writes: every input column, then the answer's columns, as Parquet or CSV.
//!
//! The answer's columns are flat (`code_1` .. `code_k`, not a list), so that
//! `SELECT code_1, count(*) FROM classified GROUP BY 1` works in any SQL engine and a CSV opens in
//! a spreadsheet.

use crate::coder::{Answer, Coder};
use anyhow::{Result, bail};
use arrow::array::{ArrayRef, BooleanArray, Float32Array, Float64Array, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use std::path::Path;
use std::sync::Arc;

/// A row's answer, or why it has none.
pub type RowAnswer = Result<Answer, String>;

/// The answer's columns for the top `k`.
pub fn answer_fields(k: usize) -> Vec<Field> {
    let mut fields = Vec::new();
    for (name, t) in [
        ("code", DataType::Utf8),
        ("title", DataType::Utf8),
        ("distance", DataType::Float32),
        ("confidence", DataType::Float64),
    ] {
        fields.extend((1..=k).map(|i| Field::new(format!("{name}_{i}"), t.clone(), true)));
    }
    fields.extend([
        Field::new("answer_code", DataType::Utf8, true),
        Field::new("answer_title", DataType::Utf8, true),
        Field::new("answer_level", DataType::Int32, true),
        Field::new("answer_confidence", DataType::Float64, true),
        Field::new("abstained", DataType::Boolean, true),
        Field::new("error", DataType::Utf8, true),
    ]);
    fields
}

/// The input's columns followed by the answer's; an input column with an answer column's name is
/// an error naming it.
pub fn schema(input: &Schema, k: usize) -> Result<SchemaRef> {
    let answer = answer_fields(k);
    for f in &answer {
        if input.index_of(f.name()).is_ok() {
            bail!(
                "the input already has a column `{}`, which classify writes; rename it",
                f.name()
            );
        }
    }
    let fields: Vec<Field> = input
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .chain(answer)
        .collect();
    Ok(Arc::new(Schema::new(fields)))
}

/// The answer's columns of one batch: a row is an answer, or why there is none.
pub fn answer_columns(coder: &Coder, rows: &[RowAnswer], k: usize) -> Vec<ArrayRef> {
    let codes = coder.codes();
    let ranked = |i: usize| rows.iter().map(move |r| r.as_ref().ok().and_then(|a| a.ranked.get(i)));
    let mut columns: Vec<ArrayRef> = Vec::new();
    columns.extend((0..k).map(|i| {
        Arc::new(
            ranked(i)
                .map(|r| r.map(|r| codes.code[r.code].as_str()))
                .collect::<StringArray>(),
        ) as ArrayRef
    }));
    columns.extend((0..k).map(|i| {
        Arc::new(
            ranked(i)
                .map(|r| r.map(|r| codes.title[r.code].as_str()))
                .collect::<StringArray>(),
        ) as ArrayRef
    }));
    columns.extend(
        (0..k).map(|i| Arc::new(ranked(i).map(|r| r.map(|r| r.distance)).collect::<Float32Array>()) as ArrayRef),
    );
    columns.extend(
        (0..k).map(|i| Arc::new(ranked(i).map(|r| r.map(|r| r.confidence)).collect::<Float64Array>()) as ArrayRef),
    );
    // The level-wise answer, none where the coder abstained.
    let level = || {
        rows.iter()
            .map(|r| r.as_ref().ok().filter(|a| !a.abstained).and_then(|a| a.level))
    };
    columns.push(Arc::new(
        level()
            .map(|l| l.map(|l| codes.code[l.code].as_str()))
            .collect::<StringArray>(),
    ));
    columns.push(Arc::new(
        level()
            .map(|l| l.map(|l| codes.title[l.code].as_str()))
            .collect::<StringArray>(),
    ));
    columns.push(Arc::new(
        level()
            .map(|l| l.map(|l| codes.level[l.code] as i32))
            .collect::<Int32Array>(),
    ));
    columns.push(Arc::new(
        level().map(|l| l.map(|l| l.confidence)).collect::<Float64Array>(),
    ));
    columns.push(Arc::new(
        rows.iter()
            .map(|r| r.as_ref().ok().map(|a| a.abstained))
            .collect::<BooleanArray>(),
    ));
    columns.push(Arc::new(
        rows.iter()
            .map(|r| r.as_ref().err().map(String::as_str))
            .collect::<StringArray>(),
    ));
    columns
}

/// Rows per Parquet row group: what the writer holds in memory before writing it out.
const ROW_GROUP: usize = 65_536;

pub enum Writer {
    Parquet(ArrowWriter<std::fs::File>),
    Csv(arrow::csv::Writer<std::fs::File>),
}

impl Writer {
    /// CSV when `path` ends in `.csv`, else Parquet (zstd).
    pub fn create(path: &Path, csv: bool, schema: SchemaRef) -> Result<Writer> {
        let file = std::fs::File::create(path)?;
        Ok(if csv {
            Writer::Csv(arrow::csv::WriterBuilder::new().with_header(true).build(file))
        } else {
            let props = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::default()))
                .set_max_row_group_row_count(Some(ROW_GROUP))
                .build();
            Writer::Parquet(ArrowWriter::try_new(file, schema, Some(props))?)
        })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        match self {
            Writer::Parquet(w) => w.write(batch)?,
            Writer::Csv(w) => w.write(batch)?,
        }
        Ok(())
    }

    pub fn close(self) -> Result<()> {
        match self {
            Writer::Parquet(w) => {
                w.close()?;
            }
            Writer::Csv(w) => {
                w.into_inner().sync_all()?;
            }
        }
        Ok(())
    }
}
