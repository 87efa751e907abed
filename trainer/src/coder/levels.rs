//! Answers at the right level. A code's confidence at any level is the probability of its
//! six-digit descendants together; the answer is the deepest code, walking down from the most
//! likely sector to the most likely child each time, whose confidence reaches the threshold. When
//! two children tie for most likely, their parent is the answer: the text does not choose.

use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LevelAnswer {
    /// A code index (any level).
    pub code: usize,
    pub confidence: f64,
}

/// The deepest confident code; none when even the most likely root is below `min_confidence`.
/// `probability[j]` belongs to the leaf `candidates[j]`; `parent` is the code tree.
pub fn level_answer(
    parent: &[Option<usize>],
    candidates: &[usize],
    probability: &[f64],
    min_confidence: f64,
) -> Option<LevelAnswer> {
    let mut confidence: HashMap<usize, f64> = HashMap::new();
    let mut children: HashMap<Option<usize>, Vec<usize>> = HashMap::new();
    for (&leaf, &p) in candidates.iter().zip(probability) {
        let mut node = Some(leaf);
        while let Some(n) = node {
            let c = confidence.entry(n).or_insert(0.0);
            if *c == 0.0 {
                children.entry(parent[n]).or_default().push(n);
            }
            *c += p;
            node = parent[n];
        }
    }
    let mut answer = None;
    let mut at = None;
    while let Some(options) = children.get(&at) {
        let mut ranked: Vec<(usize, f64)> = options.iter().map(|&n| (n, confidence[&n])).collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let (best, c) = ranked[0];
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

    /// 0 (sector) -> 1, 2; 1 -> 3, 4 (leaves); 2 -> 5 (leaf).
    fn tree() -> Vec<Option<usize>> {
        vec![None, Some(0), Some(0), Some(1), Some(1), Some(2)]
    }

    #[test]
    fn two_tied_children_answer_with_their_parent() {
        let p = [0.45, 0.45, 0.10];
        let a = level_answer(&tree(), &[3, 4, 5], &p, 0.5).unwrap();
        assert_eq!(a.code, 1);
        assert!((a.confidence - 0.9).abs() < 1e-12);
        // Even where each child alone would pass the threshold.
        let a = level_answer(&tree(), &[3, 4, 5], &p, 0.3).unwrap();
        assert_eq!(a.code, 1);
    }

    #[test]
    fn a_clear_leaf_is_the_answer_and_thresholds_move_it_up() {
        let p = [0.7, 0.2, 0.1];
        assert_eq!(level_answer(&tree(), &[3, 4, 5], &p, 0.5).unwrap().code, 3);
        assert_eq!(level_answer(&tree(), &[3, 4, 5], &p, 0.8).unwrap().code, 1);
        assert_eq!(level_answer(&tree(), &[3, 4, 5], &p, 0.95).unwrap().code, 0);
        // The threshold is inclusive.
        assert_eq!(level_answer(&tree(), &[3, 4, 5], &p, 0.7).unwrap().code, 3);
    }

    #[test]
    fn no_answer_when_even_the_root_is_unsure() {
        // Two sectors: 0 -> 1, 2 -> 3.
        let parent = vec![None, Some(0), None, Some(2)];
        assert_eq!(level_answer(&parent, &[1, 3], &[0.4, 0.6], 0.7), None);
        assert_eq!(level_answer(&parent, &[1, 3], &[0.4, 0.6], 0.6).unwrap().code, 3);
    }
}
