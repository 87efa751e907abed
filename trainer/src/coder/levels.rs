//! Answers at the right level. A code's confidence at any level is the probability of its
//! six-digit descendants together; the answer is the deepest code, walking down from the most
//! likely sector to the most likely child each time, whose confidence reaches the threshold. When
//! two children tie for most likely, their parent is the answer: the text does not choose.

use crate::tables::LeafIndex;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LevelAnswer {
    /// A code index (any level).
    pub code: usize,
    pub confidence: f64,
}

/// The deepest confident code; none when even the most likely root is below `min_confidence`.
/// `probability[j]` belongs to the `j`-th leaf of `leaves` (the coder's candidates). A code's
/// confidence is the sum over its leaves, a range of them in pre-order, so the walk down reads
/// only the leaves under the codes it passes (on ICD-10-CM's 36,355 leaves, a map of every
/// ancestor's sum per text had been a third of `classify`'s time).
pub fn level_answer(leaves: &LeafIndex, probability: &[f64], min_confidence: f64) -> Option<LevelAnswer> {
    let mut answer = None;
    let mut at = None;
    loop {
        let mut ranked: Vec<(usize, f64)> = leaves
            .children(at)
            .map(|n| (n, leaves.range(n)))
            .filter(|(_, r)| !r.is_empty())
            .map(|(n, r)| (n, probability[r].iter().sum()))
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let Some(&(best, c)) = ranked.first() else { break };
        let tied = ranked.get(1).is_some_and(|second| second.1 == c);
        if c < min_confidence || tied {
            break;
        }
        answer = Some(LevelAnswer {
            code: best,
            confidence: c,
        });
        at = Some(best);
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use std::collections::HashMap;

    /// In pre-order: 0 (sector) -> 1, 4; 1 -> 2, 3 (leaves); 4 -> 5 (leaf).
    fn tree() -> LeafIndex {
        LeafIndex::new(&[None, Some(0), Some(1), Some(1), Some(0), Some(4)])
    }

    #[test]
    fn two_tied_children_answer_with_their_parent() {
        let p = [0.45, 0.45, 0.10];
        let a = level_answer(&tree(), &p, 0.5).unwrap();
        assert_eq!(a.code, 1);
        assert!((a.confidence - 0.9).abs() < 1e-12);
        // Even where each child alone would pass the threshold.
        let a = level_answer(&tree(), &p, 0.3).unwrap();
        assert_eq!(a.code, 1);
    }

    #[test]
    fn a_clear_leaf_is_the_answer_and_thresholds_move_it_up() {
        let p = [0.7, 0.2, 0.1];
        assert_eq!(level_answer(&tree(), &p, 0.5).unwrap().code, 2);
        assert_eq!(level_answer(&tree(), &p, 0.8).unwrap().code, 1);
        assert_eq!(level_answer(&tree(), &p, 0.95).unwrap().code, 0);
        // The threshold is inclusive.
        assert_eq!(level_answer(&tree(), &p, 0.7).unwrap().code, 2);
    }

    #[test]
    fn no_answer_when_even_the_root_is_unsure() {
        // Two sectors: 0 -> 1, 2 -> 3.
        let leaves = LeafIndex::new(&[None, Some(0), None, Some(2)]);
        assert_eq!(level_answer(&leaves, &[0.4, 0.6], 0.7), None);
        assert_eq!(level_answer(&leaves, &[0.4, 0.6], 0.6).unwrap().code, 3);
    }

    /// Against summing each leaf's probability into every ancestor and walking down the
    /// children found that way, on random pre-order forests.
    #[test]
    fn equals_summing_into_every_ancestor_on_random_forests() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for _ in 0..300 {
            let n = rng.random_range(1..30);
            let (mut parent, mut path) = (Vec::new(), Vec::<usize>::new());
            for i in 0..n {
                let keep = rng.random_range(0..=path.len());
                path.truncate(keep);
                parent.push(path.last().copied());
                path.push(i);
            }
            let index = LeafIndex::new(&parent);
            let leaves: Vec<usize> = (0..n).filter(|&c| !parent.contains(&Some(c))).collect();
            // Small whole weights, so that ties happen.
            let weights: Vec<f64> = leaves.iter().map(|_| rng.random_range(0..4) as f64).collect();
            let total: f64 = weights.iter().sum::<f64>().max(1.0);
            let p: Vec<f64> = weights.iter().map(|w| w / total).collect();
            let mut confidence: HashMap<usize, f64> = HashMap::new();
            let mut children: HashMap<Option<usize>, Vec<usize>> = HashMap::new();
            for (&leaf, &q) in leaves.iter().zip(&p) {
                let mut node = Some(leaf);
                while let Some(c) = node {
                    if !confidence.contains_key(&c) {
                        children.entry(parent[c]).or_default().push(c);
                    }
                    *confidence.entry(c).or_insert(0.0) += q;
                    node = parent[c];
                }
            }
            let threshold = rng.random_range(0..=8) as f64 / 8.0;
            let (mut want, mut at) = (None, None);
            while let Some(options) = children.get(&at) {
                let mut ranked: Vec<(usize, f64)> = options.iter().map(|&c| (c, confidence[&c])).collect();
                ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                let (best, c) = ranked[0];
                if c < threshold || ranked.get(1).is_some_and(|s| s.1 == c) {
                    break;
                }
                want = Some(LevelAnswer {
                    code: best,
                    confidence: c,
                });
                at = Some(best);
            }
            assert_eq!(
                level_answer(&index, &p, threshold),
                want,
                "{parent:?} {p:?} {threshold}"
            );
        }
    }
}
