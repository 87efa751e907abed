-- `build-shards`: the (anchor, positive) pairs a curriculum stage trains on. `{{filters}}` is
-- replaced by the stage's conditions (levels inclusive, distances strict), e.g.
-- `positive_level IN (6) AND distance < 2.0`.
SELECT anchor_idx, positive_idx, distance
FROM positives
WHERE {{filters}}
ORDER BY anchor_idx, positive_idx
