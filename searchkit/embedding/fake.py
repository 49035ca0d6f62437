"""A deterministic embedder for tests and demos: no model, no torch, instant.

Words (``\\w+`` runs and single punctuation marks, lower-cased) are hashed into a fixed
vocabulary, and each vocabulary entry has a fixed random unit vector, so a text's vector is
the mean of its words' vectors: texts sharing words are near, others are not. It exercises
every storage, filter, lifecycle and CLI path with real vectors and real character offsets,
but it understands nothing: use the real model (``all-MiniLM-L6-v2``) where retrieval quality
is the point. Choose it with ``model.name: searchkit-fake`` (``--set model.name=searchkit-fake``).
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from typing import Sequence

import numpy as np

from ..config import ModelConfig
from .pooling import SPECIAL_TOKENS, normalize
from .protocol import ModelInfo, ProgressFn, Tokens, truncate

FAKE_MODEL = "searchkit-fake"
WORD = re.compile(r"\w+|[^\w\s]")
VOCABULARY = 4096
DIMENSION = 64
MAX_TOKENS = 512


class FakeEmbedder:
    """Bag-of-hashed-words vectors with the :class:`TokenEmbedder` interface."""

    def __init__(self, config: ModelConfig | None = None, dimension: int = DIMENSION):
        config = config or ModelConfig(name=FAKE_MODEL)
        window = min(config.window_tokens or MAX_TOKENS, MAX_TOKENS)
        self.info = ModelInfo(name=FAKE_MODEL, requested=FAKE_MODEL, dimension=dimension,
                              max_tokens=MAX_TOKENS, window_tokens=window,
                              window_overlap=config.window_overlap, max_windows=config.max_windows)
        # One fixed unit vector per vocabulary entry; the special tokens add nothing.
        table = np.random.default_rng(0).standard_normal((VOCABULARY, dimension))
        self._table = normalize(table.astype(np.float32))

    def tokenize(self, text: str) -> Tokens:
        # Format and control characters (zero-width spaces, ...) are no words, as in BERT.
        found = [m for m in WORD.finditer(text)
                 if not unicodedata.category(m.group()[0]).startswith("C")]
        ids = np.fromiter((zlib.crc32(m.group().lower().encode("utf-8")) % VOCABULARY
                           for m in found), dtype=np.int64, count=len(found))
        offsets = np.asarray([m.span() for m in found], dtype=np.int64).reshape(-1, 2)
        return Tokens(ids, offsets)

    def truncate(self, tokens: Tokens) -> Tokens:
        return truncate(tokens, self.info)

    def _matrix(self, ids: np.ndarray) -> np.ndarray:
        """``(n + 2, d)``: a zero row for each special token around the words' vectors."""
        zero = np.zeros((1, self.info.dimension), dtype=np.float32)
        return np.concatenate([zero, self._table[np.asarray(ids, dtype=np.int64)], zero])

    def token_matrices(self, docs: Sequence[Tokens], window_tokens: int | None = None,
                       progress: ProgressFn | None = None) -> list[np.ndarray]:
        # Word vectors ignore context, so windows and stitching change nothing here.
        out = [self._matrix(d.ids) for d in docs]
        if progress is not None:
            progress(sum(len(d) + SPECIAL_TOKENS for d in docs))
        return out

    def embed_pieces(self, pieces: Sequence[np.ndarray],
                     progress: ProgressFn | None = None) -> np.ndarray:
        if not len(pieces):
            return np.zeros((0, self.info.dimension), dtype=np.float32)
        return normalize(np.stack([self._matrix(p).mean(axis=0) for p in pieces]))

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        room = self.info.window_tokens - SPECIAL_TOKENS
        return self.embed_pieces([self.tokenize(q).ids[:room] for q in queries])
