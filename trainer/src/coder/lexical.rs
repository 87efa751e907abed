//! The word signal: Okapi BM25 between a text and each leaf's path document (the titles and
//! training entries of the leaf and its ancestors), over words and word pairs. Exact wording
//! carries over where the dense points blur it ("bakeries, retail" against "retail bakeries");
//! a few hundred lines of our own instead of a search engine's dependency, since the corpus is a
//! few thousand to a few hundred thousand short documents, scored whole for every text. (BM25
//! over leaf paths replaced a TF-IDF cosine over each leaf's own texts: docs/benchmarks.md.)

use crate::model::cache::hash_texts;
use crate::model::mapped::{MappedFile, Span};
use anyhow::{Context, Result, bail};
use candle_core::{Device, Tensor};
use foldhash::HashMap;
use naics_common::atomic::write_atomically;
use naics_common::format::hex;
use rayon::prelude::*;
use safetensors::Dtype;
use sha2::{Digest, Sha256};
use std::cmp::Ordering;
use std::path::Path;

/// Lower-cased words of letters and digits, a plural `s` dropped ("bakeries" -> "bakery").
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let w = w.to_lowercase();
            if w.len() > 4 && w.ends_with("ies") {
                format!("{}y", &w[..w.len() - 3])
            } else if w.len() > 3 && w.ends_with('s') && !w.ends_with("ss") && !w.ends_with("us") {
                w[..w.len() - 1].to_string()
            } else {
                w
            }
        })
        .collect()
}

/// The terms of a text: its words and its pairs of adjacent words.
fn terms(text: &str) -> Vec<String> {
    let w = words(text);
    let pairs = w.windows(2).map(|p| format!("{} {}", p[0], p[1]));
    w.iter().cloned().chain(pairs).collect()
}

/// Okapi BM25 over documents of words and word pairs (k1 1.2, b 0.75, Lucene's idf
/// ln(1 + (N - df + 0.5) / (df + 0.5))), each text's scores divided by its best.
///
/// The index lies in a cache file as arrays read in place: the terms sorted (their bytes end
/// to end, and where each starts: a term is found by binary search), each term's postings in
/// compressed rows (documents and term frequencies, from the term's start to the next's) and
/// idf, the documents' lengths. Building it for a 200,000-code tree was a third of a `search`.
pub struct Bm25 {
    file: MappedFile,
    term_bytes: Span,
    term_starts: Span,
    starts: Span,
    docs: Span,
    tf: Span,
    idf: Span,
    lengths: Span,
    average: f32,
}

/// Changes when the file's arrays or their meaning do, so that older files are rebuilt.
const FORMAT: &[u8] = b"bm25 terms+pairs, sorted terms, csr postings v1";

impl Bm25 {
    pub const K1: f32 = 1.2;
    pub const B: f32 = 0.75;

    /// Documents made of shared parts (a leaf's path document: its own texts and each
    /// ancestor's), the index read from `dir` where it was built for these parts and documents
    /// before, else built and written there. Each part's texts are read once, however many
    /// documents hold it (on ICD-10-CM's 36,355 path documents, reading every document's
    /// texts took most of a `search`).
    pub fn over_parts(parts: &[Vec<&str>], documents: &[Vec<usize>], dir: &Path) -> Result<Bm25> {
        let mut key = Sha256::new().chain_update(FORMAT);
        for texts in parts {
            key.update((texts.len() as u64).to_le_bytes());
            hash_texts(&mut key, texts);
        }
        for held in documents {
            key.update((held.len() as u64).to_le_bytes());
            held.iter().for_each(|&p| key.update((p as u64).to_le_bytes()));
        }
        let path = dir.join(format!("bm25-{}.safetensors", &hex(&key.finalize())[..16]));
        if let Ok(index) = Bm25::open(&path) {
            return Ok(index);
        }
        let arrays = build(parts, documents)?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        write_atomically(&path, |tmp| Ok(candle_core::safetensors::save(&arrays, tmp)?))?;
        Bm25::open(&path)
    }

    /// The index in `path`, its rows checked so that scoring stays within its arrays.
    fn open(path: &Path) -> Result<Bm25> {
        let file = MappedFile::open(path)?;
        let span = |name, dtype| file.find(name, dtype).map(|(span, _)| span);
        let index = Bm25 {
            term_bytes: span("term_bytes", Dtype::U8)?,
            term_starts: span("term_starts", Dtype::U32)?,
            starts: span("starts", Dtype::U32)?,
            docs: span("docs", Dtype::U32)?,
            tf: span("tf", Dtype::F32)?,
            idf: span("idf", Dtype::F32)?,
            lengths: span("lengths", Dtype::F32)?,
            average: file
                .values::<f32>(span("average", Dtype::F32)?)
                .first()
                .copied()
                .unwrap_or(1.0),
            file,
        };
        let v = |span| index.file.values::<u32>(span);
        let rows = |starts: &[u32], len: usize, count: usize| {
            starts.len() == count + 1 && starts.windows(2).all(|w| w[0] <= w[1]) && starts.last() == Some(&(len as u32))
        };
        let terms = index.file.values::<f32>(index.idf).len();
        let documents = index.file.values::<f32>(index.lengths).len();
        if !rows(
            v(index.term_starts),
            index.file.values::<u8>(index.term_bytes).len(),
            terms,
        ) || !rows(v(index.starts), v(index.docs).len(), terms)
            || index.file.values::<f32>(index.tf).len() != v(index.docs).len()
            || v(index.docs).iter().any(|&d| d as usize >= documents)
        {
            bail!("{}: its arrays do not agree", index.file.broken())
        }
        Ok(index)
    }

    /// The term's row, by binary search over the sorted terms.
    fn term(&self, term: &str) -> Option<usize> {
        let (bytes, starts) = (
            self.file.values::<u8>(self.term_bytes),
            self.file.values::<u32>(self.term_starts),
        );
        let (mut low, mut high) = (0, starts.len() - 1);
        while low < high {
            let middle = (low + high) / 2;
            match bytes[starts[middle] as usize..starts[middle + 1] as usize].cmp(term.as_bytes()) {
                Ordering::Less => low = middle + 1,
                Ordering::Greater => high = middle,
                Ordering::Equal => return Some(middle),
            }
        }
        None
    }

    pub fn scores(&self, text: &str) -> Vec<f32> {
        let lengths = self.file.values::<f32>(self.lengths);
        let (starts, docs, tfs) = (
            self.file.values::<u32>(self.starts),
            self.file.values::<u32>(self.docs),
            self.file.values::<f32>(self.tf),
        );
        let mut out = vec![0.0f32; lengths.len()];
        for t in terms(text) {
            let Some(id) = self.term(&t) else {
                continue;
            };
            let idf = self.file.values::<f32>(self.idf)[id];
            let row = starts[id] as usize..starts[id + 1] as usize;
            for (&doc, &tf) in docs[row.clone()].iter().zip(&tfs[row]) {
                let norm = Self::K1 * (1.0 - Self::B + Self::B * lengths[doc as usize] / self.average);
                out[doc as usize] += idf * tf * (Self::K1 + 1.0) / (tf + norm);
            }
        }
        let best = out.iter().cloned().fold(0.0f32, f32::max);
        if best > 0.0 {
            out.iter_mut().for_each(|x| *x /= best);
        }
        out
    }
}

/// The index's arrays (see [`Bm25`]) for documents of shared parts. Words are split on all
/// cores; terms get their ids in one pass, then their rows in sorted order.
fn build(parts: &[Vec<&str>], documents: &[Vec<usize>]) -> Result<std::collections::HashMap<String, Tensor>> {
    let split: Vec<Vec<String>> = parts
        .par_iter()
        .map(|texts| texts.iter().flat_map(|t| terms(t)).collect())
        .collect();
    let mut ids: HashMap<String, u32> = HashMap::default();
    let counted: Vec<Vec<(u32, f32)>> = split
        .into_iter()
        .map(|terms| {
            let mut tf: HashMap<u32, f32> = HashMap::default();
            for t in terms {
                let next = ids.len() as u32;
                *tf.entry(*ids.entry(t).or_insert(next)).or_insert(0.0) += 1.0;
            }
            tf.into_iter().collect()
        })
        .collect();
    let mut sorted: Vec<(String, u32)> = ids.into_iter().collect();
    sorted.par_sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut row = vec![0u32; sorted.len()];
    sorted
        .iter()
        .enumerate()
        .for_each(|(r, (_, id))| row[*id as usize] = r as u32);
    let documents_tf: Vec<Vec<(u32, f32)>> = documents
        .par_iter()
        .map(|held| {
            let mut tf: HashMap<u32, f32> = HashMap::default();
            for &(term, count) in held.iter().flat_map(|&p| &counted[p]) {
                *tf.entry(row[term as usize]).or_insert(0.0) += count;
            }
            tf.into_iter().collect()
        })
        .collect();
    // Compressed rows: each term's document count, where its row starts, then the rows filled
    // in document order.
    let mut starts = vec![0u32; sorted.len() + 1];
    documents_tf
        .iter()
        .flatten()
        .for_each(|&(term, _)| starts[term as usize + 1] += 1);
    (1..starts.len()).for_each(|t| starts[t] += starts[t - 1]);
    let total = starts[sorted.len()] as usize;
    let (mut docs, mut tfs, mut next) = (vec![0u32; total], vec![0f32; total], starts.clone());
    let mut lengths = Vec::with_capacity(documents.len());
    for (doc, tf) in documents_tf.iter().enumerate() {
        lengths.push(tf.iter().map(|(_, count)| count).sum::<f32>());
        for &(term, count) in tf {
            let at = &mut next[term as usize];
            (docs[*at as usize], tfs[*at as usize]) = (doc as u32, count);
            *at += 1;
        }
    }
    let n = documents.len() as f32;
    let idf: Vec<f32> = starts
        .windows(2)
        .map(|w| {
            let df = (w[1] - w[0]) as f32;
            (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
        })
        .collect();
    let average = lengths.iter().sum::<f32>() / n.max(1.0);
    let mut term_starts = Vec::with_capacity(sorted.len() + 1);
    let mut term_bytes = Vec::new();
    for (term, _) in &sorted {
        term_starts.push(term_bytes.len() as u32);
        term_bytes.extend_from_slice(term.as_bytes());
    }
    term_starts.push(term_bytes.len() as u32);
    Ok(std::collections::HashMap::from([
        ("term_bytes".to_string(), vector(term_bytes)?),
        ("term_starts".to_string(), vector(term_starts)?),
        ("starts".to_string(), vector(starts)?),
        ("docs".to_string(), vector(docs)?),
        ("tf".to_string(), vector(tfs)?),
        ("idf".to_string(), vector(idf)?),
        ("lengths".to_string(), vector(lengths)?),
        ("average".to_string(), vector(vec![average])?),
    ]))
}

fn vector<T: candle_core::WithDType>(values: Vec<T>) -> Result<Tensor> {
    let n = values.len();
    Ok(Tensor::from_vec(values, n, &Device::Cpu)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An index of documents each made of its own texts, in a fresh folder.
    fn index(documents: &[Vec<&str>]) -> Bm25 {
        let own: Vec<Vec<usize>> = (0..documents.len()).map(|d| vec![d]).collect();
        Bm25::over_parts(documents, &own, tempfile::tempdir().unwrap().path()).unwrap()
    }

    #[test]
    fn words_fold_case_and_plurals() {
        assert_eq!(
            words("Bakeries, retail; GLASS shops"),
            ["bakery", "retail", "glass", "shop"]
        );
        assert_eq!(words("bus   census-2022"), ["bus", "census", "2022"]);
    }

    /// Against BM25 worked by hand (the same three documents as bench/bm25.py's test, words
    /// that form no pairs): idf(alpha) = ln(1 + 1.5 / 2.5), idf(gamma) = ln(1 + 2.5 / 1.5),
    /// raw scores 0.470004, 0.590862, 1.182370 for "alpha gamma", each divided by the best.
    #[test]
    fn scores_are_bm25_over_the_best() {
        let bm25 = index(&[vec!["alpha", "beta"], vec!["alpha"], vec!["gamma", "gamma", "delta"]]);
        let s = bm25.scores("Alpha gamma");
        let want = [0.470004 / 1.18237, 0.590862 / 1.18237, 1.0];
        for (got, want) in s.iter().zip(want) {
            assert!((got - want).abs() < 1e-5, "{s:?}");
        }
        // Pairs are read within a text only: "gamma delta" adds nothing (the third document's
        // words are three texts); "beta", in one document, lifts the first above the second.
        let s = bm25.scores("alpha beta");
        assert!(
            (s[1] - 0.590862 / (0.470004 + 0.980829)).abs() < 1e-5 && s[0] == 1.0,
            "{s:?}"
        );
        assert_eq!(bm25.scores("gamma delta"), bm25.scores("gamma; delta"));
        assert_eq!(bm25.scores("nothing shared"), vec![0.0, 0.0, 0.0]);
    }

    /// Documents of shared parts score as the same documents with their texts written out.
    #[test]
    fn shared_parts_score_as_their_texts() {
        let parts = [
            vec!["retail bakeries", "bread"],
            vec!["bakery cafes"],
            vec!["coffee shops", "bread"],
        ];
        let documents = [vec![0, 1], vec![0, 2], vec![2]];
        let written: Vec<Vec<&str>> = documents
            .iter()
            .map(|d| d.iter().flat_map(|&p| parts[p].iter().copied()).collect())
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let (shared, whole) = (
            Bm25::over_parts(&parts, &documents, dir.path()).unwrap(),
            index(&written),
        );
        for text in ["retail bakery", "bread and coffee", "bakery cafe bread", "tea"] {
            assert_eq!(shared.scores(text), whole.scores(text), "{text}");
        }
        // Read back from its file the second time (the one file), it scores the same; other
        // documents over the same parts get a file of their own.
        let again = Bm25::over_parts(&parts, &documents, dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert_eq!(again.scores("bakery cafe bread"), shared.scores("bakery cafe bread"));
        let other = Bm25::over_parts(&parts, &[vec![0], vec![1, 2]], dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        assert_ne!(other.scores("bakery cafe bread"), shared.scores("bakery cafe bread"));
    }
}
