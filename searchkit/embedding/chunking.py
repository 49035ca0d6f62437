"""Chunk spans on tokens. Pure functions: token counts and offsets in, spans out.

A span is a half-open range ``[start, end)`` of a document's content tokens (special tokens
excluded). Spans of one document cover every token exactly once, in order.
"""

from __future__ import annotations

import re

import numpy as np

from ..pages import PAGE_BREAK

# A sentence ends at . ! ? (optionally closed by quotes or brackets) before whitespace, or at a
# blank line. Used only to choose where token spans end, never to cut the text itself.
SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s)|\n\s*\n")


def fixed_spans(n_tokens: int, size: int) -> list[tuple[int, int]]:
    """Consecutive spans of ``size`` tokens; a last span shorter than half ``size`` joins the one before."""
    if size <= 0:
        raise ValueError("chunk size must be positive")
    if n_tokens <= 0:
        return []
    bounds = list(range(0, n_tokens, size)) + [n_tokens]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < size / 2:
        del bounds[-2]
    return list(zip(bounds[:-1], bounds[1:]))


def max_span_tokens(strategy: str, size: int) -> int:
    """The longest span a strategy makes for ``size``: a fixed tail shorter than half a chunk
    joins the chunk before (up to ``size + ceil(size/2) - 1`` tokens); sentence spans keep to ``size``."""
    return size + (size + 1) // 2 - 1 if strategy == "fixed" else size


def sentence_spans(text: str, offsets: np.ndarray, max_tokens: int) -> list[tuple[int, int]]:
    """Spans that end on sentence boundaries and hold at most ``max_tokens`` tokens.

    Sentences are grouped greedily; a single sentence longer than ``max_tokens`` is split into
    fixed spans.

    Args:
        text: the document text the offsets point into.
        offsets: ``(n_tokens, 2)`` character start/end of each content token.
        max_tokens: budget of one span.
    """
    n = len(offsets)
    if n == 0:
        return []
    ends = np.asarray(offsets)[:, 1]
    # A sentence ends after the last token that ends at or before its boundary: after the
    # punctuation, or before the blank line.
    boundaries = (m.start() if text[m.start()] == "\n" else m.end()
                  for m in SENTENCE_END.finditer(text))
    cut_tokens = sorted({int(np.searchsorted(ends, pos, side="right")) for pos in boundaries})
    sentences: list[tuple[int, int]] = []
    start = 0
    for cut in cut_tokens + [n]:
        cut = min(cut, n)
        if cut > start:
            sentences.append((start, cut))
            start = cut
    spans: list[tuple[int, int]] = []
    cur_start, cur_end = sentences[0][0], sentences[0][0]
    for s, e in sentences:
        if e - s > max_tokens:
            if cur_end > cur_start:
                spans.append((cur_start, cur_end))
            spans.extend((s + a, s + b) for a, b in fixed_spans(e - s, max_tokens))
            cur_start = cur_end = e
        elif e - cur_start > max_tokens:
            spans.append((cur_start, cur_end))
            cur_start, cur_end = s, e
        else:
            cur_end = e
    if cur_end > cur_start:
        spans.append((cur_start, cur_end))
    return spans


def char_range(offsets: np.ndarray, span: tuple[int, int]) -> tuple[int, int]:
    """Character ``[start, end)`` in the document text covered by a token span."""
    start, end = span
    return int(offsets[start][0]), int(offsets[end - 1][1])


def make_spans(text: str, offsets: np.ndarray, strategy: str, size: int) -> list[tuple[int, int]]:
    """Spans by the configured strategy (``fixed`` or ``sentence``), none across a page break.

    A form feed separates the pages of a PDF's text: keeping each span on one page lets a
    passage name its page (a span that began with the last words of page 11 would say
    ``p. 11`` for text on page 12).
    """
    if strategy not in ("fixed", "sentence"):
        raise ValueError(f"unknown chunking strategy {strategy!r}")
    spans: list[tuple[int, int]] = []
    for a, b in page_ranges(text, offsets):
        if strategy == "fixed":
            part = fixed_spans(b - a, size)
        else:
            part = sentence_spans(text, offsets[a:b], size)
        spans.extend((a + start, a + end) for start, end in part)
    return spans


def page_ranges(text: str, offsets: np.ndarray) -> list[tuple[int, int]]:
    """Token ranges ``[start, end)`` between page breaks (``\\f``); one range without any."""
    n = len(offsets)
    if PAGE_BREAK not in text or n == 0:
        return [(0, n)]
    starts = np.asarray(offsets)[:, 0]
    cuts = (int(np.searchsorted(starts, m.start())) for m in re.finditer(PAGE_BREAK, text))
    bounds = sorted({0, n, *cuts})
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]
