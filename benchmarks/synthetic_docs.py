"""A large synthetic index for the warm-query benchmark (benchmarks/bench_warm.py).

Documents are runs of real lines drawn from a BEIR corpus (git_whatis by default: its word
distribution makes keyword search realistic), embedded with the deterministic fake embedder
(no model time; real vectors are not the point at this size, latency is). 100k documents of
about 150 words give about 300k chunks of 64 tokens, so the chunk FAISS index goes to IVF as
it would for a real collection of that size.

    nice -n 5 python3 benchmarks/synthetic_docs.py --docs 100000 --index bench_out/syn100k
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from searchkit import SearchIndex  # noqa: E402
from searchkit.config import Config, ModelConfig  # noqa: E402
from searchkit.embedding.fake import FAKE_MODEL  # noqa: E402


def lines_of(corpus: Path) -> list[str]:
    lines = []
    with corpus.open(encoding="utf-8") as fh:
        for row in fh:
            text = json.loads(row)["text"]
            lines.extend(line.strip() for line in text.splitlines() if len(line.split()) >= 4)
    return lines


def records(lines: list[str], n: int, words: int, seed: int = 0):
    rng = random.Random(seed)
    for i in range(n):
        parts, count = [], 0
        while count < words:
            line = lines[rng.randrange(len(lines))]
            parts.append(line)
            count += len(line.split())
        yield f"syn{i}", "\n".join(parts), {"year": 2000 + i % 25, "group": "even" if i % 2 == 0 else "odd"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--words", type=int, default=150)
    ap.add_argument("--corpus", type=Path, default=ROOT.parent / "shared/eval/git_whatis/corpus.jsonl")
    ap.add_argument("--index", type=Path, required=True)
    args = ap.parse_args()
    lines = lines_of(args.corpus)
    start = time.perf_counter()
    with SearchIndex.open(config=Config(index=str(args.index), model=ModelConfig(name=FAKE_MODEL)),
                          create=True) as ix:
        batch: list = []
        for rec in records(lines, args.docs, args.words):
            batch.append(rec)
            if len(batch) == 5000:
                ix.add_records(batch)
                batch = []
                print(f"{ix.stats()['documents']} documents, {time.perf_counter() - start:.0f} s",
                      flush=True)
        if batch:
            ix.add_records(batch)
        print(json.dumps({k: ix.stats()[k] for k in ("documents", "chunks", "ann")}), flush=True)


if __name__ == "__main__":
    main()
