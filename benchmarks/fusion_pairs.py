"""Offline check of one more list for the adaptive fusion: BM25 over the query's adjacent
term pairs as phrases ("walter reed", "pass key"), added on the first stage's head.

For each set it computes, from the built index, every judged query's pair-BM25 of every
document (the local backend's in-memory BM25, which ranks phrases exactly as FTS5 does),
then adds ``δ·pair BM25 / best pair BM25 of the head`` to the shipped adaptive scores for a
few ``δ`` and prints nDCG@10 / recall@1 per set. The other numbers stay the shipped ones
(fitted with every set), so this is a screen, not a leave-one-set-out figure.

    python3 benchmarks/fusion_pairs.py DUMPS CACHE [--sets git_whatis,...]

DUMPS holds ``fusion_dump.py``'s ``<set>.npz``; CACHE/<set>/all-MiniLM-L6-v2_wmax_o64_late-fixed64
the index each was dumped from.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import fusion_study as fs  # noqa: E402
from common import EVAL  # noqa: E402
from searchkit import SearchIndex  # noqa: E402
from searchkit.backends.base import query_terms  # noqa: E402
from searchkit.evaluation.datasets import load_beir  # noqa: E402
from searchkit.retrieval import fusion  # noqa: E402

INDEX = "all-MiniLM-L6-v2_wmax_o64_late-fixed64"


def pair_bm25(name: str, dumps: Path, cache: Path) -> np.ndarray:
    """``(queries, documents)`` pair-BM25 in the dump's query and document order."""
    data = load_beir(EVAL / name)
    dump = np.load(dumps / f"{name}.npz")
    keys = list(dump["doc_keys"])
    where = {k: j for j, k in enumerate(keys)}
    out = np.zeros((len(dump["qids"]), len(keys)), dtype=np.float32)
    with SearchIndex.open(cache / name / INDEX) as ix:
        backend = ix.backend
        with backend.snapshot() as view:
            table = backend.keyword_table(view.store, "documents_fts")
            key_of = dict(view.store.db.execute("SELECT id, key FROM documents").fetchall())
            for row, qid in enumerate(dump["qids"]):
                tokens = [t for phrase in backend.query_tokens(query_terms(data.judged_queries[qid]))
                          for t in phrase]
                pairs = list(dict.fromkeys(tuple(tokens[i:i + 2]) for i in range(len(tokens) - 1)))
                for doc_id, score in table.top(view.store, pairs, None) if pairs else []:
                    out[row, where[key_of[doc_id]]] = score
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dumps", type=Path)
    ap.add_argument("cache", type=Path)
    ap.add_argument("--sets", default=",".join(fs.SETS))
    ap.add_argument("--deltas", default="0,0.02,0.05,0.1,0.2")
    args = ap.parse_args()
    names = [s for s in args.sets.split(",") if (args.dumps / f"{s}.npz").exists()]
    w = fusion.SHIPPED
    first = dict(late_share=w.late_share, kw_low=w.keyword_low, kw_high=w.keyword_high,
                 kw_gap=w.keyword_gap, vector_gap_scale=w.vector_gap_scale)
    second = dict(low=w.passage_low, high=w.passage_high, centre=w.passage_gap)
    rows = {}
    for name in names:
        batch = fs.load(args.dumps / f"{name}.npz", fusion.LISTS, 50, 200)
        full = pair_bm25(name, args.dumps, args.cache)
        data = np.load(args.dumps / f"{name}.npz")
        # The pair scores of each query's candidates, in the batch's candidate order.
        pairs = np.zeros(batch.mask.shape)
        for q, found in enumerate(fs.top_lists(data, fusion.LISTS, 50, 200)):
            ids = fusion.gather(found, 50, fusion.LISTS).ids
            pairs[q, :len(ids)] = full[q, ids]
        first_score = fusion.gated(batch.scores, batch.tops, **first)
        head = fs.head_mask(first_score, batch.mask, w.head)
        base = fusion.head_boost(first_score, batch.exact[:, :, 3], head, **second)
        on_head = np.where(head, pairs, 0.0)
        best = on_head.max(1, keepdims=True)
        norm = np.where(best > 0, on_head / np.maximum(best, 1e-12), 0.0)
        rows[name] = {d: fs.measure(batch, base + float(d) * norm) for d in args.deltas.split(",")}
    print("| δ | " + " | ".join(names) + " | mean |\n|---|" + "---:|" * (len(names) + 1))
    for d in args.deltas.split(","):
        cells = [f"{rows[n][d]['ndcg10']:.3f} ({rows[n][d]['recall1']:.2f})" for n in names]
        mean = np.mean([rows[n][d]["ndcg10"] for n in names])
        print(f"| {d} | " + " | ".join(cells) + f" | {mean:.4f} |")


if __name__ == "__main__":
    main()
