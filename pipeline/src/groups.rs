//! Every anchor's other codes, grouped by how the tree relates them to it, as spans of the
//! pre-order lists ([`crate::tree`]) rather than as rows: the same information as the anchor's
//! rows of `distances`, in space that grows with the tree's depth, not its size.
//!
//! A [`Cell`] is the codes at `up` generations above the anchor then `down` below (one relation,
//! one distance); a [`Group`] is what the negative sampler draws from: every code at one
//! distance with one exclusion flag, in index order (`distances` read in order would list them so).

use crate::tree::{self, Span, Tree};
use naics_common::tree_distance::half_units;
use std::collections::BTreeMap;

/// The codes at (up, down) from an anchor; `up: None` is every code under another root.
#[derive(Debug, Clone)]
pub struct Cell {
    pub up: Option<u8>,
    pub down: u8,
    pub spans: Vec<Span>,
}

impl Cell {
    pub fn distance(&self, tree: &Tree) -> f64 {
        tree.distance_of(self.up.map(|up| (up, self.down)))
    }

    pub fn relation(&self) -> &'static str {
        match self.up {
            Some(up) => tree::relation(up, self.down),
            None => "unrelated",
        }
    }

    pub fn len(&self) -> usize {
        self.spans.iter().map(Span::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every code of the cell, in index order (spans of one list are already in order).
    pub fn codes<'a>(&'a self, tree: &'a Tree) -> impl Iterator<Item = u32> + 'a {
        self.spans
            .iter()
            .flat_map(move |s| (0..s.len() as u32).map(move |k| tree.code_at(s, k)))
    }
}

/// The non-empty cells of `anchor`: its descendants (up 0), then for each ancestor the codes
/// under it but outside the branch the anchor is in, then the other roots' codes.
pub fn cells(tree: &Tree, anchor: u32) -> Vec<Cell> {
    let mut out = Vec::new();
    let mut below: Option<u32> = None;
    for (up, a) in tree.ancestors(anchor).enumerate() {
        for depth in tree.depth[a as usize]..=tree.max_depth() {
            let down = depth - tree.depth[a as usize];
            if up == 0 && down == 0 {
                continue;
            }
            let all = tree.at_depth_under(a, depth);
            let spans = match below {
                None => vec![all],
                Some(b) => {
                    let inner = tree.at_depth_under(b, depth);
                    vec![
                        Span {
                            end: inner.start,
                            ..all
                        },
                        Span {
                            start: inner.end,
                            ..all
                        },
                    ]
                }
            };
            push_cell(&mut out, Some(up as u8), down, spans);
        }
        below = Some(a);
    }
    let root = below.expect("every code has a root");
    let n = tree.len() as u32;
    let unrelated = vec![
        Span {
            depth: None,
            start: 0,
            end: root,
        },
        Span {
            depth: None,
            start: tree.end[root as usize],
            end: n,
        },
    ];
    push_cell(&mut out, None, 0, unrelated);
    out
}

fn push_cell(out: &mut Vec<Cell>, up: Option<u8>, down: u8, spans: Vec<Span>) {
    let spans: Vec<Span> = spans.into_iter().filter(|s| !s.is_empty()).collect();
    if !spans.is_empty() {
        out.push(Cell { up, down, spans });
    }
}

/// The cell of code `j` as seen from `anchor`.
pub fn cell_of(tree: &Tree, anchor: u32, j: u32) -> (Option<u8>, u8) {
    match tree.up_down(anchor, j) {
        Some((up, down)) => (Some(up), down),
        None => (None, 0),
    }
}

/// The codes one anchor may draw as negatives at one distance and exclusion flag, in index order.
#[derive(Debug, Clone)]
pub struct Group {
    pub distance: f64,
    pub excluded: bool,
    spans: Vec<Span>,
    /// Codes inside the spans that are not members (excluded codes, which have their own group), sorted.
    removed: Vec<u32>,
    len: usize,
}

impl Group {
    fn empty(distance: f64, excluded: bool) -> Group {
        Group {
            distance,
            excluded,
            spans: Vec::new(),
            removed: Vec::new(),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many members have an index below `code`.
    pub fn rank(&self, tree: &Tree, code: u32) -> usize {
        self.listed_before(tree, code) - self.removed.partition_point(|&r| r < code)
    }

    /// The first member: the smallest of each span's first code that is not removed.
    fn first(&self, tree: &Tree) -> u32 {
        let first_kept = |span: &Span| {
            (0..span.len() as u32)
                .map(|k| tree.code_at(span, k))
                .find(|c| self.removed.binary_search(c).is_err())
        };
        self.spans
            .iter()
            .filter_map(first_kept)
            .min()
            .expect("a group has members")
    }

    /// How many codes of the spans (removed ones included) have an index below `code`.
    fn listed_before(&self, tree: &Tree, code: u32) -> usize {
        self.spans.iter().map(|s| tree.count_below(s, code)).sum()
    }

    pub fn contains(&self, tree: &Tree, code: u32) -> bool {
        self.rank(tree, code + 1) > self.rank(tree, code)
    }

    /// The `i`-th member in index order. Spans of one list, in order (every group but those that
    /// merge cells of different depths at one distance), read end to end skipping the removed
    /// codes; otherwise the smallest code with `i + 1` members at or below it, by binary search.
    pub fn nth(&self, tree: &Tree, i: usize) -> u32 {
        debug_assert!(i < self.len);
        let one_list = self
            .spans
            .windows(2)
            .all(|w| w[0].depth == w[1].depth && w[0].end <= w[1].start);
        if one_list {
            let mut x = i;
            for &r in &self.removed {
                if self.listed_before(tree, r) <= x {
                    x += 1;
                }
            }
            for span in &self.spans {
                if x < span.len() {
                    return tree.code_at(span, x as u32);
                }
                x -= span.len();
            }
            unreachable!("index within the spans");
        }
        let (mut lo, mut hi) = (0u32, tree.len() as u32);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.rank(tree, mid + 1) > i {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo
    }
}

/// The groups of `anchor`, ordered by their first member (the order in which reading the
/// anchor's `distances` rows by index meets them). `excluded`: the codes excluded with the
/// anchor in either direction, sorted, without the anchor.
pub fn groups(tree: &Tree, anchor: u32, excluded: &[u32]) -> Vec<Group> {
    let mut by_distance: BTreeMap<(u32, bool), Group> = BTreeMap::new();
    for cell in cells(tree, anchor) {
        let distance = cell.distance(tree);
        let g = by_distance
            .entry((half_units(distance), false))
            .or_insert_with(|| Group::empty(distance, false));
        g.len += cell.len();
        g.spans.extend(cell.spans);
    }
    for &x in excluded {
        let distance = tree.distance_of(tree.up_down(anchor, x));
        let natural = by_distance
            .get_mut(&(half_units(distance), false))
            .expect("every code is in a cell");
        natural.removed.push(x);
        natural.len -= 1;
        let g = by_distance
            .entry((half_units(distance), true))
            .or_insert_with(|| Group::empty(distance, true));
        g.spans.push(Span {
            depth: None,
            start: x,
            end: x + 1,
        });
        g.len += 1;
    }
    let mut out: Vec<Group> = by_distance.into_values().filter(|g| g.len > 0).collect();
    for g in &mut out {
        g.removed.sort_unstable();
    }
    out.sort_by_cached_key(|g| g.first(tree));
    out
}

/// One row of the `anchor_groups` table: how many codes stand in one relation to one anchor.
#[derive(Debug, Clone, PartialEq)]
pub struct CellCount {
    pub anchor: u32,
    pub up: Option<u8>,
    pub down: u8,
    pub distance: f64,
    pub relation: &'static str,
    pub excluded: bool,
    pub codes: u64,
}

/// The rows of `anchor_groups` for one anchor: each cell split by the exclusion flag.
pub fn cell_counts(tree: &Tree, anchor: u32, excluded: &[u32]) -> Vec<CellCount> {
    let excluded_cells: Vec<(Option<u8>, u8)> = excluded.iter().map(|&x| cell_of(tree, anchor, x)).collect();
    let mut out = Vec::new();
    for cell in cells(tree, anchor) {
        let in_cell = excluded_cells.iter().filter(|&&c| c == (cell.up, cell.down)).count() as u64;
        let row = |excluded, codes| CellCount {
            anchor,
            up: cell.up,
            down: cell.down,
            distance: cell.distance(tree),
            relation: cell.relation(),
            excluded,
            codes,
        };
        out.push(row(false, cell.len() as u64 - in_cell));
        if in_cell > 0 {
            out.push(row(true, in_cell));
        }
    }
    out.retain(|r| r.codes > 0);
    out
}

/// Triplets per shape (positive distance, negative distance, excluded, unrelated), distances in
/// half units: the sum over anchors of (positives at that distance) x (negatives of that kind).
pub type Shapes = BTreeMap<(u32, u32, bool, bool), u128>;

/// Adds one anchor's triplets to `shapes`, from its rows of `anchor_groups`: every group of
/// positives (one distance, not unrelated) times every group of farther negatives.
pub fn add_shapes(rows: &[CellCount], shapes: &mut Shapes) {
    let mut positives: BTreeMap<u32, u64> = BTreeMap::new();
    let mut negatives: BTreeMap<(u32, bool, bool), u64> = BTreeMap::new();
    for r in rows {
        let unrelated = r.up.is_none();
        if !unrelated {
            *positives.entry(half_units(r.distance)).or_default() += r.codes;
        }
        *negatives
            .entry((half_units(r.distance), r.excluded, unrelated))
            .or_default() += r.codes;
    }
    for (&dp, &p) in &positives {
        for (&(dn, excluded, unrelated), &n) in negatives.range((dp + 1, false, false)..) {
            *shapes.entry((dp, dn, excluded, unrelated)).or_default() += p as u128 * n as u128;
        }
    }
}

/// Each code's exclusion partners in both directions, sorted and without itself.
pub fn symmetric_exclusions(n: usize, pairs: impl IntoIterator<Item = (u32, u32)>) -> Vec<Vec<u32>> {
    let mut out = vec![Vec::new(); n];
    for (a, b) in pairs {
        if a != b {
            out[a as usize].push(b);
            out[b as usize].push(a);
        }
    }
    for list in &mut out {
        list.sort_unstable();
        list.dedup();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::tests::random_tree;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Brute force: every other code's (distance, excluded), as the SQL defines them.
    fn brute(tree: &Tree, anchor: u32, excluded: &[u32]) -> Vec<(u32, f64, bool)> {
        (0..tree.len() as u32)
            .filter(|&j| j != anchor)
            .map(|j| (j, tree.distance_of(tree.up_down(anchor, j)), excluded.contains(&j)))
            .collect()
    }

    #[test]
    fn groups_match_brute_force_on_random_trees() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for seed in 0..25 {
            let tree = random_tree(80, seed);
            let pairs: Vec<(u32, u32)> = (0..30)
                .map(|_| (rng.random_range(0..80), rng.random_range(0..80)))
                .collect();
            let excl = symmetric_exclusions(80, pairs);
            for anchor in 0..80u32 {
                let groups = groups(&tree, anchor, &excl[anchor as usize]);
                // Brute force, grouped in order of first appearance.
                let mut expected: Vec<(f64, bool, Vec<u32>)> = Vec::new();
                for (j, d, e) in brute(&tree, anchor, &excl[anchor as usize]) {
                    match expected.iter_mut().find(|g| g.0 == d && g.1 == e) {
                        Some(g) => g.2.push(j),
                        None => expected.push((d, e, vec![j])),
                    }
                }
                let got: Vec<(f64, bool, Vec<u32>)> = groups
                    .iter()
                    .map(|g| (g.distance, g.excluded, (0..g.len()).map(|i| g.nth(&tree, i)).collect()))
                    .collect();
                assert_eq!(got, expected, "seed {seed} anchor {anchor}");
                for g in &groups {
                    for j in 0..80 {
                        let member = expected
                            .iter()
                            .any(|e| e.0 == g.distance && e.1 == g.excluded && e.2.contains(&j));
                        assert_eq!(g.contains(&tree, j), member);
                    }
                }
                assert!(groups.iter().all(|g| g.first(&tree) == g.nth(&tree, 0)));
                let counts = cell_counts(&tree, anchor, &excl[anchor as usize]);
                assert_eq!(counts.iter().map(|c| c.codes).sum::<u64>(), 79);
            }
        }
    }
}
