//! The pipeline's SQL, every file of `sql/` at the repository root compiled into the binary here
//! (so that it runs from anywhere), in two numbered sets: `sql/build/` the stages of `build`, in
//! order, with the `triplets` view; `sql/shards/` the queries of `build-shards`, in the order it
//! runs them. `{{hardness}}` in a file is replaced by the expression in `sql/build/hardness.sql`,
//! the one definition of hardness.

/// A table the `build` command computes and stores as `tables/{name}.parquet`, in this order.
pub struct Stage {
    pub name: &'static str,
    sql: &'static str,
}

pub const STAGES: [Stage; 5] = [
    Stage {
        name: "ancestors",
        sql: include_str!("../../sql/build/01_ancestors.sql"),
    },
    Stage {
        name: "exclusions",
        sql: include_str!("../../sql/build/02_exclusions.sql"),
    },
    Stage {
        name: "distances",
        sql: include_str!("../../sql/build/03_distances.sql"),
    },
    Stage {
        name: "positives",
        sql: include_str!("../../sql/build/04_positives.sql"),
    },
    Stage {
        name: "hardness_rules",
        sql: include_str!("../../sql/build/05_hardness_rules.sql"),
    },
];

const HARDNESS: &str = include_str!("../../sql/build/hardness.sql");
const TRIPLETS_VIEW: &str = include_str!("../../sql/build/triplets.sql");

/// `build-shards`: the four channel texts of every code, for the token cache.
pub const CODE_TEXTS: &str = include_str!("../../sql/shards/01_code_texts.sql");
/// `build-shards`: a stage's (anchor, positive) pairs; `{{filters}}` is its WHERE clause.
pub const CURRICULUM_PAIRS: &str = include_str!("../../sql/shards/02_curriculum_pairs.sql");
/// `build-shards`: every anchor's candidate negatives.
pub const SHARD_INPUTS: &str = include_str!("../../sql/shards/03_shard_inputs.sql");

impl Stage {
    pub fn query(&self) -> String {
        expand(self.sql)
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
