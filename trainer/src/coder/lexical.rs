//! The word signal: Okapi BM25 between a text and each leaf's path document (the titles and
//! training entries of the leaf and its ancestors), over words and word pairs. Exact wording
//! carries over where the dense points blur it ("bakeries, retail" against "retail bakeries");
//! a hundred lines of our own instead of a search engine's dependency, since the corpus is a
//! few thousand to a few tens of thousands of short documents held in memory. (BM25 over leaf
//! paths replaced a TF-IDF cosine over each leaf's own texts: docs/benchmarks.md.)

use std::collections::HashMap;

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
    postings: HashMap<String, Vec<(u32, f32)>>,
    idf: HashMap<String, f32>,
    lengths: Vec<f32>,
    average: f32,
}

impl Bm25 {
    pub const K1: f32 = 1.2;
    pub const B: f32 = 0.75;

    pub fn new(documents: &[Vec<&str>]) -> Bm25 {
        let mut postings: HashMap<String, Vec<(u32, f32)>> = HashMap::new();
        let mut lengths = Vec::with_capacity(documents.len());
        for (doc, texts) in documents.iter().enumerate() {
            let mut tf: HashMap<String, f32> = HashMap::new();
            let mut length = 0.0;
            for t in texts.iter().flat_map(|t| terms(t)) {
                *tf.entry(t).or_insert(0.0) += 1.0;
                length += 1.0;
            }
            lengths.push(length);
            for (t, c) in tf {
                postings.entry(t).or_default().push((doc as u32, c));
            }
        }
        let n = documents.len() as f32;
        let idf = postings
            .iter()
            .map(|(t, p)| {
                let df = p.len() as f32;
                (t.clone(), (1.0 + (n - df + 0.5) / (df + 0.5)).ln())
            })
            .collect();
        let average = lengths.iter().sum::<f32>() / n.max(1.0);
        Bm25 {
            postings,
            idf,
            lengths,
            average,
        }
    }

    pub fn scores(&self, text: &str) -> Vec<f32> {
        let mut out = vec![0.0f32; self.lengths.len()];
        for t in terms(text) {
            let Some(postings) = self.postings.get(&t) else {
                continue;
            };
            let idf = self.idf[&t];
            for &(doc, tf) in postings {
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
}
