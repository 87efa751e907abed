//! Deterministic shares of entries, the same on every machine: an entry (code, text) is in the
//! share when the first 8 bytes of sha256(salt, code, TAB, text), read as a big-endian integer,
//! are below fraction x 2^64. The held-out index entries (salt "") and the coder's validation
//! entries (salt [`VALIDATION_SALT`]) are drawn so, independently of each other.

use sha2::{Digest, Sha256};

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

#[cfg(test)]
mod tests {
    use super::*;

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
