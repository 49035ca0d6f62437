"""`searchkit serve` under load: latency and throughput of POST /search with 1, 4 and 16
concurrent clients, in dense, keyword and hybrid modes, with and without a writer adding
documents meanwhile; the in-process API latency of the same queries beside it; and the wall
time of a cold `searchkit query --server` process beside a cold local `searchkit query`.

The index: 10,000 passages (about 80 words each) cut from the man_whatis and pg_refpurpose
eval corpora, recorded as built by the bundled all-MiniLM-L6-v2 and built once into
``bench_out/server_index``. To build it in seconds on a shared machine, the documents' token
matrices are a lookup of MiniLM's input token embeddings instead of the transformer's output
(``--real-model`` runs the transformer: half an hour under load); tokenizing, late chunking,
storage, FAISS and the search path are the real ones, and the server embeds every query with
the real model. Rankings are therefore not meaningful, their cost is. Queries: those
corpora's eval queries, picked at random (the server keeps only the last 32 query vectors,
so nearly every one is embedded).
The server runs as its own process (``python -m searchkit serve``); clients are threads, one
``httpx.Client`` each, here.

    HF_HUB_OFFLINE=1 nice -n 5 python3 benchmarks/bench_server.py [--seconds 5] [--clients 1,4,16]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

import common
from common import pct

from searchkit import SearchIndex  # noqa: E402
from searchkit.config import load_config  # noqa: E402

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
CORPORA = ("man_whatis", "pg_refpurpose")
MODES = ("dense", "keyword", "hybrid")
WORDS_PER_DOC = 80


def passages(n: int) -> list[dict]:
    """``n`` records of about WORDS_PER_DOC words, cut in order from the eval corpora."""
    out: list[dict] = []
    for name in CORPORA:
        for doc_id, text in common.eval_texts(name):
            words = text.split()
            for start in range(0, len(words) - WORDS_PER_DOC // 2, WORDS_PER_DOC):
                out.append({"id": f"{name}/{doc_id}/{start}", "title": f"{doc_id} ({start})",
                            "text": " ".join(words[start:start + WORDS_PER_DOC])})
                if len(out) == n:
                    return out
    return out


def static_token_matrices(embedder):
    """``Embedder.token_matrices`` as a lookup of the model's input token embeddings."""
    table = embedder.model[0].auto_model.embeddings.word_embeddings.weight.detach().numpy()
    cls, sep = embedder.tokenizer.cls_token_id, embedder.tokenizer.sep_token_id

    def token_matrices(docs, window_tokens=None, progress=None):
        return [table[np.concatenate([[cls], d.ids, [sep]])] for d in docs]
    return token_matrices


def build(folder: Path, n: int, real_model: bool) -> None:
    config = load_config(overrides={"model.name": MODEL, "index": str(folder)}, discover=False)
    with SearchIndex.open(config=config, create=True) as ix:
        if ix.stats()["documents"] >= n:
            return
        if not real_model:
            ix.embedder.token_matrices = static_token_matrices(ix.embedder)
        records = passages(n)
        started = time.perf_counter()
        for start in range(0, len(records), 1000):
            ix.add_records(records[start:start + 1000])
            print(f"indexed {min(start + 1000, len(records))}/{len(records)} "
                  f"({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(folder: Path, port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "searchkit", "serve", "--index", str(folder), "--port", str(port),
         "--writable", "-q", "--set", "server.max_k=100"],
        cwd=common.ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, HF_HUB_OFFLINE="1"))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            raise SystemExit(f"the server exited: {process.stderr.read()[-2000:]}")
        time.sleep(0.2)
    process.kill()
    raise SystemExit("the server did not get ready in 300 s")


def load(url: str, queries: list[str], mode: str, clients: int, seconds: float,
         writer: bool) -> dict:
    """``clients`` threads searching for ``seconds`` (and a writer thread, if asked)."""
    latencies: list[float] = []
    errors: list[str] = []
    writes: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=url, timeout=60) as http:
            while time.monotonic() < stop:
                body = {"query": rng.choice(queries), "k": 10, "mode": mode}
                t0 = time.perf_counter()
                try:
                    answer = http.post("/search", json=body)
                    ok = answer.status_code == 200
                    problem = None if ok else f"{answer.status_code} {answer.text[:200]}"
                except httpx.HTTPError as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                elapsed = time.perf_counter() - t0
                with lock:
                    (errors.append(problem) if problem else latencies.append(elapsed))

    def write() -> None:
        made = 0
        with httpx.Client(base_url=url, timeout=120) as http:
            while time.monotonic() < stop:
                records = [{"id": f"bench-write/{time.time_ns()}/{i}",
                            "text": f"A note written during the benchmark, number {made + i}: "
                                    + " ".join(random.sample(queries, 3))} for i in range(8)]
                t0 = time.perf_counter()
                answer = http.post("/documents", json={"records": records})
                with lock:
                    if answer.status_code == 200:
                        writes.append(time.perf_counter() - t0)
                        made += len(records)
                    else:
                        errors.append(f"write {answer.status_code} {answer.text[:200]}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    if writer:
        threads.append(threading.Thread(target=write))
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    ms = [x * 1000 for x in latencies]
    return {"mode": mode, "clients": clients, "writer": writer, "seconds": wall,
            "requests": len(latencies), "errors": len(errors), "error_samples": errors[:3],
            "req_per_s": len(latencies) / wall,
            "p50_ms": pct(ms, 50) if ms else None, "p95_ms": pct(ms, 95) if ms else None,
            "p99_ms": pct(ms, 99) if ms else None,
            "writes": len(writes), "write_p50_ms": pct([w * 1000 for w in writes], 50) if writes else None}


def in_process(folder: Path, queries: list[str], n: int) -> dict[str, dict]:
    """Sequential ``SearchIndex.search`` latency per mode, in this process (model warm)."""
    config = load_config(overrides={"index": str(folder)}, discover=False)
    out = {}
    with SearchIndex.open(config=config) as ix:
        ix.search("warm up", mode="hybrid")
        for mode in MODES:
            rng = random.Random(0)
            ms = []
            for _ in range(n):
                t0 = time.perf_counter()
                ix.search(rng.choice(queries), k=10, mode=mode)
                ms.append((time.perf_counter() - t0) * 1000)
            out[mode] = {"p50_ms": pct(ms, 50), "p95_ms": pct(ms, 95), "p99_ms": pct(ms, 99)}
    return out


def cold(cmd: list[str], repeats: int, cpu: list[float] | None = None) -> list[float]:
    """Wall seconds of ``cmd`` as a fresh process; its CPU seconds (user + system) go to
    ``cpu``: on a loaded machine they say more than the wall time."""
    out = []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        done = subprocess.run(cmd, cwd=common.ROOT, capture_output=True, text=True,
                              env=dict(os.environ, HF_HUB_OFFLINE="1"))
        out.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if cpu is not None:
            cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if done.returncode:
            raise SystemExit(f"{cmd} failed: {done.stderr[-2000:]}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="Length of each load run.")
    parser.add_argument("--clients", default="1,4,16", help="Concurrent clients, comma-separated.")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--real-model", action="store_true",
                        help="Embed the index's documents with the transformer (slow).")
    parser.add_argument("--in-process", type=int, default=200, help="Queries timed in-process per mode.")
    parser.add_argument("--cold-repeats", type=int, default=5)
    parser.add_argument("--index", type=Path, default=common.OUT / "server_index")
    parser.add_argument("--out", type=Path, default=common.OUT / "server.json")
    args = parser.parse_args()

    build(args.index, args.docs, args.real_model)
    queries = [q for name in CORPORA for q in common.eval_queries(name)]
    result = {"machine": common.machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "docs": args.docs, "seconds": args.seconds, "queries": len(queries)}
    result["in_process"] = in_process(args.index, queries, args.in_process)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(args.index, port)
    try:
        runs = []
        for mode in args.modes.split(","):
            for writer in (False, True):
                for clients in (int(c) for c in args.clients.split(",")):
                    run = load(url, queries, mode, clients, args.seconds, writer)
                    runs.append(run)
                    print(json.dumps(run), file=sys.stderr, flush=True)
        result["load"] = runs
        query = queries[0]
        result["cold_server_cpu_s"] = []
        result["cold_server_s"] = cold([sys.executable, "-m", "searchkit", "query", query,
                                        "--server", url], args.cold_repeats,
                                       result["cold_server_cpu_s"])
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    for name, cmd, repeats in (
            ("local", ["-m", "searchkit", "query", query, "--index", str(args.index)],
             max(1, args.cold_repeats // 2)),
            ("import", ["-c", "import searchkit.cli"], args.cold_repeats),
            ("python", ["-c", "pass"], args.cold_repeats)):
        result[f"cold_{name}_cpu_s"] = []
        result[f"cold_{name}_s"] = cold([sys.executable, *cmd], repeats, result[f"cold_{name}_cpu_s"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print_table(result)


def print_table(result: dict) -> None:
    print(f"{result['machine']}; {result['date']}; {result['docs']:,} docs; {result['seconds']:g} s per run")
    print("\n| mode | clients | writer | req/s | p50 ms | p95 ms | p99 ms | errors | writes (p50 ms) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in result["load"]:
        writes = f"{r['writes']} ({r['write_p50_ms']:.0f})" if r["writes"] else "-"
        print(f"| {r['mode']} | {r['clients']} | {'yes' if r['writer'] else 'no'} | {r['req_per_s']:.1f} "
              f"| {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} | {writes} |")
    print("\n| in-process API (sequential) | p50 ms | p95 ms | p99 ms |\n|---|---|---|---|")
    for mode, r in result["in_process"].items():
        print(f"| {mode} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} |")
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    print("\n| cold process | wall s (median) | CPU s (median) | runs (wall) |\n|---|---|---|---|")
    for name, label in (("server", "`searchkit query --server URL`"), ("local", "`searchkit query` (local index)"),
                        ("import", "`python -c 'import searchkit.cli'`"), ("python", "`python -c pass`")):
        wall, cpu = result[f"cold_{name}_s"], result.get(f"cold_{name}_cpu_s") or [float("nan")]
        print(f"| {label} | {med(wall):.2f} | {med(cpu):.2f} | {', '.join(f'{x:.2f}' for x in wall)} |")


if __name__ == "__main__":
    main()
