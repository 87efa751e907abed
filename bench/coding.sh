#!/usr/bin/env bash
# Coding free text, ours against the peers, on the same held-out texts, from one run, side by
# side, for each taxonomy named (default: both):
#   naics    2,119 held-out index entries into 1,012 six-digit codes: BEACON (the US Census
#            Bureau's autocoder, ../shared/anchors/beacon) and BM25 leaf-path (bench/bm25.py)
#            against ours (the checkpoint `eval` measures after scripts/main.sh);
#   icd10cm  1,302 held-out inclusion terms into 36,355 leaves: BM25 leaf-path against ours
#            (after scripts/main.sh icd10cm);
#   NAME     a tree of `scripts/main.sh --tree` (data/trees/NAME/, e.g. soc2010: 2,872 held-out
#            job titles into 369 unit groups): BM25 leaf-path against ours; its search query is
#            its first held-out text.
# The peers train on exactly the texts our training may see (titles and the codes' kept
# entries), never the held-out ones. Also `eval`'s wall time and peak memory, the latency of one
# `search` end to end (caches warm), and `classify`'s rows/s over the held-out texts.
# numpy, scikit-learn and pyarrow come from PyPI into a virtual environment kept in
# ${NAICS_BEACON_VENV:-~/.cache/naics/beacon-venv}. Usage: bench/coding.sh [naics] [icd10cm] [NAME]
set -euo pipefail
cd "$(dirname "$0")/.."
beacon=${NAICS_BEACON_DIR:-../shared/anchors/beacon}
venv=${NAICS_BEACON_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/naics/beacon-venv}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import numpy, sklearn, pyarrow" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet numpy==2.3.5 scikit-learn==1.7.2 pyarrow==26.0.1
fi
cargo build --locked --quiet --bins
trainer=${CARGO_TARGET_DIR:-target}/debug/naics-trainer
peers=$(mktemp) report=$(mktemp) work=$(mktemp -d)
trap 'rm -rf "$peers" "$report" "$work"' EXIT

for taxonomy in ${@:-naics icd10cm}; do
  case $taxonomy in
    naics) data=data checkpoint=() query="retail bakery that also sells coffee" ;;
    icd10cm) data=data/icd10cm checkpoint=(-c icd10cm_03_stage_hard) query="type 2 diabetes with diabetic retinopathy" ;;
    *) data=data/trees/$taxonomy checkpoint=(-c "${taxonomy}_03_stage_hard") query=""
       [ -d "$data" ] || { echo "unknown taxonomy '$taxonomy': expected naics, icd10cm or a tree of scripts/main.sh --tree (data/trees/NAME)" >&2; exit 2; } ;;
  esac
  [ -f "$data/naics_index_holdout.parquet" ] || { echo "no $data/naics_index_holdout.parquet: run scripts/main.sh ${taxonomy/naics/} first" >&2; exit 1; }
  echo "== $taxonomy"
  [ -n "${query:-}" ] || query=$("$venv/bin/python" -c "import pyarrow.parquet as pq, sys; print(pq.read_table(sys.argv[1]).column('text')[0])" "$data/naics_index_holdout.parquet")
  "$venv/bin/python" bench/bm25.py "$data" > "$peers"
  if [ "$taxonomy" = naics ]; then
    [ -f "$beacon/beacon.py" ] || { echo "no BEACON at $beacon (set NAICS_BEACON_DIR)" >&2; exit 1; }
    "$venv/bin/python" bench/beacon_coding.py "$beacon" "$data" >> "$peers"
  fi
  /usr/bin/time -f "eval: %e s, peak RSS %M KiB" "$trainer" eval "${checkpoint[@]}" > "$report"
  grep -v '^encoded' "$report"
  out=$(sed -n 's|^wrote \(.*\)/eval.json.*|\1|p' "$report")
  "$venv/bin/python" bench/coding_report.py "$out/eval.json" "$peers"
  /usr/bin/time -f "one search end to end (points, entries and fusion cached): %e s, peak RSS %M KiB" \
    "$trainer" search "$query" -k 5 "${checkpoint[@]}"
  # `classify` over the held-out texts, CSV in and Parquet out: its summary's rows/s.
  "$venv/bin/python" -c "import pyarrow.parquet as pq, pyarrow.csv as pc, sys; pc.write_csv(pq.read_table(sys.argv[1]).select(['text']), sys.argv[2])" \
    "$data/naics_index_holdout.parquet" "$work/held.csv"
  /usr/bin/time -f "classify: peak RSS %M KiB" "$trainer" classify --input "$work/held.csv" --text-column text \
    --output "$work/held.parquet" "${checkpoint[@]}" | head -1
done
