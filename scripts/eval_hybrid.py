"""Dense vs keyword vs hybrid on BEIR-layout sets (issue 5), until `searchkit eval --mode` lands.

    python3 scripts/eval_hybrid.py /work/shared/eval/git_whatis --work /tmp/hyb/ix [--json]

Indexes the corpus once per set (kept in --work and reused: unchanged records are not
embedded again) with the bundled all-MiniLM-L6-v2 and the shipped index defaults, then scores
every query under each ranking configuration: nDCG@10, recall@1, recall@10, MRR@10.
Record titles are left empty (the sets have none); a title equal to the document id would
leak the answer into the keyword index.
"""

from __future__ import annotations

import argparse
import dataclasses
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

# name → SearchIndex.search keyword arguments (plus search.* settings as "set").
RUNS = {
    "dense": {"mode": "dense"},
    "dense+late": {"mode": "dense", "rerank": "late"},
    "keyword": {"mode": "keyword"},
    "hybrid rrf": {"mode": "hybrid"},
    "hybrid rrf k=20": {"mode": "hybrid", "set": {"search.rrf_k": 20}},
    "hybrid rrf w=0.3": {"mode": "hybrid", "set": {"search.keyword_weight": 0.3}},
    "hybrid rrf w=0.7": {"mode": "hybrid", "set": {"search.keyword_weight": 0.7}},
    "hybrid rrf+late": {"mode": "hybrid", "rerank": "late"},
    "hybrid weighted 0.3": {"mode": "hybrid", "fusion": "weighted", "set": {"search.keyword_weight": 0.3}},
    "hybrid weighted 0.5": {"mode": "hybrid", "fusion": "weighted"},
    "hybrid weighted 0.7": {"mode": "hybrid", "fusion": "weighted", "set": {"search.keyword_weight": 0.7}},
    "hybrid weighted 0.5+late": {"mode": "hybrid", "fusion": "weighted", "rerank": "late"},
}


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
    parser.add_argument("--runs", default=",".join(RUNS))
    parser.add_argument("--set", action="append", default=[], help="index-time KEY=VALUE")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    overrides = {"model.name": "all-MiniLM-L6-v2"}
    overrides.update(item.split("=", 1) for item in args.set)
    suffix = "".join(f"-{k.split('.')[-1]}{v}" for k, v in sorted(overrides.items()) if k != "model.name")
    folder = args.work / (args.dataset.name + suffix)
    base = load_config(overrides=overrides, discover=False)
    corpus, queries, qrels = load(args.dataset)
    started = time.perf_counter()
    with SearchIndex.open(folder, config=base, create=True) as ix:
        report = ix.add_records({"id": d["_id"], "text": (d["title"] + "\n\n" + d["text"]) if d["title"] else d["text"],
                                 "title": d["title"] or " "} for d in corpus)
    print(f"{args.dataset.name}: {report.summary()} in {time.perf_counter() - started:.0f}s",
          file=sys.stderr)
    results = {}
    for name in args.runs.split(","):
        run = dict(RUNS[name])
        settings = run.pop("set", {})
        config = load_config(overrides={**overrides, **settings}, discover=False)
        totals: dict[str, float] = defaultdict(float)
        t0 = time.perf_counter()
        with SearchIndex.open(folder, config=config) as ix:
            for q in queries:
                hits = ix.search(q["text"], k=10, **run)
                for m, v in measures([h.key for h in hits], qrels[q["_id"]]).items():
                    totals[m] += v
        results[name] = {m: round(v / len(queries), 4) for m, v in totals.items()}
        results[name]["ms/query"] = round(1000 * (time.perf_counter() - t0) / len(queries), 1)
        print(f"{args.dataset.name:22} {name:26} " + "  ".join(
            f"{m} {v:.3f}" for m, v in results[name].items()), file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps({"dataset": args.dataset.name, "index": str(folder), "results": results}))


if __name__ == "__main__":
    main()
