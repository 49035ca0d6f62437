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
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from .backends.base import Backend, WriteSession, query_terms
from .backends.factory import open_backend
from .config import DEFAULT_MODEL, FUSIONS, MODES, RERANKS, ChunkingConfig, Config, load_config
from .embedding.chunking import max_span_tokens
from .embedding import runtime
from .embedding.loading import load_embedder
from .embedding.models import canonical_name
from .embedding.protocol import ModelInfo, TokenEmbedder
from .errors import ConfigError, InputError, ModelMismatchError
from .filters import Filters, as_filters
from .hits import Hit
from .ingest.documents import Skipped, record_document
from .ingest.executors import Executor, LocalExecutor, RayExecutor
from .ingest.pipeline import Indexer, IngestReport
from .records import Document
from .retrieval.searcher import QUERY_CACHE, Query, QueryVectors, Searcher


class SearchIndex:
    """An index: a storage backend (local: SQLite plus FAISS files in a folder) and the model
    that built it.

    Open one with :meth:`SearchIndex.open`. Reading needs no lock, and one ``SearchIndex`` is
    safe to share between threads for reading (``search``, ``search_many``, ``stats``); every
    write takes the index's writer lock for its duration.
    """

    def __init__(self, folder: Path, config: Config, backend: Backend, wait: float | None = None,
                 embedder: TokenEmbedder | None = None):
        self.folder = folder
        self.config = config
        self.backend = backend
        self.wait = wait
        self._embedder = embedder
        self._queries = QueryVectors(QUERY_CACHE)
        self._searcher = Searcher(backend, config.search)

    # -- opening --------------------------------------------------------------------------

    @classmethod
    def open(cls, folder: str | os.PathLike | None = None, config: Config | None = None,
             create: bool = False, wait: float | None = None,
             embedder: TokenEmbedder | None = None) -> "SearchIndex":
        """Open the index in ``folder`` (default ``config.index``).

        Args:
            folder: the index folder.
            config: settings; ``None`` loads them with :func:`searchkit.load_config`.
            create: create the folder and database if missing.
            wait: seconds a write waits for another writer (``None``: fail at once).
            embedder: the model to embed with (any object with the
                :class:`searchkit.embedding.protocol.TokenEmbedder` interface, e.g. the
                deterministic :class:`searchkit.embedding.fake.FakeEmbedder`); ``None`` loads
                the index's recorded model (or ``model.name``) on first use.

        Raises:
            NotAnIndexError, CorruptIndexError, SchemaVersionError: the folder cannot be used.
        """
        config = config or load_config()
        folder = Path(folder if folder is not None else config.index)
        backend = open_backend(config.backend, folder, config, create=create, wait=wait)
        return cls(folder, config, backend, wait=wait, embedder=embedder)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> "SearchIndex":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _manifest(self) -> dict[str, Any]:
        with self.backend.snapshot() as view:
            return view.manifest()

    # -- the model ------------------------------------------------------------------------

    @property
    def model_info(self) -> ModelInfo | None:
        """The model recorded in the index, or None for an index with nothing in it yet."""
        data = self._manifest().get("model")
        return ModelInfo(**data) if data else None

    @property
    def chunking(self) -> ChunkingConfig:
        """Chunking fixed at creation (recorded in the manifest), else the configured one."""
        data = self._manifest().get("chunking")
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
    def embedder(self) -> TokenEmbedder:
        """The model: the one given to :meth:`open`, else loaded on first use (the recorded one
        for an existing index, without network)."""
        return self._model(for_write=False)

    def _model(self, for_write: bool) -> TokenEmbedder:
        # A write may export the model to ONNX first (model.runtime auto); a query never waits for that.
        if self._embedder is None:
            self._embedder = self._embedder_factory(for_write)()
        return self._embedder

    def _embedder_factory(self, for_write: bool = False) -> Callable[[], TokenEmbedder]:
        """A picklable callable that builds this index's model (run in Ray actors too)."""
        if self._embedder is not None:
            return functools.partial(_given, self._embedder)
        info = self.model_info
        if info is None:
            return functools.partial(load_embedder, self.config.model, allow_export=for_write)
        model_config = dataclasses.replace(
            self.config.model, window_tokens=info.window_tokens, window_overlap=info.window_overlap,
            max_windows=info.max_windows, quantize=info.quantize, fallback=False)
        return functools.partial(load_embedder, model_config, allow_download=False, name=info.name,
                                 allow_export=for_write)

    # -- writing --------------------------------------------------------------------------

    def add_paths(self, paths: Sequence[str | os.PathLike], show_progress: bool = False,
                  on_skip: Callable[[Skipped], None] | None = None) -> IngestReport:
        """Index files and folders incrementally.

        Unchanged files (same content hash) are not embedded again, changed files replace their
        entry, and files deleted from the given folders are removed; a file the walk passes over
        (hidden, of a type not indexed, in a folder that cannot be listed) keeps its entry.
        Unusable files are reported in ``report.skipped`` and never stop the run; an indexed
        file whose content became unusable (emptied, binary, not UTF-8, too large) also loses
        its entry (counted in ``report.removed``), one that cannot be read keeps it.
        ``on_skip`` is called with each :class:`Skipped` as soon as it is known.

        Raises:
            InputError: a path does not exist, or the folders hold no supported file at all.
            IndexLockedError: another process is writing.
        """
        if not paths:
            raise InputError("no path given to index")
        return self._add(lambda indexer: indexer.add_paths(paths, self.chunking, show_progress, on_skip))

    def add_records(self, records: Iterable[Any], show_progress: bool = False) -> IngestReport:
        """Index caller-supplied documents: ``(id, text)``, ``(id, text, metadata)`` tuples or
        mappings with ``id``, ``text`` and optional ``metadata`` / ``title``.

        A record whose id exists with the same text, title and metadata is unchanged; the same
        text with another title or metadata is updated in place (counted in ``updated``, nothing
        re-embedded); different text replaces it.
        """
        docs = [_record(r) for r in records]
        return self._add(lambda indexer: indexer.add_documents(docs, self.chunking, show_progress))

    def remove(self, keys: Iterable[str]) -> int:
        """Remove documents; returns how many were removed.

        Each key is matched, first match wins, against: a stored key as given (a record id, or
        a file's absolute path); the path made absolute from the current directory (the file
        may already be deleted); every file stored under that folder. Keys that match nothing
        are logged as a warning.
        """
        with self.backend.write(self.wait) as session:
            return self._indexer(session).remove(keys)

    def rebuild(self, index_type: str | None = None) -> dict[str, Any]:
        """Rebuild the FAISS files from SQLite, choosing structure for the current size."""
        with self.backend.write(self.wait) as session:
            session.rebuild(index_type)
        return self.stats()

    def compact(self) -> dict[str, Any]:
        """Drop removed vectors for good and give their space back.

        Rebuilds from SQLite every FAISS index that holds tombstones (HNSW cannot remove in
        place; flat and IVF never need it), keeping its structure, then VACUUMs SQLite and
        removes files left by an interrupted writer. Returns the tombstones dropped per table
        and the folder's size before and after.
        """
        with self.backend.write(self.wait) as session:
            return session.compact()

    def _prepare_write(self, session: WriteSession) -> None:
        """Record model and structure on first write; refuse a mismatched model.

        An existing index keeps its recorded model: ``model.name`` left at the default (by
        omission, or a config file restating it) is not a request for another model; any other
        name must be the recorded one.
        """
        manifest = session.manifest()
        if "model" in manifest:
            if self.config.model.name != DEFAULT_MODEL:
                self.check_model(self.config.model.name)
            session.prepare()
            return
        info = self._model(for_write=True).info
        chunking = self.config.chunking
        room = info.window_tokens - 2  # [CLS] and [SEP] around each naive chunk
        if chunking.mode == "naive" and max_span_tokens(chunking.strategy, chunking.size) > room:
            fits = max(s for s in range(1, room + 1) if max_span_tokens(chunking.strategy, s) <= room)
            raise ConfigError(
                f"chunking.size {chunking.size} does not fit the model window ({info.window_tokens} "
                f"tokens) in naive mode: a {chunking.strategy} chunk can reach "
                f"{max_span_tokens(chunking.strategy, chunking.size)} tokens; use at most {fits}")
        session.record(model=info.as_dict(), chunking=dataclasses.asdict(chunking))
        session.prepare()

    def _add(self, run: Callable[[Indexer], IngestReport]) -> IngestReport:
        """One adding write under the lock: prepare it, ``run`` it; the session saves what
        readers need when it ends."""
        start = time.perf_counter()
        with self.backend.write(self.wait) as session:
            self._prepare_write(session)
            report = run(self._indexer(session))
        report.seconds = time.perf_counter() - start
        return report

    def _indexer(self, session: WriteSession) -> Indexer:
        # One per write, not kept: it reaches back here for the model (loaded only if something
        # needs embedding), and a kept one would tie this object in a reference cycle.
        return Indexer(session, self.config.ingest, self._executor())

    def _executor(self) -> Executor:
        """Where this write's model pass runs (``ingest.executor``)."""
        if self.config.ingest.executor == "ray":
            # The driver needs only the vector size: the model is recorded by now.
            dimension = self.model_info.dimension if self.model_info else self._model(for_write=True).info.dimension
            return RayExecutor(self._embedder_factory(for_write=True), self.config.ray, dimension)
        return LocalExecutor(lambda: self._model(for_write=True))

    # -- searching ------------------------------------------------------------------------

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
            fusion: hybrid fusion, ``"adaptive"``, ``"weighted"`` or ``"rrf"`` (default
                ``search.fusion``).

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
        if rerank not in RERANKS:
            raise InputError(f"rerank must be one of {', '.join(RERANKS)}, got {rerank!r}")
        if fusion not in FUSIONS:
            raise InputError(f"unknown fusion {fusion!r}; choose one of {', '.join(FUSIONS)}")
        parsed = as_filters(filters)
        # Dense searches read no query terms.
        text = query if mode != "dense" and query_terms(query) else None
        if mode == "keyword" and text is None:
            return []
        qvec = None
        if mode != "keyword":
            # An empty index answers without loading the model (a search of it finds nothing);
            # once the model is loaded there is nothing to spare, and no count to read.
            if self._embedder is None and query not in self._queries and self._count() == 0:
                return []
            qvec = self._queries.get(query, self._encode_queries)
        return self._searcher.run(Query(qvec, text, k, mode, rerank, fusion, parsed, chunks,
                                        distinct))

    def _count(self) -> int:
        with self.backend.snapshot() as view:
            return view.count("documents")

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
            if needs_vectors and todo and self._count():
                self._queries.add(todo, self._encode_queries(todo))
            results.extend(self.search(q, k=k, **options) for q in group)
        return results

    def _encode_queries(self, texts: list[str]) -> np.ndarray:
        return self.embedder.encode_queries(texts)

    def document(self, doc_id: int) -> dict[str, Any] | None:
        """A stored document by id (``Hit.doc_id``), or None (removed, or replaced by a newer
        version: ids are never reused).

        Returns plain data: ``doc_id``, ``key``, ``path``, ``title``, ``kind``, ``metadata``,
        ``mtime``, ``n_tokens`` and the full ``text`` (a hit's passage offsets index into it).
        """
        with self.backend.snapshot() as view:
            row = view.documents([doc_id]).get(doc_id)
        if row is None:
            return None
        return {"doc_id": row.id, "key": row.key, "path": row.path, "title": row.title,
                "kind": row.kind, "metadata": row.metadata, "mtime": row.mtime,
                "n_tokens": row.n_tokens, "text": row.text}

    # -- reporting ------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Model, counts, index structure and sizes on disk."""
        with self.backend.snapshot() as view:
            return view.stats()


def _record(record: Any) -> Document:
    if isinstance(record, Document):
        return record
    if isinstance(record, Mapping):
        return record_document(record.get("id"), record.get("text"), record.get("metadata"),
                               record.get("title"))
    if isinstance(record, (tuple, list)) and len(record) in (2, 3):
        return record_document(*record)
    raise InputError(f"a record must be (id, text[, metadata]) or a mapping, got {type(record).__name__}")


def export_model(config: Config | None = None, name: str | None = None, quantize: str | None = None,
                 force: bool = False) -> Path:
    """Export the configured model (or ``name``) to ONNX once, for ``model.runtime`` onnx/auto.

    Returns the export folder in the ONNX cache (``model.onnx_cache``). An intact export is
    kept (``force`` makes it again); ``quantize="int8"`` (default ``model.quantize``) adds the
    int8 graph.

    Raises:
        ModelNotFoundError, ModelError: the model cannot be found, loaded or exported.
    """
    config = config or load_config()
    return runtime.export(config.model, name=name, quantize=quantize, force=force)


def _given(embedder: TokenEmbedder) -> TokenEmbedder:
    """The embedder handed to :meth:`SearchIndex.open` (a factory for Ray's actors)."""
    return embedder
