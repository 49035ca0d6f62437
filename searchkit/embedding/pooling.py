"""Macro windows over long documents and mean pooling of token embeddings. Pure numpy.

A document of ``n`` content tokens is fed to the model as windows of at most
``window_tokens`` tokens, each wrapped in its own special tokens (``[CLS] … [SEP]``).
Consecutive windows overlap by ``overlap`` content tokens so every token is embedded with
context on both sides; when the outputs are stitched back together the overlapping outputs
of the later window are dropped, so every token is counted once.

The stitched matrix has ``n + 2`` rows: the first window's leading special token, the ``n``
content tokens, and the last window's trailing special token. A document that fits one
window gives exactly the model's single-pass output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

SPECIAL_TOKENS = 2  # one leading and one trailing special token per window


@dataclass(frozen=True)
class Window:
    """Content tokens ``[start, end)`` fed in one forward pass; outputs from ``keep`` on are used."""

    start: int
    end: int
    keep: int


def plan_windows(n_tokens: int, window_tokens: int, overlap: int) -> list[Window]:
    """Cover ``n_tokens`` content tokens with overlapping windows of ``window_tokens`` (specials included)."""
    capacity = window_tokens - SPECIAL_TOKENS
    if capacity <= 0:
        raise ValueError("window_tokens must leave room for content beside the special tokens")
    overlap = max(0, min(overlap, capacity // 2))
    windows: list[Window] = []
    start = keep = 0
    while True:
        end = min(start + capacity, n_tokens)
        windows.append(Window(start, end, keep))
        if end >= n_tokens:
            return windows
        keep = end
        start = end - overlap


def stitch(windows: Sequence[Window], outputs: Sequence[np.ndarray]) -> np.ndarray:
    """Join window outputs (each ``(end - start + 2, d)``) into one ``(n + 2, d)`` token matrix."""
    parts = []
    last = len(windows) - 1
    for i, (window, out) in enumerate(zip(windows, outputs)):
        expected = window.end - window.start + SPECIAL_TOKENS
        if out.shape[0] != expected:
            raise ValueError(f"window {i} produced {out.shape[0]} token vectors, expected {expected}")
        first_row = 0 if i == 0 else 1 + (window.keep - window.start)
        last_row = out.shape[0] if i == last else out.shape[0] - 1
        parts.append(out[first_row:last_row])
    return np.concatenate(parts, axis=0)


def span_rows(span: tuple[int, int], n_tokens: int) -> tuple[int, int]:
    """Rows of the stitched matrix that belong to a content span.

    The leading special token belongs to the first span and the trailing one to the last.
    """
    start, end = span
    return (0 if start == 0 else start + 1), (n_tokens + 2 if end == n_tokens else end + 1)


def pool_spans(tokens: np.ndarray, spans: Sequence[tuple[int, int]]) -> np.ndarray:
    """Mean of the stitched token vectors over each span: one row per span, not normalised."""
    n_tokens = tokens.shape[0] - SPECIAL_TOKENS
    if not spans:
        return np.zeros((0, tokens.shape[1]), dtype=np.float32)
    rows = np.array([span_rows(s, n_tokens) for s in spans])
    if rows[0, 0] == 0 and rows[-1, 1] == tokens.shape[0] and np.array_equal(rows[1:, 0], rows[:-1, 1]):
        # Spans that tile the document (what chunking makes): one summing pass, no float64
        # copy of the matrix; 2.4x faster than the prefix sums on 8192 tokens (BENCHMARKS.md).
        sums = np.add.reduceat(tokens, rows[:, 0], axis=0, dtype=np.float64)
    else:
        # Prefix sums make every span mean O(1) however many spans there are.
        cumsum = np.concatenate([np.zeros((1, tokens.shape[1]), dtype=np.float64),
                                 np.cumsum(tokens, axis=0, dtype=np.float64)])
        sums = cumsum[rows[:, 1]] - cumsum[rows[:, 0]]
    return (sums / (rows[:, 1] - rows[:, 0])[:, None]).astype(np.float32)


def mean_vector(tokens: np.ndarray) -> np.ndarray:
    """Token-weighted mean of a stitched matrix: the whole-document vector, not normalised."""
    return tokens.mean(axis=0, dtype=np.float64).astype(np.float32)


def normalize(vectors: np.ndarray) -> np.ndarray:
    """L2-normalise rows (zero rows stay zero) so inner product is cosine similarity."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
