"""Dev-set sweep for the late-chunking defaults, from ONE model pass per (window, overlap).

The stitched token matrices of every document are kept in memory, so every chunk size, chunk
weight and rerank depth is scored without embedding again (``searchkit eval`` would need one
index, i.e. one pass, per chunk size). Used once to choose config defaults on a dev set; the
figures reported in BENCHMARKS.md come from ``searchkit eval``.

    python3 scripts/tune_late.py ../shared/eval/pg_refpurpose --window 256 --overlap 64
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import json
import time

import numpy as np

from searchkit.embedding.chunking import fixed_spans
from searchkit.config import ModelConfig
from searchkit.evaluation.datasets import load_beir
from searchkit.embedding.embedder import Embedder
from searchkit.evaluation.metrics import score_run
from searchkit.embedding.pooling import normalize, pool_spans

MEASURES = [("ndcg", 10), ("recall", 1), ("recall", 10), ("mrr", 10)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset")
    ap.add_argument("--window", type=int, required=True)
    ap.add_argument("--overlap", type=int, required=True)
    ap.add_argument("--sizes", default="32,64,128,256")
    ap.add_argument("--weights", default="0,0.3,0.5,0.7,0.9,1")
    ap.add_argument("--depths", default="10,20,50,100")
    ap.add_argument("--distractors", type=int, default=None,
                    help="keep only the judged documents plus this many others (seeded), to fit "
                         "the sweep on a shared 2-core machine")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    ds = load_beir(args.dataset)
    if args.distractors is not None:
        judged = {d for rels in ds.qrels.values() for d in rels}
        others = sorted(set(ds.corpus) - judged)
        keep = judged | set(random.Random(0).sample(others, min(args.distractors, len(others))))
        ds = dataclasses.replace(ds, corpus={d: v for d, v in ds.corpus.items() if d in keep})
    emb = Embedder.load(ModelConfig(name="all-MiniLM-L6-v2", window_tokens=args.window,
                                    window_overlap=args.overlap))
    ids = [d for d in ds.corpus]
    texts = [r["text"] for r in ds.records()]
    toks = [emb.tokenize(t) for t in texts]
    start, fed = time.time(), 0
    mats = []
    for i in range(0, len(toks), 64):
        part = toks[i:i + 64]
        mats.extend(m.astype(np.float16) for m in emb.token_matrices(part))
        fed += sum(len(t) for t in part)
        print(f"{i + len(part)}/{len(toks)} docs, {fed / (time.time() - start):,.0f} tok/s", flush=True)
    qids = list(ds.judged_queries)
    qv = emb.encode_queries([ds.queries[q] for q in qids])
    docv = normalize(np.stack([m.astype(np.float32).mean(0) for m in mats]))
    dscore = qv @ docv.T                                    # (Q, D)
    results = {"dataset": ds.name, "documents": len(ids), "distractors": args.distractors, "window": args.window, "overlap": args.overlap,
               "tokens": fed, "seconds": time.time() - start, "runs": {}}

    def rank(scores: np.ndarray) -> dict[str, list[str]]:
        order = np.argsort(-scores, axis=1)[:, :10]
        return {q: [ids[j] for j in row] for q, row in zip(qids, order)}

    results["runs"]["doc-long"] = score_run(rank(dscore), ds.qrels, MEASURES)
    for size in map(int, args.sizes.split(",")):
        cvecs = [normalize(pool_spans(m.astype(np.float32), fixed_spans(m.shape[0] - 2, size)))
                 for m in mats]
        owner = np.concatenate([[j] * len(c) for j, c in enumerate(cvecs)])
        cs = qv @ np.concatenate(cvecs).T                  # (Q, C)
        best = np.full((len(qids), len(ids)), -np.inf, dtype=np.float32)
        for j in range(len(ids)):
            best[:, j] = cs[:, owner == j].max(1)
        results["runs"][f"late{size}"] = score_run(rank(best), ds.qrels, MEASURES)
        for depth in map(int, args.depths.split(",")):
            top = np.argsort(-dscore, axis=1)[:, :depth]
            for w in map(float, args.weights.split(",")):
                final = np.full_like(dscore, -np.inf)
                rows = np.arange(len(qids))[:, None]
                final[rows, top] = (1 - w) * dscore[rows, top] + w * best[rows, top]
                results["runs"][f"rerank{size}-d{depth}-w{w}"] = score_run(rank(final), ds.qrels, MEASURES)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    for name, r in results["runs"].items():
        print(f"{name:28s} " + " ".join(f"{k}={v:.3f}" for k, v in r.items()))


if __name__ == "__main__":
    main()
