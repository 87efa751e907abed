#!/usr/bin/env bash
# The main job on the embedded default (MiniLM on CPU, its text adapters trained: conf/profile/cpu_default.yaml):
# fetch the model, run the pipeline on the Census files, write the shards of every curriculum
# stage, train them in order (`fit -c all`) and evaluate the last stage's best checkpoint
# (`eval`). Extra arguments are passed to fit as overrides.
#
#   scripts/main.sh [OVERRIDES...]            # NAICS 2022 (data/, conf/curriculum/*.yaml)
#   scripts/main.sh icd10cm [OVERRIDES...]    # ICD-10-CM (data/icd10cm/, conf/curriculum/icd10cm/,
#                                             #   conf/profile/cpu_icd10cm.yaml)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/fetch_model.sh minilm
cargo build --locked --bins
pipeline=${CARGO_TARGET_DIR:-target}/debug/naics-pipeline
trainer=${CARGO_TARGET_DIR:-target}/debug/naics-trainer

if [ "${1:-}" = icd10cm ]; then
  shift
  scripts/fetch_icd10cm.sh
  "$pipeline" --data data/icd10cm ingest --taxonomy icd10cm
  "$pipeline" --data data/icd10cm build
  "$pipeline" build-shards -c icd10cm/all data=icd10cm profile=cpu_icd10cm
  "$trainer" fit -c icd10cm/all data=icd10cm profile=cpu_icd10cm "$@"
  "$trainer" eval -c icd10cm_03_stage_hard
  exit
fi

"$pipeline" ingest
"$pipeline" build
"$pipeline" build-shards -c all profile=cpu_default
"$trainer" fit -c all profile=cpu_default "$@"
"$trainer" eval
