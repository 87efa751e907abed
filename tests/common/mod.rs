//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

pub mod testvectors;

use arrow::util::display::array_value_to_string;
use datafusion::prelude::SessionContext;
use naics_common::config::{Loaded, load};
use naics_pipeline::ingest::{self, IngestPaths};
use naics_pipeline::session::{DEFAULT_MEMORY_LIMIT, DataDir};
use std::path::{Path, PathBuf};

/// The repository root (tests run from the crate folder).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn fixtures() -> PathBuf {
    repo().join("tests").join("fixtures")
}

/// Every row of a query's result, each cell as text.
pub async fn rows(ctx: &SessionContext, sql: &str) -> Vec<Vec<String>> {
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let mut out = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            out.push(
                b.columns()
                    .iter()
                    .map(|c| array_value_to_string(c, r).unwrap())
                    .collect(),
            );
        }
    }
    out
}

/// (key, count) rows of a `SELECT key, count(*) ... ORDER BY 1` query.
pub async fn counts(ctx: &SessionContext, sql: &str) -> Vec<(String, i64)> {
    rows(ctx, sql)
        .await
        .into_iter()
        .map(|r| (r[0].clone(), r[1].parse().unwrap()))
        .collect()
}

/// A scratch data folder holding the pipeline's tables of the Census files in `input` (ingest
/// with `holdout`, then build).
pub async fn tables(input: &Path, holdout: f64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    ingest::run(&IngestPaths::in_folder(input, dir.path()), holdout).unwrap();
    build_and_open(dir.path(), naics_pipeline::build::ALL_PAIRS_MAX_CODES).await;
    dir
}

/// Runs `build` over the ingested tables in `dir` (pairs stored up to `all_pairs_max_codes`
/// codes) and opens a session on them, outputs looked for under `dir/outputs`.
pub async fn build_and_open(dir: &Path, all_pairs_max_codes: usize) -> SessionContext {
    let data = DataDir(dir.to_path_buf());
    naics_pipeline::build::run(
        &data,
        &Default::default(),
        false,
        all_pairs_max_codes,
        DEFAULT_MEMORY_LIMIT,
    )
    .await
    .unwrap();
    open(dir, &dir.join("outputs")).await
}

/// A DataFusion session over the tables in `data`, outputs looked for under `outputs`.
pub async fn open(data: &Path, outputs: &Path) -> SessionContext {
    let data = DataDir(data.to_path_buf());
    naics_pipeline::session::open(&data, outputs, &Default::default(), DEFAULT_MEMORY_LIMIT)
        .await
        .unwrap()
}

/// The repository's configuration for `stage`, reading and writing under `dir` with the fetched
/// MiniLM, plus `extra` overrides.
pub fn config(dir: &Path, stage: &str, extra: &[&str]) -> Loaded {
    load(&repo().join("conf"), Some(stage), &overrides(dir, extra)).unwrap()
}

/// The overrides of [`config`]: `dir`'s tables and shards, the fetched MiniLM, then `extra`.
pub fn overrides(dir: &Path, extra: &[&str]) -> Vec<String> {
    let model = repo().join("data/models/all-MiniLM-L6-v2");
    assert!(
        model.join("tokenizer.json").exists(),
        "run `scripts/fetch_model.sh minilm` first (.ci/run does)"
    );
    let mut overrides = vec![
        format!("data.dir={}", dir.display()),
        format!("data.shards_dir={}", dir.join("shards").display()),
        format!("model.path={}", model.display()),
    ];
    overrides.extend(extra.iter().map(|s| s.to_string()));
    overrides
}

/// What the end-to-end tests train the mini tree with (`conf/profile/mini.yaml`, which the
/// Python package's tests use too): stage 3, a small head, a few short epochs.
pub const MINI: [&str; 1] = ["profile=mini"];

/// The configuration of [`MINI`] plus `extra` overrides.
pub fn mini_config(dir: &Path, extra: &[&str]) -> Loaded {
    config(dir, "03_stage_hard", &[&MINI[..], extra].concat())
}

/// A finished program's stdout, once it is asserted to have succeeded (its stdout and stderr
/// shown if not).
pub fn succeeded(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A program of the workspace, built beside the test binaries (`target/debug/NAME`).
pub fn program(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().and_then(Path::parent).unwrap().join(name);
    assert!(path.exists(), "{} missing: run `cargo build --bins`", path.display());
    path
}
