//! `naics-trainer fit`: the training loop. Reads the shards of `build-shards` by mmap, encodes
//! each step's distinct codes once, fuses and maps them onto the hyperboloid, and minimizes
//! hyperbolic InfoNCE plus the MoE load-balancing loss with AdamW.
//!
//! Gradient accumulation: a step is `accumulate_grad_batches` micro-batches of `batch_size`
//! samples; their InfoNCE losses are averaged and the load-balancing statistics pooled over all
//! of them (the global batch), then one backward pass and one optimizer step run.

use crate::channels::ChannelSource;
use crate::checkpoint::{self, Checkpoint, TrainState};
use crate::head::Head;
use crate::model::Encoder;
use crate::model::locate::locate;
use crate::moe::{MoeOutput, load_balancing_loss};
use crate::optim::{self, AdamW};
use crate::{device, lorentz, rng};
use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use indicatif::{ProgressBar, ProgressStyle};
use naics_common::config::{Config, EncoderMode, Loaded};
use naics_common::format::{CHANNELS, sha256};
use naics_common::samples::{Record, SamplesFile};
use naics_common::tokens::TokenCache;
use serde_json::json;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub struct FitOptions {
    /// Continue from `checkpoints/{experiment}/`'s last checkpoint, optimizer state included.
    pub resume: bool,
    /// Start from these weights (the previous curriculum stage's best checkpoint).
    pub init: Option<PathBuf>,
    pub checkpoints: PathBuf,
    pub outputs: PathBuf,
}

#[derive(Debug)]
pub struct FitSummary {
    pub best: PathBuf,
    pub best_val_loss: f64,
    pub steps: usize,
    pub stopped_early: bool,
}

/// Everything a step needs.
pub struct Trainer {
    pub head: Head,
    pub source: ChannelSource,
    pub varmap: VarMap,
    config: Config,
}

/// The loss terms of one micro-batch.
pub struct BatchLoss {
    pub nce: Tensor,
    pub moe: MoeOutput,
    pub samples: usize,
}

impl Trainer {
    /// Builds the model for `config`: encoder, channel source, head; parameters initialized from
    /// the seeded stream.
    pub fn new(config: &Config, device: &Device, dtype: DType) -> Result<Trainer> {
        let shards = config.data.shards_dir.join(&config.experiment);
        let folder = locate(&config.model.path, config.model.hub_id.as_deref())?;
        let encoder = Encoder::load(&folder, config.model.max_length, device, dtype)?;
        let tokenizer = sha256(&std::fs::read(folder.join("tokenizer.json"))?);
        let tokens = TokenCache::open(&shards.join("tokens.bin"), Some(tokenizer))
            .with_context(|| format!("run `naics-pipeline build-shards -c {}` first", config.experiment))?;
        rng::seed(config.data.seed);
        let varmap = VarMap::new();
        let hidden = encoder.transformer.config.hidden_size;
        let head = Head::new(
            VarBuilder::from_varmap(&varmap, DType::F32, device).pp("head"),
            CHANNELS.len() * hidden,
            &config.model.moe,
            config.model.embedding_dim,
            &config.loss,
        )?;
        let source = match config.model.encoder_mode {
            EncoderMode::Frozen => ChannelSource::frozen(
                encoder,
                &tokens,
                config.model.pooling,
                &config.data.shards_dir.join("cache"),
                device,
            )?,
            EncoderMode::Lora => {
                let mut encoder = encoder;
                encoder.add_lora(&varmap, CHANNELS.len(), &config.model.lora)?;
                ChannelSource::Lora {
                    encoder,
                    tokens,
                    pooling: config.model.pooling,
                }
            }
        };
        rng::init(&varmap)?;
        Ok(Trainer {
            head,
            source,
            varmap,
            config: config.clone(),
        })
    }

    /// InfoNCE over (anchor, positive, K negatives) records, each distinct code encoded once.
    pub fn batch_loss(&self, records: &[Record], train: bool) -> Result<BatchLoss> {
        let mut distinct: Vec<u32> = Vec::new();
        let mut slot: HashMap<u32, u32> = HashMap::new();
        let mut anchors = Vec::with_capacity(records.len());
        let mut candidates = Vec::new();
        for r in records {
            for (i, code) in r.codes().enumerate() {
                let s = *slot.entry(code).or_insert_with(|| {
                    distinct.push(code);
                    distinct.len() as u32 - 1
                });
                if i == 0 { anchors.push(s) } else { candidates.push(s) }
            }
        }
        let channels = self.source.vectors(&distinct, train)?.to_dtype(DType::F32)?;
        let out = self.head.forward(&channels, train)?;
        let device = out.points.device();
        let (b, per) = (records.len(), candidates.len() / records.len().max(1));
        let dim = out.points.dim(1)?;
        let a = out
            .points
            .index_select(&Tensor::from_vec(anchors, b, device)?, 0)?
            .unsqueeze(1)?;
        let c = out
            .points
            .index_select(&Tensor::from_vec(candidates, b * per, device)?, 0)?
            .reshape((b, per, dim))?;
        let distances = lorentz::distance(&a, &c, self.head.curvature())?;
        let nce = lorentz::info_nce(&distances, self.config.loss.temperature)?;
        Ok(BatchLoss {
            nce,
            moe: out.moe,
            samples: b,
        })
    }

    /// Mean InfoNCE over a samples file, without dropout or gradients.
    pub fn validate(&self, file: &SamplesFile) -> Result<f64> {
        let batch = self.config.data.batch_size.max(1);
        let (mut total, mut count) = (0.0, 0usize);
        for start in (0..file.len()).step_by(batch) {
            let records: Vec<Record> = (start..(start + batch).min(file.len())).map(|i| file.get(i)).collect();
            let loss = self.batch_loss(&records, false)?;
            total += loss.nce.to_scalar::<f32>()? as f64 * loss.samples as f64;
            count += loss.samples;
        }
        Ok(if count == 0 { f64::NAN } else { total / count as f64 })
    }
}

/// The step's total loss: mean InfoNCE over the micro-batches plus coef x load balancing over
/// all of them. Returns (total, nce, lb).
pub fn step_loss(parts: &[BatchLoss], coef: f64) -> Result<(Tensor, f64, f64)> {
    let samples: usize = parts.iter().map(|p| p.samples).sum();
    let mut nce = Tensor::zeros((), DType::F32, parts[0].nce.device())?;
    for p in parts {
        nce = (nce + (&p.nce * (p.samples as f64 / samples as f64))?)?;
    }
    let lb = load_balancing_loss(&parts.iter().map(|p| &p.moe).collect::<Vec<_>>())?;
    let total = (&nce + (&lb * coef)?)?;
    Ok((total, nce.to_scalar::<f32>()? as f64, lb.to_scalar::<f32>()? as f64))
}

fn open_shards(config: &Config) -> Result<(Vec<SamplesFile>, SamplesFile)> {
    let dir = config.data.shards_dir.join(&config.experiment);
    let folder = locate(&config.model.path, config.model.hub_id.as_deref())?;
    let tokenizer = sha256(&std::fs::read(folder.join("tokenizer.json"))?);
    let hint = || format!("run `naics-pipeline build-shards -c {}` first", config.experiment);
    let mut train = Vec::new();
    for epoch in 0.. {
        let path = dir.join(format!("train-e{epoch:03}.samples"));
        if !path.exists() {
            break;
        }
        train.push(SamplesFile::open(&path, Some(tokenizer))?);
    }
    if train.is_empty() {
        bail!("no training shards in {}: {}", dir.display(), hint());
    }
    let validation = SamplesFile::open(&dir.join("validation.samples"), Some(tokenizer)).with_context(hint)?;
    Ok((train, validation))
}

pub fn fit(loaded: &Loaded, options: &FitOptions) -> Result<FitSummary> {
    let config = &loaded.config;
    let (device, dtype) = device::best();
    let (train_files, validation) = open_shards(config)?;
    let trainer = Trainer::new(config, &device, dtype)?;
    let ckpt_dir = options.checkpoints.join(&config.experiment);
    let out_dir = options.outputs.join(&config.experiment);
    std::fs::create_dir_all(&out_dir)?;
    std::fs::write(out_dir.join("config.yaml"), loaded.to_yaml())?;

    let t = &config.training;
    let micro = config.data.batch_size.max(1);
    let per_step = micro * t.accumulate_grad_batches.max(1);
    let steps_per_epoch = train_files[0].len().div_ceil(per_step);
    let total_steps = steps_per_epoch * t.trainer.max_epochs;
    let mut optimizer = AdamW::new(&trainer.varmap, t.optimizer.weight_decay)?;
    let mut state = TrainState::default();
    if let Some(init) = &options.init {
        trainer
            .varmap
            .clone()
            .load(init)
            .with_context(|| format!("loading initial weights {}", init.display()))?;
    }
    if options.resume {
        let last = checkpoint::last(&ckpt_dir)?
            .with_context(|| format!("--resume: no checkpoint in {}", ckpt_dir.display()))?;
        state = checkpoint::load(&last, &trainer.varmap, &mut optimizer)?;
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
        validate_and_save(&trainer, &validation, optimizer, state, &ckpt_dir, loaded, metrics)
    };
    let mut stopped_early = false;
    'epochs: while state.epoch < t.trainer.max_epochs {
        let file = &train_files[state.epoch % train_files.len()];
        let steps = file.len().div_ceil(per_step);
        while state.batch < steps {
            let started = Instant::now();
            let start = state.batch * per_step;
            let records: Vec<Record> = (start..(start + per_step).min(file.len()))
                .map(|i| file.get(i))
                .collect();
            let parts = records
                .chunks(micro)
                .map(|chunk| trainer.batch_loss(chunk, true))
                .collect::<Result<Vec<_>>>()?;
            let loads: Vec<f32> = aggregate_load(&parts);
            let (loss, nce, lb) = step_loss(&parts, coef)?;
            let value = loss.to_scalar::<f32>()?;
            if !value.is_finite() {
                let last = checkpoint::last(&ckpt_dir)?
                    .map(|p| p.display().to_string())
                    .unwrap_or("none yet".into());
                bail!(
                    "loss is {value} at step {}; stopping. Last good checkpoint: {last}",
                    state.step
                );
            }
            let mut grads = loss.backward()?;
            let grad_norm = optim::clip_grad_norm(&mut grads, &optimizer.vars(), t.gradient_clip)?;
            let lr = optim::learning_rate(
                state.step,
                t.scheduler.warmup_steps,
                total_steps,
                t.optimizer.lr,
                t.scheduler.min_lr,
            );
            optimizer.step(&grads, lr)?;
            state.step += 1;
            state.batch += 1;
            let per_s = records.len() as f64 / started.elapsed().as_secs_f64();
            writeln!(
                metrics,
                "{}",
                json!({"step": state.step, "epoch": state.epoch, "loss": value, "nce": nce, "load_balance": lb,
                       "expert_load": loads, "lr": lr, "grad_norm": grad_norm, "samples_per_s": per_s})
            )?;
            bar.set_message(format!("loss {value:.4} nce {nce:.4} {per_s:.0} samples/s"));
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
    crate::plots::loss_curves(&metrics_path, &out_dir.join("loss.png"))?;
    let (best, best_val_loss) = checkpoint::best(&ckpt_dir)?.context("no checkpoint was written")?;
    Ok(FitSummary {
        best,
        best_val_loss,
        steps: state.step,
        stopped_early,
    })
}

/// Validates, writes a checkpoint, keeps the best 3 and the last; false when patience ran out.
fn validate_and_save(
    trainer: &Trainer,
    validation: &SamplesFile,
    optimizer: &mut AdamW,
    state: &mut TrainState,
    dir: &Path,
    loaded: &Loaded,
    metrics: &mut std::fs::File,
) -> Result<bool> {
    let val_loss = trainer.validate(validation)?;
    writeln!(
        metrics,
        "{}",
        json!({"step": state.step, "epoch": state.epoch, "val_loss": val_loss})
    )?;
    if val_loss < state.best_val_loss {
        state.best_val_loss = val_loss;
        state.bad_validations = 0;
    } else {
        state.bad_validations += 1;
    }
    checkpoint::save(&mut Checkpoint {
        dir,
        state,
        val_loss,
        loaded,
        varmap: &trainer.varmap,
        optimizer,
        validation,
    })?;
    Ok(state.bad_validations < loaded.config.training.trainer.patience)
}

/// Expert load fractions over the step's micro-batches, weighted by rows.
fn aggregate_load(parts: &[BatchLoss]) -> Vec<f32> {
    let rows: usize = parts.iter().map(|p| p.moe.rows).sum();
    let mut load = vec![0f32; parts[0].moe.load.len()];
    for p in parts {
        for (l, x) in load.iter_mut().zip(&p.moe.load) {
            *l += x * p.moe.rows as f32 / rows as f32;
        }
    }
    load
}
