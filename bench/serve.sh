#!/usr/bin/env bash
# `naics-trainer serve` under load on loopback (bench/load.py): single-query search at 1, 8 and
# 32 concurrent clients, 100-text classify batches, the server's memory over 10,000 requests.
# The model is the embedded default after scripts/main.sh; queries are the held-out entries.
# Another tree: DATA=data/icd10cm bench/serve.sh -c icd10cm_03_stage_hard (its held-out texts,
# its model; arguments go to `serve`).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/trained.sh
data=${DATA:-data}
addr=127.0.0.1:${PORT:-8089}
"$bin/naics-pipeline" --data "$data" sql --format csv -o "$work/q.csv" "SELECT text FROM naics_index_holdout" >/dev/null
tail -n +2 "$work/q.csv" | tr -d '"' > "$work/queries.txt"
"$bin/naics-trainer" serve --addr "$addr" "$@" > "$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 600); do
  curl -sf "http://$addr/healthz" >/dev/null && break
  kill -0 $server 2>/dev/null || { cat "$work/server.log"; exit 1; }
  sleep 0.5
done
python3 bench/load.py "http://$addr" "$server" "$work/queries.txt"
kill -TERM $server
wait $server && echo "server stopped on SIGTERM: $(tail -1 "$work/server.log")"
