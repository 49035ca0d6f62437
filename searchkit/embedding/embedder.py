"""The Embedder: tokenise once, run the model over token windows, return token embeddings.

Everything searchkit embeds goes through :meth:`Embedder.token_matrices`: documents are
tokenised once with character offsets, cut into macro windows on tokens, batched by a token
budget after sorting by length (little padding), and stitched back into one token matrix per
document. Whole-document vectors and late-chunk vectors are both pooled from that matrix, so
one forward pass serves both.
"""

from __future__ import annotations

import logging
from typing import Protocol, Sequence

import numpy as np

from ..config import ModelConfig
from . import models, runtime
from .pooling import SPECIAL_TOKENS, normalize, plan_windows, stitch
from .protocol import ModelInfo, ProgressFn, Tokens, truncate

log = logging.getLogger(__name__)


class TokenEncoder(Protocol):
    """What runs the model: ``torch_runtime.TorchEncoder`` or ``onnx_runtime.OnnxEncoder``."""

    runtime: str
    model: object  # the torch SentenceTransformer, or None
    tokenizer: object
    cls_id: int
    sep_id: int
    pad_id: int
    dimension: int
    max_tokens: int
    position_limit: int | None

    def tokenize(self, text: str) -> tuple[np.ndarray, np.ndarray]: ...

    def forward(self, ids: np.ndarray, mask: np.ndarray, single: bool = False) -> np.ndarray:
        """``(B, L, D)`` token embeddings; ``single``: on one thread (one query)."""


class Embedder:
    """A loaded model plus the windowing and batching rules of an index.

    Build one with :meth:`Embedder.load`.
    """

    def __init__(self, encoder: TokenEncoder, info: ModelInfo, batch_tokens: int,
                 fallback_reason: str | None = None):
        self.encoder = encoder
        self.model = encoder.model
        self.tokenizer = encoder.tokenizer
        self.info = info
        self.batch_tokens = batch_tokens
        self.fallback_reason = fallback_reason
        self._cls, self._sep, self._pad = encoder.cls_id, encoder.sep_id, encoder.pad_id

    @property
    def runtime(self) -> str:
        return self.encoder.runtime

    @classmethod
    def load(cls, config: ModelConfig, allow_download: bool = True,
             name: str | None = None, allow_export: bool = False) -> "Embedder":
        """Resolve and load the configured model (or ``name``), falling back if allowed, on the
        runtime ``model.runtime`` picks (``allow_export``: auto mode may export it to ONNX first).

        Raises:
            ModelNotFoundError: the model is unavailable and fallback is off.
        """
        requested = name or config.name
        source = models.locate_or_fall_back(requested, config.fallback_name if config.fallback else None,
                                            config.network_timeout, allow_download)
        fallback_reason = source.fallback_reason
        encoder = runtime.open_encoder(config, source, allow_export)
        window = config.window_tokens or encoder.max_tokens
        window = min(window, encoder.position_limit or window)
        dim = encoder.dimension
        info = ModelInfo(name=source.name, requested=requested, dimension=dim, max_tokens=encoder.max_tokens,
                         window_tokens=window, window_overlap=config.window_overlap,
                         max_windows=config.max_windows, quantize=config.quantize)
        embedder = cls(encoder, info, config.batch_tokens, fallback_reason)
        if fallback_reason:
            log.warning("!! %s; USING THE BUNDLED OFFLINE MODEL %s instead (%d-d, %d-token windows). "
                        "Set model.fallback: false to make this an error.",
                        fallback_reason, source.name, dim, window)
        return embedder

    # -- tokenisation ---------------------------------------------------------------------

    def tokenize(self, text: str) -> Tokens:
        """Content tokens of a whole text (no special tokens, no truncation) with offsets."""
        return Tokens(*self.encoder.tokenize(text))

    def truncate(self, tokens: Tokens) -> Tokens:
        """The tokens the index embeds: all of them, or those of the first ``max_windows`` windows."""
        return truncate(tokens, self.info)

    # -- forward passes -------------------------------------------------------------------

    def token_matrices(self, docs: Sequence[Tokens], window_tokens: int | None = None,
                       progress: ProgressFn | None = None) -> list[np.ndarray]:
        """Stitched ``(n + 2, d)`` token embeddings of each document (late-chunking input).

        ``window_tokens`` overrides the index's window (used to embed only spans, e.g. naive chunks).
        """
        window = window_tokens or self.info.window_tokens
        plans = [plan_windows(len(d), window, self.info.window_overlap) for d in docs]
        pieces = [(di, wi, d.ids[w.start:w.end]) for di, (d, plan) in enumerate(zip(docs, plans))
                  for wi, w in enumerate(plan)]
        outputs = self._forward_pieces([p[2] for p in pieces], progress)
        per_doc: list[list[np.ndarray]] = [[None] * len(p) for p in plans]  # type: ignore[list-item]
        for (di, wi, _), out in zip(pieces, outputs):
            per_doc[di][wi] = out
        return [stitch(plan, outs) for plan, outs in zip(plans, per_doc)]

    def embed_pieces(self, pieces: Sequence[np.ndarray], progress: ProgressFn | None = None) -> np.ndarray:
        """Mean-pooled, normalised vector of each token sequence embedded on its own (one window each)."""
        return self._pool(self._forward_pieces(pieces, progress))

    def _pool(self, outs: list[np.ndarray]) -> np.ndarray:
        return normalize(np.stack([o.mean(axis=0) for o in outs])) if outs else \
            np.zeros((0, self.info.dimension), dtype=np.float32)

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        """Normalised query vectors, through the same token path as documents (truncated to one window)."""
        toks = [self.tokenize(q).ids[: self.info.window_tokens - SPECIAL_TOKENS] for q in queries]
        # A single query is a few dozen tokens: splitting it across threads gains nothing,
        # and on busy cores waiting for the other threads made one query 14x slower
        # (BENCHMARKS.md, "Query latency").
        return self._pool(self._forward_pieces(toks, None, single=len(toks) == 1))

    def _forward_pieces(self, pieces: Sequence[np.ndarray], progress: ProgressFn | None,
                        single: bool = False) -> list[np.ndarray]:
        """Token embeddings of ``[CLS] piece [SEP]`` for each piece, batched by token budget."""
        order = sorted(range(len(pieces)), key=lambda i: len(pieces[i]))
        results: list[np.ndarray] = [None] * len(pieces)  # type: ignore[list-item]
        batch: list[int] = []

        def run(batch: list[int]) -> None:
            longest = len(pieces[batch[-1]]) + SPECIAL_TOKENS
            ids = np.full((len(batch), longest), self._pad, dtype=np.int64)
            mask = np.zeros((len(batch), longest), dtype=np.int64)
            for row, i in enumerate(batch):
                n = len(pieces[i]) + SPECIAL_TOKENS
                ids[row, 0] = self._cls
                ids[row, 1:n - 1] = pieces[i]
                ids[row, n - 1] = self._sep
                mask[row, :n] = 1
            out = self.encoder.forward(ids, mask, single)
            for row, i in enumerate(batch):
                results[i] = out[row, : len(pieces[i]) + SPECIAL_TOKENS]
            if progress is not None:
                progress(sum(len(pieces[i]) for i in batch))

        for i in order:
            # Sorted ascending, so the newest piece is the longest: padded size = count × its length.
            if batch and (len(batch) + 1) * (len(pieces[i]) + SPECIAL_TOKENS) > self.batch_tokens:
                run(batch)
                batch = []
            batch.append(i)
        if batch:
            run(batch)
        return results

