-- Stage 1, `ancestors`: the code tree as (code, ancestor) pairs. Every code is its own ancestor
-- at generation 0; its parent at generation 1; ... up to its root (a NAICS sector).
WITH RECURSIVE ancestry(idx, code, ancestor, generations) AS (
    SELECT "index" AS idx, code, code AS ancestor, 0 AS generations FROM naics_codes
    UNION ALL
    SELECT a.idx, a.code, c.parent, a.generations + 1
    FROM ancestry a
    JOIN naics_codes c ON c.code = a.ancestor
    WHERE c.parent IS NOT NULL
)
SELECT a.idx,
       a.code,
       p."index"    AS ancestor_idx,
       a.ancestor,
       p.depth      AS ancestor_depth,
       a.generations
FROM ancestry a
JOIN naics_codes p ON p.code = a.ancestor
ORDER BY a.idx, a.generations
