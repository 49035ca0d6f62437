"""Warm query latency, the previous read paths and the current one side by side (issue 20).

One process, one open index, the queries' vectors embedded once up front: "own work" times
``SearchIndex.search`` with the query vector already cached (searchkit's own work, no model);
"end to end" empties the query-vector cache before each query (the embedding included).
The previous paths are in tests/speed_reference.py: "before" reads chunk rows, vector blobs
and chunk BM25 from SQLite per query, one row object per chunk, BM25 by FTS5; "fts5" keeps
chunks in memory but ranks BM25 with FTS5's ``bm25()``; "after" is the current path (BM25 in
memory over postings read from FTS5 once). Rounds rotate which path goes first. Every
query's hits are compared between the paths (ids, scores, passages, offsets); that first
pass is also timed ("first": the current path reads each new term's postings then).

    HF_HUB_OFFLINE=1 nice -n 5 python3 benchmarks/bench_warm.py --index IX \\
        --queries ../shared/eval/git_whatis/queries.jsonl [--rounds 2] [--profile hybrid]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from searchkit import SearchIndex  # noqa: E402
from common import percentiles  # noqa: E402
from speed_reference import Fts5Searcher, ReferenceSearcher  # noqa: E402

MODES = {
    "dense": {"mode": "dense"},
    "keyword": {"mode": "keyword"},
    "hybrid": {"mode": "hybrid"},
    "chunks-dense": {"mode": "dense", "chunks": True},
    "chunks-hybrid": {"mode": "hybrid", "chunks": True},
}


def timed(ix: SearchIndex, queries: list[str], options: dict, k: int, embed: bool) -> list[float]:
    out = []
    for q in queries:
        if embed:
            ix._queries._vectors.clear()
        start = time.perf_counter()
        ix.search(q, k=k, **options)
        out.append(time.perf_counter() - start)
    return out


def profile(ix: SearchIndex, queries: list[str], options: dict, k: int, lines: int) -> str:
    prof = cProfile.Profile()
    prof.enable()
    for q in queries:
        ix.search(q, k=k, **options)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(lines)
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", required=True)
    ap.add_argument("--queries", type=Path, required=True, help="BEIR queries.jsonl")
    ap.add_argument("-n", type=int, default=60, help="queries used")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--end-to-end", action="store_true", help="also time with the embedding")
    ap.add_argument("--profile", default=None, help="cProfile this mode on both paths")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    queries = [json.loads(line)["text"] for line in args.queries.open()][:args.n]
    modes = args.modes.split(",")
    result: dict = {"index": args.index, "queries": len(queries), "k": args.k, "modes": {}}
    with SearchIndex.open(args.index) as ix:
        ix._queries.size = len(queries) + 1
        paths = {"before": ReferenceSearcher(ix.backend, ix.config.search),
                 "fts5": Fts5Searcher(ix.backend, ix.config.search), "after": ix._searcher}
        for q in queries:   # embed once; load the FAISS indexes and the chunk table
            ix.search(q, k=args.k, mode="dense")
        mismatches = 0
        first: dict = {}
        for mode in modes:
            for name, searcher in paths.items():
                ix._searcher = searcher
                got, took = [], []
                for q in queries:
                    start = time.perf_counter()
                    got.append([h.as_dict() for h in ix.search(q, k=args.k, **MODES[mode])])
                    took.append(time.perf_counter() - start)
                first.setdefault(mode, {})[name] = percentiles(took)
                if name == "before":
                    want = got
                else:
                    mismatches += sum(a != b for a, b in zip(got, want))
        result["mismatched_queries"] = mismatches
        result["first pass"] = first
        times: dict = {m: {p: [] for p in paths} for m in modes}
        e2e: dict = {m: {p: [] for p in paths} for m in modes}
        for r in range(args.rounds):
            for mode in modes:
                names = list(paths)
                for name in names[r % len(names):] + names[:r % len(names)]:
                    ix._searcher = paths[name]
                    times[mode][name] += timed(ix, queries, MODES[mode], args.k, False)
                    if args.end_to_end:
                        e2e[mode][name] += timed(ix, queries, MODES[mode], args.k, True)
                        for q in queries:   # the cache again, for the next own-work timing
                            ix.search(q, k=args.k, mode="dense")
        for mode in modes:
            row = {p: percentiles(times[mode][p]) for p in paths}
            if args.end_to_end:
                row.update({f"{p} e2e": percentiles(e2e[mode][p]) for p in paths})
            row["first pass"] = first[mode]
            result["modes"][mode] = row
            print(mode, json.dumps(row), flush=True)
        if args.profile:
            for name, searcher in paths.items():
                ix._searcher = searcher
                for q in queries:
                    ix.search(q, k=args.k, mode="dense")
                text = profile(ix, queries, MODES[args.profile], args.k, 18)
                result[f"profile {name}"] = text
                print(f"--- profile {args.profile} {name}\n{text}")
        ix._searcher = paths["after"]
    print("mismatched queries:", result["mismatched_queries"])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
