#!/usr/bin/env bash
# The main job on the embedded default (MiniLM on CPU, its text adapters trained: conf/profile/cpu_default.yaml):
# fetch the model, run the pipeline on a tree, write the shards of every stage of the default
# curriculum (conf/curriculum/, stages by depth relative to the leaves), train them in order
# (`fit -c all`) and evaluate the last stage's best checkpoint (`eval`).
#
#   scripts/main.sh [OVERRIDES...]            # NAICS 2022 (data/): fit's overrides
#   scripts/main.sh icd10cm [OVERRIDES...]    # ICD-10-CM (data/icd10cm/, conf/data/icd10cm.yaml,
#                                             #   conf/profile/cpu_icd10cm.yaml): fit's overrides
#   scripts/main.sh --tree TABLE [--entries ENTRIES] [--name NAME] [OVERRIDES...]
#       # your own tree: TABLE (CSV or Parquet: code, parent, title, and optionally description,
#       # examples, excluded, excluded_codes) and ENTRIES (code, text: free texts of the codes,
#       # a tenth held out for eval) into data/trees/NAME/ (NAME: TABLE's file name), checkpoints
#       # NAME_01_stage_easy ... NAME_03_stage_hard; OVERRIDES go to build-shards and fit.
#
# NAICS_BIN=DIR uses the programs in DIR instead of building them (the tests do).
set -euo pipefail

tree="" entries="" name=""
if [ "${1:-}" = --tree ]; then
  while [ $# -gt 0 ]; do
    case "$1" in
      --tree) tree=$(realpath "${2:?--tree needs a table (CSV or Parquet)}"); shift 2 ;;
      --entries) entries=$(realpath "${2:?--entries needs a table of (code, text)}"); shift 2 ;;
      --name) name=${2:?--name needs a name}; shift 2 ;;
      *) break ;;
    esac
  done
  [ -f "$tree" ] || { echo "error: --tree $tree: no such file" >&2; exit 1; }
  if [ -z "$name" ]; then
    name=$(basename "$tree"); name=${name%.*}
  fi
  case "$name" in
    *[!A-Za-z0-9_-]* | "") echo "error: tree name \`$name\`: use letters, digits, _ and - (pass --name)" >&2; exit 1 ;;
  esac
fi

cd "$(dirname "$0")/.."
scripts/fetch_model.sh minilm
if [ -n "${NAICS_BIN:-}" ]; then
  bin=$NAICS_BIN
else
  cargo build --locked --bins
  bin=${CARGO_TARGET_DIR:-target}/debug
fi
pipeline=$bin/naics-pipeline
trainer=$bin/naics-trainer

if [ -n "$tree" ]; then
  data=data/trees/$name
  set -- "data.dir=$data" "data.shards_dir=$data/shards" "data.name=$name" profile=cpu_default "$@"
  "$pipeline" --data "$data" ingest --taxonomy generic --input "$tree" ${entries:+--entries "$entries"}
  "$pipeline" --data "$data" build
  "$pipeline" build-shards -c all "$@"
  "$trainer" fit -c all "$@"
  "$trainer" eval -c "${name}_03_stage_hard"
  echo "tree $name: tables in $data/, checkpoints in checkpoints/${name}_0*/, eval in outputs/${name}_03_stage_hard/eval.json"
  echo "next: $trainer search -c ${name}_03_stage_hard \"a text to code\""
  exit
fi

if [ "${1:-}" = icd10cm ]; then
  shift
  scripts/fetch_icd10cm.sh
  "$pipeline" --data data/icd10cm ingest --taxonomy icd10cm
  "$pipeline" --data data/icd10cm build
  "$pipeline" build-shards -c all data=icd10cm profile=cpu_icd10cm
  "$trainer" fit -c all data=icd10cm profile=cpu_icd10cm "$@"
  "$trainer" eval -c icd10cm_03_stage_hard
  exit
fi

"$pipeline" ingest
"$pipeline" build
"$pipeline" build-shards -c all profile=cpu_default
"$trainer" fit -c all profile=cpu_default "$@"
"$trainer" eval
