#!/usr/bin/env bash
# Side by side with PyTorch on the same work, same machine, same thread count:
#   the encoder (bench_encoder vs bench/torch_encoder.py) on each instruction-set path: the
#   widest this CPU has, and AVX2 forced on both sides (NAICS_ISA=avx2 for gemm and our kernels;
#   ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA and MKL_ENABLE_INSTRUCTIONS for PyTorch), and one
#   `lora` training step (bench_fit vs bench/torch_fit.py, on the batches bench_fit writes).
# PyTorch, transformers and peft come from PyPI into a virtual environment kept in
# ${NAICS_TORCH_VENV:-~/.cache/naics/torch-venv} (about 5 GB with the CUDA libraries PyPI's torch
# depends on; the benchmark runs on the CPU). Usage: bench/torch.sh [anchors [overrides...]]
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${NAICS_TORCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/naics/torch-venv}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import torch, transformers, peft" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet torch==2.15.0 transformers==5.24.0 peft==0.21.2 safetensors==0.8.0
fi
threads=$(nproc)  # candle uses one thread per core; PyTorch gets as many
model=data/models/all-MiniLM-L6-v2
avx2=(ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2)
echo "== encoder: candle (gemm crate, the default build), widest path"
bench/encoder.sh
echo "== encoder: PyTorch, widest path"
"$venv/bin/python" bench/torch_encoder.py "$model" "$threads"
echo "== encoder: candle (gemm crate), AVX2 path"
NAICS_ISA=avx2 bench/encoder.sh
echo "== encoder: PyTorch, AVX2 path"
env "${avx2[@]}" "$venv/bin/python" bench/torch_encoder.py "$model" "$threads"
# PyTorch multiplies matrices with MKL (or oneDNN); so does candle with `--features mkl`.
echo "== encoder: candle (MKL)"
NAICS_MKL=1 bench/encoder.sh
batches=$(mktemp --suffix .json)
trap 'rm -f "$batches"' EXIT
echo "== lora step: candle (MKL)"
NAICS_MKL=1 NAICS_BENCH_BATCHES=$batches bench/fit.sh lora "$@"
echo "== lora step: PyTorch (encoder only)"
"$venv/bin/python" bench/torch_fit.py "$batches" "$threads"
