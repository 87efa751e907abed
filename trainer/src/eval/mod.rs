//! `naics-trainer eval`, `embed` and `search`: the trained embedding of every code, measured
//! against the tree, exported, and searched with free text.
//!
//! A free-text query becomes a point the way a code does, with its one text in all four
//! channels: channel vectors -> MoE -> projection -> exponential map.

pub mod coding;
pub mod export;
pub mod plots;
pub mod report;

use crate::embedded::Embedded;
use crate::model::cache::{encode_sorted, progress, texts_key};
use crate::model::lora::Pass;
use crate::model::lorentz;
use crate::model::transformer;
use crate::tables::{self, Codes};
use anyhow::Result;
use candle_core::{D, Device, Tensor};
use indicatif::ProgressBar;
use naics_common::config::Pooling;
use serde::Serialize;

/// Texts ranked at a time: a chunk's scores against ICD-10-CM's 36,355 leaves are 37 MB (f32),
/// where all 1,302 held-out texts at once were 190 MB per ranking and the coder's features 1.1 GB.
pub const RANKED_AT_ONCE: usize = 256;

/// Held-out retrieval accuracies: top-1/5/10 and the top-1 code's agreement at 2..5 digits.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Retrieval {
    pub queries: usize,
    pub top1: f64,
    pub top5: f64,
    pub top10: f64,
    /// Top-1 agreement with the truth's ancestor at depth 0 (same root: NAICS's sector, 2
    /// digits), 1, 2 and 3 (NAICS: 3, 4 and 5 digits).
    pub prefix: [f64; 4],
}

/// Scores rankings one text at a time (a row of distance-like scores to `candidates`, lower is
/// nearer), so that callers rank texts in chunks and never hold a texts x leaves table. A
/// candidate codes a text right when it is the text's code or lies under it: ICD-10-CM's
/// inclusion terms belong to codes at every level, and a leaf under "C92.3 Myeloid sarcoma" is a
/// right answer for "Chloroma" (NAICS's index entries all belong to leaves).
pub struct Tally<'a> {
    codes: &'a Codes,
    candidates: &'a [usize],
    end: Vec<u32>,
    sums: Retrieval,
}

impl<'a> Tally<'a> {
    pub fn new(codes: &'a Codes, candidates: &'a [usize]) -> Tally<'a> {
        Tally {
            codes,
            candidates,
            end: tables::subtree_ends(&codes.parent),
            sums: Retrieval::default(),
        }
    }

    /// One text of code `t`, ranked by `row`.
    pub fn add(&mut self, t: usize, row: &[f32]) {
        let (end, candidates, r) = (self.end[t] as usize, self.candidates, &mut self.sums);
        r.queries += 1;
        let (Some(top), rank) = rank_of(row, |k| (t..end).contains(&candidates[k])) else {
            return;
        };
        r.top1 += (rank < 1) as u8 as f64;
        r.top5 += (rank < 5) as u8 as f64;
        r.top10 += (rank < 10) as u8 as f64;
        let (best, truth) = (self.codes.path(candidates[top]), self.codes.path(t));
        for (depth, p) in r.prefix.iter_mut().enumerate() {
            *p += (best.get(depth) == truth.get(depth)) as u8 as f64;
        }
    }

    /// The shares over the texts added.
    pub fn finish(self) -> Retrieval {
        let mut r = self.sums;
        let n = r.queries.max(1) as f64;
        r.top1 /= n;
        r.top5 /= n;
        r.top10 /= n;
        r.prefix.iter_mut().for_each(|p| *p /= n);
        r
    }
}

/// In the order a stable sort of `row` gives (lower first, ties by position): the first
/// candidate, and the rank of the first one that is `right` (usize::MAX: none is). Three passes
/// over the row instead of a sort: on ICD-10-CM's 36,355 leaves a sort per text was most of the
/// rankings' time.
fn rank_of(row: &[f32], right: impl Fn(usize) -> bool) -> (Option<usize>, usize) {
    let before = |a: usize, b: usize| row[a].total_cmp(&row[b]).then(a.cmp(&b)).is_lt();
    let earliest = |best: usize, k: usize| if before(k, best) { k } else { best };
    let top = (0..row.len()).reduce(earliest);
    let rank = match (0..row.len()).filter(|&k| right(k)).reduce(earliest) {
        Some(r) => (0..row.len()).filter(|&k| before(k, r)).count(),
        None => usize::MAX,
    };
    (top, rank)
}

/// The baseline a user would otherwise pick: the frozen base model's mean-pooled, normalized
/// vectors and cosine similarity, codes as "title. description".
pub struct Baseline<'a> {
    e: &'a Embedded,
    /// The candidates' vectors, transposed: [h, n].
    codes_t: Tensor,
}

impl<'a> Baseline<'a> {
    pub fn new(e: &'a Embedded, candidates: &[usize]) -> Result<Baseline<'a>> {
        let code_texts: Vec<String> = candidates
            .iter()
            .map(|&c| format!("{}. {}", e.codes.title[c], e.codes.description[c]))
            .collect();
        // The same for every checkpoint of a tree: encoded once, then read from the vector
        // cache (ICD-10-CM's 36,355 leaves took minutes of every `eval`).
        let key = texts_key(&[&e.model.channels.encoder().tokenizer_sha256], &code_texts);
        let codes = e.model.cache.get_or_compute("baseline-codes", &[&key], || {
            let bar = progress(code_texts.len(), "baseline texts encoded (cache)")?;
            let codes = embed(e, &code_texts, &bar);
            bar.finish_and_clear();
            codes
        })?;
        Ok(Baseline {
            e,
            codes_t: codes.to_device(&Device::Cpu)?.t()?.contiguous()?,
        })
    }

    /// 1 - cosine similarity of each query to each candidate: [q][n].
    pub fn rows(&self, queries: &[String]) -> Result<Vec<Vec<f32>>> {
        Ok(embed(self.e, queries, &ProgressBar::hidden())?
            .matmul(&self.codes_t)?
            .affine(-1.0, 1.0)?
            .to_vec2::<f32>()?)
    }
}

/// The frozen base's normalized mean-pooled vectors of `texts`, on the CPU in f32 (`bar`
/// counts them).
fn embed(e: &Embedded, texts: &[String], bar: &ProgressBar) -> Result<Tensor> {
    let encoder = e.model.channels.encoder();
    let ids = encoder.tokenize(texts)?;
    let rows: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
    // In calls of similar length: ICD-10-CM's descriptions run to a thousand characters, and
    // calls in file order were mostly padding (the baseline's 36,355 texts took 4.3 minutes).
    let vectors = encode_sorted(encoder, &rows, Pooling::Mean, Pass::default(), bar, false)?;
    Ok(transformer::normalize(&vectors)?)
}

/// Poincare-ball coordinates of every code.
pub fn poincare(e: &Embedded) -> Result<Tensor> {
    Ok(lorentz::to_poincare(&e.points.tensor()?, e.curvature())?)
}

/// Manifold check: max |<x, x>_L + 1/c| over codes.
pub fn manifold_error(e: &Embedded) -> Result<f64> {
    let points = e.points.tensor()?;
    let m = lorentz::inner(&points, &points)?;
    let err = (m + 1.0 / e.curvature())?.abs()?.max(D::Minus1)?;
    Ok(err.to_scalar::<f32>()? as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Against sorting the row: random rows with many ties, random sets of right candidates.
    #[test]
    fn ranks_equal_a_stable_sort() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for _ in 0..500 {
            let n = rng.random_range(1..60);
            let row: Vec<f32> = (0..n).map(|_| rng.random_range(0..8) as f32 / 4.0).collect();
            let right: Vec<bool> = (0..n).map(|_| rng.random_bool(0.1)).collect();
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&a, &b| row[a].total_cmp(&row[b]));
            let expected = order.iter().position(|&k| right[k]).unwrap_or(usize::MAX);
            assert_eq!(rank_of(&row, |k| right[k]), (Some(order[0]), expected));
        }
        assert_eq!(rank_of(&[], |_| true), (None, usize::MAX));
    }

    /// A random forest in pre-order: each code's parent is on the path to the code before it.
    fn random_codes(rng: &mut rand_chacha::ChaCha8Rng, n: usize) -> Codes {
        let (mut parent, mut level, mut path) = (Vec::new(), Vec::new(), Vec::<usize>::new());
        for i in 0..n {
            let keep = rng.random_range(0..=path.len());
            path.truncate(keep);
            parent.push(path.last().copied());
            level.push(path.len() as u8 + 1);
            path.push(i);
        }
        let code: Vec<String> = (0..n).map(|i| i.to_string()).collect();
        Codes {
            position: code.iter().enumerate().map(|(i, c)| (c.clone(), i)).collect(),
            code,
            title: vec![String::new(); n],
            description: vec![String::new(); n],
            level,
            sector: vec![String::new(); n],
            parent,
            examples: vec![Vec::new(); n],
            cited_examples: vec![0; n],
        }
    }

    /// Texts tallied a few at a time give what ranking every text against every leaf at once
    /// gives: each row sorted whole, the right leaves found by their paths.
    #[test]
    fn chunked_tallies_equal_the_dense_ranking_on_random_trees() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for _ in 0..50 {
            let n = rng.random_range(2..40);
            let codes = random_codes(&mut rng, n);
            let leaves = codes.leaves();
            let texts = 20;
            let truth: Vec<usize> = (0..texts).map(|_| rng.random_range(0..codes.len())).collect();
            let rows: Vec<Vec<f32>> = (0..texts)
                .map(|_| (0..leaves.len()).map(|_| rng.random_range(0..5) as f32).collect())
                .collect();
            let mut tally = Tally::new(&codes, &leaves);
            for (t, r) in truth.chunks(3).zip(rows.chunks(3)) {
                t.iter().zip(r).for_each(|(&t, row)| tally.add(t, row));
            }
            let got = tally.finish();

            let mut want = Retrieval {
                queries: texts,
                ..Default::default()
            };
            for (&t, row) in truth.iter().zip(&rows) {
                let mut order: Vec<usize> = (0..leaves.len()).collect();
                order.sort_by(|&a, &b| row[a].total_cmp(&row[b]));
                let rank = order.iter().position(|&k| codes.path(leaves[k]).contains(&t));
                let rank = rank.unwrap_or(usize::MAX);
                want.top1 += (rank < 1) as u8 as f64;
                want.top5 += (rank < 5) as u8 as f64;
                want.top10 += (rank < 10) as u8 as f64;
                let (best, truth) = (codes.path(leaves[order[0]]), codes.path(t));
                for (depth, p) in want.prefix.iter_mut().enumerate() {
                    *p += (best.get(depth) == truth.get(depth)) as u8 as f64;
                }
            }
            for x in [&mut want.top1, &mut want.top5, &mut want.top10] {
                *x /= texts as f64;
            }
            want.prefix.iter_mut().for_each(|p| *p /= texts as f64);
            assert_eq!(
                (got.queries, got.top1, got.top5, got.top10, got.prefix),
                (want.queries, want.top1, want.top5, want.top10, want.prefix)
            );
        }
    }
}
