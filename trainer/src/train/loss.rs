//! The loss terms: hyperbolic InfoNCE over (anchor, positive, K negatives); the tree term
//! (`tree_term`: InfoNCE only orders each anchor's candidates; the tree term asks the distances
//! themselves to grow with the tree's, the cophenetic correlation that `eval` reports); the
//! query term, InfoNCE of index entries against the step's six-digit codes; the entries' own
//! term, where the text side trains (each entry against a second text of its code, for the
//! coder's nearest entries); and the step's weighted sum with the MoE's load balancing.

use super::TrainingData;
use super::replay::{Encoded, Replay, StepLoss};
use super::tree_term::tree_term;
use crate::model::Embedder;
use crate::model::fusion::{MoeOutput, load_balancing_loss};
use crate::model::kernels::matmul;
use crate::model::lorentz;
use crate::model::rng;
use crate::model::transformer::normalize;
use crate::timing;
use anyhow::Result;
use candle_core::{D, DType, Tensor};
use naics_common::config::LossConfig;
use naics_common::format::CHANNELS;
use naics_common::samples::Record;
use std::collections::HashMap;

/// The loss terms of one micro-batch.
pub struct BatchLoss {
    pub nce: Tensor,
    pub moe: MoeOutput,
    pub samples: usize,
    /// 1 - Pearson(Lorentz, tree) over the micro-batch's codes (training with `tree_weight` > 0).
    pub tree: Option<Tensor>,
    /// InfoNCE of the micro-batch's index entries against its six-digit codes.
    pub query: Option<Tensor>,
    /// The entries' own contrastive term ([`pair_loss`]), where entries come in pairs.
    pub entry: Option<Tensor>,
    /// Whether the query and entries terms teach the text side alone ([`StepLoss::text`]).
    pub text_apart: bool,
    /// `lora` training: how to replay the encoder for the backward pass.
    pub replays: Vec<Replay>,
}

/// Every encoder pass of the step's micro-batches, for [`super::replay::backward`].
pub fn replays(parts: &[BatchLoss]) -> Vec<&Replay> {
    parts.iter().flat_map(|p| &p.replays).collect()
}

/// The step's loss terms, for the log.
#[derive(Debug, Default, Clone, Copy)]
pub struct Terms {
    pub nce: f64,
    pub load_balance: f64,
    pub tree: f64,
    pub query: f64,
    pub entry: f64,
}

/// InfoNCE over (anchor, positive, K negatives) records, each distinct code encoded once;
/// when training, also the tree-correlation term over those codes and the InfoNCE of the
/// index entries `picks` (whose codes join the step's codes).
pub fn batch_loss(
    model: &Embedder,
    data: &TrainingData,
    records: &[Record],
    picks: &[usize],
    train: bool,
) -> Result<BatchLoss> {
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
    let query_slots: Vec<u32> = picks.iter().map(|&p| intern(data.queries.code[p])).collect();
    let mut replays = Vec::new();
    let rng_start = rng::position();
    let channels = timing::time("channels", || model.channels.vectors(&distinct, train))?;
    let (channels, replay) = Replay::leaf(
        model.channels.as_ref(),
        train,
        channels,
        Encoded::Codes(distinct.clone()),
        rng_start,
    )?;
    replays.extend(replay);
    let out = model.head.codes(&channels, &distinct, train)?;
    let device = out.points.device();
    let curvature = model.curvature();
    let loss = &model.config.loss;
    let b = records.len();
    let nce = timing::time("nce", || -> Result<Tensor> {
        let per = candidates.len() / b.max(1);
        let dim = out.points.dim(1)?;
        let a = out
            .points
            .index_select(&Tensor::from_vec(anchors, b, device)?, 0)?
            .unsqueeze(1)?;
        let c = out
            .points
            .index_select(&Tensor::from_vec(candidates, b * per, device)?, 0)?
            .reshape((b, per, dim))?;
        Ok(info_nce(&lorentz::distance(&a, &c, curvature)?, loss.temperature)?)
    })?;

    let tree = if train && loss.tree_weight > 0.0 {
        Some(timing::time("tree", || {
            tree_term(&out.points, &data.tree.among(&distinct, device)?, curvature)
        })?)
    } else {
        None
    };
    let mut entry = None;
    let text_apart = loss.text_apart && model.channels.text_trains();
    let query = if query_slots.is_empty() {
        None
    } else {
        let rng_start = rng::position();
        let vectors = timing::time("query", || data.queries.vectors(model.channels.as_ref(), picks, train))?;
        let encoded = Encoded::Texts(data.queries.ids(picks));
        let (vectors, replay) = Replay::leaf(model.channels.as_ref(), train, vectors, encoded, rng_start)?;
        replays.extend(replay);
        if train && data.queries.pairs() && loss.entry_weight > 0.0 {
            // Every channel holds the text's one vector: the first is it.
            let h = vectors.dim(1)? / CHANNELS.len();
            let codes: Vec<u32> = picks.iter().map(|&p| data.queries.code[p]).collect();
            entry = Some(timing::time("entries", || {
                pair_loss(&vectors.narrow(1, 0, h)?, &codes, loss.entry_temperature)
            })?);
        }
        let q = model.head.forward(&vectors, train)?.points;
        Some(timing::time("query", || -> Result<Tensor> {
            // Leaves (NAICS's six-digit codes) are what a query is matched against (and every query's own code).
            let pool: Vec<u32> = (0..distinct.len() as u32)
                .filter(|&s| data.is_leaf[distinct[s as usize] as usize] || query_slots.contains(&s))
                .collect();
            let targets: Vec<u32> = query_slots
                .iter()
                .map(|s| pool.iter().position(|p| p == s).expect("a query's code is in the pool") as u32)
                .collect();
            let mut pool_points = out
                .points
                .index_select(&Tensor::from_vec(pool.clone(), pool.len(), device)?, 0)?;
            if text_apart {
                pool_points = pool_points.detach();
            }
            if loss.query_pool > pool.len() && model.channels.codes_cached() {
                let taken = pool.iter().map(|&s| distinct[s as usize]).collect();
                let codes: Vec<u32> = query_slots.iter().map(|&s| distinct[s as usize]).collect();
                let seed = picks
                    .iter()
                    .fold(model.config.data.seed, |h, &p| h.rotate_left(5) ^ p as u64);
                let more = data.leaves.nearby(&codes, &taken, loss.query_pool - pool.len(), seed);
                // Empty where every leaf is in the step already (a small tree).
                if !more.is_empty() {
                    let channels = model.channels.vectors(&more, false)?.0.to_dtype(DType::F32)?;
                    let more_points = model.head.codes(&channels, &more, false)?.points.detach();
                    pool_points = Tensor::cat(&[pool_points, more_points], 0)?;
                }
            }
            let logits = (lorentz::pairwise(&q, &pool_points, curvature)?.neg()? / loss.temperature)?;
            let targets = Tensor::from_vec(targets, query_slots.len(), device)?;
            Ok(candle_nn::loss::cross_entropy(&logits, &targets)?)
        })?)
    };
    Ok(BatchLoss {
        nce,
        moe: out.moe,
        samples: b,
        tree,
        query,
        entry,
        text_apart,
        replays,
    })
}

/// The step's loss: mean InfoNCE over the micro-batches, plus coef x load balancing over all of
/// them, plus the weighted means of the tree, query and entries terms (the last two apart where
/// the text side trains on its own: [`StepLoss::text`]).
pub fn step_loss(parts: &[BatchLoss], loss: &LossConfig, coef: f64) -> Result<(StepLoss, Terms)> {
    let samples: usize = parts.iter().map(|p| p.samples).sum();
    let device = parts[0].nce.device();
    let mut nce = Tensor::zeros((), DType::F32, device)?;
    for p in parts {
        nce = (nce + (&p.nce * (p.samples as f64 / samples as f64))?)?;
    }
    let lb = load_balancing_loss(&parts.iter().map(|p| &p.moe).collect::<Vec<_>>())?;
    let mut shared = (&nce + (&lb * coef)?)?;
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
        shared = (shared + (tree * loss.tree_weight)?)?;
    }
    let mut side = Vec::new();
    if let Some(query) = mean(|p| &p.query)? {
        terms.query = query.to_scalar::<f32>()? as f64;
        side.push((query * loss.query_weight)?);
    }
    if let Some(entry) = mean(|p| &p.entry)? {
        terms.entry = entry.to_scalar::<f32>()? as f64;
        side.push((entry * loss.entry_weight)?);
    }
    let mut text: Option<Tensor> = None;
    for term in side {
        if parts[0].text_apart {
            text = Some(match text {
                Some(sum) => (sum + term)?,
                None => term,
            });
        } else {
            shared = (shared + term)?;
        }
    }
    Ok((StepLoss { shared, text }, terms))
}

/// The entries' own contrastive term over texts in pairs (2i, 2i + 1) of one code, `v` [n, h]
/// their vectors: each text's cosine to its partner against its cosines to the texts of other
/// codes (in-batch negatives, as sentence-transformers' multiple-negatives ranking loss), over
/// `temperature`. Other texts of the pair's own code are left out rather than counted as
/// negatives.
pub fn pair_loss(v: &Tensor, codes: &[u32], temperature: f64) -> Result<Tensor> {
    let n = codes.len();
    let device = v.device();
    let v = normalize(v)?;
    let similarity = (matmul(&v, &v.t()?)? / temperature)?;
    let left_out: Vec<f32> = (0..n * n)
        .map(|k| {
            let (i, j) = (k / n, k % n);
            let counted = i != j && (j == i ^ 1 || codes[i] != codes[j]);
            if counted { 0.0 } else { -1e4 }
        })
        .collect();
    let logits = (similarity + Tensor::from_vec(left_out, (n, n), device)?)?;
    let partners = Tensor::from_vec((0..n as u32).map(|i| i ^ 1).collect::<Vec<_>>(), n, device)?;
    Ok(candle_nn::loss::cross_entropy(&logits, &partners)?)
}

/// Hyperbolic InfoNCE: cross-entropy with target 0 over logits -[d(a, p), d(a, n_1), ...] / T.
/// `distances` is [batch, 1 + K] with the positive first; returns the mean loss.
pub fn info_nce(distances: &Tensor, temperature: f64) -> candle_core::Result<Tensor> {
    let logits = (distances.neg()? / temperature)?;
    let log_probs = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    log_probs.narrow(D::Minus1, 0, 1)?.neg()?.mean_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Against the cross-entropy written out for four texts in two pairs: texts 0, 1 of code 7
    /// and 2, 3 of code 9, every other text a negative.
    #[test]
    fn pair_loss_is_cross_entropy_over_partners() {
        let rows = [[1.0f32, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]];
        let v = Tensor::from_vec(rows.concat(), (4, 2), &Device::Cpu).unwrap();
        let t = 0.5;
        let got = pair_loss(&v, &[7, 7, 9, 9], t).unwrap().to_scalar::<f32>().unwrap() as f64;
        let cos = |a: usize, b: usize| (rows[a][0] * rows[b][0] + rows[a][1] * rows[b][1]) as f64;
        let mut want = 0.0;
        for i in 0..4 {
            let logsum = (0..4)
                .filter(|&j| j != i)
                .map(|j| (cos(i, j) / t).exp())
                .sum::<f64>()
                .ln();
            want += logsum - cos(i, i ^ 1) / t;
        }
        assert!((got - want / 4.0).abs() < 1e-5, "{got} vs {}", want / 4.0);
        // A third text of code 7 in the other pair's place is left out, not a negative.
        let same = pair_loss(&v, &[7, 7, 7, 7], t).unwrap().to_scalar::<f32>().unwrap();
        assert!(same.abs() < 1e-5, "only partners left: {same}");
    }
}
