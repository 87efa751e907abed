#!/usr/bin/env bash
# Encoder throughput (tokens/s), MiniLM on CPU at batch 32 x 128: forward, and forward + backward
# through LoRA. Same build profile as the tests (dependencies optimized). NAICS_MKL=1 builds with
# `--features mkl` (Intel MKL's matrix products; scripts/fetch_mkl.sh fetches it).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/features.sh
scripts/fetch_model.sh minilm >/dev/null
cargo run --locked --quiet "${FEATURES[@]}" -p naics-trainer --example bench_encoder -- data/models/all-MiniLM-L6-v2
