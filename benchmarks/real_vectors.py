"""Real 384-d vectors for the ANN benchmark: late-chunk vectors of the shared eval corpora.

Each corpus is embedded once through searchkit's own embedder (bundled all-MiniLM-L6-v2,
256-token windows; no window overlap, to save a quarter of the model time on this shared
machine); every document's stitched token matrix is pooled into fixed late chunks of
``--chunk`` tokens (16 by default: git_whatis gives 34.6k and pg_refpurpose 100.6k chunk
vectors, 135k in all). One torch thread: the job runs in the background beside others. The eval queries of
each corpus are embedded with ``Embedder.encode_queries`` (the path a search takes).

Writes ``<out>/<dataset>.chunks.npy``, ``.docs.npy`` and ``.queries.npy`` (float32, L2-normalised);
a corpus already written is skipped, and a corpus cut short resumes from its last checkpoint.

    HF_HUB_OFFLINE=1 nice -n 5 python3 benchmarks/real_vectors.py [--chunk 16] [--out bench_out/vectors]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from searchkit.embedding.chunking import fixed_spans  # noqa: E402
from searchkit.config import ModelConfig  # noqa: E402
from searchkit.embedding.embedder import Embedder  # noqa: E402
from searchkit.embedding.pooling import normalize, pool_spans  # noqa: E402

EVAL = Path(os.environ.get("SEARCHKIT_EVAL_DIR", ROOT.parent / "shared" / "eval"))
DATASETS = ("git_whatis", "pg_refpurpose")


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def embed_corpus(embedder: Embedder, name: str, chunk: int, out: Path, batch_docs: int = 16) -> None:
    corpus = read_jsonl(EVAL / name / "corpus.jsonl")
    queries = read_jsonl(EVAL / name / "queries.jsonl")
    texts = [(d.get("title") or "") + "\n" + d["text"] if d.get("title") else d["text"] for d in corpus]
    chunks, docs, fed, first = [], [], 0, 0
    partial = out / f"{name}.partial.npz"
    if partial.exists():  # resume an interrupted run
        saved = np.load(partial)
        chunks, docs, first = [saved["chunks"]], list(saved["docs"]), int(saved["next"])
    start = time.perf_counter()
    for b in range(first, len(texts), batch_docs):
        toks = [embedder.tokenize(t) for t in texts[b:b + batch_docs]]
        toks = [t for t in toks if len(t)]
        for t, m in zip(toks, embedder.token_matrices(toks)):
            docs.append(normalize(m.mean(axis=0)))
            chunks.append(normalize(pool_spans(m, fixed_spans(len(t), chunk))))
            fed += len(t)
        rate = fed / (time.perf_counter() - start)
        if (b // batch_docs) % 8 == 7:
            np.savez(partial, chunks=np.concatenate(chunks), docs=np.stack(docs), next=b + batch_docs)
        print(f"{name}: {b + len(toks)}/{len(texts)} docs, {sum(len(c) for c in chunks)} chunks, "
              f"{fed:,} tokens, {rate:,.0f} tok/s", file=sys.stderr, flush=True)
    q = embedder.encode_queries([x["text"] for x in queries])
    np.save(out / f"{name}.queries.npy", q.astype(np.float32))
    np.save(out / f"{name}.docs.npy", np.stack(docs).astype(np.float32))
    np.save(out / f"{name}.chunks.npy", np.concatenate(chunks).astype(np.float32))
    partial.unlink(missing_ok=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunk", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "bench_out" / "vectors")
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    import torch
    torch.set_num_threads(args.threads)
    embedder = Embedder.load(ModelConfig(name="all-MiniLM-L6-v2", window_overlap=0))
    for name in args.datasets:
        if (args.out / f"{name}.chunks.npy").exists():
            continue
        embed_corpus(embedder, name, args.chunk, args.out)


if __name__ == "__main__":
    main()
