"""How text is laid out in Milvus VARCHARs (at most 65,535 bytes each)."""

from __future__ import annotations

import pytest

pytest.importorskip("pymilvus", reason="pip install -e '.[milvus]'")

from searchkit.backends.milvus.schema import VARCHAR_BYTES, bm25_text, text_parts  # noqa: E402


@pytest.mark.parametrize("text", ["", "short", "€" * 70_000, ("word " * 30_000) + "é" * 50_000,
                                  "x" * 200_000])
def test_text_parts_tile_the_text_within_the_limit(text):
    parts = text_parts(text, limit=60_000)
    assert "".join(parts) == text
    assert all(len(p.encode("utf-8")) <= 60_000 for p in parts)


def test_parts_end_after_a_space_when_one_is_near():
    parts = text_parts("word " * 30_000, limit=60_000)
    assert all(p.endswith(" ") for p in parts[:-1])


def test_bm25_text_drops_long_runs_and_keeps_the_words():
    text = "volcano " + "A" * 100_000 + " lava ash"
    kept = bm25_text(text)
    assert kept.split() == ["volcano", "lava", "ash"]
    assert len(bm25_text("é" * 10 + " " + "ab " * 40_000).encode("utf-8")) <= VARCHAR_BYTES
