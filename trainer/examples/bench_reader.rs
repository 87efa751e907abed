//! The trainer-side shard reader: time to gather one batch's token ids (32 anchors x 18 codes x
//! 4 channels) from the memory-mapped samples and token cache. Run with `bench/reader.sh`.

use naics_common::layout::{self, TOKENS_FILE};
use naics_common::samples::{SamplesFile, Split};
use naics_common::tokens::TokenCache;
use std::path::Path;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let dir = layout::experiment_shards(Path::new("data/shards"), "03_stage_hard");
    let samples = SamplesFile::open(&dir.join(layout::samples_file(Split::Train, 0)), None)?;
    let tokens = TokenCache::open(&dir.join(TOKENS_FILE), None)?;
    let (batch, rounds) = (32usize, 2000usize);
    let mut total_ids = 0usize;
    let started = Instant::now();
    for round in 0..rounds {
        let start = (round * 7919 * batch) % (samples.len() - batch);
        let mut ids: Vec<Vec<u32>> = Vec::with_capacity(batch * 18 * 4);
        for i in start..start + batch {
            for code in samples.get(i).codes() {
                for channel in 0..4 {
                    ids.push(tokens.ids(channel, code as usize).to_vec());
                }
            }
        }
        total_ids += ids.iter().map(Vec::len).sum::<usize>();
    }
    let per_batch = started.elapsed().as_secs_f64() / rounds as f64;
    println!(
        "token ids of 32 anchors x 18 codes x 4 channels: {:.1} us per batch ({} ids per batch on average)",
        per_batch * 1e6,
        total_ids / rounds
    );
    Ok(())
}
