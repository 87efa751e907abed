# Sourced by the bench scripts: FEATURES, the cargo arguments of the build to measure.
# NAICS_MKL=1 selects Intel MKL (fetched into data/mkl, found by candle's build via MKLROOT).
FEATURES=()
if [ "${NAICS_MKL:-0}" = 1 ]; then
  MKLROOT=$(scripts/fetch_mkl.sh)
  export MKLROOT
  FEATURES=(--features naics-trainer/mkl)
fi
