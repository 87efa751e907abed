//! The pipeline's SQL, every file of `sql/` at the repository root compiled into the binary here
//! (so that it runs from anywhere), in two numbered sets: `sql/build/` the stages of `build`, in
//! order (stages 1, 3 and 4, `ancestors`, `anchor_groups` and `triplet_shapes`, are computed
//! from the tree instead),
//! with the `triplets` view; `sql/shards/` the queries of `build-shards`, in the order it
//! runs them. `{{hardness}}` in a file is replaced by the expression in `sql/build/hardness.sql`,
//! the one definition of hardness.

/// A table the `build` command computes and stores as `tables/{name}.parquet`, in this order.
pub struct Stage {
    pub name: &'static str,
    pub source: Source,
    /// Holds a row per pair of codes: on trees past `build --all-pairs-max-codes` it is not
    /// stored but registered as a view, for queries that filter by code.
    pub all_pairs: bool,
}

pub enum Source {
    Sql(&'static str),
    /// Every code's path to its root, written from the pre-order tree ([`crate::relations`]): a
    /// recursive SQL query would hold every row in memory at once (it cannot spill).
    Paths,
    /// Computed by [`crate::groups`] from the pre-order tree (no SQL could do it without pairs).
    Groups,
    /// Summed while `anchor_groups` is written: per anchor, positives x farther negatives.
    Shapes,
}

pub const STAGES: [Stage; 8] = [
    Stage {
        name: "ancestors",
        source: Source::Paths,
        all_pairs: false,
    },
    Stage {
        name: "exclusions",
        source: Source::Sql(include_str!("../../sql/build/02_exclusions.sql")),
        all_pairs: false,
    },
    Stage {
        name: "anchor_groups",
        source: Source::Groups,
        all_pairs: false,
    },
    Stage {
        name: "triplet_shapes",
        source: Source::Shapes,
        all_pairs: false,
    },
    Stage {
        name: "distances",
        source: Source::Sql(include_str!("../../sql/build/05_distances.sql")),
        all_pairs: true,
    },
    Stage {
        name: "positives",
        source: Source::Sql(include_str!("../../sql/build/06_positives.sql")),
        all_pairs: true,
    },
    Stage {
        name: "hardness_rules",
        source: Source::Sql(include_str!("../../sql/build/07_hardness_rules.sql")),
        all_pairs: false,
    },
    Stage {
        name: "triplet_counts",
        source: Source::Sql(include_str!("../../sql/build/08_triplet_counts.sql")),
        all_pairs: false,
    },
];

const HARDNESS: &str = include_str!("../../sql/build/hardness.sql");
const TRIPLETS_VIEW: &str = include_str!("../../sql/build/triplets.sql");

/// `build-shards`: the four channel texts of every code, for the token cache.
pub const CODE_TEXTS: &str = include_str!("../../sql/shards/01_code_texts.sql");
/// `build-shards`: a stage's cells of (anchor, positive) pairs; `{{filters}}` is its WHERE clause.
pub const CURRICULUM_PAIRS: &str = include_str!("../../sql/shards/02_curriculum_pairs.sql");

impl Stage {
    /// The stage's SQL with its placeholders filled; `unrelated` is the distance between codes
    /// under different roots ([`crate::tree::Tree::unrelated_distance`]).
    pub fn query(&self, unrelated: f64) -> Option<String> {
        match self.source {
            Source::Sql(sql) => Some(expand(sql).replace("{{unrelated}}", &format!("{unrelated:?}"))),
            Source::Paths | Source::Groups | Source::Shapes => None,
        }
    }
}

/// `CREATE VIEW triplets AS ...`.
pub fn triplets_view() -> String {
    expand(TRIPLETS_VIEW)
}

fn expand(sql: &str) -> String {
    let expression: String = HARDNESS
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    sql.replace("{{hardness}}", expression.trim())
}

#[cfg(test)]
mod tests {
    #[test]
    fn hardness_is_pasted_without_its_comments() {
        let view = super::triplets_view();
        assert!(!view.contains("{{hardness}}"));
        assert!(view.contains("WHEN excluded THEN 8"));
        assert!(!view.contains("An expression, not a stage"));
    }
}
