//! Arrow schemas of the ingest outputs and their Parquet writing.

use super::{HeldOut, NaicsCode};
use crate::parquet_io::write_batch;
use anyhow::Result;
use arrow::array::{ArrayRef, Int32Array, ListBuilder, RecordBatch, StringArray, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use std::path::Path;
use std::sync::Arc;

fn string_list<'a>(lists: impl Iterator<Item = &'a Vec<String>>) -> ArrayRef {
    let mut builder = ListBuilder::new(StringBuilder::new());
    for list in lists {
        for s in list {
            builder.values().append_value(s);
        }
        builder.append(true);
    }
    Arc::new(builder.finish())
}

pub fn codes_schema() -> Schema {
    let list = DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
    Schema::new(vec![
        Field::new("index", DataType::Int32, false),
        Field::new("level", DataType::Int32, false),
        Field::new("depth", DataType::Int32, false),
        Field::new("code", DataType::Utf8, false),
        Field::new("sector", DataType::Utf8, false),
        Field::new("parent", DataType::Utf8, true),
        Field::new("title", DataType::Utf8, false),
        Field::new("description", DataType::Utf8, false),
        Field::new("examples", list.clone(), false),
        Field::new("cited_examples", DataType::Int32, false),
        Field::new("excluded", DataType::Utf8, false),
        Field::new("excluded_codes", list, false),
    ])
}

pub fn write_codes(path: &Path, codes: &[NaicsCode]) -> Result<()> {
    let strings = |f: fn(&NaicsCode) -> &str| Arc::new(StringArray::from_iter_values(codes.iter().map(f))) as ArrayRef;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(codes.iter().map(|c| c.tree.index as i32).collect::<Int32Array>()),
        Arc::new(codes.iter().map(|c| c.tree.level as i32).collect::<Int32Array>()),
        Arc::new(codes.iter().map(|c| c.tree.depth as i32).collect::<Int32Array>()),
        strings(|c| &c.tree.code),
        strings(|c| &c.tree.sector),
        Arc::new(codes.iter().map(|c| c.tree.parent.as_deref()).collect::<StringArray>()),
        strings(|c| &c.tree.title),
        strings(|c| &c.description),
        string_list(codes.iter().map(|c| &c.examples)),
        Arc::new(codes.iter().map(|c| c.cited_examples as i32).collect::<Int32Array>()),
        strings(|c| &c.excluded),
        string_list(codes.iter().map(|c| &c.excluded_codes)),
    ];
    write_batch(path, &RecordBatch::try_new(Arc::new(codes_schema()), columns)?)
}

pub fn write_holdout(path: &Path, held_out: &[HeldOut]) -> Result<()> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("code", DataType::Utf8, false),
        Field::new("text", DataType::Utf8, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(held_out.iter().map(|h| h.code.as_str()))),
        Arc::new(StringArray::from_iter_values(held_out.iter().map(|h| h.text.as_str()))),
    ];
    write_batch(path, &RecordBatch::try_new(schema, columns)?)
}
