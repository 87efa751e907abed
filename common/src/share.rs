//! Deterministic shares of entries, the same on every machine: an entry (code, text) is in the
//! share when the first 8 bytes of sha256(salt, code, TAB, text), read as a big-endian integer,
//! are below fraction x 2^64. The held-out index entries (salt "") and the coder's validation
//! entries (salt [`VALIDATION_SALT`]) are drawn so, independently of each other.

use sha2::{Digest, Sha256};
use std::collections::HashSet;

/// The salt of the validation entries: training entries kept from training to fit and
/// calibrate the coder.
pub const VALIDATION_SALT: &str = "validation\t";

pub fn in_share(salt: &str, code: &str, text: &str, fraction: f64) -> bool {
    let digest = Sha256::new()
        .chain_update(salt)
        .chain_update(code)
        .chain_update("\t")
        .chain_update(text)
        .finalize();
    let draw = u64::from_be_bytes(digest[..8].try_into().expect("sha256 has 32 bytes"));
    (draw as f64) / 18_446_744_073_709_551_616.0 < fraction
}

/// The coder's validation entries and what training may read instead. A code's entries are its
/// own (the first `own`; inclusion terms, index entries) then its cross-references (ICD-10-CM's
/// phrases that cite the code from another code's notes). The validation entries are the own
/// entries in the share; training reads neither any entry in the share nor a cross-reference that
/// repeats a validation entry of any code, case ignored: 39 of ICD-10-CM's 574 validation entries
/// had such a twin, so the points and the entry index had read them and the fusion fitted on them
/// trusted both more than unseen text bears out. Ingest leaves out the twins of held-out texts
/// the same way.
pub struct Validation {
    share: f64,
    /// The validation entries' texts, lowercased.
    repeats: HashSet<String>,
}

/// How many of `entries` are the code's own: the last `cited` are cross-references.
fn own(entries: &[String], cited: usize) -> usize {
    entries.len() - cited.min(entries.len())
}

/// The validation entries of `code` (its own entries in the share), from its entries, the last
/// `cited` of them cross-references.
pub fn validation_entries<'a>(
    code: &'a str,
    entries: &'a [String],
    cited: usize,
    share: f64,
) -> impl Iterator<Item = &'a String> + 'a {
    entries[..own(entries, cited)]
        .iter()
        .filter(move |t| in_share(VALIDATION_SALT, code, t, share))
}

impl Validation {
    /// From every code's (code, entries, how many of them, at the end, are cross-references) and
    /// the share.
    pub fn new<'a>(share: f64, codes: impl IntoIterator<Item = (&'a str, &'a [String], usize)>) -> Validation {
        let repeats = codes
            .into_iter()
            .flat_map(|(code, entries, cited)| {
                validation_entries(code, entries, cited, share).map(|t| t.to_lowercase())
            })
            .collect();
        Validation { share, repeats }
    }

    /// Whether an entry of `code` is in the validation share.
    pub fn holds(&self, code: &str, text: &str) -> bool {
        in_share(VALIDATION_SALT, code, text, self.share)
    }

    /// The entries of `code` training may read, in order (see [`Validation`]); the last `cited`
    /// of `entries` are cross-references.
    pub fn training<'a>(
        &'a self,
        code: &'a str,
        entries: &'a [String],
        cited: usize,
    ) -> impl Iterator<Item = &'a String> + 'a {
        let own = own(entries, cited);
        entries
            .iter()
            .enumerate()
            .filter(move |&(i, t)| !self.holds(code, t) && (i < own || !self.repeats.contains(&t.to_lowercase())))
            .map(|(_, t)| t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Validation entries leave training, and so do the cross-references that repeat one of any
    /// code, whatever their case; an own entry equal to one stays (it is its code's own text).
    #[test]
    fn training_leaves_out_validation_entries_and_their_twins() {
        let share = 0.5;
        // Find texts in and out of the share for code "A", so the test does not hang on a draw.
        let texts: Vec<String> = (0..200).map(|i| format!("text {i}")).collect();
        let inside = texts
            .iter()
            .find(|t| in_share(VALIDATION_SALT, "A", t, share))
            .unwrap()
            .clone();
        let outside: Vec<String> = texts
            .iter()
            .filter(|t| !in_share(VALIDATION_SALT, "A", t, share) && !in_share(VALIDATION_SALT, "B", t, share))
            .take(2)
            .cloned()
            .collect();
        let codes_a = vec![outside[0].clone(), inside.clone()];
        // B: an own entry and a cross-reference equal to A's validation entry (upper case), and
        // a cross-reference that repeats nothing.
        let codes_b = vec![inside.to_uppercase(), inside.to_uppercase(), outside[1].clone()];
        let v = Validation::new(share, [("A", codes_a.as_slice(), 0), ("B", codes_b.as_slice(), 2)]);
        assert!(v.holds("A", &inside));
        let kept = |code, e: &[String], cited| v.training(code, e, cited).cloned().collect::<Vec<_>>();
        assert_eq!(kept("A", &codes_a, 0), [outside[0].clone()]);
        let b = kept("B", &codes_b, 2);
        let own_kept = !in_share(VALIDATION_SALT, "B", &inside.to_uppercase(), share);
        let expected: Vec<String> = [inside.to_uppercase()]
            .into_iter()
            .filter(|_| own_kept)
            .chain([outside[1].clone()])
            .collect();
        assert_eq!(b, expected, "the twin cross-reference is out, the other kept");
    }

    #[test]
    fn shares_are_deterministic_independent_and_near_their_fraction() {
        let entries: Vec<String> = (0..20_000).map(|i| format!("entry {i}")).collect();
        let held: Vec<bool> = entries.iter().map(|t| in_share("", "111110", t, 0.1)).collect();
        let val: Vec<bool> = entries
            .iter()
            .map(|t| in_share(VALIDATION_SALT, "111110", t, 0.1))
            .collect();
        let share = |v: &[bool]| v.iter().filter(|x| **x).count() as f64 / v.len() as f64;
        assert!((share(&held) - 0.1).abs() < 0.01 && (share(&val) - 0.1).abs() < 0.01);
        // Independent draws: about 1% in both.
        let both: Vec<bool> = held.iter().zip(&val).map(|(a, b)| *a && *b).collect();
        assert!((share(&both) - 0.01).abs() < 0.004, "{}", share(&both));
        assert!(!in_share("", "111110", "entry 0", 0.0));
        assert!(in_share("", "111110", "entry 0", 1.0));
        // The digest is sha256("111110\tentry 0") for the empty salt, as ingest always drew it.
        let digest = Sha256::digest(b"111110\tentry 0");
        let draw = u64::from_be_bytes(digest[..8].try_into().unwrap()) as f64 / 18_446_744_073_709_551_616.0;
        assert!(in_share("", "111110", "entry 0", draw + 1e-12));
        assert!(!in_share("", "111110", "entry 0", draw - 1e-12));
    }
}
