#!/usr/bin/env bash
# Fetches a CUDA compiler, to check that `--features cuda` compiles on a machine without the CUDA
# toolkit: NVIDIA ships nvcc, its front end (nvvm), the runtime headers and libcu++ on PyPI.
#
#   scripts/fetch_cuda.sh [DIR]    # default data/cuda; prints the CUDA_ROOT to build with
#   cuda=$(scripts/fetch_cuda.sh)
#   CUDA_ROOT=$cuda PATH=$cuda/bin:$PATH CUDA_COMPUTE_CAP=90 \
#     cargo check --features naics-trainer/cuda --all-targets
#
# CUDA 13.4, the newest that candle 0.11's cudarc knows. CUDA_COMPUTE_CAP is the GPU's compute
# capability (90: H100/H200), needed where no GPU is present to ask. A full build also links the
# CUDA libraries (driver, runtime, cuBLAS, cuRAND, NVRTC), which are not fetched here: a GPU
# machine's toolkit has them. Downloads the pinned wheels with pip (scripts/wheels.sh: cached in
# $NAICS_MODEL_CACHE, so repeat runs are offline), verifies their sha256 and unpacks them into
# DIR (about 350 MB).
set -euo pipefail

VERSION=13.4.92
declare -A SHA=(
  [nvidia_cuda_nvcc-13.4.92-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64]=a1f3bfb27299e060b444d5df1f4bcd762501326cf0fd3141ed61756816ab9a0e
  [nvidia_nvvm-13.4.92-py3-none-manylinux2010_x86_64.manylinux_2_12_x86_64]=e4c81cb321dd9743bcf871c5e7e8fecd7f05dea607944426e102bdda8d49e137
  [nvidia_cuda_crt-13.4.92-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64]=731ce3de11df8add8306404417a1edaede225dbe27eb233aed37c8de9d4fe720
  [nvidia_cuda_runtime-13.4.92-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64]=9641f797da20ce1dd8e779b6e96d08cf9ba564cec8e8225458811ee26423f3a5
  [nvidia_cuda_cccl-13.3.5.0.6-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64]=d5230098fa2df5021e1a00c0c4eee41797671a91119d31e892463e5ccf3ee326
)
dir=${1:-data/cuda}
source "$(dirname "$0")/wheels.sh"
exit_if_installed "$dir" "$VERSION"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for name in "${!SHA[@]}"; do
  unpack_wheel "$name" "${SHA[$name]}" "$work/unpacked"
done

# python's zipfile drops the executable bits.
chmod +x "$work"/unpacked/nvidia/cu13/bin/* "$work"/unpacked/nvidia/cu13/nvvm/bin/*
rm -rf "$dir.tmp"
mv "$work/unpacked/nvidia/cu13" "$dir.tmp"
echo "CUDA $VERSION compiler: installed in $dir" >&2
install_as "$dir" "$VERSION"
