//! The tree distance, defined once for both programs (and once in SQL, `sql/build/05_distances.sql`,
//! which `tests/pipeline_full.rs` and the pipeline's tests hold it to): the pipeline groups codes
//! by it, the trainer's tree term and metrics use it.

/// Distance from (up, down), the generations from one code up to the lowest common ancestor and
/// down to the other: up + down, less 0.5 when one code is an ancestor of the other.
pub fn distance(up: u8, down: u8) -> f64 {
    let d = (up + down) as f64;
    if up == 0 || down == 0 { d - 0.5 } else { d }
}

/// A distance in half units (every tree distance is a multiple of 0.5), for keys and tables.
pub fn half_units(distance: f64) -> u32 {
    (distance * 2.0).round() as u32
}

/// The distance between codes under different roots: 2 (max depth + 1), one step past the
/// longest path under one root (10 for NAICS, whose deepest codes are at depth 4).
pub fn unrelated(max_depth: u8) -> f64 {
    2.0 * (max_depth as f64 + 1.0)
}
