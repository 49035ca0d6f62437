"""Ingest throughput: searchkit indexing against the bare model on the same windows, in one process.

The model is loaded once and shared. Each repeat runs, in a rotating order:

- ``searchkit``: a fresh index folder, ``SearchIndex.add_records`` (eval corpus) or
  ``add_paths`` (a folder): tokenise, window, embed, pool the document and late-chunk vectors,
  write SQLite, add to FAISS, save the FAISS files;
- ``bare``: ``SentenceTransformer.encode`` (batch_size 32) of the very windows searchkit feeds,
  as text, at the same truncation (the model's 256 tokens). Cutting the windows out of the text
  happens before the clock starts, which favours the bare model;
- ``naive``: searchkit with the windows batched 32 at a time in document order (no sort by
  length, no token budget) instead of its token-budget batches;
- ``rerun``: ``add_*`` again on the index ``searchkit`` just built, nothing changed.

Throughput counts the documents' content tokens (window overlap and special tokens excluded),
so every method is credited for the same work. Ratios are taken per repeat, then the median.

    HF_HUB_OFFLINE=1 nice -n 5 python3 benchmarks/bench_ingest.py [--git-docs 30] [--paths sample_corpus] [--repeats 3]
    HF_HUB_OFFLINE=1 python3 benchmarks/bench_ingest.py --profile        # pyinstrument of one searchkit run
    HF_HUB_OFFLINE=1 python3 benchmarks/bench_ingest.py --sweep          # forward pass only: batch_tokens x threads
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import common  # noqa: F401  (sets sys.path and the offline environment)
from common import median

import searchkit  # noqa: E402
from searchkit.config import Config, ModelConfig  # noqa: E402
from searchkit.ingest.documents import Skipped, iter_files, read_document  # noqa: E402
from searchkit.embedding.embedder import Embedder  # noqa: E402
from searchkit.embedding.pooling import SPECIAL_TOKENS, plan_windows  # noqa: E402

NAIVE_BATCH = 32


def window_texts(embedder: Embedder, texts: list[str]) -> tuple[list[str], int, int]:
    """The text of every window searchkit feeds, plus content tokens and fed tokens."""
    out, content, fed = [], 0, 0
    info = embedder.info
    for text in texts:
        toks = embedder.tokenize(text)
        content += len(toks)
        for w in plan_windows(len(toks), info.window_tokens, info.window_overlap):
            out.append(text[toks.offsets[w.start][0]:toks.offsets[w.end - 1][1]])
            fed += w.end - w.start + SPECIAL_TOKENS
    return out, content, fed


def naive_forward(embedder: Embedder):
    """``_forward_pieces`` with fixed-size batches in input order (what a plain loop does)."""
    import torch

    def forward(pieces, progress=None):
        module, results = embedder.model[0], []
        for b in range(0, len(pieces), NAIVE_BATCH):
            batch = pieces[b:b + NAIVE_BATCH]
            longest = max(len(p) for p in batch) + SPECIAL_TOKENS
            ids = torch.full((len(batch), longest), embedder._pad, dtype=torch.long)
            mask = torch.zeros((len(batch), longest), dtype=torch.long)
            for row, p in enumerate(batch):
                n = len(p) + SPECIAL_TOKENS
                ids[row, 0], ids[row, n - 1] = embedder._cls, embedder._sep
                ids[row, 1:n - 1] = torch.from_numpy(np.asarray(p, dtype=np.int64))
                mask[row, :n] = 1
            with torch.inference_mode():
                out = module({"input_ids": ids, "attention_mask": mask,
                              "token_type_ids": torch.zeros_like(ids)})["token_embeddings"].numpy()
            results.extend(out[row, :len(p) + SPECIAL_TOKENS].copy() for row, p in enumerate(batch))
        return results
    return forward


class Workload:
    """One corpus: how searchkit ingests it, and the windows the bare model gets."""

    def __init__(self, name: str, embedder: Embedder, records=None, path: Path | None = None):
        self.name, self.records, self.path = name, records, path
        if records is not None:
            texts = [t for _, t in records]
        else:
            docs = [read_document(p) for p in iter_files([path], Config().ingest.extensions)
                    if not isinstance(p, Skipped)]
            texts = [d.text for d in docs if not isinstance(d, Skipped)]
        self.n_docs = len(texts)
        self.windows, self.tokens, self.fed = window_texts(embedder, texts)

    def ingest(self, ix: searchkit.SearchIndex) -> searchkit.IngestReport:
        return ix.add_records(self.records) if self.records is not None else ix.add_paths([self.path])


def open_index(folder: Path, config: Config, embedder: Embedder) -> searchkit.SearchIndex:
    ix = searchkit.SearchIndex.open(folder, config=config, create=True)
    ix._embedder = embedder  # share the loaded model: model load is not ingest
    return ix


def run_once(method: str, work: Workload, embedder: Embedder, config: Config, tmp: Path) -> dict:
    folder = tmp / f"{work.name}-{method}-{time.monotonic_ns()}"
    if method == "bare":
        t0, c0 = time.perf_counter(), time.process_time()
        embedder.model.encode(work.windows, batch_size=NAIVE_BATCH, convert_to_numpy=True)
        return {"seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0}
    original = embedder._forward_pieces
    if method == "naive":
        embedder._forward_pieces = naive_forward(embedder)
    try:
        with open_index(folder, config, embedder) as ix:
            t0, c0 = time.perf_counter(), time.process_time()
            work.ingest(ix)
            first = time.perf_counter() - t0
            result = {"seconds": first, "cpu": time.process_time() - c0}
            if method == "searchkit":
                t0 = time.perf_counter()
                report = work.ingest(ix)
                result["rerun_seconds"] = time.perf_counter() - t0
                assert report.embedded == 0, report.summary()
    finally:
        embedder._forward_pieces = original
        shutil.rmtree(folder, ignore_errors=True)
    return result


def sweep(embedder: Embedder, works: list, args) -> None:
    """Forward pass (tokens already cut) for each (threads, batch_tokens), interleaved."""
    import torch
    texts = [t for w in works for t in (
        [r[1] for r in w.records] if w.records is not None else
        [d.text for d in (read_document(p) for p in iter_files([w.path], Config().ingest.extensions)
                          if not isinstance(p, Skipped)) if not isinstance(d, Skipped)])]
    tokens = [embedder.tokenize(t) for t in texts]
    n = sum(len(t) for t in tokens)
    combos = [(th, bt) for th in args.sweep_threads for bt in args.sweep_batch]
    times = {c: [] for c in combos}
    for rep in range(args.repeats):
        for th, bt in combos[rep % len(combos):] + combos[:rep % len(combos)]:
            torch.set_num_threads(th)
            embedder.batch_tokens = bt
            t0 = time.process_time() if args.sweep_cpu else time.perf_counter()
            embedder.token_matrices(tokens)
            times[(th, bt)].append((time.process_time() if args.sweep_cpu else time.perf_counter()) - t0)
            print(f"rep {rep} threads {th} batch_tokens {bt}: {times[(th, bt)][-1]:.1f}s", file=sys.stderr, flush=True)
    base = times[(combos[0][0], 8192)] if (combos[0][0], 8192) in times else times[combos[0]]
    print(f"\n{n:,} content tokens; ratio = time of the first row at 8192 / time, paired per repeat")
    unit = "tokens/CPU-s" if args.sweep_cpu else "tokens/s (wall)"
    print(f"| torch threads | batch_tokens | {unit}, median | speed vs threads={combos[0][0]}, 8192 |")
    print("|---|---|---|---|")
    for c in combos:
        print(f"| {c[0]} | {c[1]} | {n / median(times[c]):,.0f} | "
              f"{median([b / t for b, t in zip(base, times[c])]):.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--git-docs", type=int, default=30, help="first N documents of git_whatis (0: none)")
    ap.add_argument("--paths", type=Path, default=common.ROOT / "sample_corpus", help="folder for add_paths ('' : none)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--methods", nargs="+", default=["searchkit", "bare", "naive"])
    ap.add_argument("--batch-tokens", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--profile", action="store_true", help="pyinstrument one searchkit run and exit")
    ap.add_argument("--sweep", action="store_true",
                    help="time Embedder.token_matrices alone for several batch_tokens and torch threads")
    ap.add_argument("--sweep-batch", type=int, nargs="+", default=[2048, 4096, 8192, 16384])
    ap.add_argument("--sweep-threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--sweep-cpu", action="store_true", help="sweep: compare process CPU seconds, not wall")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {"model": ModelConfig(name="all-MiniLM-L6-v2", runtime="torch",  # bare = its torch model
                                      **({"batch_tokens": args.batch_tokens} if args.batch_tokens else {}))}
    config = dataclasses.replace(Config(), **overrides)
    embedder = Embedder.load(config.model)
    works = []
    if args.git_docs:
        works.append(Workload(f"git_whatis[:{args.git_docs}]", embedder,
                              records=common.eval_texts("git_whatis", args.git_docs)))
    if str(args.paths) not in ("", "."):
        works.append(Workload(args.paths.name, embedder, path=args.paths))
    tmp = Path(tempfile.mkdtemp(prefix="searchkit-bench-"))
    print(common.machine(), f"torch threads {torch.get_num_threads()}", file=sys.stderr)
    for w in works:
        print(f"{w.name}: {w.n_docs} docs, {w.tokens:,} content tokens, {len(w.windows)} windows, "
              f"{w.fed:,} tokens fed", file=sys.stderr)
    # Warm-up: first batches pay one-off costs (allocator, kernels).
    embedder.model.encode(works[0].windows[:8])

    if args.profile:
        from pyinstrument import Profiler
        with open_index(tmp / "profile", config, embedder) as ix:
            profiler = Profiler(interval=0.005)
            profiler.start()
            works[0].ingest(ix)
            profiler.stop()
        print(profiler.output_text(unicode=True, color=False, show_all=False))
        shutil.rmtree(tmp, ignore_errors=True)
        return

    if args.sweep:
        sweep(embedder, works, args)
        shutil.rmtree(tmp, ignore_errors=True)
        return

    results: dict[str, dict[str, list[dict]]] = {w.name: {m: [] for m in args.methods} for w in works}
    for rep in range(args.repeats):
        for w in works:
            order = args.methods[rep % len(args.methods):] + args.methods[:rep % len(args.methods)]
            for method in order:
                r = run_once(method, w, embedder, config, tmp)
                results[w.name][method].append(r)
                print(f"rep {rep} {w.name} {method}: {r['seconds']:.1f}s, CPU {r['cpu']:.1f}s "
                      f"({w.tokens / r['seconds']:,.0f} tok/s)"
                      + (f", rerun {r['rerun_seconds']:.2f}s" if "rerun_seconds" in r else ""),
                      file=sys.stderr, flush=True)
    shutil.rmtree(tmp, ignore_errors=True)

    summary = {"machine": common.machine(), "torch_threads": torch.get_num_threads(),
               "batch_tokens": embedder.batch_tokens, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "workloads": {}}
    print("\nwall = elapsed seconds; CPU = the process's CPU seconds (all threads). "
          "Ratios are bare time / method time, paired per repeat, median.\n")
    print("| corpus | docs | content tokens | method | tokens/s (wall) | docs/s (wall) | tokens/CPU-s "
          "| vs bare, wall | vs bare, CPU |")
    print("|---|---|---|---|---|---|---|---|---|")
    for w in works:
        res = results[w.name]
        row = {}
        for method in args.methods:
            secs = [r["seconds"] for r in res[method]]
            cpus = [r["cpu"] for r in res[method]]
            ratio = median([b["seconds"] / s for b, s in zip(res["bare"], secs)]) if "bare" in res else float("nan")
            ratio_cpu = median([b["cpu"] / c for b, c in zip(res["bare"], cpus)]) if "bare" in res else float("nan")
            row[method] = {"seconds": secs, "cpu": cpus, "tokens_per_s": w.tokens / median(secs),
                           "tokens_per_cpu_s": w.tokens / median(cpus), "docs_per_s": w.n_docs / median(secs),
                           "ratio_vs_bare": ratio, "ratio_vs_bare_cpu": ratio_cpu}
            print(f"| {w.name} | {w.n_docs} | {w.tokens:,} | {method} | {w.tokens / median(secs):,.0f} | "
                  f"{w.n_docs / median(secs):.2f} | {w.tokens / median(cpus):,.0f} | {ratio:.2f} | {ratio_cpu:.2f} |")
        if "searchkit" in res:
            share = median([r["rerun_seconds"] / r["seconds"] for r in res["searchkit"]])
            row["rerun_share"] = share
            print(f"| {w.name} | | | re-run, nothing changed | {share:.2%} of the first run "
                  f"({median([r['rerun_seconds'] for r in res['searchkit']]):.2f} s) | | | | |")
        summary["workloads"][w.name] = {"docs": w.n_docs, "tokens": w.tokens, "fed": w.fed, **row}
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
