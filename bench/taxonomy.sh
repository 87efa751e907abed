#!/usr/bin/env bash
# How the pipeline's costs grow with the tree: ICD-10-CM (47,200 codes) and synthetic trees of
# 2k, 20k, 200k and 2M codes (`naics-pipeline synth`, depth 5), each through ingest + build +
# build-shards with the default curriculum's stage 3 (all levels, K = 16) and one positive per
# anchor (`curriculum.max_positives=1`). Prints wall seconds and peak RSS per step, then the cost
# per code relative to 20k; writes outputs/bench/taxonomy_scaling.csv and
# docs/taxonomy-scaling.png. Usage: bench/taxonomy.sh [SIZES...] (default 2000 20000 200000 2000000)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked --quiet --bins
bin=${CARGO_TARGET_DIR:-target}/debug/naics-pipeline
scripts/fetch_model.sh minilm >/dev/null
scripts/fetch_icd10cm.sh >/dev/null
sizes=("${@:-2000 20000 200000 2000000}")
sizes=(${sizes[*]})
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
csv=outputs/bench/taxonomy_scaling.csv
mkdir -p outputs/bench

step() { # command... -> prints "secs kib"
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" >"$work/out" 2>&1 || { cat "$work/out"; exit 1; }
  cat "$work/time"
}

run() { # name codes ingest-args...
  local name=$1 codes=$2; shift 2
  local d="$work/$name"
  mkdir -p "$d"
  read -r si ki < <(step "$bin" --data "$d" ingest "$@")
  read -r sb kb < <(step "$bin" --data "$d" build)
  read -r ss ks < <(step "$bin" build-shards -c 03_stage_hard "data.dir=$d" "data.shards_dir=$d/shards" \
    "model.path=data/models/all-MiniLM-L6-v2" "curriculum.max_positives=1")
  local total peak
  total=$(echo "$si + $sb + $ss" | bc)
  peak=$(( (ki > kb ? (ki > ks ? ki : ks) : (kb > ks ? kb : ks)) / 1024 ))
  printf "%-12s %9d %8.2f %8.2f %8.2f %9.2f %9d\n" "$name" "$codes" "$si" "$sb" "$ss" "$total" "$peak"
  echo "$name,$codes,$si,$sb,$ss,$total,$peak" >>"$csv.tmp"
  rm -rf "$d"
}

echo "taxonomy scaling ($(nproc) cores, $(date -u +%Y-%m-%d)): wall seconds per step, peak RSS of any step"
printf "%-12s %9s %8s %8s %8s %9s %9s\n" tree codes ingest build shards total "peak MiB"
echo "tree,codes,ingest_s,build_s,shards_s,total_s,peak_mib" >"$csv.tmp"
run icd10cm 47200 --taxonomy icd10cm --input data/icd10cm/icd10cm-tabular-April-1-2026.xml
for n in "${sizes[@]}"; do
  mkdir -p "$work/synth"
  "$bin" --data "$work/synth" synth --codes "$n" --depth 5 --seed 1 -o "$work/synth/tree.parquet" >/dev/null
  run "synth" "$n" --taxonomy generic --input "$work/synth/tree.parquet"
done
mv "$csv.tmp" "$csv"
# Cost per code relative to the 20k tree: 1.0 is linear.
awk -F, 'NR > 1 && $1 == "synth" { n[NR] = $2; t[NR] = $6; m[NR] = $7; if ($2 == 20000) { t0 = $6 / $2; m0 = $7 / $2 } }
  END { if (t0) for (i in n) printf "  %9d codes: time per code %.2fx, memory per code %.2fx of 20k\n", n[i], t[i] / n[i] / t0, m[i] / n[i] / m0 }' "$csv" | sort -n -k1
cargo run --locked --quiet --example plot_scaling -p naics-trainer -- "$csv" docs/taxonomy-scaling.png
