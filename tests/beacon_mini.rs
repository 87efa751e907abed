//! `bench/beacon_coding.py`, the BEACON side of `bench/coding.sh`, on a small tree: it trains
//! the Census Bureau's autocoder on exactly the texts our training may see (six-digit titles and
//! examples, never the held-out entries) and scores the held-out ones. Needs BEACON
//! (`$NAICS_BEACON_DIR`, default `../shared/anchors/beacon`) and a Python with numpy,
//! scikit-learn and pyarrow (`$NAICS_BEACON_VENV`, default `~/.cache/naics/beacon-venv`, which
//! `.ci/run` and `bench/coding.sh` create); ignored, saying why, where either is missing.

mod common;

use arrow::array::{ArrayRef, Int32Array, ListBuilder, StringArray, StringBuilder};
use arrow::record_batch::RecordBatch;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

fn write(path: &Path, columns: Vec<(&str, ArrayRef)>) {
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

#[test]
#[cfg_attr(
    not(has_beacon),
    ignore = "no BEACON (../shared/anchors/beacon or $NAICS_BEACON_DIR) or no Python with numpy, scikit-learn and pyarrow ($NAICS_BEACON_VENV): see .ci/run, then touch tests/build.rs"
)]
fn beacon_script_runs_on_a_small_tree() {
    let root = common::repo();
    // Found by tests/build.rs.
    let (beacon, python) = (env!("NAICS_BEACON_DIR"), env!("NAICS_BEACON_PYTHON"));
    // A small tree BEACON accepts (it needs two six-digit codes in every sector, which the mini
    // fixture's sector 31 lacks): two sectors of two industries, three examples each.
    let dir = tempfile::tempdir().unwrap();
    let industries = [
        (
            "111110",
            "Soybean Farming",
            ["soybean farm", "soybeans growing", "soy bean farming"],
        ),
        (
            "111120",
            "Oilseed Farming",
            ["canola farm", "sunflower growing", "flaxseed farming"],
        ),
        (
            "311111",
            "Dog and Cat Food Manufacturing",
            ["dog food mill", "cat food plant", "pet food making"],
        ),
        (
            "311211",
            "Flour Milling",
            ["wheat flour mill", "corn meal milling", "rice flour making"],
        ),
    ];
    let mut titles = StringBuilder::new();
    let mut examples = ListBuilder::new(StringBuilder::new());
    for (_, title, texts) in &industries {
        titles.append_value(title);
        for t in texts {
            examples.values().append_value(t);
        }
        examples.append(true);
    }
    let codes: Vec<&str> = industries.iter().map(|i| i.0).collect();
    write(
        &dir.path().join("naics_codes.parquet"),
        vec![
            ("code", Arc::new(StringArray::from(codes.clone())) as ArrayRef),
            ("level", Arc::new(Int32Array::from(vec![6; 4]))),
            ("title", Arc::new(titles.finish())),
            ("examples", Arc::new(examples.finish())),
        ],
    );
    let held = [
        "soybean growing farm",
        "growing canola",
        "dog food factory",
        "flour mill",
    ];
    write(
        &dir.path().join("naics_index_holdout.parquet"),
        vec![
            ("code", Arc::new(StringArray::from(codes)) as ArrayRef),
            ("text", Arc::new(StringArray::from(held.to_vec()))),
        ],
    );
    let out = Command::new(python)
        .arg(root.join("bench/beacon_coding.py"))
        .arg(beacon)
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = common::succeeded(&out);
    let value = |name: &str| -> f64 {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("beacon {name} ")))
            .unwrap_or_else(|| panic!("no `beacon {name}` in\n{stdout}"))
            .trim()
            .parse()
            .unwrap()
    };
    // Titles and examples (4 x 4), none of the held-out entries.
    assert_eq!(value("training_texts"), 16.0);
    for measure in ["top1", "top5", "top10", "prefix2", "prefix4", "prefix5"] {
        assert!((0.0..=1.0).contains(&value(measure)), "{measure}");
    }
    // Four six-digit candidates: the truth is always among the top ten.
    assert!(value("top1") <= value("top5") && value("top10") == 1.0);
}

/// `bench/bm25.py`, the word-matching peer of `bench/coding.sh`, against BM25 worked by hand on
/// three documents (k1 1.2, b 0.75, average length 2) for the query "a c":
/// idf(a) = ln(1 + 1.5/2.5) = 0.470004, idf(c) = ln(1 + 2.5/1.5) = 0.980829;
/// ["a", "b"]: 0.470004 * 2.2 / (1 + 1.2) = 0.470004;
/// ["a"]: 0.470004 * 2.2 / (1 + 1.2 * (0.25 + 0.375)) = 0.590862;
/// ["c", "c", "d"]: 0.980829 * 2 * 2.2 / (2 + 1.2 * (0.25 + 1.125)) = 1.182370.
/// Needs only a `python3` (no packages).
#[test]
fn bench_bm25_scores_a_hand_computed_example() {
    let root = common::repo().join("bench");
    let script = "import sys; sys.path.insert(0, sys.argv[1]); import bm25; \
        print(*bm25.BM25([['a', 'b'], ['a'], ['c', 'c', 'd']]).scores(['a', 'c']))";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(&root)
        .output()
        .expect("python3 runs");
    let scores: Vec<f64> = common::succeeded(&out)
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect();
    for (got, want) in scores.iter().zip([0.470004, 0.590862, 1.182370]) {
        assert!((got - want).abs() < 1e-6, "{scores:?}");
    }
    assert_eq!(scores.len(), 3);
}
