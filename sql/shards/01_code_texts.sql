-- `build-shards`: the four channels of every code, in Census order, for the token cache.
-- `shards::code_texts` joins the examples with "; " into one text, less the coder's validation
-- entries and the cross-references that repeat one (which no training input may hold), and so
-- needs each code and how many of its examples are cross-references (`cited_examples`, last).
SELECT "index", title, description, excluded, examples, code, cited_examples
FROM naics_codes
ORDER BY "index"
