#!/usr/bin/env bash
# The pipeline's SQL on DataFusion and on Ballista, side by side (docs/cluster.md):
# NAICS `build --materialize-triplets` and `SELECT hardness, count(*) FROM triplets` on DataFusion,
# Ballista standalone, and a loopback cluster (naics-pipeline cluster ...) with 1 and 2 executors:
# wall time and peak RSS of every process. Every stage table is compared with DataFusion's (its
# rows sorted, sha256), the materialized triplets by per-hardness counts and column sums. Then
# ICD-10-CM (after scripts/fetch_icd10cm.sh and its ingest + build in data/icd10cm): the
# `distances` rows of chapter D50-D89 (a view there), written to Parquet on each engine.
# Usage: bench/cluster.sh [naics|icd10cm]   (both by default: about 30 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked --bins --features naics-pipeline/ballista
bin=$(realpath "${CARGO_TARGET_DIR:-target}/debug/naics-pipeline")
work=$(mktemp -d "${TMPDIR:-/tmp}/naics-cluster-bench.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
port=55050

# Peak resident memory of a running process, MiB.
peak() { awk '/VmHWM/ { print int($2 / 1024) }' "/proc/$1/status"; }

# A scheduler and N executors on loopback, one vcore each being what 2 cores allow per executor.
start_cluster() {
  pids=()
  "$bin" cluster scheduler --bind-port "$port" >"$work/scheduler.log" 2>&1 &
  pids+=($!)
  for i in $(seq 1 "$1"); do
    sleep 1
    "$bin" --scheduler "df://127.0.0.1:$port" cluster executor --bind-port $((port + 10 * i + 1)) \
      --bind-grpc-port $((port + 10 * i + 2)) --work-dir "$(mktemp -d "$work/shuffle.XXXX")" \
      >"$work/executor$i.log" 2>&1 &
    pids+=($!)
  done
  sleep 2
}

stop_cluster() {
  local line="  peak RSS: scheduler $(peak "${pids[0]}") MiB"
  for i in $(seq 1 $((${#pids[@]} - 1))); do line+=", executor $i $(peak "${pids[$i]}") MiB"; done
  echo "$line"
  for p in "${pids[@]}"; do kill "$p"; wait "$p" 2>/dev/null || true; done
  pids=()
  port=$((port + 100))
}

# Runs the pipeline, printing "LABEL: wall s, client peak RSS"; its output goes to $work/out.
timed() {
  local label=$1
  shift
  /usr/bin/time -f '%e %M' -o "$work/time" "$bin" "$@" >"$work/out" 2>"$work/err" || { cat "$work/err"; exit 1; }
  read -r wall rss <"$work/time"
  printf '  %-34s %8.1f s, client %5d MiB\n' "$label" "$wall" $((rss / 1024))
}

tables="ancestors exclusions anchor_groups triplet_shapes distances positives hardness_rules triplet_counts"
fingerprint() {
  for t in $tables; do
    echo "$t $("$bin" --data "$1" sql "SELECT * FROM $t" --format csv | sort | sha256sum | cut -c1-16)"
  done
  "$bin" --data "$1" sql --format csv "SELECT hardness, count(*), sum(anchor_idx), sum(positive_idx),
    sum(negative_idx), sum(CAST(excluded AS INT)) FROM triplets_materialized GROUP BY 1 ORDER BY 1"
}

only=${1:-}
if [ "$only" != icd10cm ]; then
echo "== NAICS: build --materialize-triplets, then SELECT hardness, count(*) FROM triplets"
query="SELECT hardness, count(*) AS n FROM triplets GROUP BY 1 ORDER BY 1"
run_naics() {
  local name=$1
  shift
  mkdir -p "$work/$name"
  cp data/naics_codes.parquet data/naics_index_holdout.parquet "$work/$name/"
  echo "$name"
  timed "build --materialize-triplets" --data "$work/$name" "$@" build --materialize-triplets
  timed "hardness query" --data "$work/$name" "$@" sql "$query" --format csv
  cp "$work/out" "$work/$name.hardness"
}
run_naics datafusion
fingerprint "$work/datafusion" >"$work/datafusion.fingerprint"
compare() {
  fingerprint "$work/$1" >"$work/$1.fingerprint"
  if cmp -s "$work/datafusion.fingerprint" "$work/$1.fingerprint" && cmp -s "$work/datafusion.hardness" "$work/$1.hardness"; then
    echo "  identical to DataFusion: 8 tables (sorted rows), triplets (per hardness), the hardness query"
  else
    echo "  DIFFERS from DataFusion:"
    diff "$work/datafusion.fingerprint" "$work/$1.fingerprint" || true
    exit 1
  fi
  rm -rf "${work:?}/$1"
}
run_naics standalone --engine ballista
compare standalone
for n in 1 2; do
  start_cluster "$n"
  run_naics "cluster$n" --engine ballista --scheduler "df://127.0.0.1:$port"
  stop_cluster
  compare "cluster$n"
done
rm -rf "${work:?}/datafusion"
fi

if [ "$only" != naics ] && [ -e data/icd10cm/tables/ancestors.parquet ]; then
  echo "== ICD-10-CM: distances of chapter D50-D89 (409 codes x 47,199), written to Parquet"
  chapter="SELECT * FROM distances WHERE idx_i >= 3534 AND idx_i < 3943"
  timed datafusion --data data/icd10cm sql "$chapter" --format parquet -o "$work/datafusion.parquet"
  for n in 1 2; do
    start_cluster "$n"
    timed "cluster, $n executor(s)" --data data/icd10cm --engine ballista --scheduler "df://127.0.0.1:$port" \
      sql "$chapter" --format parquet -o "$work/cluster$n.parquet"
    stop_cluster
  done
  # EXCEPT ALL's hash join does not spill: 8 GiB for it.
  count() { "$bin" --memory-limit-mib 8192 sql --format csv "$1" | tail -1; }
  echo "  rows: datafusion $(count "SELECT count(*) FROM '$work/datafusion.parquet'")"
  for n in 1 2; do
    echo "  cluster, $n executor(s): $(count "SELECT count(*) FROM '$work/cluster$n.parquet'") rows, of which \
$(count "SELECT count(*) FROM (SELECT * FROM '$work/cluster$n.parquet' EXCEPT ALL SELECT * FROM '$work/datafusion.parquet')") not in DataFusion's"
  done
fi
