-- `build-shards`: the four channels of every code, in Census order, for the token cache.
-- `shards::code_texts` joins the examples with "; " into one text, less the coder's validation
-- entries (which no training input may hold), and so needs each code.
SELECT "index", title, description, excluded, examples, code
FROM naics_codes
ORDER BY "index"
