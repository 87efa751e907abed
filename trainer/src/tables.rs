//! The pipeline's Parquet tables the trainer reads, with the parquet crate alone (DataFusion
//! stays in naics-pipeline): codes and held-out index entries (where they are:
//! `naics_common::layout`); tree distances are computed from the codes' parents, as
//! `sql/build/05_distances.sql` defines them, so no table of all pairs is needed.

use anyhow::{Context, Result};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int32Type};
use candle_core::{Device, Tensor};
use naics_common::layout::DataDir;
use naics_common::share::Validation;
use naics_common::tree_distance;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rand::SeedableRng;
use rand::seq::{IteratorRandom, SliceRandom};
use rand_chacha::ChaCha8Rng;
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::Path;

fn read(path: &Path) -> Result<Vec<RecordBatch>> {
    let file = std::fs::File::open(path).with_context(|| {
        format!(
            "{}: missing; run `naics-pipeline ingest && naics-pipeline build`",
            path.display()
        )
    })?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
    Ok(reader.collect::<std::result::Result<Vec<_>, _>>()?)
}

fn strings(batch: &RecordBatch, name: &str) -> Result<Vec<Option<String>>> {
    let col = arrow::compute::cast(
        batch
            .column_by_name(name)
            .with_context(|| format!("no column {name}"))?,
        &DataType::Utf8,
    )?;
    let col = col.as_string::<i32>();
    Ok((0..col.len())
        .map(|i| (!col.is_null(i)).then(|| col.value(i).to_string()))
        .collect())
}

fn string_lists(batch: &RecordBatch, name: &str) -> Result<Vec<Vec<String>>> {
    let col = batch
        .column_by_name(name)
        .with_context(|| format!("no column {name}"))?;
    let lists = col
        .as_list_opt::<i32>()
        .with_context(|| format!("column {name}: expected a list of strings"))?;
    (0..lists.len())
        .map(|i| {
            let items = arrow::compute::cast(&lists.value(i), &DataType::Utf8)?;
            let items = items.as_string::<i32>();
            Ok((0..items.len()).map(|k| items.value(k).to_string()).collect())
        })
        .collect()
}

fn ints(batch: &RecordBatch, name: &str) -> Result<Vec<i32>> {
    let col = batch
        .column_by_name(name)
        .with_context(|| format!("no column {name}"))?;
    Ok(col.as_primitive::<Int32Type>().values().to_vec())
}

/// The code tree in the pipeline's order (pre-order: NAICS's Census order).
pub struct Codes {
    pub code: Vec<String>,
    pub title: Vec<String>,
    pub description: Vec<String>,
    pub level: Vec<u8>,
    pub sector: Vec<String>,
    pub parent: Vec<Option<usize>>,
    /// The code's training index entries (the held-out ones are not in this table).
    pub examples: Vec<Vec<String>>,
    /// How many of each code's `examples`, at the end, cite it from other codes' notes
    /// (ICD-10-CM's cross-references) rather than being its own entries. 0 where the table
    /// predates the column.
    pub cited_examples: Vec<usize>,
    pub position: HashMap<String, usize>,
}

impl Codes {
    pub fn read(data_dir: &Path) -> Result<Codes> {
        let (mut code, mut title, mut level, mut sector, mut parent_code) = (vec![], vec![], vec![], vec![], vec![]);
        let (mut description, mut examples, mut cited_examples) = (vec![], vec![], vec![]);
        for b in read(&DataDir(data_dir.to_path_buf()).codes())? {
            code.extend(strings(&b, "code")?.into_iter().flatten());
            title.extend(strings(&b, "title")?.into_iter().flatten());
            description.extend(strings(&b, "description")?.into_iter().map(Option::unwrap_or_default));
            sector.extend(strings(&b, "sector")?.into_iter().flatten());
            level.extend(ints(&b, "level")?.into_iter().map(|l| l as u8));
            parent_code.extend(strings(&b, "parent")?);
            examples.extend(string_lists(&b, "examples")?);
            match b.column_by_name("cited_examples") {
                Some(_) => cited_examples.extend(ints(&b, "cited_examples")?.into_iter().map(|n| n.max(0) as usize)),
                None => cited_examples.extend(std::iter::repeat_n(0, b.num_rows())),
            }
        }
        let position: HashMap<String, usize> = code.iter().enumerate().map(|(i, c)| (c.clone(), i)).collect();
        let parent = parent_code
            .iter()
            .map(|p| p.as_ref().and_then(|p| position.get(p).copied()))
            .collect();
        Ok(Codes {
            code,
            title,
            description,
            level,
            sector,
            parent,
            examples,
            cited_examples,
            position,
        })
    }

    pub fn len(&self) -> usize {
        self.code.len()
    }

    /// The validation share `share` of the entries, and what training may read instead.
    pub fn validation(&self, share: f64) -> Validation {
        Validation::new(
            share,
            (0..self.len()).map(|c| {
                (
                    self.code[c].as_str(),
                    self.examples[c].as_slice(),
                    self.cited_examples[c],
                )
            }),
        )
    }

    /// The entries of code `c` training may read (see [`Validation`]).
    pub fn training_entries<'a>(
        &'a self,
        validation: &'a Validation,
        c: usize,
    ) -> impl Iterator<Item = &'a String> + 'a {
        validation.training(&self.code[c], &self.examples[c], self.cited_examples[c])
    }

    pub fn is_empty(&self) -> bool {
        self.code.is_empty()
    }

    /// The codes no other code has as parent: what free text is coded to (NAICS's six-digit
    /// industries).
    pub fn leaves(&self) -> Vec<usize> {
        leaves_of(&self.parent)
    }

    /// The levels that occur, in order (NAICS: 2..=6).
    pub fn levels(&self) -> Vec<u8> {
        let mut levels = self.level.clone();
        levels.sort_unstable();
        levels.dedup();
        levels
    }

    /// The codes from the root (a NAICS sector) down to `i`.
    pub fn path(&self, i: usize) -> Vec<usize> {
        let mut path = vec![i];
        while let Some(p) = self.parent[*path.last().expect("non-empty")] {
            path.push(p);
        }
        path.reverse();
        path
    }
}

/// The codes no code has as parent, in order.
fn leaves_of(parent: &[Option<usize>]) -> Vec<usize> {
    let mut has_child = vec![false; parent.len()];
    for p in parent.iter().flatten() {
        has_child[*p] = true;
    }
    (0..parent.len()).filter(|&i| !has_child[i]).collect()
}

/// Per code of a tree in pre-order (given by its parents), one past the last code of its
/// subtree: in pre-order a subtree is the range [code, end).
pub fn subtree_ends(parent: &[Option<usize>]) -> Vec<u32> {
    let mut end = vec![parent.len() as u32; parent.len()];
    // A subtree ends at the first code after it that is not its descendant: one whose parent
    // is not the innermost subtree still open.
    let mut open: Vec<usize> = Vec::new();
    for (i, p) in parent.iter().enumerate() {
        while open.last().is_some_and(|&o| Some(o) != *p) {
            end[open.pop().expect("non-empty")] = i as u32;
        }
        open.push(i);
    }
    end
}

/// The leaves of a tree in pre-order (NAICS's Census order), and those under any code: in
/// pre-order a subtree is a range of codes, so its leaves are a range of the leaves.
pub struct LeafIndex {
    parent: Vec<Option<usize>>,
    leaves: Vec<u32>,
    /// Per code, one past the last code of its subtree.
    subtree_end: Vec<u32>,
}

impl LeafIndex {
    /// From the parents of codes in pre-order.
    pub fn new(parent: &[Option<usize>]) -> LeafIndex {
        LeafIndex {
            parent: parent.to_vec(),
            leaves: leaves_of(parent).into_iter().map(|l| l as u32).collect(),
            subtree_end: subtree_ends(parent),
        }
    }

    /// Where the leaves under code `c` (itself, if a leaf) sit among all the leaves, in order.
    pub fn range(&self, c: usize) -> Range<usize> {
        let from = self.leaves.partition_point(|&l| (l as usize) < c);
        let to = self.leaves.partition_point(|&l| l < self.subtree_end[c]);
        from..to
    }

    /// The children of `c` (of `None`: the roots), in order: in pre-order each child's subtree
    /// ends where the next one begins.
    pub fn children(&self, c: Option<usize>) -> impl Iterator<Item = usize> + '_ {
        let (mut at, end) = match c {
            Some(c) => (c + 1, self.subtree_end[c] as usize),
            None => (0, self.parent.len()),
        };
        std::iter::from_fn(move || {
            (at < end).then(|| {
                let child = at;
                at = self.subtree_end[child] as usize;
                child
            })
        })
    }

    /// The leaves under code `c` (itself, if a leaf).
    pub fn under(&self, c: usize) -> &[u32] {
        &self.leaves[self.range(c)]
    }

    /// Up to `count` leaves not in `taken`: the nearest in the tree to `codes` first (under
    /// their parents, then under their grandparents), then others drawn at random from a stream
    /// seeded by `seed`. All of them on a tree of at most `count` leaves more.
    pub fn nearby(&self, codes: &[u32], taken: &HashSet<u32>, count: usize, seed: u64) -> Vec<u32> {
        let mut out: Vec<u32> = Vec::new();
        let mut seen = taken.clone();
        for up in 1..=2 {
            for &c in codes {
                let Some(ancestor) = (0..up).try_fold(c as usize, |a, _| self.parent[a]) else {
                    continue;
                };
                for &l in self.under(ancestor) {
                    if out.len() < count && seen.insert(l) {
                        out.push(l);
                    }
                }
            }
        }
        let rest = count.saturating_sub(out.len());
        if rest > 0 {
            let others = self.leaves.iter().copied().filter(|l| !seen.contains(l));
            out.extend(others.choose_multiple(&mut ChaCha8Rng::seed_from_u64(seed), rest));
        }
        out
    }
}

/// Tree distances between codes ([`naics_common::tree_distance`]), the (up, down) of a pair read
/// off the codes' paths from their roots. Small trees keep the whole matrix (a lookup
/// per pair in every training step); larger ones walk the paths per pair.
pub struct TreeDistances {
    n: usize,
    /// Each code's path from its root, as code indexes.
    paths: Vec<Vec<u32>>,
    unrelated: f64,
    matrix: Option<Vec<f64>>,
}

/// Trees up to this many codes get the dense matrix (NAICS: 2,125 codes, 36 MB).
pub const DENSE_MAX_CODES: usize = 4096;

/// The hierarchy metrics (`eval`, a monitored metric) use every pair of up to this many codes
/// (16.8 M pairs); larger trees, a sample of this size ([`metric_codes`]).
pub const METRIC_MAX_CODES: usize = 4096;

impl TreeDistances {
    pub fn new(codes: &Codes) -> Self {
        let n = codes.len();
        let paths: Vec<Vec<u32>> = (0..n)
            .map(|i| codes.path(i).into_iter().map(|c| c as u32).collect())
            .collect();
        let max_depth = paths.iter().map(|p| p.len() - 1).max().unwrap_or(0);
        let mut tree = TreeDistances {
            n,
            paths,
            unrelated: tree_distance::unrelated(max_depth as u8),
            matrix: None,
        };
        if n <= DENSE_MAX_CODES {
            tree.matrix = Some((0..n * n).map(|k| tree.walk(k / n, k % n)).collect());
        }
        tree
    }

    fn walk(&self, i: usize, j: usize) -> f64 {
        if i == j {
            return 0.0;
        }
        let (a, b) = (&self.paths[i], &self.paths[j]);
        let common = a.iter().zip(b).take_while(|(x, y)| x == y).count();
        if common == 0 {
            return self.unrelated;
        }
        tree_distance::distance((a.len() - common) as u8, (b.len() - common) as u8)
    }

    pub fn get(&self, i: usize, j: usize) -> f64 {
        match &self.matrix {
            Some(m) => m[i * self.n + j],
            None => self.walk(i, j),
        }
    }

    /// The [m, m] tree distances among `codes`, row-major.
    pub fn among_values(&self, codes: &[usize]) -> Vec<f64> {
        codes
            .iter()
            .flat_map(|&i| codes.iter().map(move |&j| self.get(i, j)))
            .collect()
    }

    /// The [m, m] tree distances among `codes`.
    pub fn among(&self, codes: &[u32], device: &Device) -> Result<Tensor> {
        let codes: Vec<usize> = codes.iter().map(|&c| c as usize).collect();
        let values: Vec<f32> = self.among_values(&codes).into_iter().map(|d| d as f32).collect();
        Ok(Tensor::from_vec(values, (codes.len(), codes.len()), device)?)
    }
}

/// The codes the hierarchy metrics are computed over: all of them up to `max`; past it (ICD-10-CM),
/// a seeded sample closed under parents (each code drawn brings its ancestors), so that every
/// sampled code's parent is there for parent@1, sorted.
pub fn metric_codes(codes: &Codes, max: usize) -> Vec<usize> {
    let n = codes.len();
    if n <= max {
        return (0..n).collect();
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(0));
    let mut chosen = vec![false; n];
    let mut count = 0;
    for i in order {
        for c in codes.path(i) {
            if !chosen[c] {
                chosen[c] = true;
                count += 1;
            }
        }
        if count >= max {
            break;
        }
    }
    (0..n).filter(|&i| chosen[i]).collect()
}

/// The sub-tree of `sample` (sorted, closed under parents): parents and levels by position.
pub fn sub_tree(codes: &Codes, sample: &[usize]) -> (Vec<Option<usize>>, Vec<u8>) {
    let position: HashMap<usize, usize> = sample.iter().enumerate().map(|(k, &i)| (i, k)).collect();
    let parents = sample
        .iter()
        .map(|&i| codes.parent[i].and_then(|p| position.get(&p).copied()))
        .collect();
    (parents, sample.iter().map(|&i| codes.level[i]).collect())
}

/// Held-out index entries (code, text).
pub fn holdout(data_dir: &Path) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for b in read(&DataDir(data_dir.to_path_buf()).holdout())? {
        let (c, t) = (strings(&b, "code")?, strings(&b, "text")?);
        out.extend(c.into_iter().zip(t).filter_map(|(c, t)| Some((c?, t?))));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 0 -> {1 -> {2, 3}, 4 -> {5}}; 6 -> {7, 8}: leaves 2, 3, 5, 7, 8.
    fn forest() -> LeafIndex {
        LeafIndex::new(&[
            None,
            Some(0),
            Some(1),
            Some(1),
            Some(0),
            Some(4),
            None,
            Some(6),
            Some(6),
        ])
    }

    #[test]
    fn leaves_under_a_code_are_its_subtree_s() {
        let index = forest();
        assert_eq!(index.subtree_end, vec![6, 4, 3, 4, 6, 6, 9, 8, 9]);
        assert_eq!(index.under(0), [2, 3, 5]);
        assert_eq!(index.under(1), [2, 3]);
        assert_eq!(index.under(5), [5]);
        assert_eq!(index.under(6), [7, 8]);
    }

    #[test]
    fn nearby_leaves_come_siblings_first_then_cousins_then_at_random() {
        let index = forest();
        let taken: HashSet<u32> = [2].into_iter().collect();
        // Code 2's sibling, then its cousin under 0.
        assert_eq!(index.nearby(&[2], &taken, 2, 1), vec![3, 5]);
        // Past the tree's neighbours, the rest at random, each once, never a taken one.
        let mut all = index.nearby(&[2], &taken, 10, 1);
        assert_eq!(&all[..2], &[3, 5]);
        all.sort();
        assert_eq!(all, vec![3, 5, 7, 8]);
        assert_eq!(index.nearby(&[2], &taken, 3, 1), index.nearby(&[2], &taken, 3, 1));
        // A root's code has no parent: only random leaves.
        assert_eq!(index.nearby(&[6], &HashSet::new(), 1, 5).len(), 1);
    }

    /// 0 -> 1 -> 2, 0 -> 3; 4 alone (depth 2 at most: unrelated = 6).
    fn codes() -> Codes {
        let parent = vec![None, Some(0), Some(1), Some(0), None];
        Codes {
            code: (0..5).map(|i| i.to_string()).collect(),
            title: vec![String::new(); 5],
            description: vec![String::new(); 5],
            level: vec![1, 2, 3, 2, 1],
            sector: vec!["0".into(), "0".into(), "0".into(), "0".into(), "4".into()],
            parent,
            examples: vec![Vec::new(); 5],
            cited_examples: vec![0; 5],
            position: HashMap::new(),
        }
    }

    #[test]
    fn distances_by_hand_dense_or_walked() {
        let c = codes();
        let tree = TreeDistances::new(&c);
        assert!(tree.matrix.is_some());
        let expected = [
            (2, 0, 1.5),
            (2, 3, 3.0),
            (1, 3, 2.0),
            (0, 2, 1.5),
            (2, 4, 6.0),
            (3, 3, 0.0),
        ];
        for (i, j, d) in expected {
            assert_eq!(tree.get(i, j), d, "{i} {j}");
            assert_eq!(tree.walk(i, j), d, "{i} {j}");
        }
        let sub = tree.among(&[2, 0], &Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(sub, vec![vec![0.0, 1.5], vec![1.5, 0.0]]);
        assert_eq!(c.leaves(), vec![2, 3, 4]);
        assert_eq!(c.levels(), vec![1, 2, 3]);
    }

    #[test]
    fn metric_samples_are_closed_under_parents() {
        let c = codes();
        assert_eq!(metric_codes(&c, 10), vec![0, 1, 2, 3, 4]);
        for max in 1..5 {
            let s = metric_codes(&c, max);
            assert!(s.len() >= max.min(5));
            for &i in &s {
                assert!(c.parent[i].is_none_or(|p| s.contains(&p)), "{s:?}");
            }
            let (parents, levels) = sub_tree(&c, &s);
            assert_eq!(levels.len(), s.len());
            assert!(parents.iter().zip(&s).all(|(p, &i)| p.map(|k| s[k]) == c.parent[i]));
        }
    }
}
