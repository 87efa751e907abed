//! A lexical score: TF-IDF cosine between a text and each code's bag of texts (its title and
//! training entries), over words and word pairs. Exact wording carries over where the dense
//! points blur it ("bakeries, retail" against "retail bakeries"); a few hundred lines of our own
//! instead of a search engine's dependency, since the corpus is a few thousand short documents
//! held in memory.

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

/// TF-IDF vectors of the documents, L2-normalized, with an inverted index for scoring.
pub struct Lexical {
    /// term -> (document, weight) of every document holding it.
    postings: HashMap<String, Vec<(u32, f32)>>,
    idf: HashMap<String, f32>,
    documents: usize,
}

impl Lexical {
    /// One document per entry of `documents`, each the concatenation of its texts.
    pub fn new(documents: &[Vec<&str>]) -> Lexical {
        let counts: Vec<HashMap<String, f32>> = documents
            .iter()
            .map(|texts| {
                let mut tf = HashMap::new();
                for t in texts.iter().flat_map(|t| terms(t)) {
                    *tf.entry(t).or_insert(0.0) += 1.0;
                }
                tf
            })
            .collect();
        let mut df: HashMap<String, f32> = HashMap::new();
        for tf in &counts {
            for t in tf.keys() {
                *df.entry(t.clone()).or_insert(0.0) += 1.0;
            }
        }
        let n = documents.len() as f32;
        let idf: HashMap<String, f32> = df.into_iter().map(|(t, d)| (t, (n / d).ln() + 1.0)).collect();
        let mut postings: HashMap<String, Vec<(u32, f32)>> = HashMap::new();
        for (doc, tf) in counts.into_iter().enumerate() {
            let weights: Vec<(String, f32)> = tf
                .into_iter()
                .map(|(t, c)| {
                    let w = (1.0 + c.ln()) * idf[&t];
                    (t, w)
                })
                .collect();
            let norm = weights.iter().map(|(_, w)| w * w).sum::<f32>().sqrt().max(1e-12);
            for (t, w) in weights {
                postings.entry(t).or_default().push((doc as u32, w / norm));
            }
        }
        Lexical {
            postings,
            idf,
            documents: documents.len(),
        }
    }

    /// Cosine of `text`'s TF-IDF vector with every document's (0 where they share no term).
    pub fn scores(&self, text: &str) -> Vec<f32> {
        let mut tf: HashMap<String, f32> = HashMap::new();
        for t in terms(text) {
            if self.idf.contains_key(&t) {
                *tf.entry(t).or_insert(0.0) += 1.0;
            }
        }
        let weights: Vec<(&String, f32)> = tf.iter().map(|(t, c)| (t, (1.0 + c.ln()) * self.idf[t])).collect();
        let norm = weights.iter().map(|(_, w)| w * w).sum::<f32>().sqrt();
        let mut out = vec![0.0; self.documents];
        if norm == 0.0 {
            return out;
        }
        for (t, w) in weights {
            for &(doc, dw) in &self.postings[t] {
                out[doc as usize] += w / norm * dw;
            }
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

    /// Against cosines computed by hand: two documents, idf = ln(2 / df) + 1.
    #[test]
    fn scores_are_tf_idf_cosines() {
        let lex = Lexical::new(&[vec!["retail bakery"], vec!["bakery wholesale"]]);
        let idf1 = 2f32.ln() + 1.0; // retail, wholesale, and each pair: in one document
        // Document 0: retail (idf1), bakery (1), "retail bakery" (idf1).
        let norm0 = (2.0 * idf1 * idf1 + 1.0f32).sqrt();
        // The query "retail" shares one term with document 0, none with document 1.
        let s = lex.scores("Retail");
        assert!((s[0] - idf1 / norm0).abs() < 1e-6, "{s:?}");
        assert_eq!(s[1], 0.0);
        // "bakery": one term in both, weight 1; each document's cosine is 1 / its norm.
        let s = lex.scores("bakeries");
        assert!(
            (s[0] - 1.0 / norm0).abs() < 1e-6 && (s[1] - 1.0 / norm0).abs() < 1e-6,
            "{s:?}"
        );
        // Identical text: cosine 1.
        assert!((lex.scores("retail bakery")[0] - 1.0).abs() < 1e-6);
        assert_eq!(lex.scores("nothing shared"), vec![0.0, 0.0]);
    }
}
