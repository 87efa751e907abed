//! A classification tree numbered in pre-order: every code's subtree is the contiguous index
//! range `[i, end[i])`, and the codes at one depth inside it are one contiguous run of that
//! depth's list. This is what lets `build` and `build-shards` work on per-anchor groups of codes
//! (a handful of ranges each) instead of on every pair of codes.

use anyhow::{Result, bail};

/// Codes `start..end` of one pre-order list: every code (`depth: None`) or the codes at one depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub depth: Option<u8>,
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

#[derive(Debug, Clone)]
pub struct Tree {
    pub parent: Vec<Option<u32>>,
    pub depth: Vec<u8>,
    /// One past the last code of each code's subtree.
    pub end: Vec<u32>,
    /// The codes at each depth, in index order.
    pub by_depth: Vec<Vec<u32>>,
}

impl Tree {
    /// From each code's parent; the indices must be a pre-order (a parent comes before its
    /// children, and a subtree's codes follow it without a gap).
    pub fn from_parents(parent: Vec<Option<u32>>) -> Result<Tree> {
        let n = parent.len();
        let mut depth = vec![0u8; n];
        // The open path from a root down to the previous code: in pre-order, a code's parent is on it.
        let mut path: Vec<u32> = Vec::new();
        for i in 0..n {
            while let Some(&top) = path.last() {
                if Some(top) == parent[i] {
                    break;
                }
                path.pop();
            }
            match parent[i] {
                Some(p) if path.last() != Some(&p) => bail!(
                    "code {i} follows code {} but its parent {p} is not on the path to it: the codes are not in pre-order",
                    i.saturating_sub(1)
                ),
                Some(_) => depth[i] = path.len() as u8,
                None => {}
            }
            path.push(i as u32);
        }
        let mut end: Vec<u32> = (1..=n as u32).collect();
        for i in (0..n).rev() {
            if let Some(p) = parent[i] {
                end[p as usize] = end[p as usize].max(end[i]);
            }
        }
        let max_depth = depth.iter().copied().max().unwrap_or(0) as usize;
        let mut by_depth = vec![Vec::new(); if n == 0 { 0 } else { max_depth + 1 }];
        for (i, &d) in depth.iter().enumerate() {
            by_depth[d as usize].push(i as u32);
        }
        Ok(Tree {
            parent,
            depth,
            end,
            by_depth,
        })
    }

    pub fn len(&self) -> usize {
        self.parent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parent.is_empty()
    }

    pub fn max_depth(&self) -> u8 {
        self.by_depth.len().saturating_sub(1) as u8
    }

    /// [`naics_common::tree_distance::unrelated`] of this tree.
    pub fn unrelated_distance(&self) -> f64 {
        naics_common::tree_distance::unrelated(self.max_depth())
    }

    /// The code and its ancestors, the code first.
    pub fn ancestors(&self, i: u32) -> impl Iterator<Item = u32> + '_ {
        std::iter::successors(Some(i), |&c| self.parent[c as usize])
    }

    /// The codes at `depth` inside the subtree of `code`.
    pub fn at_depth_under(&self, code: u32, depth: u8) -> Span {
        let Some(list) = self.by_depth.get(depth as usize) else {
            return Span {
                depth: Some(depth),
                start: 0,
                end: 0,
            };
        };
        let start = list.partition_point(|&c| c < code) as u32;
        let end = list.partition_point(|&c| c < self.end[code as usize]) as u32;
        Span {
            depth: Some(depth),
            start,
            end,
        }
    }

    /// The `k`-th code of a span.
    pub fn code_at(&self, span: &Span, k: u32) -> u32 {
        match span.depth {
            None => span.start + k,
            Some(d) => self.by_depth[d as usize][(span.start + k) as usize],
        }
    }

    /// How many codes of `span` have an index below `code`.
    pub fn count_below(&self, span: &Span, code: u32) -> usize {
        match span.depth {
            _ if span.is_empty() => 0,
            None => code.clamp(span.start, span.end) as usize - span.start as usize,
            Some(d) => {
                let list = &self.by_depth[d as usize][span.start as usize..span.end as usize];
                list.partition_point(|&c| c < code)
            }
        }
    }

    /// The distance of (up, down) from [`Tree::up_down`] (`None`: under different roots).
    pub fn distance_of(&self, up_down: Option<(u8, u8)>) -> f64 {
        up_down.map_or_else(|| self.unrelated_distance(), |(up, down)| distance(up, down))
    }

    /// (up, down): generations from `i` up to the lowest common ancestor, then down to `j`;
    /// `None` when they share no ancestor. By walking the tree, for tests and small inputs.
    pub fn up_down(&self, i: u32, j: u32) -> Option<(u8, u8)> {
        let lca = self.ancestors(i).find(|&a| a <= j && j < self.end[a as usize])?;
        let d = self.depth[lca as usize];
        Some((self.depth[i as usize] - d, self.depth[j as usize] - d))
    }
}

pub use naics_common::tree_distance::distance;

/// The relation's name as `sql/build/03_distances.sql` gives it (j as seen from i).
pub fn relation(up: u8, down: u8) -> &'static str {
    match (up, down) {
        (1, 0) => "parent",
        (2, 0) => "grandparent",
        (_, 0) => "ancestor",
        (0, 1) => "child",
        (0, 2) => "grandchild",
        (0, _) => "descendant",
        (1, 1) => "sibling",
        (1, _) => "sibling_descendant",
        (_, 1) => "ancestor_sibling",
        (u, d) if u == d => "cousin",
        _ => "cousin_removed",
    }
}

/// Parents in any order -> a pre-order: each root, then its children's subtrees in the order
/// the children came. Returns, for each new position, the old position. Errors name the first
/// code (old position) on a cycle.
pub fn preorder(parent: &[Option<usize>]) -> Result<Vec<usize>, usize> {
    let n = parent.len();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut roots = Vec::new();
    for (i, p) in parent.iter().enumerate() {
        match p {
            Some(p) => children[*p].push(i),
            None => roots.push(i),
        }
    }
    let mut order = Vec::with_capacity(n);
    let mut stack: Vec<usize> = roots.into_iter().rev().collect();
    while let Some(i) = stack.pop() {
        order.push(i);
        stack.extend(children[i].iter().rev());
    }
    if order.len() < n {
        let mut seen = vec![false; n];
        for &i in &order {
            seen[i] = true;
        }
        return Err((0..n).find(|&i| !seen[i]).expect("a code not reached"));
    }
    Ok(order)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// A random forest in pre-order: each new code hangs under a random code of the open path
    /// (or starts a new root).
    pub fn random_tree(n: usize, seed: u64) -> Tree {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut parent: Vec<Option<u32>> = Vec::with_capacity(n);
        let mut path: Vec<u32> = Vec::new();
        for i in 0..n as u32 {
            let keep = rng.random_range(0..=path.len());
            path.truncate(keep);
            parent.push(path.last().copied());
            path.push(i);
        }
        Tree::from_parents(parent).unwrap()
    }

    #[test]
    fn spans_match_brute_force_on_random_trees() {
        for seed in 0..20 {
            let t = random_tree(60, seed);
            for code in 0..60u32 {
                for depth in 0..=t.max_depth() + 1 {
                    let span = t.at_depth_under(code, depth);
                    let listed: Vec<u32> = (0..span.len() as u32).map(|k| t.code_at(&span, k)).collect();
                    let brute: Vec<u32> = (0..60u32)
                        .filter(|&j| t.depth[j as usize] == depth && t.ancestors(j).any(|a| a == code))
                        .collect();
                    assert_eq!(listed, brute, "seed {seed} code {code} depth {depth}");
                    for j in 0..61 {
                        assert_eq!(t.count_below(&span, j), brute.iter().filter(|&&b| b < j).count());
                    }
                }
                let subtree: Vec<u32> = (0..60u32).filter(|&j| t.ancestors(j).any(|a| a == code)).collect();
                assert_eq!(subtree, (code..t.end[code as usize]).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn distances_by_hand() {
        // 0 -> 1 -> 2, 0 -> 3 -> 4; 5 alone.
        let t = Tree::from_parents(vec![None, Some(0), Some(1), Some(0), Some(3), None]).unwrap();
        assert_eq!(t.depth, vec![0, 1, 2, 1, 2, 0]);
        assert_eq!(t.end, vec![5, 3, 3, 5, 5, 6]);
        assert_eq!(t.up_down(2, 4), Some((2, 2)));
        assert_eq!(distance(2, 2), 4.0);
        assert_eq!(relation(2, 2), "cousin");
        assert_eq!(t.up_down(2, 0), Some((2, 0)));
        assert_eq!(distance(2, 0), 1.5);
        assert_eq!(t.up_down(1, 4), Some((1, 2)));
        assert_eq!(relation(1, 2), "sibling_descendant");
        assert_eq!(t.up_down(2, 5), None);
        assert_eq!(t.unrelated_distance(), 6.0);
    }

    #[test]
    fn preorder_sorts_and_finds_cycles() {
        // 2 is the root; 0 and 1 its children in that order; 3 under 0.
        let order = preorder(&[Some(2), Some(2), None, Some(0)]).unwrap();
        assert_eq!(order, vec![2, 0, 3, 1]);
        assert_eq!(preorder(&[Some(1), Some(0), None]), Err(0));
        let not_preorder = Tree::from_parents(vec![None, None, Some(0)]);
        assert!(not_preorder.unwrap_err().to_string().contains("not in pre-order"));
    }
}
