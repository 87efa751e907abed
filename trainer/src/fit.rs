//! `naics-trainer fit`: the training loop. Reads the shards of `build-shards` by mmap, encodes
//! each step's distinct codes once, fuses and maps them onto the hyperboloid, and minimizes
//! hyperbolic InfoNCE plus the MoE load-balancing loss with AdamW.
//!
//! Gradient accumulation: a step is `accumulate_grad_batches` micro-batches of `batch_size`
//! samples; their InfoNCE losses are averaged and the load-balancing statistics pooled over all
//! of them (the global batch), then one backward pass and one optimizer step run.

use crate::channels::{ChannelSource, VectorCache};
use crate::checkpoint::{self, Checkpoint, TrainState};
use crate::eval::{self, metrics};
use crate::head::Head;
use crate::model::Encoder;
use crate::model::locate::locate;
use crate::model::transformer::Forward;
use crate::moe::{MoeOutput, load_balancing_loss};
use crate::optim::{self, AdamW};
use crate::queries::Queries;
use crate::tables::Codes;
use crate::tree_loss::{self, TreeDistances};
use crate::{device, lorentz, rng};
use anyhow::{Context, Result, bail};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use indicatif::{ProgressBar, ProgressStyle};
use naics_common::config::{Config, EncoderMode, Loaded, LossConfig, Monitor};
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
    pub monitor: Monitor,
    /// The monitored value (`training.trainer.monitor`) of the best checkpoint.
    pub best_value: f64,
    pub steps: usize,
    pub stopped_early: bool,
}

/// The model, and what a step reads besides the shards.
pub struct Trainer {
    pub head: Head,
    pub source: ChannelSource,
    pub varmap: VarMap,
    /// Read by [`Trainer::load_training_data`]; `eval` and `search` do without it.
    pub data: Option<TrainingData>,
    cache: VectorCache,
    config: Config,
}

/// What training reads besides the shards: the code tree (levels, tree distances for
/// `loss.tree_weight` and monitored metrics) and the index-entry anchors.
pub struct TrainingData {
    pub codes: Codes,
    pub tree: TreeDistances,
    pub queries: Queries,
}

/// The loss terms of one micro-batch.
pub struct BatchLoss {
    pub nce: Tensor,
    pub moe: MoeOutput,
    pub samples: usize,
    /// 1 - Pearson(Lorentz, tree) over the micro-batch's codes (training with `tree_weight` > 0).
    pub tree: Option<Tensor>,
    /// InfoNCE of the micro-batch's index entries against its six-digit codes.
    pub query: Option<Tensor>,
    /// `lora` training: how to replay the encoder for the backward pass.
    pub replays: Vec<Replay>,
}

/// An encoder pass of a `lora` micro-batch: what it encoded, its channel vectors (computed
/// without a graph) as a leaf of the loss's graph, and where the random stream stood when it
/// began.
pub struct Replay {
    encoded: Encoded,
    vectors: Var,
    rng: ([u8; 32], u128),
    /// The encoder calls' forward passes (`model.keep_activations`); none: replay them.
    kept: Vec<Forward>,
}

enum Encoded {
    Codes(Vec<u32>),
    /// Free texts (index entries), each in all four channels.
    Texts(Vec<Vec<u32>>),
}

impl Replay {
    /// `vectors` as a leaf of the loss's graph, and its replay in `lora` training (none
    /// otherwise: nothing to replay).
    fn leaf(
        source: &ChannelSource,
        train: bool,
        (vectors, kept): (Tensor, Vec<Forward>),
        encoded: Encoded,
        rng: ([u8; 32], u128),
    ) -> Result<(Tensor, Option<Replay>)> {
        let vectors = vectors.to_dtype(DType::F32)?;
        if !(train && matches!(source, ChannelSource::Lora { .. })) {
            return Ok((vectors, None));
        }
        let vectors = Var::from_tensor(&vectors)?;
        let leaf = vectors.as_tensor().clone();
        let replay = Replay {
            encoded,
            vectors,
            rng,
            kept,
        };
        Ok((leaf, Some(replay)))
    }
}

/// The step's loss terms, for the log.
#[derive(Debug, Default, Clone, Copy)]
pub struct Terms {
    pub nce: f64,
    pub load_balance: f64,
    pub tree: f64,
    pub query: f64,
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
        let cache = VectorCache::new(&config.data.shards_dir.join("cache"), &encoder, device);
        let source = match config.model.encoder_mode {
            EncoderMode::Frozen => ChannelSource::frozen(encoder, &tokens, config.model.pooling, &cache)?,
            EncoderMode::Lora => {
                let mut encoder = encoder;
                encoder.add_lora(&varmap, CHANNELS.len(), &config.model.lora)?;
                ChannelSource::Lora {
                    encoder,
                    tokens,
                    pooling: config.model.pooling,
                    chunk_tokens: config.model.chunk_tokens,
                    checkpoint_layers: config.model.checkpoint_layers,
                    keep_activations: config.model.keep_activations,
                }
            }
        };
        rng::init(&varmap)?;
        Ok(Trainer {
            head,
            source,
            varmap,
            data: None,
            cache,
            config: config.clone(),
        })
    }

    pub fn load_training_data(&mut self) -> Result<()> {
        let codes = Codes::read(&self.config.data.dir)?;
        let tree = TreeDistances::load(&self.config.data.dir, codes.len())?;
        let queries = Queries::load(&codes, &self.source, &self.cache)?;
        self.data = Some(TrainingData { codes, tree, queries });
        Ok(())
    }

    /// InfoNCE over (anchor, positive, K negatives) records, each distinct code encoded once;
    /// when training, also the tree-correlation term over those codes and the InfoNCE of the
    /// index entries `picks` (whose codes join the step's codes).
    pub fn batch_loss(&self, records: &[Record], picks: &[usize], train: bool) -> Result<BatchLoss> {
        let mut distinct: Vec<u32> = Vec::new();
        let mut slot: HashMap<u32, u32> = HashMap::new();
        let mut intern = |code: u32| {
            *slot.entry(code).or_insert_with(|| {
                distinct.push(code);
                distinct.len() as u32 - 1
            })
        };
        let mut anchors = Vec::with_capacity(records.len());
        let mut candidates = Vec::new();
        for r in records {
            for (i, code) in r.codes().enumerate() {
                let s = intern(code);
                if i == 0 { anchors.push(s) } else { candidates.push(s) }
            }
        }
        let data = self.data.as_ref();
        let query_slots: Vec<u32> = match data {
            Some(d) => picks.iter().map(|&p| intern(d.queries.code[p])).collect(),
            None => Vec::new(),
        };
        let mut replays = Vec::new();
        let rng_start = rng::position();
        let channels = self.source.vectors(&distinct, train)?;
        let (channels, replay) = Replay::leaf(
            &self.source,
            train,
            channels,
            Encoded::Codes(distinct.clone()),
            rng_start,
        )?;
        replays.extend(replay);
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
        let curvature = self.head.curvature();
        let distances = lorentz::distance(&a, &c, curvature)?;
        let nce = lorentz::info_nce(&distances, self.config.loss.temperature)?;

        let tree = match data {
            Some(d) if train && self.config.loss.tree_weight > 0.0 => Some(tree_loss::correlation_loss(
                &lorentz::pairwise(&out.points, &out.points, curvature)?,
                &d.tree.among(&distinct, device)?,
            )?),
            _ => None,
        };
        let query = match data {
            Some(d) if !query_slots.is_empty() => {
                let rng_start = rng::position();
                let vectors = d.queries.vectors(&self.source, picks, train)?;
                let encoded = Encoded::Texts(d.queries.ids(picks));
                let (vectors, replay) = Replay::leaf(&self.source, train, vectors, encoded, rng_start)?;
                replays.extend(replay);
                let q = self.head.forward(&vectors, train)?.points;
                // Six-digit codes are what a query is matched against (and every query's own code).
                let pool: Vec<u32> = (0..distinct.len() as u32)
                    .filter(|&s| d.codes.level[distinct[s as usize] as usize] == 6 || query_slots.contains(&s))
                    .collect();
                let targets: Vec<u32> = query_slots
                    .iter()
                    .map(|s| pool.iter().position(|p| p == s).expect("a query's code is in the pool") as u32)
                    .collect();
                let pool_points = out
                    .points
                    .index_select(&Tensor::from_vec(pool.clone(), pool.len(), device)?, 0)?;
                let logits = (lorentz::pairwise(&q, &pool_points, curvature)?.neg()? / self.config.loss.temperature)?;
                let targets = Tensor::from_vec(targets, query_slots.len(), device)?;
                Some(candle_nn::loss::cross_entropy(&logits, &targets)?)
            }
            _ => None,
        };
        Ok(BatchLoss {
            nce,
            moe: out.moe,
            samples: b,
            tree,
            query,
            replays,
        })
    }

    /// Gradients of the step's loss: backward through the head to the channel vectors and, in
    /// `lora` mode, each micro-batch's encoder calls replayed into the adapters.
    pub fn backward(&self, loss: &Tensor, parts: &[BatchLoss]) -> Result<GradStore> {
        let mut grads = loss.backward()?;
        let end = rng::position();
        for replay in parts.iter().flat_map(|p| &p.replays) {
            let Some(grad) = grads.remove(replay.vectors.as_tensor()) else {
                continue;
            };
            rng::restore(replay.rng.0, replay.rng.1);
            match &replay.encoded {
                Encoded::Codes(codes) => self.source.backprop(codes, &grad, &replay.kept, &mut grads)?,
                Encoded::Texts(ids) => self.source.backprop_texts(ids, &grad, &replay.kept, &mut grads)?,
            }
        }
        rng::restore(end.0, end.1);
        Ok(grads)
    }

    /// Mean InfoNCE over a samples file, without dropout or gradients.
    pub fn validate(&self, file: &SamplesFile) -> Result<f64> {
        let batch = self.config.data.batch_size.max(1);
        let (mut total, mut count) = (0.0, 0usize);
        for start in (0..file.len()).step_by(batch) {
            let records: Vec<Record> = (start..(start + batch).min(file.len())).map(|i| file.get(i)).collect();
            let loss = self.batch_loss(&records, &[], false)?;
            total += loss.nce.to_scalar::<f32>()? as f64 * loss.samples as f64;
            count += loss.samples;
        }
        Ok(if count == 0 { f64::NAN } else { total / count as f64 })
    }

    /// The index entries of step `step` (none without training data or with 0 per step).
    pub fn draw_queries(&self, step: usize) -> Vec<usize> {
        match &self.data {
            Some(d) => d
                .queries
                .draw(self.config.data.seed, step, self.config.data.queries_per_step),
            None => Vec::new(),
        }
    }

    /// A hierarchy metric over all codes, as `eval` computes it.
    pub fn hierarchy_metric(&self, metric: Monitor) -> Result<f64> {
        let d = self.data.as_ref().context("training data not loaded")?;
        let n = d.codes.len();
        let (points, _) = eval::embed_codes(self, n)?;
        let emb = eval::distance_matrix_of(&points, self.head.curvature())?;
        let tree = &d.tree.matrix;
        Ok(match metric {
            Monitor::ValLoss => bail!("val_loss is not a hierarchy metric"),
            Monitor::Cophenetic => {
                metrics::pearson(&metrics::upper_triangle(tree, n), &metrics::upper_triangle(&emb, n))
            }
            Monitor::NdcgAt10 => metrics::ndcg_at(tree, &emb, n, 10),
            Monitor::ParentAt1 => metrics::parent_at_1(&d.codes.parent, &d.codes.level, &emb, n),
            Monitor::NeighbourhoodMap => metrics::neighbourhood_map(&d.codes.parent, &emb, n),
        })
    }
}

/// The step's total loss: mean InfoNCE over the micro-batches, plus coef x load balancing over
/// all of them, plus the weighted means of the tree and query terms.
pub fn step_loss(parts: &[BatchLoss], loss: &LossConfig, coef: f64) -> Result<(Tensor, Terms)> {
    let samples: usize = parts.iter().map(|p| p.samples).sum();
    let device = parts[0].nce.device();
    let mut nce = Tensor::zeros((), DType::F32, device)?;
    for p in parts {
        nce = (nce + (&p.nce * (p.samples as f64 / samples as f64))?)?;
    }
    let lb = load_balancing_loss(&parts.iter().map(|p| &p.moe).collect::<Vec<_>>())?;
    let mut total = (&nce + (&lb * coef)?)?;
    let mut terms = Terms {
        nce: nce.to_scalar::<f32>()? as f64,
        load_balance: lb.to_scalar::<f32>()? as f64,
        ..Default::default()
    };
    let mean = |pick: fn(&BatchLoss) -> &Option<Tensor>| -> Result<Option<Tensor>> {
        let present: Vec<&Tensor> = parts.iter().filter_map(|p| pick(p).as_ref()).collect();
        if present.is_empty() {
            return Ok(None);
        }
        Ok(Some(Tensor::stack(&present, 0)?.mean_all()?))
    };
    if let Some(tree) = mean(|p| &p.tree)? {
        terms.tree = tree.to_scalar::<f32>()? as f64;
        total = (total + (tree * loss.tree_weight)?)?;
    }
    if let Some(query) = mean(|p| &p.query)? {
        terms.query = query.to_scalar::<f32>()? as f64;
        total = (total + (query * loss.query_weight)?)?;
    }
    Ok((total, terms))
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
    let (device, dtype) = device::best(&config.training.trainer.precision)?;
    let (train_files, validation) = open_shards(config)?;
    let mut trainer = Trainer::new(config, &device, dtype)?;
    trainer.load_training_data()?;
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
            let chunks: Vec<&[Record]> = records.chunks(micro).collect();
            let picks = trainer.draw_queries(state.step);
            let per_chunk = picks.len().div_ceil(chunks.len());
            let parts = chunks
                .iter()
                .enumerate()
                .map(|(i, chunk)| {
                    let mine = picks
                        .get(i * per_chunk..((i + 1) * per_chunk).min(picks.len()))
                        .unwrap_or(&[]);
                    trainer.batch_loss(chunk, mine, true)
                })
                .collect::<Result<Vec<_>>>()?;
            let loads: Vec<f32> = aggregate_load(&parts);
            let (loss, terms) = step_loss(&parts, &config.loss, coef)?;
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
            let mut grads = trainer.backward(&loss, &parts)?;
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
                json!({"step": state.step, "epoch": state.epoch, "loss": value, "nce": terms.nce,
                       "load_balance": terms.load_balance, "tree": terms.tree, "query": terms.query, "expert_load": loads, "lr": lr, "grad_norm": grad_norm, "samples_per_s": per_s})
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
    crate::plots::loss_curves(&metrics_path, &out_dir.join("loss.png"))?;
    let (best, score) = checkpoint::best(&ckpt_dir)?.context("no checkpoint was written")?;
    let monitor = t.trainer.monitor;
    Ok(FitSummary {
        best,
        monitor,
        best_value: if monitor.higher_is_better() { -score } else { score },
        steps: state.step,
        stopped_early,
    })
}

/// Validates, writes a checkpoint, keeps the best 3 by the monitored value and the last; false
/// when patience ran out.
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
    let monitor = loaded.config.training.trainer.monitor;
    let mut values = json!({"val_loss": val_loss});
    let score = match monitor {
        Monitor::ValLoss => val_loss,
        metric => {
            let value = trainer.hierarchy_metric(metric)?;
            values[metric.name()] = json!(value);
            -value
        }
    };
    let mut line = json!({"step": state.step, "epoch": state.epoch});
    line.as_object_mut()
        .expect("an object")
        .extend(values.as_object().expect("an object").clone());
    writeln!(metrics, "{line}")?;
    if score < state.best_score {
        state.best_score = score;
        state.bad_validations = 0;
    } else {
        state.bad_validations += 1;
    }
    checkpoint::save(&mut Checkpoint {
        dir,
        state,
        score,
        metrics: values,
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
