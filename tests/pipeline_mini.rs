//! The pipeline end to end on `fixtures/mini`, a 14-code Census release made by hand
//! (make_fixtures.py). The expected values below were worked out by hand from the issue's
//! definitions; a brute-force walk of the tree checks every pair besides.

mod common;

use common::{counts, fixtures, rows};
use naics_pipeline::ingest;
use naics_pipeline::session::{self, DEFAULT_MEMORY_LIMIT, DataDir};
use std::collections::HashMap;

async fn build_mini(holdout: f64) -> (tempfile::TempDir, datafusion::prelude::SessionContext) {
    let dir = common::tables(&fixtures().join("mini"), holdout).await;
    let data = DataDir(dir.path().to_path_buf());
    let ctx = session::open(
        &data,
        &dir.path().join("outputs"),
        &Default::default(),
        DEFAULT_MEMORY_LIMIT,
    )
    .await
    .unwrap();
    (dir, ctx)
}

#[tokio::test(flavor = "multi_thread")]
async fn ingest_applies_the_text_rules() {
    let (_dir, ctx) = build_mini(0.0).await;
    let codes = rows(&ctx, r#"SELECT "index", level, code, sector, coalesce(parent, '-'), title, description, examples, excluded, excluded_codes FROM naics_codes ORDER BY "index""#).await;
    assert_eq!(codes.len(), 14);
    let by_code: HashMap<&str, &Vec<String>> = codes.iter().map(|r| (r[2].as_str(), r)).collect();
    // The sector range becomes its first number, level 2, and is the sector of 311...
    assert_eq!(&by_code["31"][..5], &["9", "2", "31", "31", "-"]);
    assert_eq!(by_code["311"][4], "31");
    // Titles from the codes file, without the descriptions file's stray `T`.
    assert_eq!(by_code["111"][5], "Crop Production");
    // Heading dropped, HTML stripped, white space collapsed.
    assert_eq!(
        by_code["11"][6],
        "The Agriculture sector grows crops. Excluded are research farms. These establishments are classified in Industry 54171, Research."
    );
    assert_eq!(
        by_code["111"][6],
        "Industries in the Crop Production subsector grow crops mainly for food."
    );
    assert_eq!(
        by_code["31"][6],
        "The Manufacturing sector transforms materials. Milling; Logging, classified in Sector 11, Agriculture, is a \
         harvesting operation. Reselling is classified in Sector 44, Retail Trade."
    );
    // Pointers and NULL inherit from the child pointed to, or the first child.
    assert_eq!(
        by_code["11111"][6],
        "This industry comprises establishments growing soybeans."
    );
    assert_eq!(by_code["31111"][6], "This U.S. industry makes dog and cat food.");
    assert_eq!(by_code["112"][6], "This industry group raises cattle.");
    // The cross-reference heading is gone; illustrative examples joined the index entries.
    assert_eq!(by_code["111120"][6], "This industry grows oilseeds (except soybeans).");
    assert_eq!(
        by_code["111110"][7],
        "[Soybean farming, field and seed production, Soybeans grown in 31 greenhouses, Soybean farms, Soy seed production]"
    );
    // Exclusions: cross-references plus "classified in" sentences; known codes other than itself.
    assert_eq!(by_code["111110"][9], "[111120]");
    assert_eq!(by_code["11112"][9], "[111110, 311111]");
    assert_eq!(by_code["1121"][9], "[3111]");
    assert_eq!(by_code["11"][9], "[]");
    assert_eq!(
        by_code["31"][8],
        "Logging, classified in Sector 11, Agriculture, is a harvesting operation. Reselling is classified in Sector 44, Retail Trade."
    );
    assert_eq!(by_code["31"][9], "[11]");
}

#[tokio::test(flavor = "multi_thread")]
async fn holdout_is_deterministic_and_disjoint_from_examples() {
    let (_dir, ctx) = build_mini(0.5).await;
    let held = rows(&ctx, "SELECT code, text FROM naics_index_holdout ORDER BY code, text").await;
    let kept = rows(
        &ctx,
        "SELECT code, unnest(examples) FROM naics_codes WHERE level = 6 ORDER BY 1, 2",
    )
    .await;
    for h in &held {
        assert!(!kept.contains(h), "held-out entry {h:?} is also a training example");
        assert!(ingest::is_held_out(&h[0], &h[1], 0.5));
    }
    // Seven index entries in all; illustrative examples are never held out.
    let index_entries_kept = kept
        .iter()
        .filter(|r| !r[1].starts_with("Soybean farms") && r[1] != "Soy seed production")
        .count();
    assert_eq!(held.len() + index_entries_kept, 7);
    let (_dir2, ctx2) = build_mini(0.5).await;
    assert_eq!(
        rows(&ctx2, "SELECT code, text FROM naics_index_holdout ORDER BY code, text").await,
        held
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn distances_by_hand() {
    let (_dir, ctx) = build_mini(0.0).await;
    let from_soybean = rows(
        &ctx,
        "SELECT code_j, distance, relation, excluded FROM distances WHERE code_i = '111110' ORDER BY idx_j",
    )
    .await;
    let expected = [
        ("11", "3.5", "ancestor", "false"),
        ("111", "2.5", "ancestor", "false"),
        ("1111", "1.5", "grandparent", "false"),
        ("11111", "0.5", "parent", "false"),
        ("11112", "3.0", "ancestor_sibling", "true"),
        ("111120", "4.0", "cousin", "true"),
        ("112", "5.0", "ancestor_sibling", "false"),
        ("1121", "6.0", "cousin_removed", "false"),
        ("31", "10.0", "unrelated", "false"),
        ("311", "10.0", "unrelated", "false"),
        ("3111", "10.0", "unrelated", "false"),
        ("31111", "10.0", "unrelated", "false"),
        ("311111", "10.0", "unrelated", "false"),
    ];
    let expected: Vec<Vec<String>> = expected
        .iter()
        .map(|(c, d, r, e)| vec![c.to_string(), d.to_string(), r.to_string(), e.to_string()])
        .collect();
    assert_eq!(from_soybean, expected);
    assert_eq!(
        rows(
            &ctx,
            "SELECT distance, relation FROM distances WHERE code_i = '11111' AND code_j = '11112'"
        )
        .await,
        [["2.0", "sibling"]]
    );
    assert_eq!(
        rows(
            &ctx,
            "SELECT distance, relation FROM distances WHERE code_i = '11' AND code_j = '111110'"
        )
        .await,
        [["3.5", "descendant"]]
    );
    // 14 x 13 ordered pairs; 9 codes in sector 11 and 5 in sector 31 give 9*8 + 5*4 positives.
    assert_eq!(
        counts(&ctx, "SELECT 'all', count(*) FROM distances").await,
        [("all".into(), 182)]
    );
    assert_eq!(
        counts(&ctx, "SELECT 'all', count(*) FROM positives").await,
        [("all".into(), 92)]
    );
    // Five directed exclusions over four codes; the relation is symmetric.
    assert_eq!(
        counts(&ctx, "SELECT 'all', count(*) FROM exclusions").await,
        [("all".into(), 5)]
    );
    assert_eq!(
        counts(&ctx, "SELECT 'all', count(*) FROM distances WHERE excluded").await,
        [("all".into(), 10)]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hardness_by_hand() {
    let (_dir, ctx) = build_mini(0.0).await;
    // Anchor 111110, positive its parent 11111 (d = 0.5): twelve negatives.
    let got = counts(
        &ctx,
        "SELECT negative, hardness FROM triplets WHERE anchor = '111110' AND positive = '11111' ORDER BY negative_idx",
    )
    .await;
    let expected = [
        ("11", 4),     // 3.5 - 0.5 = 3.0
        ("111", 5),    // 2.0
        ("1111", 6),   // 1.0
        ("11112", 8),  // excluded: 11112 lists 111110
        ("111120", 8), // excluded: 111110 lists 111120
        ("112", 2),    // 4.5
        ("1121", 2),   // 5.5
        ("31", 1),
        ("311", 1),
        ("3111", 1),
        ("31111", 1),
        ("311111", 1),
    ];
    assert_eq!(
        got,
        expected.iter().map(|(c, h)| (c.to_string(), *h)).collect::<Vec<_>>()
    );
    // A sibling positive (d = 2): only farther codes qualify; 1111 at 1.5 does not.
    let got = counts(&ctx, "SELECT negative, hardness FROM triplets WHERE anchor = '11111' AND positive = '11112' AND negative LIKE '11%' ORDER BY negative_idx").await;
    // 11111 -> 11 is 2.5 (diff 0.5), 111 is 1.5 (no), 111110 is 0.5 (no), 111120 is 3.0 (diff 1), 112 is 4 (diff 2), 1121 is 5 (diff 3).
    let expected = [("11", 7), ("111120", 6), ("112", 5), ("1121", 4)];
    assert_eq!(
        got,
        expected.iter().map(|(c, h)| (c.to_string(), *h)).collect::<Vec<_>>()
    );
}

/// The tree distance from the definition, walking parents: independent of the SQL's joins.
fn brute_force_distance(parents: &HashMap<String, Option<String>>, a: &str, b: &str) -> f64 {
    let chain = |c: &str| {
        let mut out = vec![c.to_string()];
        while let Some(Some(p)) = parents.get(out.last().unwrap()) {
            out.push(p.clone());
        }
        out
    };
    let (ca, cb) = (chain(a), chain(b));
    let Some((ua, lca)) = ca.iter().enumerate().find(|(_, x)| cb.contains(x)) else {
        return 10.0;
    };
    let ub = cb.iter().position(|x| x == lca).unwrap();
    (ua + ub) as f64 - if ua == 0 || ub == 0 { 0.5 } else { 0.0 }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_pair_and_triplet_matches_a_brute_force_walk() {
    let (_dir, ctx) = build_mini(0.0).await;
    let codes = rows(
        &ctx,
        r#"SELECT code, parent, excluded_codes FROM naics_codes ORDER BY "index""#,
    )
    .await;
    let parents: HashMap<String, Option<String>> = codes
        .iter()
        .map(|r| (r[0].clone(), (!r[1].is_empty()).then(|| r[1].clone())))
        .collect();
    let listed = |a: &str, b: &str| {
        codes
            .iter()
            .any(|r| r[0] == a && r[2].trim_matches(['[', ']']).split(", ").any(|c| c == b))
    };
    let excluded = |a: &str, b: &str| listed(a, b) || listed(b, a);
    let names: Vec<&String> = codes.iter().map(|r| &r[0]).collect();
    let sql_distances = rows(&ctx, "SELECT code_i, code_j, distance FROM distances").await;
    assert_eq!(sql_distances.len(), 182);
    for r in &sql_distances {
        assert_eq!(
            r[2].parse::<f64>().unwrap(),
            brute_force_distance(&parents, &r[0], &r[1]),
            "{r:?}"
        );
    }
    let mut expected: HashMap<i64, i64> = HashMap::new();
    for a in &names {
        for p in &names {
            let dp = brute_force_distance(&parents, a, p);
            if a == p || dp >= 10.0 {
                continue;
            }
            for n in &names {
                let dn = brute_force_distance(&parents, a, n);
                if n == a || n == p || dn <= dp {
                    continue;
                }
                let diff = dn - dp;
                let h = if excluded(a, n) {
                    8
                } else if dn == 10.0 {
                    1
                } else if diff <= 0.5 {
                    7
                } else if diff <= 1.0 {
                    6
                } else if diff <= 2.0 {
                    5
                } else if diff <= 3.0 {
                    4
                } else if diff <= 4.0 {
                    3
                } else {
                    2
                };
                *expected.entry(h).or_default() += 1;
            }
        }
    }
    let mut expected: Vec<(String, i64)> = expected.into_iter().map(|(h, c)| (h.to_string(), c)).collect();
    expected.sort();
    assert_eq!(
        counts(
            &ctx,
            "SELECT CAST(hardness AS VARCHAR), count(*) FROM triplets GROUP BY 1 ORDER BY 1"
        )
        .await,
        expected
    );
}
