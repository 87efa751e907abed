"""BM25 over leaf paths: the word-matching peer of bench/coding.sh. One document per leaf code:
its title and training entries, and its ancestors' titles and entries (the whole path from the
root), scored against each held-out entry with Okapi BM25 (k1 1.2, b 0.75, Lucene's idf
ln(1 + (N - df + 0.5) / (df + 0.5))). Words: lower-cased runs of letters and digits.

Training texts are exactly those our training may see: the codes' titles and `examples` (the
kept entries) in DATA_DIR/naics_codes.parquet; DATA_DIR/naics_index_holdout.parquet is only ever
the test set. Prints `bm25 <measure> <value>` lines, as bench/coding.sh expects. A held-out
entry whose code is not a leaf (ICD-10-CM's inclusion terms of a category) is coded right by any
leaf under its code, as our eval counts it.

usage: bm25.py DATA_DIR
"""

import heapq
import math
import re
import sys
import time
from collections import Counter, defaultdict

K1, B = 1.2, 0.75
WORD = re.compile(r"[^\W_]+")


def words(text):
    return WORD.findall(text.lower())


class BM25:
    """Okapi BM25 over a list of documents, each a list of words."""

    def __init__(self, documents, k1=K1, b=B):
        self.k1, self.b = k1, b
        self.n = len(documents)
        self.lengths = [len(d) for d in documents]
        self.average = sum(self.lengths) / max(self.n, 1)
        self.postings = defaultdict(list)  # word -> [(document, term frequency)]
        for i, document in enumerate(documents):
            for word, tf in Counter(document).items():
                self.postings[word].append((i, tf))
        self.idf = {
            w: math.log(1 + (self.n - len(p) + 0.5) / (len(p) + 0.5)) for w, p in self.postings.items()
        }

    def scores(self, query):
        """The BM25 score of every document for `query` (a list of words; repeats count)."""
        out = [0.0] * self.n
        for word in query:
            for i, tf in self.postings.get(word, ()):
                norm = self.k1 * (1 - self.b + self.b * self.lengths[i] / self.average)
                out[i] += self.idf[word] * tf * (self.k1 + 1) / (tf + norm)
        return out


def leaf_documents(codes):
    """Each leaf's path (its code, then its ancestors' up to the root) and words: the path's
    titles and examples."""
    by_code = {c["code"]: c for c in codes}
    parents = {c["parent"] for c in codes if c["parent"]}
    out = []
    for c in codes:
        if c["code"] in parents:
            continue
        path, words_of_path, node = [], [], c
        while node is not None:
            path.append(node["code"])
            for text in [node["title"], *node["examples"]]:
                words_of_path.extend(words(text))
            node = by_code.get(node["parent"]) if node["parent"] else None
        out.append((path, words_of_path))
    return out


def main(data_dir):
    import pyarrow.parquet as pq

    codes = pq.read_table(f"{data_dir}/naics_codes.parquet").to_pylist()
    holdout = pq.read_table(f"{data_dir}/naics_index_holdout.parquet").to_pylist()
    started = time.time()
    leaves = leaf_documents(codes)
    index = BM25([w for _, w in leaves])
    fit_s = time.time() - started
    started = time.time()
    hits = Counter()
    for h in holdout:
        scores = index.scores(words(h["text"]))
        # Best first; ties by leaf order, as a stable sort would leave them.
        top = heapq.nsmallest(10, range(len(scores)), key=lambda i: (-scores[i], i))
        right = [h["code"] in leaves[i][0] for i in top]
        for k in (1, 5, 10):
            hits[k] += any(right[:k])
    n = max(len(holdout), 1)
    print(f"bm25 documents {len(leaves)}")
    print(f"bm25 queries {len(holdout)}")
    for k in (1, 5, 10):
        print(f"bm25 top{k} {hits[k] / n:.4f}")
    print(f"bm25 fit_s {fit_s:.1f}")
    print(f"bm25 predict_s {time.time() - started:.1f}")


if __name__ == "__main__":
    main(sys.argv[1])
