#!/usr/bin/env bash
# Coding free text: BEACON (the US Census Bureau's autocoder, ../shared/anchors/beacon) and ours on
# the same 2,119 held-out index entries, from one run, side by side. BEACON trains on exactly the
# texts our training may see (six-digit titles and the codes' kept entries); ours is the
# checkpoint `eval` measures (the embedded default after scripts/main.sh). Also the latency of
# one `search` end to end with the cached points.
# numpy, scikit-learn and pyarrow come from PyPI into a virtual environment kept in
# ${NAICS_BEACON_VENV:-~/.cache/naics/beacon-venv}. Usage: bench/coding.sh [eval args...]
set -euo pipefail
cd "$(dirname "$0")/.."
beacon=${NAICS_BEACON_DIR:-../shared/anchors/beacon}
venv=${NAICS_BEACON_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/naics/beacon-venv}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import numpy, sklearn, pyarrow" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet numpy==2.3.5 scikit-learn==1.7.2 pyarrow==26.0.1
fi
[ -f "$beacon/beacon.py" ] || { echo "no BEACON at $beacon (set NAICS_BEACON_DIR)" >&2; exit 1; }
cargo build --locked --quiet --bins
trainer=${CARGO_TARGET_DIR:-target}/debug/naics-trainer
[ -f data/naics_index_holdout.parquet ] || { echo "run scripts/main.sh first" >&2; exit 1; }

"$venv/bin/python" bench/beacon_coding.py "$beacon" data > /tmp/naics-beacon.$$
out=$("$trainer" eval "$@" | sed -n 's|^wrote \(.*\)/eval.json.*|\1|p')
"$venv/bin/python" - "$out/eval.json" /tmp/naics-beacon.$$ <<'PY'
import json, sys
ours = json.load(open(sys.argv[1]))
beacon = dict((l.split()[1], float(l.split()[2])) for l in open(sys.argv[2]) if l.startswith("beacon "))
c = ours["coding"]
def row(name, r):
    return f"{name:<34} {r['top1']:.3f}  {r['top5']:.3f}  {r['top10']:.3f}  {r['prefix'][0]:.3f}  {r['prefix'][2]:.3f}  {r['prefix'][3]:.3f}"
print(f"held-out index entries: {c['retrieval']['queries']} (BEACON trained on {int(beacon['training_texts'])} texts)")
print(f"{'':<34} top-1  top-5  top-10 2-dig  4-dig  5-dig")
print(f"{'BEACON':<34} {beacon['top1']:.3f}  {beacon['top5']:.3f}  {beacon['top10']:.3f}  {beacon['prefix2']:.3f}  {beacon['prefix4']:.3f}  {beacon['prefix5']:.3f}")
print(row("ours: coder (all signals)", c["retrieval"]))
for name, r in c["ablation"]:
    print(row(f"ours: {name}", r))
print(row("ours: points, as trained (eval)", ours["retrieval"]))
print(row("frozen MiniLM, zero-shot", ours["baseline_retrieval"]))
print(f"coder weights (points, entries, words): {c['fusion']['weights']} on {c['fusion']['fitted_on']} validation entries")
print(f"expected calibration error: {c['expected_calibration_error']:.4f}")
print(f"expert share of routed rows (all codes): {[round(x, 3) for x in ours['expert_share']]}")
print(f"held-out coding time (2,119 texts, features of every candidate): {c['seconds']:.2f} s")
print(f"BEACON fit {beacon['fit_s']:.1f} s, predict {beacon['predict_s']:.1f} s")
PY
rm -f /tmp/naics-beacon.$$
/usr/bin/time -f "one search end to end (points, entries and fusion cached): %e s, peak RSS %M KiB" \
  "$trainer" search "retail bakery that also sells coffee" -k 5 "$@"
