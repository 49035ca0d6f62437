"""Warm query latency of hybrid search, adaptive fusion (the default) against the previous
default (weighted fusion, on the current read path and on the previous one that ranked BM25
with FTS5 in SQL), side by side in one run, plus the cost of the fusion arithmetic alone at
k = 10.

    python3 benchmarks/bench_fusion.py INDEX_FOLDER QUERIES.jsonl [--queries 100] [--rounds 3]

INDEX_FOLDER is any searchkit index (e.g. one that ``searchkit eval --work-dir`` kept);
QUERIES.jsonl holds one ``{"text": ...}`` a line (a BEIR ``queries.jsonl``). Each round runs
every query once per fusion (which one goes first alternates from query to query), after a
warm-up pass that embeds them all, so the
times compare searching, not embedding.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from searchkit import SearchIndex  # noqa: E402
from speed_reference import Fts5Searcher  # noqa: E402
from searchkit.retrieval import fusion  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("index", type=Path)
    parser.add_argument("queries", type=Path)
    parser.add_argument("--queries", dest="n", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    texts = [json.loads(line)["text"] for line in args.queries.open(encoding="utf-8")][:args.n]
    # (label, read path, fusion): "previous" is the read path this session started from
    # (tests/speed_reference.py: BM25 by FTS5 in SQL), with the default of that time.
    runs = (("weighted", "current", "weighted"), ("adaptive (default)", "current", "adaptive"),
            ("weighted, previous read path", "previous", "weighted"))
    times: dict[str, list[float]] = {label: [] for label, _, _ in runs}
    with SearchIndex.open(args.index) as ix:
        paths = {"current": ix._searcher, "previous": Fts5Searcher(ix.backend, ix.config.search)}
        ix._queries.size = len(texts) + 1                # keep every query's vector
        ix.search_many(texts, k=10)                       # embeds and caches every query
        for _label, path, f in runs:                      # warms SQLite pages, FAISS, postings
            ix._searcher = paths[path]
            for t in texts:
                ix.search(t, k=10, fusion=f)
        for _ in range(args.rounds):
            for n, t in enumerate(texts):
                # Rotate which run goes first: a later one finds SQLite's pages warm.
                for label, path, f in runs[n % 3:] + runs[:n % 3]:
                    ix._searcher = paths[path]
                    start = time.perf_counter()
                    ix.search(t, k=10, fusion=f)
                    times[label].append(time.perf_counter() - start)
        ix._searcher = paths["current"]
        stats = ix.stats()
        # The arithmetic alone: the lists of one real query, fused many times.
        qvec = ix._queries.get(texts[0], ix._encode_queries)
        depth = ix.config.search.rerank_depth
        with ix.backend.snapshot() as view:
            lists = {"dense": view.vector_search("documents", qvec, depth),
                     "keyword": view.keyword_documents(texts[0], depth)}
    passage = np.zeros(len(set().union(*lists.values())))
    reps = 2000
    start = time.perf_counter()
    for _ in range(reps):
        ev = fusion.gather(lists, depth)
        fusion.second_stage(fusion.first_stage(ev), passage)
    arithmetic = (time.perf_counter() - start) / reps
    print(f"index {args.index.name}: {stats['documents']} documents, {stats['chunks']} chunks; "
          f"{len(texts)} queries x {args.rounds} rounds, k = 10")
    print("| fusion | median ms | mean ms | p90 ms |\n|---|---:|---:|---:|")
    for f in times:
        ms = sorted(1000 * t for t in times[f])
        print(f"| {f} | {statistics.median(ms):.2f} | {statistics.mean(ms):.2f} | "
              f"{ms[int(0.9 * len(ms))]:.2f} |")
    print(f"fusion arithmetic alone (gather + both stages, {len(passage)} candidates): "
          f"{1000 * arithmetic:.3f} ms")


if __name__ == "__main__":
    main()
