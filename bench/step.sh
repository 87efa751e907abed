#!/usr/bin/env bash
# Where a frozen step's time goes, on each instruction-set path of this CPU side by side: the
# default (the widest the CPU has) and gemm's and the kernels' AVX2 path forced (NAICS_ISA=avx2),
# both on `fit -c 02_stage_medium profile=cpu_default` (162 steps of 128 samples; run after
# scripts/main.sh, so the frozen caches exist). Prints, per path: wall time, steps, context
# switches per step (`perf stat`, where perf is installed), and outputs/02_stage_medium/
# step_time.json as a table: each part's seconds per step, its matrix products' GFLOP per step
# and GFLOP/s, and the share of its time outside the products.
#   bench/step.sh [PATHS...]   # default: "default avx2"; also: baseline (scalar products: slow)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked --quiet --bins
trainer=${CARGO_TARGET_DIR:-target}/debug/naics-trainer
stat=$(mktemp)
trap 'rm -f "$stat"' EXIT
for path in "${@:-default avx2}"; do
  for p in $path; do
    isa=(); [ "$p" = default ] || isa=(NAICS_ISA="$p")
    perf=(); command -v perf >/dev/null && perf=(perf stat -x, -e context-switches,task-clock -o "$stat")
    start=$(date +%s.%N)
    env "${isa[@]}" "${perf[@]}" "$trainer" fit -c 02_stage_medium profile=cpu_default >/dev/null
    python3 - "$p" "$start" "$(date +%s.%N)" "$stat" outputs/02_stage_medium/step_time.json <<'PY'
import json, sys
path, wall, stat = sys.argv[1], float(sys.argv[3]) - float(sys.argv[2]), sys.argv[4]
times = json.load(open(sys.argv[5]))
steps = times["steps"]
counters = {}
for line in open(stat):
    f = line.strip().split(",")
    if len(f) > 2 and f[2] in ("context-switches", "task-clock"):
        counters[f[2]] = float(f[0])
print(f"== {path} path: fit {wall:.1f} s wall, {steps} steps, {times['seconds_per_step']:.3f} s/step, "
      f"{times['outside_products']:.0%} of it outside matrix products")
if counters:
    print(f"   context switches {counters['context-switches']:,.0f} ({counters['context-switches'] / steps:,.0f} per step), "
          f"{counters['task-clock'] / 1000 / wall:.2f} CPUs busy on average")
print(f"   {'part':<11} {'s/step':>7} {'share':>6} {'GFLOP':>7} {'GFLOP/s':>8} {'outside products':>17}")
for p in times["parts"]:
    gflop = p["product_gflop"] + p["other_gflop"]
    rate = p["product_gflops"] if p["product_gflop"] else (gflop / p["seconds"] if p["seconds"] else 0)
    print(f"   {p['part']:<11} {p['seconds']:7.4f} {p['share']:6.1%} {gflop:7.3f} {rate:8.1f} {p['outside_products']:17.0%}")
PY
  done
done
