//! `naics-trainer fit` end to end on the hand-made mini tree: pipeline tables and shards, then
//! frozen-mode training with the real MiniLM. (Registered with naics-pipeline's tests so that the
//! trainer itself never links DataFusion.)

mod common;

use common::fixtures;
use naics_common::config::Loaded;
use naics_pipeline::ingest::{self, IngestPaths};
use naics_pipeline::session::{DEFAULT_MEMORY_LIMIT, DataDir};
use naics_trainer::fit::{FitOptions, fit};
use std::path::Path;

fn config(dir: &Path, extra: &[&str]) -> Loaded {
    let base = [
        "data.val_fraction=0.2",
        "data.batch_size=8",
        "curriculum.k_negatives=4",
        "model.moe.hidden=32",
        "model.embedding_dim=16",
        "training.scheduler.warmup_steps=3",
        "training.optimizer.lr=0.001",
        "training.trainer.max_epochs=4",
    ];
    common::config(dir, "03_stage_hard", &[&base[..], extra].concat())
}

async fn prepared() -> tempfile::TempDir {
    let dir = common::tables(&fixtures().join("mini"), 0.0).await;
    naics_pipeline::shards::run(&config(dir.path(), &[])).await.unwrap();
    dir
}

fn options(dir: &Path, resume: bool) -> FitOptions {
    FitOptions {
        resume,
        init: None,
        checkpoints: dir.join("checkpoints"),
        outputs: dir.join("outputs"),
    }
}

fn metric_lines(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("outputs/03_stage_hard/metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn loss_falls_checkpoints_are_kept_and_resume_is_exact() {
    let dir = prepared().await;
    let summary = fit(&config(dir.path(), &[]), &options(dir.path(), false)).unwrap();
    assert!(summary.best.exists());
    let lines = metric_lines(dir.path());
    let losses: Vec<f64> = lines.iter().filter_map(|l| l["nce"].as_f64()).collect();
    let vals: Vec<f64> = lines.iter().filter_map(|l| l["val_loss"].as_f64()).collect();
    assert_eq!(vals.len(), 4, "a validation per epoch");
    let quarter = losses.len() / 4;
    let first: f64 = losses[..quarter].iter().sum::<f64>() / quarter as f64;
    let last: f64 = losses[losses.len() - quarter..].iter().sum::<f64>() / quarter as f64;
    assert!(last < first * 0.9, "training loss should fall: {first} -> {last}");
    assert!(
        lines
            .iter()
            .any(|l| l["expert_load"].as_array().is_some_and(|a| a.len() == 4))
    );

    let ckpt = dir.path().join("checkpoints/03_stage_hard");
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(ckpt.join("index.json")).unwrap()).unwrap();
    assert!(index["entries"].as_array().unwrap().len() <= 4);
    let final_name = index["last"].as_str().unwrap().to_string();
    let final_weights = candle_core::safetensors::load(
        ckpt.join(format!("{final_name}.safetensors")),
        &candle_core::Device::Cpu,
    )
    .unwrap();

    // Resume from the latest kept checkpoint before the last must reproduce the last exactly.
    let earlier = index["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["name"] != final_name.as_str())
        .max_by_key(|e| e["step"].as_u64().unwrap())
        .expect("best 3 + last keeps an earlier checkpoint")
        .clone();
    let earlier_name = earlier["name"].as_str().unwrap().to_string();
    assert!(earlier["step"].as_u64().unwrap() < summary.steps as u64);
    let copy = tempfile::tempdir().unwrap();
    let resumed_dir = copy.path().join("checkpoints/03_stage_hard");
    std::fs::create_dir_all(&resumed_dir).unwrap();
    for suffix in [".safetensors", ".optim.safetensors", ".json"] {
        let name = format!("{earlier_name}{suffix}");
        std::fs::copy(ckpt.join(&name), resumed_dir.join(&name)).unwrap();
    }
    let index = serde_json::json!({"entries": [earlier], "last": earlier_name});
    std::fs::write(resumed_dir.join("index.json"), index.to_string()).unwrap();
    let opts = FitOptions {
        resume: true,
        init: None,
        checkpoints: copy.path().join("checkpoints"),
        outputs: copy.path().join("outputs"),
    };
    let resumed = fit(&config(dir.path(), &[]), &opts).unwrap();
    assert_eq!(resumed.steps, summary.steps);
    let again = candle_core::safetensors::load(
        resumed_dir.join(format!("{final_name}.safetensors")),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    for (name, tensor) in &final_weights {
        let diff: f32 = (tensor - &again[name])
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert_eq!(diff, 0.0, "{name} differs after resume");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nan_loss_stops_the_run_naming_the_step() {
    let dir = prepared().await;
    let err = fit(
        &config(dir.path(), &["loss.temperature=0.0"]),
        &options(dir.path(), false),
    )
    .unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains("at step 0") && message.contains("Last good checkpoint: none yet"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn eval_embed_and_search_on_the_trained_mini_tree() {
    let dir = tempfile::tempdir().unwrap();
    // 3 of the 7 index entries are held out at 0.7 (a hash draw), so that retrieval has queries.
    ingest::run(&IngestPaths::in_folder(&fixtures().join("mini"), dir.path()), 0.7).unwrap();
    naics_pipeline::build::run(&DataDir(dir.path().to_path_buf()), false, DEFAULT_MEMORY_LIMIT)
        .await
        .unwrap();
    naics_pipeline::shards::run(&config(dir.path(), &[])).await.unwrap();
    let summary = fit(&config(dir.path(), &[]), &options(dir.path(), false)).unwrap();

    let e = naics_trainer::eval::load(&summary.best).unwrap();
    let out = dir.path().join("outputs/03_stage_hard");
    let report = naics_trainer::eval::report::evaluate(&e, &summary.best, &out).unwrap();
    assert_eq!(report.codes, 14);
    let held = naics_trainer::eval::tables::holdout(dir.path()).unwrap().len();
    assert_eq!(held, 3);
    assert_eq!(report.retrieval.queries, held);
    assert_eq!(report.baseline_retrieval.queries, held);
    for value in [
        report.cophenetic,
        report.ndcg_at_10,
        report.parent_at_1,
        report.retrieval.top10,
    ] {
        assert!(value.is_finite() && (-1.0..=1.0).contains(&value), "{value}");
    }
    // Three six-digit candidates: top-10 always holds the truth.
    assert_eq!(report.retrieval.top10, 1.0);
    assert!(report.manifold_max_error < 1e-3);
    for file in ["eval.json", "poincare.png", "distances.png", "loss.png"] {
        assert!(out.join(file).exists(), "{file}");
    }

    let hits = naics_trainer::eval::search(&e, "soybean farm", 3).unwrap();
    assert_eq!(hits.len(), 3);
    assert!(hits[0].distance <= hits[1].distance && hits[1].distance <= hits[2].distance);
    assert_eq!(hits[0].path.last().unwrap().0, hits[0].code);
    assert!(
        ["11", "31"].contains(&hits[0].path[0].0.as_str()),
        "paths start at a sector"
    );

    // embed: the Parquet schema, registered in the SQL session.
    let parquet = out.join("embeddings.parquet");
    assert_eq!(naics_trainer::eval::export::write(&e, &parquet).unwrap(), 14);
    let ctx = naics_pipeline::session::open(
        &DataDir(dir.path().to_path_buf()),
        &dir.path().join("outputs"),
        DEFAULT_MEMORY_LIMIT,
    )
    .await
    .unwrap();
    let schema = common::rows(
        &ctx,
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'embeddings_03_stage_hard' ORDER BY ordinal_position",
    )
    .await;
    let names: Vec<&str> = schema.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(names, ["code", "level", "title", "lorentz", "poincare", "tangent"]);
    let dims = common::rows(&ctx, "SELECT array_length(lorentz), array_length(poincare), array_length(tangent) FROM embeddings_03_stage_hard LIMIT 1").await;
    assert_eq!(dims, vec![vec!["17".to_string(), "16".to_string(), "16".to_string()]]);
}
