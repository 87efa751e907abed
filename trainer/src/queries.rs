//! Index entries as extra anchors. A free-text query becomes a point the way a code does, its one
//! text in all four channels; a head trained on codes alone, whose four channels carry four
//! different texts, places such inputs poorly. So each step also draws `data.queries_per_step`
//! training index entries (the entries kept in the codes' `examples`; the held-out ones are
//! never read) and scores each against the step's six-digit codes with InfoNCE, its own code the
//! positive.

use crate::channels::{ChannelSource, VectorCache, encode_sorted, progress};
use crate::model::transformer::Forward;
use crate::tables::Codes;
use anyhow::Result;
use candle_core::Tensor;
use naics_common::format::CHANNELS;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

pub struct Queries {
    /// The code each entry belongs to.
    pub code: Vec<u32>,
    ids: Vec<Vec<u32>>,
    /// `frozen` mode: the base's pooled vector of every entry [m, h], cached like the codes'.
    frozen: Option<Tensor>,
}

impl Queries {
    /// Every training index entry of `codes`, tokenized; in `frozen` mode also encoded (once,
    /// then read from the cache).
    pub fn load(codes: &Codes, source: &ChannelSource, cache: &VectorCache) -> Result<Queries> {
        let (mut code, mut texts) = (Vec::new(), Vec::new());
        for (i, examples) in codes.examples.iter().enumerate() {
            for text in examples {
                code.push(i as u32);
                texts.push(text.clone());
            }
        }
        let ids = source.encoder().tokenize(&texts)?;
        let frozen = match source {
            ChannelSource::Lora { .. } => None,
            ChannelSource::Frozen { encoder, pooling, .. } => {
                let mut key = Sha256::new();
                ids.iter().for_each(|row| {
                    key.update((row.len() as u32).to_le_bytes());
                    row.iter().for_each(|t| key.update(t.to_le_bytes()));
                });
                let key: [u8; 32] = key.finalize().into();
                Some(cache.get_or_compute("queries", &[&key, &[*pooling as u8]], || {
                    let bar = progress(ids.len(), "index entries encoded (frozen cache)")?;
                    let rows: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
                    let table = encode_sorted(encoder, &rows, *pooling, &bar)?;
                    bar.finish_and_clear();
                    Ok(table)
                })?)
            }
        };
        Ok(Queries { code, ids, frozen })
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
    /// channels, as for any free-text query (and what `lora` training keeps, as
    /// [`ChannelSource::text_vectors`]).
    pub fn vectors(&self, source: &ChannelSource, picks: &[usize], train: bool) -> Result<(Tensor, Vec<Forward>)> {
        match &self.frozen {
            Some(table) => {
                let idx = Tensor::from_vec(
                    picks.iter().map(|&p| p as u32).collect::<Vec<_>>(),
                    picks.len(),
                    table.device(),
                )?;
                let v = table.index_select(&idx, 0)?;
                Ok((Tensor::cat(&vec![&v; CHANNELS.len()], 1)?, Vec::new()))
            }
            None => source.text_vectors(&self.ids(picks), train),
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
            frozen: None,
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
