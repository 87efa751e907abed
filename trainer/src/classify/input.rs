//! The rows `classify` reads: CSV, JSON lines or Parquet, streamed in batches of Arrow columns.
//! A row that cannot be read as text (bytes that are not UTF-8, a line that is not a JSON
//! object) does not stop the run: it comes with the reason, and is written out with it (bytes
//! that are not UTF-8 replaced by U+FFFD in CSV and JSON lines, so that its other fields stay).
//!
//! Column types: Parquet's are kept as they are; CSV's are all text (an id like `0042` keeps its
//! zeros); JSON lines take their columns from the keys of the first batch, strings as text and
//! other values as their JSON text (keys first seen later are left out).

use anyhow::{Context, Result, bail};
use arrow::array::{Array, ArrayRef, RecordBatch, StringArray, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
    Parquet,
}

impl Format {
    /// `given`, or the format the file name's extension says.
    pub fn of(path: &Path, given: Option<Format>) -> Result<Format> {
        if let Some(f) = given {
            return Ok(f);
        }
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        Ok(match ext.as_str() {
            "csv" => Format::Csv,
            "jsonl" | "ndjson" | "json" => Format::Jsonl,
            "parquet" => Format::Parquet,
            _ => bail!(
                "{}: cannot tell the format from the extension `.{ext}`; name it with --format csv, jsonl or parquet",
                path.display()
            ),
        })
    }
}

/// One batch of rows, with why each row could not be read (None: read).
pub struct Rows {
    pub batch: RecordBatch,
    pub unreadable: Vec<Option<String>>,
}

/// An open input: its columns, and its rows in batches.
pub struct Input {
    pub schema: SchemaRef,
    /// The number of rows, where the file says it up front (Parquet).
    pub rows: Option<u64>,
    pub batches: Box<dyn Iterator<Item = Result<Rows>>>,
}

/// Opens `path`; the text column must be among its columns (an error names the ones it has).
pub fn open(path: &Path, format: Format, text_column: &str, batch_rows: usize) -> Result<Input> {
    let file = std::fs::File::open(path).with_context(|| format!("{}: cannot open the input", path.display()))?;
    let input = match format {
        Format::Csv => csv(file, text_column, batch_rows)?,
        Format::Jsonl => jsonl(file, batch_rows)?,
        Format::Parquet => parquet(file, text_column, batch_rows)
            .with_context(|| format!("{}: not a readable Parquet file", path.display()))?,
    };
    if input.schema.index_of(text_column).is_err() {
        let names: Vec<&str> = input.schema.fields().iter().map(|f| f.name().as_str()).collect();
        bail!(
            "{}: no column `{text_column}` (it has {}); name the text column with --text-column",
            path.display(),
            names.join(", ")
        );
    }
    Ok(input)
}

/// The texts of a batch's text column: each a text, or why the row has none.
pub fn texts(rows: &Rows, column: usize) -> Vec<Result<String, String>> {
    let values = rows.batch.column(column);
    let strings = values.as_any().downcast_ref::<StringArray>();
    (0..rows.batch.num_rows())
        .map(|r| {
            if let Some(why) = &rows.unreadable[r] {
                return Err(why.clone());
            }
            text_of(strings.filter(|s| s.is_valid(r)).map(|s| s.value(r)))
        })
        .collect()
}

/// A row's text, or why it has none (a null, or only white space).
pub fn text_of(value: Option<&str>) -> Result<String, String> {
    match value {
        Some(t) if !t.trim().is_empty() => Ok(t.to_string()),
        Some(_) => Err("empty text".to_string()),
        None => Err("no text (null)".to_string()),
    }
}

/// Columns of text, all nullable.
fn text_schema(names: &[String]) -> SchemaRef {
    Arc::new(Schema::new(
        names
            .iter()
            .map(|n| Field::new(n, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ))
}

/// One batch of text columns read row by row.
fn rows(schema: &SchemaRef, arrays: Vec<ArrayRef>, unreadable: Vec<Option<String>>) -> Result<Rows> {
    Ok(Rows {
        batch: RecordBatch::try_new(schema.clone(), arrays)?,
        unreadable,
    })
}

/// An input whose row count is known only at its end (CSV, JSON lines).
fn streamed(schema: SchemaRef, batches: impl Iterator<Item = Result<Rows>> + 'static) -> Input {
    Input {
        schema,
        rows: None,
        batches: Box::new(batches),
    }
}

/// A column of optional strings.
fn strings(values: &[Option<String>]) -> ArrayRef {
    Arc::new(values.iter().map(Option::as_deref).collect::<StringArray>())
}

fn csv(file: std::fs::File, text_column: &str, batch_rows: usize) -> Result<Input> {
    let mut reader = ::csv::ReaderBuilder::new().flexible(true).from_reader(file);
    let names: Vec<String> = reader
        .byte_headers()
        .context("reading the CSV header")?
        .iter()
        .map(|h| String::from_utf8_lossy(h).into_owned())
        .collect();
    let text = names.iter().position(|n| n == text_column);
    let schema = text_schema(&names);
    let batch_schema = schema.clone();
    let mut records = reader.into_byte_records();
    let mut line = 1;
    let batches = std::iter::from_fn(move || {
        let mut columns: Vec<StringBuilder> = (0..batch_schema.fields().len()).map(|_| StringBuilder::new()).collect();
        let mut unreadable = Vec::new();
        for record in records.by_ref().take(batch_rows) {
            line += 1;
            let mut why = None;
            match record {
                Ok(record) => {
                    for (c, builder) in columns.iter_mut().enumerate() {
                        let Some(bytes) = record.get(c) else {
                            builder.append_null();
                            continue;
                        };
                        // Bytes that are not UTF-8 are replaced; in the text, they make the row's error.
                        if let (Err(e), true) = (std::str::from_utf8(bytes), Some(c) == text) {
                            why = Some(format!("line {line}: the text is not UTF-8 ({e})"));
                        }
                        builder.append_value(String::from_utf8_lossy(bytes));
                    }
                }
                Err(e) => {
                    why = Some(format!("line {line}: not a CSV record ({e})"));
                    columns.iter_mut().for_each(StringBuilder::append_null);
                }
            }
            unreadable.push(why);
        }
        if unreadable.is_empty() {
            return None;
        }
        let arrays: Vec<ArrayRef> = columns.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef).collect();
        Some(rows(&batch_schema, arrays, unreadable))
    });
    Ok(streamed(schema, batches))
}

/// A JSON object's fields in the order the line gives them (serde_json's map sorts its keys).
#[derive(Default)]
struct Fields(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for Fields {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Fields, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Fields;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Fields, M::Error> {
                let mut fields = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    fields.push(entry);
                }
                Ok(Fields(fields))
            }
        }
        d.deserialize_map(Visit)
    }
}

impl Fields {
    fn get(&self, name: &str) -> Option<&serde_json::Value> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

/// One JSON line: its fields (bytes that are not UTF-8 replaced, so that the other fields are
/// kept), and why its text cannot be coded, if it cannot.
fn json_object(line: &[u8]) -> (Fields, Option<String>) {
    let (text, why) = match std::str::from_utf8(line) {
        Ok(text) => (std::borrow::Cow::Borrowed(text), None),
        Err(e) => (String::from_utf8_lossy(line), Some(format!("not UTF-8 ({e})"))),
    };
    match serde_json::from_str(&text) {
        Ok(fields) => (fields, why),
        Err(e) => (Fields::default(), Some(format!("not a JSON object ({e})"))),
    }
}

/// A parsed JSON line: its fields, and why its text cannot be coded (the reason names the line).
type JsonRow = (Fields, Option<String>);

/// The next `n` non-blank lines of a JSON-lines file, parsed, or a read error.
fn json_rows(reader: &mut impl BufRead, n: usize, line: &mut usize) -> Result<Vec<JsonRow>> {
    let mut out = Vec::new();
    while out.len() < n {
        let mut buf = Vec::new();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        *line += 1;
        if !buf.iter().all(u8::is_ascii_whitespace) {
            let (fields, why) = json_object(&buf);
            out.push((fields, why.map(|why| format!("line {line}: {why}"))));
        }
    }
    Ok(out)
}

fn jsonl(file: std::fs::File, batch_rows: usize) -> Result<Input> {
    let mut reader = BufReader::new(file);
    let mut line = 0;
    let first = json_rows(&mut reader, batch_rows, &mut line)?;
    let mut names: Vec<String> = Vec::new();
    for (fields, _) in &first {
        for (k, _) in &fields.0 {
            if !names.contains(k) {
                names.push(k.clone());
            }
        }
    }
    let schema = text_schema(&names);
    let batch_schema = schema.clone();
    let mut pending = Some(first);
    let batches = std::iter::from_fn(move || {
        let parsed = match pending.take() {
            Some(parsed) => parsed,
            None => match json_rows(&mut reader, batch_rows, &mut line) {
                Ok(parsed) => parsed,
                Err(e) => return Some(Err(e)),
            },
        };
        if parsed.is_empty() {
            return None;
        }
        let mut values: Vec<Vec<Option<String>>> = vec![Vec::with_capacity(parsed.len()); names.len()];
        let mut unreadable = Vec::with_capacity(parsed.len());
        for (fields, why) in parsed {
            for (c, name) in names.iter().enumerate() {
                values[c].push(match fields.get(name) {
                    None | Some(serde_json::Value::Null) => None,
                    Some(serde_json::Value::String(s)) => Some(s.clone()),
                    Some(other) => Some(other.to_string()),
                });
            }
            unreadable.push(why);
        }
        let arrays: Vec<ArrayRef> = values.iter().map(|v| strings(v)).collect();
        Some(rows(&batch_schema, arrays, unreadable))
    });
    Ok(streamed(schema, batches))
}

fn parquet(file: std::fs::File, text_column: &str, batch_rows: usize) -> Result<Input> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?.with_batch_size(batch_rows);
    let rows = builder.metadata().file_metadata().num_rows() as u64;
    let original = builder.schema().clone();
    let text = original.index_of(text_column).ok();
    // The text column as UTF-8 text: strings of any layout cast, binary checked row by row.
    let fields: Vec<Field> = original
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            if Some(i) == text {
                Field::new(f.name(), DataType::Utf8, true)
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    if let Some(i) = text {
        let t = original.field(i).data_type();
        if !matches!(
            t,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Binary | DataType::LargeBinary
        ) {
            bail!("the text column `{text_column}` holds {t}, not text");
        }
    }
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    let batch_schema = schema.clone();
    let reader = builder.build()?;
    let batches = reader.map(move |batch| {
        let batch = batch?;
        let mut unreadable = vec![None; batch.num_rows()];
        let mut columns = batch.columns().to_vec();
        if let Some(i) = text {
            columns[i] = text_array(&columns[i], &mut unreadable)?;
        }
        Ok(Rows {
            batch: RecordBatch::try_new(batch_schema.clone(), columns)?,
            unreadable,
        })
    });
    Ok(Input {
        schema,
        rows: Some(rows),
        batches: Box::new(batches),
    })
}

/// A string or binary column as UTF-8 strings; binary values that are not UTF-8 become nulls,
/// their rows marked unreadable.
fn text_array(values: &ArrayRef, unreadable: &mut [Option<String>]) -> Result<ArrayRef> {
    if !matches!(values.data_type(), DataType::Binary | DataType::LargeBinary) {
        return Ok(arrow::compute::cast(values, &DataType::Utf8)?);
    }
    let binary = arrow::compute::cast(values, &DataType::LargeBinary)?;
    let binary = binary
        .as_any()
        .downcast_ref::<arrow::array::LargeBinaryArray>()
        .expect("cast to LargeBinary");
    let texts: Vec<Option<String>> = (0..binary.len())
        .map(|r| {
            if binary.is_null(r) {
                return None;
            }
            match std::str::from_utf8(binary.value(r)) {
                Ok(s) => Some(s.to_string()),
                Err(e) => {
                    unreadable[r] = Some(format!("the text is not UTF-8 ({e})"));
                    None
                }
            }
        })
        .collect();
    Ok(strings(&texts))
}
