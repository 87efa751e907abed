//! Hierarchy-quality metrics of an embedding against the tree, over all codes. Inputs are dense
//! n x n matrices (row-major): `tree` the pipeline's tree distances, `emb` the embedding's.

use rayon::prelude::*;

/// Pearson correlation of two equally long samples.
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 || syy == 0.0 {
        0.0
    } else {
        sxy / (sxx * syy).sqrt()
    }
}

/// Ranks 1..n; tied values share the average of their ranks.
pub fn average_ranks(x: &[f64]) -> Vec<f64> {
    ranks_in(x, &sorted_order(x))
}

/// Positions of `x` in ascending order, ties in position order (a stable sort).
fn sorted_order(x: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.par_sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    order
}

/// The average ranks of `x` from its `order` ([`sorted_order`]).
fn ranks_in(x: &[f64], order: &[usize]) -> Vec<f64> {
    let mut ranks = vec![0.0; x.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && x[order[j + 1]] == x[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = rank;
        }
        i = j + 1;
    }
    ranks
}

/// Spearman correlation with average ranks for ties.
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    let (x, y) = rayon::join(|| average_ranks(x), || average_ranks(y));
    pearson(&x, &y)
}

/// The best Spearman any embedding without ties can reach against `tree`: an embedding whose
/// distances order the pairs exactly as the tree does still has to break the tree's ties. The
/// tree's order sorted once: the tie-free ranks are positions in it.
pub fn spearman_ceiling(tree: &[f64]) -> f64 {
    let order = sorted_order(tree);
    let mut strict = vec![0.0; tree.len()];
    for (r, &k) in order.iter().enumerate() {
        strict[k] = r as f64 + 1.0;
    }
    pearson(&ranks_in(tree, &order), &strict)
}

/// The `k` other codes nearest to code `i` by `emb`, nearest first (ties by index): the head of
/// the row sorted whole, found by a selection first (every metric here reads at most 20 of
/// them; sorting each of ICD-10-CM's 4,096 rows whole, eight times over, was most of `eval`'s
/// hierarchy measures).
pub fn nearest(emb: &[f64], n: usize, i: usize, k: usize) -> Vec<usize> {
    let row = &emb[i * n..(i + 1) * n];
    let before = |a: &usize, b: &usize| row[*a].total_cmp(&row[*b]).then(a.cmp(b));
    let mut order: Vec<usize> = (0..n).filter(|&j| j != i).collect();
    if k < order.len() {
        order.select_nth_unstable_by(k, before);
        order.truncate(k);
    }
    order.sort_by(before);
    order
}

/// The `k` largest of `values`, largest first.
fn largest(mut values: Vec<f64>, k: usize) -> Vec<f64> {
    let after = |a: &f64, b: &f64| b.total_cmp(a);
    if k < values.len() {
        values.select_nth_unstable_by(k, after);
        values.truncate(k);
    }
    values.sort_by(after);
    values
}

/// NDCG@k, every code a query and every other code a candidate ranked by `emb`; relevance
/// (max_d - d) / max_d with d the tree distance and max_d the query's largest.
pub fn ndcg_at(tree: &[f64], emb: &[f64], n: usize, k: usize) -> f64 {
    let mut total = 0.0;
    for i in 0..n {
        let row = &tree[i * n..(i + 1) * n];
        let max_d = (0..n).filter(|&j| j != i).map(|j| row[j]).fold(0.0, f64::max);
        let rel = |j: usize| if max_d > 0.0 { (max_d - row[j]) / max_d } else { 0.0 };
        let dcg: f64 = nearest(emb, n, i, k)
            .iter()
            .enumerate()
            .map(|(r, &j)| rel(j) / (r as f64 + 2.0).log2())
            .sum();
        let idcg: f64 = largest((0..n).filter(|&j| j != i).map(rel).collect(), k)
            .iter()
            .enumerate()
            .map(|(r, v)| v / (r as f64 + 2.0).log2())
            .sum();
        total += if idcg > 0.0 { dcg / idcg } else { 0.0 };
    }
    total / n as f64
}

/// Code `i`'s neighbourhood in the tree: its parent and its children.
fn neighbourhood(parents: &[Option<usize>], i: usize) -> Vec<usize> {
    (0..parents.len())
        .filter(|&j| j != i && (parents[i] == Some(j) || parents[j] == Some(i)))
        .collect()
}

/// Mean average precision of neighbourhood reconstruction: for each code, its parent and
/// children are the relevant items of the ranking by `emb`. Codes with none are skipped. A
/// relevant code's rank is the count of codes before it (no sort of the row).
pub fn neighbourhood_map(parents: &[Option<usize>], emb: &[f64], n: usize) -> f64 {
    let (mut total, mut queries) = (0.0, 0);
    for i in 0..n {
        let relevant = neighbourhood(parents, i);
        if relevant.is_empty() {
            continue;
        }
        let row = &emb[i * n..(i + 1) * n];
        let before = |a: usize, b: usize| row[a].total_cmp(&row[b]).then(a.cmp(&b)).is_lt();
        let mut ranks: Vec<usize> = relevant
            .iter()
            .map(|&j| (0..n).filter(|&l| l != i && before(l, j)).count())
            .collect();
        ranks.sort_unstable();
        let ap: f64 = ranks
            .iter()
            .enumerate()
            .map(|(hits, r)| (hits + 1) as f64 / (r + 1) as f64)
            .sum();
        total += ap / relevant.len() as f64;
        queries += 1;
    }
    total / queries.max(1) as f64
}

/// Share of codes with a parent whose nearest code of the parent's level is the parent.
pub fn parent_at_1(parents: &[Option<usize>], levels: &[u8], emb: &[f64], n: usize) -> f64 {
    let (mut hits, mut queries) = (0, 0);
    for i in 0..n {
        let Some(p) = parents[i] else { continue };
        let row = &emb[i * n..(i + 1) * n];
        let nearest = (0..n)
            .filter(|&j| j != i && levels[j] == levels[p])
            .min_by(|&a, &b| row[a].total_cmp(&row[b]));
        hits += (nearest == Some(p)) as usize;
        queries += 1;
    }
    hits as f64 / queries.max(1) as f64
}

/// Mean over codes with a sibling of (siblings among the 5 nearest codes) / 5.
pub fn sibling_precision_at_5(parents: &[Option<usize>], emb: &[f64], n: usize) -> f64 {
    let (mut total, mut queries) = (0.0, 0);
    for i in 0..n {
        let Some(p) = parents[i] else { continue };
        let sibling = |j: usize| j != i && parents[j] == Some(p);
        if !(0..n).any(sibling) {
            continue;
        }
        total += nearest(emb, n, i, 5).into_iter().filter(|&j| sibling(j)).count() as f64 / 5.0;
        queries += 1;
    }
    total / queries.max(1) as f64
}

/// Distortion after the best single scale: s minimizes sum (s e/t - 1)^2 over pairs with t > 0;
/// returns (s, mean |s e/t - 1|, worst |s e/t - 1|).
pub fn distortion(tree: &[f64], emb: &[f64]) -> (f64, f64, f64) {
    let ratios: Vec<f64> = tree
        .iter()
        .zip(emb)
        .filter(|(t, _)| **t > 0.0)
        .map(|(t, e)| e / t)
        .collect();
    let s = ratios.iter().sum::<f64>() / ratios.iter().map(|r| r * r).sum::<f64>().max(f64::MIN_POSITIVE);
    let errors: Vec<f64> = ratios.iter().map(|r| (s * r - 1.0).abs()).collect();
    let mean = errors.iter().sum::<f64>() / errors.len().max(1) as f64;
    (s, mean, errors.iter().copied().fold(0.0, f64::max))
}

/// The upper triangle (i < j) of an n x n matrix.
pub fn upper_triangle(m: &[f64], n: usize) -> Vec<f64> {
    (0..n).flat_map(|i| ((i + 1)..n).map(move |j| m[i * n + j])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_and_correlations_by_hand() {
        assert_eq!(average_ranks(&[10.0, 20.0, 10.0, 30.0]), vec![1.5, 3.0, 1.5, 4.0]);
        assert!((pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 7.0]) - 0.9933992677987828).abs() < 1e-12);
        // x = [1, 2, 2, 3] has ranks [1, 2.5, 2.5, 4]; y strictly increasing: ranks [1, 2, 3, 4].
        // Pearson of the ranks = 4.5 / sqrt(4.5 * 5) = 0.9486832980505138.
        let rho = spearman(&[1.0, 2.0, 2.0, 3.0], &[0.1, 0.2, 0.3, 0.4]);
        assert!((rho - 0.9486832980505138).abs() < 1e-12, "{rho}");
        assert!((spearman_ceiling(&[1.0, 2.0, 2.0, 3.0]) - 0.9486832980505138).abs() < 1e-12);
        assert_eq!(spearman_ceiling(&[3.0, 1.0, 2.0]), 1.0);
    }

    /// A 4-code tree: 0 is the root, 1 and 2 its children, 3 a child of 1.
    fn tree() -> (Vec<Option<usize>>, Vec<u8>, Vec<f64>) {
        let parents = vec![None, Some(0), Some(0), Some(1)];
        let levels = vec![2, 3, 3, 4];
        #[rustfmt::skip]
        let t = vec![
            0.0, 0.5, 0.5, 1.5,
            0.5, 0.0, 2.0, 0.5,
            0.5, 2.0, 0.0, 3.0,
            1.5, 0.5, 3.0, 0.0,
        ];
        (parents, levels, t)
    }

    #[test]
    fn a_perfect_embedding_scores_perfectly() {
        let (parents, levels, t) = tree();
        assert!((ndcg_at(&t, &t, 4, 2) - 1.0).abs() < 1e-12);
        assert!((neighbourhood_map(&parents, &t, 4) - 1.0).abs() < 1e-12);
        assert_eq!(parent_at_1(&parents, &levels, &t, 4), 1.0);
        let (s, mean, worst) = distortion(&t, &t.iter().map(|x| x * 2.0).collect::<Vec<_>>());
        assert!((s - 0.5).abs() < 1e-12 && mean < 1e-12 && worst < 1e-12);
    }

    #[test]
    fn a_swapped_embedding_by_hand() {
        let (parents, levels, t) = tree();
        // The embedding puts 3 next to 2 and far from its parent 1.
        #[rustfmt::skip]
        let e = vec![
            0.0, 1.0, 1.0, 1.0,
            1.0, 0.0, 2.0, 3.0,
            1.0, 2.0, 0.0, 0.2,
            1.0, 3.0, 0.2, 0.0,
        ];
        // parent@1: 1 -> 0 yes, 2 -> 0 yes, 3: nearest level-3 code is 2, not 1.
        assert!((parent_at_1(&parents, &levels, &e, 4) - 2.0 / 3.0).abs() < 1e-12);
        // Query 3, relevant {1}: ranking by e is [2 (0.2), 0 (1.0), 1 (3.0)] -> AP = 1/3.
        // Query 0, relevant {1, 2}: ranking [1, 2, 3] -> AP 1. Query 1, relevant {0, 3}:
        // ranking [0 (1), 2 (2), 3 (3)] -> (1/1 + 2/3) / 2. Query 2, relevant {0}: [3, 0, 1] -> 1/2.
        let expected = (1.0 + (1.0 + 2.0 / 3.0) / 2.0 + 0.5 + 1.0 / 3.0) / 4.0;
        assert!((neighbourhood_map(&parents, &e, 4) - expected).abs() < 1e-12);
        // NDCG@1 of query 3: max_d = 3, relevances 0: 0.5, 1: 5/6, 2: 0. Top-1 by e is 2 -> 0.
        // Query 0: max_d 1.5, rels 1: 2/3, 2: 2/3, 3: 0; top-1 by e is 1 (tie with 2, 3: index) -> 1.
        // Query 1: max_d 2, rels 0: 0.75, 2: 0, 3: 0.75; top-1 is 0 -> 1.
        // Query 2: max_d 3, rels 0: 5/6, 1: 1/3, 3: 0; top-1 is 3 -> 0.
        assert!((ndcg_at(&t, &e, 4, 1) - 0.5).abs() < 1e-12);
        // Siblings: 1 and 2. Query 1's 5 nearest hold 2 -> 1/5; query 2's hold 1 -> 1/5; 3 has none.
        assert!((sibling_precision_at_5(&parents, &e, 4) - 0.2).abs() < 1e-12);
    }

    /// Against each row sorted whole, on random matrices with many ties: NDCG@k, MAP and
    /// sibling precision@5 as first written, to the bit.
    #[test]
    fn selections_equal_whole_sorts_on_random_trees() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let sorted = |emb: &[f64], n: usize, i: usize| {
            let row = &emb[i * n..(i + 1) * n];
            let mut order: Vec<usize> = (0..n).filter(|&j| j != i).collect();
            order.sort_by(|&a, &b| row[a].total_cmp(&row[b]).then(a.cmp(&b)));
            order
        };
        for _ in 0..40 {
            let n = rng.random_range(2..30);
            let parents: Vec<Option<usize>> = (0..n).map(|i| (i > 0).then(|| rng.random_range(0..i))).collect();
            let tree: Vec<f64> = (0..n * n).map(|_| rng.random_range(0..4) as f64).collect();
            let emb: Vec<f64> = (0..n * n).map(|_| rng.random_range(0..5) as f64 / 2.0).collect();
            for k in [1, 5, 10, 40] {
                let mut want = 0.0;
                for i in 0..n {
                    let row = &tree[i * n..(i + 1) * n];
                    let max_d = (0..n).filter(|&j| j != i).map(|j| row[j]).fold(0.0, f64::max);
                    let rel = |j: usize| if max_d > 0.0 { (max_d - row[j]) / max_d } else { 0.0 };
                    let dcg: f64 = sorted(&emb, n, i)
                        .iter()
                        .take(k)
                        .enumerate()
                        .map(|(r, &j)| rel(j) / (r as f64 + 2.0).log2())
                        .sum();
                    let mut ideal: Vec<f64> = (0..n).filter(|&j| j != i).map(rel).collect();
                    ideal.sort_by(|a, b| b.total_cmp(a));
                    let idcg: f64 = ideal
                        .iter()
                        .take(k)
                        .enumerate()
                        .map(|(r, v)| v / (r as f64 + 2.0).log2())
                        .sum();
                    want += if idcg > 0.0 { dcg / idcg } else { 0.0 };
                }
                assert_eq!(ndcg_at(&tree, &emb, n, k), want / n as f64);
            }
            let (mut total, mut queries) = (0.0, 0);
            for i in 0..n {
                let relevant = neighbourhood(&parents, i);
                if relevant.is_empty() {
                    continue;
                }
                let (mut hits, mut ap) = (0, 0.0);
                for (r, j) in sorted(&emb, n, i).into_iter().enumerate() {
                    if relevant.contains(&j) {
                        hits += 1;
                        ap += hits as f64 / (r + 1) as f64;
                    }
                }
                total += ap / relevant.len() as f64;
                queries += 1;
            }
            assert_eq!(neighbourhood_map(&parents, &emb, n), total / queries.max(1) as f64);
            let (mut total, mut queries) = (0.0, 0);
            for i in 0..n {
                let Some(p) = parents[i] else { continue };
                let sibling = |j: usize| j != i && parents[j] == Some(p);
                if !(0..n).any(sibling) {
                    continue;
                }
                total += sorted(&emb, n, i).into_iter().take(5).filter(|&j| sibling(j)).count() as f64 / 5.0;
                queries += 1;
            }
            assert_eq!(sibling_precision_at_5(&parents, &emb, n), total / queries.max(1) as f64);
        }
    }
}
