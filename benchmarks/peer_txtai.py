"""txtai's side of benchmarks/bench_peers.py: a worker run in the throwaway txtai virtualenv.

It indexes the documents once per txtai mode (timed, not counted in query latency), searches
every query once in every mode (warm-up), prints one ``ready`` JSON line, then answers
commands read from stdin, one a line: ``round`` times ``Embeddings.search(query, k)`` for every
query in every mode and prints ``{"dense": [seconds, ...], ...}``; ``quit`` ends it. Stdout
carries only those JSON lines (anything else printed goes to stderr).

``--model fake`` gives txtai searchkit's deterministic fake vectors (txtai's external-vectors
mode calling :class:`searchkit.embedding.fake.FakeEmbedder`); otherwise ``--model`` is a local
model folder. ``--doc-vectors`` (a ``.npy`` aligned with ``--docs``, with a model folder): the
documents' vectors are given, not embedded (the synthetic MiniLM set: searchkit's own document
vectors), and every other text (the queries) is embedded by txtai's own model for that folder,
as ``{"path": folder}`` would. Not meant to be run by hand: bench_peers.py starts it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))   # this worktree's searchkit, not the one site-packages names
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def config(mode: str, model: str, nprobe: int = 0, docs: list[dict] | None = None,
           doc_vectors: Path | None = None) -> dict:
    if doc_vectors is not None:
        import numpy as np
        from txtai import Embeddings

        given = dict(zip((d["text"] for d in docs), np.load(doc_vectors)))
        native = Embeddings({"path": model})   # txtai's query model, never indexed

        def transform(texts):
            texts = list(texts)
            known = [given.get(t) for t in texts]
            missing = [t for t, v in zip(texts, known) if v is None]
            embedded = iter(native.batchtransform(missing) if missing else [])
            return np.stack([v if v is not None else next(embedded) for v in known])

        vectors: dict = {"method": "external", "transform": transform}
    elif model == "fake":
        from searchkit.embedding.fake import FakeEmbedder
        fake = FakeEmbedder()

        def transform(texts):
            return fake.encode_queries(list(texts))

        vectors: dict = {"method": "external", "transform": transform}
    else:
        vectors = {"path": model}
    # txtai's own defaults otherwise: hybrid is BM25 (normalised) + dense, convex 0.5/0.5.
    extra = {"dense": {}, "hybrid": {"hybrid": True}, "keyword": {"keyword": True}}[mode]
    if mode == "keyword":
        vectors = {}
    # nprobe: IVF lists probed per query (0: txtai's default, which probes one).
    probe = {"faiss": {"nprobe": nprobe}} if nprobe else {}
    return {**vectors, "content": True, **extra, **probe}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=Path, required=True, help="JSONL of {id, text}")
    ap.add_argument("--queries", type=Path, required=True, help="JSON list of query texts")
    ap.add_argument("--model", required=True, help="local model folder, or fake")
    ap.add_argument("--modes", default="dense,hybrid")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--faiss-threads", type=int, default=0, help="0: txtai's default (all cores)")
    ap.add_argument("--nprobe", type=int, default=0, help="IVF lists probed (0: txtai's default)")
    ap.add_argument("--doc-vectors", type=Path, default=None,
                    help=".npy of the documents' vectors, aligned with --docs")
    args = ap.parse_args()
    out = sys.stdout
    sys.stdout = sys.stderr

    def send(obj) -> None:
        out.write(json.dumps(obj) + "\n")
        out.flush()

    from txtai import Embeddings

    if args.faiss_threads:
        import faiss
        faiss.omp_set_num_threads(args.faiss_threads)

    with args.docs.open(encoding="utf-8") as fh:
        docs = [json.loads(line) for line in fh]
    queries = json.loads(args.queries.read_text(encoding="utf-8"))
    modes = args.modes.split(",")
    engines, ready = {}, {"index_seconds": {}, "mean_hits": {}, "ann": {}}
    for mode in modes:
        start = time.perf_counter()
        emb = Embeddings(config(mode, args.model, args.nprobe, docs, args.doc_vectors))
        emb.index((d["id"], d["text"], None) for d in docs)
        ready["index_seconds"][mode] = round(time.perf_counter() - start, 2)
        engines[mode] = emb
        if emb.ann is not None:
            backend = emb.ann.backend
            # The lists txtai probes: it sets them at each search (round(cells / 16) by
            # default), so the FAISS object's own attribute still says 1 before the first.
            probes = emb.ann.nprobe() if hasattr(backend, "nprobe") else None
            ready["ann"][mode] = f"{type(backend).__name__} nlist={getattr(backend, 'nlist', None)} nprobe={probes}"
    for mode, emb in engines.items():
        hits = [len(emb.search(q, args.k)) for q in queries]
        ready["mean_hits"][mode] = sum(hits) / max(len(hits), 1)
    ready["documents"] = len(docs)
    send({"ready": ready})
    for line in sys.stdin:
        command = line.strip()
        if command == "quit":
            break
        if command != "round":
            send({"error": f"unknown command {command!r}"})
            continue
        times: dict = {}
        for mode, emb in engines.items():
            took = []
            for q in queries:
                start = time.perf_counter()
                emb.search(q, args.k)
                took.append(time.perf_counter() - start)
            times[mode] = took
        send(times)


if __name__ == "__main__":
    main()
