"""Warm query latency of two versions of searchkit in one process: a git revision against the
working tree, interleaved query by query.

Process-to-process noise on a shared 2-core host (the same code 0.37 ms in one process, 0.63
ms in the next) hides changes of 10-20 %; here both versions open the same index in one
process and every query is searched by one then the other (the order alternating by round),
so both see the same host. The revision's ``searchkit/`` is extracted with ``git archive``
into a temporary folder as the package ``searchkit_base``. Both versions' hits are compared
first (ids, scores, passages): a speed change must not change results.

Own work only: each query's vector is cached before timing (as bench_warm.py's "own").

    HF_HUB_OFFLINE=1 python3 benchmarks/bench_versions.py --base HEAD~1 \\
        --index bench_out/syn100k_auto --modes dense,hybrid --rounds 8
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import EVAL  # noqa: E402

MODES = {"dense": {"mode": "dense"}, "keyword": {"mode": "keyword"},
         "hybrid": {"mode": "hybrid"}, "chunks-dense": {"mode": "dense", "chunks": True},
         "chunks-hybrid": {"mode": "hybrid", "chunks": True}}


def extract(rev: str, into: Path) -> None:
    """``searchkit/`` at ``rev`` as the package ``searchkit_base`` under ``into``."""
    data = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "searchkit"],
                          check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(into, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    package = into / "searchkit_base"
    (into / "searchkit").rename(package)
    for path in package.rglob("*.py"):   # absolute imports of the package, if any
        text = path.read_text(encoding="utf-8")
        if "from searchkit." in text or "import searchkit." in text:
            path.write_text(text.replace("from searchkit.", "from searchkit_base.")
                            .replace("import searchkit.", "import searchkit_base."), encoding="utf-8")


def same_hits(a, b) -> bool:
    def key(hits):
        return [(h.doc_id, round(h.score, 6), h.passage and (h.passage.char_start, h.passage.char_end))
                for h in hits]
    return key(a) == key(b)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="HEAD", help="git revision to compare against (default HEAD)")
    ap.add_argument("--index", action="append", required=True, help="index folder (repeatable)")
    ap.add_argument("--queries", default=str(EVAL / "git_whatis" / "queries.jsonl"))
    ap.add_argument("-n", type=int, default=60, help="queries (the first n)")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--modes", default="dense,keyword,hybrid")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args()
    queries = [json.loads(line)["text"] for line in open(args.queries, encoding="utf-8")][:args.n]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        extract(args.base, Path(tmp))
        sys.path.insert(0, tmp)
        import searchkit
        import searchkit_base
        for folder in args.index:
            indexes = {"base": searchkit_base.SearchIndex.open(folder),
                       "new": searchkit.SearchIndex.open(folder)}
            for mode in args.modes.split(","):
                options = MODES[mode]
                for ix in indexes.values():
                    ix._queries.size = len(queries) + 1
                for q in queries:   # warm both, vectors cached, and results equal
                    hits = {name: ix.search(q, k=args.k, **options) for name, ix in indexes.items()}
                    if not same_hits(hits["base"], hits["new"]):
                        raise SystemExit(f"{folder} {mode} {q!r}: the two versions' hits differ")
                times: dict[str, list[float]] = {"base": [], "new": []}
                for r in range(args.rounds):
                    order = ("base", "new") if r % 2 == 0 else ("new", "base")
                    for q in queries:
                        for name in order:
                            start = time.perf_counter()
                            indexes[name].search(q, k=args.k, **options)
                            times[name].append(time.perf_counter() - start)
                base, new = np.array(times["base"]), np.array(times["new"])
                rows.append({"index": folder, "mode": mode,
                             "base_p50_ms": round(float(np.percentile(base, 50)) * 1e3, 3),
                             "new_p50_ms": round(float(np.percentile(new, 50)) * 1e3, 3),
                             "ratio_p50": round(float(np.percentile(new, 50) / np.percentile(base, 50)), 3),
                             "ratio_pairwise_median": round(float(np.median(new / base)), 3)})
                print(rows[-1], flush=True)
            for ix in indexes.values():
                ix.close()
    print(f"\n{args.base} (base) against the working tree (new), own work, k={args.k}, "
          f"{len(queries)} queries x {args.rounds} rounds\n")
    print("| index | mode | base p50 ms | new p50 ms | new / base (p50) | new / base (median of pairs) |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {Path(r['index']).name} | {r['mode']} | {r['base_p50_ms']} | {r['new_p50_ms']} "
              f"| {r['ratio_p50']} | {r['ratio_pairwise_median']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
