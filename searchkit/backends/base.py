"""What every storage backend provides: the rows it returns and three small protocols.

A :class:`Backend` stores documents (text, metadata, a whole-document vector) and their chunks
(character spans and vectors), answers vector and keyword searches, and owns its write
protocol. Searches run inside :meth:`Backend.snapshot`, a :class:`ReadView` of one committed
state; writes run inside :meth:`Backend.write`, a :class:`WriteSession` that holds the
index's single-writer lock from start to end and leaves the index readable when it ends.

The contract, for every backend (the local one is SQLite + FAISS; see ``backends/local``):

- Ids are ints the backend assigns and never reuses; the rest of searchkit only passes them
  back.
- Filters arrive as a parsed :class:`searchkit.filters.Filters`; each backend compiles them to
  its own query language. Keyword searches take the user's query text, whose terms are
  :func:`query_terms`; no query-language fragment crosses this boundary.
- :meth:`ReadView.vector_search` returns exactly ``min(k, live rows that pass the filters)``
  hits: deleted rows, approximate-search shortfalls and index parameters are the backend's
  business.
- Storage code never imports model code: vectors arrive as numpy arrays, dimensions as ints.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Any, Iterable, Protocol, Sequence, runtime_checkable

import numpy as np

from ..filters import Filters
from ..records import EmbeddedDocument

# The two collections every backend keeps: whole documents and their chunks.
TABLES = ("documents", "chunks")
# Terms beyond this many are dropped from a keyword query (bounds the cost of one query).
MAX_TERMS = 64


def query_terms(text: str) -> list[str]:
    """The terms a keyword query matches (any of them, ranked by BM25).

    Whitespace-separated words of ``text``, without those that have no letter or digit and
    without duplicates (case-insensitive), at most :data:`MAX_TERMS`. Empty: nothing to search.
    """
    terms: dict[str, str] = {}
    for term in text.split():
        if any(ch.isalnum() for ch in term):
            terms.setdefault(term.casefold(), term)
    return list(terms.values())[:MAX_TERMS]


# Rows are built by the dozen for every search: plain slotted dataclasses, since a frozen
# one's __init__ costs several times more.
@dataclass(slots=True)
class DocRow:
    """A stored document without its vector."""

    id: int
    key: str
    path: str | None
    title: str
    kind: str
    content_hash: str
    size: int
    mtime: float | None
    n_tokens: int
    text: str
    metadata: dict[str, Any]


@dataclass(slots=True)
class ChunkRow:
    """A stored chunk without its vector: its document and its spans in that document."""

    id: int
    doc_id: int
    ordinal: int
    tok_start: int
    tok_end: int
    char_start: int
    char_end: int


@dataclass(frozen=True, eq=False)
class ChunkSpans:
    """Chunks as arrays (one entry per chunk), for choosing passages without a row object each.

    Attributes:
        ids, doc_ids, char_start, char_end: ``(n,)`` int64.
        vectors: ``(n, dim)`` float32, or ``None`` when not asked for.
    """

    ids: np.ndarray
    doc_ids: np.ndarray
    char_start: np.ndarray
    char_end: np.ndarray
    vectors: np.ndarray | None = None

    @classmethod
    def of_rows(cls, rows: Sequence[ChunkRow], vectors: np.ndarray | None = None) -> "ChunkSpans":
        data = np.asarray([(r.id, r.doc_id, r.char_start, r.char_end) for r in rows],
                          dtype=np.int64).reshape(len(rows), 4)
        return cls(data[:, 0], data[:, 1], data[:, 2], data[:, 3], vectors)


def chunk_spans(view: "ReadView", doc_ids: Iterable[int] | None = None,
                ids: Iterable[int] | None = None, dim: int | None = None) -> ChunkSpans:
    """:class:`ChunkSpans` of the chunks of ``doc_ids`` (ordered as :meth:`ReadView.chunks_of`,
    with vectors when ``dim`` is given) or of the chunk ids ``ids`` that exist (in that order,
    no vectors). A backend may serve this itself, faster, as ``view.chunk_spans`` with the same
    arguments; otherwise it is built from :meth:`ReadView.chunks_of` and :meth:`ReadView.chunks`.
    """
    own = getattr(view, "chunk_spans", None)
    if own is not None:
        return own(doc_ids=doc_ids, ids=ids, dim=dim)
    if ids is not None:
        wanted = [int(i) for i in ids]
        found = view.chunks(wanted)
        return ChunkSpans.of_rows([found[i] for i in wanted if i in found])
    rows, vectors = view.chunks_of(doc_ids or (), dim)
    return ChunkSpans.of_rows(rows, vectors)


def chunk_cosines(view: "ReadView", qvec: np.ndarray,
                  doc_ids: Iterable[int]) -> tuple[ChunkSpans, np.ndarray]:
    """The chunks of ``doc_ids`` (as :func:`chunk_spans` orders them, without vectors) and
    each one's cosine with ``qvec`` (one matrix product). A backend may serve this itself as
    ``view.chunk_cosines(qvec, doc_ids)`` (returning ``None`` where it cannot)."""
    own = getattr(view, "chunk_cosines", None)
    found = own(qvec, doc_ids) if own is not None else None
    if found is not None:
        return found
    spans = chunk_spans(view, doc_ids=doc_ids, dim=qvec.shape[0])
    cosines = spans.vectors @ qvec if len(spans.ids) else np.zeros(0, np.float32)
    return dataclasses.replace(spans, vectors=None), cosines


def best_of_chunks(spans: ChunkSpans, cosines: np.ndarray) -> dict[int, float]:
    """``doc id → the highest cosine among its chunks`` (``spans`` grouped by document)."""
    if not len(spans.ids):
        return {}
    starts = np.flatnonzero(np.r_[True, spans.doc_ids[1:] != spans.doc_ids[:-1]])
    return dict(zip(spans.doc_ids[starts].tolist(), np.maximum.reduceat(cosines, starts).tolist()))


def best_chunk_of_documents(view: "ReadView", qvec: np.ndarray,
                            doc_ids: Iterable[int]) -> dict[int, float]:
    """``doc id → cosine`` of each given document's best chunk over all its chunks (one
    matrix product over their vectors); documents without chunks are left out. A backend
    speeds this up by serving :func:`chunk_cosines`."""
    return best_of_chunks(*chunk_cosines(view, qvec, doc_ids))


def passage_bm25(view: "ReadView", text: str,
                 doc_ids: Sequence[int]) -> tuple[dict[int, float], dict[int, float]]:
    """The BM25 of the matching chunks of ``doc_ids`` (``chunk id → score``, the scores of
    :meth:`ReadView.keyword_chunks`, in any order), and ``doc id → BM25`` of each document's best passage
    of two adjacent chunks (a passage a chunk boundary cuts in two still counts whole; a
    document of one chunk: that chunk), for the documents with a match. A backend may serve
    this itself as ``view.passage_bm25(text, doc_ids)`` (returning ``None`` where it cannot);
    otherwise each document's best single chunk stands for its best passage."""
    own = getattr(view, "passage_bm25", None)
    found = own(text, doc_ids) if own is not None else None
    if found is not None:
        return found
    chunk_keyword = view.keyword_chunks(text, doc_ids)
    if not chunk_keyword:
        return {}, {}
    spans = chunk_spans(view, ids=chunk_keyword)
    best: dict[int, float] = {}
    for doc, chunk in zip(spans.doc_ids.tolist(), spans.ids.tolist()):
        best[doc] = max(best.get(doc, 0.0), chunk_keyword[chunk])
    return chunk_keyword, best


@runtime_checkable
class ReadView(Protocol):
    """One committed state of an index: every read through it sees the same generation."""

    def count(self, table: str = "documents") -> int:
        """Live rows of ``documents`` or ``chunks``."""

    def manifest(self) -> dict[str, Any]:
        """The index's recorded settings (model, chunking, structure, generation, ...)."""

    def vector_search(self, table: str, qvec: np.ndarray, k: int,
                      filters: Filters | None = None) -> dict[int, float]:
        """Top ``k`` live rows of ``table`` by cosine with ``qvec`` (documents passing
        ``filters``, or chunks of such documents): ``id → cosine``, best first."""

    def keyword_documents(self, text: str, k: int,
                          filters: Filters | None = None) -> dict[int, float]:
        """Top ``k`` documents by BM25 of :func:`query_terms` ``(text)``: ``id → score``
        (higher is better), best first; empty when ``text`` has no terms."""

    def keyword_chunks(self, text: str, doc_ids: Sequence[int] | None = None,
                       limit: int | None = None,
                       filters: Filters | None = None) -> dict[int, float]:
        """Chunks by BM25, best first: the chunks of ``doc_ids`` (each document's passage), or
        the top ``limit`` chunks of documents passing ``filters`` (passage search)."""

    def documents(self, ids: Iterable[int]) -> dict[int, DocRow]:
        """The rows of the given document ids that exist."""

    def chunks(self, ids: Iterable[int]) -> dict[int, ChunkRow]:
        """The rows of the given chunk ids that exist."""

    def chunks_of(self, doc_ids: Iterable[int],
                  dim: int | None = None) -> tuple[list[ChunkRow], np.ndarray | None]:
        """Chunks of the given documents ordered by (document id, ordinal), with their
        ``(n, dim)`` vectors when ``dim`` is given (else ``None``)."""

    def vectors(self, table: str, ids: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, vectors)`` of ``table``, ascending by id: all live rows, or only ``ids``."""

    def stats(self) -> dict[str, Any]:
        """Counts, structure and sizes, for ``searchkit info``."""


@runtime_checkable
class WriteSession(Protocol):
    """The one writer of an index, from :meth:`Backend.write` to the end of its ``with``.

    Each method that changes vectors commits atomically on its own: a crash between two calls
    loses at most the call in flight, and the index opens. Leaving the ``with`` without an
    exception finishes the write (saves what readers need); with one, what was committed stays.
    """

    def manifest(self) -> dict[str, Any]:
        """The recorded settings as the writer sees them."""

    def record(self, **values: Any) -> None:
        """Record settings in the manifest (the model and chunking on the first write)."""

    def prepare(self) -> None:
        """Get ready for adding and removing (load what the writer keeps in step)."""

    def states(self, keys: Iterable[str] | None = None) -> dict[str, tuple[int, str]]:
        """``key → (id, content_hash)`` of the given keys that are stored (all when ``None``)."""

    def paths_under(self, folder: str) -> dict[str, int]:
        """``path → id`` of file documents stored under the absolute folder path ``folder``."""

    def title_metadata(self, ids: Sequence[int]) -> dict[int, tuple[str, dict[str, Any]]]:
        """``id → (title, metadata)`` of the given documents."""

    def relabel(self, rows: Iterable[tuple[int, str, dict[str, Any]]]) -> None:
        """New ``(id, title, metadata)`` for documents whose text is unchanged (no re-embedding)."""

    def restamp(self, stamps: Iterable[tuple[str, int, float]]) -> int:
        """Record ``(key, size, mtime)`` of unchanged files; returns how many rows changed."""

    def replace(self, old_ids: Sequence[int], embedded: Sequence[EmbeddedDocument]) -> list[int]:
        """In one commit: delete documents ``old_ids`` (and their chunks) and store
        ``embedded``; returns the new document ids."""

    def delete(self, doc_ids: Sequence[int]) -> None:
        """Delete documents and their chunks in one commit."""

    def rebuild(self, index_type: str | None = None) -> None:
        """Rebuild the vector structures from the stored vectors (``index_type`` recorded)."""

    def compact(self) -> dict[str, Any]:
        """Drop removed vectors for good and give space back; returns what was dropped."""


@runtime_checkable
class Backend(Protocol):
    """One index in one storage system. Open one with :func:`searchkit.backends.factory.open_backend`.

    Safe to share between threads for reading: every :meth:`snapshot` works on its own.
    """

    location: str

    def snapshot(self) -> contextlib.AbstractContextManager[ReadView]:
        """A read view of the latest committed state, for the length of the ``with``."""

    def write(self, wait: float | None = None) -> contextlib.AbstractContextManager[WriteSession]:
        """Become the index's one writer (waiting up to ``wait`` seconds for another one;
        ``None``: fail at once with :class:`searchkit.errors.IndexLockedError`)."""

    def close(self) -> None:
        """Release connections and files."""
