#!/usr/bin/env bash
# The Python package against the command line on the same texts (after scripts/main.sh): the
# 2,119 held-out index entries repeated to $ROWS (default 20,000), coded by
# `naics-trainer classify` (Parquet in and out) and by `naics_embed.Coder.classify` on a pandas
# Series, both on the last stage's best checkpoint; each one's rows/s and the ratio. The package
# is built into a virtual environment kept in ${NAICS_PY_VENV:-~/.cache/naics/py-venv}.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/trained.sh
venv=${NAICS_PY_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/naics/py-venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet "./python[test]"
n=${ROWS:-20000}
"$bin/naics-pipeline" sql --format parquet -o "$work/in.parquet" \
  "SELECT h.text FROM naics_index_holdout h CROSS JOIN generate_series(1, $(( (n + 2118) / 2119 ))) LIMIT $n" >/dev/null
echo "== $n rows"
cli=$("$bin/naics-trainer" classify --input "$work/in.parquet" --text-column text --output "$work/out.parquet" |
  sed -n 's/.*(\([0-9]*\) rows\/s.*/\1/p')
echo "command line: $cli rows/s"
"$venv/bin/python" - "$work/in.parquet" "$cli" <<'PY'
import sys, time
import pyarrow.parquet as pq
import naics_embed

texts = pq.read_table(sys.argv[1]).column("text").to_pandas()
coder = naics_embed.Coder.load()
started = time.perf_counter()
table = coder.classify(texts)
rate = len(texts) / (time.perf_counter() - started)
assert table.num_rows == len(texts) and table.column("error").null_count == len(texts)
print(f"python (pandas Series in, pyarrow Table out): {rate:.0f} rows/s, {rate / float(sys.argv[2]):.2f}x the command line")
PY
