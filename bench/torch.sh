#!/usr/bin/env bash
# Side by side with PyTorch on the same work, same machine, same thread count:
#   the encoder (bench_encoder vs bench/torch_encoder.py) and one `lora` training step
#   (bench_fit vs bench/torch_fit.py, on the batches bench_fit writes).
# PyTorch, transformers and peft come from PyPI into a virtual environment kept in
# ${NAICS_TORCH_VENV:-~/.cache/naics/torch-venv} (about 5 GB with the CUDA libraries PyPI's torch
# depends on; the benchmark runs on the CPU). Usage: bench/torch.sh [anchors [overrides...]]
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${NAICS_TORCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/naics/torch-venv}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import torch, transformers, peft" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet torch transformers peft safetensors
fi
threads=$(nproc)  # candle uses one thread per core; PyTorch gets as many
model=data/models/all-MiniLM-L6-v2
echo "== encoder: candle (gemm crate)"
bench/encoder.sh
# PyTorch multiplies matrices with MKL (or oneDNN); so does candle with `--features mkl`.
echo "== encoder: candle (MKL)"
NAICS_MKL=1 bench/encoder.sh
echo "== encoder: PyTorch"
"$venv/bin/python" bench/torch_encoder.py "$model" "$threads"
batches=$(mktemp --suffix .json)
trap 'rm -f "$batches"' EXIT
echo "== lora step: candle (MKL)"
NAICS_MKL=1 NAICS_BENCH_BATCHES=$batches bench/fit.sh lora "$@"
echo "== lora step: PyTorch (encoder only)"
"$venv/bin/python" bench/torch_fit.py "$batches" "$threads"
