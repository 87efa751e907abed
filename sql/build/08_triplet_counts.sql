-- Stage 8, `triplet_counts`: the triplets of each hardness, counted without enumerating them:
-- `triplet_shapes` (stage 4) holds, per (positive distance, negative distance, excluded,
-- unrelated), the sum over anchors of positives x farther negatives, and hardness depends on
-- nothing else. The same figures as `SELECT hardness, count(*) FROM triplets GROUP BY hardness`.
SELECT hardness, sum(triplets) AS triplets
FROM (
    SELECT triplets, {{hardness}} AS hardness
    FROM (
        SELECT triplets, excluded, unrelated, negative_distance - positive_distance AS distance_diff
        FROM triplet_shapes
    )
)
GROUP BY hardness
ORDER BY hardness
