"""Warm query latency and ANN recall at 10k, 100k and 1M vectors, through searchkit.backends.local.ann.

Vectors (see BENCHMARKS.md for how each is made):

- ``real``: late-chunk vectors of git_whatis + pg_refpurpose from ``benchmarks/real_vectors.py``
  (or an eval index's ``chunks.vector`` with ``--source DIR/searchkit.db``), a random subset of
  the wanted size;
- ``synthetic``: the real pool plus points made around it until the wanted size: each new
  point lies on the segment from a random real vector ``r`` to one of its 10 nearest real
  neighbours ``r'`` (``r + t·(r' − r)``, ``t ~ U(0, 1)``), plus isotropic Gaussian noise of
  ``--noise`` per dimension, renormalised. ``--check`` builds a synthetic collection at the size
  of the real one so the two can be compared.

Queries are the eval queries of the same corpora, embedded by searchkit (never database rows).
Each setting is built with ``VectorIndex.build`` (what ``searchkit rebuild`` runs), then every
query is searched alone (k=10), as ``SearchIndex.search`` does, ``--repeats`` times, timings
interleaved across settings; recall@10 is against exact (flat) search on the same queries.

    HF_HUB_OFFLINE=1 nice -n 5 python3 benchmarks/bench_query.py [--sizes 10000 100000 1000000] [--check]
"""

from __future__ import annotations

import argparse
import json
import math
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import common
from common import pct

import faiss  # noqa: E402
from searchkit.backends.local import ann  # noqa: E402
from searchkit.backends.local.ann import AnnParams, VectorIndex, choose_params  # noqa: E402
from searchkit.config import AnnConfig, ModelConfig  # noqa: E402

VECTORS = common.OUT / "vectors"
DATASETS = ("git_whatis", "pg_refpurpose")
K = 10


def real_pool(source: Path | None) -> np.ndarray:
    if source is not None:
        rows = sqlite3.connect(source).execute("SELECT vector FROM chunks").fetchall()
        return np.frombuffer(b"".join(r[0] for r in rows), dtype=np.float32).reshape(len(rows), -1)
    parts = []
    for d in available():
        done = VECTORS / f"{d}.chunks.npy"
        parts.append(np.load(done) if done.exists() else np.load(VECTORS / f"{d}.partial.npz")["chunks"])
    return np.concatenate(parts)


def available() -> list[str]:
    """Corpora with vectors: finished, or cut short (``real_vectors.py`` checkpoints as it goes)."""
    return [d for d in DATASETS if (VECTORS / f"{d}.chunks.npy").exists()
            or (VECTORS / f"{d}.partial.npz").exists()]


def query_vectors() -> np.ndarray:
    """The eval queries of the corpora in the pool, embedded by searchkit."""
    out = []
    for d in available():
        path = VECTORS / f"{d}.queries.npy"
        if not path.exists():
            from searchkit.embedding.embedder import Embedder
            np.save(path, Embedder.load(ModelConfig(name="all-MiniLM-L6-v2", runtime="torch")).encode_queries(common.eval_queries(d)))
        out.append(np.load(path))
    return np.concatenate(out)


def synthetic(pool: np.ndarray, n: int, noise: float, seed: int = 0) -> np.ndarray:
    """``pool`` plus points between real neighbours, up to ``n`` rows (see the module docstring)."""
    rng = np.random.default_rng(seed)
    # 10 nearest real neighbours of every real vector (IVF, good enough to pick a neighbour).
    nlist = int(4 * math.sqrt(len(pool)))
    ivf = build(AnnParams("ivf", nlist=nlist), pool, 64)
    ivf.index.nprobe = 32
    _, nn = ivf.index.search(pool, 11)
    extra = max(0, n - len(pool))
    anchor = rng.integers(0, len(pool), size=extra)
    pick = nn[anchor, rng.integers(1, 11, size=extra)]
    pick = np.where(pick < 0, anchor, pick)
    t = rng.random((extra, 1), dtype=np.float32)
    made = pool[anchor] + t * (pool[pick] - pool[anchor])
    made += rng.normal(0.0, noise, size=made.shape).astype(np.float32)
    made /= np.linalg.norm(made, axis=1, keepdims=True)
    out = np.concatenate([pool, made]) if n >= len(pool) else made[:n]
    return out[rng.permutation(len(out))][:n]


def settings(n: int, with_hnsw: bool, train: int, lean: bool = False) -> list[tuple[str, AnnParams, dict, int]]:
    """(label, structure, search knobs, IVF training points per list): defaults and a few others."""
    cfg = AnnConfig()
    nl = choose_params(AnnConfig(type="ivf"), n).nlist
    out = [("flat", AnnParams("flat"), {}, train)]
    for probe in ((8, 16, 32, 64) if lean else (1, 4, 8, 16, 32, 64)):
        out.append((f"ivf nlist={nl} nprobe={probe}" + (" (default)" if probe == cfg.nprobe else ""),
                    AnnParams("ivf", nlist=nl), {"nprobe": probe}, train))
    if n >= 100_000 and not lean:
        for probe in (4, 16):
            out.append((f"ivf nlist={nl // 4} nprobe={probe}", AnnParams("ivf", nlist=nl // 4),
                        {"nprobe": probe}, train))
        if train > 64:
            for probe in (16, 32):
                out.append((f"ivf nlist={nl} nprobe={probe}, trained on 64/list", AnnParams("ivf", nlist=nl),
                            {"nprobe": probe}, 64))
    if with_hnsw:
        for m in (16, 32):
            for ef in (16, 32, 64, 128):
                default = m == cfg.hnsw_m and ef == cfg.ef_search
                out.append((f"hnsw M={m} efC={cfg.ef_construction} efSearch={ef}" + (" (default)" if default else ""),
                            AnnParams("hnsw", hnsw_m=m, ef_construction=cfg.ef_construction),
                            {"ef_search": ef}, train))
    return out


def build(params: AnnParams, base: np.ndarray, train: int) -> VectorIndex:
    """``VectorIndex.build``; IVF trained on ``train`` points per list (searchkit: up to 256)."""
    original = ann._training_sample
    if params.kind == "ivf" and train != 256:
        ann._training_sample = lambda v, nlist: original(v, nlist * train // 256)
    try:
        return VectorIndex.build(params, base.shape[1], np.arange(len(base), dtype=np.int64), base)
    finally:
        ann._training_sample = original


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[f >= 0]) & set(t)) / len(t) for f, t in zip(found, truth)]))


def time_queries(index: VectorIndex, queries: np.ndarray, knobs: dict) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds (this thread's: one query runs on one thread) of each single-query search."""
    wall, cpu = [], []
    for q in queries:
        t0, c0 = time.perf_counter(), time.thread_time()
        index.search(q, K, **knobs)
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - t0)
    return wall, cpu


def bench_collection(label: str, base: np.ndarray, queries: np.ndarray, args, tmp: Path) -> list[dict]:
    n, dim = base.shape
    truth = faiss.IndexFlatIP(dim)
    truth.add(base)
    _, gt = truth.search(queries, K)
    del truth
    built: dict[tuple, tuple[VectorIndex, float, int, int]] = {}
    rows = []
    plan = settings(n, n <= args.hnsw_max, args.train_per_list, args.lean)
    for name, params, knobs, train in plan:
        key = (params, train)
        if key not in built:
            t0 = time.perf_counter()
            index = build(params, base, train)
            seconds = time.perf_counter() - t0
            path = tmp / "x.faiss"
            index.save(path)
            built[key] = (index, seconds, path.stat().st_size, index.memory_bytes())
            path.unlink()
            print(f"{label} n={n:,}: built {params.as_dict()} (train {train}/list) in {seconds:.1f}s",
                  file=sys.stderr, flush=True)
        index, seconds, disk, mem = built[key]
        _, found = index.search(queries, K, **knobs)  # recall over every query (batched, same result)
        rows.append({"collection": label, "n": n, "setting": name, "params": params.as_dict(), "knobs": knobs,
                     "train_per_list": train, "build_s": seconds, "disk_bytes_per_vector": disk / n,
                     "memory_bytes_per_vector": mem / n, "recall": recall_at_k(found, gt),
                     "times": [], "cpu": [], "times_omp": []})
    lat = queries[:args.latency_queries]
    omp = faiss.omp_get_max_threads()
    for rep in range(args.repeats):  # interleaved: every setting once per repeat
        for row, (name, params, knobs, train) in zip(rows, plan):
            index = built[(params, train)][0]
            if rep == 0:
                time_queries(index, lat[:20], knobs)  # warm-up
            times, cpu = time_queries(index, lat, knobs)
            row["times"].extend(times)
            row["cpu"].extend(cpu)
            if "default" in name or name == "flat":
                # The same searches as FAISS runs them by default: its whole OpenMP team per call.
                row["times_omp"].extend(time_raw(index, lat, knobs))
    for row in rows:
        t, t_omp, cpu = row.pop("times"), row.pop("times_omp"), row.pop("cpu")
        row["p50_ms"], row["p95_ms"] = pct(t, 50) * 1e3, pct(t, 95) * 1e3
        row["cpu_p50_ms"], row["cpu_p95_ms"] = pct(cpu, 50) * 1e3, pct(cpu, 95) * 1e3
        if t_omp:
            row["omp_threads"] = omp
            row["p50_ms_omp"], row["p95_ms_omp"] = pct(t_omp, 50) * 1e3, pct(t_omp, 95) * 1e3
        print(f"{label} n={n:,} {row['setting']}: recall@10 {row['recall']:.3f}, CPU p50 {row['cpu_p50_ms']:.2f} ms, "
              f"p50 {row['p50_ms']:.2f} ms, "
              f"p95 {row['p95_ms']:.2f} ms" + (f"; {omp} OpenMP threads: p50 {row['p50_ms_omp']:.2f}, "
                                                f"p95 {row['p95_ms_omp']:.2f}" if t_omp else ""),
              file=sys.stderr, flush=True)
    return rows


def time_raw(index: VectorIndex, queries: np.ndarray, knobs: dict) -> list[float]:
    """Single-query searches straight through FAISS with its default thread count."""
    params = None
    if "nprobe" in knobs:
        params = faiss.SearchParametersIVF(nprobe=knobs["nprobe"])
    elif "ef_search" in knobs:
        params = faiss.SearchParametersHNSW(efSearch=knobs["ef_search"])
    times = []
    for q in queries:
        q = q[None, :]
        t0 = time.perf_counter()
        index.index.search(q, K, params=params)
        times.append(time.perf_counter() - t0)
    return times


def embed_latency(texts: list[str], repeats: int) -> dict:
    """One query per call: ``encode_queries`` (one torch thread) vs the same tokens on torch's default threads."""
    import torch

    from searchkit.embedding.embedder import SPECIAL_TOKENS, Embedder
    embedder = Embedder.load(ModelConfig(name="all-MiniLM-L6-v2", runtime="torch"))
    embedder.encode_queries(texts[:10])
    limit = embedder.info.window_tokens - SPECIAL_TOKENS

    def default_threads(t: str) -> None:
        embedder.embed_pieces([embedder.tokenize(t).ids[:limit]])

    ways = {"searchkit": lambda t: embedder.encode_queries([t]), "default_threads": default_threads}
    wall = {w: [] for w in ways}
    cpu = {w: [] for w in ways}
    for rep in range(repeats):
        for way in (list(ways) if rep % 2 == 0 else list(ways)[::-1]):
            for t in texts:
                t0, c0 = time.perf_counter(), time.process_time()
                ways[way](t)
                wall[way].append(time.perf_counter() - t0)
                cpu[way].append(time.process_time() - c0)
    return {w: {"p50_ms": pct(wall[w], 50) * 1e3, "p95_ms": pct(wall[w], 95) * 1e3,
                "cpu_p50_ms": pct(cpu[w], 50) * 1e3, "n": len(wall[w])} for w in ways} | {
        "torch_threads": torch.get_num_threads()}


def print_table(result: dict) -> None:
    print("\n| vectors | n | setting | recall@10 | CPU p50 / p95 ms | wall p50 / p95 ms | "
          "wall, FAISS default threads: p50 / p95 ms | build s | disk B/vec | RAM B/vec |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in result["rows"]:
        omp = f"{r['p50_ms_omp']:.2f} / {r['p95_ms_omp']:.2f}" if "p50_ms_omp" in r else ""
        print(f"| {r['collection']} | {r['n']:,} | {r['setting']} | {r['recall']:.3f} | "
              f"{r['cpu_p50_ms']:.2f} / {r['cpu_p95_ms']:.2f} | {r['p50_ms']:.2f} / {r['p95_ms']:.2f} | {omp} | {r['build_s']:.1f} | {r['disk_bytes_per_vector']:.0f} | "
              f"{r['memory_bytes_per_vector']:.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--source", type=Path, default=None, help="a searchkit.db to read real chunk vectors from")
    ap.add_argument("--noise", type=float, default=0.01, help="synthetic: Gaussian noise per dimension")
    ap.add_argument("--check", action="store_true", help="also a synthetic collection of the largest real size")
    ap.add_argument("--anchor-share", type=float, default=None,
                    help="--check: real anchors / synthetic size (default: as in the largest synthetic size)")
    ap.add_argument("--hnsw-max", type=int, default=100_000, help="build HNSW only up to this size")
    ap.add_argument("--latency-queries", type=int, default=200)
    ap.add_argument("--train-per-list", type=int, default=256,
                    help="IVF training points per list (searchkit: 256; less builds faster at 1M)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-embed", action="store_true", help="skip the query-embedding latency")
    ap.add_argument("--lean", action="store_true", help="only flat and the default IVF structure (for 1M on a busy machine)")
    ap.add_argument("--json", type=Path, default=common.OUT / "bench_query.json")
    ap.add_argument("--table", type=Path, default=None, help="print the table of a saved --json and exit")
    args = ap.parse_args()
    if args.table:
        print_table(json.loads(args.table.read_text()))
        return

    pool = real_pool(args.source)
    queries = np.ascontiguousarray(query_vectors())
    print(common.machine(), f"faiss omp threads {faiss.omp_get_max_threads()}; real pool {len(pool):,} "
          f"x {pool.shape[1]}, {len(queries)} queries", file=sys.stderr)
    rng = np.random.default_rng(1)
    tmp = Path(tempfile.mkdtemp(prefix="searchkit-bench-"))
    result = {"machine": common.machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "pool": len(pool), "queries": len(queries), "noise": args.noise, "rows": []}
    if not args.no_embed:
        texts = [q for d in available() for q in common.eval_queries(d)][:args.latency_queries]
        result["embed"] = embed_latency(texts, args.repeats)
        print(f"query embedding: {result['embed']}", file=sys.stderr, flush=True)
    real_sizes = [n for n in args.sizes if n <= len(pool)]
    for n in args.sizes:
        if n <= len(pool):
            base = np.ascontiguousarray(pool[np.sort(rng.choice(len(pool), n, replace=False))])
            result["rows"] += bench_collection("real", base, queries, args, tmp)
        else:
            base = synthetic(pool, n, args.noise)
            result["rows"] += bench_collection("synthetic", base, queries, args, tmp)
        del base
        args.json.write_text(json.dumps(result, indent=2))
    if args.check and real_sizes:
        n = max(real_sizes)
        result["anchor_share"] = args.anchor_share or len(pool) / max(args.sizes + [n])
        # As many real anchors per synthetic point as the largest synthetic size has (or --anchor-share).
        share = args.anchor_share or len(pool) / max(args.sizes + [n])
        anchors = max(int(n * share), 1000)
        base = synthetic(pool[rng.permutation(len(pool))[:anchors]], n, args.noise, seed=2)
        result["rows"] += bench_collection("synthetic-check", base, queries, args, tmp)
    args.json.write_text(json.dumps(result, indent=2))
    print_table(result)
    if "embed" in result and "searchkit" in result["embed"]:
        e = result["embed"]
        for way, label in (("searchkit", "encode_queries (one torch thread)"),
                           ("default_threads", f"torch default ({e['torch_threads']} threads)")):
            r = e[way]
            print(f"query embedding, {label}: wall p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, "
                  f"process CPU p50 {r['cpu_p50_ms']:.1f} ms ({r['n']} calls)")


if __name__ == "__main__":
    main()
