"""Write-side records: what ingest hands to a backend to store (read-side results are in
:mod:`searchkit.hits`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

# A document's kind: the file type it was read as, or ``record`` for caller-supplied text.
KINDS = ("txt", "md", "rst", "html", "pdf", "docx", "record")
# Other names of the same kinds (file extensions, the word a user may type in a filter).
KIND_ALIASES = {"htm": "html", "markdown": "md", "text": "txt"}


@dataclass(frozen=True)
class Document:
    """One document ready to embed.

    ``key`` identifies the document in the index: the absolute path for files, the caller's
    id for records. ``text`` is what gets embedded and searched.
    """

    key: str
    text: str
    title: str
    kind: str
    content_hash: str
    path: str | None = None
    size: int = 0
    mtime: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

if TYPE_CHECKING:  # annotations only: the HTTP client uses Hit without importing numpy
    import numpy as np


@dataclass(frozen=True)
class Chunk:
    """A passage of a document: its token span, character span and vector."""

    ordinal: int
    tok_start: int
    tok_end: int
    char_start: int
    char_end: int
    vector: np.ndarray


@dataclass(frozen=True)
class EmbeddedDocument:
    """A document with its whole-document vector and chunk vectors, ready to store."""

    document: Document
    n_tokens: int
    vector: np.ndarray
    chunks: tuple[Chunk, ...] = ()


def metadata_json(metadata: dict[str, Any]) -> str:
    """Metadata as stored: strict JSON, with values JSON lacks (dates, ...) as their text.

    Ingest cleans metadata first (:func:`searchkit.metadata.plain_metadata`); NaN or Infinity
    reaching this point is a bug, and raises ValueError rather than storing what SQLite's JSON
    functions reject.
    """
    return json.dumps(metadata, ensure_ascii=False, default=str, allow_nan=False)
