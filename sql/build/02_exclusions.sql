-- Stage 2, `exclusions`: (code, excluded_code) as listed in each code's exclusion text.
-- Directed, as written; the hardness relation uses it in both directions (see 03_distances.sql).
WITH listed AS (
    SELECT code, unnest(excluded_codes) AS excluded_code FROM naics_codes
)
SELECT a."index" AS idx,
       l.code,
       b."index" AS excluded_idx,
       l.excluded_code
FROM listed l
JOIN naics_codes a ON a.code = l.code
JOIN naics_codes b ON b.code = l.excluded_code
ORDER BY idx, excluded_idx
