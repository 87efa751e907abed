//! Which pairs train and which validate: a seeded subset of positives per anchor, then a seeded
//! 5% of anchors whose pairs all go to validation, so no validation anchor is ever trained on.

use rand::SeedableRng;
use rand::seq::{SliceRandom, index};
use rand_chacha::ChaCha8Rng;
use std::collections::HashSet;

pub type Pair = (u32, u32, f64);

/// At most `max` positives per anchor, a random subset reproducible from `seed`: give it each
/// anchor's pairs (sorted by positive) in anchor order; one generator runs across anchors.
pub struct PositiveLimit {
    max: Option<usize>,
    rng: ChaCha8Rng,
}

/// Anchors with more positives than this (NAICS has at most 629: every code of a sector) draw
/// `max` of them by index instead of listing and shuffling them all, so that the cost per
/// anchor does not grow with the tree (ICD-10-CM's chapters hold up to 13,357 codes).
pub const LISTED_MAX: usize = 1024;

impl PositiveLimit {
    pub fn new(max: Option<usize>, seed: u64) -> Self {
        PositiveLimit {
            max,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// Which `max` of `total` positives to keep, when there are too many to list.
    pub fn sample_by_index(&mut self, total: usize) -> Option<Vec<usize>> {
        let max = self.max?;
        (total > LISTED_MAX).then(|| index::sample(&mut self.rng, total, max.min(total)).into_vec())
    }

    pub fn apply(&mut self, mut list: Vec<Pair>) -> Vec<Pair> {
        if let Some(max) = self.max {
            list.shuffle(&mut self.rng);
            list.truncate(max);
            list.sort_by_key(|p| p.1);
        }
        list
    }
}

/// (train, validation): `fraction` of the distinct anchors (rounded, at least one when the
/// fraction is positive and there are two anchors or more) are drawn with `seed`.
pub fn by_anchor(pairs: &[Pair], fraction: f64, seed: u64) -> (Vec<Pair>, Vec<Pair>) {
    let mut anchors: Vec<u32> = pairs.iter().map(|p| p.0).collect::<HashSet<_>>().into_iter().collect();
    anchors.sort();
    let mut n = (anchors.len() as f64 * fraction).round() as usize;
    if fraction > 0.0 && n == 0 && anchors.len() >= 2 {
        n = 1;
    }
    anchors.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let validation: HashSet<u32> = anchors[..n].iter().copied().collect();
    pairs.iter().partition(|p| !validation.contains(&p.0))
}

/// The number of distinct anchors among `pairs`.
pub fn anchors(pairs: &[Pair]) -> usize {
    pairs.iter().map(|p| p.0).collect::<HashSet<_>>().len()
}
