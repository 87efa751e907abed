#!/usr/bin/env bash
# The main job on the embedded default (frozen MiniLM on CPU, conf/profile/cpu_default.yaml):
# fetch the model, run the pipeline on the Census files, write the shards of every curriculum
# stage, train them in order (`fit -c all`) and evaluate the last stage's best checkpoint
# (`eval`). Extra arguments are passed to fit as overrides.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/fetch_model.sh minilm
cargo build --locked --bins
pipeline=${CARGO_TARGET_DIR:-target}/debug/naics-pipeline
trainer=${CARGO_TARGET_DIR:-target}/debug/naics-trainer

"$pipeline" ingest
"$pipeline" build
"$pipeline" build-shards -c all profile=cpu_default
"$trainer" fit -c all profile=cpu_default "$@"
"$trainer" eval
