#!/usr/bin/env bash
# Shard reader latency: one batch's token ids from the memory-mapped files (needs the
# 03_stage_hard shards: naics-pipeline build-shards -c 03_stage_hard).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --locked --quiet -p naics-trainer --example bench_reader
