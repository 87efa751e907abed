//! `build-shards` end to end on the hand-made mini tree with the real MiniLM tokenizer
//! (fetched by `scripts/fetch_model.sh minilm`, as .ci/run does).

mod common;

use common::testvectors::TestVectors;
use common::{fixtures, repo, rows};
use naics_common::config::Loaded;
use naics_common::format::sha256;
use naics_common::layout::samples_file;
use naics_common::samples::{SamplesFile, Split};
use naics_common::tokens::TokenCache;
use naics_pipeline::session::{self, DEFAULT_MEMORY_LIMIT, DataDir};
use naics_pipeline::shards::{self, tokenize};
use std::collections::HashSet;
use std::path::Path;

fn model_dir() -> std::path::PathBuf {
    let dir = repo().join("data/models/all-MiniLM-L6-v2");
    assert!(
        dir.join("tokenizer.json").exists(),
        "run `scripts/fetch_model.sh minilm` first (.ci/run does)"
    );
    dir
}

fn config(dir: &Path, extra: &[&str]) -> Loaded {
    let base = [
        "data.val_fraction=0.2",
        "curriculum.k_negatives=4",
        "curriculum.sampled_epochs=2",
    ];
    common::config(dir, "03_stage_hard", &[&base[..], extra].concat())
}

async fn mini_tables() -> tempfile::TempDir {
    common::tables(&fixtures().join("mini"), 0.0).await
}

#[tokio::test(flavor = "multi_thread")]
async fn shards_hold_valid_samples_and_the_token_cache() {
    let dir = mini_tables().await;
    let loaded = config(dir.path(), &[]);
    let summary = shards::run(&loaded).await.unwrap();
    assert!(summary.tokens_rebuilt);
    // 92 positive pairs over 14 anchors; 20% of anchors (3) validate.
    assert_eq!(summary.train_pairs + summary.validation_pairs, 92);
    let out = dir.path().join("shards/03_stage_hard");
    let tokenizer = sha256(&std::fs::read(model_dir().join("tokenizer.json")).unwrap());

    let ctx = session::open(
        &DataDir(dir.path().to_path_buf()),
        &dir.path().join("outputs"),
        &Default::default(),
        DEFAULT_MEMORY_LIMIT,
    )
    .await
    .unwrap();
    let mut anchors = [HashSet::new(), HashSet::new()];
    for (split, epoch) in [(Split::Train, 0), (Split::Train, 1), (Split::Validation, 0)] {
        let file = SamplesFile::open(&out.join(samples_file(split, epoch)), Some(tokenizer)).unwrap();
        assert_eq!(file.meta.k, 4);
        assert_eq!(
            file.len(),
            if split == Split::Train {
                summary.train_pairs
            } else {
                summary.validation_pairs
            }
        );
        for i in 0..file.len() {
            let s = file.get(i).to_sample();
            anchors[split as usize].insert(s.anchor);
            let distinct: HashSet<u32> = s.negatives.iter().copied().collect();
            assert_eq!(distinct.len(), 4);
            // Every sampled hardness is the one the triplets view gives.
            for (n, h) in s.negatives.iter().zip(&s.hardness) {
                let sql = format!(
                    "SELECT hardness FROM triplets WHERE anchor_idx = {} AND positive_idx = {} AND negative_idx = {n}",
                    s.anchor, s.positive
                );
                assert_eq!(rows(&ctx, &sql).await, vec![vec![h.to_string()]], "{s:?}");
            }
        }
    }
    assert_eq!(anchors[1].len(), 3);
    assert!(
        anchors[0].is_disjoint(&anchors[1]),
        "a validation anchor was trained on"
    );

    // The token cache: every code's four channels, as the tokenizer gives them.
    let cache = TokenCache::open(&out.join("tokens.bin"), Some(tokenizer)).unwrap();
    assert_eq!(
        (cache.meta.codes, cache.meta.id_width, cache.meta.max_length),
        (14, 2, 128)
    );
    let (tok, _) = tokenize::load_tokenizer(&model_dir().join("tokenizer.json"), 128).unwrap();
    let title = tokenize::encode(&tok, &["Soybean Farming".to_string()])
        .unwrap()
        .remove(0);
    assert_eq!(cache.ids(0, 4).to_vec(), title);
    // An empty channel (111 has no exclusion text) is the ids of "": [CLS] [SEP].
    assert_eq!(cache.ids(2, 1).to_vec(), vec![101, 102]);

    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["pairs"]["train"], summary.train_pairs);
    assert_eq!(manifest["files"].as_array().unwrap().len(), 3);
    assert!(out.join("config.yaml").exists());
    let sampled: u64 = manifest["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["sampled"].as_u64().unwrap())
        .sum();
    assert_eq!(sampled, 4 * (2 * summary.train_pairs + summary.validation_pairs) as u64);

    // The samples are registered for SQL.
    let n = rows(&ctx, "SELECT count(*) FROM samples_03_stage_hard WHERE split = 'train'").await;
    assert_eq!(n, vec![vec![(2 * summary.train_pairs).to_string()]]);
}

#[tokio::test(flavor = "multi_thread")]
async fn rebuilds_are_deterministic_and_tokens_are_reused() {
    let dir = mini_tables().await;
    let out = dir.path().join("shards/03_stage_hard");
    shards::run(&config(dir.path(), &[])).await.unwrap();
    let first = std::fs::read(out.join("train-e000.samples")).unwrap();
    let again = shards::run(&config(dir.path(), &[])).await.unwrap();
    assert!(
        !again.tokens_rebuilt,
        "unchanged texts, tokenizer and max_length reuse the cache"
    );
    assert_eq!(std::fs::read(out.join("train-e000.samples")).unwrap(), first);
    assert_ne!(
        std::fs::read(out.join("train-e001.samples")).unwrap(),
        first,
        "each epoch is a fresh draw"
    );
    let other_seed = shards::run(&config(dir.path(), &["data.seed=7"])).await.unwrap();
    assert!(!other_seed.tokens_rebuilt);
    assert_ne!(std::fs::read(out.join("train-e000.samples")).unwrap(), first);
    let shorter = shards::run(&config(dir.path(), &["model.max_length=8"])).await.unwrap();
    assert!(shorter.tokens_rebuilt);
}

#[test]
fn token_ids_match_the_reference_tokenizer() {
    let vectors = TestVectors::load("all-MiniLM-L6-v2");
    let (tok, sha) = tokenize::load_tokenizer(&model_dir().join("tokenizer.json"), 512).unwrap();
    assert_eq!(
        naics_common::format::hex(&sha),
        vectors.0["tokenizer_json_sha256"].as_str().unwrap()
    );
    let texts = vectors.texts();
    assert_eq!(texts.len(), 12);
    let ids = tokenize::encode(&tok, &texts).unwrap();
    for ((text, got), expected) in texts.iter().zip(ids).zip(vectors.input_ids()) {
        assert_eq!(got, expected, "{text}");
    }
}
