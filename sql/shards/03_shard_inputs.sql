-- `build-shards`: every anchor's candidate negatives, read once and grouped by (distance,
-- excluded) in memory; with `hardness_rules` this replaces the ~10^9-row triplets view.
SELECT idx_i, idx_j, distance, excluded FROM distances ORDER BY idx_i, idx_j
