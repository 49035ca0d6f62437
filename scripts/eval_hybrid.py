"""Dense vs keyword vs hybrid on BEIR-layout sets (issue 5), until `searchkit eval --mode` lands.

    python3 scripts/eval_hybrid.py ../shared/eval/git_whatis --work /tmp/hyb/ix [--json]

Indexes the corpus once per set (kept in --work and reused: unchanged records are not
embedded again) with the bundled all-MiniLM-L6-v2 and the shipped index defaults, then scores
every query: dense, dense with late rerank, keyword (FTS5 BM25), the product's default hybrid,
and a grid of fusions of the same candidate lists: nDCG@10, recall@1, recall@10, MRR@10.
Record titles are left empty (the sets have none); a title equal to the document id would
leak the answer into the keyword index.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from searchkit import SearchIndex, load_config  # noqa: E402
from searchkit.retrieval.ranking import fuse  # noqa: E402

# Fusions scored from the same two candidate lists the product fuses (top search.rerank_depth
# of each, default 50), with searchkit.retrieval.ranking.fuse itself: name → (fusion, keyword_weight, rrf_k).
FUSIONS = {f"rrf k={k} w={w}": ("rrf", w, k) for k in (10, 30, 60) for w in (0.3, 0.5, 0.7)}
FUSIONS.update({f"weighted w={w}": ("weighted", w, 60) for w in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)})


def load(folder: Path):
    corpus = [json.loads(line) for line in open(folder / "corpus.jsonl", encoding="utf-8")]
    queries = [json.loads(line) for line in open(folder / "queries.jsonl", encoding="utf-8")]
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    with open(folder / "qrels.tsv", encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            q, d, s = line.rstrip("\n").split("\t")
            qrels[q][d] = int(s)
    return corpus, [q for q in queries if q["_id"] in qrels], qrels


def measures(ranked: list[str], rel: dict[str, int]) -> dict[str, float]:
    dcg = sum(rel.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:10]))
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(sorted(rel.values(), reverse=True)[:10]))
    relevant = {d for d, r in rel.items() if r > 0}
    first = next((i for i, d in enumerate(ranked[:10]) if d in relevant), None)
    return {"ndcg@10": dcg / idcg if idcg else 0.0,
            "recall@1": len(relevant & set(ranked[:1])) / len(relevant),
            "recall@10": len(relevant & set(ranked[:10])) / len(relevant),
            "mrr@10": 1.0 / (first + 1) if first is not None else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--work", type=Path, default=Path("/tmp/searchkit-eval"))
    parser.add_argument("--set", action="append", default=[], help="index-time KEY=VALUE")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--max-docs", type=int, help="index only the first N documents")
    parser.add_argument("--dump", type=Path, help="write every query's candidate lists here")
    args = parser.parse_args()
    overrides = {"model.name": "all-MiniLM-L6-v2"}
    overrides.update(item.split("=", 1) for item in args.set)
    suffix = "".join(f"-{k.split('.')[-1]}{v}" for k, v in sorted(overrides.items()) if k != "model.name")
    folder = args.work / (args.dataset.name + suffix)
    base = load_config(overrides=overrides, discover=False)
    corpus, queries, qrels = load(args.dataset)
    if args.max_docs:
        # A prefix of the corpus, and only the queries whose relevant documents are all in it
        # (for sets too large to embed on a busy machine; the table says so).
        corpus = corpus[:args.max_docs]
        kept = {d["_id"] for d in corpus}
        queries = [q for q in queries if set(qrels[q["_id"]]) <= kept]
    started = time.perf_counter()
    with SearchIndex.open(folder, config=base, create=True) as ix:
        report = ix.add_records({"id": d["_id"], "text": (d["title"] + "\n\n" + d["text"]) if d["title"] else d["text"],
                                 "title": d["title"] or " "} for d in corpus)
    print(f"{args.dataset.name}: {report.summary()} in {time.perf_counter() - started:.0f}s",
          file=sys.stderr)
    depth = base.search.rerank_depth
    runs: dict[str, list[dict[str, float]]] = defaultdict(list)
    dump: list[dict] = []
    t0 = time.perf_counter()
    with SearchIndex.open(folder, config=base) as ix:
        # Each query is searched four ways; SearchIndex embeds it once (its query cache).
        for q in queries:
            lists = {
                "dense": ix.search(q["text"], k=depth, mode="dense"),
                "dense+late": ix.search(q["text"], k=depth, mode="dense", rerank="late"),
                "keyword": ix.search(q["text"], k=depth, mode="keyword"),
            }
            # The product path for the default hybrid, as a check on the offline fusion below.
            lists["hybrid (product path)"] = ix.search(q["text"], k=10, mode="hybrid")
            scores = {name: {h.key: h.score for h in hits} for name, hits in lists.items()}
            dump.append({"query": q["_id"], "qrels": qrels[q["_id"]], **scores})
            for name, hits in lists.items():
                runs[name].append(measures([h.key for h in hits], qrels[q["_id"]]))
            for dense_name in ("dense", "dense+late"):
                for fname, (method, weight, rrf_k) in FUSIONS.items():
                    fused = fuse(scores[dense_name], scores["keyword"], method, weight, rrf_k, depth)
                    ranked = sorted(fused, key=lambda d: (-fused[d], d))
                    runs[f"hybrid {fname}" + (" +late" if dense_name != "dense" else "")].append(
                        measures(ranked, qrels[q["_id"]]))
    print(f"{args.dataset.name}: {len(queries)} queries in {time.perf_counter() - t0:.0f}s",
          file=sys.stderr)
    results = {name: {m: round(sum(r[m] for r in rows) / len(rows), 4) for m in rows[0]}
               for name, rows in runs.items()}
    for name, figures in results.items():
        print(f"{args.dataset.name:22} {name:30} " + "  ".join(
            f"{m} {v:.3f}" for m, v in figures.items()), file=sys.stderr, flush=True)
    if args.dump:
        args.dump.write_text(json.dumps(dump))
    if args.json:
        print(json.dumps({"dataset": args.dataset.name, "index": str(folder), "results": results}))


if __name__ == "__main__":
    main()
