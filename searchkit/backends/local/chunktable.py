"""Every chunk's spans in memory, with its vector found in the chunk FAISS index, for one
generation: choosing the hits' passages reads no vector blob and no chunk row from SQLite.

A search needs the chunks of the (few) documents it shows, and each one's vector, to pick
each hit's best passage. Reading those rows and blobs from SQLite cost most of a warm query
(issue 20). The chunk FAISS index of a generation already holds every vector (flat and HNSW
store them as one float32 matrix, read here without a copy; IVF stores them per list, copied
here into one matrix), so what is kept in memory is only the small integer columns of the
``chunks`` table, sorted by ``(doc_id, ordinal)``, and each chunk's row in that matrix.

A :class:`ChunkTable` is built once per generation (one SQLite scan of the integer columns)
and never changed: a new generation gets a new table, so threads reading an older snapshot
keep theirs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import faiss
import numpy as np

from ..base import ChunkRow, ChunkSpans
from .ann import VectorIndex
from .store import Store

# cosines_of_documents scores every vector when the documents' chunks are at least 1/GATHER_SHARE
# of them, and gathers their rows first below that.
GATHER_SHARE = 4
# The integer columns kept, in ChunkRow's field order.
COLUMNS = ("id", "doc_id", "ordinal", "tok_start", "tok_end", "char_start", "char_end")


def stored_vectors(index: VectorIndex) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, vectors)`` as the FAISS index stores them, row ``j`` of ``vectors`` under
    ``ids[j]`` (removed HNSW ids included). Flat and HNSW: a view of FAISS's own memory, valid
    while ``index`` lives and is not changed; IVF: a copy gathered from its lists."""
    raw, dim = index.index, index.dim
    if isinstance(raw, faiss.IndexIDMap):
        inner = faiss.downcast_index(raw.index)
        flat = inner if isinstance(inner, faiss.IndexFlat) else faiss.downcast_index(inner.storage)
        n = int(flat.ntotal)
        matrix = faiss.rev_swig_ptr(flat.get_xb(), n * dim).reshape(n, dim) if n else \
            np.zeros((0, dim), dtype=np.float32)
        return faiss.vector_to_array(raw.id_map).astype(np.int64, copy=False), matrix
    lists = raw.invlists
    ids, parts = [], []
    for i in range(raw.nlist):
        size = lists.list_size(i)
        if size:
            ids.append(faiss.rev_swig_ptr(lists.get_ids(i), size).copy())
            parts.append(faiss.rev_swig_ptr(lists.get_codes(i), size * lists.code_size)
                         .view(np.float32).reshape(size, dim).copy())
    if not ids:
        return np.zeros(0, np.int64), np.zeros((0, dim), dtype=np.float32)
    return np.concatenate(ids).astype(np.int64, copy=False), np.concatenate(parts)


@dataclass(frozen=True, eq=False)
class ChunkTable:
    """The live chunks of one generation, sorted by ``(doc_id, ordinal)``.

    Attributes:
        columns: ``(n, 7)`` int64, the :data:`COLUMNS` of each chunk.
        rows: ``(n,)`` each chunk's row in ``vectors``.
        vectors: the chunk FAISS index's stored vectors (see :func:`stored_vectors`).
        owner: that FAISS index, kept alive with its memory.
    """

    columns: np.ndarray
    rows: np.ndarray
    vectors: np.ndarray
    owner: VectorIndex

    @classmethod
    def build(cls, store: Store, index: VectorIndex) -> "ChunkTable | None":
        """The table of the store's snapshot and the chunk index of the same generation;
        ``None`` when the index lacks a live chunk (then SQLite serves, as before)."""
        data = store.db.execute(
            f"SELECT {', '.join(COLUMNS)} FROM chunks ORDER BY doc_id, ordinal").fetchall()
        columns = np.asarray(data, dtype=np.int64).reshape(len(data), len(COLUMNS))
        ids, vectors = stored_vectors(index)
        order = np.argsort(ids, kind="stable")
        where = np.searchsorted(ids, columns[:, 0], sorter=order)
        where = np.minimum(where, max(len(ids) - 1, 0))
        rows = order[where] if len(ids) else np.zeros(0, np.int64)
        if len(columns) and (not len(ids) or not np.array_equal(ids[rows], columns[:, 0])):
            return None
        by_id = np.argsort(columns[:, 0], kind="stable")
        table = cls(columns, rows, vectors, index)
        object.__setattr__(table, "_by_id", by_id)
        object.__setattr__(table, "_sorted_ids", columns[by_id, 0])
        docs = columns[:, 1]
        starts = np.flatnonzero(np.r_[True, docs[1:] != docs[:-1]]) if len(docs) else docs
        # Direct lookups by id (an array indexed by chunk or document id) where ids are dense
        # enough: a binary search over a few hundred thousand ids costs a cache miss a step.
        object.__setattr__(table, "_at_id", _direct(columns[:, 0], np.arange(len(columns))))
        doc_range = _direct(docs[starts], np.stack([starts, np.diff(np.r_[starts, len(docs)])], 1))
        if doc_range is not None:
            doc_range[doc_range[:, 0] < 0] = 0   # no such document: no chunks (start 0, length 0)
        object.__setattr__(table, "_doc_range", doc_range)
        return table

    def cosines_of_documents(self, qvec: np.ndarray,
                             doc_ids: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
        """``(positions, cosines)`` of the chunks of ``doc_ids``, ordered as
        :meth:`of_documents`. Where the documents hold a sizeable share of all chunks, every
        vector is scored in one sequential pass and theirs are picked out: gathering their
        rows first would read them and write a copy of them, slower than reading everything
        once."""
        positions = self.of_documents(doc_ids)
        if not len(positions):
            return positions, np.zeros(0, np.float32)
        rows = self.rows[positions]
        qvec = np.asarray(qvec, dtype=np.float32)
        if len(rows) * GATHER_SHARE >= len(self.vectors):
            return positions, (self.vectors @ qvec)[rows]
        return positions, self.vectors[rows] @ qvec

    def of_documents(self, doc_ids: Iterable[int]) -> np.ndarray:
        """Positions of the chunks of ``doc_ids``, ordered by (document id, ordinal) as the
        SQL of :meth:`Store.chunks_of` orders them."""
        # Few numpy calls, and array methods rather than numpy's Python-level functions: a
        # search asks this for about ten documents, where each call's overhead is the cost.
        docs = np.array(doc_ids, dtype=np.int64) if isinstance(doc_ids, np.ndarray) else \
            np.fromiter(doc_ids, dtype=np.int64)
        docs.sort()
        if len(docs) > 1:
            fresh = docs[1:] != docs[:-1]
            if not fresh.all():
                docs = np.concatenate((docs[:1], docs[1:][fresh]))
        direct = self._doc_range   # type: ignore[attr-defined]
        if direct is not None:
            if len(docs) and (docs[0] < 0 or docs[-1] >= len(direct)):
                docs = docs[(docs >= 0) & (docs < len(direct))]
            found = direct[docs]
            start, lengths = found[:, 0], found[:, 1]
        else:
            col = self.columns[:, 1]
            start = col.searchsorted(docs, "left")
            lengths = col.searchsorted(docs, "right") - start
        ends = lengths.cumsum()
        total = int(ends[-1]) if len(ends) else 0
        if not total:
            return np.zeros(0, np.int64)
        # Concatenated ranges start[i]..start[i] + lengths[i] without a Python loop.
        return np.arange(total) + (start + lengths - ends).repeat(lengths)

    def of_ids(self, ids: Iterable[int]) -> np.ndarray:
        """Positions of the given chunk ids that are live, in the order given."""
        want = ids.astype(np.int64, copy=False) if isinstance(ids, np.ndarray) else \
            np.fromiter(ids, dtype=np.int64)
        sorted_ids = self._sorted_ids   # type: ignore[attr-defined]
        if not len(sorted_ids) or not len(want):
            return np.zeros(0, np.int64)
        direct = self._at_id   # type: ignore[attr-defined]
        if direct is not None:
            found = direct[np.clip(want, 0, len(direct) - 1)]
            return found[(want >= 0) & (want < len(direct)) & (found >= 0)]
        where = np.minimum(np.searchsorted(sorted_ids, want), len(sorted_ids) - 1)
        hit = sorted_ids[where] == want
        return self._by_id[where[hit]]   # type: ignore[attr-defined]

    def spans_at(self, positions: np.ndarray, vectors: np.ndarray | None = None) -> ChunkSpans:
        """The chunks at ``positions`` as :class:`ChunkSpans` (with ``vectors``, if given)."""
        cols = self.columns[positions]
        return ChunkSpans(cols[:, 0], cols[:, 1], cols[:, 5], cols[:, 6], vectors)

    def rows_at(self, positions: np.ndarray) -> list[ChunkRow]:
        return [ChunkRow(*r) for r in self.columns[positions].tolist()]

    def vectors_at(self, positions: np.ndarray) -> np.ndarray:
        """``(len(positions), dim)`` float32, a fresh contiguous copy."""
        return self.vectors[self.rows[positions]]


def _direct(keys: np.ndarray, values: np.ndarray) -> np.ndarray | None:
    """``values`` (one row per key) in an array indexed by key, -1 where no key is; ``None``
    when the keys are too sparse for that (ids never reused: many replaced documents leave
    gaps) and a binary search serves instead."""
    if not len(keys) or keys.min() < 0 or keys.max() > 4 * len(keys) + 4096:
        return None
    out = np.full((int(keys.max()) + 1,) + values.shape[1:], -1, dtype=np.int64)
    out[keys] = values
    return out
