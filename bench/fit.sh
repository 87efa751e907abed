#!/usr/bin/env bash
# Training throughput: `lora` steps/s against the padded-512 design (bench_fit), and the
# embedded CPU default (frozen MiniLM) over all three curriculum stages, wall time and peak RSS.
# Usage: bench/fit.sh [lora [anchors [overrides...]] | frozen [overrides...] | all]
#   bench/fit.sh lora 8 model=mpnet experiment=bench_mpnet   # MPNet, on shards of its tokenizer
# NAICS_MKL=1 builds with Intel MKL (`--features mkl`).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/features.sh
what=${1:-all}; shift || true
cargo build --locked --quiet "${FEATURES[@]}" --bins --examples
pipeline=${CARGO_TARGET_DIR:-target}/debug/naics-pipeline
trainer=${CARGO_TARGET_DIR:-target}/debug/naics-trainer
scripts/fetch_model.sh minilm >/dev/null
[ -f data/tables/positives.parquet ] || { "$pipeline" ingest && "$pipeline" build; } >/dev/null
if [ "$what" != frozen ]; then
  anchors=${1:-8}; shift || true
  # Shards of its own (all positives), so that the main job's shards stay as they were.
  set -- experiment=bench_lora "$@"
  "$pipeline" build-shards -c 03_stage_hard "$@" >/dev/null
  /usr/bin/time -f "peak RSS %M KiB" cargo run --locked --quiet "${FEATURES[@]}" -p naics-trainer --example bench_fit -- "$anchors" "$@"
fi
if [ "$what" != lora ]; then
  "$pipeline" build-shards -c all profile=cpu_default >/dev/null
  rm -rf data/shards/cache checkpoints/0*_stage_* outputs/0*_stage_*
  /usr/bin/time -f "frozen -c all (cache included): %e s, peak RSS %M KiB" "$trainer" fit -c all profile=cpu_default "$@"
fi
