//! `naics-trainer embed`: every code's coordinates as Parquet, which `naics-pipeline sql`
//! registers as `embeddings_{experiment}`.

use crate::embedded::Embedded;
use anyhow::Result;
use arrow::array::{ArrayRef, Float32Builder, Int32Array, ListBuilder, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use std::path::Path;
use std::sync::Arc;

fn vectors(rows: Vec<Vec<f32>>) -> ArrayRef {
    let mut b = ListBuilder::new(Float32Builder::new());
    for r in rows {
        b.values().append_slice(&r);
        b.append(true);
    }
    Arc::new(b.finish())
}

pub fn schema() -> Schema {
    let list = DataType::List(Arc::new(Field::new("item", DataType::Float32, true)));
    Schema::new(vec![
        Field::new("code", DataType::Utf8, false),
        Field::new("level", DataType::Int32, false),
        Field::new("title", DataType::Utf8, false),
        Field::new("lorentz", list.clone(), false),
        Field::new("poincare", list.clone(), false),
        Field::new("tangent", list, false),
    ])
}

pub fn write(e: &Embedded, path: &Path) -> Result<usize> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(&e.codes.code)),
        Arc::new(Int32Array::from_iter_values(e.codes.level.iter().map(|l| *l as i32))),
        Arc::new(StringArray::from_iter_values(&e.codes.title)),
        vectors(e.points.tensor()?.to_vec2()?),
        vectors(super::poincare(e)?.to_vec2()?),
        vectors(e.tangent()?.to_vec2()?),
    ];
    let batch = RecordBatch::try_new(Arc::new(schema()), columns)?;
    naics_common::atomic::write_atomically(path, |tmp| {
        let mut writer = ArrowWriter::try_new(std::fs::File::create(tmp)?, batch.schema(), None)?;
        writer.write(&batch)?;
        writer.close()?;
        Ok(())
    })?;
    Ok(batch.num_rows())
}
