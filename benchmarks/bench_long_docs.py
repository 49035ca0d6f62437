"""One long document through searchkit's embedder: time and peak memory at 512, 2048, 8192 tokens.

The bundled all-MiniLM-L6-v2 (256-token windows, 64-token overlap: what searchkit does with a
short-context model) embeds one document of L content tokens of real text (State of the Union
addresses from sample_corpus/, concatenated) with ``ingest.embed_documents``: windows batched by
token budget, stitched, then the document vector and the late-chunk vectors pooled. Same method
as benchmarks/bench_jina_memory.py, so the tables compare: each measurement is a fresh process
that loads the model, warms up on 16 tokens, resets the peak RSS (``/proc/self/clear_refs``),
embeds the document once (peak RSS minus the RSS just before = *added*), then times a second,
warm call (wall and CPU seconds). Median of --runs processes.

    HF_HUB_OFFLINE=1 nice -n 5 python3 benchmarks/bench_long_docs.py [--runs 3] [--lengths 512 2048 8192]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import common
from common import median


def rss_mb() -> float:
    import os
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def worker(n_tokens: int, batch_tokens: int | None) -> dict:
    from searchkit.config import ChunkingConfig, Config, ModelConfig
    from searchkit.ingest.documents import Skipped, iter_files, read_document, record_document
    from searchkit.embedding.embedder import Embedder
    from searchkit.ingest.embedding_pass import embed_documents

    cfg = ModelConfig(name="all-MiniLM-L6-v2", runtime="torch", **({"batch_tokens": batch_tokens} if batch_tokens else {}))
    embedder = Embedder.load(cfg)
    paths = sorted(p for p in iter_files([common.ROOT / "sample_corpus"], Config().ingest.extensions)
                   if not isinstance(p, Skipped))
    text = "\n\n".join(d.text for d in map(read_document, paths) if not isinstance(d, Skipped))
    toks = embedder.tokenize(text)
    assert len(toks) >= n_tokens, "sample_corpus is too short"
    doc = record_document("long", text[: toks.offsets[n_tokens - 1][1]])
    embed_documents(embedder, [record_document("warm", "a short warm-up text of a few tokens")], ChunkingConfig())
    base = rss_mb()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    t0 = time.perf_counter()
    out = embed_documents(embedder, [doc], ChunkingConfig())
    first = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert abs(out[0].n_tokens - n_tokens) <= 2, out[0].n_tokens
    t0, c0 = time.perf_counter(), time.process_time()
    embed_documents(embedder, [doc], ChunkingConfig())
    return {"seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0, "first": first,
            "added_mb": peak - base, "peak_mb": peak, "tokens": out[0].n_tokens, "chunks": len(out[0].chunks)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--batch-tokens", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads in each worker")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--lengths", type=int, nargs="+", default=[512, 2048, 8192])
    args = ap.parse_args()
    if args.worker:
        if args.threads:
            import torch
            torch.set_num_threads(args.threads)
        print(json.dumps(worker(args.worker, args.batch_tokens)))
        return
    rows = {}
    for _ in range(args.runs):
        for n in args.lengths:
            cmd = [sys.executable, __file__, "--worker", str(n)]
            if args.batch_tokens:
                cmd += ["--batch-tokens", str(args.batch_tokens)]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                raise SystemExit(proc.stderr[-3000:])
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.setdefault(n, []).append(r)
            print(f"L={n}: {r['seconds']:.2f}s, cpu {r['cpu']:.2f}s, +{r['added_mb']:.0f} MB", file=sys.stderr, flush=True)
    print(common.machine())
    print("\n| tokens | windows (256, overlap 64) | added memory (MB) | peak RSS (MB) | time (s) | CPU time (s) | "
          "tokens/s (wall) | tokens/CPU-s | first call (s) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, rs in rows.items():
        m = {k: median([r[k] for r in rs]) for k in ("seconds", "cpu", "first", "added_mb", "peak_mb")}
        windows = 1 if n <= 254 else 1 + -(-(n - 254) // 190)
        print(f"| {n} | {windows} | {m['added_mb']:.0f} | {m['peak_mb']:.0f} | {m['seconds']:.2f} | {m['cpu']:.2f} | "
              f"{n / m['seconds']:,.0f} | {n / m['cpu']:,.0f} | {m['first']:.2f} |")


if __name__ == "__main__":
    main()
