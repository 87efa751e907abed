#!/usr/bin/env bash
# The main job on the embedded default: fetch the small model, run the pipeline on the Census
# files, and write the training shards of the three curriculum stages.
# (The trainer's fit and eval steps join here as naics-trainer lands; see the README's status.)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/fetch_model.sh minilm
cargo build --locked --bin naics-pipeline
bin=${CARGO_TARGET_DIR:-target}/debug/naics-pipeline

"$bin" ingest
"$bin" build
for stage in 01_stage_easy 02_stage_medium 03_stage_hard; do
  "$bin" build-shards -c "$stage" "$@"
done
"$bin" sql "SELECT hardness, count(*) AS triplets FROM triplets GROUP BY 1 ORDER BY 1"
