-- Stage 7, `hardness_rules`: the hardness of every combination of positive distance, negative
-- distance and exclusion that occurs. Since hardness depends on nothing else, the negative
-- sampler reads its buckets from this small table instead of from the ~10^9 triplets. Read from
-- `anchor_groups`, which holds every distance and exclusion flag `distances` holds, per anchor.
WITH p AS (
    SELECT DISTINCT distance AS positive_distance FROM anchor_groups WHERE relation <> 'unrelated'
),
n AS (
    SELECT DISTINCT distance AS negative_distance, excluded, relation = 'unrelated' AS unrelated
    FROM anchor_groups
)
SELECT *, {{hardness}} AS hardness
FROM (
    SELECT positive_distance,
           negative_distance,
           negative_distance - positive_distance AS distance_diff,
           excluded,
           unrelated
    FROM p CROSS JOIN n
    WHERE negative_distance > positive_distance
)
ORDER BY positive_distance, negative_distance, excluded
