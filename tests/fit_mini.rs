//! `naics-trainer fit` end to end on the hand-made mini tree: pipeline tables and shards, then
//! frozen-mode training with the real MiniLM. (In the `naics-tests` package, so that neither
//! program's crate depends on the other: the trainer never links DataFusion.)

mod common;

use common::fixtures;
use naics_common::config::Loaded;
use naics_pipeline::session::{DEFAULT_MEMORY_LIMIT, DataDir};
use naics_trainer::train::{FitOptions, fit};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn config(dir: &Path, extra: &[&str]) -> Loaded {
    common::mini_config(dir, extra)
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
        query_map: false,
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
            .any(|l| l["expert_share"].as_array().is_some_and(|a| a.len() == 4))
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
    // The default (`query`) mode trains the free text's adapters: they are checkpointed with the
    // head, and the resume below must reproduce them too.
    assert!(
        final_weights.keys().any(|k| k.starts_with("lora.")),
        "no adapters in the checkpoint"
    );

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
        query_map: false,
    };
    let resumed = fit(&config(dir.path(), &[]), &opts).unwrap();
    assert_eq!(resumed.steps, summary.steps);
    assert_same_weights(&final_weights, &resumed_dir.join(format!("{final_name}.safetensors")));

    // Resuming under another model configuration names the key that makes the weights misfit.
    let e = format!(
        "{:#}",
        fit(&config(dir.path(), &["model.lora.r=4"]), &opts).unwrap_err()
    );
    assert!(
        e.contains("model.lora.r: 8 (here: 4)") && e.contains("without --resume"),
        "{e}"
    );
}

/// The largest absolute entry of `t` (of a difference: how far two tensors are apart).
fn largest(t: &candle_core::Tensor) -> f32 {
    t.abs().unwrap().max_all().unwrap().to_scalar().unwrap()
}

/// The weights in `path` equal `expected`, bit for bit.
fn assert_same_weights(expected: &HashMap<String, candle_core::Tensor>, path: &Path) {
    let again = candle_core::safetensors::load(path, &candle_core::Device::Cpu).unwrap();
    assert_eq!(again.len(), expected.len());
    for (name, tensor) in expected {
        assert_eq!(largest(&(tensor - &again[name]).unwrap()), 0.0, "{name} differs");
    }
}

/// The last checkpoint's weights file in a `checkpoints/{experiment}` folder.
fn last_checkpoint(dir: &Path) -> PathBuf {
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    dir.join(format!("{}.safetensors", index["last"].as_str().unwrap()))
}

/// `naics-trainer fit` killed with SIGKILL in the middle of its run (steps under way after its
/// first checkpoint), then `fit --resume`: it goes on from its last checkpoint and ends with the
/// weights of a run never killed, bit for bit. Both runs through the command line.
#[tokio::test(flavor = "multi_thread")]
async fn fit_resume_after_a_kill_is_exact() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};
    let dir = prepared().await;
    let overrides = common::overrides(dir.path(), &common::MINI);
    let fit_in = |work: &Path, resume: bool| {
        let mut command = Command::new(common::program("naics-trainer"));
        command
            .args(["fit", "-c", "03_stage_hard", "--conf"])
            .arg(common::repo().join("conf"));
        if resume {
            command.arg("--resume");
        }
        command
            .args(&overrides)
            .current_dir(work)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    };
    let whole = tempfile::tempdir().unwrap();
    let done = fit_in(whole.path(), false).output().unwrap();
    common::succeeded(&done);
    let expected = candle_core::safetensors::load(
        last_checkpoint(&whole.path().join("checkpoints/03_stage_hard")),
        &candle_core::Device::Cpu,
    )
    .unwrap();

    let killed = tempfile::tempdir().unwrap();
    let ckpt = killed.path().join("checkpoints/03_stage_hard");
    let mut child = fit_in(killed.path(), false).stderr(Stdio::null()).spawn().unwrap();
    let started = std::time::Instant::now();
    while !ckpt.join("index.json").exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "fit ended before its first checkpoint"
        );
        assert!(started.elapsed().as_secs() < 600, "no checkpoint after 10 minutes");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(9), "killed, not finished");
    let at_kill = last_checkpoint(&ckpt);
    assert_ne!(
        at_kill,
        last_checkpoint(&whole.path().join("checkpoints/03_stage_hard"))
    );

    let resumed = fit_in(killed.path(), true).output().unwrap();
    common::succeeded(&resumed);
    assert_same_weights(&expected, &last_checkpoint(&ckpt));
    let leftovers: Vec<_> = std::fs::read_dir(&ckpt)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temporaries left: {leftovers:?}");
}

/// `naics-trainer fit --init CHECKPOINT` starts from those weights, as `-c all` starts a stage
/// from the one before: the command line ends with the weights of the library's run from the
/// same checkpoint, bit for bit, and not with those of a run from scratch; a missing file is an
/// error naming it.
#[tokio::test(flavor = "multi_thread")]
async fn fit_init_starts_from_a_checkpoint() {
    let dir = prepared().await;
    let loaded = config(dir.path(), &[]);
    let start = fit(&loaded, &options(dir.path(), false)).unwrap().best;
    let scratch = last_checkpoint(&dir.path().join("checkpoints/03_stage_hard"));

    let library = tempfile::tempdir().unwrap();
    let from = FitOptions {
        init: Some(start.clone()),
        ..options(library.path(), false)
    };
    fit(&loaded, &from).unwrap();
    let expected = candle_core::safetensors::load(
        last_checkpoint(&library.path().join("checkpoints/03_stage_hard")),
        &candle_core::Device::Cpu,
    )
    .unwrap();

    let fit_from = |init: &Path, work: &Path| {
        std::process::Command::new(common::program("naics-trainer"))
            .args(["fit", "-c", "03_stage_hard", "--conf"])
            .arg(common::repo().join("conf"))
            .arg("--init")
            .arg(init)
            .args(common::overrides(dir.path(), &common::MINI))
            .current_dir(work)
            .output()
            .unwrap()
    };
    let cli = tempfile::tempdir().unwrap();
    common::succeeded(&fit_from(&start, cli.path()));
    let ran = last_checkpoint(&cli.path().join("checkpoints/03_stage_hard"));
    assert_same_weights(&expected, &ran);
    let scratch = candle_core::safetensors::load(&scratch, &candle_core::Device::Cpu).unwrap();
    assert!(
        scratch
            .keys()
            .any(|name| largest(&(&scratch[name] - &expected[name]).unwrap()) > 0.0),
        "a run from the checkpoint ends where a run from scratch does"
    );

    let missing = dir.path().join("nowhere.safetensors");
    let out = fit_from(&missing, tempfile::tempdir().unwrap().path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("nowhere.safetensors"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_monitored_metric_selects_the_best_checkpoint_and_queries_train_without_held_out_entries() {
    let dir = common::tables(&fixtures().join("mini"), 0.7).await;
    let loaded = config(
        dir.path(),
        &["training.trainer.monitor=parent_at_1", "data.queries_per_step=4"],
    );
    naics_pipeline::shards::run(&loaded).await.unwrap();
    let summary = fit(&loaded, &options(dir.path(), false)).unwrap();

    let lines = metric_lines(dir.path());
    let monitored: Vec<f64> = lines.iter().filter_map(|l| l["parent_at_1"].as_f64()).collect();
    assert_eq!(monitored.len(), 4, "the metric at every validation");
    assert!(monitored.iter().all(|v| (0.0..=1.0).contains(v)));
    let best = monitored.iter().cloned().fold(f64::MIN, f64::max);
    assert_eq!(
        summary.best_value, best,
        "the best checkpoint is the one with the highest parent@1"
    );
    let sidecar: serde_json::Value = serde_json::from_slice(
        &std::fs::read(summary.best.to_string_lossy().replace(".safetensors", ".json")).unwrap(),
    )
    .unwrap();
    assert_eq!(sidecar["metrics"]["parent_at_1"].as_f64(), Some(best));

    // The index-entry and tree terms are part of every step's loss (a step whose query pool
    // holds only the query's own code scores 0).
    let steps: Vec<&serde_json::Value> = lines.iter().filter(|l| l["nce"].is_number()).collect();
    for term in ["query", "tree"] {
        let values: Vec<f64> = steps.iter().map(|l| l[term].as_f64().unwrap()).collect();
        assert!(values.iter().all(|v| v.is_finite() && *v >= 0.0), "{term}: {values:?}");
        assert!(values.iter().any(|v| *v > 0.0), "{term}: {values:?}");
    }

    // The query anchors are the codes' training entries: none of the held-out ones.
    let codes = naics_trainer::tables::Codes::read(dir.path()).unwrap();
    let held = naics_trainer::tables::holdout(dir.path()).unwrap();
    assert_eq!(held.len(), 3);
    for (code, text) in &held {
        assert!(
            !codes.examples[codes.position[code]].contains(text),
            "{text} is held out"
        );
    }
    assert!(codes.examples.iter().map(Vec::len).sum::<usize>() > 0);
}

/// The mini tree with 70 % of its entries held out, trained in `query` mode (4 entries a step,
/// plus `extra` overrides); its tables' folder and the best checkpoint, loaded.
async fn trained_in_query_mode(extra: &[&str]) -> (tempfile::TempDir, naics_trainer::embedded::Embedded) {
    let dir = common::tables(&fixtures().join("mini"), 0.7).await;
    let overrides = [&["model.encoder_mode=query", "data.queries_per_step=4"], extra].concat();
    let loaded = config(dir.path(), &overrides);
    naics_pipeline::shards::run(&loaded).await.unwrap();
    let summary = fit(&loaded, &options(dir.path(), false)).unwrap();
    (dir, naics_trainer::embedded::load(&summary.best).unwrap())
}

/// `query` mode teaches the free text's adapters on the training entries: the held-out entries
/// (never trained on) must land nearer their own leaf, against the other leaves, than the same
/// checkpoint puts them with its text adapters set back to their start (B = 0: the frozen base).
#[tokio::test(flavor = "multi_thread")]
async fn query_side_training_brings_held_out_entries_nearer_their_code() {
    let (dir, mut e) = trained_in_query_mode(&[]).await;
    let held = naics_trainer::tables::holdout(dir.path()).unwrap();
    let leaves = e.codes.leaves();
    // Mean over held-out entries of d(own leaf) - min d(other leaves): lower is nearer.
    let margin = |e: &naics_trainer::embedded::Embedded| -> f64 {
        let texts: Vec<String> = held.iter().map(|(_, t)| t.clone()).collect();
        let rows = e
            .leaf_targets()
            .distances(&e.query_points(&texts).unwrap(), e.curvature())
            .unwrap();
        let total: f64 = held
            .iter()
            .zip(&rows)
            .map(|((code, _), row)| {
                let own = leaves.iter().position(|&l| e.codes.code[l] == *code).unwrap();
                let others = row.iter().enumerate().filter(|(j, _)| *j != own).map(|(_, d)| *d);
                (row[own] - others.fold(f32::MAX, f32::min)) as f64
            })
            .sum();
        total / held.len() as f64
    };
    let after = margin(&e);
    let mut text_adapters = 0;
    for (name, var) in e.model.varmap.data().lock().unwrap().iter() {
        if name.starts_with("lora.") && name.ends_with(".b") {
            var.set(&var.as_tensor().zeros_like().unwrap()).unwrap();
            text_adapters += 1;
        }
    }
    assert!(text_adapters > 0, "the checkpoint carries the text adapters");
    // A loaded model folds its adapters into its layers: fold the reset ones again.
    e.model.channels.encoder_mut().transformer.fold_adapters().unwrap();
    let before = margin(&e);
    assert!(after < before, "held-out margin before {before}, after {after}");
}

/// `model.code_offsets` (with MiniLM's default text adapters, on all six products): each code's
/// trained offset moves its point, and only codes': with the offsets set to zero the codes'
/// points change and a text's point does not.
#[tokio::test(flavor = "multi_thread")]
async fn code_offsets_train_and_move_codes_only() {
    let (_dir, e) = trained_in_query_mode(&[
        "model.code_offsets=true",
        "model.lora.targets=[query,key,value,attention_output,intermediate,output]",
    ])
    .await;
    let n = e.codes.len();
    let texts = vec!["frozen vegetables packing".to_string()];
    let (codes, _) = e.model.embed_codes(n).unwrap();
    let text = e.query_points(&texts).unwrap();
    let offsets = e.model.varmap.data().lock().unwrap()["head.code_offset"].clone();
    assert_eq!(offsets.dims(), [n, 16], "one offset per code");
    let trained = largest(&offsets);
    assert!(trained > 1e-3, "the offsets trained: largest {trained}");
    offsets.set(&offsets.zeros_like().unwrap()).unwrap();
    let moved = largest(&(e.model.embed_codes(n).unwrap().0 - &codes).unwrap());
    assert!(moved > 1e-3, "the codes' points moved");
    let still = largest(&(e.query_points(&texts).unwrap() - &text).unwrap());
    assert_eq!(still, 0.0, "a text's point did not");
}

/// `model.query_map`: the stages train exactly as without it (every other weight bit for bit),
/// and fitting it after the last stage lowers its loss, writes it into the best checkpoint (its
/// first layer reading the tangent and the encoder's vector, two members' hidden units side by
/// side), and moves texts' points but not codes'.
#[tokio::test(flavor = "multi_thread")]
async fn the_query_map_fits_after_the_stages_and_moves_texts_only() {
    let dir = common::tables(&fixtures().join("mini"), 0.7).await;
    let base = ["model.encoder_mode=query", "data.queries_per_step=4"];
    let without = config(dir.path(), &base);
    naics_pipeline::shards::run(&without).await.unwrap();
    let plain = fit(&without, &options(dir.path(), false)).unwrap();
    assert!(plain.query_map.is_none());
    let map = [
        "model.query_map.hidden=32",
        "model.query_map.members=2",
        "model.query_map.epochs=20",
        "model.query_map.lr=0.01",
        "model.query_map.batch_size=16",
    ];
    let with = config(dir.path(), &[&base[..], &map[..]].concat());
    let other = tempfile::tempdir().unwrap();
    let fitted = FitOptions {
        query_map: true,
        ..options(other.path(), false)
    };
    let mapped = fit(&with, &fitted).unwrap();
    let summary = mapped.query_map.as_ref().expect("the map was fitted");
    let (first, last) = (summary.losses[0], summary.losses[summary.losses.len() - 1]);
    assert!(last < first * 0.9, "the map's loss should fall: {first} -> {last}");
    assert!(other.path().join("outputs/03_stage_hard/query_map.json").exists());

    let cpu = candle_core::Device::Cpu;
    let stages = candle_core::safetensors::load(&plain.best, &cpu).unwrap();
    let both = candle_core::safetensors::load(&mapped.best, &cpu).unwrap();
    for (name, tensor) in &stages {
        assert_eq!(largest(&(tensor - &both[name]).unwrap()), 0.0, "{name} differs");
    }
    let extra: Vec<&String> = both.keys().filter(|k| !stages.contains_key(*k)).collect();
    assert_eq!(extra.len(), 4, "{extra:?}");
    assert!(
        extra
            .iter()
            .all(|k| k.starts_with(naics_trainer::model::query_map::VARS))
    );

    let (a, b) = (
        naics_trainer::embedded::load(&plain.best).unwrap(),
        naics_trainer::embedded::load(&mapped.best).unwrap(),
    );
    // Its first layer reads the tangent and the text's encoder vector, for both members.
    let width = b.model.channels.encoder().transformer.config.hidden_size;
    assert_eq!(
        both["head.query_map.up.weight"].dims(),
        &[64, with.config.model.embedding_dim + width]
    );
    let n = a.codes.len();
    let codes = largest(&(a.model.embed_codes(n).unwrap().0 - b.model.embed_codes(n).unwrap().0).unwrap());
    assert_eq!(codes, 0.0, "the codes' points did not move");
    let texts = vec!["frozen vegetables packing".to_string()];
    let moved = largest(&(a.query_points(&texts).unwrap() - b.query_points(&texts).unwrap()).unwrap());
    assert!(moved > 1e-3, "a text's point moved: {moved}");
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
    use naics_trainer::coder::{Coder, Policy};
    // 3 of the 7 index entries are held out at 0.7 (a hash draw), so that retrieval has queries.
    let dir = common::tables(&fixtures().join("mini"), 0.7).await;
    naics_pipeline::shards::run(&config(dir.path(), &[])).await.unwrap();
    // Half of the kept entries are the coder's validation entries, so that it fits its fusion.
    let trained = config(dir.path(), &["data.validation_entries=0.5"]);
    let summary = fit(&trained, &options(dir.path(), false)).unwrap();

    let e = naics_trainer::embedded::load(&summary.best).unwrap();
    // Loaded as saved (no random draw in between), the routing bias included; a checkpoint that
    // lacks a parameter is an error naming it.
    let saved = candle_core::safetensors::load(&summary.best, &candle_core::Device::Cpu).unwrap();
    let flat = |t: &candle_core::Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    {
        let data = e.model.varmap.data().lock().unwrap();
        assert_eq!(data.len(), saved.len());
        for (name, tensor) in &saved {
            assert_eq!(flat(tensor), flat(data[name].as_tensor()), "{name}");
        }
    }
    let mut partial = saved.clone();
    partial
        .remove("head.moe.route_bias")
        .expect("the routing bias is saved");
    let stripped = dir.path().join("stripped.safetensors");
    candle_core::safetensors::save(&partial, &stripped).unwrap();
    std::fs::copy(summary.best.with_extension("json"), stripped.with_extension("json")).unwrap();
    let Err(err) = naics_trainer::embedded::load(&stripped) else {
        panic!("a checkpoint without the routing bias loaded")
    };
    assert!(format!("{err:#}").contains("`head.moe.route_bias`"), "{err:#}");
    let out = dir.path().join("outputs/03_stage_hard");
    let report = naics_trainer::eval::report::evaluate(&e, &summary.best, &out).unwrap();
    assert_eq!(report.codes, 14);
    let held = naics_trainer::tables::holdout(dir.path()).unwrap().len();
    assert_eq!(held, 3);
    assert_eq!(report.retrieval.queries, held);
    assert_eq!(report.baseline_retrieval.queries, held);
    for value in [
        report.hierarchy.cophenetic,
        report.hierarchy.ndcg_at_10,
        report.hierarchy.parent_at_1,
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

    // The coder: the top three leaves, confidences that sum to 1, paths from the sector.
    let c = &report.coding;
    assert_eq!(c.retrieval.queries, held);
    assert_eq!(c.retrieval.top10, 1.0);
    assert!((0.0..=1.0).contains(&c.expected_calibration_error));
    assert!(out.join("calibration.png").exists());
    let coder = Coder::new(&e).unwrap();
    let validation = naics_trainer::coder::validation_entries(&e).len();
    assert!(validation > 0, "validation entries at 0.5 of the kept ones");
    assert_eq!(coder.fusion.fitted_on, validation);
    let policy = Policy {
        k: 3,
        ..Policy::default()
    };
    let answer = coder.show(&coder.code(&["soybean farm".to_string()], &policy).unwrap().remove(0));
    assert_eq!(answer.ranked.len(), 3);
    let total: f64 = answer.ranked.iter().map(|h| h.confidence).sum();
    assert!((total - 1.0).abs() < 1e-6, "{total}");
    assert!(answer.ranked.windows(2).all(|w| w[0].confidence >= w[1].confidence));
    let top = &answer.ranked[0];
    assert_eq!(top.path.last().unwrap().0, top.code);
    assert!(
        ["11", "31"].contains(&top.path[0].0.as_str()),
        "paths start at a sector"
    );
    // Multi-activity text: both activities' codes ahead of the third.
    let both = "soybean farm and dog and cat food manufacturing".to_string();
    let answer = coder.show(&coder.code(&[both], &policy).unwrap().remove(0));
    let first_two: Vec<&str> = answer.ranked[..2].iter().map(|h| h.code.as_str()).collect();
    assert!(
        first_two.contains(&"111110") && first_two.contains(&"311111"),
        "{:?}",
        answer
            .ranked
            .iter()
            .map(|h| (&h.code, h.confidence, h.distance))
            .collect::<Vec<_>>()
    );
    // Abstention: with a threshold above any confidence there is no code.
    let unsure = Policy {
        abstain: 1.01,
        ..policy
    };
    assert!(coder.code(&["soybean farm".to_string()], &unsure).unwrap()[0].abstained);
    assert!(!coder.code(&["soybean farm".to_string()], &policy).unwrap()[0].abstained);

    // embed: the Parquet schema, registered in the SQL session.
    let parquet = out.join("embeddings.parquet");
    assert_eq!(naics_trainer::eval::export::write(&e, &parquet).unwrap(), 14);
    let ctx = naics_pipeline::session::open(
        &DataDir(dir.path().to_path_buf()),
        &dir.path().join("outputs"),
        &Default::default(),
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

/// `lora` mode encodes without keeping the graph and replays each encoder call (codes' and index
/// entries') for the backward pass: its adapter gradients must be the loss's true gradients.
#[tokio::test(flavor = "multi_thread")]
async fn lora_replayed_gradients_match_finite_differences() {
    use candle_core::{DType, Device, Tensor};
    use naics_common::samples::{Record, SamplesFile};
    use naics_trainer::model::Embedder;
    use naics_trainer::train::TrainingData;
    use naics_trainer::train::loss::{batch_loss, replays, step_loss};
    use naics_trainer::train::replay::backward;

    let dir = prepared().await;
    let loaded = config(
        dir.path(),
        &[
            "model.encoder_mode=lora",
            "model.lora.dropout=0.0",
            "model.moe.dropout=0.0",
            // Many small calls per channel, so that the replay accumulates over calls.
            "model.chunk_tokens=48",
            // Index entries replay through all four channels too; weighted up so that their
            // share of the gradients is large.
            "data.queries_per_step=4",
            "loss.query_weight=20",
        ],
    );
    let config = &loaded.config;
    let model = Embedder::new(config, &Device::Cpu, DType::F32).unwrap();
    let data = TrainingData::load(&model).unwrap();
    let picks = data.queries.draw(config.data.seed, 0, config.data.queries_per_step);
    let vars = model.varmap.data().lock().unwrap().clone();
    // B starts at zero (A's gradient would vanish): give every adapter a small B.
    for (name, var) in &vars {
        if name.starts_with("lora.") && name.ends_with(".b") {
            var.set(
                &(Tensor::ones(var.shape(), DType::F32, &Device::Cpu)
                    .unwrap()
                    .affine(0.05, 0.0)
                    .unwrap()),
            )
            .unwrap();
        }
    }
    let file = SamplesFile::open(&dir.path().join("shards/03_stage_hard/train-e000.samples"), None).unwrap();
    let records: Vec<Record> = (0..4.min(file.len())).map(|i| file.get(i)).collect();
    // The base's own dropout stays on in training: every evaluation starts the stream afresh, and
    // the replay must reproduce the masks of its forward pass.
    let loss_and_parts = || {
        naics_trainer::model::rng::seed(7);
        let parts = vec![batch_loss(&model, &data, &records, &picks, true).unwrap()];
        assert!(parts[0].query.is_some());
        let (loss, _) = step_loss(&parts, &config.loss, config.model.moe.load_balance_coef).unwrap();
        (loss, parts)
    };
    let (loss, parts) = loss_and_parts();
    let grads = backward(&model, &loss, &replays(&parts)).unwrap();
    let value = || loss_and_parts().0.value().unwrap() as f64;

    // The three adapter tensors with the largest gradients (small ones drown in f32 rounding),
    // each checked at its largest entry by central differences.
    let mut largest: Vec<(String, usize, f64)> = vars
        .iter()
        .filter(|(name, _)| name.starts_with("lora."))
        .map(|(name, var)| {
            let grad: Vec<f32> = grads
                .get(var.as_tensor())
                .expect(name)
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let (k, g) = grad
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
                .unwrap();
            (name.clone(), k, *g as f64)
        })
        .collect();
    largest.sort_by(|a, b| b.2.abs().total_cmp(&a.2.abs()));
    let channels: std::collections::HashSet<&str> =
        largest.iter().map(|(n, ..)| n.split('.').nth(3).unwrap()).collect();
    assert_eq!(channels.len(), 4, "every channel's adapters get gradients");
    for (name, k, g) in largest.into_iter().take(3) {
        let var = &vars[&name];
        let original = var.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let at = |delta: f64| {
            let mut v = original.clone();
            v[k] += delta as f32;
            var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap())
                .unwrap();
            value()
        };
        let eps = 1e-3;
        let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
        at(0.0);
        assert!(
            (numeric - g).abs() < 0.05 * g.abs() + 2e-3,
            "{name}[{k}]: replayed gradient {g}, finite difference {numeric}"
        );
    }
}

/// The adapters' gradients from one `lora` step with dropout on everywhere (index entries
/// included), the base in `dtype`, sorted by name; where the random stream ends; the loss.
type Gradients = (Vec<(String, Vec<f32>)>, ([u8; 32], u128), f32);

fn lora_gradients(dir: &Path, dtype: candle_core::DType, overrides: &[&str]) -> Gradients {
    use candle_core::Device;
    use naics_common::samples::{Record, SamplesFile};
    use naics_trainer::model::Embedder;
    use naics_trainer::train::TrainingData;
    use naics_trainer::train::loss::{batch_loss, replays, step_loss};
    use naics_trainer::train::replay::backward;

    let file = SamplesFile::open(&dir.join("shards/03_stage_hard/train-e000.samples"), None).unwrap();
    let records: Vec<Record> = (0..4.min(file.len())).map(|i| file.get(i)).collect();
    let base = [
        "model.encoder_mode=lora",
        "model.chunk_tokens=48",
        "data.queries_per_step=3",
    ];
    let loaded = config(dir, &[&base[..], overrides].concat());
    let config = &loaded.config;
    let model = Embedder::new(config, &Device::Cpu, dtype).unwrap();
    let data = TrainingData::load(&model).unwrap();
    let picks = data.queries.draw(config.data.seed, 0, config.data.queries_per_step);
    for (name, var) in model.varmap.data().lock().unwrap().iter() {
        if name.starts_with("lora.") && name.ends_with(".b") {
            var.set(&var.as_tensor().ones_like().unwrap().affine(0.05, 0.0).unwrap())
                .unwrap();
        }
    }
    naics_trainer::model::rng::seed(7);
    let parts = vec![batch_loss(&model, &data, &records, &picks, true).unwrap()];
    let (loss, _) = step_loss(&parts, &config.loss, config.model.moe.load_balance_coef).unwrap();
    let grads = backward(&model, &loss, &replays(&parts)).unwrap();
    // The stream goes on from the same place whichever way the backward pass went.
    let after = naics_trainer::model::rng::position();
    let vars = model.varmap.data().lock().unwrap().clone();
    let mut out: Vec<(String, Vec<f32>)> = vars
        .iter()
        .filter(|(name, _)| name.starts_with("lora."))
        .map(|(name, var)| {
            // Master weights and their gradients stay f32 whatever the base computes in.
            let g = grads.get(var.as_tensor()).expect(name);
            assert_eq!(
                (var.dtype(), g.dtype()),
                (candle_core::DType::F32, candle_core::DType::F32)
            );
            (name.clone(), g.flatten_all().unwrap().to_vec1().unwrap())
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    (out, after, loss.value().unwrap())
}

/// Activation checkpointing (`model.checkpoint_layers`) recomputes each layer from its saved input
/// in the backward replay, and `model.keep_activations` replays nothing: with dropout on
/// everywhere (index entries included), the gradients must equal the call-level replay's.
#[tokio::test(flavor = "multi_thread")]
async fn checkpointing_and_kept_activations_give_the_replays_gradients() {
    let dir = prepared().await;
    let gradients = |how: &str| lora_gradients(dir.path(), candle_core::DType::F32, &[how]);
    let (replayed, after, _) = gradients("model.checkpoint_layers=false");
    let largest = replayed.iter().flat_map(|(_, g)| g).fold(0f32, |m, g| m.max(g.abs()));
    assert!(largest > 1e-4, "the adapters get gradients");
    for other in ["model.checkpoint_layers=true", "model.keep_activations=true"] {
        let (grads, other_after, _) = gradients(other);
        assert_eq!(replayed.len(), grads.len());
        assert_eq!(after, other_after, "{other}: the random stream moved differently");
        for ((name, a), (_, b)) in replayed.iter().zip(&grads) {
            let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(diff <= 1e-5 * largest, "{other}: {name} differs by {diff}");
        }
    }
}

/// The whole step in bf16 compute (the GPU's, `--features cuda`; candle runs it on the CPU too):
/// master weights and their gradients stay f32 (checked in `lora_gradients`), and the loss and
/// the gradients are f32's within bf16's precision. All four experts take every row here: with
/// top-2 routing, bf16's rounding can flip a near-tie between two experts and with it the loss.
#[tokio::test(flavor = "multi_thread")]
async fn bf16_compute_trains_f32_master_weights() {
    use candle_core::DType;
    let dir = prepared().await;
    let gradients = |dtype| lora_gradients(dir.path(), dtype, &["model.moe.top_k=4"]);
    let ((f32_grads, _, f32_loss), (bf16_grads, _, bf16_loss)) = (gradients(DType::F32), gradients(DType::BF16));
    let flat = |grads: &[(String, Vec<f32>)]| grads.iter().flat_map(|(_, g)| g.clone()).collect::<Vec<f32>>();
    let (a, b) = (flat(&f32_grads), flat(&bf16_grads));
    let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(x, y)| (x * y) as f64).sum::<f64>();
    let cosine = dot(&a, &b) / (dot(&a, &a) * dot(&b, &b)).sqrt();
    assert!(dot(&a, &a) > 1e-8, "the adapters get gradients");
    assert!(
        (bf16_loss - f32_loss).abs() < 0.01 * f32_loss,
        "loss {bf16_loss} vs {f32_loss}"
    );
    assert!(cosine > 0.99, "gradients' cosine {cosine}");
}
