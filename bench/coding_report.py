"""The table of bench/coding.sh: ours (an `eval.json`) beside the peers' `<peer> <measure>
<value>` lines (bench/bm25.py, bench/beacon_coding.py), every row from the same held-out texts.

usage: coding_report.py EVAL_JSON PEERS_FILE
"""

import json
import sys


def main(eval_json, peers_file):
    ours = json.load(open(eval_json))
    peers = {}
    for line in open(peers_file):
        peer, measure, value = line.split()
        peers.setdefault(peer, {})[measure] = float(value)
    c = ours["coding"]

    def row(name, r):
        p = r["prefix"]
        print(f"{name:<34} {r['top1']:.3f}  {r['top5']:.3f}  {r['top10']:.3f}  {p[0]:.3f}  {p[1]:.3f}  {p[2]:.3f}")

    def peer(name, m):
        print(f"{name:<34} {m['top1']:.3f}  {m['top5']:.3f}  {m['top10']:.3f}")

    print(f"held-out texts: {c['retrieval']['queries']}")
    print(f"{'':<34} top-1  top-5  top-10 ancestors at depth 0/1/2")
    if "beacon" in peers:
        peer(f"BEACON (trained on {int(peers['beacon']['training_texts'])} texts)", peers["beacon"])
    peer(f"BM25 leaf-path ({int(peers['bm25']['documents'])} documents)", peers["bm25"])
    row("ours: coder (all signals)", c["retrieval"])
    for name, r in c["ablation"]:
        row(f"ours: {name}", r)
    row("ours: points, as trained (eval)", ours["retrieval"])
    row("frozen base, zero-shot", ours["baseline_retrieval"])
    print(f"coder weights (points, entries, words): {c['fusion']['weights']} on {c['fusion']['fitted_on']} validation entries")
    print(f"expected calibration error: {c['expected_calibration_error']:.4f}")
    print(f"hierarchy: cophenetic {ours['cophenetic']:.4f}, NDCG@10 {ours['ndcg_at_10']:.4f}, parent@1 {ours['parent_at_1']:.4f}")
    print(f"held-out coding time (features of every candidate): {c['seconds']:.2f} s")
    for name, m in sorted(peers.items()):
        print(f"{name} fit {m['fit_s']:.1f} s, predict {m['predict_s']:.1f} s")


if __name__ == "__main__":
    main(*sys.argv[1:])
