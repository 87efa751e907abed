-- `build-shards`: the four channels of every code, in Census order, for the token cache.
-- Examples are joined with "; " into one text.
SELECT "index", title, description, excluded, array_to_string(examples, '; ') AS examples
FROM naics_codes
ORDER BY "index"
