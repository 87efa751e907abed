#!/usr/bin/env bash
# The main job on the embedded default (frozen MiniLM on CPU, scripts/cpu_default.sh): fetch the
# model, run the pipeline on the Census files, write the shards of the three curriculum stages,
# train them in order (`fit -c all`) and evaluate the last stage's best checkpoint (`eval`).
# Extra arguments are passed to fit as overrides.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/cpu_default.sh

scripts/fetch_model.sh minilm
cargo build --locked --bins
pipeline=${CARGO_TARGET_DIR:-target}/debug/naics-pipeline
trainer=${CARGO_TARGET_DIR:-target}/debug/naics-trainer

"$pipeline" ingest
"$pipeline" build
for stage in 01_stage_easy 02_stage_medium 03_stage_hard; do
  "$pipeline" build-shards -c "$stage" "${SHARD_OVERRIDES[@]}"
done
"$trainer" fit -c all "${FIT_OVERRIDES[@]}" "$@"
"$trainer" eval -c 03_stage_hard
