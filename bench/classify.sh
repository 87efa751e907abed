#!/usr/bin/env bash
# `naics-trainer classify` throughput and memory on the embedded default (after scripts/main.sh):
# the 2,119 held-out index entries repeated to each size in $ROWS (default 20,000 and 100,000
# rows, CSV in, Parquet out), each run's rows/s, tokens/s and peak RSS; then the encoder's raw
# forward tokens/s (bench/encoder.sh, batch 32 x 128) in the same run for comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/trained.sh
for n in ${ROWS:-20000 100000}; do
  "$bin/naics-pipeline" sql --format csv -o "$work/in-$n.csv" \
    "SELECT row_number() OVER () AS id, h.text FROM naics_index_holdout h CROSS JOIN generate_series(1, $(( (n + 2118) / 2119 ))) LIMIT $n" >/dev/null
  echo "== $n rows"
  /usr/bin/time -f "peak RSS %M KiB, wall %e s" \
    "$bin/naics-trainer" classify --input "$work/in-$n.csv" --text-column text --id-column id \
      --output "$work/out-$n.parquet" 2>&1 | grep -v '^\s*$'
done
echo "== the encoder alone (forward, batch 32 x 128)"
bench/encoder.sh 2>&1 | grep -i forward | head -2
