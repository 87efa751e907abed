//! Fitting the query map ([`crate::model::query_map`]) after the last stage of a `fit`: with the
//! best checkpoint's encoder, fusion and codes' points fixed, every training text (each training
//! entry, each leaf's title) goes through the text adapters and the head once (what the map reads
//! of it is kept: its tangent and its encoder vector); then `epochs`
//! passes of InfoNCE of each text against every leaf at once (a cross-entropy over all of them,
//! where a step's own leaves were all the query term had), only the map learning, for each of
//! `members` networks from its own seed; the map becomes their mean, and its weights are
//! written back into that checkpoint.

use super::TrainingData;
use crate::model::Embedder;
use crate::model::cache::progress;
use crate::model::kernels::matmul;
use crate::model::lorentz;
use crate::model::query_map::QueryMap;
use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use naics_common::atomic::write_atomically;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

/// What fitting the map did (`outputs/{experiment}/query_map.json`).
#[derive(Debug, Serialize)]
pub struct QueryMapSummary {
    /// Networks fitted apart and averaged into the map.
    pub members: usize,
    /// Training texts: the training entries of leaves, then every leaf's title.
    pub texts: usize,
    pub leaves: usize,
    /// The mean loss of each pass, over the members.
    pub losses: Vec<f64>,
    pub seconds: f64,
}

/// Fits the model's query map on `checkpoint`'s weights and writes them back into it; none
/// where the model has no map.
pub fn fit(model: &Embedder, data: &TrainingData, checkpoint: &Path) -> Result<Option<QueryMapSummary>> {
    let Some(map) = model.head.query_map() else {
        return Ok(None);
    };
    let started = Instant::now();
    let config = &model.config;
    let settings = &config.model.query_map;
    model
        .varmap
        .clone()
        .load(checkpoint)
        .with_context(|| format!("loading {}", checkpoint.display()))?;
    let leaves = data.codes.leaves();
    let slot: HashMap<usize, u32> = leaves.iter().enumerate().map(|(j, &l)| (l, j as u32)).collect();
    // Entries of codes that are no leaf (a few ICD-10-CM categories) have no answer here.
    let entries: Vec<(usize, u32)> = (0..data.queries.len())
        .filter_map(|i| Some((i, *slot.get(&(data.queries.code[i] as usize))?)))
        .collect();
    let mut ids = data.queries.ids(&entries.iter().map(|&(i, _)| i).collect::<Vec<_>>());
    let titles: Vec<String> = leaves.iter().map(|&l| data.codes.title[l].clone()).collect();
    ids.extend(model.channels.encoder().tokenize(&titles)?);
    let targets: Vec<u32> = entries.iter().map(|&(_, j)| j).chain(0..leaves.len() as u32).collect();

    let device = map.vars()[0].device().clone();
    let inputs = model
        .query_map_inputs(&ids, &progress(ids.len(), "texts through the text adapters")?)?
        .to_device(&device)?;
    let dim = config.model.embedding_dim;
    let (points, _) = model.embed_codes(data.codes.len())?;
    let leaf_rows = Tensor::from_vec(leaves.iter().map(|&l| l as u32).collect(), leaves.len(), &Device::Cpu)?;
    let leaf_points = Leaves::new(
        &points
            .index_select(&leaf_rows, 0)?
            .to_dtype(DType::F32)?
            .to_device(&device)?,
    )?;

    let (c, temperature) = (model.curvature(), config.loss.temperature);
    let batch = settings.batch_size.max(1);
    let steps = progress(
        settings.members * settings.epochs * targets.len().div_ceil(batch),
        "query map steps",
    )?;
    // One member from `seed`: its first layer drawn and its texts shuffled each pass from it.
    // The mean loss of each pass.
    let fit_member = |member: &QueryMap, seed: u64| -> Result<Vec<f64>> {
        member.reset(seed)?;
        let mut optimizer = AdamW::new(
            member.vars(),
            ParamsAdamW {
                lr: settings.lr,
                weight_decay: 0.0,
                ..Default::default()
            },
        )?;
        let mut losses = Vec::with_capacity(settings.epochs);
        for epoch in 0..settings.epochs {
            let mut order: Vec<u32> = (0..targets.len() as u32).collect();
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed.wrapping_add(epoch as u64)));
            let mut total = 0.0;
            for rows in order.chunks(batch) {
                let picked = Tensor::from_slice(rows, rows.len(), &device)?;
                let mine: Vec<u32> = rows.iter().map(|&r| targets[r as usize]).collect();
                let x = inputs.index_select(&picked, 0)?;
                let text_points = lorentz::exp_map0(&member.apply(&x.narrow(1, 0, dim)?, &x)?, c)?;
                let (loss, gradient) = leaf_points.softmax(&text_points.detach(), &mine, c, temperature)?;
                // The gradient with respect to the points, carried back through the map by candle.
                optimizer.backward_step(&(text_points * gradient)?.sum_all()?)?;
                total += loss * rows.len() as f64;
                steps.inc(1);
            }
            losses.push(total / targets.len() as f64);
        }
        Ok(losses)
    };
    let mut members = Vec::with_capacity(settings.members);
    let mut losses = vec![0.0; settings.epochs];
    for k in 0..settings.members {
        // Member 0 draws from the run's seed itself, so a map of one member is fitted as before.
        let member = map.member(settings.hidden)?;
        let own = fit_member(&member, config.data.seed.wrapping_add((k as u64) << 32))?;
        for (mean, loss) in losses.iter_mut().zip(own) {
            *mean += loss / settings.members as f64;
        }
        members.push(member);
    }
    map.average(&members)?;
    steps.finish_and_clear();
    write_atomically(checkpoint, |tmp| Ok(model.varmap.save(tmp)?))
        .with_context(|| format!("writing the query map into {}", checkpoint.display()))?;
    Ok(Some(QueryMapSummary {
        members: members.len(),
        texts: targets.len(),
        leaves: leaves.len(),
        losses,
        seconds: started.elapsed().as_secs_f64(),
    }))
}

/// The leaves' points, time coordinate negated ([l, d + 1], and transposed), so that one matrix
/// product gives every Minkowski inner product <x, y>_L of texts x with them.
struct Leaves {
    flipped: Tensor,
    flipped_t: Tensor,
}

impl Leaves {
    fn new(points: &Tensor) -> Result<Self> {
        let d = points.dim(1)?;
        let flipped = Tensor::cat(&[&points.narrow(1, 0, 1)?.neg()?, &points.narrow(1, 1, d - 1)?], 1)?;
        Ok(Leaves {
            flipped_t: flipped.t()?.contiguous()?,
            flipped,
        })
    }

    /// The mean cross-entropy of texts' points `x` [b, d + 1] over every leaf (logits -d(x, y) /
    /// `temperature`, the answers `targets`), and its gradient with respect to `x`, written out:
    /// a [b, leaves] matrix is all the memory it takes, where candle's graph of the same kept a
    /// dozen for its backward pass (docs/benchmarks.md, stop 41). With
    /// w = -c <x, y>_L - 1 and d = acosh(1 + w) / sqrt(c) (as `lorentz::pairwise`, w clamped
    /// at 1e-12), dL/d<x, y>_L = (p - onehot) sqrt(c) / (temperature sqrt(w (w + 2))) / b.
    fn softmax(&self, x: &Tensor, targets: &[u32], c: f64, temperature: f64) -> Result<(f64, Tensor)> {
        let (b, n) = (x.dim(0)?, self.flipped.dim(0)?);
        let mut inner = matmul(x, &self.flipped_t)?.flatten_all()?.to_vec1::<f32>()?;
        let scale = 1.0 / (c.sqrt() * temperature);
        let losses: Vec<f64> = inner
            .par_chunks_mut(n)
            .zip(targets)
            .map(|(row, &target)| {
                let w: Vec<f64> = row.iter().map(|&v| (-c * v as f64 - 1.0).max(1e-12)).collect();
                let logits: Vec<f64> = w
                    .iter()
                    .map(|&w| -(1.0 + w + (w * (w + 2.0)).sqrt()).ln() * scale)
                    .collect();
                let top = logits.iter().cloned().fold(f64::MIN, f64::max);
                let lse = top + logits.iter().map(|l| (l - top).exp()).sum::<f64>().ln();
                for (j, value) in row.iter_mut().enumerate() {
                    let p = (logits[j] - lse).exp() - if j == target as usize { 1.0 } else { 0.0 };
                    let slope = if w[j] > 1e-12 {
                        c * scale / (w[j] * (w[j] + 2.0)).sqrt()
                    } else {
                        0.0
                    };
                    *value = (p * slope / b as f64) as f32;
                }
                lse - logits[target as usize]
            })
            .collect();
        let weights = Tensor::from_vec(inner, (b, n), x.device())?;
        Ok((losses.iter().sum::<f64>() / b as f64, matmul(&weights, &self.flipped)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;
    use rand::Rng;

    fn normal(rng: &mut ChaCha8Rng, shape: (usize, usize), scale: f32) -> Tensor {
        let values = (0..shape.0 * shape.1)
            .map(|_| rng.random_range(-scale..scale))
            .collect();
        Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
    }

    /// Against candle's autograd of the same loss (`lorentz::pairwise`, cross-entropy) on seeded
    /// random points, at two curvatures: the loss and every entry of the gradient.
    #[test]
    fn the_written_out_gradient_is_autograds() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let targets = [3u32, 0, 39, 12, 7, 3];
        for (c, temperature) in [(1.0, 0.07), (0.7, 0.2)] {
            let x = Var::from_tensor(&lorentz::exp_map0(&normal(&mut rng, (6, 8), 1.2), c).unwrap()).unwrap();
            let leaves = lorentz::exp_map0(&normal(&mut rng, (40, 8), 1.2), c).unwrap();
            let logits = (lorentz::pairwise(x.as_tensor(), &leaves, c).unwrap().neg().unwrap() / temperature).unwrap();
            let loss = candle_nn::loss::cross_entropy(&logits, &Tensor::new(&targets, &Device::Cpu).unwrap()).unwrap();
            let want = loss
                .backward()
                .unwrap()
                .get(&x)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let (got_loss, got) = Leaves::new(&leaves)
                .unwrap()
                .softmax(x.as_tensor(), &targets, c, temperature)
                .unwrap();
            let want_loss = loss.to_scalar::<f32>().unwrap() as f64;
            assert!(
                (got_loss - want_loss).abs() < 1e-4 * want_loss,
                "loss {got_loss} vs {want_loss}"
            );
            let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let largest = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!((g - w).abs() <= 1e-3 * largest, "entry {i}: {g} vs {w} (c {c})");
            }
        }
    }
}
