//! Free text in, leaf codes out (NAICS: six-digit industries), each with a confidence. Three signals per candidate code,
//! fused by weights fitted on validation entries:
//!
//! - the trained points: minus the Lorentz distance from the text's point to the code's;
//! - the nearest training entries: the highest cosine between the text and any of the code's
//!   texts (title and training entries) under the frozen base model, mean-pooled as
//!   sentence-transformers pools it, or in `query` mode in the space the text adapters are
//!   trained in (new phrasings of known activities);
//! - the words: BM25 between the text and the leaf's path of titles and entries (`lexical`).
//!
//! The weights are the maximum-likelihood conditional logit over the candidates on validation
//! entries (`calibration`): a deterministic share of the training entries that training never
//! sees and the entry index leaves out, so the probabilities it gives are calibrated where the
//! held-out entries are concerned too. One scale over tens of thousands of candidates still
//! left the top answers' confidences off (too low when low, too high when high), so the top
//! answer's probability goes through a map fitted on the same entries (`calibration::fit_top`),
//! the others sharing the rest in their proportions. Answers at coarser levels come from summing
//! them (`levels`).

pub mod calibration;
pub mod levels;
pub mod lexical;

use crate::embedded::Embedded;
use crate::model::cache::{progress, texts_key};
use crate::model::kernels::product::times_values;
use crate::model::lorentz::Targets;
use crate::model::mapped::Mapped;
use crate::model::transformer;
use crate::tables::{Codes, LeafIndex};
use anyhow::Result;
use candle_core::Tensor;
use levels::{LevelAnswer, level_answer};
use lexical::Bm25;
use naics_common::atomic::write_atomically;
use naics_common::format::hex;
use naics_common::share;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::ops::Range;
use std::path::PathBuf;
use tokenizers::Tokenizer;

/// The signals, in the order of the weights: trained points, nearest entries, words.
pub const SIGNALS: [&str; 3] = ["points", "entries", "words"];

/// Part of the cached fusion's key beside the checkpoint's: a change in how a signal is
/// computed, or in what the fusion is fitted on, refits it.
const SIGNAL_VERSION: &[u8] = b"words: BM25 over leaf paths; fitted on own entries; no cross-reference repeats them; the top answers confidence mapped";

/// Texts go through the encoder in calls of at most this many padded tokens.
const CALL_TOKENS: usize = 4096;
/// Texts whose similarities to every entry are held at once.
const CHUNK: usize = 256;
/// The most feature rows (texts x candidates) the fusion is fitted on: 1 GiB of them.
const FIT_ROWS: usize = (1 << 30) / std::mem::size_of::<[f64; 3]>();

/// One candidate of an answer.
#[derive(Debug, Clone, Serialize)]
pub struct Ranked {
    /// A code index.
    pub code: usize,
    /// Lorentz distance from the text's point to the code's.
    pub distance: f32,
    pub confidence: f64,
}

/// What a coder answers for one text.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The k most likely leaf codes (NAICS: six-digit), most likely first.
    pub ranked: Vec<Ranked>,
    /// The deepest code whose confidence reaches `min_confidence` (none: not even a sector).
    pub level: Option<LevelAnswer>,
    /// The top code's confidence is below the abstention threshold: no code is given.
    pub abstained: bool,
    /// The text's point on the hyperboloid (empty where only features were given).
    pub point: Vec<f32>,
}

/// How answers are given.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub k: usize,
    /// The level-wise answer's threshold.
    pub min_confidence: f64,
    /// Below this top-1 confidence the answer is "no code" (0: always answer).
    pub abstain: f64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            k: 5,
            min_confidence: 0.5,
            abstain: 0.0,
        }
    }
}

impl Policy {
    /// A policy from a caller's values (the server's query, the Python package's arguments),
    /// missing ones defaulted: k at least 1 (more than the `candidates` gives them all),
    /// thresholds in [0, 1]. An error names the argument.
    pub fn checked(
        k: Option<usize>,
        min_confidence: Option<f64>,
        abstain: Option<f64>,
        candidates: usize,
    ) -> Result<Policy, BadArgument> {
        let default = Policy::default();
        let k = k.unwrap_or(default.k);
        if k == 0 {
            return Err(BadArgument::new("k", "0: expected at least 1"));
        }
        let unit = |name: &'static str, v: Option<f64>, d: f64| match v {
            Some(v) if !(0.0..=1.0).contains(&v) => Err(BadArgument::new(name, format!("{v}: expected 0 to 1"))),
            v => Ok(v.unwrap_or(d)),
        };
        Ok(Policy {
            k: k.min(candidates),
            min_confidence: unit("min_confidence", min_confidence, default.min_confidence)?,
            abstain: unit("abstain", abstain, default.abstain)?,
        })
    }
}

/// An argument out of its range: its name and what was expected.
#[derive(Debug, Clone, PartialEq)]
pub struct BadArgument {
    pub name: &'static str,
    pub message: String,
}

impl BadArgument {
    fn new(name: &'static str, message: impl Into<String>) -> BadArgument {
        BadArgument {
            name,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for BadArgument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.name, self.message)
    }
}

impl std::error::Error for BadArgument {}

/// The fitted fusion, cached beside the points of its checkpoint.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Fusion {
    pub weights: [f64; 3],
    /// Validation entries it was fitted on.
    pub fitted_on: usize,
    /// The map of a top answer's probability to the confidence shown ([`calibration::fit_top`]).
    pub top: [f64; 2],
}

impl Fusion {
    /// The points alone: the fusion of a tree without validation entries.
    const POINTS: Fusion = Fusion {
        weights: [1.0, 0.0, 0.0],
        fitted_on: 0,
        top: [1.0, 0.0],
    };
}

pub struct Coder<'a> {
    e: &'a Embedded,
    /// The leaves (NAICS: the six-digit codes), as code indexes: what a text is coded to.
    pub candidates: Vec<usize>,
    /// The frozen base's mean-pooled, normalized vectors of every candidate's texts, transposed
    /// into a contiguous [h, m] when cached: the right-hand side of every similarity product
    /// (against the strided view of [m, h], the server's 8-client latency was about 15 % higher),
    /// read in place from the cache file.
    texts_t: Mapped,
    /// The candidates' points, read in place by every text's distances.
    candidate_points: Targets<'a>,
    /// The candidate (position in `candidates`) of each column of `texts_t`.
    text_candidate: Vec<usize>,
    lexical: Bm25,
    /// The leaves under each code, for [`Coder::truth`] (the same leaves, in the same order, as
    /// `candidates`).
    leaves: LeafIndex,
    pub fusion: Fusion,
}

/// One text's signals over every candidate, in the order of `candidates` (see [`SIGNALS`]).
struct Signals {
    /// Lorentz distance from the text's point to the candidate's.
    distance: Vec<f32>,
    /// The highest cosine to any of the candidate's texts.
    nearest: Vec<f32>,
    /// BM25 of the text against the candidate's leaf path.
    words: Vec<f32>,
}

impl Signals {
    /// Candidate j's features, in the order of the weights: minus the distance, then the others.
    fn row(&self, j: usize) -> [f64; 3] {
        [-(self.distance[j] as f64), self.nearest[j] as f64, self.words[j] as f64]
    }

    /// The features of every candidate: [candidates][signal].
    fn rows(&self) -> Vec<[f64; 3]> {
        (0..self.distance.len()).map(|j| self.row(j)).collect()
    }

    /// Every candidate's logit under the fusion's weights (as [`calibration::probabilities`]
    /// weighs [`Signals::rows`]).
    fn logits(&self, w: &[f64; 3]) -> Vec<f64> {
        (0..self.distance.len())
            .map(|j| calibration::dot(&self.row(j), w))
            .collect()
    }
}

/// The validation entries the fusion is fitted on: (code index, text) of the code's own
/// training entries that training leaves out. Phrases that cite a code from another code's notes
/// (ICD-10-CM's cross-references) are left out of training there too, but not fitted on: they
/// are not the kind of text that gets coded, and half of ICD-10-CM's validation share would
/// otherwise be of them (the fusion leaned on the points and fell below entries + words alone).
pub fn validation_entries(e: &Embedded) -> Vec<(usize, String)> {
    let fraction = e.config.data.validation_entries;
    (0..e.codes.len())
        .flat_map(|c| {
            share::validation_entries(
                &e.codes.code[c],
                &e.codes.examples[c],
                e.codes.cited_examples[c],
                fraction,
            )
            .map(move |t| (c, t.clone()))
        })
        .collect()
}

impl<'a> Coder<'a> {
    /// Builds the entry index and the lexical index, and fits the fusion on the validation
    /// entries (or reads it from the cache, keyed by the checkpoint's points).
    pub fn new(e: &'a Embedded) -> Result<Coder<'a>> {
        let candidates = e.codes.leaves();
        // Every code's texts an answer may lean on, its title and the entries training reads:
        // the leaves' feed the entry index, and a leaf's word document is those of the leaf and
        // its ancestors.
        let validation = e.codes.validation(e.config.data.validation_entries);
        let own: Vec<Vec<&str>> = (0..e.codes.len())
            .map(|c| {
                std::iter::once(&e.codes.title[c])
                    .chain(e.codes.training_entries(&validation, c))
                    .map(String::as_str)
                    .collect()
            })
            .collect();
        let text_candidate: Vec<usize> = candidates
            .iter()
            .enumerate()
            .flat_map(|(j, &c)| std::iter::repeat_n(j, own[c].len()))
            .collect();
        let flat: Vec<&str> = candidates.iter().flat_map(|&c| own[c].iter().copied()).collect();
        let paths: Vec<Vec<usize>> = candidates.iter().map(|&c| e.codes.path(c)).collect();
        // Both are read from the cache once made; the first time, encoding the texts is the
        // encoder's work and indexing their words the other core's.
        let (texts_t, lexical) = rayon::join(
            || base_vectors_t_cached(e, &flat),
            || {
                Bm25::over_parts(
                    &own,
                    &paths,
                    &naics_common::layout::cache_dir(&e.config.data.shards_dir),
                )
            },
        );
        let candidate_points = e.leaf_targets();
        let mut coder = Coder {
            e,
            candidates,
            texts_t: texts_t?,
            candidate_points,
            text_candidate,
            lexical: lexical?,
            leaves: LeafIndex::new(&e.codes.parent),
            fusion: Fusion::POINTS,
        };
        coder.fusion = coder.fitted()?;
        Ok(coder)
    }

    /// The fusion for this checkpoint: from the cache, or fitted on the validation entries.
    fn fitted(&self) -> Result<Fusion> {
        // The checkpoint's key, as for its points (which it determines).
        let key = Sha256::new()
            .chain_update(SIGNAL_VERSION)
            .chain_update(self.e.key.as_bytes())
            .finalize();
        let path = self.cache_dir().join(format!("fusion-{}.json", &hex(&key)[..16]));
        if let Ok(bytes) = std::fs::read(&path)
            && let Ok(fusion) = serde_json::from_slice(&bytes)
        {
            return Ok(fusion);
        }
        let (truth, texts) = self.validation();
        // Without validation entries (a tiny tree), the points alone.
        let fusion = if truth.is_empty() {
            Fusion::POINTS
        } else {
            let features = self.features(&texts)?;
            let weights = calibration::fit_logit(&features, &truth, [0.0; 3], [true; 3]);
            let (confidence, correct) = calibration::top_answers(&features, &truth, &weights);
            Fusion {
                weights,
                fitted_on: truth.len(),
                top: calibration::fit_top(&confidence, &correct),
            }
        };
        let json = serde_json::to_vec_pretty(&fusion)?;
        write_atomically(&path, |tmp| Ok(std::fs::write(tmp, &json)?))?;
        // As read back: every later process reads this file, and serde_json's default parser
        // may land a weight an ulp from the fitted one (a confidence of 1e-9 then differed in
        // its last digits between the process that fitted and the next one).
        Ok(serde_json::from_slice(&json)?)
    }

    /// The validation entries: each one's true candidates (positions in `candidates`: see
    /// [`Coder::truth`]) and text. What the fusion is fitted on: all of them where their
    /// features (texts x candidates) fit in [`FIT_ROWS`], else an evenly spaced share that does
    /// (NAICS and ICD-10-CM: all; a 200,000-code tree's 8,000 texts x 167,000 leaves were 32 GB).
    pub fn validation(&self) -> (Vec<Range<usize>>, Vec<String>) {
        let all: Vec<(Range<usize>, String)> = validation_entries(self.e)
            .into_iter()
            .map(|(c, t)| (self.truth(c), t))
            .filter(|(range, _)| !range.is_empty())
            .collect();
        let most = (FIT_ROWS / self.candidates.len().max(1)).max(1);
        let step = all.len().div_ceil(most).max(1);
        all.into_iter().step_by(step).unzip()
    }

    /// The candidates that code a text of `code` right, as positions in `candidates`: the code
    /// itself where it is a leaf, else the leaves under it (pre-order: a range).
    pub fn truth(&self, code: usize) -> Range<usize> {
        self.leaves.range(code)
    }

    /// The deepest code whose confidence reaches `min_confidence`, from the candidates'
    /// probabilities.
    pub fn level(&self, probability: &[f64], min_confidence: f64) -> Option<LevelAnswer> {
        level_answer(&self.leaves, probability, min_confidence)
    }

    /// The code tree answers name codes of.
    pub fn codes(&self) -> &Codes {
        &self.e.codes
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.e.model.channels.encoder().tokenizer
    }

    /// The most tokens of a text the model reads.
    pub fn max_tokens(&self) -> usize {
        self.e.config.model.max_length
    }

    fn cache_dir(&self) -> PathBuf {
        naics_common::layout::cache_dir(&self.e.config.data.shards_dir)
    }

    /// Every signal of every candidate, per text: [texts][candidates][signal].
    pub fn features(&self, texts: &[String]) -> Result<Vec<Vec<[f64; 3]>>> {
        let ids = self.e.model.channels.encoder().tokenize(texts)?;
        Ok(self.each_text(texts, &ids, |_, signals| signals.rows())?.0)
    }

    /// `f(i, signals)` of each text `i` (already tokenized), and the texts' points [q, d + 1].
    /// A text's signals live only while `f` runs: a classify batch's texts x 36,355 ICD-10-CM
    /// leaves held as feature rows were a gigabyte of fresh memory.
    fn each_text<T: Send>(
        &self,
        texts: &[String],
        ids: &[Vec<u32>],
        f: impl Fn(usize, Signals) -> T + Sync,
    ) -> Result<(Vec<T>, Tensor)> {
        let (points, base) = self.e.model.text_points_and_base(ids, CALL_TOKENS)?;
        let mut out = Vec::with_capacity(texts.len());
        let m = self.text_candidate.len();
        // In chunks, so that the similarities to every entry [chunk, m] stay small.
        for (start, chunk) in (0..texts.len()).step_by(CHUNK).zip(texts.chunks(CHUNK)) {
            let n = chunk.len();
            let distances = self
                .candidate_points
                .distances(&points.narrow(0, start, n)?, self.e.curvature())?;
            let similarity = times_values(&base.narrow(0, start, n)?, self.texts_t.values(), m)?;
            out.par_extend(
                chunk
                    .par_iter()
                    .zip(distances)
                    .enumerate()
                    .map(|(i, (text, distance))| {
                        let mut nearest = vec![-1f32; self.candidates.len()];
                        for (s, &j) in similarity[i * m..(i + 1) * m].iter().zip(&self.text_candidate) {
                            nearest[j] = nearest[j].max(*s);
                        }
                        let signals = Signals {
                            distance,
                            nearest,
                            words: self.lexical.scores(text),
                        };
                        f(start + i, signals)
                    }),
            );
        }
        Ok((out, points))
    }

    /// Answers for `texts` under `policy`.
    pub fn code(&self, texts: &[String], policy: &Policy) -> Result<Vec<Answer>> {
        let ids = self.e.model.channels.encoder().tokenize(texts)?;
        let policies = vec![*policy; texts.len()];
        self.code_each(texts, &ids, &policies)
    }

    /// Answers for tokenized texts, each under its own policy (merged requests of a server).
    pub fn code_each(&self, texts: &[String], ids: &[Vec<u32>], policies: &[Policy]) -> Result<Vec<Answer>> {
        let (answers, points) = self.each_text(texts, ids, |i, signals| {
            let p = self.probabilities(signals.logits(&self.fusion.weights));
            self.answer(&signals.distance, &p, &policies[i])
        })?;
        Ok(answers
            .into_iter()
            .zip(points.to_vec2::<f32>()?)
            .map(|(answer, point)| Answer { point, ..answer })
            .collect())
    }

    /// The candidates' probabilities from their fused logits: the softmax, its top answer's
    /// confidence mapped ([`calibration::with_top`]).
    pub fn probabilities(&self, logits: Vec<f64>) -> Vec<f64> {
        let mut p = calibration::softmax(logits);
        calibration::with_top(&mut p, self.fusion.top);
        p
    }

    /// One text's answer from its distances to the candidates and their probabilities.
    pub fn answer(&self, distance: &[f32], p: &[f64], policy: &Policy) -> Answer {
        let order = most_likely(p, policy.k.max(1));
        let ranked: Vec<Ranked> = order
            .iter()
            .take(policy.k)
            .map(|&j| Ranked {
                code: self.candidates[j],
                distance: distance[j],
                confidence: p[j],
            })
            .collect();
        let top = order.first().map_or(0.0, |&j| p[j]);
        Answer {
            ranked,
            level: level_answer(&self.leaves, p, policy.min_confidence),
            abstained: top < policy.abstain,
            point: Vec::new(),
        }
    }
}

/// The positions of the `k` largest probabilities, largest first, ties in position order. Only
/// the top k are put in order (on ICD-10-CM's 36,355 leaves, sorting them all was most of an
/// answer's time): for a few, in one pass that keeps the best so far (a partial selection over
/// every position cost 3 % of `classify`); for many, by selection.
fn most_likely(p: &[f64], k: usize) -> Vec<usize> {
    let more_likely = |a: &usize, b: &usize| p[*b].total_cmp(&p[*a]).then(a.cmp(b));
    if k > 64 {
        let mut order: Vec<usize> = (0..p.len()).collect();
        if k < order.len() {
            order.select_nth_unstable_by(k - 1, more_likely);
        }
        order.truncate(k);
        order.sort_by(more_likely);
        return order;
    }
    let mut best: Vec<usize> = Vec::with_capacity(k + 1);
    for j in 0..p.len() {
        // A later position ties below the ones kept: only a larger value enters a full list.
        if best.len() == k && p[j].total_cmp(&p[best[k - 1]]).is_le() {
            continue;
        }
        let at = best.partition_point(|b| more_likely(b, &j).is_lt());
        best.insert(at, j);
        best.truncate(k);
    }
    best
}

/// A code as an answer shows it: title, path from the sector down, confidence.
#[derive(Debug, Clone, Serialize)]
pub struct Shown {
    pub code: String,
    pub title: String,
    pub confidence: f64,
    /// Lorentz distance from the text's point (ranked six-digit codes only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distance: Option<f32>,
    /// (code, title) from the sector down to the code.
    pub path: Vec<(String, String)>,
}

/// An [`Answer`] with codes and titles.
#[derive(Debug, Clone, Serialize)]
pub struct ShownAnswer {
    pub ranked: Vec<Shown>,
    /// The deepest code whose confidence reaches the threshold.
    pub level: Option<Shown>,
    pub abstained: bool,
}

impl Coder<'_> {
    fn shown(&self, code: usize, confidence: f64, distance: Option<f32>) -> Shown {
        let codes = &self.e.codes;
        Shown {
            code: codes.code[code].clone(),
            title: codes.title[code].clone(),
            confidence,
            distance,
            path: codes
                .path(code)
                .into_iter()
                .map(|p| (codes.code[p].clone(), codes.title[p].clone()))
                .collect(),
        }
    }

    /// `answer` with each code's title and path.
    pub fn show(&self, answer: &Answer) -> ShownAnswer {
        ShownAnswer {
            ranked: answer
                .ranked
                .iter()
                .map(|r| self.shown(r.code, r.confidence, Some(r.distance)))
                .collect(),
            level: answer.level.map(|l| self.shown(l.code, l.confidence, None)),
            abstained: answer.abstained,
        }
    }
}

/// The normalized base vectors of many texts, transposed: [h, n] (the frozen base's mean-pooled
/// vectors, the space in which sentence-transformers compares sentences; in `query` mode the text
/// adapter's), computed once (with a progress bar) and then read from the vector cache as the
/// similarity product's right-hand side (transposing 57,000 ICD-10-CM vectors at every start was
/// a quarter of a `search`). Keyed by the
/// tokenizer and the texts themselves, so that a cached table is found without tokenizing (the
/// most of a `search` call's time otherwise), and by the checkpoint where training changes them.
fn base_vectors_t_cached(e: &Embedded, texts: &[&str]) -> Result<Mapped> {
    let channels = &e.model.channels;
    let encoder = channels.encoder();
    let trained: &[u8] = if channels.text_trains() { e.key.as_bytes() } else { &[] };
    let key = texts_key(&[&encoder.tokenizer_sha256, trained], texts);
    e.model.cache.mapped("candidate-texts-t", &[&key], || {
        let ids = encoder.tokenize(&texts.iter().map(|t| t.to_string()).collect::<Vec<_>>())?;
        let bar = progress(ids.len(), "candidate texts encoded (cache)")?;
        let rows: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
        let table = channels.base_vectors(&rows, &bar)?;
        bar.finish_and_clear();
        Ok(transformer::normalize(&table)?.t()?.contiguous()?)
    })
}

#[cfg(test)]
mod tests {
    use super::most_likely;
    use rand::{Rng, SeedableRng};

    /// Against a full sort, on values with many ties, for few and many k (both ways of choosing).
    #[test]
    fn the_most_likely_are_the_sorts_first_k() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for n in [1usize, 10, 300] {
            let p: Vec<f64> = (0..n).map(|_| rng.random_range(0..20) as f64 / 20.0).collect();
            let mut sorted: Vec<usize> = (0..n).collect();
            sorted.sort_by(|a, b| p[*b].total_cmp(&p[*a]).then(a.cmp(b)));
            for k in [1, 5, 64, 65, 200, n, n + 3] {
                let want: Vec<usize> = sorted.iter().copied().take(k).collect();
                assert_eq!(most_likely(&p, k), want, "n {n}, k {k}");
            }
        }
    }
}
