-- Stage 5, `distances`: every ordered pair of distinct codes (2,125 x 2,124 rows for NAICS; a
-- view, not a table, on trees past `build --all-pairs-max-codes`).
--   up   = depth_i - depth_lca, down = depth_j - depth_lca (depth 0 at the roots)
--   distance = up + down, minus 0.5 when one code is an ancestor of the other;
--   {{unrelated}} ("unrelated": 2 x (max depth + 1), 10 for NAICS) when the codes share no
--   ancestor, i.e. lie under different roots (NAICS sectors).
--   relation names j as seen from i: parent, grandparent, ancestor; child, grandchild,
--   descendant; sibling; sibling_descendant (up 1, down >= 2: a niece or nephew and below);
--   ancestor_sibling (up >= 2, down 1: an aunt or uncle and above); cousin (up = down >= 2);
--   cousin_removed (any other up != down, both >= 2); unrelated.
--   excluded: j is in i's exclusion list or i in j's (symmetric).
WITH lca AS (
    SELECT a.idx AS idx_i, b.idx AS idx_j, max(a.ancestor_depth) AS lca_depth
    FROM ancestors a
    JOIN ancestors b ON a.ancestor_idx = b.ancestor_idx
    WHERE a.idx <> b.idx
    GROUP BY a.idx, b.idx
),
excluded_pairs AS (
    SELECT idx AS idx_i, excluded_idx AS idx_j FROM exclusions
    UNION
    SELECT excluded_idx, idx FROM exclusions
),
pairs AS (
    SELECT i."index" AS idx_i,
           j."index" AS idx_j,
           i.code    AS code_i,
           j.code    AS code_j,
           i.depth - l.lca_depth AS up,
           j.depth - l.lca_depth AS down,
           e.idx_i IS NOT NULL AS excluded
    FROM naics_codes i
    JOIN naics_codes j ON i."index" <> j."index"
    LEFT JOIN lca l ON l.idx_i = i."index" AND l.idx_j = j."index"
    LEFT JOIN excluded_pairs e ON e.idx_i = i."index" AND e.idx_j = j."index"
)
SELECT idx_i,
       idx_j,
       code_i,
       code_j,
       CASE WHEN up IS NULL THEN {{unrelated}}
            WHEN up = 0 OR down = 0 THEN CAST(up + down AS DOUBLE) - 0.5
            ELSE CAST(up + down AS DOUBLE)
       END AS distance,
       CASE WHEN up IS NULL THEN 'unrelated'
            WHEN down = 0 AND up = 1 THEN 'parent'
            WHEN down = 0 AND up = 2 THEN 'grandparent'
            WHEN down = 0 THEN 'ancestor'
            WHEN up = 0 AND down = 1 THEN 'child'
            WHEN up = 0 AND down = 2 THEN 'grandchild'
            WHEN up = 0 THEN 'descendant'
            WHEN up = 1 AND down = 1 THEN 'sibling'
            WHEN up = 1 THEN 'sibling_descendant'
            WHEN down = 1 THEN 'ancestor_sibling'
            WHEN up = down THEN 'cousin'
            ELSE 'cousin_removed'
       END AS relation,
       excluded
FROM pairs
ORDER BY idx_i, idx_j
