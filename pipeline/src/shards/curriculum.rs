//! What a curriculum stage selects of the tree: the SQL conditions on its (anchor, positive)
//! cells, and the positives' depth relative to the tree's leaves, so that one curriculum fits
//! trees whose levels mean different things (NAICS's digits, ICD-10-CM's depths).

use crate::tree::Tree;
use naics_common::config::CurriculumConfig;

/// At most this share of the leaves may lie above the leaf band: a few shallow leaves (ICD-10-CM
/// has 290 leaf categories and sections among 36,355 leaves) do not pull the band up to them.
const SHALLOW_LEAVES: f64 = 0.05;

/// The WHERE clause of `sql/shards/02_curriculum_pairs.sql`: absolute levels and distances.
pub fn sql_filters(cur: &CurriculumConfig) -> String {
    let list = |levels: &[u8]| levels.iter().map(u8::to_string).collect::<Vec<_>>().join(", ");
    let mut filters = vec!["TRUE".to_string()];
    if let Some(levels) = &cur.positive_levels {
        filters.push(format!("positive_level IN ({})", list(levels)));
    }
    if let Some(levels) = &cur.anchor_levels {
        filters.push(format!("anchor_level IN ({})", list(levels)));
    }
    if let Some(min) = cur.positive_distance_min {
        filters.push(format!("distance > {min:?}"));
    }
    if let Some(max) = cur.positive_distance_max {
        filters.push(format!("distance < {max:?}"));
    }
    filters.join(" AND ")
}

/// The top of the tree's leaf band: the deepest depth with at most 5% of the leaves above it.
pub fn leaf_band(tree: &Tree) -> u8 {
    let mut leaves_at = vec![0usize; tree.max_depth() as usize + 1];
    for i in 0..tree.len() {
        if tree.end[i] == i as u32 + 1 {
            leaves_at[tree.depth[i] as usize] += 1;
        }
    }
    let allowed = (leaves_at.iter().sum::<usize>() as f64 * SHALLOW_LEAVES).floor() as usize;
    let mut above = 0;
    let mut band = 0;
    for (depth, count) in leaves_at.iter().enumerate() {
        if above > allowed {
            break;
        }
        band = depth as u8;
        above += count;
    }
    band
}

/// The shallowest depth a stage's positives may have (0: any), from
/// `positive_levels_above_leaves`.
pub fn min_positive_depth(cur: &CurriculumConfig, tree: &Tree) -> u8 {
    cur.positive_levels_above_leaves
        .map_or(0, |above| leaf_band(tree).saturating_sub(above))
}

/// The depth of the positives of `anchor`'s cell (`up` generations to the common ancestor,
/// then `down`).
pub fn positive_depth(tree: &Tree, anchor: u32, up: u8, down: u8) -> u8 {
    tree.depth[anchor as usize] + down - up
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(parents: &[Option<u32>]) -> Tree {
        Tree::from_parents(parents.to_vec()).unwrap()
    }

    #[test]
    fn the_leaf_band_of_hand_made_trees() {
        // All leaves at depth 2 (NAICS-like): the band is depth 2.
        let even = tree(&[None, Some(0), Some(1), Some(1), Some(0), Some(4)]);
        assert_eq!(leaf_band(&even), 2);
        // A leaf at depth 1 among three leaves at depth 2: a third of the leaves, so the band
        // reaches depth 1.
        let mixed = tree(&[None, Some(0), Some(0), Some(2), Some(2), Some(2)]);
        assert_eq!(leaf_band(&mixed), 1);
        // One shallow leaf among 40 deep ones (2.4%) stays above the band.
        let mut parents = vec![None, Some(0)];
        parents.extend(std::iter::repeat_n(Some(1), 40));
        parents.push(Some(0));
        let few_shallow = tree(&parents);
        assert_eq!(leaf_band(&few_shallow), 2);
        assert_eq!(leaf_band(&tree(&[None])), 0);
    }

    #[test]
    fn relative_filters_count_levels_up_from_the_band() {
        let t = tree(&[None, Some(0), Some(1), Some(2), Some(2), Some(1), Some(5)]);
        let mut cur: CurriculumConfig = serde_yaml::from_str(
            "{positive_levels_above_leaves: 0, anchor_levels: null, positive_distance_min: null, \
             positive_distance_max: null, max_positives: null, difficulty_buckets: [1], \
             bucket_percentages: [1.0], k_negatives: 1, sampled_epochs: 1}",
        )
        .unwrap();
        assert_eq!(min_positive_depth(&cur, &t), 3);
        cur.positive_levels_above_leaves = Some(1);
        assert_eq!(min_positive_depth(&cur, &t), 2);
        cur.positive_levels_above_leaves = Some(9);
        assert_eq!(min_positive_depth(&cur, &t), 0);
        cur.positive_levels_above_leaves = None;
        assert_eq!(min_positive_depth(&cur, &t), 0);
        assert_eq!(sql_filters(&cur), "TRUE");
        // Code 3 (depth 3) from code 6 (depth 3): up 2 to code 1, down 2.
        assert_eq!(positive_depth(&t, 6, 2, 2), 3);
        assert_eq!(positive_depth(&t, 3, 3, 0), 0);
    }
}
