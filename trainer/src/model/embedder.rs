//! The model as one type: an encoder's channel vectors, fused and mapped onto the hyperboloid.
//! `train` fits it, `eval` measures it; neither knows the other.

use super::cache::VectorCache;
use super::channels::frozen::FrozenChannels;
use super::channels::lora::LoraChannels;
use super::channels::query::QueryChannels;
use super::channels::{Channels, length_calls};
use super::encoder::{Encoder, in_input_order};
use super::fusion::{shares, weighted_load};
use super::head::Head;
use super::locate::locate;
use super::query_map;
use super::rng;
use super::transformer::normalize;
use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use indicatif::ProgressBar;
use naics_common::config::{Config, EncoderMode};
use naics_common::format::CHANNELS;
use naics_common::layout;
use naics_common::tokens::TokenCache;
use std::collections::{HashMap, HashSet};

/// Padded tokens per encoder call in [`Embedder::query_map_inputs`].
const TANGENT_CALL_TOKENS: usize = 4096;

pub struct Embedder {
    pub head: Head,
    /// Where channel vectors come from: the encoder mode, chosen here once.
    pub channels: Box<dyn Channels>,
    /// Every trainable parameter (head, MoE, adapters), by name.
    pub varmap: VarMap,
    pub cache: VectorCache,
    pub config: Config,
}

impl Embedder {
    /// Builds the model for `config`: encoder, channels, head; parameters initialized from the
    /// seeded stream.
    pub fn new(config: &Config, device: &Device, dtype: DType) -> Result<Embedder> {
        Self::build(config, device, dtype, None)
    }

    /// The model with its parameters taken from a checkpoint's tensors, by name: none is drawn at
    /// random first only to be overwritten (a fifth of a `search` call's time). Every parameter
    /// must be among them.
    pub fn with_weights(
        config: &Config,
        device: &Device,
        dtype: DType,
        weights: HashMap<String, Tensor>,
    ) -> Result<Embedder> {
        Self::build(config, device, dtype, Some(weights))
    }

    fn build(
        config: &Config,
        device: &Device,
        dtype: DType,
        weights: Option<HashMap<String, Tensor>>,
    ) -> Result<Embedder> {
        let shards = layout::experiment_shards(&config.data.shards_dir, &config.experiment);
        let folder = locate(&config.model.path, config.model.hub_id.as_deref())?;
        let mut encoder = Encoder::load(&folder, config.model.max_length, device, dtype)?;
        // A model built from a checkpoint's weights only infers: its products get the layout
        // inference is fastest in (`kernels::laid_out`).
        let infers = weights.is_some();
        if infers {
            encoder.transformer.lay_out_for_inference()?;
        }
        let tokens = TokenCache::open(&shards.join(layout::TOKENS_FILE), Some(encoder.tokenizer_sha256))
            .with_context(|| format!("run `naics-pipeline build-shards -c {}` first", config.experiment))?;
        rng::seed(config.data.seed);
        let varmap = VarMap::new();
        // A variable already in the map is what the layers get (candle's VarMap::get).
        let given: Option<HashSet<String>> = match weights {
            Some(weights) => {
                let mut data = varmap.data().lock().expect("varmap lock");
                for (name, tensor) in &weights {
                    data.insert(name.clone(), Var::from_tensor(&tensor.to_device(device)?)?);
                }
                Some(weights.into_keys().collect())
            }
            None => None,
        };
        let hidden = encoder.transformer.config.hidden_size;
        let mut head = Head::new(
            VarBuilder::from_varmap(&varmap, DType::F32, device).pp("head"),
            CHANNELS.len() * hidden,
            &config.model.moe,
            config.model.embedding_dim,
            &config.loss,
            if config.model.code_offsets {
                tokens.meta.codes
            } else {
                0
            },
            config.model.query_map.width(),
        )?;
        let cache = VectorCache::new(&layout::cache_dir(&config.data.shards_dir), &encoder, device);
        let mut channels: Box<dyn Channels> = match config.model.encoder_mode {
            EncoderMode::Frozen => Box::new(FrozenChannels::new(encoder, &tokens, config.model.pooling, &cache)?),
            EncoderMode::Query => Box::new(QueryChannels::new(encoder, &varmap, &tokens, &config.model, &cache)?),
            EncoderMode::Lora => Box::new(LoraChannels::new(encoder, &varmap, tokens, &config.model)?),
        };
        match given {
            None => rng::init(&varmap, &[query_map::VARS])?,
            Some(given) => {
                let data = varmap.data().lock().expect("varmap lock");
                if let Some(missing) = data.keys().find(|name| !given.contains(*name)) {
                    bail!(
                        "the checkpoint has no `{missing}`: it was written for another version of the model; \
                         train it again with `naics-trainer fit`"
                    );
                }
            }
        }
        if infers {
            head.lay_out_for_inference()?;
            channels.encoder_mut().transformer.fold_adapters()?;
        }
        Ok(Embedder {
            head,
            channels,
            varmap,
            cache,
            config: config.clone(),
        })
    }

    pub fn curvature(&self) -> f64 {
        self.head.curvature()
    }

    /// Points [n, d + 1] of the codes 0..n, on the CPU in f32, and each expert's share of
    /// routing them all (`eval` reports it; the same forward, so it costs nothing more).
    pub fn embed_codes(&self, n: usize) -> Result<(Tensor, Vec<f32>)> {
        let (mut points, mut loads) = (Vec::new(), Vec::new());
        let all: Vec<u32> = (0..n as u32).collect();
        for chunk in all.chunks(512) {
            let out = self.head.codes(
                &self.channels.vectors(chunk, false)?.0.to_dtype(DType::F32)?,
                chunk,
                false,
            )?;
            // Detached: the head's weights are variables, and each chunk's graph would
            // otherwise stay alive behind the points (gigabytes on ICD-10-CM's 47,200 codes).
            points.push(out.points.detach().to_device(&Device::Cpu)?);
            loads.push((out.moe.load, out.moe.rows));
        }
        let load = weighted_load(loads.iter().map(|(load, rows)| (load.as_slice(), *rows)));
        Ok((Tensor::cat(&points, 0)?, shares(&load)))
    }

    /// Points of free texts [q, d + 1], on the CPU in f32: each text in all four channels, then
    /// the path a code takes (MoE, projection, exponential map).
    pub fn text_points(&self, texts: &[String]) -> Result<Tensor> {
        let mut out = Vec::new();
        for chunk in texts.chunks(256) {
            let ids = self.channels.encoder().tokenize(chunk)?;
            let channels = self.channels.text_vectors(&ids, false)?.0.to_dtype(DType::F32)?;
            out.push(
                self.head
                    .forward(&channels, false)?
                    .points
                    .detach()
                    .to_device(&Device::Cpu)?,
            );
        }
        Ok(Tensor::cat(&out, 0)?)
    }

    /// What the query map reads for free texts ([`crate::model::query_map::QueryMap::input`],
    /// [q, d + h]), on the CPU in f32, in input order: what [`crate::train::query_map`] fits the
    /// map on. Texts go through in calls of similar length; `progress` counts them.
    pub fn query_map_inputs(&self, ids: &[Vec<u32>], progress: &ProgressBar) -> Result<Tensor> {
        let map = self
            .head
            .query_map()
            .context("the model has no query map (model.query_map.hidden is 0)")?;
        let lengths: Vec<usize> = ids.iter().map(Vec::len).collect();
        let inputs = in_input_order(ids.len(), &length_calls(&lengths, TANGENT_CALL_TOKENS), |call| {
            let rows: Vec<Vec<u32>> = call.iter().map(|&i| ids[i].clone()).collect();
            let channels = self.channels.text_vectors(&rows, false)?.0.to_dtype(DType::F32)?;
            progress.inc(call.len() as u64);
            let inputs = map.input(&self.head.text_tangents(&channels)?, &channels)?;
            Ok(inputs.detach().to_device(&Device::Cpu)?)
        })?;
        progress.finish_and_clear();
        Ok(inputs)
    }

    /// For coding, from one encoder pass where the mode allows: the points [q, d + 1] of free
    /// texts (as [`Embedder::text_points`]) and their normalized base vectors [q, h], both on the
    /// CPU in f32, in input order. Texts go through in calls of similar length (`budget` padded
    /// tokens each), so that a long description does not pad a batch of short ones.
    pub fn text_points_and_base(&self, ids: &[Vec<u32>], budget: usize) -> Result<(Tensor, Tensor)> {
        let hidden = self.channels.encoder().transformer.config.hidden_size;
        let dim = self.config.model.embedding_dim + 1;
        if ids.is_empty() {
            let empty = |w| Tensor::zeros((0, w), DType::F32, &Device::Cpu);
            return Ok((empty(dim)?, empty(hidden)?));
        }
        let lengths: Vec<usize> = ids.iter().map(Vec::len).collect();
        let both = in_input_order(ids.len(), &length_calls(&lengths, budget), |call| {
            let rows: Vec<Vec<u32>> = call.iter().map(|&i| ids[i].clone()).collect();
            let (channels, base) = self.channels.text_vectors_and_base(&rows)?;
            let points = self.head.forward(&channels.to_dtype(DType::F32)?, false)?.points;
            let base = normalize(&base)?.to_dtype(DType::F32)?;
            Ok(Tensor::cat(&[points, base], 1)?.detach().to_device(&Device::Cpu)?)
        })?;
        Ok((both.narrow(1, 0, dim)?, both.narrow(1, dim, hidden)?))
    }
}
