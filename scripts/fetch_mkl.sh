#!/usr/bin/env bash
# Fetches Intel MKL for `--features mkl` (matrix products on the CPU from MKL instead of the
# `gemm` crate): the static libraries ship on PyPI (mkl-static, mkl-include, intel-openmp).
#
#   scripts/fetch_mkl.sh [DIR]    # default data/mkl; prints the MKLROOT to build with
#   MKLROOT=$(scripts/fetch_mkl.sh) cargo build --release --features mkl
#
# Downloads the pinned wheels with pip (scripts/wheels.sh: cached in $NAICS_MODEL_CACHE, so repeat
# runs are offline), verifies their sha256 and unpacks the four static libraries
# (LP64 interface, Intel threading, core, OpenMP runtime) and the headers into DIR. About 650 MB.
# candle's build (intel-mkl-src) finds them through $MKLROOT.
set -euo pipefail

VERSION=2026.2.0
declare -A SHA=(
  [mkl_static]=090e439bf202b45579c75d2ba50ff7ead05752d553a06aba79c3ed2b5247921b
  [mkl_include]=889cc72057a1671fee1e9a8beb2fc4e0d222ba78c08b6d69584dae03fbec4822
  [intel_openmp]=2308a1a3e74718a9cd8cccf218c34d8cd80b43d3b89dfbb01b38dee205c50980
)
dir=${1:-data/mkl}
libs="libmkl_intel_lp64.a libmkl_intel_thread.a libmkl_core.a libiomp5.a"
source "$(dirname "$0")/wheels.sh"
exit_if_installed "$dir" "$VERSION"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for package in mkl_static mkl_include intel_openmp; do
  unpack_wheel "$package-$VERSION-py2.py3-none-manylinux_2_28_x86_64" "${SHA[$package]}" "$work/unpacked"
done

# Only what the link needs: the libraries are copied one by one, the headers as a folder.
rm -rf "$dir.tmp"
mkdir -p "$dir.tmp/lib"
for lib in $libs; do
  found=$(find "$work/unpacked" -name "$lib" | head -n 1)
  [ -n "$found" ] || { echo "error: $lib missing from the MKL $VERSION wheels" >&2; exit 1; }
  cp "$found" "$dir.tmp/lib/"
done
cp -r "$(dirname "$(find "$work/unpacked" -name mkl.h | head -n 1)")" "$dir.tmp/include"
echo "MKL $VERSION: installed in $dir" >&2
install_as "$dir" "$VERSION"
