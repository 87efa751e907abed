//! The sampled records as an Arrow table, for `naics-pipeline sql` (`samples_{experiment}`).

use anyhow::Result;
use arrow::array::{ArrayRef, Int32Array, Int32Builder, ListBuilder, RecordBatch, StringArray, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use naics_common::samples::{Sample, Split};
use std::sync::Arc;

/// One row per sample: split, epoch, position in its file, anchor, positive, negatives and
/// their hardness (codes as text).
pub fn batch(all: &[(Split, usize, Vec<Sample>)], codes: &[String]) -> Result<RecordBatch> {
    let rows: Vec<(&Split, &usize, usize, &Sample)> = all
        .iter()
        .flat_map(|(split, epoch, samples)| samples.iter().enumerate().map(move |(i, s)| (split, epoch, i, s)))
        .collect();
    let rows = || rows.iter().copied();
    let code = |i: u32| codes[i as usize].as_str();
    let mut negatives = ListBuilder::new(StringBuilder::new());
    let mut hardness = ListBuilder::new(Int32Builder::new());
    for (_, _, _, s) in rows() {
        for &n in &s.negatives {
            negatives.values().append_value(code(n));
        }
        negatives.append(true);
        for &h in &s.hardness {
            hardness.values().append_value(h as i32);
        }
        hardness.append(true);
    }
    let split_name = |s: &Split| {
        if *s == Split::Train { "train" } else { "validation" }
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows().map(|(s, ..)| split_name(s)))),
        Arc::new(rows().map(|(_, e, ..)| *e as i32).collect::<Int32Array>()),
        Arc::new(rows().map(|(_, _, i, _)| i as i32).collect::<Int32Array>()),
        Arc::new(StringArray::from_iter_values(rows().map(|(.., s)| code(s.anchor)))),
        Arc::new(StringArray::from_iter_values(rows().map(|(.., s)| code(s.positive)))),
        Arc::new(negatives.finish()),
        Arc::new(hardness.finish()),
    ];
    let list = |t: DataType| DataType::List(Arc::new(Field::new("item", t, true)));
    let schema = Schema::new(vec![
        Field::new("split", DataType::Utf8, false),
        Field::new("epoch", DataType::Int32, false),
        Field::new("position", DataType::Int32, false),
        Field::new("anchor", DataType::Utf8, false),
        Field::new("positive", DataType::Utf8, false),
        Field::new("negatives", list(DataType::Utf8), false),
        Field::new("hardness", list(DataType::Int32), false),
    ]);
    Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
}
