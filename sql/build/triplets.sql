-- `triplets`, a view (about 10^9 rows; never stored unless asked for with
-- `naics-pipeline build --materialize-triplets`): every (anchor, positive, negative) with
-- (anchor, positive) a positive pair and d(anchor, negative) > d(anchor, positive).
-- That inequality already excludes negative = positive and negative = anchor.
CREATE VIEW triplets AS
SELECT *, {{hardness}} AS hardness
FROM (
    SELECT p.anchor_idx,
           p.anchor,
           p.positive_idx,
           p.positive,
           n.idx_j                    AS negative_idx,
           n.code_j                   AS negative,
           p.distance                 AS positive_distance,
           n.distance                 AS negative_distance,
           n.distance - p.distance    AS distance_diff,
           n.excluded,
           n.relation = 'unrelated'   AS unrelated
    FROM positives p
    JOIN distances n ON n.idx_i = p.anchor_idx
    WHERE n.distance > p.distance
)
