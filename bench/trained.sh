# Sourced by the bench scripts that need the embedded default trained (after scripts/main.sh):
# builds the binaries, sets $bin (their folder) and $work (a scratch folder, removed on exit).
cargo build --locked --quiet --bins
bin=${CARGO_TARGET_DIR:-target}/debug
[ -f data/naics_index_holdout.parquet ] || { echo "run scripts/main.sh first" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
