//! The code tree as the codes file defines it: Census order, levels, sectors and parents.

use crate::error::input_error;
use crate::ingest::sources::SourceRow;
use anyhow::Result;
use std::collections::HashMap;
use std::path::Path;

/// One NAICS code of the codes file, before its texts are attached.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeCode {
    /// Census sequence number minus one.
    pub index: usize,
    pub code: String,
    pub level: u8,
    /// Generations below the root (a NAICS sector is depth 0, level 2).
    pub depth: u8,
    pub sector: String,
    pub parent: Option<String>,
    pub title: String,
}

/// Parses a code cell: 2- to 6-digit codes, and the three sector ranges, which become their
/// first number (`31-33` -> `31`). Returns the code and its level.
pub fn parse_code(cell: &str) -> Option<(String, u8)> {
    let cell = cell.trim();
    match cell {
        "31-33" | "44-45" | "48-49" => return Some((cell[..2].to_string(), 2)),
        _ => {}
    }
    let ok = (2..=6).contains(&cell.len()) && cell.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| (cell.to_string(), cell.len() as u8))
}

/// The sector of a code: its first two digits, with 32, 33 -> 31; 45 -> 44; 49 -> 48.
pub fn sector_of(code: &str) -> String {
    match &code[..2] {
        "32" | "33" => "31".into(),
        "45" => "44".into(),
        "49" => "48".into(),
        s => s.into(),
    }
}

/// The parent of a code: its first L-1 digits from level 4 down, its sector at level 3.
pub fn parent_of(code: &str, level: u8) -> Option<String> {
    match level {
        2 => None,
        3 => Some(sector_of(code)),
        _ => Some(code[..code.len() - 1].to_string()),
    }
}

/// Reads the rows of the codes file (Seq. No., Code, Title) into the tree, checking that
/// codes are well formed and unique and that every parent exists.
pub fn build_tree(path: &Path, rows: &[SourceRow]) -> Result<Vec<TreeCode>> {
    let mut codes: Vec<TreeCode> = Vec::with_capacity(rows.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut seen_seq: HashMap<usize, usize> = HashMap::new();
    for r in rows {
        let seq: usize = r.cells[0].trim().parse().ok().filter(|s| *s >= 1).ok_or_else(|| {
            input_error(
                path,
                Some(r.row),
                format!("expected a sequence number >= 1, found `{}`", r.cells[0]),
            )
        })?;
        let (code, level) = parse_code(&r.cells[1]).ok_or_else(|| {
            input_error(
                path,
                Some(r.row),
                format!("expected a 2- to 6-digit NAICS code, found `{}`", r.cells[1]),
            )
        })?;
        if let Some(first) = seen.insert(code.clone(), r.row) {
            return Err(input_error(
                path,
                Some(r.row),
                format!("duplicate code {code} (first seen on row {first})"),
            ));
        }
        if let Some(first) = seen_seq.insert(seq, r.row) {
            return Err(input_error(
                path,
                Some(r.row),
                format!("duplicate Seq. No. {seq} (first seen on row {first})"),
            ));
        }
        let title = r.cells[2].trim().to_string();
        if title.is_empty() {
            return Err(input_error(
                path,
                Some(r.row),
                format!("expected a title for code {code}"),
            ));
        }
        let sector = sector_of(&code);
        if level == 2 && sector != code {
            return Err(input_error(
                path,
                Some(r.row),
                format!("{code} is not a sector; it belongs to sector {sector}"),
            ));
        }
        let parent = parent_of(&code, level);
        codes.push(TreeCode {
            index: seq - 1,
            code,
            level,
            depth: level - 2,
            sector,
            parent,
            title,
        });
    }
    for (c, r) in codes.iter().zip(rows) {
        if let Some(parent) = c.parent.as_ref().filter(|p| !seen.contains_key(*p)) {
            return Err(input_error(
                path,
                Some(r.row),
                format!("code {} has no parent: {parent} is missing", c.code),
            ));
        }
    }
    codes.sort_by_key(|c| c.index);
    if let Some((pos, c)) = codes.iter().enumerate().find(|(pos, c)| c.index != *pos) {
        return Err(input_error(
            path,
            None,
            format!(
                "Seq. No. must run 1..{} without gaps; {} is missing",
                codes.len(),
                pos + 1
            ),
        )
        .context(format!("code {} has Seq. No. {}", c.code, c.index + 1)));
    }
    Ok(codes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(data: &[(&str, &str, &str)]) -> Vec<SourceRow> {
        data.iter()
            .enumerate()
            .map(|(i, (s, c, t))| SourceRow {
                row: i + 2,
                cells: vec![s.to_string(), c.to_string(), t.to_string()],
            })
            .collect()
    }

    #[test]
    fn sectors_ranges_and_parents() {
        let tree = build_tree(
            Path::new("codes.xlsx"),
            &rows(&[
                ("1", "31-33", "Manufacturing"),
                ("2", "321", "Wood"),
                ("3", "3211", "Sawmills"),
                ("4", "32111", "Saw"),
            ]),
        )
        .unwrap();
        assert_eq!(tree[0].code, "31");
        assert_eq!(tree[0].level, 2);
        assert_eq!(tree[1].sector, "31");
        assert_eq!(tree[1].parent.as_deref(), Some("31"));
        assert_eq!(tree[3].parent.as_deref(), Some("3211"));
        assert_eq!(sector_of("452111"), "44");
        assert_eq!(sector_of("493110"), "48");
    }

    #[test]
    fn bad_rows_are_named() {
        let err = |data: &[(&str, &str, &str)]| {
            build_tree(Path::new("codes.xlsx"), &rows(data))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(&[("1", "11", "A"), ("2", "11", "B")]),
            "codes.xlsx: row 3: duplicate code 11 (first seen on row 2)"
        );
        assert!(err(&[("1", "1x1", "A")]).contains("row 2: expected a 2- to 6-digit NAICS code, found `1x1`"));
        assert!(
            err(&[("1", "11", "A"), ("2", "1121", "B")]).contains("row 3: code 1121 has no parent: 112 is missing")
        );
        assert!(err(&[("x", "11", "A")]).contains("expected a sequence number"));
        assert!(err(&[("1", "32", "A")]).contains("32 is not a sector"));
    }
}
