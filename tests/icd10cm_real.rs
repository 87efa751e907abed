//! The real ICD-10-CM tabular list through ingest and build: ignored (saying why) where
//! `scripts/fetch_icd10cm.sh` has not fetched it.

mod common;

use common::{build_and_open, counts, rows};
use naics_pipeline::ingest;

/// The real ICD-10-CM tabular list (`scripts/fetch_icd10cm.sh`; `.ci/run` fetches it): counts
/// pinned, the hardness counts computed, one anchor's view rows against its group counts.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    not(has_icd10cm_xml),
    ignore = "no data/icd10cm/icd10cm-tabular-April-1-2026.xml: run scripts/fetch_icd10cm.sh, then touch tests/build.rs"
)]
async fn icd10cm_real_tree() {
    let xml = common::repo().join("data/icd10cm/icd10cm-tabular-April-1-2026.xml");
    let dir = tempfile::tempdir().unwrap();
    let s = ingest::run_icd10cm(&xml, dir.path(), 0.1).unwrap();
    assert_eq!((s.codes, s.index_entries, s.held_out), (47_200, 12_574, 1_302));
    assert_eq!((s.exclusion_pairs, s.codes_with_exclusions), (13_121, 3_474));
    let ctx = build_and_open(dir.path(), naics_pipeline::build::ALL_PAIRS_MAX_CODES).await;
    let depths = counts(
        &ctx,
        "SELECT CAST(depth AS VARCHAR), count(*) FROM naics_codes GROUP BY 1 ORDER BY 1",
    )
    .await;
    let expected = [
        ("0", 22),
        ("1", 297),
        ("2", 1_918),
        ("3", 10_096),
        ("4", 14_578),
        ("5", 20_109),
        ("6", 180),
    ];
    assert_eq!(
        depths,
        expected.iter().map(|(d, n)| (d.to_string(), *n)).collect::<Vec<_>>()
    );
    // 47,200 x 47,199 ordered pairs, counted from the groups.
    let total = counts(&ctx, "SELECT 'n', CAST(sum(codes) AS BIGINT) FROM anchor_groups").await;
    assert_eq!(total[0].1, 47_200 * 47_199);
    let per_hardness = counts(&ctx, "SELECT 'n', count(*) FROM triplet_counts").await;
    assert_eq!(per_hardness[0].1, 8);
    // One anchor through the `distances` view against its group counts (a filter on `idx_i`
    // reaches the view's inner aggregation; one on `code_i` would compute every pair).
    let idx = &rows(&ctx, "SELECT \"index\" FROM naics_codes WHERE code = 'E08.32'").await[0][0];
    let view = counts(
        &ctx,
        &format!(
            "SELECT concat(relation, ' ', CAST(excluded AS VARCHAR)), count(*) FROM distances WHERE idx_i = {idx} GROUP BY 1 ORDER BY 1"
        ),
    )
    .await;
    let groups = counts(
        &ctx,
        "SELECT concat(relation, ' ', CAST(excluded AS VARCHAR)), CAST(sum(codes) AS BIGINT) FROM anchor_groups WHERE anchor = 'E08.32' GROUP BY 1 ORDER BY 1",
    )
    .await;
    assert_eq!(view, groups);
}
