"""Storage backends side by side: the local backend (SQLite + FAISS), milvus-lite and a real
Milvus server (PyPI ``milvus``, started on 127.0.0.1 by tests/milvus_server.py).

For each size (10k and 100k chunk vectors by default) and backend: ingest time through the
backend's write session (documents of 10 chunks, batches of 100 documents), warm query latency
of a top-10 chunk search (p50 / p95 over the queries, after one warm-up pass), and recall@10
against exact search over the same vectors.

Vectors: the real 384-d late-chunk vectors of an existing local index (``--pool``, e.g. an
``searchkit eval`` work folder), grown to each size with ``bench_query.synthetic`` (real pool
plus perturbed copies); queries are held-out pool vectors with noise. No model runs.

    nice -n 5 python3 benchmarks/bench_milvus.py --pool INDEX_FOLDER [--sizes 10000 100000] [--consistency Strong]
        [--backends local milvus-lite milvus-server] [--index-type HNSW]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import ROOT, machine, pct

sys.path.insert(0, str(ROOT / "tests"))

from bench_query import synthetic  # noqa: E402
from searchkit.backends.factory import open_backend  # noqa: E402
from searchkit.config import Config, MilvusConfig  # noqa: E402
from searchkit.ingest.documents import Document  # noqa: E402
from searchkit.records import Chunk, EmbeddedDocument  # noqa: E402

CHUNKS_PER_DOC = 10
DOCS_PER_BATCH = 100


def pool_vectors(folder: Path) -> np.ndarray:
    db = sqlite3.connect(f"file:{folder / 'searchkit.db'}?mode=ro", uri=True)
    blobs = [r[0] for r in db.execute("SELECT vector FROM chunks")]
    db.close()
    return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), -1).copy()


def documents(vectors: np.ndarray) -> list[EmbeddedDocument]:
    out = []
    for d, start in enumerate(range(0, len(vectors), CHUNKS_PER_DOC)):
        part = vectors[start:start + CHUNKS_PER_DOC]
        text = " ".join(f"w{d}_{i}" for i in range(len(part) * 4))
        chunks = tuple(Chunk(i, i * 4, i * 4 + 4, 0, len(text), v) for i, v in enumerate(part))
        mean = part.mean(axis=0)
        doc = Document(key=f"doc{d}", text=text, title=f"doc {d}", kind="record",
                       content_hash=f"h{d}", size=len(text))
        out.append(EmbeddedDocument(doc, len(part) * 4, mean / np.linalg.norm(mean), chunks))
    return out


def run(name: str, config: Config, location: Path, base: np.ndarray, queries: np.ndarray,
        truth: list[set[int]]) -> dict:
    backend = open_backend(config.backend, location, config, create=True)
    docs = documents(base)
    start = time.perf_counter()
    chunk_ids: list[int] = []
    with backend.write() as session:
        session.record(model={"name": "bench", "dimension": int(base.shape[1])})
        session.prepare()
        for s in range(0, len(docs), DOCS_PER_BATCH):
            session.replace([], docs[s:s + DOCS_PER_BATCH])
    ingest = time.perf_counter() - start
    with backend.snapshot() as view:
        ids, _ = view.vectors("chunks")
        chunk_ids = ids.tolist()        # ascending, as the vectors were inserted
        position = {cid: n for n, cid in enumerate(chunk_ids)}
        for q in queries[:20]:          # warm-up
            view.vector_search("chunks", q, 10)
        times, recalls = [], []
        for q, want in zip(queries, truth):
            t = time.perf_counter()
            hits = view.vector_search("chunks", q, 10)
            times.append(time.perf_counter() - t)
            recalls.append(len({position[i] for i in hits} & want) / 10)
    backend.close()
    return {"backend": name, "n": len(base), "ingest_s": round(ingest, 1),
            "p50_ms": round(pct(times, 50) * 1000, 2), "p95_ms": round(pct(times, 95) * 1000, 2),
            "recall@10": round(float(np.mean(recalls)), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", type=Path, required=True, help="a local index folder to take real vectors from")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--backends", nargs="+", default=["local", "milvus-lite", "milvus-server"])
    ap.add_argument("--index-type", default="HNSW", help="Milvus index type")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--consistency", default="Strong", help="milvus.consistency of the searches")
    ap.add_argument("--out", type=Path, default=ROOT / "bench_out" / "milvus.json")
    args = ap.parse_args()

    pool = pool_vectors(args.pool)
    rng = np.random.default_rng(1)
    held = pool[rng.permutation(len(pool))[:args.queries]]
    queries = held + rng.normal(scale=0.02, size=held.shape).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    rows, server = [], None
    tmp = Path(tempfile.mkdtemp(prefix="bench_milvus_"))
    try:
        if "milvus-server" in args.backends:
            from milvus_server import MilvusServer
            server = MilvusServer(tmp / "server")
            server.start()
        for n in args.sizes:
            base = synthetic(pool, n, 0.01)
            exact = np.argsort(-(queries @ base.T), axis=1)[:, :10]
            truth = [set(r.tolist()) for r in exact]
            for name in args.backends:
                milvus = MilvusConfig(uri=server.uri if name == "milvus-server" else None,
                                      collection_prefix=f"bench{n}_", index_type=args.index_type,
                                      consistency=args.consistency)
                config = dataclasses.replace(Config(), backend="local" if name == "local" else "milvus",
                                             milvus=milvus)
                row = run(name, config, tmp / f"{name}-{n}", base, queries, truth)
                row["index_type"] = "auto (FAISS)" if name == "local" else \
                    f"{args.index_type}, {args.consistency}"
                print(json.dumps(row), flush=True)
                rows.append(row)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))
    print(f"\n{machine()}\n")
    print("| backend | index | chunk vectors | ingest s | p50 ms | p95 ms | recall@10 |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['backend']} | {r['index_type']} | {r['n']:,} | {r['ingest_s']} | {r['p50_ms']} | "
              f"{r['p95_ms']} | {r['recall@10']} |")


if __name__ == "__main__":
    main()
