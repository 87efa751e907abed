//! `naics-trainer fit`: the training loop. Reads the shards of `build-shards` by mmap, encodes
//! each step's distinct codes once, fuses and maps them onto the hyperboloid, and minimizes the
//! loss terms (`loss`) with AdamW; validates and keeps the best checkpoints (`monitor`).
//!
//! Gradient accumulation: a step is `accumulate_grad_batches` micro-batches of `batch_size`
//! samples; their InfoNCE losses are averaged and the load-balancing statistics pooled over all
//! of them (the global batch), then one backward pass and one optimizer step run.

use super::TrainingData;
use super::checkpoint::{self, TrainState};
use super::loss::{batch_loss, replays, step_loss};
use super::monitor::validate_and_save;
use super::optim::{self, AdamW};
use super::query_map::{self, QueryMapSummary};
use super::replay::backward;
use crate::model::Embedder;
use crate::model::fusion::{global_load, shares};
use crate::setup::device;
use crate::timing;
use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use naics_common::atomic::write_json;
use naics_common::config::{Config, Loaded, Monitor};
use naics_common::layout;
use naics_common::samples::{Record, SamplesFile, Split};
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

pub struct FitOptions {
    /// Continue from `checkpoints/{experiment}/`'s last checkpoint, optimizer state included.
    pub resume: bool,
    /// Start from these weights (the previous curriculum stage's best checkpoint).
    pub init: Option<PathBuf>,
    pub checkpoints: PathBuf,
    pub outputs: PathBuf,
    /// Fit the query map (`model.query_map`) on the best checkpoint once training ends: the
    /// last stage of a `fit` command.
    pub query_map: bool,
}

#[derive(Debug)]
pub struct FitSummary {
    pub best: PathBuf,
    pub monitor: Monitor,
    /// The monitored value (`training.trainer.monitor`) of the best checkpoint.
    pub best_value: f64,
    pub steps: usize,
    pub stopped_early: bool,
    pub query_map: Option<QueryMapSummary>,
}

/// The experiment's training shards (one per sampled epoch) and validation shard, checked to be
/// of the model's tokenizer.
fn open_shards(config: &Config, tokenizer: [u8; 32]) -> Result<(Vec<SamplesFile>, SamplesFile)> {
    let dir = layout::experiment_shards(&config.data.shards_dir, &config.experiment);
    let hint = || format!("run `naics-pipeline build-shards -c {}` first", config.experiment);
    let mut train = Vec::new();
    for epoch in 0.. {
        let path = dir.join(layout::samples_file(Split::Train, epoch));
        if !path.exists() {
            break;
        }
        train.push(SamplesFile::open(&path, Some(tokenizer))?);
    }
    if train.is_empty() {
        bail!("no training shards in {}: {}", dir.display(), hint());
    }
    let validation =
        SamplesFile::open(&dir.join(layout::samples_file(Split::Validation, 0)), Some(tokenizer)).with_context(hint)?;
    Ok((train, validation))
}

pub fn fit(loaded: &Loaded, options: &FitOptions) -> Result<FitSummary> {
    let config = &loaded.config;
    let (device, dtype) = device::best(config.training.trainer.precision)?;
    let model = Embedder::new(config, &device, dtype)?;
    let (train_files, validation) = open_shards(config, model.channels.encoder().tokenizer_sha256)?;
    let data = TrainingData::load(&model)?;
    let ckpt_dir = options.checkpoints.join(&config.experiment);
    let out_dir = options.outputs.join(&config.experiment);
    std::fs::create_dir_all(&out_dir)?;
    std::fs::write(out_dir.join("config.yaml"), loaded.to_yaml())?;

    let t = &config.training;
    let micro = config.data.batch_size.max(1);
    let per_step = micro * t.accumulate_grad_batches.max(1);
    let steps_per_epoch = train_files[0].len().div_ceil(per_step);
    let total_steps = steps_per_epoch * t.trainer.max_epochs;
    let adapter_scale = t.optimizer.adapter_lr.map_or(1.0, |lr| lr / t.optimizer.lr);
    let mut optimizer = AdamW::new(&model.varmap, t.optimizer.weight_decay, adapter_scale)?;
    let mut state = TrainState::default();
    if let Some(init) = &options.init {
        checkpoint::load_weights(init, &model.varmap, config).context("--init: the initial weights")?;
    }
    if options.resume {
        let last = checkpoint::last(&ckpt_dir)?
            .with_context(|| format!("--resume: no checkpoint in {}", ckpt_dir.display()))?;
        state = checkpoint::load(&last, &model.varmap, &mut optimizer, config)?;
    }
    let metrics_path = out_dir.join("metrics.jsonl");
    let mut metrics = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&metrics_path)?;
    if !options.resume {
        metrics.set_len(0)?;
    }

    let bar = ProgressBar::new(total_steps as u64);
    bar.set_style(ProgressStyle::with_template(
        "{bar:30} {pos}/{len} steps {elapsed}<{eta} {msg}",
    )?);
    bar.set_position(state.step as u64);
    let coef = config.model.moe.load_balance_coef;
    let validate = |optimizer: &mut AdamW, state: &mut TrainState, metrics: &mut std::fs::File| {
        validate_and_save(&model, &data, &validation, optimizer, state, &ckpt_dir, loaded, metrics)
    };
    let mut stopped_early = false;
    let mut step_time = timing::Steps::default();
    timing::take();
    'epochs: while state.epoch < t.trainer.max_epochs {
        let file = &train_files[state.epoch % train_files.len()];
        let steps = file.len().div_ceil(per_step);
        while state.batch < steps {
            let started = Instant::now();
            timing::recording(true);
            let start = state.batch * per_step;
            let records: Vec<Record> = (start..(start + per_step).min(file.len()))
                .map(|i| file.get(i))
                .collect();
            let chunks: Vec<&[Record]> = records.chunks(micro).collect();
            let picks = data
                .queries
                .draw(config.data.seed, state.step, config.data.queries_per_step);
            // Pairs of entries stay in one micro-batch.
            let group = if data.queries.pairs() { 2 } else { 1 };
            let per_chunk = picks.len().div_ceil(chunks.len()).next_multiple_of(group);
            let parts = chunks
                .iter()
                .enumerate()
                .map(|(i, chunk)| {
                    let mine = picks
                        .get(i * per_chunk..((i + 1) * per_chunk).min(picks.len()))
                        .unwrap_or(&[]);
                    batch_loss(&model, &data, chunk, mine, true)
                })
                .collect::<Result<Vec<_>>>()?;
            let loads = global_load(&parts.iter().map(|p| &p.moe).collect::<Vec<_>>());
            let (loss, terms) = timing::time("loss", || step_loss(&parts, &config.loss, coef))?;
            let value = loss.value()?;
            if !value.is_finite() {
                let last = checkpoint::last(&ckpt_dir)?
                    .map(|p| p.display().to_string())
                    .unwrap_or("none yet".into());
                bail!(
                    "loss is {value} at step {}; stopping. Last good checkpoint: {last}",
                    state.step
                );
            }
            let grads = timing::time("backward", || backward(&model, &loss, &replays(&parts)))?;
            let (grad_norm, grad_scale) =
                timing::time("clip", || optim::clip_scale(&grads, &optimizer.vars(), t.gradient_clip))?;
            let lr = optim::learning_rate(
                state.step,
                t.scheduler.warmup_steps,
                total_steps,
                t.optimizer.lr,
                t.scheduler.min_lr,
            );
            timing::time("optimizer", || optimizer.step(&grads, lr, grad_scale))?;
            timing::add_flops("optimizer", optim::ADAMW_FLOPS * optimizer.weights(&grads) as u64);
            let moe = model.head.moe();
            moe.balance(&loads, config.model.moe.route_bias_rate)?;
            timing::recording(false);
            step_time.add(started.elapsed());
            state.step += 1;
            state.batch += 1;
            let per_s = records.len() as f64 / started.elapsed().as_secs_f64();
            writeln!(
                metrics,
                "{}",
                json!({"step": state.step, "epoch": state.epoch, "loss": value, "nce": terms.nce,
                       "load_balance": terms.load_balance, "tree": terms.tree, "query": terms.query, "entry": terms.entry, "expert_share": shares(&loads), "route_bias": moe.route_bias()?, "lr": lr, "grad_norm": grad_norm, "samples_per_s": per_s})
            )?;
            bar.set_message(format!("loss {value:.4} nce {:.4} {per_s:.0} samples/s", terms.nce));
            bar.inc(1);
            let val_now = t
                .trainer
                .val_every_n_steps
                .is_some_and(|n| n > 0 && state.step % n == 0);
            if val_now && !validate(&mut optimizer, &mut state, &mut metrics)? {
                stopped_early = true;
                break 'epochs;
            }
        }
        state.epoch += 1;
        state.batch = 0;
        if !validate(&mut optimizer, &mut state, &mut metrics)? {
            stopped_early = true;
            break;
        }
    }
    bar.finish_and_clear();
    drop(metrics);
    step_time.write(&out_dir.join("step_time.json"), timing::take())?;
    crate::plots::loss_curves(&metrics_path, &out_dir.join("loss.png"))?;
    let (best, score) = checkpoint::best(&ckpt_dir)?.context("no checkpoint was written")?;
    let query_map = if options.query_map {
        let summary = query_map::fit(&model, &data, &best)?;
        if let Some(summary) = &summary {
            write_json(&out_dir.join("query_map.json"), summary)?;
        }
        summary
    } else {
        None
    };
    let monitor = t.trainer.monitor;
    Ok(FitSummary {
        best,
        monitor,
        best_value: if monitor.higher_is_better() { -score } else { score },
        steps: state.step,
        stopped_early,
        query_map,
    })
}
