//! Index entries as extra anchors. A free-text query becomes a point the way a code does, its one
//! text in all four channels; a head trained on codes alone, whose four channels carry four
//! different texts, places such inputs poorly. So each step also draws `data.queries_per_step`
//! training index entries (the codes' `examples` less the coder's validation entries and the
//! cross-references that repeat one: `Validation`; the held-out ones are never read) and scores
//! each against the step's six-digit codes with InfoNCE, its own code the positive.
//!
//! Where training teaches the text side (`query` mode, `loss.entry_weight` > 0), entries are drawn
//! in pairs: each with a partner, another training entry of its code (its title where it has no
//! other), so that the entries' own contrastive term (`loss`) can pull texts of one code
//! together in the space the coder's nearest-entries signal compares them in.

use crate::model::Embedder;
use crate::model::channels::Channels;
use crate::model::transformer::Forward;
use crate::tables::Codes;
use anyhow::Result;
use candle_core::Tensor;
use naics_common::format::CHANNELS;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

pub struct Queries {
    /// The code of each text: the training entries first, then (with pairs) their codes' titles.
    pub code: Vec<u32>,
    ids: Vec<Vec<u32>>,
    /// How many of the texts are training entries (what is drawn; titles are partners only).
    entries: usize,
    /// With pairs, where partners are drawn from: per entry its group, the texts of its code
    /// (its entries, and the title where an entry is alone in its code); else empty.
    group_of: Vec<u32>,
    groups: Vec<Vec<u32>>,
    /// The base's pooled vector of every entry [m, h] where training leaves them unchanged
    /// (frozen channels), cached like the codes'; none: encoded when drawn.
    fixed: Option<Tensor>,
}

impl Queries {
    /// Every training index entry of `codes`, tokenized; where the channels allow it, also
    /// encoded (once, then read from the cache). In pairs where the text side trains with the
    /// entries' own term.
    pub fn load(codes: &Codes, model: &Embedder) -> Result<Queries> {
        let (mut code, mut texts) = (Vec::new(), Vec::new());
        let validation = codes.validation(model.config.data.validation_entries);
        for i in 0..codes.len() {
            for text in codes.training_entries(&validation, i) {
                code.push(i as u32);
                texts.push(text.clone());
            }
        }
        let entries = code.len();
        let pairs = model.channels.text_trains() && model.config.loss.entry_weight > 0.0;
        let (group_of, groups) = if pairs {
            groups_of(&mut code, &mut texts, |c| codes.title[c as usize].clone())
        } else {
            Default::default()
        };
        let ids = model.channels.encoder().tokenize(&texts)?;
        let fixed = model.channels.fixed_texts("queries", &ids[..entries], &model.cache)?;
        Ok(Queries {
            code,
            ids,
            entries,
            group_of,
            groups,
            fixed,
        })
    }

    /// The training entries (what is drawn).
    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Whether draws come in pairs (entry, partner): the texts at 2i and 2i + 1.
    pub fn pairs(&self) -> bool {
        !self.group_of.is_empty()
    }

    /// The `count` texts of step `step`: entries from consecutive slices of one seeded
    /// permutation per pass over the entries, so a step's draw depends on (seed, step) alone and
    /// `--resume` needs no state for it. In pairs, `count / 2` entries each followed by its
    /// partner, drawn from a stream seeded by (seed, step).
    pub fn draw(&self, seed: u64, step: usize, count: usize) -> Vec<usize> {
        if !self.pairs() {
            return self.entries_of_step(seed, step, count);
        }
        let half = count / 2;
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7061_6972 ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        self.entries_of_step(seed, step, half)
            .into_iter()
            .flat_map(|e| {
                // Uniform over the group's other members (every group has two or more).
                let group = &self.groups[self.group_of[e] as usize];
                let j = group[rng.random_range(0..group.len() - 1)];
                let partner = if j as usize == e { group[group.len() - 1] } else { j };
                [e, partner as usize]
            })
            .collect()
    }

    /// The `count` entries of step `step` (see [`Queries::draw`]).
    fn entries_of_step(&self, seed: u64, step: usize, count: usize) -> Vec<usize> {
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

/// Groups of the texts of one code, a partner being another member of one's group: a code's
/// entries, or an entry alone in its code with the code's title (appended to `code` and
/// `texts`). Returns each entry's group and the groups.
fn groups_of(code: &mut Vec<u32>, texts: &mut Vec<String>, title: impl Fn(u32) -> String) -> (Vec<u32>, Vec<Vec<u32>>) {
    let mut index: HashMap<u32, u32> = HashMap::new();
    let mut groups: Vec<Vec<u32>> = Vec::new();
    let group_of: Vec<u32> = code
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let g = *index.entry(c).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() as u32 - 1
            });
            groups[g as usize].push(i as u32);
            g
        })
        .collect();
    for group in groups.iter_mut().filter(|g| g.len() == 1) {
        let c = code[group[0] as usize];
        code.push(c);
        texts.push(title(c));
        group.push(code.len() as u32 - 1);
    }
    (group_of, groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queries(m: usize) -> Queries {
        Queries {
            code: (0..m as u32).collect(),
            ids: vec![vec![]; m],
            entries: m,
            group_of: Vec::new(),
            groups: Vec::new(),
            fixed: None,
        }
    }

    /// Entries of codes 0, 0, 1, 1, 1 and 2 (alone: its title joins it).
    fn paired() -> Queries {
        let mut code = vec![0, 0, 1, 1, 1, 2];
        let mut texts: Vec<String> = (0..6).map(|i| format!("entry {i}")).collect();
        let (group_of, groups) = groups_of(&mut code, &mut texts, |c| format!("title {c}"));
        assert_eq!(texts.last().unwrap(), "title 2");
        Queries {
            ids: vec![vec![]; code.len()],
            code,
            entries: 6,
            group_of,
            groups,
            fixed: None,
        }
    }

    #[test]
    fn pairs_are_two_texts_of_one_code() {
        let q = paired();
        assert_eq!(q.code, vec![0, 0, 1, 1, 1, 2, 2]);
        let mut anchors = Vec::new();
        for step in 0..30 {
            let draw = q.draw(7, step, 4);
            assert_eq!(draw.len(), 4);
            assert_eq!(draw, q.draw(7, step, 4), "a step's draw repeats");
            for pair in draw.chunks(2) {
                assert_ne!(pair[0], pair[1], "a partner is another text");
                assert_eq!(q.code[pair[0]], q.code[pair[1]], "of the same code");
                assert!(pair[0] < 6, "anchors are entries");
                if pair[0] == 5 {
                    assert_eq!(pair[1], 6, "the lone entry's partner is its title");
                }
                anchors.push(pair[0]);
            }
        }
        // Both other entries of code 1 are drawn as partners of entry 2 at some step.
        let partners: std::collections::HashSet<usize> = (0..30)
            .flat_map(|s| {
                q.draw(7, s, 4)
                    .chunks(2)
                    .filter(|p| p[0] == 2)
                    .map(|p| p[1])
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(partners, [3, 4].into_iter().collect());
        anchors.sort();
        anchors.dedup();
        assert_eq!(anchors, (0..6).collect::<Vec<_>>(), "every entry is drawn");
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
