#!/usr/bin/env bash
# `search` on a synthetic tree (issue 27: one search <= 1 s once cached, on 200,000 codes with
# entries): `naics-pipeline synth` with $CODES codes (default 200000), one index entry per leaf
# (its title's words reordered, with a word of its parent's title), trained briefly (the easy
# stage, one positive per anchor, one epoch: what is measured is the search, not the model).
# Steps whose outputs exist are skipped, so a second run measures the searches alone. Prints
# each step's wall time and peak RSS, the first search (which makes the coder's caches), then
# five warm ones.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked --quiet --bins
bin=${CARGO_TARGET_DIR:-target}/debug
codes=${CODES:-200000}
name=synth$((codes / 1000))k
data=data/trees/$name
experiment=${name}_01_stage_easy
set -- "data.dir=$data" "data.shards_dir=$data/shards" "data.name=$name" profile=cpu_default \
  curriculum.max_positives=1 training.trainer.max_epochs=1
timed() { /usr/bin/time -f "$1: %e s, peak RSS %M KiB" "${@:2}"; }
if [ ! -f "$data/tables/.done" ]; then
  timed synth "$bin/naics-pipeline" synth --codes "$codes" --data "$data/input"
  "$bin/naics-pipeline" --data "$data" ingest --taxonomy generic --input "$data/input/synthetic.parquet"
  "$bin/naics-pipeline" --data "$data" sql --format csv -o "$data/input/entries.csv" \
    "SELECT c.code, concat_ws(' ', split_part(c.title, ' ', 2), split_part(c.title, ' ', 1),
       split_part(p.title, ' ', 1), split_part(c.title, ' ', 3)) AS text
     FROM naics_codes c JOIN naics_codes p ON c.parent = p.code
     WHERE c.code NOT IN (SELECT DISTINCT parent FROM naics_codes WHERE parent IS NOT NULL)
     ORDER BY c.code" >/dev/null
  timed ingest "$bin/naics-pipeline" --data "$data" ingest --taxonomy generic \
    --input "$data/input/synthetic.parquet" --entries "$data/input/entries.csv"
  timed build "$bin/naics-pipeline" --data "$data" build
  touch "$data/tables/.done"
fi
[ -d "$data/shards/$experiment" ] || timed build-shards "$bin/naics-pipeline" build-shards -c 01_stage_easy "$@"
[ -f "checkpoints/$experiment/index.json" ] || timed fit "$bin/naics-trainer" fit -c 01_stage_easy "$@" 2>&1 | grep -v '^encoded'
timed "first search" "$bin/naics-trainer" search -c "$experiment" "printing plastics lumber" >/dev/null
for q in "printing plastics lumber" "dairy insurance repair" "fishing mill" "freight wholesale pharmacy" "mining printing"; do
  timed "search '$q'" "$bin/naics-trainer" search -c "$experiment" "$q" >/dev/null
done
