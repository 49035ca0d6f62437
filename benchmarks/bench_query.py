"""Warm query latency and ANN recall at 10k, 100k and 1M vectors, through searchkit.ann.

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
from common import median, pct

import faiss  # noqa: E402
from searchkit.ann import AnnParams, VectorIndex, choose_params  # noqa: E402
from searchkit.config import AnnConfig, ModelConfig  # noqa: E402

VECTORS = common.OUT / "vectors"
DATASETS = ("git_whatis", "pg_refpurpose")
K = 10


def real_pool(source: Path | None) -> np.ndarray:
    if source is not None:
        rows = sqlite3.connect(source).execute("SELECT vector FROM chunks").fetchall()
        return np.frombuffer(b"".join(r[0] for r in rows), dtype=np.float32).reshape(len(rows), -1)
    return np.concatenate([np.load(VECTORS / f"{d}.chunks.npy") for d in DATASETS])


def query_vectors() -> np.ndarray:
    return np.concatenate([np.load(VECTORS / f"{d}.queries.npy") for d in DATASETS])


def synthetic(pool: np.ndarray, n: int, noise: float, seed: int = 0) -> np.ndarray:
    """``pool`` plus points between real neighbours, up to ``n`` rows (see the module docstring)."""
    rng = np.random.default_rng(seed)
    dim = pool.shape[1]
    # 10 nearest real neighbours of every real vector (IVF, good enough to pick a neighbour).
    nlist = int(4 * math.sqrt(len(pool)))
    ivf = VectorIndex.build(AnnParams("ivf", nlist=nlist), dim, np.arange(len(pool)), pool)
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


def settings(n: int, with_hnsw: bool) -> list[tuple[str, AnnParams, dict]]:
    """(label, structure, search knobs): the defaults that ``auto`` picks, and a few others."""
    cfg = AnnConfig()
    nl = choose_params(AnnConfig(type="ivf"), n).nlist
    out = [("flat", AnnParams("flat"), {})]
    for probe in (1, 4, 8, 16, 32, 64):
        out.append((f"ivf nlist={nl} nprobe={probe}" + (" (default)" if probe == cfg.nprobe else ""),
                    AnnParams("ivf", nlist=nl), {"nprobe": probe}))
    if n >= 100_000:
        nl2 = nl // 4
        for probe in (4, 16):
            out.append((f"ivf nlist={nl2} nprobe={probe}", AnnParams("ivf", nlist=nl2), {"nprobe": probe}))
    if with_hnsw:
        for m in (16, 32):
            for ef in (16, 32, 64, 128):
                default = m == cfg.hnsw_m and ef == cfg.ef_search
                out.append((f"hnsw M={m} efC={cfg.ef_construction} efSearch={ef}" + (" (default)" if default else ""),
                            AnnParams("hnsw", hnsw_m=m, ef_construction=cfg.ef_construction), {"ef_search": ef}))
    return out


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[f >= 0]) & set(t)) / len(t) for f, t in zip(found, truth)]))


def time_queries(index: VectorIndex, queries: np.ndarray, knobs: dict) -> tuple[list[float], np.ndarray]:
    times, ids = [], []
    for q in queries:
        t0 = time.perf_counter()
        _, found = index.search(q, K, **knobs)
        times.append(time.perf_counter() - t0)
        ids.append(found[0])
    return times, np.stack(ids)


def bench_collection(label: str, base: np.ndarray, queries: np.ndarray, lat_queries: int,
                     repeats: int, with_hnsw: bool, tmp: Path) -> list[dict]:
    n, dim = base.shape
    ids = np.arange(n, dtype=np.int64)
    truth = faiss.IndexFlatIP(dim)
    truth.add(base)
    _, gt = truth.search(queries, K)
    del truth
    built: dict[AnnParams, tuple[VectorIndex, float, int, int]] = {}
    rows = []
    plan = settings(n, with_hnsw)
    for name, params, knobs in plan:
        if params not in built:
            t0 = time.perf_counter()
            index = VectorIndex.build(params, dim, ids, base)
            seconds = time.perf_counter() - t0
            path = tmp / "x.faiss"
            index.save(path)
            built[params] = (index, seconds, path.stat().st_size, index.memory_bytes())
            path.unlink()
            print(f"{label} n={n:,}: built {params.as_dict()} in {seconds:.1f}s", file=sys.stderr, flush=True)
        index, seconds, disk, mem = built[params]
        _, found = index.search(queries, K, **knobs)  # recall over every query (batched, same result)
        rows.append({"collection": label, "n": n, "setting": name, "params": params.as_dict(), "knobs": knobs,
                     "build_s": seconds, "disk_bytes_per_vector": disk / n,
                     "memory_bytes_per_vector": mem / n, "recall": recall_at_k(found, gt), "times": []})
    lat = queries[:lat_queries]
    for rep in range(repeats):  # interleaved: every setting once per repeat
        for row, (name, params, knobs) in zip(rows, plan):
            index = built[params][0]
            if rep == 0:
                time_queries(index, lat[:20], knobs)  # warm-up
            times, _ = time_queries(index, lat, knobs)
            row["times"].extend(times)
    for row in rows:
        t = row.pop("times")
        row["p50_ms"], row["p95_ms"] = pct(t, 50) * 1e3, pct(t, 95) * 1e3
        print(f"{label} n={n:,} {row['setting']}: recall@10 {row['recall']:.3f}, p50 {row['p50_ms']:.2f} ms, "
              f"p95 {row['p95_ms']:.2f} ms", file=sys.stderr, flush=True)
    return rows


def embed_latency(texts: list[str], repeats: int) -> dict:
    from searchkit.embedding.embedder import Embedder
    embedder = Embedder.load(ModelConfig(name="all-MiniLM-L6-v2"))
    embedder.encode_queries(texts[:10])
    times = []
    for _ in range(repeats):
        for t in texts:
            t0 = time.perf_counter()
            embedder.encode_queries([t])
            times.append(time.perf_counter() - t0)
    return {"p50_ms": pct(times, 50) * 1e3, "p95_ms": pct(times, 95) * 1e3, "n": len(times)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--source", type=Path, default=None, help="a searchkit.db to read real chunk vectors from")
    ap.add_argument("--noise", type=float, default=0.01, help="synthetic: Gaussian noise per dimension")
    ap.add_argument("--check", action="store_true", help="also a synthetic collection of the largest real size")
    ap.add_argument("--hnsw-max", type=int, default=100_000, help="build HNSW only up to this size")
    ap.add_argument("--latency-queries", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-embed", action="store_true", help="skip the query-embedding latency")
    ap.add_argument("--json", type=Path, default=common.OUT / "bench_query.json")
    args = ap.parse_args()

    pool = real_pool(args.source)
    queries = np.ascontiguousarray(query_vectors())
    print(common.machine(), f"faiss omp threads {faiss.omp_get_max_threads()}; real pool {len(pool):,} "
          f"x {pool.shape[1]}, {len(queries)} queries", file=sys.stderr)
    rng = np.random.default_rng(1)
    tmp = Path(tempfile.mkdtemp(prefix="searchkit-bench-"))
    result = {"machine": common.machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "pool": len(pool), "queries": len(queries), "noise": args.noise, "rows": []}
    if not args.no_embed:
        texts = [q for d in DATASETS for q in common.eval_queries(d)][:args.latency_queries]
        result["embed"] = embed_latency(texts, args.repeats)
        print(f"query embedding: {result['embed']}", file=sys.stderr, flush=True)
    real_sizes = [n for n in args.sizes if n <= len(pool)]
    for n in args.sizes:
        if n <= len(pool):
            base = np.ascontiguousarray(pool[np.sort(rng.choice(len(pool), n, replace=False))])
            result["rows"] += bench_collection("real", base, queries, args.latency_queries, args.repeats,
                                               n <= args.hnsw_max, tmp)
        else:
            base = synthetic(pool, n, args.noise)
            result["rows"] += bench_collection("synthetic", base, queries, args.latency_queries,
                                               args.repeats, n <= args.hnsw_max, tmp)
        del base
        args.json.write_text(json.dumps(result, indent=2))
    if args.check and real_sizes:
        n = max(real_sizes)
        # As many real anchors per synthetic point as the largest synthetic size has.
        anchors = max(n * len(pool) // max(args.sizes + [n]), 1000)
        base = synthetic(pool[rng.permutation(len(pool))[:anchors]], n, args.noise, seed=2)
        result["rows"] += bench_collection("synthetic-check", base, queries, args.latency_queries,
                                           args.repeats, n <= args.hnsw_max, tmp)
    args.json.write_text(json.dumps(result, indent=2))
    print("\n| vectors | n | setting | recall@10 | search p50 ms | p95 ms | build s | disk B/vec | RAM B/vec |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in result["rows"]:
        print(f"| {r['collection']} | {r['n']:,} | {r['setting']} | {r['recall']:.3f} | {r['p50_ms']:.2f} | "
              f"{r['p95_ms']:.2f} | {r['build_s']:.1f} | {r['disk_bytes_per_vector']:.0f} | "
              f"{r['memory_bytes_per_vector']:.0f} |")
    if "embed" in result:
        e = result["embed"]
        print(f"\nquery embedding (all-MiniLM-L6-v2, one query per call): p50 {e['p50_ms']:.1f} ms, "
              f"p95 {e['p95_ms']:.1f} ms over {e['n']} calls")


if __name__ == "__main__":
    main()
