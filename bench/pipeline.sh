#!/usr/bin/env bash
# The pipeline's speed and memory figures: wall seconds and peak RSS of each command, on the real
# Census data, in a scratch data folder. Usage: bench/pipeline.sh [--materialize]
# (materializing the ~10^9 triplets writes several GB and takes minutes: opt-in).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked --quiet --bin naics-pipeline
bin=${CARGO_TARGET_DIR:-target}/debug/naics-pipeline
scripts/fetch_model.sh minilm >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/data" && cp -r data/naics2022 "$work/data/"
cp -r data/models "$work/data/" 2>/dev/null || true

measure() {
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" >"$work/out" 2>&1 || { cat "$work/out"; exit 1; }
  read -r secs kib <"$work/time"
  printf "%-48s %8.2f s %8d MiB   [%s]\n" "$label" "$secs" $((kib / 1024)) "$(tail -n 1 "$work/out" | cut -c1-60)"
}

echo "naics-pipeline benchmarks ($(nproc) cores, $(date -u +%Y-%m-%d))"
measure "ingest (4 Census files)" "$bin" --data "$work/data" ingest
measure "build (5 SQL stages)" "$bin" --data "$work/data" build
measure "ingest && build" bash -c "'$bin' --data '$work/data' ingest && '$bin' --data '$work/data' build"
measure "SELECT hardness, count(*) FROM triplets" "$bin" --data "$work/data" sql \
  "SELECT hardness, count(*) FROM triplets GROUP BY 1 ORDER BY 1"
measure "build-shards -c 03_stage_hard (K=16)" "$bin" build-shards -c 03_stage_hard \
  "data.dir=$work/data" "data.shards_dir=$work/data/shards" "model.path=$work/data/models/all-MiniLM-L6-v2"
if [ "${1:-}" = "--materialize" ]; then
  measure "build --materialize-triplets" "$bin" --data "$work/data" build --materialize-triplets
  du -sh "$work/data/tables/triplets"
fi
