//! Any classification tree as one table: `code`, `parent` (empty at the roots), `title`, and
//! optionally `description`, `examples` (a list), `excluded` (text) and `excluded_codes` (a
//! list); plus optional free-text entries (`code`, `text`) for held-out retrieval. CSV (lists as
//! `|`-separated text) or Parquet (lists as lists of strings, or `|`-separated text). Every
//! adapter (NAICS's Census files, ICD-10-CM's XML) produces these rows; [`into_codes`] checks
//! them and numbers the codes in pre-order.

use super::NaicsCode;
use super::codes::TreeCode;
use crate::error::input_error;
use crate::tree;
use anyhow::{Context, Result};
use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::HashMap;
use std::path::Path;

/// One code of a taxonomy as read, with the row it came from (1-based; a CSV's header is row 1).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    pub row: usize,
    pub code: String,
    pub parent: Option<String>,
    pub title: String,
    pub description: String,
    pub examples: Vec<String>,
    pub excluded: String,
    pub excluded_codes: Vec<String>,
}

/// A free-text entry: a text known to belong to `code`.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub row: usize,
    pub code: String,
    pub text: String,
}

const COLUMNS: [&str; 7] = [
    "code",
    "parent",
    "title",
    "description",
    "examples",
    "excluded",
    "excluded_codes",
];
const REQUIRED: usize = 3;

/// A table of named text columns, each cell a list (scalars are one-item lists; empty: none).
struct Cells {
    rows: usize,
    columns: HashMap<String, Vec<Vec<String>>>,
}

impl Cells {
    fn get(&self, column: &str, row: usize) -> &[String] {
        self.columns.get(column).map_or(&[], |c| &c[row])
    }
    fn text(&self, column: &str, row: usize) -> String {
        self.get(column, row).join("|").trim().to_string()
    }
}

fn is_parquet(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
}

/// Reads the columns present among `wanted`; the first `required` must be there.
fn read_cells(path: &Path, wanted: &[&str], required: usize) -> Result<Cells> {
    super::sources::require_file(path)?;
    let cells = if is_parquet(path) {
        read_parquet(path, wanted)?
    } else {
        read_csv(path, wanted)?
    };
    if let Some(missing) = wanted[..required].iter().find(|c| !cells.columns.contains_key(**c)) {
        return Err(input_error(
            path,
            None,
            format!("expected a column `{missing}` (columns: {})", wanted.join(", ")),
        ));
    }
    Ok(cells)
}

fn split_list(text: &str) -> Vec<String> {
    text.split('|')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn read_csv(path: &Path, wanted: &[&str]) -> Result<Cells> {
    let mut reader =
        csv::Reader::from_path(path).map_err(|e| input_error(path, None, format!("cannot open as CSV: {e}")))?;
    let header = reader
        .headers()
        .map_err(|e| input_error(path, Some(1), format!("malformed CSV header: {e}")))?
        .clone();
    let found: Vec<(usize, String)> = header
        .iter()
        .enumerate()
        .filter(|(_, h)| wanted.contains(&h.trim()))
        .map(|(i, h)| (i, h.trim().to_string()))
        .collect();
    let mut columns: HashMap<String, Vec<Vec<String>>> = found.iter().map(|(_, h)| (h.clone(), Vec::new())).collect();
    let mut rows = 0;
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| input_error(path, Some(i + 2), format!("malformed CSV: {e}")))?;
        for (k, name) in &found {
            columns
                .get_mut(name)
                .expect("listed")
                .push(split_list(record.get(*k).unwrap_or("")));
        }
        rows += 1;
    }
    Ok(Cells { rows, columns })
}

fn read_parquet(path: &Path, wanted: &[&str]) -> Result<Cells> {
    let file = std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| input_error(path, None, format!("cannot read as Parquet: {e}")))?
        .build()?;
    let mut columns: HashMap<String, Vec<Vec<String>>> = HashMap::new();
    let mut rows = 0;
    for batch in reader {
        let batch: RecordBatch = batch.map_err(|e| input_error(path, None, format!("cannot read as Parquet: {e}")))?;
        for name in wanted {
            if let Some(col) = batch.column_by_name(name) {
                let lists = cell_lists(col).map_err(|e| input_error(path, None, format!("column `{name}`: {e}")))?;
                columns.entry(name.to_string()).or_default().extend(lists);
            }
        }
        rows += batch.num_rows();
    }
    Ok(Cells { rows, columns })
}

/// A Parquet column as lists of strings: a list column item by item, a scalar split on `|`.
fn cell_lists(col: &ArrayRef) -> Result<Vec<Vec<String>>> {
    let texts = |a: &ArrayRef| -> Result<Vec<Option<String>>> {
        let a = arrow::compute::cast(a, &DataType::Utf8).context("expected text")?;
        let a = a.as_string::<i32>();
        Ok((0..a.len())
            .map(|i| (!a.is_null(i)).then(|| a.value(i).to_string()))
            .collect())
    };
    match col.data_type() {
        DataType::List(_) | DataType::LargeList(_) => {
            let col = arrow::compute::cast(col, &DataType::new_list(DataType::Utf8, true))?;
            let lists = col.as_list::<i32>();
            (0..lists.len())
                .map(|i| {
                    if lists.is_null(i) {
                        return Ok(Vec::new());
                    }
                    Ok(texts(&lists.value(i))?
                        .into_iter()
                        .flatten()
                        .map(|s| s.trim().to_string())
                        .collect())
                })
                .collect()
        }
        _ => Ok(texts(col)?
            .into_iter()
            .map(|t| t.map_or_else(Vec::new, |t| split_list(&t)))
            .collect()),
    }
}

/// Row number as a user sees it: CSV counts its header, Parquet counts records from 1.
fn row_number(path: &Path, i: usize) -> usize {
    if is_parquet(path) { i + 1 } else { i + 2 }
}

/// The taxonomy table's rows.
pub fn read_table(path: &Path) -> Result<Vec<Row>> {
    let cells = read_cells(path, &COLUMNS, REQUIRED)?;
    Ok((0..cells.rows)
        .map(|i| Row {
            row: row_number(path, i),
            code: cells.text("code", i),
            parent: Some(cells.text("parent", i)).filter(|p| !p.is_empty()),
            title: cells.text("title", i),
            description: cells.text("description", i),
            examples: cells.get("examples", i).to_vec(),
            excluded: cells.text("excluded", i),
            excluded_codes: cells.get("excluded_codes", i).to_vec(),
        })
        .collect())
}

/// The free-text entries (`code`, `text`).
pub fn read_entries(path: &Path) -> Result<Vec<Entry>> {
    let cells = read_cells(path, &["code", "text"], 2)?;
    Ok((0..cells.rows)
        .map(|i| Entry {
            row: row_number(path, i),
            code: cells.text("code", i),
            text: cells.text("text", i),
        })
        .collect())
}

/// Checks the rows (unique non-empty codes, titles, parents that exist, no cycle, excluded codes
/// that exist) and returns them as `naics_codes` rows in pre-order: each root, then its
/// children's subtrees in the order the table lists them. Depth 0 at the roots; level = depth +
/// 1; the "sector" of a code is its root.
pub fn into_codes(path: &Path, rows: Vec<Row>) -> Result<Vec<NaicsCode>> {
    let mut position: HashMap<&str, usize> = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        if r.code.is_empty() {
            return Err(input_error(path, Some(r.row), "empty code"));
        }
        if let Some(first) = position.insert(&r.code, i) {
            return Err(input_error(
                path,
                Some(r.row),
                format!("duplicate code {} (first seen on row {})", r.code, rows[first].row),
            ));
        }
        if r.title.is_empty() {
            return Err(input_error(
                path,
                Some(r.row),
                format!("expected a title for code {}", r.code),
            ));
        }
    }
    let mut parent: Vec<Option<usize>> = Vec::with_capacity(rows.len());
    for r in &rows {
        parent.push(match &r.parent {
            None => None,
            Some(p) => Some(*position.get(p.as_str()).ok_or_else(|| {
                input_error(
                    path,
                    Some(r.row),
                    format!("code {} has no parent: {p} is not in the table", r.code),
                )
            })?),
        });
        if let Some(x) = r.excluded_codes.iter().find(|x| !position.contains_key(x.as_str())) {
            return Err(input_error(
                path,
                Some(r.row),
                format!("code {} excludes {x}, which is not in the table", r.code),
            ));
        }
    }
    let order = tree::preorder(&parent).map_err(|i| {
        let mut cycle = vec![rows[i].code.as_str()];
        let mut c = i;
        while let Some(p) = parent[c] {
            cycle.push(&rows[p].code);
            if p == i || cycle.len() > rows.len() {
                break;
            }
            c = p;
        }
        input_error(
            path,
            Some(rows[i].row),
            format!(
                "code {} is on a cycle of parents ({}): no root above it",
                rows[i].code,
                cycle.join(" -> ")
            ),
        )
    })?;
    let mut depth = vec![0u8; rows.len()];
    let mut root = vec![0usize; rows.len()];
    for &i in &order {
        if let Some(p) = parent[i] {
            depth[i] = depth[p] + 1;
            root[i] = root[p];
        } else {
            root[i] = i;
        }
    }
    let root_code: Vec<String> = root.iter().map(|&r| rows[r].code.clone()).collect();
    let mut rows: Vec<Option<Row>> = rows.into_iter().map(Some).collect();
    Ok(order
        .iter()
        .enumerate()
        .map(|(index, &i)| {
            let r = rows[i].take().expect("each row once");
            NaicsCode {
                tree: TreeCode {
                    index,
                    level: depth[i] + 1,
                    depth: depth[i],
                    sector: root_code[i].clone(),
                    code: r.code,
                    parent: r.parent,
                    title: r.title,
                },
                description: r.description,
                examples: r.examples,
                cited_examples: 0,
                excluded: r.excluded,
                excluded_codes: r.excluded_codes,
            }
        })
        .collect())
}
