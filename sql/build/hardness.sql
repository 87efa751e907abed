-- The hardness of a negative, 1 (easiest) to 8 (hardest). An expression, not a stage: the
-- pipeline pastes it wherever `{{hardness}}` appears, over the columns excluded, unrelated and
-- distance_diff (= d(anchor, negative) - d(anchor, positive)).
CAST(CASE WHEN excluded THEN 8
          WHEN unrelated THEN 1
          WHEN distance_diff <= 0.5 THEN 7
          WHEN distance_diff <= 1.0 THEN 6
          WHEN distance_diff <= 2.0 THEN 5
          WHEN distance_diff <= 3.0 THEN 4
          WHEN distance_diff <= 4.0 THEN 3
          ELSE 2
     END AS INT)
