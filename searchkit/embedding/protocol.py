"""What searchkit asks of an embedding model: the :class:`TokenEmbedder` protocol.

Ingest needs token embeddings with character offsets (whole-document vectors and late chunks
are pooled from them); search needs query vectors. Any object with this small interface can
be passed as ``SearchIndex.open(..., embedder=...)``: the bundled torch :class:`Embedder`,
the deterministic :class:`searchkit.embedding.fake.FakeEmbedder` for tests, or another
runtime.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from .pooling import plan_windows

ProgressFn = Callable[[int], None]


@dataclass(frozen=True)
class ModelInfo:
    """What an index records about the model that built it."""

    name: str
    requested: str
    dimension: int
    max_tokens: int
    window_tokens: int
    window_overlap: int
    pooling: str = "mean"
    normalized: bool = True
    max_windows: int | None = None
    quantize: str = "none"

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Tokens:
    """A document's content token ids and each token's character span in the text."""

    ids: np.ndarray       # (n,) int64
    offsets: np.ndarray   # (n, 2) int64

    def __len__(self) -> int:
        return len(self.ids)


@runtime_checkable
class TokenEmbedder(Protocol):
    """An embedding model with the index's window settings."""

    info: ModelInfo

    def tokenize(self, text: str) -> Tokens:
        """Content tokens of a whole text (no special tokens, no truncation) with offsets."""

    def truncate(self, tokens: Tokens) -> Tokens:
        """The tokens the index embeds (those of the first ``info.max_windows`` windows)."""

    def token_matrices(self, docs: Sequence[Tokens], window_tokens: int | None = None,
                       progress: ProgressFn | None = None) -> list[np.ndarray]:
        """Stitched ``(n + 2, d)`` token embeddings of each document: a leading special token,
        the ``n`` content tokens, a trailing special token (see :mod:`.pooling`)."""

    def embed_pieces(self, pieces: Sequence[np.ndarray],
                     progress: ProgressFn | None = None) -> np.ndarray:
        """``(len(pieces), d)`` normalised vectors of token-id sequences, each embedded alone."""

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        """``(len(queries), d)`` normalised query vectors."""


def truncate(tokens: Tokens, info: ModelInfo) -> Tokens:
    """The tokens of the first ``info.max_windows`` windows (all of them when ``None``)."""
    limit = info.max_windows
    if limit is None:
        return tokens
    plan = plan_windows(len(tokens), info.window_tokens, info.window_overlap)
    if len(plan) <= limit:
        return tokens
    end = plan[limit - 1].end
    return Tokens(tokens.ids[:end], tokens.offsets[:end])
