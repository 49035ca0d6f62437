"""The Python API: :class:`SearchIndex` opens or creates an index folder, adds documents,
searches, removes and reports. The CLI is a thin layer over this module.

Example::

    import searchkit
    with searchkit.SearchIndex.open("my_index", create=True) as ix:
        ix.add_paths(["docs/"])
        for hit in ix.search("how do I rebase a branch", k=5):
            print(hit.rank, hit.score, hit.path)
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from .retrieval import ranking
from .backends.local.ann import VectorIndex
from .backends.local.caches import TABLES, VectorCaches
from .embedding.chunking import max_span_tokens
from .config import DEFAULT_MODEL, ChunkingConfig, Config, load_config
from .ingest.documents import Document, record_document
from .embedding.embedder import Embedder, ModelInfo
from .embedding.models import canonical_name
from .errors import (ConfigError, CorruptIndexError, IndexLockedError, IndexStoreError,
                     InputError, ModelMismatchError)
from .filters import Filters, as_filters
from .ingest.pipeline import Indexer, IngestReport
from .backends.local.locking import WriteLock
from .retrieval.searcher import FUSIONS, MODES, QUERY_CACHE, Query, QueryVectors, Searcher
from .records import Hit
from .backends.local.store import DB_NAME, Store, creatable

# Seconds a process creating an index waits for another one creating the same index.
CREATE_WAIT = 30.0


def _guard_db(method: Callable) -> Callable:
    """Report a damaged or unusable database as a searchkit error, never a bare traceback."""
    @functools.wraps(method)
    def wrapper(self: "SearchIndex", *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError):
            raise  # a bug in searchkit, not a property of the file
        except sqlite3.DatabaseError as exc:
            raise _store_error(self.folder, exc) from None
    return wrapper


def _store_error(folder: Path, exc: sqlite3.DatabaseError) -> IndexStoreError:
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return IndexLockedError(f"{folder / DB_NAME} stayed busy too long ({text}); try again")
    if isinstance(exc, sqlite3.OperationalError) and ("no such" in text or "disk" in text
                                                      or "full" in text or "readonly" in text):
        return IndexStoreError(f"{folder / DB_NAME}: {text}")
    return CorruptIndexError(f"{folder / DB_NAME} is damaged ({text}); restore it from a backup "
                             "or delete the folder and index again")


class SearchIndex:
    """An index folder: SQLite (source of truth) plus FAISS caches, and the model that built it.

    Open one with :meth:`SearchIndex.open`. Reading needs no lock; every write takes the
    folder's writer lock for its duration.
    """

    def __init__(self, folder: Path, config: Config, store: Store, wait: float | None = None):
        self.folder = folder
        self.config = config
        self.store = store
        self.wait = wait
        self._embedder: Embedder | None = None
        self.vectors = VectorCaches(folder, store, config.ann, config.ingest.checkpoint_seconds)
        self._queries = QueryVectors(QUERY_CACHE)
        self._searcher = Searcher(store, self.vectors, config.search, config.ann)

    # -- opening --------------------------------------------------------------------------

    @classmethod
    def open(cls, folder: str | os.PathLike | None = None, config: Config | None = None,
             create: bool = False, wait: float | None = None) -> "SearchIndex":
        """Open the index in ``folder`` (default ``config.index``).

        Args:
            folder: the index folder.
            config: settings; ``None`` loads them with :func:`searchkit.load_config`.
            create: create the folder and database if missing.
            wait: seconds a write waits for another writer (``None``: fail at once).

        Raises:
            NotAnIndexError, CorruptIndexError, SchemaVersionError: the folder cannot be used.
        """
        config = config or load_config()
        folder = Path(folder if folder is not None else config.index)
        try:
            if create and not (folder / DB_NAME).exists() and creatable(folder):
                # Two processes creating one index must not both run the migrations.
                folder.mkdir(parents=True, exist_ok=True)
                with WriteLock(folder, CREATE_WAIT if wait is None else wait):
                    store = Store.open(folder, create=True)
            else:
                store = Store.open(folder, create=create)
        except sqlite3.DatabaseError as exc:
            raise _store_error(folder, exc) from None
        return cls(folder, config, store, wait=wait)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "SearchIndex":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the model ------------------------------------------------------------------------

    @property
    def model_info(self) -> ModelInfo | None:
        """The model recorded in the index, or None for an index with nothing in it yet."""
        data = self.store.manifest().get("model")
        return ModelInfo(**data) if data else None

    @property
    def chunking(self) -> ChunkingConfig:
        """Chunking fixed at creation (recorded in the manifest), else the configured one."""
        data = self.store.manifest().get("chunking")
        return ChunkingConfig(**data) if data else self.config.chunking

    def check_model(self, name: str) -> None:
        """Refuse a model other than the one that built this index.

        Raises:
            ModelMismatchError: naming both models.
        """
        info = self.model_info
        if info is None:
            return
        wanted = canonical_name(name)
        if wanted not in (canonical_name(info.requested), info.name):
            raise ModelMismatchError(
                f"index {self.folder} was built with model {info.name}, not {name}; "
                f"use --model {info.name}, or a new --index folder for the other model")

    @property
    def embedder(self) -> Embedder:
        """The model, loaded on first use: the recorded one for an existing index (no network)."""
        if self._embedder is None:
            info = self.model_info
            if info is None:
                self._embedder = Embedder.load(self.config.model)
            else:
                model_config = dataclasses.replace(
                    self.config.model, window_tokens=info.window_tokens,
                    window_overlap=info.window_overlap, max_windows=info.max_windows,
                    fallback=False)
                self._embedder = Embedder.load(model_config, allow_download=False, name=info.name)
        return self._embedder

    # -- writing --------------------------------------------------------------------------

    @_guard_db
    def add_paths(self, paths: Sequence[str | os.PathLike], show_progress: bool = False) -> IngestReport:
        """Index files and folders incrementally.

        Unchanged files (same content hash) are not embedded again, changed files replace their
        entry, and files deleted from the given folders are removed; a file the walk passes over
        (hidden, of a type not indexed, in a folder that cannot be listed) keeps its entry.
        Unusable files are reported in ``report.skipped`` and never stop the run; an indexed
        file whose content became unusable (emptied, binary, not UTF-8, too large) also loses
        its entry (counted in ``report.removed``), one that cannot be read keeps it.

        Raises:
            InputError: a path does not exist, or the folders hold no supported file at all.
            IndexLockedError: another process is writing.
        """
        if not paths:
            raise InputError("no path given to index")
        return self._add(lambda indexer: indexer.add_paths(paths, self.chunking, show_progress))

    @_guard_db
    def add_records(self, records: Iterable[Any], show_progress: bool = False) -> IngestReport:
        """Index caller-supplied documents: ``(id, text)``, ``(id, text, metadata)`` tuples or
        mappings with ``id``, ``text`` and optional ``metadata`` / ``title``.

        A record whose id exists with the same text, title and metadata is unchanged; the same
        text with another title or metadata is updated in place (counted in ``updated``, nothing
        re-embedded); different text replaces it.
        """
        docs = [_record(r) for r in records]
        return self._add(lambda indexer: indexer.add_documents(docs, self.chunking, show_progress))

    @_guard_db
    def remove(self, keys: Iterable[str]) -> int:
        """Remove documents; returns how many were removed.

        Each key is matched, first match wins, against: a stored key as given (a record id, or
        a file's absolute path); the path made absolute from the current directory (the file
        may already be deleted); every file stored under that folder. Keys that match nothing
        are logged as a warning.
        """
        with WriteLock(self.folder, self.wait):
            removed = self._indexer().remove(keys)
            if removed:
                self.vectors.finish_write()
        return removed

    @_guard_db
    def rebuild(self, index_type: str | None = None) -> dict[str, Any]:
        """Rebuild the FAISS files from SQLite, choosing structure for the current size."""
        with WriteLock(self.folder, self.wait):
            if index_type is not None:
                self.store.set_manifest(ann_type=index_type)
            self.vectors.rebuild_all()
        return self.stats()

    @_guard_db
    def compact(self) -> dict[str, Any]:
        """Drop removed vectors for good and give their space back.

        Rebuilds from SQLite every FAISS index that holds tombstones (HNSW cannot remove in
        place; flat and IVF never need it), keeping its structure, then VACUUMs SQLite and
        removes files left by an interrupted writer. Returns the tombstones dropped per table
        and the folder's size before and after.
        """
        with WriteLock(self.folder, self.wait):
            before = _folder_bytes(self.folder)
            dropped: dict[str, int] = {}
            if self.model_info is not None:
                self.vectors.load_all()
                dropped = self.vectors.compact(force=True)
                self.vectors.save()
            self.store.vacuum()
            return {"dropped": dropped, "bytes_before": before, "bytes_after": _folder_bytes(self.folder)}

    def _prepare_write(self) -> None:
        """Record model and structure on first write; refuse a mismatched model.

        An existing index keeps its recorded model: ``model.name`` left at the default (by
        omission, or a config file restating it) is not a request for another model; any other
        name must be the recorded one.
        """
        self.vectors.start_write()
        manifest = self.store.manifest()
        if "model" in manifest:
            if self.config.model.name != DEFAULT_MODEL:
                self.check_model(self.config.model.name)
            self.vectors.load_all()
            return
        info = self.embedder.info
        chunking = self.config.chunking
        room = info.window_tokens - 2  # [CLS] and [SEP] around each naive chunk
        if chunking.mode == "naive" and max_span_tokens(chunking.strategy, chunking.size) > room:
            fits = max(s for s in range(1, room + 1) if max_span_tokens(chunking.strategy, s) <= room)
            raise ConfigError(
                f"chunking.size {chunking.size} does not fit the model window ({info.window_tokens} "
                f"tokens) in naive mode: a {chunking.strategy} chunk can reach "
                f"{max_span_tokens(chunking.strategy, chunking.size)} tokens; use at most {fits}")
        self.store.set_manifest(model=info.as_dict(), chunking=dataclasses.asdict(chunking),
                                ann_type=self.config.ann.type)
        self.vectors.load_all()

    def _add(self, run: Callable[[Indexer], IngestReport]) -> IngestReport:
        """One adding write under the lock: prepare it, ``run`` it, save the FAISS files."""
        start = time.perf_counter()
        with WriteLock(self.folder, self.wait):
            before = self.store.generation
            self._prepare_write()
            report = run(self._indexer())
            # Save only after a commit, or when the files on disk lag (a writer killed before
            # its save): a run with nothing new over a tidy folder rewrites no large FAISS file.
            if self.store.generation != before or not self.vectors.files_current():
                self.vectors.finish_write()
        report.seconds = time.perf_counter() - start
        return report

    def _indexer(self) -> Indexer:
        # One per write, not kept: it reaches back here for the model (loaded only if something
        # needs embedding), and a kept one would tie this object in a reference cycle.
        return Indexer(self.store, self.vectors, self.config.ingest, lambda: self.embedder)

    def ann(self, table: str) -> VectorIndex:
        """The FAISS index of ``documents`` or ``chunks`` for the database's current state."""
        return self.vectors.get(table)

    # -- searching ------------------------------------------------------------------------

    @_guard_db
    def search(self, query: str, k: int | None = None, rerank: str | None = None,
               chunks: bool = False, distinct: bool = False, mode: str | None = None,
               filters: Filters | Mapping[str, Any] | None = None,
               fusion: str | None = None) -> list[Hit]:
        """Rank documents (or passages with ``chunks=True``) for a query.

        Args:
            query: the question or keywords.
            k: number of results (default ``search.k``).
            rerank: ``"late"`` rescores the top ``search.rerank_depth`` documents with their best
                chunk; ``"none"`` ranks by document vector alone (default ``search.rerank``).
                It shapes the dense ranking, alone or inside hybrid.
            chunks: return passages straight from the chunk index, not documents.
            mode: ``"dense"`` (vectors), ``"keyword"`` (BM25 over SQLite FTS5; the model is
                not loaded) or ``"hybrid"`` (both, fused); default ``search.mode``.
            filters: a :class:`searchkit.Filters`, or a mapping of its ``build`` arguments
                (``path``, ``type``, ``since``, ``until``, ``where``), applied before ranking.
            fusion: hybrid fusion, ``"rrf"`` or ``"weighted"`` (default ``search.fusion``).

        Every mode returns one hit per document (unless ``chunks``), with its best passage:
        highest chunk cosine (dense), highest chunk BM25 (keyword), or both fused by rank
        within the document (hybrid).

        Raises:
            InputError: the query is empty, or a mode or fusion is unknown.
            FilterError: a filter is malformed (the message names it).
        """
        if not isinstance(query, str) or not query.strip():
            raise InputError("the query is empty")
        settings = self.config.search
        k = k or settings.k
        rerank = rerank or settings.rerank
        mode = mode or settings.mode
        fusion = fusion or settings.fusion
        if mode not in MODES:
            raise InputError(f"unknown search mode {mode!r}; choose one of {', '.join(MODES)}")
        if rerank not in ("none", "late"):
            raise InputError(f"rerank must be 'none' or 'late', got {rerank!r}")
        if fusion not in FUSIONS:
            raise InputError(f"unknown fusion {fusion!r}; choose one of {', '.join(FUSIONS)}")
        parsed = as_filters(filters)
        where = parsed.to_sql() if parsed else None
        if self.store.count("documents") == 0:
            return []
        match = ranking.fts_query(query)
        if mode == "keyword" and match is None:
            return []
        qvec = self._queries.get(query, self._encode_queries) if mode != "keyword" else None
        return self._searcher.run(Query(qvec, match, k, mode, rerank, fusion, where, chunks,
                                        distinct))

    def search_many(self, queries: Sequence[str], k: int | None = None,
                    **options: Any) -> list[list[Hit]]:
        """Run :meth:`search` for many queries, embedding them in batched passes.

        Args:
            queries: query texts.
            k: results per query.
            options: as for :meth:`search` (``rerank``, ``chunks``, ``distinct``, ``mode``, ...).
        """
        texts = list(queries)
        results: list[list[Hit]] = []
        needs_vectors = (options.get("mode") or self.config.search.mode) != "keyword"
        for start in range(0, len(texts), QUERY_CACHE):
            group = texts[start:start + QUERY_CACHE]
            todo = [q for q in dict.fromkeys(group) if isinstance(q, str) and q.strip()
                    and q not in self._queries]
            if needs_vectors and todo and self.store.count("documents"):
                self._queries.add(todo, self._encode_queries(todo))
            results.extend(self.search(q, k=k, **options) for q in group)
        return results

    def _encode_queries(self, texts: list[str]) -> np.ndarray:
        return self.embedder.encode_queries(texts)

    # -- reporting ------------------------------------------------------------------------

    @_guard_db
    def stats(self) -> dict[str, Any]:
        """Model, counts, index structure and sizes on disk."""
        with self.store.snapshot():
            return self._stats()

    def _stats(self) -> dict[str, Any]:
        manifest = self.store.manifest()
        files = _folder_files(self.folder)
        tokens = self.store.db.execute("SELECT coalesce(sum(n_tokens), 0) FROM documents").fetchone()[0]
        return {
            "index": str(self.folder),
            "model": manifest.get("model"),
            "chunking": manifest.get("chunking"),
            "documents": self.store.count("documents"),
            "chunks": self.store.count("chunks"),
            "tokens": int(tokens),
            "ann_type": manifest.get("ann_type"),
            "ann": {t: manifest.get(f"ann_{t}") for t in TABLES},
            "search": {"nprobe": self.config.ann.nprobe, "ef_search": self.config.ann.ef_search},
            "schema_version": manifest.get("schema_version"),
            "generation": manifest.get("generation"),
            "files": files,
            "bytes_on_disk": sum(files.values()),
        }


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


def _record(record: Any) -> Document:
    if isinstance(record, Document):
        return record
    if isinstance(record, Mapping):
        return record_document(record.get("id"), record.get("text"), record.get("metadata"),
                               record.get("title"))
    if isinstance(record, (tuple, list)) and len(record) in (2, 3):
        return record_document(*record)
    raise InputError(f"a record must be (id, text[, metadata]) or a mapping, got {type(record).__name__}")
