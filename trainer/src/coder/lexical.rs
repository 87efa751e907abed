//! The word signal: Okapi BM25 between a text and each leaf's path document (the titles and
//! training entries of the leaf and its ancestors), over words and word pairs. Exact wording
//! carries over where the dense points blur it ("bakeries, retail" against "retail bakeries");
//! a hundred lines of our own instead of a search engine's dependency, since the corpus is a
//! few thousand to a few tens of thousands of short documents held in memory. (BM25 over leaf
//! paths replaced a TF-IDF cosine over each leaf's own texts: docs/benchmarks.md.)

use foldhash::HashMap;
use rayon::prelude::*;

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
pub struct Bm25 {
    /// Each term's id: the index of its postings and idf.
    ids: HashMap<String, u32>,
    /// Per term: (document, term frequency).
    postings: Vec<Vec<(u32, f32)>>,
    idf: Vec<f32>,
    lengths: Vec<f32>,
    average: f32,
}

impl Bm25 {
    pub const K1: f32 = 1.2;
    pub const B: f32 = 0.75;

    /// Each document its own texts.
    pub fn new(documents: &[Vec<&str>]) -> Bm25 {
        let own: Vec<Vec<usize>> = (0..documents.len()).map(|d| vec![d]).collect();
        Bm25::over_parts(documents, &own)
    }

    /// Documents made of shared parts (a leaf's path document: its own texts and each
    /// ancestor's): each part's texts are read once, however many documents hold it. On
    /// ICD-10-CM's 36,355 path documents, reading every document's texts took most of a
    /// `search`.
    /// Words are split on all cores; terms get their ids in one pass, in text order.
    pub fn over_parts(parts: &[Vec<&str>], documents: &[Vec<usize>]) -> Bm25 {
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
        let documents_tf: Vec<Vec<(u32, f32)>> = documents
            .par_iter()
            .map(|held| {
                let mut tf: HashMap<u32, f32> = HashMap::default();
                for &(term, count) in held.iter().flat_map(|&p| &counted[p]) {
                    *tf.entry(term).or_insert(0.0) += count;
                }
                tf.into_iter().collect()
            })
            .collect();
        let mut postings: Vec<Vec<(u32, f32)>> = vec![Vec::new(); ids.len()];
        let mut lengths = Vec::with_capacity(documents.len());
        for (doc, tf) in documents_tf.into_iter().enumerate() {
            lengths.push(tf.iter().map(|(_, count)| count).sum());
            for (term, count) in tf {
                postings[term as usize].push((doc as u32, count));
            }
        }
        let n = documents.len() as f32;
        let idf = postings
            .iter()
            .map(|p| {
                let df = p.len() as f32;
                (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
            })
            .collect();
        let average = lengths.iter().sum::<f32>() / n.max(1.0);
        Bm25 {
            ids,
            postings,
            idf,
            lengths,
            average,
        }
    }

    pub fn scores(&self, text: &str) -> Vec<f32> {
        let mut out = vec![0.0f32; self.lengths.len()];
        for t in terms(text) {
            let Some(&id) = self.ids.get(&t) else {
                continue;
            };
            let idf = self.idf[id as usize];
            for &(doc, tf) in &self.postings[id as usize] {
                let norm = Self::K1 * (1.0 - Self::B + Self::B * self.lengths[doc as usize] / self.average);
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let bm25 = Bm25::new(&[vec!["alpha", "beta"], vec!["alpha"], vec!["gamma", "gamma", "delta"]]);
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
        let (shared, whole) = (Bm25::over_parts(&parts, &documents), Bm25::new(&written));
        for text in ["retail bakery", "bread and coffee", "bakery cafe bread", "tea"] {
            assert_eq!(shared.scores(text), whole.scores(text), "{text}");
        }
    }
}
