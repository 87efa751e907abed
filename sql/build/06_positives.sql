-- Stage 6, `positives`: every ordered (anchor, positive) pair of distinct codes under one root
-- (a view, not a table, on trees past `build --all-pairs-max-codes`).
SELECT d.idx_i   AS anchor_idx,
       d.code_i  AS anchor,
       a.level   AS anchor_level,
       d.idx_j   AS positive_idx,
       d.code_j  AS positive,
       p.level   AS positive_level,
       d.distance,
       d.relation
FROM distances d
JOIN naics_codes a ON a."index" = d.idx_i
JOIN naics_codes p ON p."index" = d.idx_j
WHERE d.relation <> 'unrelated'
ORDER BY anchor_idx, positive_idx
