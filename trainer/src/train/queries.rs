//! Index entries as extra anchors. A free-text query becomes a point the way a code does, its one
//! text in all four channels; a head trained on codes alone, whose four channels carry four
//! different texts, places such inputs poorly. So each step also draws `data.queries_per_step`
//! training index entries (the entries kept in the codes' `examples`, less the coder's validation
//! entries; the held-out ones are never read) and scores each against the step's six-digit codes
//! with InfoNCE, its own code the positive.

use crate::model::Embedder;
use crate::model::channels::Channels;
use crate::model::transformer::Forward;
use crate::tables::{Codes, validation_entry};
use anyhow::Result;
use candle_core::Tensor;
use naics_common::format::CHANNELS;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

pub struct Queries {
    /// The code each entry belongs to.
    pub code: Vec<u32>,
    ids: Vec<Vec<u32>>,
    /// The base's pooled vector of every entry [m, h] where training leaves them unchanged
    /// (frozen channels), cached like the codes'; none: encoded when drawn.
    fixed: Option<Tensor>,
}

impl Queries {
    /// Every training index entry of `codes`, tokenized; where the channels allow it, also
    /// encoded (once, then read from the cache).
    pub fn load(codes: &Codes, model: &Embedder) -> Result<Queries> {
        let (mut code, mut texts) = (Vec::new(), Vec::new());
        let share = model.config.data.validation_entries;
        for (i, examples) in codes.examples.iter().enumerate() {
            for text in examples.iter().filter(|t| !validation_entry(&codes.code[i], t, share)) {
                code.push(i as u32);
                texts.push(text.clone());
            }
        }
        let ids = model.channels.encoder().tokenize(&texts)?;
        let fixed = model.channels.fixed_texts("queries", &ids, &model.cache)?;
        Ok(Queries { code, ids, fixed })
    }

    pub fn len(&self) -> usize {
        self.code.len()
    }

    pub fn is_empty(&self) -> bool {
        self.code.is_empty()
    }

    /// The `count` entries of step `step`: consecutive slices of one seeded permutation per pass
    /// over the entries, so a step's draw depends on (seed, step) alone and `--resume` needs no
    /// state for it.
    pub fn draw(&self, seed: u64, step: usize, count: usize) -> Vec<usize> {
        let m = self.len();
        if m == 0 {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(count);
        let mut pass = usize::MAX;
        let mut order: Vec<usize> = Vec::new();
        for position in step * count..(step + 1) * count {
            if position / m != pass {
                pass = position / m;
                order = (0..m).collect();
                order.shuffle(&mut ChaCha8Rng::seed_from_u64(
                    seed ^ (pass as u64).wrapping_mul(0x9E37_79B9),
                ));
            }
            out.push(order[position % m]);
        }
        out
    }

    /// Channel vectors [q, 4h] of the entries `picks`: each entry's one text in all four
    /// channels, as for any free-text query (and what training keeps, as
    /// [`Channels::text_vectors`]).
    pub fn vectors(&self, channels: &dyn Channels, picks: &[usize], train: bool) -> Result<(Tensor, Vec<Forward>)> {
        match &self.fixed {
            Some(table) => {
                let v = crate::model::select_rows(table, picks)?;
                Ok((Tensor::cat(&vec![&v; CHANNELS.len()], 1)?, Vec::new()))
            }
            None => channels.text_vectors(&self.ids(picks), train),
        }
    }

    /// The token ids of the entries `picks`.
    pub fn ids(&self, picks: &[usize]) -> Vec<Vec<u32>> {
        picks.iter().map(|&p| self.ids[p].clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queries(m: usize) -> Queries {
        Queries {
            code: (0..m as u32).collect(),
            ids: vec![vec![]; m],
            fixed: None,
        }
    }

    #[test]
    fn draws_every_entry_once_per_pass_and_repeats_by_step() {
        let q = queries(10);
        let mut first: Vec<usize> = (0..5).flat_map(|s| q.draw(7, s, 2)).collect();
        first.sort();
        assert_eq!(first, (0..10).collect::<Vec<_>>());
        assert_eq!(q.draw(7, 3, 4), q.draw(7, 3, 4));
        assert_ne!(q.draw(7, 0, 10), q.draw(7, 1, 10), "each pass has its own order");
        assert!(queries(0).draw(7, 0, 4).is_empty());
    }
}
