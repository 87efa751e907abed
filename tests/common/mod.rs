//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

use arrow::util::display::array_value_to_string;
use datafusion::prelude::SessionContext;
use std::path::PathBuf;

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
