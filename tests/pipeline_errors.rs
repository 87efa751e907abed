//! Bad input: every error names the file, the row and what was expected, and no output file
//! is left behind.

mod common;

use common::fixtures;
use naics_pipeline::ingest::{self, IngestPaths};
use std::path::Path;

fn mini_paths(out: &Path) -> IngestPaths {
    IngestPaths::in_folder(&fixtures().join("mini"), out)
}

/// Runs ingest and returns its error, checking that nothing was written.
fn ingest_error(paths: &IngestPaths) -> String {
    let err = ingest::run(paths, 0.1).unwrap_err();
    let left: Vec<_> = std::fs::read_dir(&paths.out_dir)
        .map(|d| d.filter_map(|e| e.ok()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "output left behind: {left:?}");
    format!("{err:#}")
}

#[test]
fn the_official_cross_reference_xlsx_equals_the_per_code_csv() {
    let dir = tempfile::tempdir().unwrap();
    let (csv_codes, ..) = ingest::read_all(&mini_paths(dir.path()), 0.0).unwrap();
    let mut official = mini_paths(dir.path());
    official.cross_references = fixtures().join("cross_references_official.xlsx");
    let (xlsx_codes, ..) = ingest::read_all(&official, 0.0).unwrap();
    assert_eq!(csv_codes, xlsx_codes);
    let c = csv_codes.iter().find(|c| c.tree.code == "11112").unwrap();
    assert_eq!(c.excluded_codes, vec!["111110", "311111"]);
}

#[test]
fn wrong_sheet_header_and_parent() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut paths = mini_paths(&out);
    paths.codes = fixtures().join("codes_wrong_sheet.xlsx");
    let e = ingest_error(&paths);
    assert!(
        e.contains(
            "codes_wrong_sheet.xlsx: expected a sheet named `tbl_2022_title_description_coun`, found [\"Sheet1\"]"
        ),
        "{e}"
    );
    paths.codes = fixtures().join("codes_wrong_header.xlsx");
    let e = ingest_error(&paths);
    assert!(
        e.contains("codes_wrong_header.xlsx: row 1: expected the header [\"Seq. No.\", \"2022 NAICS US Code\""),
        "{e}"
    );
    paths.codes = fixtures().join("codes_missing_parent.xlsx");
    let e = ingest_error(&paths);
    assert!(
        e.contains("codes_missing_parent.xlsx: row 4: code 11111 has no parent: 1111 is missing"),
        "{e}"
    );
}

#[test]
fn unknown_codes_and_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut paths = mini_paths(&out);
    paths.index = fixtures().join("index_unknown_code.xlsx");
    let e = ingest_error(&paths);
    assert!(
        e.contains("index_unknown_code.xlsx: row 10: unknown code 999999: it is not in the codes file"),
        "{e}"
    );

    let mut paths = mini_paths(&out);
    let csv = dir.path().join("xref.csv");
    std::fs::write(&csv, "Code,Cross-Reference\n111110,fine\n777777,Unknown code here\n").unwrap();
    paths.cross_references = csv.clone();
    let e = ingest_error(&paths);
    assert!(e.contains("xref.csv: row 3: unknown code 777777"), "{e}");
    std::fs::write(&csv, "Code,Cross-Reference\n11x,malformed\n").unwrap();
    let e = ingest_error(&paths);
    assert!(
        e.contains("xref.csv: row 2: expected a 2- to 6-digit NAICS code, found `11x`"),
        "{e}"
    );
    std::fs::write(&csv, "Kode,Text\n").unwrap();
    assert!(ingest_error(&paths).contains("row 1: expected the header [\"Code\", \"Cross-Reference\"]"));

    let mut paths = mini_paths(&out);
    paths.descriptions = dir.path().join("missing.xlsx");
    let e = ingest_error(&paths);
    assert!(e.contains("missing.xlsx: cannot read the input file"), "{e}");
    std::fs::write(dir.path().join("missing.xlsx"), b"not a zip").unwrap();
    let e = ingest_error(&paths);
    assert!(e.contains("missing.xlsx: cannot open as an xlsx workbook"), "{e}");
}
