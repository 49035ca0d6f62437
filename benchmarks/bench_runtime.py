"""Runtimes side by side: torch against ONNX Runtime (fp32, int8), interleaved in one run.

- ``cold``: wall time of ``python -m searchkit query`` as a fresh process on a small MiniLM
  index (sample_corpus/18th-century), ``--repeats`` rounds, the runtimes alternating;
- ``warm``: one query's embedding (``Embedder.encode_queries([q])``, one thread) for the
  git_whatis queries, every query on every runtime in turn; p50 / p95;
- ``ingest``: content tokens/s of ``SearchIndex.add_records`` over the first ``--docs``
  git_whatis pages into a fresh index, for searchkit on torch, ONNX fp32 and ONNX int8, and of
  the bare model (``SentenceTransformer.encode``, batch 32, of the very windows searchkit
  feeds, cut before the clock starts); rotating order, ratios paired per repeat.

- ``cross`` (with ``--cross-index DIR --cross-set NAME``): every query of an eval set on an
  existing index (say one ``searchkit eval --work-dir`` built on torch; copy it first, reading
  may tidy its files) with the torch and the ONNX fp32 runtime: how many top-10 rankings
  differ, and the largest score difference (dense, and dense with late rerank).

Models are exported to a temporary ONNX cache first (not timed).

    HF_HUB_OFFLINE=1 nice -n 5 python3 benchmarks/bench_runtime.py [--repeats 5] [--docs 60] [--only cold,warm,ingest]
    HF_HUB_OFFLINE=1 nice -n 5 python3 benchmarks/bench_runtime.py --only cross --cross-index COPY --cross-set git_whatis
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
from common import median, pct

import searchkit  # noqa: E402
from searchkit.config import Config, ModelConfig  # noqa: E402
from searchkit.embedding import runtime  # noqa: E402
from searchkit.embedding.embedder import Embedder  # noqa: E402

from bench_ingest import NAIVE_BATCH, window_texts  # noqa: E402

QUERY = "the army and the navy"
RUNTIMES = {"torch": {"runtime": "torch"}, "onnx fp32": {"runtime": "onnx"},
            "onnx int8": {"runtime": "onnx", "quantize": "int8"}}


def cold(args, cache: Path, tmp: Path) -> dict:
    index = tmp / "cold-index"
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONDONTWRITEBYTECODE="1")
    base = [sys.executable, "-m", "searchkit"]
    subprocess.run(base + ["index", str(common.ROOT / "sample_corpus" / "18th-century"), "--index", str(index),
                           "--model", "all-MiniLM-L6-v2", "--set", "model.runtime=torch", "-q"],
                   cwd=common.ROOT, env=env, check=True)
    times: dict[str, list[float]] = {"torch": [], "onnx": []}
    for rep in range(args.repeats):
        for name in (["torch", "onnx"] if rep % 2 == 0 else ["onnx", "torch"]):
            t0 = time.perf_counter()
            out = subprocess.run(base + ["query", QUERY, "--index", str(index), "-k", "3",
                                         "--set", f"model.runtime={name}", "--set", f"model.onnx_cache={cache}"],
                                 cwd=common.ROOT, env=env, capture_output=True, text=True)
            times[name].append(time.perf_counter() - t0)
            if out.returncode or f"model runtime: {name}" not in out.stderr:
                raise SystemExit(f"query on {name} failed: {out.stderr[-2000:]}")
            print(f"cold {rep} {name}: {times[name][-1]:.2f} s", file=sys.stderr, flush=True)
    return {name: {"median_s": median(t), "runs_s": t} for name, t in times.items()}


def warm(embedders: dict[str, Embedder], n: int) -> dict:
    queries = common.eval_queries("git_whatis")[:n]
    for e in embedders.values():
        e.encode_queries(queries[:5])  # sessions made, kernels warmed
        for q in queries[:5]:
            e.encode_queries([q])
    times: dict[str, list[float]] = {name: [] for name in embedders}
    for q in queries:
        for name, e in embedders.items():
            t0 = time.perf_counter()
            e.encode_queries([q])
            times[name].append((time.perf_counter() - t0) * 1000)
    return {name: {"p50_ms": pct(t, 50), "p95_ms": pct(t, 95), "queries": len(t)} for name, t in times.items()}


def ingest(embedders: dict[str, Embedder], args, tmp: Path) -> dict:
    records = common.eval_texts("git_whatis", args.docs)
    torch_e = embedders["torch"]
    windows, tokens, _ = window_texts(torch_e, [text for _, text in records])
    methods = ["bare"] + list(embedders)
    runs: dict[str, list[float]] = {m: [] for m in methods}
    for rep in range(args.ingest_repeats):
        order = methods[rep % len(methods):] + methods[:rep % len(methods)]
        for method in order:
            if method == "bare":
                t0 = time.perf_counter()
                torch_e.model.encode(windows, batch_size=NAIVE_BATCH, convert_to_numpy=True)
                seconds = time.perf_counter() - t0
            else:
                folder = tmp / f"ingest-{time.monotonic_ns()}"
                config = Config(index=str(folder), model=dataclasses.replace(
                    ModelConfig(name="all-MiniLM-L6-v2"), **{k: v for k, v in RUNTIMES[method].items()}))
                with searchkit.SearchIndex.open(config=config, create=True) as ix:
                    ix._embedder = embedders[method]  # loading the model is not ingest
                    t0 = time.perf_counter()
                    ix.add_records(records)
                    seconds = time.perf_counter() - t0
                shutil.rmtree(folder, ignore_errors=True)
            runs[method].append(seconds)
            print(f"ingest {rep} {method}: {seconds:.1f} s ({tokens / seconds:,.0f} tok/s)", file=sys.stderr, flush=True)
    return {m: {"tokens_per_s": tokens / median(s), "seconds": s,
                "vs_bare": median([b / x for b, x in zip(runs["bare"], s)])} for m, s in runs.items()} | \
        {"docs": len(records), "content_tokens": tokens}


def cross(index: Path, dataset: str, cache: Path) -> dict:
    queries = common.eval_queries(dataset)
    out = {}
    for kw in ({"mode": "dense"}, {"mode": "dense", "rerank": "late"}):
        ranked = {}
        for name in ("torch", "onnx"):
            config = Config(index=str(index), model=ModelConfig(runtime=name, onnx_cache=str(cache)))
            with searchkit.SearchIndex.open(config=config) as ix:
                assert ix.embedder.runtime == name
                ranked[name] = [[(h.key, h.score) for h in ix.search(q, k=10, **kw)] for q in queries]
        differ = sum([k for k, _ in a] != [k for k, _ in b] for a, b in zip(ranked["torch"], ranked["onnx"]))
        diff = max(abs(x[1] - y[1]) for a, b in zip(ranked["torch"], ranked["onnx"]) for x, y in zip(a, b))
        out["+".join(f"{k}={v}" for k, v in kw.items())] = {"queries": len(queries), "rankings_differ": differ,
                                                            "max_score_diff": diff}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="cold-query rounds")
    ap.add_argument("--ingest-repeats", type=int, default=2)
    ap.add_argument("--docs", type=int, default=60)
    ap.add_argument("--queries", type=int, default=193)
    ap.add_argument("--only", default="cold,warm,ingest")
    ap.add_argument("--cross-index", type=Path, default=None)
    ap.add_argument("--cross-set", default="git_whatis")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    parts = set(args.only.split(","))
    tmp = Path(tempfile.mkdtemp(prefix="searchkit-runtime-"))
    cache = tmp / "onnx-cache"
    model = ModelConfig(name="all-MiniLM-L6-v2", onnx_cache=str(cache))
    runtime.export(model, quantize="int8" if parts & {"warm", "ingest"} else "none")
    result = {"machine": common.machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    print(result["machine"], file=sys.stderr)
    try:
        if "cross" in parts:
            result["cross"] = cross(args.cross_index, args.cross_set, cache)
        if "cold" in parts:
            result["cold"] = cold(args, cache, tmp)
        if parts & {"warm", "ingest"}:
            embedders = {name: Embedder.load(dataclasses.replace(model, **kw)) for name, kw in RUNTIMES.items()}
            if "warm" in parts:
                result["warm"] = warm(embedders, args.queries)
            if "ingest" in parts:
                result["ingest"] = ingest(embedders, args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["load_after"] = os.getloadavg()[0]
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
