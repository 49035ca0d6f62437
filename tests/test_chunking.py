import numpy as np
import pytest

from spans import covers_exactly

from searchkit.embedding.chunking import (char_range, fixed_spans, make_spans, max_span_tokens,
                                          sentence_spans)


@pytest.mark.parametrize("n, size", [(1, 4), (10, 4), (12, 4), (13, 4), (1000, 256), (255, 256)])
def test_fixed_spans_tile_the_document(n, size):
    spans = fixed_spans(n, size)
    assert covers_exactly(spans, n)
    assert all(b - a <= size * 1.5 for a, b in spans)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 64, 200])
def test_max_span_tokens_is_the_longest_fixed_span(size):
    longest = max(b - a for n in range(1, 4 * size) for a, b in fixed_spans(n, size))
    assert longest == max_span_tokens("fixed", size)


def test_short_tail_joins_previous_span():
    assert fixed_spans(9, 4) == [(0, 4), (4, 9)]
    assert fixed_spans(10, 4) == [(0, 4), (4, 8), (8, 10)]


def _word_offsets(text):
    offsets, pos = [], 0
    for word in text.split(" "):
        offsets.append((pos, pos + len(word)))
        pos += len(word) + 1
    return np.array(offsets)


def test_sentence_spans_end_on_sentence_boundaries():
    text = "One two three. Four five. Six seven eight nine. Ten."
    offsets = _word_offsets(text)
    spans = sentence_spans(text, offsets, max_tokens=5)
    assert covers_exactly(spans, len(offsets))
    pieces = [text[slice(*char_range(offsets, s))] for s in spans]
    assert pieces == ["One two three. Four five.", "Six seven eight nine. Ten."]


def test_overlong_sentence_is_split_to_the_budget():
    text = " ".join(f"w{i}" for i in range(12)) + "."
    offsets = _word_offsets(text)
    spans = sentence_spans(text, offsets, max_tokens=5)
    assert covers_exactly(spans, 12)
    assert max(b - a for a, b in spans) <= 5 * 1.5


def _token_offsets(text):
    import re
    return np.array([(m.start(), m.end()) for m in re.finditer(r"\S+", text)])


@pytest.mark.parametrize("strategy", ["fixed", "sentence"])
def test_spans_never_cross_a_page_break(strategy):
    pages = ["a1 a2 a3 a4 a5 a6 a7.", "b1 b2.", "c1 c2 c3 c4 c5 c6 c7 c8 c9."]
    text = "\n\f".join(pages)
    offsets = _token_offsets(text)
    spans = make_spans(text, offsets, strategy, 4)
    assert covers_exactly(spans, len(offsets))
    pieces = [text[slice(*char_range(offsets, s))] for s in spans]
    assert not any("\f" in piece for piece in pieces)
    assert "b1 b2." in pieces                      # a short page is its own span
    assert make_spans("x y z", _token_offsets("x y z"), strategy, 4) == [(0, 3)]
