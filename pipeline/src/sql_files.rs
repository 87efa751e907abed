//! The pipeline's SQL, one file per stage under `sql/` at the repository root, compiled into the
//! binary so that it runs from anywhere. `{{hardness}}` in a file is replaced by the expression
//! in `sql/hardness.sql`, the one definition of hardness.

/// A table the `build` command computes and stores as `tables/{name}.parquet`, in this order.
pub struct Stage {
    pub name: &'static str,
    sql: &'static str,
}

pub const STAGES: [Stage; 5] = [
    Stage {
        name: "ancestors",
        sql: include_str!("../../sql/01_ancestors.sql"),
    },
    Stage {
        name: "exclusions",
        sql: include_str!("../../sql/02_exclusions.sql"),
    },
    Stage {
        name: "distances",
        sql: include_str!("../../sql/03_distances.sql"),
    },
    Stage {
        name: "positives",
        sql: include_str!("../../sql/04_positives.sql"),
    },
    Stage {
        name: "hardness_rules",
        sql: include_str!("../../sql/05_hardness_rules.sql"),
    },
];

const HARDNESS: &str = include_str!("../../sql/hardness.sql");
const TRIPLETS_VIEW: &str = include_str!("../../sql/triplets.sql");

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
