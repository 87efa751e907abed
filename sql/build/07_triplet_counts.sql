-- Stage 7, `triplet_counts`: the triplets of each hardness, counted without enumerating them.
-- Per anchor, every group of positives (one distance, not unrelated) times every group of
-- farther negatives gives that many triplets of one hardness; the same figures as
-- `SELECT hardness, count(*) FROM triplets GROUP BY hardness`, from ~10^4 rows instead of ~10^9.
WITH g AS (
    SELECT anchor_idx, distance, excluded, relation = 'unrelated' AS unrelated, sum(codes) AS codes
    FROM anchor_groups
    GROUP BY anchor_idx, distance, excluded, relation = 'unrelated'
),
p AS (
    SELECT anchor_idx, distance, sum(codes) AS codes FROM g WHERE NOT unrelated GROUP BY anchor_idx, distance
)
SELECT hardness, sum(positives * negatives) AS triplets
FROM (
    SELECT positives, negatives, {{hardness}} AS hardness
    FROM (
        SELECT p.codes AS positives, n.codes AS negatives, n.excluded, n.unrelated, n.distance - p.distance AS distance_diff
        FROM p JOIN g n ON n.anchor_idx = p.anchor_idx AND n.distance > p.distance
    )
)
GROUP BY hardness
ORDER BY hardness
