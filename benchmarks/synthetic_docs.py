"""A large synthetic index for the warm-query benchmarks (bench_warm.py, bench_peers.py).

Documents are runs of real lines drawn from a BEIR corpus (git_whatis by default: its word
distribution makes keyword search realistic). 100k documents of about 150 words give about
300k chunks of 64 tokens, so the FAISS indexes go to IVF as they would for a real collection
of that size. Two ways to embed them:

- ``--vectors fake`` (default): the deterministic 64-d fake embedder. No model time, and no
  model at query time either: latency of searchkit's own work, not of a real collection.
- ``--vectors minilm``: real 384-d vectors of the bundled all-MiniLM-L6-v2 without embedding
  100k documents (about 45 minutes here). Each distinct line of the corpus is embedded once
  (26k lines, about a minute), and a token's vector is its line's, so a document's vector and
  its late chunks' vectors are means of real sentence vectors (a chunk's over the lines it
  covers). Tokens, offsets and the model recorded are MiniLM's: the index opens with the real
  model, which embeds queries as for any index.

    nice -n 5 python3 benchmarks/synthetic_docs.py --docs 100000 --index bench_out/syn100k
    nice -n 5 python3 benchmarks/synthetic_docs.py --vectors minilm --index bench_out/syn100k_minilm
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from searchkit import SearchIndex  # noqa: E402
from searchkit.config import Config, ModelConfig  # noqa: E402
from searchkit.embedding.fake import FAKE_MODEL  # noqa: E402
from searchkit.embedding.loading import load_embedder  # noqa: E402
from searchkit.embedding.models import BUNDLED_NAME  # noqa: E402
from searchkit.embedding.protocol import Tokens  # noqa: E402


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


@dataclass(frozen=True)
class LineTokens(Tokens):
    """MiniLM's tokens of a synthetic document, with the line each token falls in."""

    lines: np.ndarray   # (n,) the row of each token's line in LineEmbedder.vectors


class LineEmbedder:
    """The bundled MiniLM whose token vectors are their line's sentence vector (see the module
    docstring): tokenizer, model info and query embedding are the real model's."""

    def __init__(self, lines: Sequence[str], batch: int = 256):
        self.model = load_embedder(ModelConfig(name=BUNDLED_NAME))
        self.info = self.model.info
        distinct = sorted(set(lines))
        self.index = {line: i for i, line in enumerate(distinct)}
        start = time.perf_counter()
        self.vectors = np.concatenate([self.model.encode_queries(distinct[i:i + batch])
                                       for i in range(0, len(distinct), batch)])
        print(f"{len(distinct)} lines embedded in {time.perf_counter() - start:.0f} s", flush=True)

    def tokenize(self, text: str) -> LineTokens:
        tokens = self.model.tokenize(text)
        lines = text.split("\n")
        starts = np.cumsum([0] + [len(line) + 1 for line in lines[:-1]])
        rows = np.asarray([self.index[line] for line in lines], dtype=np.int64)
        which = np.searchsorted(starts, tokens.offsets[:, 0], side="right") - 1
        return LineTokens(tokens.ids, tokens.offsets, rows[which])

    def truncate(self, tokens: LineTokens) -> LineTokens:
        cut = self.model.truncate(tokens)
        return tokens if len(cut) == len(tokens) else \
            LineTokens(cut.ids, cut.offsets, tokens.lines[:len(cut)])

    def token_matrices(self, docs: Sequence[LineTokens], window_tokens=None,
                       progress=None) -> list[np.ndarray]:
        """``(n + 2, d)``: each token's line vector, between zero rows for the special tokens."""
        zero = np.zeros((1, self.info.dimension), dtype=np.float32)
        out = [np.concatenate([zero, self.vectors[d.lines], zero]) for d in docs]
        if progress is not None:
            progress(sum(len(d) + 2 for d in docs))
        return out

    def embed_pieces(self, pieces, progress=None) -> np.ndarray:
        return self.model.embed_pieces(pieces, progress)

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        return self.model.encode_queries(queries)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--words", type=int, default=150)
    ap.add_argument("--corpus", type=Path, default=ROOT.parent / "shared/eval/git_whatis/corpus.jsonl")
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--vectors", choices=("fake", "minilm"), default="fake",
                    help="fake: 64-d fake embedder; minilm: MiniLM sentence vectors of the lines")
    args = ap.parse_args()
    lines = lines_of(args.corpus)
    start = time.perf_counter()
    embedder = LineEmbedder(lines) if args.vectors == "minilm" else None
    model = ModelConfig(name=BUNDLED_NAME if embedder else FAKE_MODEL)
    with SearchIndex.open(config=Config(index=str(args.index), model=model), create=True,
                          embedder=embedder) as ix:
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
