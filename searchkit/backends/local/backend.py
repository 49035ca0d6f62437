"""The local backend: one index folder holding a SQLite database (the source of truth) and
one FAISS file per table, named after the database generation it reflects.

Reading: every thread gets its own SQLite connection, and a search runs in one WAL snapshot
of it (:meth:`LocalBackend.snapshot`); the FAISS indexes readers share are swapped under a
lock by generation (:class:`VectorCaches`). Writing: :meth:`LocalBackend.write` takes the
folder's writer lock and hands out a :class:`LocalWriteSession` with its own FAISS caches,
kept in step with each commit, checkpointed, resized, compacted and saved when the write ends.
SQLite errors become searchkit errors here, naming the database file.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from ...config import Config
from ...errors import IndexStoreError
from ...filters import Filters
from ...records import EmbeddedDocument
from ..base import TABLES, ChunkRow, ChunkSpans, DocRow, query_terms
from . import ann
from .caches import VectorCaches
from .chunktable import ChunkTable
from .keywords import KeywordTable, QueryTokens
from .locking import LOCK_NAME, WriteLock
from .sql import where_sql
from .store import DB_NAME, Store, creatable, explain, make_folder

# Seconds a process creating an index waits for another one creating the same index.
CREATE_WAIT = 30.0
# Generations whose derived state (chunk tables, BM25 tables, row counts) readers keep: a
# snapshot may lag the newest commit by one.
KEEP_GENERATIONS = 2


def store_error(folder: Path, exc: sqlite3.DatabaseError) -> IndexStoreError:
    """The searchkit error for an SQLite error on the index in ``folder``: damage only when
    SQLite's integrity check fails (see :func:`store.explain`)."""
    return explain(folder / DB_NAME, exc)


@contextlib.contextmanager
def sqlite_errors(folder: Path) -> Iterator[None]:
    """Report a damaged or unusable database as a searchkit error, never a bare traceback."""
    try:
        yield
    except (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError):
        raise  # a bug in searchkit, not a property of the file
    except sqlite3.DatabaseError as exc:
        raise store_error(folder, exc) from None


class LocalBackend:
    """SQLite + FAISS in one folder. Safe to share between threads for reading."""

    def __init__(self, folder: str | Path, config: Config, create: bool = False,
                 wait: float | None = None):
        """Open (or with ``create``, create) the index in ``folder``.

        Raises:
            NotAnIndexError, CorruptIndexError, SchemaVersionError: the folder cannot be used.
        """
        self.folder = Path(folder)
        self.location = str(self.folder)
        self.config = config
        self._local = threading.local()
        self._stores: list[Store] = []
        self._stores_lock = threading.Lock()
        self._create, self._wait = create, wait
        # Set when this object created the index (and whether the folder too), until a write
        # succeeds: a failed first write then removes what was created (see _discard).
        self._created: bool | None = None
        self.caches = VectorCaches(self.folder, lambda: self.store, config.ann, shared=True)
        # What readers derive from one generation, built once: ``(generation, what) → value``.
        self._derived: dict[tuple[int, str], Any] = {}
        self._derived_lock = threading.Lock()
        self.query_tokens = QueryTokens()
        _ = self.store  # open (and create or migrate) the database now, in the opening thread

    # -- connections ----------------------------------------------------------------------

    @property
    def store(self) -> Store:
        """The calling thread's connection to the database."""
        store = getattr(self._local, "store", None)
        if store is None:
            with sqlite_errors(self.folder):
                store = self._open_store()
            with self._stores_lock:
                self._stores.append(store)
            self._local.store = store
            # This thread searches one query at a time: FAISS on one thread (set once).
            ann.set_threads(1)
        return store

    def _open_store(self) -> Store:
        folder, wait = self.folder, self._wait
        if self._create and not (folder / DB_NAME).exists() and creatable(folder):
            made_folder = not folder.exists()
            # Two processes creating one index must not both run the migrations.
            make_folder(folder)
            with WriteLock(folder, CREATE_WAIT if wait is None else wait):
                store = Store.open(folder, create=True)
            self._created = made_folder
            return store
        return Store.open(folder, create=self._create)

    def _holds_nothing(self) -> bool:
        try:
            return not self.store.count("documents")
        except sqlite3.DatabaseError:  # let the first error through, untouched
            return False

    def _discard(self) -> None:
        """Remove the index this object created, after its first write failed with nothing
        stored (``searchkit index missing_dir --index new``): a failed first run leaves no
        index behind. Called under the writer lock; the next use creates the index afresh."""
        made_folder, self._created = self._created, None
        self.close()
        self.caches = VectorCaches(self.folder, lambda: self.store, self.config.ann, shared=True)
        for path in self.folder.iterdir():
            if path.name in (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", LOCK_NAME) \
                    or path.name.endswith((".faiss", ".tmp")):
                path.unlink(missing_ok=True)
        if made_folder:
            with contextlib.suppress(OSError):  # not empty: something else was put there
                self.folder.rmdir()

    def close(self) -> None:
        with self._stores_lock:
            stores, self._stores = self._stores, []
        for store in stores:
            store.close()
        self._local = threading.local()

    # -- reading --------------------------------------------------------------------------

    @contextlib.contextmanager
    def snapshot(self) -> Iterator["LocalReadView"]:
        """One WAL read transaction of the calling thread's connection (nested use: the same)."""
        with sqlite_errors(self.folder):
            store = self.store
            with store.snapshot():
                yield LocalReadView(self, store)

    def _per_generation(self, store: Store, what: str, build: Callable[[], Any]) -> Any:
        """``build()`` once per generation ``store``'s snapshot sees (built outside the lock:
        two threads may both build one, alike; the first stored wins), keeping the newest
        :data:`KEEP_GENERATIONS` generations."""
        key = (store.generation, what)
        with self._derived_lock:
            if key in self._derived:
                return self._derived[key]
        value = build()
        with self._derived_lock:
            value = self._derived.setdefault(key, value)
            newest = sorted({g for g, _ in self._derived})[-KEEP_GENERATIONS:]
            for old in [k for k in self._derived if k[0] not in newest]:
                del self._derived[old]
        return value

    def chunk_table(self, store: Store) -> ChunkTable | None:
        """The chunk table of the generation ``store``'s snapshot sees (built on first use;
        ``None``: no chunks, or the FAISS index disagrees, and SQLite serves chunk reads)."""
        return self._per_generation(store, "chunk table", lambda: ChunkTable.build(
            store, self.caches.get("chunks")) if self.count(store, "chunks") else None)

    def count(self, store: Store, table: str) -> int:
        """Rows of ``table`` at the generation ``store``'s snapshot sees (counted once per
        generation: ``count(*)`` walks a whole index, about a millisecond at 300k chunks)."""
        return self._per_generation(store, f"count {table}", lambda: store.count(table))

    def keyword_table(self, store: Store, table: str) -> KeywordTable:
        """The in-memory BM25 of FTS5 table ``table`` at the generation ``store``'s snapshot
        sees (built on first use: one read of FTS5's row sizes)."""
        return self._per_generation(store, f"bm25 {table}", lambda: KeywordTable.build(store, table))

    def ann(self, table: str) -> ann.VectorIndex:
        """The FAISS index of ``table`` for the database's current state (for tests and tools)."""
        with self.snapshot():
            return self.caches.get(table)

    # -- writing --------------------------------------------------------------------------

    @contextlib.contextmanager
    def write(self, wait: float | None = None) -> Iterator["LocalWriteSession"]:
        """The folder's writer lock for the length of the ``with``, and a session to write with."""
        with sqlite_errors(self.folder):
            store = self.store    # opened (or created afresh after a discarded first write) first
        with sqlite_errors(self.folder), WriteLock(self.folder, wait):
            session = LocalWriteSession(self, store)
            ann.set_threads(ann.DEFAULT_THREADS)   # builds and training use every core
            try:
                yield session
                session.finish()
            except BaseException:
                if self._created is not None and self._holds_nothing():
                    self._discard()
                raise
            finally:
                ann.set_threads(1)
            self._created = None
            # The writer is done with its indexes: readers in this process take them over.
            if session.caches.saved_generation == self.store.generation:
                self.caches.adopt(session.caches.loaded(), self.store.generation)


class LocalReadView:
    """Reads of one snapshot: rows from SQLite, vectors searched with the shared FAISS caches."""

    def __init__(self, backend: LocalBackend, store: Store):
        self.backend = backend
        self.store = store
        self._allowed: dict[tuple[str, Filters], np.ndarray] = {}
        self._table: ChunkTable | None | bool = False   # False: not looked up yet

    def count(self, table: str = "documents") -> int:
        return self.backend.count(self.store, table)

    def manifest(self) -> dict[str, Any]:
        return self.store.manifest()

    @property
    def generation(self) -> int:
        return self.store.generation

    def _dim(self) -> int:
        return self.backend.caches.dimension()

    def allowed(self, table: str, filters: Filters) -> np.ndarray:
        """Ids of ``table`` whose documents pass ``filters`` (kept for this snapshot)."""
        key = (table, filters)
        if key not in self._allowed:
            self._allowed[key] = self.store.filtered_ids(where_sql(filters), table)
        return self._allowed[key]

    def vector_search(self, table: str, qvec: np.ndarray, k: int,
                      filters: Filters | None = None) -> dict[int, float]:
        """Top-``k`` live rows of ``table`` by vector: ``id → cosine``, best first.

        The ids that pass the filters (read from SQLite) go to FAISS as an id selector. Should
        an approximate index (IVF, HNSW) find fewer than ``k`` while more are allowed, the
        allowed rows are scored exactly from the vectors in SQLite.
        """
        allowed = self.allowed(table, filters) if filters else None
        index = self.backend.caches.get(table)
        live = self.count(table)
        settings = self.backend.config.ann
        # HNSW keeps removed ids as tombstones: ask for enough extra to still fill k. An
        # allowed set comes from SQLite and already excludes them.
        ntotal = index.ntotal
        fetch = k + max(0, ntotal - live) if allowed is None else k
        scores, ids = index.search(qvec, fetch, nprobe=settings.nprobe,
                                   ef_search=settings.ef_search, allowed=allowed)
        found = ids[0] >= 0
        pairs = list(zip(ids[0][found].tolist(), scores[0][found].tolist()))
        if allowed is None and ntotal != live:
            rows = self.store.documents([i for i, _ in pairs]) if table == "documents" else \
                self.store.chunks([i for i, _ in pairs])
            pairs = [(i, s) for i, s in pairs if i in rows]
        if allowed is not None and len(pairs) < min(k, len(allowed)):
            found, vectors = self.store.vectors(table, qvec.shape[0], ids=allowed)
            exact = vectors @ qvec
            pairs = [(int(found[j]), float(exact[j])) for j in np.argsort(-exact, kind="stable")[:k]]
        return dict(pairs[:k])

    def _phrases(self, text: str) -> list[tuple[str, ...]]:
        """The query's terms as FTS5 tokenizes them (terms without a token dropped: FTS5
        matches nothing with them, and they add nothing to a row's score)."""
        return [p for p in self.backend.query_tokens(query_terms(text)) if p]

    def keyword_documents(self, text: str, k: int,
                          filters: Filters | None = None) -> dict[int, float]:
        phrases = self._phrases(text)
        if not phrases:
            return {}
        table = self.backend.keyword_table(self.store, "documents_fts")
        allowed = self.allowed("documents", filters) if filters else None
        return dict(table.top(self.store, phrases, k, allowed))

    def keyword_chunks(self, text: str, doc_ids: Sequence[int] | None = None,
                       limit: int | None = None,
                       filters: Filters | None = None) -> dict[int, float]:
        phrases = self._phrases(text)
        if not phrases:
            return {}
        keywords = self.backend.keyword_table(self.store, "chunks_fts")
        if doc_ids is None:
            allowed = self.allowed("chunks", filters) if filters else None
            return dict(keywords.top(self.store, phrases, limit, allowed))
        table = self._chunk_table()
        if table is not None:
            ids = np.sort(table.columns[table.of_documents(doc_ids), 0])
        else:
            ids = np.asarray(sorted(c.id for c in self.store.chunk_rows(list(doc_ids))), dtype=np.int64)
        if filters:
            ids = ids[np.isin(ids, self.allowed("chunks", filters))]
        return dict(keywords.scores_of(self.store, phrases, ids)[:limit])

    def passage_bm25(self, text: str, doc_ids: Sequence[int]
                     ) -> tuple[dict[int, float], dict[int, float]] | None:
        """See :func:`searchkit.backends.base.passage_bm25`: the chunks' BM25 and windows of
        two adjacent chunks, in one pass over the in-memory BM25's postings
        (``KeywordTable.window_scores``)."""
        table = self._chunk_table()
        if table is None:
            return None
        phrases = self._phrases(text)
        positions = table.of_documents(doc_ids)
        if not phrases or not len(positions):
            return {}, {}
        ids, docs = table.columns[positions, 0], table.columns[positions, 1]
        joined = np.r_[docs[1:] == docs[:-1], False]
        first = np.r_[True, docs[1:] != docs[:-1]]
        keywords = self.backend.keyword_table(self.store, "chunks_fts")
        window, single = keywords.window_scores(self.store, phrases, ids, joined)
        # A document's last chunk starts no window of its own (the one before covers it),
        # unless it is the document's only chunk.
        window = np.where(joined | first, window, 0.0)
        starts = np.flatnonzero(first)
        best = np.maximum.reduceat(window, starts)
        keep = best > 0
        matched = single > 0
        return (dict(zip(ids[matched].tolist(), single[matched].tolist())),
                dict(zip(docs[starts][keep].tolist(), best[keep].tolist())))

    def documents(self, ids: Iterable[int]) -> dict[int, DocRow]:
        return self.store.documents(list(ids))

    def _chunk_table(self) -> ChunkTable | None:
        if self._table is False:
            self._table = self.backend.chunk_table(self.store)
        return self._table

    def chunks(self, ids: Iterable[int]) -> dict[int, ChunkRow]:
        table = self._chunk_table()
        if table is None:
            return self.store.chunks(list(ids))
        return {r.id: r for r in table.rows_at(table.of_ids(ids))}

    def chunks_of(self, doc_ids: Iterable[int],
                  dim: int | None = None) -> tuple[list[ChunkRow], np.ndarray | None]:
        """Served from the generation's :class:`ChunkTable` (spans in memory, vectors from the
        chunk FAISS index): no SQLite read per query."""
        table = self._chunk_table()
        if table is None or (dim is not None and table.vectors.shape[1] != dim):
            doc_ids = list(doc_ids)
            if dim is None:
                return self.store.chunk_rows(doc_ids), None
            return self.store.chunks_of(doc_ids, dim)
        positions = table.of_documents(doc_ids)
        return table.rows_at(positions), table.vectors_at(positions) if dim is not None else None

    def chunk_spans(self, doc_ids: Iterable[int] | None = None, ids: Iterable[int] | None = None,
                    dim: int | None = None) -> ChunkSpans:
        """See :func:`searchkit.backends.base.chunk_spans`: from the :class:`ChunkTable`."""
        table = self._chunk_table()
        if table is None or (dim is not None and table.vectors.shape[1] != dim):
            from ..base import chunk_spans
            return chunk_spans(_RowsOnly(self), doc_ids, ids, dim)
        positions = table.of_ids(ids) if ids is not None else table.of_documents(doc_ids or ())
        vectors = table.vectors_at(positions) if dim is not None and ids is None else None
        return table.spans_at(positions, vectors)

    def chunk_cosines(self, qvec: np.ndarray,
                      doc_ids: Iterable[int]) -> tuple[ChunkSpans, np.ndarray] | None:
        """See :func:`searchkit.backends.base.chunk_cosines`: from the :class:`ChunkTable`'s
        vectors, without copying them where the documents hold a sizeable share of all chunks."""
        table = self._chunk_table()
        if table is None or table.vectors.shape[1] != qvec.shape[0]:
            return None
        positions, cosines = table.cosines_of_documents(qvec, doc_ids)
        return table.spans_at(positions), cosines

    def vectors(self, table: str, ids: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        return self.store.vectors(table, self._dim(), ids=ids)

    def stats(self) -> dict[str, Any]:
        manifest = self.store.manifest()
        files = _folder_files(self.backend.folder)
        tokens = self.store.db.execute("SELECT coalesce(sum(n_tokens), 0) FROM documents").fetchone()[0]
        settings = self.backend.config.ann
        return {
            "index": str(self.backend.folder),
            "model": manifest.get("model"),
            "chunking": manifest.get("chunking"),
            "documents": self.store.count("documents"),
            "chunks": self.store.count("chunks"),
            "tokens": int(tokens),
            "ann_type": manifest.get("ann_type"),
            "ann": {t: manifest.get(f"ann_{t}") for t in TABLES},
            "search": {"nprobe": settings.nprobe, "ef_search": settings.ef_search},
            "schema_version": manifest.get("schema_version"),
            "generation": manifest.get("generation"),
            "files": files,
            "bytes_on_disk": sum(files.values()),
        }


class _RowsOnly:
    """A read view's row methods alone (the generic :func:`chunk_spans` over SQLite)."""

    def __init__(self, view: LocalReadView):
        self.chunks, self.chunks_of = view.chunks, view.chunks_of


class LocalWriteSession:
    """The whole write protocol of the local backend, under the writer lock.

    Each batch commits to SQLite (bumping the generation) and is then mirrored into this
    session's in-memory FAISS indexes; those are checkpointed every
    ``ingest.checkpoint_seconds`` and, when the session ends after a commit (or with the
    files on disk lagging), resized, compacted past ``ann.compact_ratio`` and saved.
    """

    def __init__(self, backend: LocalBackend, store: Store):
        self.backend = backend
        self.store = store
        config = backend.config
        self.caches = VectorCaches(backend.folder, lambda: store, config.ann,
                                   config.ingest.checkpoint_seconds, seed=backend.caches)
        self._prepared = False
        self._committed = False

    def manifest(self) -> dict[str, Any]:
        return self.store.manifest()

    def record(self, **values: Any) -> None:
        if "ann_type" not in self.store.manifest():
            values.setdefault("ann_type", self.backend.config.ann.type)
        self.store.set_manifest(**values)
        self._committed = True

    def prepare(self) -> None:
        """Restart the checkpoint clock and load (or rebuild) the FAISS indexes, so they and
        SQLite move in step from the first commit on."""
        self.caches.start_write()
        self.caches.load_all()
        self._prepared = True

    def states(self, keys: Iterable[str] | None = None) -> dict[str, tuple[int, str]]:
        return self.store.states(keys)

    def paths_under(self, folder: str) -> dict[str, int]:
        return self.store.paths_under(folder)

    def title_metadata(self, ids: Sequence[int]) -> dict[int, tuple[str, dict[str, Any]]]:
        return self.store.title_metadata(ids)

    def relabel(self, rows: Iterable[tuple[int, str, dict[str, Any]]]) -> None:
        self.store.update_title_metadata(rows)

    def restamp(self, stamps: Iterable[tuple[str, int, float]]) -> int:
        return self.store.restamp(stamps)

    def replace(self, old_ids: Sequence[int], embedded: Sequence[EmbeddedDocument]) -> list[int]:
        new = self._commit(old_ids, embedded)
        self.caches.checkpoint()
        return new

    def delete(self, doc_ids: Sequence[int]) -> None:
        self._commit(doc_ids, [])

    def _commit(self, old_ids: Sequence[int], embedded: Sequence[EmbeddedDocument]) -> list[int]:
        if not self._prepared:
            # Before the commit, so the caches load level with SQLite, not one behind.
            self.prepare()
        old_ids = [int(i) for i in old_ids]
        with self.store.transaction():
            old_chunks = self.store.delete(old_ids)
            new = [self.store.insert(item) for item in embedded]
        self.caches.apply(old_ids, old_chunks, new, list(embedded))
        self._committed = True
        return [doc_id for doc_id, _ in new]

    def rebuild(self, index_type: str | None = None) -> None:
        if index_type is not None:
            self.store.set_manifest(ann_type=index_type)
        self.caches.rebuild_all()

    def compact(self) -> dict[str, Any]:
        """Rebuild every FAISS index holding tombstones (HNSW cannot remove in place; flat and
        IVF never need it), keeping its structure, then VACUUM SQLite and remove files left by
        an interrupted writer. Returns the tombstones dropped per table and the folder's size
        before and after."""
        before = _folder_bytes(self.backend.folder)
        dropped: dict[str, int] = {}
        if self.store.manifest().get("model") is not None:
            self.caches.load_all()
            dropped = self.caches.compact(force=True)
            self.caches.save()
        self.store.vacuum()
        return {"dropped": dropped, "bytes_before": before,
                "bytes_after": _folder_bytes(self.backend.folder)}

    def finish(self) -> None:
        """Save only after a commit, or when the files on disk lag (a writer killed before its
        save): a write with nothing new over a tidy folder rewrites no large FAISS file."""
        if self._prepared and (self._committed or not self.caches.files_current()):
            self.caches.finish_write()


def _folder_files(folder: Path) -> dict[str, int]:
    files = {}
    for path in sorted(folder.iterdir()):
        try:
            if path.is_file():
                files[path.name] = path.stat().st_size
        except FileNotFoundError:  # a writer swapped it away meanwhile
            pass
    return files


def _folder_bytes(folder: Path) -> int:
    return sum(_folder_files(folder).values())

