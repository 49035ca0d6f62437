"""Read-side records: what a search returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Passage:
    """The best-matching passage of a hit: its text and character offsets in the document,
    and for a PDF the page it starts on (1-based; None for documents without pages)."""

    text: str
    char_start: int
    char_end: int
    score: float
    chunk_id: int | None = None
    page: int | None = None


@dataclass(frozen=True)
class Hit:
    """One search result."""

    rank: int
    score: float
    key: str
    title: str
    path: str | None
    snippet: str
    doc_id: int
    metadata: dict[str, Any] = field(default_factory=dict)
    passage: Passage | None = None
    scores: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain data with stable field names (the CLI's ``--json``)."""
        data = {
            "rank": self.rank, "score": round(float(self.score), 6), "key": self.key,
            "path": self.path, "title": self.title, "snippet": self.snippet,
            "doc_id": self.doc_id, "metadata": self.metadata,
            "scores": {k: round(float(v), 6) for k, v in self.scores.items()},
            "passage": None,
        }
        if self.passage is not None:
            data["passage"] = {"text": self.passage.text, "char_start": self.passage.char_start,
                               "char_end": self.passage.char_end,
                               "score": round(float(self.passage.score), 6),
                               "page": self.passage.page}
        return data
