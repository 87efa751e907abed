//! `naics-pipeline synth`: a random taxonomy of any size, as a generic table (Parquet), for
//! measuring how the pipeline's costs grow with the tree. 20 roots; the number of codes per depth
//! grows geometrically down to `depth`, each code under a random code one level up (so branches
//! end at different depths, as in ICD-10-CM); a title of three words; 1 % of the codes exclude
//! one random other code.

use crate::parquet_io::write_batch;
use anyhow::{Result, bail};
use arrow::array::{ArrayRef, ListBuilder, RecordBatch, StringArray, StringBuilder};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;
use std::sync::Arc;

const ROOTS: usize = 20;
const WORDS: [&str; 32] = [
    "farm",
    "mill",
    "store",
    "repair",
    "clinic",
    "freight",
    "software",
    "bakery",
    "steel",
    "paper",
    "retail",
    "wholesale",
    "rental",
    "school",
    "bank",
    "dairy",
    "fishing",
    "mining",
    "textile",
    "glass",
    "printing",
    "hotel",
    "museum",
    "courier",
    "plastics",
    "lumber",
    "insurance",
    "grocery",
    "machinery",
    "chemical",
    "pharmacy",
    "publishing",
];

/// Codes per depth: `ROOTS x b^d`, with b chosen so that they sum to `codes`.
fn counts_per_depth(codes: usize, depth: u8) -> Vec<usize> {
    let total = |b: f64| (0..=depth as i32).map(|d| ROOTS as f64 * b.powi(d)).sum::<f64>();
    let (mut lo, mut hi) = (1.0f64, codes as f64);
    for _ in 0..200 {
        let mid = (lo + hi) / 2.0;
        if total(mid) < codes as f64 { lo = mid } else { hi = mid }
    }
    let mut counts: Vec<usize> = (0..=depth as i32)
        .map(|d| (ROOTS as f64 * lo.powi(d)).round() as usize)
        .collect();
    let assigned: usize = counts[..depth as usize].iter().sum();
    counts[depth as usize] = codes - assigned;
    counts
}

/// Writes the table to `out`; returns the codes per depth.
pub fn write(out: &Path, codes: usize, depth: u8, seed: u64) -> Result<Vec<usize>> {
    if codes < ROOTS * (depth as usize + 1) || depth == 0 {
        bail!(
            "synth needs depth >= 1 and at least {ROOTS} codes per level ({} here)",
            ROOTS * (depth as usize + 1)
        );
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let counts = counts_per_depth(codes, depth);
    let mut code: Vec<String> = Vec::with_capacity(codes);
    let mut parent: Vec<Option<String>> = Vec::with_capacity(codes);
    let mut first_of_depth = 0;
    for (d, &n) in counts.iter().enumerate() {
        let previous = (first_of_depth - if d > 0 { counts[d - 1] } else { 0 })..first_of_depth;
        for _ in 0..n {
            parent.push((d > 0).then(|| code[rng.random_range(previous.clone())].clone()));
            code.push(format!("{d}.{}", code.len()));
        }
        first_of_depth += n;
    }
    let title: Vec<String> = (0..codes)
        .map(|_| {
            (0..3)
                .map(|_| WORDS[rng.random_range(0..WORDS.len())])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let mut excluded = ListBuilder::new(StringBuilder::new());
    for i in 0..codes {
        if rng.random_bool(0.01) {
            let other = rng.random_range(0..codes);
            if other != i {
                excluded.values().append_value(&code[other]);
            }
        }
        excluded.append(true);
    }
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("code", Arc::new(StringArray::from(code))),
        ("parent", Arc::new(StringArray::from(parent))),
        ("title", Arc::new(StringArray::from(title))),
        ("excluded_codes", Arc::new(excluded.finish())),
    ];
    write_batch(out, &RecordBatch::try_from_iter(columns)?)?;
    Ok(counts)
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_sum_to_the_codes_and_grow() {
        for (codes, depth) in [(2_000, 4), (20_000, 5), (2_000_000, 6)] {
            let c = super::counts_per_depth(codes, depth);
            assert_eq!(c.iter().sum::<usize>(), codes);
            assert_eq!(c[0], 20);
            assert!(c.windows(2).all(|w| w[1] >= w[0]), "{c:?}");
        }
    }
}
