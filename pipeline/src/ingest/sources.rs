//! Readers for the four Census files. Each returns plain rows, tagged with the row number a
//! spreadsheet shows, so that every later check can point the user at the offending line.

use crate::error::input_error;
use anyhow::{Context, Result};
use calamine::{Data, Reader, open_workbook_auto};
use std::path::Path;

/// One data row of a source file: its 1-based row number and its cells as text.
#[derive(Debug, Clone)]
pub struct SourceRow {
    pub row: usize,
    pub cells: Vec<String>,
}

/// Reads a sheet of an xlsx workbook, checking the header row. `sheet` = None takes the first
/// sheet (used for the official cross-reference workbook, whose sheet name varies).
pub fn read_xlsx(path: &Path, sheet: Option<&str>, header: &[&str]) -> Result<Vec<SourceRow>> {
    let mut book = open_workbook_auto(path)
        .map_err(|e| input_error(path, None, format!("cannot open as an xlsx workbook: {e}")))?;
    let names = book.sheet_names();
    let name = match sheet {
        Some(wanted) if names.iter().any(|n| n == wanted) => wanted.to_string(),
        Some(wanted) => {
            return Err(input_error(
                path,
                None,
                format!("expected a sheet named `{wanted}`, found {names:?}"),
            ));
        }
        None => names
            .first()
            .cloned()
            .ok_or_else(|| input_error(path, None, "the workbook has no sheet"))?,
    };
    let range = book
        .worksheet_range(&name)
        .map_err(|e| input_error(path, None, format!("cannot read sheet `{name}`: {e}")))?;
    let first_row = range.start().map(|(r, _)| r as usize + 1).unwrap_or(1);
    let rows = range.rows().enumerate().map(|(i, cells)| SourceRow {
        row: first_row + i,
        cells: cells.iter().map(cell_text).collect(),
    });
    with_checked_header(path, rows, header)
}

/// Reads a CSV file with a header row.
pub fn read_csv(path: &Path, header: &[&str]) -> Result<Vec<SourceRow>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_path(path)
        .map_err(|e| input_error(path, None, format!("cannot open as CSV: {e}")))?;
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| input_error(path, Some(i + 1), format!("malformed CSV: {e}")))?;
        rows.push(SourceRow {
            row: i + 1,
            cells: record.iter().map(str::to_string).collect(),
        });
    }
    with_checked_header(path, rows.into_iter(), header)
}

/// Reads the cross-references from either the per-code CSV or the official one-sentence-per-row
/// xlsx; both have the columns `Code`, `Cross-Reference`.
pub fn read_cross_references(path: &Path) -> Result<Vec<SourceRow>> {
    const HEADER: [&str; 2] = ["Code", "Cross-Reference"];
    let is_xlsx = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("xlsx"));
    if is_xlsx {
        read_xlsx(path, None, &HEADER)
    } else {
        read_csv(path, &HEADER)
    }
}

/// Checks the first non-empty row against `header` (case and runs of white space ignored) and
/// returns the non-empty rows after it, padded to the header's width.
fn with_checked_header(path: &Path, rows: impl Iterator<Item = SourceRow>, header: &[&str]) -> Result<Vec<SourceRow>> {
    let mut rows = rows.filter(|r| r.cells.iter().any(|c| !c.trim().is_empty()));
    let first = rows
        .next()
        .ok_or_else(|| input_error(path, None, "the file is empty"))?;
    let found: Vec<String> = first
        .cells
        .iter()
        .take(header.len())
        .map(|c| normalize_header(c))
        .collect();
    let expected: Vec<String> = header.iter().map(|c| normalize_header(c)).collect();
    if found != expected {
        return Err(input_error(
            path,
            Some(first.row),
            format!(
                "expected the header {header:?}, found {:?}",
                &first.cells[..first.cells.len().min(header.len())]
            ),
        ));
    }
    Ok(rows
        .map(|mut r| {
            r.cells.resize(header.len().max(r.cells.len()), String::new());
            r
        })
        .collect())
}

fn normalize_header(cell: &str) -> String {
    cell.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// Cell contents as text; integral numbers without a decimal point (codes are stored as numbers).
fn cell_text(cell: &Data) -> String {
    match cell {
        Data::Empty => String::new(),
        Data::Int(i) => i.to_string(),
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        Data::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The file's bytes must exist and be readable before we blame its format.
pub fn require_file(path: &Path) -> Result<()> {
    std::fs::metadata(path)
        .map(|_| ())
        .with_context(|| format!("{}: cannot read the input file (does it exist?)", path.display()))
}
