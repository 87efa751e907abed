//! Negative sampling by hardness bucket, without materializing the triplets.
//!
//! Hardness depends only on (d(a, p), d(a, n), excluded(a, n)), so each anchor's candidate
//! negatives are grouped once by (distance, excluded) ([`crate::groups`], spans of the pre-order
//! tree, not rows); for a pair, a bucket is a union of whole groups, looked up in the
//! `hardness_rules` table that the SQL computed.

use crate::groups::{self, Group};
use crate::tree::Tree;
use anyhow::{Result, bail};
use naics_common::samples::Sample;
use naics_common::tree_distance::half_units;
use rand::Rng;
use rand::seq::index;

/// Bucket of every (positive distance, negative distance, excluded) that occurs; 0 = not a triplet.
pub struct HardnessRules {
    halves: usize,
    table: Vec<u8>,
}

impl HardnessRules {
    pub fn new(rows: impl IntoIterator<Item = (f64, f64, bool, u8)>) -> Self {
        let rows: Vec<_> = rows.into_iter().collect();
        let halves = rows
            .iter()
            .map(|r| half_units(r.0).max(half_units(r.1)) as usize)
            .max()
            .unwrap_or(0)
            + 1;
        let mut rules = HardnessRules {
            halves,
            table: vec![0u8; halves * halves * 2],
        };
        for (dp, dn, excluded, hardness) in rows {
            let slot = rules.slot(dp, dn, excluded).expect("within the table");
            rules.table[slot] = hardness;
        }
        rules
    }
    fn slot(&self, dp: f64, dn: f64, excluded: bool) -> Option<usize> {
        let (p, n) = (half_units(dp) as usize, half_units(dn) as usize);
        (p < self.halves && n < self.halves).then(|| (p * self.halves + n) * 2 + excluded as usize)
    }
    pub fn get(&self, dp: f64, dn: f64, excluded: bool) -> u8 {
        self.slot(dp, dn, excluded).map_or(0, |s| self.table[s])
    }
}

/// Every anchor's candidate negatives (all other codes), grouped when a draw asks: a few spans
/// per group, so nothing of size n x n (nor n x groups) is held.
pub struct NegativePool {
    tree: Tree,
    excluded: Vec<Vec<u32>>,
}

impl NegativePool {
    /// `excluded`: each code's exclusion partners (both directions, sorted).
    pub fn new(tree: Tree, excluded: Vec<Vec<u32>>) -> Self {
        NegativePool { tree, excluded }
    }

    /// The `i`-th member of `parts` read end to end.
    fn nth(&self, parts: &[&Group], mut i: usize) -> u32 {
        for g in parts {
            if i < g.len() {
                return g.nth(&self.tree, i);
            }
            i -= g.len();
        }
        unreachable!("index within the summed lengths")
    }

    /// Position of `code` in `parts` read end to end, if it is there.
    fn position(&self, parts: &[&Group], code: u32) -> Option<usize> {
        let mut offset = 0;
        for g in parts {
            if g.contains(&self.tree, code) {
                return Some(offset + g.rank(&self.tree, code));
            }
            offset += g.len();
        }
        None
    }
}

/// The buckets to draw from and their shares of K, from the curriculum.
#[derive(Debug, Clone)]
pub struct BucketSpec {
    /// (bucket, target), hardest (highest number) first.
    pub targets: Vec<(u8, usize)>,
    pub k: usize,
}

impl BucketSpec {
    /// target = floor(K x percentage); the remainder goes one each to the hardest buckets first.
    /// Buckets with a zero share get no remainder. The configuration guarantees the shares sum to 1.
    pub fn new(buckets: &[u8], percentages: &[f64], k: usize) -> Self {
        let mut targets: Vec<(u8, usize, f64)> = buckets
            .iter()
            .zip(percentages)
            .map(|(&b, &p)| (b, (k as f64 * p + 1e-9).floor() as usize, p))
            .collect();
        targets.sort_by_key(|t| std::cmp::Reverse(t.0));
        let assigned: usize = targets.iter().map(|t| t.1).sum();
        let receivers: Vec<usize> = (0..targets.len()).filter(|&i| targets[i].2 > 0.0).collect();
        for r in 0..k.saturating_sub(assigned) {
            targets[receivers[r % receivers.len()]].1 += 1;
        }
        BucketSpec {
            targets: targets.into_iter().map(|(b, t, _)| (b, t)).collect(),
            k,
        }
    }
}

/// What one draw did, summed into the manifest.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DrawStats {
    /// Indexed by bucket 0..=8.
    pub targeted: [u64; 9],
    pub sampled: [u64; 9],
    /// Negatives a bucket could not supply that an easier configured bucket supplied instead.
    pub borrowed: u64,
    /// Negatives taken from any remaining valid candidate after the last bucket.
    pub filled: u64,
}

impl DrawStats {
    pub fn add(&mut self, other: &DrawStats) {
        for b in 0..9 {
            self.targeted[b] += other.targeted[b];
            self.sampled[b] += other.sampled[b];
        }
        self.borrowed += other.borrowed;
        self.filled += other.filled;
    }
}

/// Draws K distinct negatives for (anchor, positive) at tree distance `dp`: from the hardest
/// bucket down, each takes its target plus whatever the harder buckets lacked, at random without
/// replacement; any shortage left is filled from the remaining valid negatives.
pub fn draw(
    pool: &NegativePool,
    rules: &HardnessRules,
    spec: &BucketSpec,
    (anchor, positive, dp): (u32, u32, f64),
    rng: &mut impl Rng,
    stats: &mut DrawStats,
) -> Result<Sample> {
    let groups = groups::groups(&pool.tree, anchor, &pool.excluded[anchor as usize]);
    let bucket_of = |g: &Group| {
        if g.distance > dp {
            rules.get(dp, g.distance, g.excluded)
        } else {
            0
        }
    };
    let mut negatives: Vec<u32> = Vec::with_capacity(spec.k);
    let mut hardness: Vec<u8> = Vec::with_capacity(spec.k);
    let mut carry = 0;
    let mut short_of_target = 0;
    for &(bucket, target) in &spec.targets {
        stats.targeted[bucket as usize] += target as u64;
        let members: Vec<&Group> = groups.iter().filter(|g| bucket_of(g) == bucket).collect();
        let available: usize = members.iter().map(|g| g.len()).sum();
        let want = target + carry;
        let take = want.min(available);
        for i in index::sample(rng, available, take) {
            negatives.push(pool.nth(&members, i));
            hardness.push(bucket);
        }
        stats.sampled[bucket as usize] += take as u64;
        short_of_target += target.saturating_sub(take);
        carry = want - take;
    }
    // What the buckets lacked was either covered by easier buckets (borrowed) or filled below.
    stats.borrowed += (short_of_target - carry) as u64;
    if carry > 0 {
        // Every valid negative not yet drawn, read in group order: the i-th of them is the
        // i-th position of the valid groups once the drawn ones' positions are skipped.
        let valid: Vec<&Group> = groups.iter().filter(|g| bucket_of(g) != 0).collect();
        let total: usize = valid.iter().map(|g| g.len()).sum();
        let mut drawn: Vec<usize> = negatives.iter().filter_map(|&m| pool.position(&valid, m)).collect();
        drawn.sort_unstable();
        if total - drawn.len() < carry {
            bail!(
                "anchor {anchor} with positive {positive} has only {} valid negatives, fewer than K = {}",
                negatives.len() + total - drawn.len(),
                spec.k
            );
        }
        for i in index::sample(rng, total - drawn.len(), carry) {
            let mut x = i;
            for &p in &drawn {
                if p <= x {
                    x += 1;
                }
            }
            let m = pool.nth(&valid, x);
            let h = valid
                .iter()
                .find(|g| g.contains(&pool.tree, m))
                .map_or(0, |g| bucket_of(g));
            negatives.push(m);
            hardness.push(h);
            stats.sampled[h as usize] += 1;
        }
        stats.filled += carry as u64;
    }
    debug_assert!(!negatives.contains(&positive) && !negatives.contains(&anchor));
    Ok(Sample {
        anchor,
        positive,
        negatives,
        hardness,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// A hand-built tree: root 0 -> 1 -> {2 (the anchor), 3}, root 0 -> {4, 5, 6}, and 24 more
    /// roots 7..=30. From anchor 2: 1 is its parent (d = 0.5), 0 at 1.5 (no rule: never drawn), 3
    /// its sibling at 2.0 (hardness 5 by the rules below), 4..=5 at 3.0 (4), 6 excluded at 3.0
    /// (8), 7..=30 unrelated (6.0: twice the depth 2 + 1; hardness 1).
    fn fixture() -> (NegativePool, HardnessRules) {
        let mut parents = vec![None, Some(0), Some(1), Some(1), Some(0), Some(0), Some(0)];
        parents.extend((7..31).map(|_| None));
        let tree = Tree::from_parents(parents).unwrap();
        let excluded = groups::symmetric_exclusions(31, [(2, 6)]);
        let rules = HardnessRules::new([
            (0.5, 2.0, false, 5),
            (0.5, 3.0, false, 4),
            (0.5, 3.0, true, 8),
            (0.5, 6.0, false, 1),
            (2.0, 3.0, false, 6),
            (2.0, 3.0, true, 8),
            (2.0, 6.0, false, 1),
        ]);
        (NegativePool::new(tree, excluded), rules)
    }

    #[test]
    fn targets_floor_then_remainder_to_the_hardest() {
        assert_eq!(
            BucketSpec::new(&[1, 2], &[0.875, 0.125], 16).targets,
            vec![(2, 2), (1, 14)]
        );
        // 16 x 0.15 = 2.4 -> 2 each for 2..6, 16 x 0.25 = 4 -> 4; remainder 2 -> buckets 6 and 5.
        let medium = BucketSpec::new(&[1, 2, 3, 4, 5, 6], &[0.25, 0.15, 0.15, 0.15, 0.15, 0.15], 16);
        assert_eq!(medium.targets, vec![(6, 3), (5, 3), (4, 2), (3, 2), (2, 2), (1, 4)]);
        // 0.10 x 16 = 1.6 -> 1 for 1..7, 0.30 x 16 = 4.8 -> 4 for 8: remainder 5 -> 8, 7, 6, 5, 4.
        let hard = BucketSpec::new(&[1, 2, 3, 4, 5, 6, 7, 8], &[0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.3], 16);
        assert_eq!(
            hard.targets,
            vec![(8, 5), (7, 2), (6, 2), (5, 2), (4, 2), (3, 1), (2, 1), (1, 1)]
        );
    }

    #[test]
    fn shortage_is_borrowed_from_the_next_easier_bucket() {
        let (pool, rules) = fixture();
        // Bucket 8 wants 3 but has 1: the 2 missing go to bucket 5 (has 1), then to bucket 4 (has 2).
        let spec = BucketSpec {
            targets: vec![(8, 3), (5, 0), (4, 1), (1, 2)],
            k: 6,
        };
        let mut stats = DrawStats::default();
        let s = draw(
            &pool,
            &rules,
            &spec,
            (2, 1, 0.5),
            &mut ChaCha8Rng::seed_from_u64(1),
            &mut stats,
        )
        .unwrap();
        assert_eq!(s.hardness, vec![8, 5, 4, 4, 1, 1]);
        assert_eq!(&s.negatives[..2], &[6, 3]);
        let mut next_two = s.negatives[2..4].to_vec();
        next_two.sort();
        assert_eq!(next_two, vec![4, 5]);
        assert_eq!(stats.sampled[8], 1);
        assert_eq!(stats.sampled[4], 2);
        assert_eq!(stats.borrowed, 2);
        assert_eq!(stats.filled, 0);
    }

    #[test]
    fn still_short_fills_from_any_valid_negative_and_k_is_reached() {
        let (pool, rules) = fixture();
        // Only bucket 8 is configured: 1 available, 4 filled from the rest.
        let spec = BucketSpec {
            targets: vec![(8, 5)],
            k: 5,
        };
        let mut stats = DrawStats::default();
        let s = draw(
            &pool,
            &rules,
            &spec,
            (2, 1, 0.5),
            &mut ChaCha8Rng::seed_from_u64(2),
            &mut stats,
        )
        .unwrap();
        assert_eq!(s.negatives.len(), 5);
        assert_eq!(s.negatives[0], 6);
        assert_eq!((stats.filled, stats.borrowed), (4, 0));
        // Hardness of filled negatives is their own bucket.
        for (n, h) in s.negatives.iter().zip(&s.hardness) {
            let expected = match n {
                3 => 5,
                4 | 5 => 4,
                6 => 8,
                _ => 1,
            };
            assert_eq!(*h, expected);
        }
    }

    #[test]
    fn negatives_are_distinct_valid_and_reproducible() {
        let (pool, rules) = fixture();
        let spec = BucketSpec::new(&[1, 4, 8], &[0.5, 0.25, 0.25], 12);
        let run = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut stats = DrawStats::default();
            (0..20)
                .map(|_| draw(&pool, &rules, &spec, (2, 1, 0.5), &mut rng, &mut stats).unwrap())
                .collect::<Vec<_>>()
        };
        let a = run(7);
        assert_eq!(a, run(7));
        assert_ne!(a, run(8));
        for s in &a {
            let mut n = s.negatives.clone();
            n.sort();
            n.dedup();
            assert_eq!(n.len(), 12);
            assert!(!n.contains(&2) && !n.contains(&1) && !n.contains(&0));
        }
        // From a sibling positive (d = 2.0) the closer parent 1 is never a negative.
        let mut stats = DrawStats::default();
        let far = BucketSpec::new(&[1, 6, 8], &[0.5, 0.25, 0.25], 20);
        let s = draw(
            &pool,
            &rules,
            &far,
            (2, 3, 2.0),
            &mut ChaCha8Rng::seed_from_u64(3),
            &mut stats,
        )
        .unwrap();
        assert!(!s.negatives.contains(&1) && !s.negatives.contains(&3));
    }

    #[test]
    fn too_few_negatives_is_an_error_naming_the_pair() {
        let (pool, rules) = fixture();
        let spec = BucketSpec {
            targets: vec![(1, 40)],
            k: 40,
        };
        let err = draw(
            &pool,
            &rules,
            &spec,
            (2, 1, 0.5),
            &mut ChaCha8Rng::seed_from_u64(1),
            &mut DrawStats::default(),
        );
        assert!(
            err.unwrap_err()
                .to_string()
                .contains("anchor 2 with positive 1 has only 28 valid negatives")
        );
    }

    /// On random trees with exclusions, a one-bucket draw picks uniformly among exactly the
    /// codes brute force puts in that bucket: every member drawn, nothing else, counts within
    /// 5 standard deviations of the uniform expectation.
    #[test]
    fn draws_match_exact_enumeration_on_random_trees() {
        use crate::tree::tests::random_tree;
        let rules = HardnessRules::new((1..=12).flat_map(|p| {
            (1..=12).flat_map(move |n| {
                let (dp, dn) = (p as f64 * 0.5, n as f64 * 0.5);
                [false, true].map(|e| {
                    (
                        dp,
                        dn,
                        e,
                        if e {
                            8
                        } else if dn - dp <= 1.0 {
                            6
                        } else {
                            2
                        },
                    )
                })
            })
        }));
        for seed in 0..4 {
            let t = random_tree(40, seed);
            let excluded = groups::symmetric_exclusions(40, (0..8).map(|i| (i * 5 % 40, (i * 7 + 3) % 40)));
            let unrelated = t.unrelated_distance();
            let pool = NegativePool::new(t.clone(), excluded.clone());
            let d = |a: u32, j: u32| t.distance_of(t.up_down(a, j));
            for anchor in 0..40u32 {
                let Some(positive) = (0..40).find(|&j| j != anchor && d(anchor, j) < unrelated) else {
                    continue;
                };
                let dp = d(anchor, positive);
                for bucket in [2u8, 6, 8] {
                    let members: Vec<u32> = (0..40u32)
                        .filter(|&j| j != anchor && d(anchor, j) > dp && d(anchor, j) < unrelated)
                        .filter(|&j| rules.get(dp, d(anchor, j), excluded[anchor as usize].contains(&j)) == bucket)
                        .collect();
                    if members.len() < 2 {
                        continue;
                    }
                    let spec = BucketSpec {
                        targets: vec![(bucket, 1)],
                        k: 1,
                    };
                    let mut rng = ChaCha8Rng::seed_from_u64(anchor as u64);
                    let mut seen = std::collections::HashMap::new();
                    let draws = 200 * members.len();
                    for _ in 0..draws {
                        let s = draw(
                            &pool,
                            &rules,
                            &spec,
                            (anchor, positive, dp),
                            &mut rng,
                            &mut DrawStats::default(),
                        )
                        .unwrap();
                        *seen.entry(s.negatives[0]).or_insert(0usize) += 1;
                    }
                    let mut drawn: Vec<u32> = seen.keys().copied().collect();
                    drawn.sort();
                    assert_eq!(drawn, members, "seed {seed} anchor {anchor} bucket {bucket}");
                    let p = 1.0 / members.len() as f64;
                    let sd = (draws as f64 * p * (1.0 - p)).sqrt();
                    for (&m, &c) in &seen {
                        assert!(
                            (c as f64 - draws as f64 * p).abs() < 5.0 * sd,
                            "member {m}: {c} of {draws}"
                        );
                    }
                }
            }
        }
    }
}
