"""BM25 ranked in memory over FTS5's own index, with FTS5's formula: the scores and order of
``bm25()``, without FTS5 reading and scoring every matching row on every query.

FTS5 ranks an OR of terms by visiting each matching row and calling ``bm25()`` on it: a
query with a common word ("how", "to") scores most of the table, which is what a keyword
query at 100k documents spent its time on (BENCHMARKS.md, "Warm query latency"). Here each
query term's postings are read once from FTS5 (its ``fts5vocab`` instance table: the same
tokens, rows and counts FTS5 ranks with) and kept, turned into each row's BM25 contribution;
a query adds the contributions of its terms with numpy. FTS5 stays the source: tokens come
from its tokenizer, row lengths from its ``docsize`` records, and the arithmetic is
``fts5Bm25Function``'s, operation for operation in double precision, so the scores are
bit-for-bit those of ``-bm25()`` and the order is ``ORDER BY bm25(), rowid``
(tests/test_keywords.py compares both on every query).

One :class:`KeywordTable` per FTS5 table and generation, never changed once built (its
posting cache only grows, under a lock), so a reader on an older snapshot keeps its own.
"""

from __future__ import annotations

import functools
import math
import sqlite3
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .store import FTS_TOKENIZE, Store

# fts5Bm25Function's constants (SQLite's ext/fts5/fts5_aux.c).
K1 = 1.2
B = 0.75
# Posting entries one table keeps (20 bytes each); the least recently used terms go first.
POSTINGS_BUDGET = 8_000_000
TOKEN_CACHE = 4096   # query terms whose tokens are kept


@dataclass(frozen=True)
class Postings:
    """One query term's rows (positions in :attr:`KeywordTable.ids`, ascending), each row's
    BM25 contribution and occurrence count, and the term's idf."""

    positions: np.ndarray
    scores: np.ndarray
    counts: np.ndarray
    idf: float


@dataclass(eq=False)
class KeywordTable:
    """Row ids and lengths of one FTS5 table at one generation, and the postings read so far."""

    table: str
    ids: np.ndarray          # every row id, ascending
    lengths: np.ndarray      # each row's length in tokens, all columns (float64)
    average: float           # FTS5's avgdl: total tokens / rows
    _postings: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _held: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def build(cls, store: Store, table: str) -> "KeywordTable":
        ids, sizes = store.fts_sizes(table)
        lengths = _row_lengths(sizes)
        average = float(lengths.sum()) / len(ids) if len(ids) else 1.0
        return cls(table, ids, lengths, average)

    # -- one term --------------------------------------------------------------------------

    def postings(self, store: Store, tokens: tuple[str, ...]) -> Postings:
        """The postings of a term that tokenizes to ``tokens`` (a phrase when several), from
        the cache or read from FTS5 through ``store``, a snapshot of this generation."""
        with self._lock:
            found = self._postings.get(tokens)
            if found is not None:
                self._postings.move_to_end(tokens)
                return found
        rows, counts = self._matches(store, tokens)
        positions = np.searchsorted(self.ids, rows)
        freq = counts.astype(np.float64)
        idf = self._idf(len(positions))
        found = Postings(positions, self._contributions(positions, freq, idf), freq, idf)
        with self._lock:
            if tokens not in self._postings:
                self._postings[tokens] = found
                self._held += len(positions)
            while self._held > POSTINGS_BUDGET and len(self._postings) > 1:
                _, old = self._postings.popitem(last=False)
                self._held -= len(old.positions)
        return found

    def _matches(self, store: Store, tokens: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Rows holding the term and how often (a phrase: its tokens at consecutive offsets
        in one column, counted by where each occurrence starts, as FTS5 counts them)."""
        if len(tokens) == 1:
            return store.fts_counts(self.table, tokens[0])
        starts = None
        for shift, token in enumerate(tokens):
            at = store.fts_positions(self.table, token)
            at = at[at[:, 2] >= shift]
            # One int64 per occurrence: row, column, offset of the phrase's first token.
            keys = np.unique((at[:, 0] << 34) | (at[:, 1] << 32) | (at[:, 2] - shift))
            starts = keys if starts is None else np.intersect1d(starts, keys)
            if not len(starts):
                break
        rows, counts = np.unique(starts >> 34, return_counts=True)
        return rows, counts

    def _idf(self, hits: int) -> float:
        """fts5Bm25Function's idf of a phrase in ``hits`` rows, clamped to 1e-6."""
        idf = math.log((len(self.ids) - hits + 0.5) / (hits + 0.5))
        return idf if idf > 0.0 else 1e-6

    def _contributions(self, positions: np.ndarray, freq: np.ndarray, idf: float) -> np.ndarray:
        """Each row's BM25 term for one phrase, as fts5Bm25Function computes it:
        ``idf * (f * (k1 + 1)) / (f + k1 * (1 - b + b * D / avgdl))``."""
        length = self.lengths[positions]
        return idf * ((freq * (K1 + 1.0)) / (freq + K1 * (1 - B + B * length / self.average)))

    # -- a query ---------------------------------------------------------------------------

    def top(self, store: Store, phrases: Sequence[tuple[str, ...]], limit: int | None,
            allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """``(row id, BM25)`` of the best ``limit`` rows (all when ``None``) matching any
        phrase, among ``allowed`` row ids when given: ``ORDER BY bm25(), rowid``."""
        lists = [self.postings(store, p) for p in phrases]
        score = np.zeros(len(self.ids))
        for part in lists:
            # Phrases in query order, each row's sum starting from 0.0: fts5Bm25Function's sum.
            score[part.positions] += part.scores
        # Every contribution is positive (idf is at least 1e-6): matching rows score above 0.
        matched = np.flatnonzero(score)
        if allowed is not None:
            matched = matched[np.isin(self.ids[matched], allowed)]
        return self._ranked(matched, score[matched], limit)

    def scores_of(self, store: Store, phrases: Sequence[tuple[str, ...]],
                  row_ids: np.ndarray) -> list[tuple[int, float]]:
        """``(row id, BM25)`` of those of ``row_ids`` (ascending) that match, best first."""
        mine = self._positions(row_ids)
        score = np.zeros(len(mine))
        matched = np.zeros(len(mine), dtype=bool)
        if not len(mine):
            return []
        runs = _Runs(mine)
        for phrase in phrases:
            part = self.postings(store, phrase)
            at, local = runs.find(part.positions)
            score[local] += part.scores[at]
            matched[local] = True
        return self._ranked(mine[matched], score[matched], None)

    def window_scores(self, store: Store, phrases: Sequence[tuple[str, ...]],
                      row_ids: np.ndarray, joined: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """BM25 of windows of two rows, and of each row alone (as :meth:`scores_of`, 0 where
        nothing matches). Window ``i`` is row ``row_ids[i]`` plus, where ``joined[i]``, row
        ``row_ids[i + 1]``, scored as one row: each phrase's counts and the lengths summed over
        the two, average length doubled, fts5Bm25Function's formula with each phrase's idf in
        the table. ``row_ids``: runs of consecutive ids."""
        where = self._positions(row_ids)
        if len(where) != len(row_ids):
            raise ValueError("window rows must all be rows of the table")
        if not len(where) or not phrases:
            return np.zeros(len(where)), np.zeros(len(where))
        length = self.lengths[where]
        length = length + np.where(joined, np.r_[length[1:], 0.0], 0.0)
        norm = K1 * (1 - B + B * length / (2 * self.average))
        runs = _Runs(where)
        # One row per phrase; the sums over rows run in phrase order from the first, as the
        # per-phrase additions of scores_of do (bit for bit).
        parts = [self.postings(store, phrase) for phrase in phrases]
        freq = np.zeros((len(parts), len(where)))
        alone = np.zeros((len(parts), len(where)))
        for row, part in enumerate(parts):
            at, local = runs.find(part.positions)
            freq[row, local] = part.counts[at]
            alone[row, local] = part.scores[at]
        freq[:, :-1] += np.where(joined[:-1], freq[:, 1:], 0.0)
        idf = np.array([part.idf for part in parts])[:, None]
        score = (idf * ((freq * (K1 + 1.0)) / (freq + norm))).sum(0)
        return score, alone.sum(0)

    def _positions(self, row_ids: np.ndarray) -> np.ndarray:
        """Positions in :attr:`ids` of those of ``row_ids`` that are rows, in their order."""
        if not len(self.ids):
            return np.zeros(0, np.int64)
        where = np.minimum(np.searchsorted(self.ids, row_ids), len(self.ids) - 1)
        return where[self.ids[where] == row_ids]

    def _ranked(self, positions: np.ndarray, scores: np.ndarray,
                limit: int | None) -> list[tuple[int, float]]:
        if limit is not None and len(positions) > limit:
            if limit <= 0:
                return []
            # Everything scoring at least the limit-th best, then exact order among those.
            cut = -np.partition(-scores, limit - 1)[limit - 1]
            keep = scores >= cut
            positions, scores = positions[keep], scores[keep]
        order = np.lexsort((positions, -scores))[:limit]
        return list(zip(self.ids[positions[order]].tolist(), scores[order].tolist()))


class _Runs:
    """Positions given as a few runs of consecutive values (a document's chunks have
    consecutive ids), and where a term's postings fall in them: found by the runs' ends,
    not by looking up every position."""

    def __init__(self, positions: np.ndarray):
        breaks = np.flatnonzero(np.diff(positions) != 1) + 1
        first = np.r_[0, breaks]                   # where each run starts in ``positions``
        self.starts = positions[first]
        self.stops = positions[np.r_[breaks - 1, len(positions) - 1]] + 1
        self.offset = self.starts - first

    def find(self, postings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(at, local)``: indexes into ``postings`` that fall in the runs, and the index of
        each in the positions given."""
        lo = np.searchsorted(postings, self.starts)
        counts = np.searchsorted(postings, self.stops) - lo
        total = int(counts.sum())
        # The postings of every run, concatenated without a Python loop.
        at = np.repeat(lo - np.cumsum(counts) + counts, counts) + np.arange(total)
        return at, postings[at] - np.repeat(self.offset, counts)


def _row_lengths(sizes: list[bytes]) -> np.ndarray:
    """Each ``docsize`` record's column sizes summed: SQLite varints (7 bits a byte, high bit
    set on every byte but a number's last), decoded for all rows at once."""
    if not sizes:
        return np.zeros(0)
    data = np.frombuffer(b"".join(sizes), dtype=np.uint8).astype(np.int64)
    row_of_byte = np.repeat(np.arange(len(sizes)), [len(s) for s in sizes])
    last = (data & 0x80) == 0
    number = np.cumsum(last) - last            # which varint each byte belongs to
    ends = np.flatnonzero(last)
    shift = 7 * (ends[number] - np.arange(len(data)))
    values = np.bincount(number, weights=(data & 0x7F) << shift, minlength=len(ends))
    return np.bincount(row_of_byte[ends], weights=values, minlength=len(sizes))


class QueryTokens:
    """Query terms as FTS5's tokenizer cuts them: each term is written to a one-row FTS5
    table in memory (one per thread) with the index's tokenizer, and read back from its
    ``fts5vocab`` table. Terms already seen come from a shared LRU cache."""

    def __init__(self, tokenize: str = FTS_TOKENIZE):
        self.tokenize = tokenize
        self._local = threading.local()
        self._cached = functools.lru_cache(maxsize=TOKEN_CACHE)(self._tokens)

    def __call__(self, terms: Sequence[str]) -> list[tuple[str, ...]]:
        """Each term's tokens, in order (empty for a term FTS5 finds no token in)."""
        return [self._cached(term) for term in terms]

    def _tokens(self, term: str) -> tuple[str, ...]:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(":memory:", check_same_thread=False)
            db.execute(f"CREATE VIRTUAL TABLE q USING fts5(t, tokenize='{self.tokenize}')")
            db.execute("CREATE VIRTUAL TABLE temp.q_tokens USING fts5vocab(main, q, instance)")
            self._local.db = db
        with db:
            db.execute("INSERT INTO q (rowid, t) VALUES (1, ?)", [term])
            tokens = tuple(t for (t,) in db.execute("SELECT term FROM q_tokens ORDER BY offset"))
            db.execute("DELETE FROM q")
        return tokens
