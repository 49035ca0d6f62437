"""Dump, once per eval set, every piece of evidence a hybrid query can rank with, so fusion
rules can be compared offline in seconds (``benchmarks/fusion_study.py``).

For each judged query and every document of the set, four scores from the built index:
document-vector cosine, best late-chunk cosine, document BM25 (FTS5, 0 when no term matches)
and best chunk BM25, plus query-level facts (number of FTS terms, each term's document
frequency). The scores are exact over the whole set; the study itself truncates each list
to what the product sees (its top ``rerank_depth``).

    python3 benchmarks/fusion_dump.py ../shared/eval/git_whatis \
        /path/to/evalcache/git_whatis/all-MiniLM-L6-v2_wmax_o64_late-fixed64 out/git_whatis.npz

The index is the one ``searchkit eval --modes doc-long`` builds (late chunks, long late
chunking over overlapping windows). Nothing is written to it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # this checkout's searchkit
from searchkit import SearchIndex  # noqa: E402
from searchkit.backends.local.sql import fts_query  # noqa: E402
from searchkit.evaluation.datasets import load_beir  # noqa: E402

CHUNK_TOP = 1000


def window_bm25(ix, texts: list[str], doc_ids: np.ndarray) -> np.ndarray:
    """``(queries, documents)``: each document's best BM25 over a passage of two adjacent
    chunks, exactly as the search computes it for its head (the local backend's
    ``passage_bm25``), here for every document. Documents in ``doc_ids`` order."""
    out = np.zeros((len(texts), len(doc_ids)), dtype=np.float32)
    column = {int(d): j for j, d in enumerate(doc_ids)}
    every = [int(d) for d in doc_ids]
    with ix.backend.snapshot() as view:
        for q, text in enumerate(texts):
            for doc, score in view.passage_bm25(text, every)[1].items():
                out[q, column[doc]] = score
    return out


def dump(dataset: Path, index: Path, out: Path) -> None:
    start = time.perf_counter()
    data = load_beir(dataset)
    queries = data.judged_queries
    qids = list(queries)
    with SearchIndex.open(index) as ix:
        store = ix.backend.store   # the local backend: SQLite + FTS5
        dim = ix.model_info.dimension
        db = store.db
        doc_ids, doc_vecs = store.vectors("documents", dim)
        keys = dict(db.execute("SELECT id, key FROM documents").fetchall())
        doc_keys = [keys[int(i)] for i in doc_ids]
        position = {int(d): j for j, d in enumerate(doc_ids)}
        chunk_ids, chunk_vecs = store.vectors("chunks", dim)
        owner = dict(db.execute("SELECT id, doc_id FROM chunks").fetchall())
        chunk_doc = np.array([position[owner[int(c)]] for c in chunk_ids], dtype=np.int64)
        qvecs = ix.embedder.encode_queries([queries[q] for q in qids])
        n_docs, n_q = len(doc_ids), len(qids)
        feats = np.zeros((n_q, n_docs, 4), dtype=np.float32)
        feats[:, :, 0] = qvecs @ doc_vecs.T
        feats[:, :, 1] = -1.0
        # The top CHUNK_TOP chunks of each query (document, cosine), as a chunk-vector search
        # returns them, for the study to build the late list the way the product does.
        top_doc = np.zeros((n_q, CHUNK_TOP), dtype=np.int32)
        top_score = np.zeros((n_q, CHUNK_TOP), dtype=np.float32)
        for row, qvec in enumerate(qvecs):
            cos = chunk_vecs @ qvec
            np.maximum.at(feats[row, :, 1], chunk_doc, cos)
            best = np.argsort(-cos, kind="stable")[:CHUNK_TOP]
            top_doc[row, :len(best)], top_score[row, :len(best)] = chunk_doc[best], cos[best]
        # Document frequency of every FTS term, for rare-term features.
        n_terms = np.zeros(n_q, dtype=np.int32)
        term_df: list[list[int]] = []
        for row, q in enumerate(qids):
            match = fts_query(queries[q])
            if match is None:
                term_df.append([])
                continue
            for doc_id, score in store.keyword_documents(match, n_docs).items():
                feats[row, position[doc_id], 2] = score
            for doc_id, score in db.execute(
                    "SELECT c.doc_id, max(f.score) FROM (SELECT rowid, -bm25(chunks_fts) AS score "
                    "FROM chunks_fts WHERE chunks_fts MATCH ? LIMIT -1) f "
                    "JOIN chunks c ON c.id = f.rowid GROUP BY c.doc_id", [match]).fetchall():
                feats[row, position[int(doc_id)], 3] = score
            terms = match.split(" OR ")
            n_terms[row] = len(terms)
            term_df.append([int(db.execute("SELECT count(*) FROM documents_fts WHERE documents_fts "
                                           "MATCH ?", [t]).fetchone()[0]) for t in terms])
        windows = window_bm25(ix, [queries[q] for q in qids], np.asarray(doc_ids))
    rel = np.zeros((n_q, n_docs), dtype=np.int8)
    key_pos = {k: j for j, k in enumerate(doc_keys)}
    for row, q in enumerate(qids):
        for key, grade in data.qrels.get(q, {}).items():
            if key in key_pos and grade > 0:
                rel[row, key_pos[key]] = grade
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, feats=feats, rel=rel, n_terms=n_terms,
                        doc_keys=np.array(doc_keys), qids=np.array(qids),
                        term_df=np.array(json.dumps(term_df)), n_docs=n_docs,
                        n_chunks=len(chunk_ids), chunk_top_doc=top_doc, chunk_top_score=top_score,
                        window_bm25=windows)
    print(f"{data.name}: {n_q} queries x {n_docs} documents, {len(chunk_ids)} chunks -> {out} "
          f"({time.perf_counter() - start:.0f} s)")


def add_windows(dataset: Path, index: Path, out: Path) -> None:
    """Add ``window_bm25`` to a dump made before it existed (the rest is left as it is)."""
    data = load_beir(dataset)
    dump = dict(np.load(out))
    with SearchIndex.open(index) as ix:
        keys = dict(ix.backend.store.db.execute("SELECT key, id FROM documents").fetchall())
        doc_ids = np.asarray([keys[str(k)] for k in dump["doc_keys"]], dtype=np.int64)
        dump["window_bm25"] = window_bm25(ix, [data.judged_queries[str(q)] for q in dump["qids"]],
                                          doc_ids)
    np.savez_compressed(out, **dump)
    print(f"{data.name}: window_bm25 added to {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path, help="BEIR folder")
    parser.add_argument("index", type=Path, help="index folder built by searchkit eval --modes doc-long")
    parser.add_argument("out", type=Path, help="output .npz")
    parser.add_argument("--add-windows", action="store_true",
                        help="only add window_bm25 to an existing dump")
    args = parser.parse_args()
    if args.add_windows:
        add_windows(args.dataset, args.index, args.out)
    else:
        dump(args.dataset, args.index, args.out)


if __name__ == "__main__":
    main()
