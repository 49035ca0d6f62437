"""Documents → embedded documents: whole-document vectors and chunk vectors.

One model pass per document serves both: the stitched token matrix is mean-pooled over the
whole document (the document vector) and over each chunk span (late chunking). ``naive``
chunking instead embeds every chunk on its own, as peers do; ``none`` stores no chunks.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..embedding.chunking import char_range, make_spans
from ..config import ChunkingConfig
from .documents import Document
from ..embedding.embedder import Embedder, Tokens
from ..embedding.pooling import mean_vector, normalize, pool_spans
from ..records import Chunk, EmbeddedDocument

ProgressFn = Callable[[int], None]


def embed_documents(embedder: Embedder, docs: Sequence[Document], chunking: ChunkingConfig,
                    progress: ProgressFn | None = None,
                    tokens: Sequence[Tokens] | None = None) -> list[EmbeddedDocument]:
    """Embed a batch of documents (one batched model run for all of them).

    Args:
        embedder: the loaded model with the index's window settings.
        docs: documents to embed; each must have at least one token.
        chunking: mode (``late``, ``naive``, ``none``), strategy and size.
        progress: called with the number of tokens fed after each model batch.
        tokens: the documents' tokens if the caller already has them (already cut to
            ``model.max_windows`` windows by :meth:`Embedder.truncate`).
    """
    if tokens is None:
        tokens = [embedder.truncate(embedder.tokenize(d.text)) for d in docs]
    tokens = list(tokens)
    matrices = embedder.token_matrices(tokens, progress=progress)
    spans = [make_spans(d.text, t.offsets, chunking.strategy, chunking.size)
             if chunking.mode != "none" else [] for d, t in zip(docs, tokens)]
    if chunking.mode == "naive":
        pieces = [t.ids[a:b] for t, doc_spans in zip(tokens, spans) for a, b in doc_spans]
        flat = embedder.embed_pieces(pieces)
        bounds = np.cumsum([0] + [len(s) for s in spans])
        chunk_vectors = [flat[bounds[i]:bounds[i + 1]] for i in range(len(docs))]
    else:
        chunk_vectors = [normalize(pool_spans(m, s)) for m, s in zip(matrices, spans)]
    out = []
    for doc, toks, matrix, doc_spans, vectors in zip(docs, tokens, matrices, spans, chunk_vectors):
        chunks = tuple(
            Chunk(ordinal=i, tok_start=a, tok_end=b,
                  char_start=char_range(toks.offsets, (a, b))[0],
                  char_end=char_range(toks.offsets, (a, b))[1], vector=vectors[i])
            for i, (a, b) in enumerate(doc_spans))
        out.append(EmbeddedDocument(doc, len(toks), normalize(mean_vector(matrix)), chunks))
    return out
