//! `naics-pipeline sql` as a user runs it: one query, a file, output formats, errors, and the
//! interactive shell surviving a bad statement.

mod common;

use common::fixtures;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn pipeline(data: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_naics-pipeline"))
        .arg("--data")
        .arg(data)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.unwrap_or("").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn mini_data() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let input = fixtures().join("mini");
    let ingest = pipeline(dir.path(), &["ingest", "--input", input.to_str().unwrap()], None);
    assert!(ingest.status.success(), "{}", text(&ingest.stderr));
    assert!(text(&ingest.stdout).contains("14 codes"));
    let build = pipeline(dir.path(), &["build"], None);
    assert!(build.status.success(), "{}", text(&build.stderr));
    dir
}

#[test]
fn queries_formats_and_errors() {
    let dir = mini_data();
    let out = pipeline(
        dir.path(),
        &[
            "sql",
            "SELECT hardness, count(*) AS n FROM triplets GROUP BY 1 ORDER BY 1",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table.contains("| hardness | n") && table.contains("| 8        |"),
        "{table}"
    );

    let out = pipeline(
        dir.path(),
        &[
            "sql",
            "--format",
            "csv",
            "SELECT code, level FROM naics_codes WHERE level = 2 ORDER BY 1",
        ],
        None,
    );
    assert_eq!(text(&out.stdout), "code,level\n11,2\n31,2\n");
    let out = pipeline(
        dir.path(),
        &[
            "sql",
            "--format",
            "json",
            "SELECT code FROM naics_codes WHERE code = '311'",
        ],
        None,
    );
    assert_eq!(text(&out.stdout), "[{\"code\":\"311\"}]\n");

    let file = dir.path().join("q.sql");
    std::fs::write(&file, "-- two statements\nCREATE VIEW leaves AS SELECT * FROM naics_codes WHERE level = 6;\nSELECT count(*) AS n FROM leaves;\n").unwrap();
    let parquet = dir.path().join("n.parquet");
    let out = pipeline(
        dir.path(),
        &[
            "sql",
            "-f",
            file.to_str().unwrap(),
            "--format",
            "parquet",
            "-o",
            parquet.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let read = pipeline(
        dir.path(),
        &[
            "sql",
            "--format",
            "csv",
            &format!("SELECT n FROM '{}'", parquet.display()),
        ],
        None,
    );
    assert_eq!(text(&read.stdout), "n\n3\n", "{}", text(&read.stderr));

    let out = pipeline(dir.path(), &["sql", "--format", "parquet", "SELECT 1"], None);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("--format parquet needs an output file"));

    let out = pipeline(dir.path(), &["sql", "SELECT nope FROM distances"], None);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("nope") && err.contains("in statement: SELECT nope FROM distances"),
        "{err}"
    );
}

#[test]
fn interactive_shell_survives_errors() {
    let dir = mini_data();
    let session = "\\d\n\\d positives\nSELECT count(*)\n  AS n FROM positives;\nSELECT broken FROM;\n\\d nosuch\n\\x\nSELECT 40 + 2 AS answer;\n\\q\n";
    let out = pipeline(dir.path(), &["sql"], Some(session));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    for table in [
        "ancestors",
        "distances",
        "exclusions",
        "hardness_rules",
        "naics_codes",
        "positives",
        "triplets",
    ] {
        assert!(stdout.contains(&format!("| {table}")), "\\d lacks {table}: {stdout}");
    }
    assert!(stdout.contains("| VIEW"), "{stdout}");
    assert!(stdout.contains("| anchor_level"), "{stdout}");
    assert!(stdout.contains("| 92 |"), "multi-line statement: {stdout}");
    assert!(
        stdout.contains("| 42     |"),
        "the shell went on after errors: {stdout}"
    );
    assert!(stderr.contains("in statement: SELECT broken FROM"), "{stderr}");
    assert!(stderr.contains("no table or view named `nosuch`"), "{stderr}");
    assert!(stderr.contains("unknown command `\\x`"), "{stderr}");
}

#[test]
fn materialized_triplets_are_partitioned_by_hardness() {
    let dir = mini_data();
    let out = pipeline(dir.path(), &["build", "--materialize-triplets"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let parts = dir.path().join("tables/triplets");
    for h in 1..=8 {
        assert!(
            parts.join(format!("hardness={h}")).is_dir(),
            "no partition hardness={h}"
        );
    }
    let q = "SELECT (SELECT count(*) FROM triplets_materialized) = (SELECT count(*) FROM triplets) AS same, \
             (SELECT count(*) FROM triplets_materialized WHERE hardness = 8) AS eight";
    let out = pipeline(dir.path(), &["sql", "--format", "csv", q], None);
    let expected = pipeline(
        dir.path(),
        &[
            "sql",
            "--format",
            "csv",
            "SELECT count(*) AS eight FROM triplets WHERE hardness = 8",
        ],
        None,
    );
    let eight = text(&expected.stdout).lines().nth(1).unwrap().to_string();
    assert_eq!(
        text(&out.stdout),
        format!("same,eight\ntrue,{eight}\n"),
        "{}",
        text(&out.stderr)
    );
}
