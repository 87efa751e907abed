"""BEACON, the US Census Bureau's autocoder, trained on exactly the texts our training may see
and scored on our held-out index entries. Prints one line per measure, as bench/coding.sh
expects: `beacon <measure> <value>`.

Training texts: every six-digit code's title and its `examples` (the kept index entries and the
illustrative examples) from data/naics_codes.parquet; data/naics_index_holdout.parquet is only
ever the test set. BEACON is loaded from the path given (the shared copy, never this repo's).

usage: beacon_coding.py BEACON_DIR DATA_DIR
"""

import sys
import time

import pyarrow.parquet as pq

beacon_dir, data_dir = sys.argv[1], sys.argv[2]
sys.path.insert(0, beacon_dir)
from beacon import BeaconModel  # noqa: E402  (the peer, from outside the repository)

codes = pq.read_table(f"{data_dir}/naics_codes.parquet").to_pylist()
holdout = pq.read_table(f"{data_dir}/naics_index_holdout.parquet").to_pylist()

texts, labels = [], []
for c in codes:
    if c["level"] != 6:
        continue
    for text in [c["title"], *c["examples"]]:
        texts.append(text.upper())
        labels.append(c["code"])

started = time.time()
model = BeaconModel(verbose=0).fit(texts, labels)
fit_s = time.time() - started
started = time.time()
top10 = model.predict_top10([h["text"].upper() for h in holdout])
predict_s = time.time() - started

n = len(holdout)
truth = [h["code"] for h in holdout]
def share(hit):
    return sum(hit(t, p) for t, p in zip(truth, top10)) / n
print(f"beacon training_texts {len(texts)}")
print(f"beacon queries {n}")
print(f"beacon top1 {share(lambda t, p: t == p[0]):.4f}")
print(f"beacon top5 {share(lambda t, p: t in p[:5]):.4f}")
print(f"beacon top10 {share(lambda t, p: t in p[:10]):.4f}")
# NAICS's merged sectors (31-33, 44-45, 48-49), as our eval counts the 2-digit prefix.
MERGED = {"32": "31", "33": "31", "45": "44", "49": "48"}
def sector(code):
    return MERGED.get(code[:2], code[:2])
print(f"beacon prefix2 {share(lambda t, p: sector(p[0]) == sector(t)):.4f}")
for digits in (4, 5):
    print(f"beacon prefix{digits} {share(lambda t, p: p[0][:digits] == t[:digits]):.4f}")
print(f"beacon fit_s {fit_s:.1f}")
print(f"beacon predict_s {predict_s:.1f}")
