#!/usr/bin/env bash
# Encoder throughput (tokens/s), MiniLM on CPU at batch 32 x 128: forward, and forward + backward
# through LoRA. Same build profile as the tests (dependencies optimized).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch_model.sh minilm >/dev/null
cargo run --locked --quiet -p naics-trainer --example bench_encoder -- data/models/all-MiniLM-L6-v2
