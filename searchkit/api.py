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
import logging
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from . import search as ranking
from .ann import VectorIndex
from .caches import TABLES, VectorCaches
from .chunking import max_span_tokens
from .config import ChunkingConfig, Config, load_config
from .documents import (Document, Skipped, Unchanged, iter_files, read_document,
                        record_document)
from .embedding.embedder import Embedder, ModelInfo
from .embedding.models import canonical_name
from .errors import (ConfigError, CorruptIndexError, IndexLockedError, IndexStoreError,
                     InputError, ModelMismatchError)
from .filters import Filters, as_filters
from .ingest import embed_documents
from .locking import LOCK_NAME, WriteLock
from .querying import FUSIONS, MODES, QUERY_CACHE, Query, QueryVectors, Searcher
from .records import Hit
from .store import DB_NAME, Store

log = logging.getLogger("searchkit")

# Seconds a process creating an index waits for another one creating the same index.
CREATE_WAIT = 30.0


@dataclass
class IngestReport:
    """What one ``add_paths`` / ``add_records`` call did."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0

    @property
    def embedded(self) -> int:
        return self.added + self.updated

    def summary(self) -> str:
        rate = f", {self.tokens / self.seconds:,.0f} tokens/s" if self.seconds and self.tokens else ""
        return (f"added {self.added}, updated {self.updated}, unchanged {self.unchanged}, "
                f"removed {self.removed}, skipped {len(self.skipped)} "
                f"({self.tokens:,} tokens in {self.seconds:.1f}s{rate})")


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
            if create and not (folder / DB_NAME).exists() and _creatable(folder):
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
        entry, and files gone from the given folders are removed. Unusable files are reported in
        ``report.skipped`` and never stop the run.

        Raises:
            InputError: a path does not exist, or the folders hold no supported file at all.
            IndexLockedError: another process is writing.
        """
        if not paths:
            raise InputError("no path given to index")
        report = IngestReport()
        start = time.perf_counter()
        max_bytes = int(self.config.ingest.max_file_mb * 1_000_000)
        with WriteLock(self.folder, self.wait):
            self._prepare_write()
            existing = self.store.states()
            seen: set[str] = set()
            todo: list[tuple[Path, str | None]] = []   # each file with its stored hash
            roots = [Path(p).absolute() for p in paths]
            for item in iter_files(roots, self.config.ingest.extensions):
                if isinstance(item, Skipped):
                    report.skipped.append(item)
                    continue
                key = str(item.absolute())
                if key in seen:  # overlapping roots, or a file named twice
                    continue
                seen.add(key)
                state = existing.get(key)
                todo.append((item, state[1] if state is not None else None))
            gone = [doc_id for root in roots if root.is_dir()
                    for path, doc_id in self.store.paths_under(str(root)).items() if path not in seen]
            if not todo and not seen and not gone:
                exts = ", ".join(self.config.ingest.extensions)
                raise InputError(f"no files to index under {', '.join(map(str, paths))} "
                                 f"(supported: {exts})")
            self._ingest(todo, existing, report, max_bytes, show_progress)
            if gone:
                self._remove_ids(sorted(set(gone)))
                report.removed = len(set(gone))
            self._finish_write()
        report.seconds = time.perf_counter() - start
        return report

    @_guard_db
    def add_records(self, records: Iterable[Any], show_progress: bool = False) -> IngestReport:
        """Index caller-supplied documents: ``(id, text)``, ``(id, text, metadata)`` tuples or
        mappings with ``id``, ``text`` and optional ``metadata`` / ``title``.

        A record whose id exists with the same text is unchanged; different text replaces it.
        """
        docs = [_record(r) for r in records]
        report = IngestReport()
        start = time.perf_counter()
        with WriteLock(self.folder, self.wait):
            self._prepare_write()
            existing = self.store.states(d.key for d in docs)
            fresh = []
            for doc in docs:
                state = existing.get(doc.key)
                if state is not None and state[1] == doc.content_hash:
                    report.unchanged += 1
                else:
                    fresh.append(doc)
            self._embed_and_store(fresh, existing, report, show_progress)
            self._finish_write()
        report.seconds = time.perf_counter() - start
        return report

    @_guard_db
    def remove(self, keys: Iterable[str]) -> int:
        """Remove documents; returns how many were removed.

        Each key is matched, first match wins, against: a stored key as given (a record id, or
        a file's absolute path); the path made absolute from the current directory (the file
        may already be deleted); every file stored under that folder. Keys that match nothing
        are logged as a warning.
        """
        with WriteLock(self.folder, self.wait):
            ids: set[int] = set()
            for key in keys:
                found = self._match_key(key)
                if not found:
                    log.warning("not in the index: %s", key)
                ids.update(found)
            if ids:
                self._remove_ids(sorted(ids))
                self._finish_write()
        return len(ids)

    def _match_key(self, key: str) -> list[int]:
        exact = self.store.states([key])
        if exact:
            return [i for i, _ in exact.values()]
        path = _absolute(key)
        if path is None:
            return []
        as_path = self.store.states([path])
        if as_path:
            return [i for i, _ in as_path.values()]
        return list(self.store.paths_under(path).values())

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
        """Record model and structure on first write; refuse a mismatched model."""
        self.vectors.start_write()
        manifest = self.store.manifest()
        if "model" in manifest:
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

    def _ingest(self, paths: list[tuple[Path, str | None]], existing: dict, report: IngestReport,
                max_bytes: int, show_progress: bool) -> None:
        """Read each file once: one with its stored hash unchanged is counted and left alone,
        the others are embedded and stored in batches."""
        bar = tqdm(total=len(paths), unit="doc", disable=not show_progress or not paths,
                   desc="indexing", dynamic_ncols=True)
        batch: list[Document] = []
        step = self.config.ingest.commit_every
        with bar:
            for path, known_hash in paths:
                doc = read_document(path, max_bytes, known_hash)
                if isinstance(doc, Unchanged):
                    report.unchanged += 1
                elif isinstance(doc, Skipped):
                    report.skipped.append(doc)
                else:
                    batch.append(doc)
                    if len(batch) >= step:
                        self._embed_and_store(batch, existing, report, bar=bar)
                        batch = []
                    continue
                bar.update(1)
            if batch:
                self._embed_and_store(batch, existing, report, bar=bar)

    def _embed_and_store(self, docs: list[Document], existing: dict, report: IngestReport,
                         show_progress: bool = False, bar: tqdm | None = None) -> None:
        if not docs:
            return
        embedder = self.embedder
        tokens = [embedder.truncate(embedder.tokenize(d.text)) for d in docs]
        keep = [i for i, t in enumerate(tokens) if len(t)]
        for i in sorted(set(range(len(docs))) - set(keep)):
            report.skipped.append(Skipped(docs[i].path or docs[i].key, "no tokens"))
        docs, tokens = [docs[i] for i in keep], [tokens[i] for i in keep]
        started = time.perf_counter()

        fed = 0

        def progress(n: int) -> None:
            nonlocal fed
            fed += n
            if bar is not None:
                elapsed = time.perf_counter() - started
                bar.set_postfix_str(f"{fed / max(elapsed, 1e-9):,.0f} tok/s fed", refresh=True)

        for start in range(0, len(docs), self.config.ingest.commit_every):
            part = slice(start, start + self.config.ingest.commit_every)
            embedded = embed_documents(embedder, docs[part], self.chunking, progress, tokens[part])
            old_ids = [existing[d.key][0] for d in docs[part] if d.key in existing]
            with self.store.transaction():
                old_chunks = self.store.delete(old_ids)
                new = [self.store.insert(item) for item in embedded]
            self.vectors.apply(old_ids, old_chunks, new, embedded)
            self.vectors.checkpoint()
            report.tokens += sum(e.n_tokens for e in embedded)
            for d in docs[part]:
                if d.key in existing:
                    report.updated += 1
                else:
                    report.added += 1
            if bar is not None:
                bar.update(len(embedded))
        report.seconds += time.perf_counter() - started

    def _remove_ids(self, doc_ids: list[int]) -> None:
        with self.store.transaction():
            chunk_ids = self.store.delete(doc_ids)
        self.vectors.apply(doc_ids, chunk_ids, [], [])

    def _finish_write(self) -> None:
        self.vectors.finish_write()

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


def _absolute(key: str) -> str | None:
    """``key`` read as a path and made absolute the way file keys are stored; None if it cannot be one."""
    try:
        return str(Path(key).absolute()) if key and "\x00" not in key else None
    except (OSError, ValueError):
        return None


def _creatable(folder: Path) -> bool:
    """Whether ``folder`` is missing or empty, so a new index may be created in it."""
    if not folder.exists():
        return True
    return folder.is_dir() and not any(
        p for p in folder.iterdir() if not p.name.startswith(".") and p.name != LOCK_NAME)


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
