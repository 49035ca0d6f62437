"""The Milvus backend: one index in milvus-lite (a local ``.db`` file) or a Milvus server.

The same client (``pymilvus``) talks to both; ``milvus.uri`` picks one (a path ending in
``.db`` is milvus-lite, ``http://host:19530`` a server or cluster). The collections are
described in :mod:`.schema`, filters in :mod:`.expressions`.

Write protocol (Milvus has no multi-row transaction):

1. The writer takes the lock (:mod:`.locks`), finishes what a killed writer left (below), and
   for each batch writes the ``journal`` row: the next free id (ids are never reused) and the
   ids it is about to add and remove.
2. Texts and chunks of the new documents are inserted, then their document rows (the commit
   marks), then the replaced documents are deleted (document rows first, then their chunks
   and texts), and the journal is cleared.
3. Readers read the journal first and leave out every id in it, so a batch becomes visible at
   once when its journal is cleared; a search that still meets a chunk whose document row is
   missing drops it (the searcher only returns documents it can read).
4. A writer that finds a journal left behind rolls the batch forward when all its document
   rows landed (deleting what they replace) and back otherwise (deleting the batch's rows and
   keeping what they would have replaced), then clears it: the next ``searchkit index``
   completes the killed run without duplicates. Until then the killed batch stays hidden.

Reads are not snapshot-isolated: Milvus has no read transaction. Each document appears whole
or not at all, but a search running while a batch commits may see the index before or after.
Every collection uses Strong consistency, so a read sees the writes made before it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
from pymilvus import MilvusClient
from pymilvus.exceptions import MilvusException

from ...errors import BackendError, ConfigError, IndexLockedError, NotAnIndexError, SchemaVersionError
from ...filters import Filters
from ...records import EmbeddedDocument
from ..base import ChunkRow, DocRow, query_terms
from . import expressions, schema
from .locks import FileLock, Lease

log = logging.getLogger("searchkit")

IN_BATCH = 1000           # ids per ``in [...]`` expression
INSERT_BATCH = 500        # rows per insert call
MAX_LIMIT = 16_384        # Milvus caps topk and query limit+offset here
STRONG = {"consistency_level": "Strong"}
LITE_NAME = "milvus.db"     # the milvus-lite file inside --index when milvus.uri is empty
_LITE_USERS: dict[str, int] = {}    # milvus-lite file → open backends in this process

# milvus-lite serves pymilvus from a gRPC server inside this process; it logs every call it
# does not implement (the query iterator probes one, then falls back) as an error.
logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
# pymilvus logs every failed call (and its query iterator's fallbacks on milvus-lite) before
# raising; searchkit turns those exceptions into its own one-line errors.
logging.getLogger("pymilvus").setLevel(logging.CRITICAL)


def is_lite(uri: str) -> bool:
    return not re.match(r"^(https?|tcp|unix)://", uri)


class MilvusBackend:
    """One searchkit index in Milvus. Safe to share between threads for reading."""

    def __init__(self, settings: Any, create: bool = False, wait: float | None = None,
                 folder: str | Path | None = None):
        """
        Args:
            settings: the ``milvus`` config section (uri, token, collection_prefix,
                index_type and its parameters).
            create: create the settings collection when it does not exist.
            wait: seconds to wait for a milvus-lite file another process has open.
            folder: the index folder (``--index``): with ``milvus.uri`` empty, the index is the
                milvus-lite file ``FOLDER/milvus.db``.

        Raises:
            ConfigError: a setting cannot be used.
            BackendError: the server cannot be reached.
            NotAnIndexError: nothing is stored under the prefix and ``create`` is false.
        """
        self.settings = settings
        self.prefix = schema.check_prefix(settings.collection_prefix or schema.derived_prefix(folder))
        uri = settings.uri or (str(Path(folder) / LITE_NAME) if folder is not None else "")
        if not uri:
            raise ConfigError("milvus.uri is empty: set a milvus-lite file (./index.db) or a "
                              "server (http://host:19530)")
        self.lite = is_lite(uri)
        if self.lite:
            path = Path(uri).expanduser().absolute()
            if path.suffix != ".db":
                    raise ConfigError(f"milvus.uri {uri!r}: a milvus-lite file must end in .db "
                                  "(or use http://host:19530 for a server)")
            if not create and not path.exists():
                raise NotAnIndexError(f"{path} does not exist; create it with `searchkit index "
                                      "PATH` and backend: milvus")
            path.parent.mkdir(parents=True, exist_ok=True)
            uri = str(path)
        self.uri = uri
        self.location = f"{uri} ({self.prefix}*)"
        self.client = self._connect(uri, settings.token, wait)
        try:
            self.version = self.client.get_server_version()
        except MilvusException as exc:
            raise BackendError(f"cannot reach Milvus at {uri}: {exc.message}") from None
        number = re.search(r"(\d+)\.(\d+)", self.version)
        major_minor = (int(number.group(1)), int(number.group(2))) if number else (0, 0)
        self.full_text = self.lite or major_minor >= (2, 5)
        self.general_like = self.lite or major_minor >= (2, 4)
        self.server_name = f"Milvus {self.version} at {uri}"
        self._has_vectors = False
        if not self.client.has_collection(self.name("settings")):
            if not create:
                raise NotAnIndexError(f"no searchkit index under prefix {self.prefix!r} at {uri}; "
                                      "create one with `searchkit index PATH`")
            self._create_settings()
        else:
            self._load(self.name("settings"))
        version = self._get("manifest").get("schema_version", schema.SCHEMA_VERSION)
        if version > schema.SCHEMA_VERSION:
            raise SchemaVersionError(f"{self.location} was written by a newer searchkit (schema "
                                     f"{version}); upgrade searchkit to open it")
        for table in ("documents", "chunks", "texts"):
            if self.client.has_collection(self.name(table)):
                self._load(self.name(table))

    # -- plumbing ---------------------------------------------------------------------------

    def _connect(self, uri: str, token: str, wait: float | None) -> MilvusClient:
        deadline = time.monotonic() + (wait or 0)
        while True:
            try:
                client = MilvusClient(uri=uri, token=token or "", timeout=30)
                break
            except MilvusException as exc:
                if self.lite and time.monotonic() < deadline:
                    time.sleep(0.5)
                    continue
                if self.lite:
                    # milvus-lite runs inside the process that opens the file and locks it.
                    raise IndexLockedError(
                        f"{uri} is open in another process (milvus-lite allows one process at a "
                        "time; use a Milvus server for concurrent searches while indexing)") from None
                raise BackendError(f"cannot reach Milvus at {uri}: {exc.message}") from None
            except Exception as exc:
                raise BackendError(f"cannot reach Milvus at {uri}: {exc}") from None
        if self.lite:
            _LITE_USERS[uri] = _LITE_USERS.get(uri, 0) + 1
        return client

    def name(self, table: str) -> str:
        return self.prefix + table

    def _load(self, collection: str) -> None:
        # A server restarted, or a milvus-lite file reopened, starts with collections released.
        state = self.client.get_load_state(collection).get("state")
        if "Loaded" not in str(state):
            self.client.load_collection(collection, **self._replicas())

    def _replicas(self) -> dict[str, int]:
        replicas = int(self.settings.replicas)
        return {"replica_number": replicas} if replicas > 1 and not self.lite else {}

    def _create_settings(self) -> None:
        self.client.create_collection(self.name("settings"), schema=schema.settings_schema(self.client),
                                      index_params=schema.placeholder_index(self.client), **STRONG)
        self._put("manifest", {"schema_version": schema.SCHEMA_VERSION, "generation": 0,
                               "created_at": _now()})

    def _get(self, name: str, consistency: str = "Strong") -> dict[str, Any]:
        rows = self.client.query(self.name("settings"), filter=f"name == {expressions.literal(name)}",
                                 output_fields=["value"], consistency_level=consistency)
        return dict(rows[0]["value"]) if rows and rows[0]["value"] else {}

    def _put(self, name: str, value: dict[str, Any] | None) -> None:
        self.client.upsert(self.name("settings"), [
            {"name": name, "value": value or {}, "placeholder": [0.0] * schema.PLACEHOLDER_DIM}])

    def has_vectors(self) -> bool:
        """Whether the vector collections exist (made at the first write, kept until drop)."""
        if not self._has_vectors:
            self._has_vectors = self.client.has_collection(self.name("documents"))
        return self._has_vectors

    # -- the backend protocol ---------------------------------------------------------------

    @contextlib.contextmanager
    def snapshot(self) -> Iterator["MilvusView"]:
        yield MilvusView(self, self._get("journal", self.settings.consistency))

    @contextlib.contextmanager
    def write(self, wait: float | None = None) -> Iterator["MilvusWriter"]:
        if self.lite:
            lock = FileLock(Path(self.uri + ".lock"), wait)
        else:
            lock = Lease(lambda: self._get("lock"), lambda v: self._put("lock", v),
                         self.location, wait, self.settings.lease_seconds)
        with lock:
            writer = MilvusWriter(self)
            writer.recover()
            yield writer
            if writer.wrote:
                # Seal what was written: milvus-lite searches unflushed rows by brute force in
                # Python (seconds at 10k rows), a server until it seals segments on its own.
                for table in ("texts", "chunks", "documents"):
                    self.client.flush(self.name(table))

    def close(self) -> None:
        if self.client is None:
            return
        with contextlib.suppress(Exception):
            self.client.close()
        self.client = None
        if self.lite:
            # The in-process milvus-lite server holds the file's lock: stop it with its last
            # user so another process can open the file.
            _LITE_USERS[self.uri] -= 1
            if not _LITE_USERS[self.uri]:
                del _LITE_USERS[self.uri]
                from milvus_lite.server_manager import server_manager_instance
                server_manager_instance.release_server(self.uri)

    def drop(self) -> None:
        """Delete every collection of this index (``searchkit`` never calls it implicitly)."""
        for table in schema.COLLECTIONS:
            if self.client.has_collection(self.name(table)):
                self.client.drop_collection(self.name(table))
        self._has_vectors = False


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _ids_expr(field: str, ids: Sequence[int], negate: bool = False) -> str:
    inner = f"{field} in [{','.join(str(int(i)) for i in ids)}]"
    return f"not ({inner})" if negate else inner


def _and(*parts: str) -> str:
    parts = [p for p in parts if p]
    return " and ".join(f"({p})" for p in parts)


class MilvusView:
    """What one search reads (see the module docstring for what "one state" means here)."""

    def __init__(self, backend: MilvusBackend, journal: dict[str, Any]):
        self.b = backend
        self.client = backend.client
        # Ids of a write in flight (or of a killed one) are left out of every read.
        self.hidden = sorted({int(i) for i in journal.get("adding", []) + journal.get("removing", [])})
        self._manifest: dict[str, Any] | None = None
        # Searches read at milvus.consistency; the writer always reads its own writes (Strong).
        self.consistency = {"consistency_level": backend.settings.consistency}

    # -- helpers ----------------------------------------------------------------------------

    def _hide(self, table: str) -> str:
        if not self.hidden:
            return ""
        return _ids_expr("id" if table == "documents" else "doc_id", self.hidden, negate=True)

    def _filter(self, table: str, filters: Filters | None, *extra: str) -> str:
        return _and(expressions.compile_filters(filters, self.b.general_like, self.b.server_name),
                    self._hide(table), *extra)

    def _query(self, table: str, expr: str, fields: list[str]) -> list[dict[str, Any]]:
        """Every row of ``table`` matching ``expr``: one query, paged with an iterator only past
        Milvus's 16,384-row cap (an iterator costs several round trips)."""
        if not self.b.has_vectors():
            return []
        rows = self.client.query(self.b.name(table), filter=expr, output_fields=fields,
                                 limit=MAX_LIMIT, **self.consistency)
        if len(rows) < MAX_LIMIT:
            return list(rows)
        iterator = self.client.query_iterator(self.b.name(table), batch_size=4000,
                                              filter=expr, output_fields=fields, **self.consistency)
        rows = []
        try:
            while batch := iterator.next():
                rows.extend(batch)
        finally:
            iterator.close()
        return rows

    def _by_ids(self, table: str, field: str, ids: Iterable[int], fields: list[str]) -> list[dict[str, Any]]:
        ids = sorted({int(i) for i in ids})
        rows: list[dict[str, Any]] = []
        for start in range(0, len(ids), IN_BATCH):
            part = ids[start:start + IN_BATCH]
            rows.extend(self._query(table, _and(_ids_expr(field, part), self._hide(table)), fields))
        return rows

    def _require_full_text(self) -> None:
        if not self.b.full_text:
            raise BackendError(f"keyword and hybrid search need Milvus full-text search (BM25, "
                               f"Milvus >= 2.5); {self.b.server_name} does not have it. Use "
                               "--mode dense, or a Milvus 2.5+ server or milvus-lite")

    # -- ReadView ---------------------------------------------------------------------------

    def count(self, table: str = "documents") -> int:
        if not self.b.has_vectors():
            return 0
        rows = self.client.query(self.b.name(table), filter=self._hide(table),
                                 output_fields=["count(*)"], **self.consistency)
        return int(rows[0]["count(*)"]) if rows else 0

    def manifest(self) -> dict[str, Any]:
        # One read per view: a search asks for the index parameters and dimension repeatedly.
        if self._manifest is None:
            self._manifest = self.b._get("manifest", self.consistency["consistency_level"])
        return self._manifest

    def vector_search(self, table: str, qvec: np.ndarray, k: int,
                      filters: Filters | None = None) -> dict[int, float]:
        if k <= 0 or not self.b.has_vectors():
            return {}
        expr = self._filter(table, filters)
        hits: dict[int, float] = {}
        if k <= MAX_LIMIT:
            params = self.manifest().get("milvus_params", {})
            index_type = params.get("index_type", "FLAT")
            result = self.client.search(
                self.b.name(table), data=[np.asarray(qvec, dtype=np.float32).tolist()],
                anns_field="vector", limit=k, filter=expr, output_fields=[],
                search_params=schema.search_params(index_type, params, k), **self.consistency)
            hits = {int(h["id"]): float(h["distance"]) for h in result[0]}
        if len(hits) < k:
            # An approximate index (or a limit over Milvus's cap) can come back short: score
            # every row that passes exactly, so the caller gets min(k, passing) rows.
            passing = self.count_where(table, expr)
            if passing > len(hits):
                ids, vectors = self._vectors(table, expr)
                scores = vectors @ np.asarray(qvec, dtype=np.float32)
                order = np.argsort(-scores, kind="stable")[:k]
                hits = {int(ids[j]): float(scores[j]) for j in order}
        return hits

    def count_where(self, table: str, expr: str) -> int:
        rows = self.client.query(self.b.name(table), filter=expr, output_fields=["count(*)"], **self.consistency)
        return int(rows[0]["count(*)"]) if rows else 0

    def keyword_documents(self, text: str, k: int,
                          filters: Filters | None = None) -> dict[int, float]:
        self._require_full_text()
        terms = query_terms(text)
        if not terms or k <= 0 or not self.b.has_vectors():
            return {}
        # A document's BM25 is its best text part's: exact for documents under 60 kB (one
        # part), the best part's score for longer ones.
        result = self.client.search(
            self.b.name("texts"), data=[" ".join(terms)], anns_field="sparse",
            limit=min(k, MAX_LIMIT), filter=self._filter("texts", filters),
            group_by_field="doc_id", output_fields=["doc_id"],
            search_params={"metric_type": "BM25"}, **self.consistency)
        scores: dict[int, float] = {}
        for h in result[0]:
            # milvus-lite returns BM25 negated; a server returns it positive. Best first either way.
            scores.setdefault(int(h["entity"]["doc_id"]), abs(float(h["distance"])))
        return scores

    def keyword_chunks(self, text: str, doc_ids: Sequence[int] | None = None,
                       limit: int | None = None,
                       filters: Filters | None = None) -> dict[int, float]:
        self._require_full_text()
        terms = query_terms(text)
        if not terms or not self.b.has_vectors():
            return {}
        query = " ".join(terms)
        scores: dict[int, float] = {}
        if doc_ids is None:
            batches = [self._filter("chunks", filters)]
        else:
            ids = sorted({int(i) for i in doc_ids})
            batches = [self._filter("chunks", filters, _ids_expr("doc_id", ids[s:s + IN_BATCH]))
                       for s in range(0, len(ids), IN_BATCH)]
            if not ids:
                return {}
        for expr in batches:
            result = self.client.search(
                self.b.name("chunks"), data=[query], anns_field="sparse",
                limit=min(limit or MAX_LIMIT, MAX_LIMIT), filter=expr, output_fields=[],
                search_params={"metric_type": "BM25"}, **self.consistency)
            for h in result[0]:
                scores[int(h["id"])] = abs(float(h["distance"]))
        order = sorted(scores, key=lambda i: -scores[i])[:limit]
        return {i: scores[i] for i in order}

    def documents(self, ids: Iterable[int]) -> dict[int, DocRow]:
        rows = self._by_ids("documents", "id", ids, schema.DOCUMENT_FIELDS)
        parts: dict[int, list[tuple[int, str]]] = {}
        for t in self._by_ids("texts", "doc_id", [r["id"] for r in rows], ["doc_id", "part", "text"]):
            parts.setdefault(int(t["doc_id"]), []).append((int(t["part"]), t["text"]))
        out: dict[int, DocRow] = {}
        for r in rows:
            pieces = sorted(parts.get(int(r["id"]), []))
            if len(pieces) != int(r["n_parts"]):
                continue   # text not all there: not a committed document
            out[int(r["id"])] = _doc_row(r, "".join(p for _, p in pieces))
        return out

    def chunks(self, ids: Iterable[int]) -> dict[int, ChunkRow]:
        return {int(r["id"]): _chunk_row(r) for r in self._by_ids("chunks", "id", ids, schema.CHUNK_FIELDS)}

    def chunks_of(self, doc_ids: Iterable[int],
                  dim: int | None = None) -> tuple[list[ChunkRow], np.ndarray | None]:
        fields = schema.CHUNK_FIELDS + (["vector"] if dim is not None else [])
        rows = sorted(self._by_ids("chunks", "doc_id", doc_ids, fields),
                      key=lambda r: (int(r["doc_id"]), int(r["ordinal"])))
        vectors = None
        if dim is not None:
            vectors = np.asarray([r["vector"] for r in rows], dtype=np.float32).reshape(len(rows), dim)
        return [_chunk_row(r) for r in rows], vectors

    def vectors(self, table: str, ids: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        if ids is None:
            return self._vectors(table, self._hide(table))
        rows = sorted(self._by_ids(table, "id", ids, ["id", "vector"]), key=lambda r: int(r["id"]))
        return _id_vectors(rows, self.manifest().get("dim", 0))

    def _vectors(self, table: str, expr: str) -> tuple[np.ndarray, np.ndarray]:
        rows = sorted(self._query(table, expr, ["id", "vector"]), key=lambda r: int(r["id"]))
        return _id_vectors(rows, self.manifest().get("dim", 0))

    def stats(self) -> dict[str, Any]:
        """The local backend's keys (``searchkit info``), plus where the collections live."""
        manifest = self.manifest()
        params = manifest.get("milvus_params") or {}
        index = {k: v for k, v in params.items() if k in _INDEX_KEYS.get(params.get("index_type"), ())}
        files = _disk_usage(Path(self.b.uri)) if self.b.lite else {}
        tokens = sum(int(r["n_tokens"]) for r in self._query("documents", self._hide("documents"), ["n_tokens"]))
        return {
            "index": self.b.location,
            "model": manifest.get("model"),
            "chunking": manifest.get("chunking"),
            "documents": self.count("documents"),
            "chunks": self.count("chunks"),
            "tokens": tokens,
            "ann_type": f"milvus {params.get('index_type', '(none yet)')}",
            "ann": {t: index for t in ("documents", "chunks")},
            "search": {k: v for k, v in params.items()
                       if k == {"HNSW": "ef_search", "IVF_FLAT": "nprobe"}.get(params.get("index_type"))},
            "schema_version": manifest.get("schema_version"),
            "generation": manifest.get("generation"),
            "files": files,
            "bytes_on_disk": sum(files.values()),
            "milvus": {"uri": self.b.uri, "version": self.b.version,
                       "collections": ", ".join(self.b.name(t) for t in schema.COLLECTIONS),
                       "full-text": self.b.full_text, "pending": len(self.hidden)},
        }


_INDEX_KEYS = {"HNSW": ("index_type", "hnsw_m", "hnsw_ef_construction"),
               "IVF_FLAT": ("index_type", "nlist"), "FLAT": ("index_type",),
               "AUTOINDEX": ("index_type",)}


def _disk_usage(path: Path) -> dict[str, int]:
    """Bytes of a milvus-lite database (a folder of files)."""
    if path.is_file():
        return {path.name: path.stat().st_size}
    files = [f for f in path.rglob("*") if f.is_file()] if path.exists() else []
    return {path.name: sum(f.stat().st_size for f in files)}


def _doc_row(r: dict[str, Any], text: str) -> DocRow:
    return DocRow(id=int(r["id"]), key=r["key"], path=r["path"] or None, title=r["title"],
                  kind=r["kind"], content_hash=r["content_hash"], size=int(r["size"]),
                  mtime=float(r["mtime"]) if r["has_mtime"] else None, n_tokens=int(r["n_tokens"]),
                  text=text, metadata=dict(r["metadata"] or {}))


def _chunk_row(r: dict[str, Any]) -> ChunkRow:
    return ChunkRow(int(r["id"]), int(r["doc_id"]), int(r["ordinal"]), int(r["tok_start"]),
                    int(r["tok_end"]), int(r["char_start"]), int(r["char_end"]))


def _id_vectors(rows: list[dict[str, Any]], dim: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.asarray([int(r["id"]) for r in rows], dtype=np.int64)
    if not rows:
        return ids, np.zeros((0, dim), dtype=np.float32)
    return ids, np.asarray([r["vector"] for r in rows], dtype=np.float32)


class MilvusWriter(MilvusView):
    """The index's one writer (see the module docstring for the write protocol)."""

    def __init__(self, backend: MilvusBackend):
        super().__init__(backend, {})
        self.consistency = STRONG
        self.wrote = False

    # -- journal ----------------------------------------------------------------------------

    def _journal(self, removing: Sequence[int] = ()) -> None:
        """Write the journal: the id counter kept, ``removing`` named (or nothing in flight)."""
        next_id = int(self.b._get("journal").get("next_id", 1))
        self.b._put("journal", {"next_id": next_id, "adding": [],
                                "removing": [int(i) for i in removing]})

    def recover(self) -> None:
        """Finish what a killed writer left (see the module docstring)."""
        journal = self.b._get("journal")
        adding = [int(i) for i in journal.get("adding", [])]
        removing = [int(i) for i in journal.get("removing", [])]
        if not adding and not removing:
            return
        committed = {int(r["id"]) for r in self._by_ids("documents", "id", adding, ["id"])}
        if len(committed) == len(adding):
            # Every new document landed: roll forward (finish removing what they replace).
            log.warning("finishing an interrupted write on %s: %d removals completed",
                        self.b.location, len(removing))
            self._drop(removing)
        else:
            # Roll back: drop the batch's rows, keep the documents it would have replaced.
            log.warning("rolling back an interrupted write on %s: %d half-written documents "
                        "dropped", self.b.location, len(adding))
            self._drop(adding)
        self._journal()

    # -- WriteSession -----------------------------------------------------------------------

    def manifest(self) -> dict[str, Any]:
        return self.b._get("manifest")

    def record(self, **values: Any) -> None:
        manifest = self.b._get("manifest")
        manifest.update(values)
        self.b._put("manifest", manifest)

    def prepare(self) -> None:
        """Nothing to load: Milvus keeps its own indexes in step."""

    def states(self, keys: Iterable[str] | None = None) -> dict[str, tuple[int, str]]:
        fields = ["id", "key", "content_hash"]
        if keys is None:
            rows = self._query("documents", "", fields)
        else:
            keys = list(dict.fromkeys(keys))
            rows = []
            for s in range(0, len(keys), IN_BATCH):
                part = keys[s:s + IN_BATCH]
                rows.extend(self._query("documents", "key in [" + ",".join(
                    expressions.literal(k) for k in part) + "]", fields))
        return {r["key"]: (int(r["id"]), r["content_hash"]) for r in rows}

    def paths_under(self, folder: str) -> dict[str, int]:
        prefix = folder.rstrip("/") + "/"
        rows = self._query("documents", expressions._prefix(prefix), ["id", "path"])
        return {r["path"]: int(r["id"]) for r in rows}

    def title_metadata(self, ids: Sequence[int]) -> dict[int, tuple[str, dict[str, Any]]]:
        rows = self._by_ids("documents", "id", ids, ["id", "title", "metadata"])
        return {int(r["id"]): (r["title"], dict(r["metadata"] or {})) for r in rows}

    def relabel(self, rows: Iterable[tuple[int, str, dict[str, Any]]]) -> None:
        changes = {int(i): {"title": schema.utf8_cut(title, schema.VARCHAR_BYTES),
                            "metadata": _json_safe(metadata),
                            "facets": expressions.facets(_json_safe(metadata))}
                   for i, title, metadata in rows}
        self._rewrite(changes, title_changed=True)

    def restamp(self, stamps: Iterable[tuple[str, int, float]]) -> int:
        stamps = list(stamps)
        if not stamps or not self.b.has_vectors():
            return 0
        stored = {}
        for s in range(0, len(stamps), IN_BATCH):
            part = [k for k, _, _ in stamps[s:s + IN_BATCH]]
            for r in self._query("documents", "key in [" + ",".join(expressions.literal(k) for k in part) + "]",
                                 ["id", "key", "size", "mtime", "has_mtime"]):
                stored[r["key"]] = r
        changes = {}
        for key, size, mtime in stamps:
            r = stored.get(key)
            if r is None or (int(r["size"]) == size and r["has_mtime"] and float(r["mtime"]) == mtime):
                continue
            changes[int(r["id"])] = {"size": int(size), "mtime": float(mtime), "has_mtime": True}
        self._rewrite(changes)
        return len(changes)

    def _rewrite(self, changes: dict[int, dict[str, Any]], title_changed: bool = False) -> None:
        """Upsert whole rows with some fields changed (Milvus 2.3 has no partial update).

        Documents, their chunks and texts carry the filter fields, so all three are rewritten;
        the document row goes last, as in an insert.
        """
        if not changes:
            return
        self.wrote = True
        filter_keys = set(schema.FILTER_FIELDS)
        ids = list(changes)
        for table, fields in (("texts", schema.TEXT_FIELDS), ("chunks", schema.CHUNK_FIELDS + ["vector"])):
            extra = ["search_text"] if table == "texts" else ["text"]
            if not self.b.full_text and table == "texts":
                extra.append("placeholder")
            rows = self._by_ids(table, "doc_id", ids, fields + extra)
            titles = {}
            if table == "texts" and title_changed:
                titles = {i: c["title"] for i, c in changes.items() if "title" in c}
            for r in rows:
                r.update({k: v for k, v in changes[int(r["doc_id"])].items() if k in filter_keys})
                if table == "texts" and int(r["part"]) == 0 and int(r["doc_id"]) in titles:
                    r["search_text"] = _search_text(titles[int(r["doc_id"])], r["text"])
            self._upsert(table, rows)
        docs = self._by_ids("documents", "id", ids, schema.DOCUMENT_FIELDS + ["vector"])
        for r in docs:
            r.update(changes[int(r["id"])])
        self._upsert("documents", docs)

    def _upsert(self, table: str, rows: list[dict[str, Any]]) -> None:
        for s in range(0, len(rows), INSERT_BATCH):
            self.client.upsert(self.b.name(table), [_plain(r) for r in rows[s:s + INSERT_BATCH]])

    def _insert(self, table: str, rows: list[dict[str, Any]]) -> None:
        for s in range(0, len(rows), INSERT_BATCH):
            self.client.insert(self.b.name(table), rows[s:s + INSERT_BATCH])

    def _ensure_collections(self, dim: int) -> None:
        if self.b.has_vectors():
            return
        params = self.manifest().get("milvus_params") or _params(self.b.settings)
        index_type = params["index_type"]
        c, ft = self.client, self.b.full_text
        # Shards split a collection's writes across a cluster's data nodes (fixed at creation).
        create = {**STRONG, "num_shards": int(self.b.settings.shards)}
        c.create_collection(self.b.name("texts"), schema=schema.texts_schema(c, ft),
                            index_params=schema.sparse_index(c, c.prepare_index_params()) if ft
                            else schema.placeholder_index(c), **create)
        chunk_index = schema.vector_index(c, index_type, params)
        if ft:
            schema.sparse_index(c, chunk_index)
        c.create_collection(self.b.name("chunks"), schema=schema.chunks_schema(c, dim, ft),
                            index_params=chunk_index, **create)
        # Documents last: has_vectors() reads its existence as "all collections are there".
        c.create_collection(self.b.name("documents"), schema=schema.documents_schema(c, dim),
                            index_params=schema.vector_index(c, index_type, params), **create)
        if self.b._replicas():
            for table in ("texts", "chunks", "documents"):
                c.release_collection(self.b.name(table))
                self.b._load(self.b.name(table))
        self.record(dim=dim, milvus_params=params)

    def replace(self, old_ids: Sequence[int], embedded: Sequence[EmbeddedDocument]) -> list[int]:
        old_ids = [int(i) for i in old_ids]
        if embedded:
            self._ensure_collections(int(np.asarray(embedded[0].vector).shape[-1]))
        parts = [schema.text_parts(e.document.text) for e in embedded]
        need = len(embedded) + sum(len(e.chunks) for e in embedded) + sum(len(p) for p in parts)
        # One journal write reserves the ids and names this batch before any row is written.
        start = int(self.b._get("journal").get("next_id", 1))
        doc_ids = list(range(start, start + len(embedded)))
        next_id = start + len(embedded)
        self.b._put("journal", {"next_id": start + need, "adding": doc_ids, "removing": old_ids})
        texts, chunks, docs = [], [], []
        for doc_id, item, pieces in zip(doc_ids, embedded, parts):
            doc = item.document
            metadata = _json_safe(doc.metadata)
            filt = {"path": doc.path or "", "kind": doc.kind,
                    "mtime": float(doc.mtime) if doc.mtime is not None else 0.0,
                    "has_mtime": doc.mtime is not None, "facets": expressions.facets(metadata)}
            title = schema.utf8_cut(doc.title, schema.VARCHAR_BYTES)
            for n, piece in enumerate(pieces):
                row = {"id": next_id, "doc_id": doc_id, "part": n, "text": piece,
                       "search_text": _search_text(title, piece) if n == 0 else schema.bm25_text(piece),
                       **filt}
                if not self.b.full_text:
                    row["placeholder"] = [0.0] * schema.PLACEHOLDER_DIM
                texts.append(row)
                next_id += 1
            for chunk in item.chunks:
                chunks.append({
                    "id": next_id, "doc_id": doc_id, "ordinal": chunk.ordinal,
                    "tok_start": chunk.tok_start, "tok_end": chunk.tok_end,
                    "char_start": chunk.char_start, "char_end": chunk.char_end,
                    "text": schema.bm25_text(doc.text[chunk.char_start:chunk.char_end]),
                    "vector": np.asarray(chunk.vector, dtype=np.float32).tolist(), **filt})
                next_id += 1
            if len(doc.key.encode("utf-8")) > schema.VARCHAR_BYTES:
                raise BackendError(f"document key {doc.key[:80]!r}...: longer than Milvus's "
                                   f"{schema.VARCHAR_BYTES:,}-byte VARCHAR")
            docs.append({
                "id": doc_id, "key": doc.key, "title": title, "content_hash": doc.content_hash,
                "size": int(doc.size), "n_tokens": int(item.n_tokens), "metadata": metadata,
                "n_parts": len(pieces), "indexed_at": _now(),
                "vector": np.asarray(item.vector, dtype=np.float32).tolist(), **filt})
        self.wrote = True
        if embedded:
            self._insert("texts", texts)
            self._insert("chunks", chunks)
            self._insert("documents", docs)     # the commit marks
        self._drop(old_ids)
        self._journal()
        self._bump()
        return doc_ids

    def _drop(self, doc_ids: Sequence[int]) -> None:
        if not doc_ids or not self.b.has_vectors():
            return
        ids = sorted({int(i) for i in doc_ids})
        for s in range(0, len(ids), IN_BATCH):
            part = ids[s:s + IN_BATCH]
            self.client.delete(self.b.name("documents"), filter=_ids_expr("id", part))
            self.client.delete(self.b.name("chunks"), filter=_ids_expr("doc_id", part))
            self.client.delete(self.b.name("texts"), filter=_ids_expr("doc_id", part))

    def _bump(self) -> None:
        manifest = self.b._get("manifest")
        manifest["generation"] = int(manifest.get("generation", 0)) + 1
        self.b._put("manifest", manifest)

    def delete(self, doc_ids: Sequence[int]) -> None:
        doc_ids = [int(i) for i in doc_ids]
        if not doc_ids:
            return
        self.wrote = True
        self._journal(removing=doc_ids)
        self._drop(doc_ids)
        self._journal()
        self._bump()

    def rebuild(self, index_type: str | None = None) -> None:
        """Drop and rebuild the vector index of documents and chunks (with ``index_type``,
        else the configured one); Milvus rebuilds from the vectors it stores."""
        if not self.b.has_vectors():
            return
        params = _params(self.b.settings, LOCAL_NAMES.get(index_type, index_type))
        for table in ("documents", "chunks"):
            name = self.b.name(table)
            self.client.release_collection(name)
            self.client.drop_index(name, "vector")
            self.client.create_index(name, schema.vector_index(self.client, params["index_type"], params))
            self.client.load_collection(name, **self.b._replicas())
        self.record(milvus_params=params)
        self._bump()

    def compact(self) -> dict[str, Any]:
        """Flush and ask Milvus to compact each collection: it merges small segments and
        purges deleted rows in the background (milvus-lite has nothing to compact)."""
        files = _disk_usage(Path(self.b.uri)) if self.b.lite else {}
        before = sum(files.values())
        result = {"dropped": {}, "bytes_before": before, "bytes_after": before}
        if not self.b.has_vectors() or self.b.lite:
            result["note"] = "nothing to compact" if not self.b.has_vectors() else \
                "milvus-lite keeps no deleted rows to purge"
            return result
        for table in ("documents", "chunks", "texts"):
            self.client.flush(self.b.name(table))
            self.client.compact(self.b.name(table))
        result["note"] = (f"compaction of {self.b.prefix}documents, chunks and texts requested; "
                          "the server merges segments and purges deleted rows in the background")
        return result


# ``searchkit rebuild --index-type`` takes the local backend's names.
LOCAL_NAMES = {"flat": "FLAT", "ivf": "IVF_FLAT", "hnsw": "HNSW", "auto": "AUTOINDEX"}


def _params(settings: Any, index_type: str | None = None) -> dict[str, Any]:
    chosen = (index_type or settings.index_type).upper()
    if chosen not in schema.INDEX_TYPES:
        raise ConfigError(f"milvus.index_type {chosen!r}: expected one of {', '.join(schema.INDEX_TYPES)}")
    return {"index_type": chosen, "hnsw_m": settings.hnsw_m,
            "hnsw_ef_construction": settings.hnsw_ef_construction,
            "ef_search": settings.ef_search, "nlist": settings.nlist, "nprobe": settings.nprobe}


def _search_text(title: str, text: str) -> str:
    return schema.bm25_text(schema.utf8_cut(title, schema.TITLE_BM25_BYTES) + "\n\n" + text)


def _json_safe(metadata: Any) -> dict[str, Any]:
    """Metadata as stored: JSON, with values JSON lacks (dates, ...) as their text."""
    return json.loads(json.dumps(metadata or {}, ensure_ascii=False, default=str))


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """A queried row ready to write back (numpy floats and JSON as Milvus returns them)."""
    out = {}
    for k, v in row.items():
        if k in ("vector", "placeholder"):
            v = [float(x) for x in v]
        out[k] = v
    return out
