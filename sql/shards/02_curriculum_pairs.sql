-- `build-shards`: the cells of (anchor, positive) pairs a curriculum stage trains on: per anchor,
-- the relations (up, down) its positives stand in. `{{filters}}` is replaced by the stage's
-- conditions (levels inclusive, distances strict), e.g. `TRUE AND positive_level IN (6) AND
-- distance < 2.0`; a depth relative to the leaves is filtered by the sampler (`curriculum.rs`).
-- The sampler lists each cell's codes from the tree (`groups.rs`), so no pair is stored. A cell
-- comes once or twice (its excluded and other codes), in no particular order: the sampler sorts
-- and deduplicates them (tens of millions of rows on a tree of millions of codes, cheaper there
-- than DISTINCT and ORDER BY).
SELECT anchor_idx, up, down, distance
FROM (
    SELECT anchor_idx, up, down, distance, anchor_level, level AS positive_level
    FROM anchor_groups
    WHERE relation <> 'unrelated'
)
WHERE {{filters}}
