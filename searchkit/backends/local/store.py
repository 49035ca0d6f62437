"""The index's source of truth: one SQLite database written through sqlite-utils.

Tables: ``manifest`` (model, settings, schema version, generation), ``documents`` (metadata,
text and the whole-document vector as a float32 blob) and ``chunks`` (token and character
spans, vector). Ids come from AUTOINCREMENT so a removed id is never reused: a FAISS file
that still holds a removed id can never confuse it with a newer document.

Every write that adds or removes vectors happens in :meth:`Store.transaction`, which bumps the
generation; FAISS files are named after the generation they reflect, so a stale one is
recognised on open. Writes to columns no FAISS file reflects (a file's mtime and size, a
document's title and metadata) leave the generation alone, so they never force the FAISS
files to be rewritten.

Keyword search uses two FTS5 tables created by migration 2: ``documents_fts`` (title and text,
an external-content table reading ``documents``) and ``chunks_fts`` (each chunk's text,
``documents.text[char_start:char_end]``, stored in the FTS table itself). Triggers on
``documents`` and ``chunks`` keep both in step with every insert, replace and delete, in the
same statement and therefore the same transaction as the write itself, whatever code path
makes it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import sqlite3
import urllib.parse
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import sqlite_utils
from sqlite_utils import Migrations

from ...errors import (CorruptIndexError, IndexLockedError, IndexStoreError, NotAnIndexError,
                       ReadOnlyIndexError, SchemaVersionError)
from ...metadata import plain_metadata
from .locking import LOCK_NAME, WriteLock
from ...filters import escape_glob
from ...records import EmbeddedDocument, metadata_json
from ..base import ChunkRow, DocRow

log = logging.getLogger("searchkit")

DB_NAME = "searchkit.db"
# Manifest key: every row's metadata is strict JSON (set at creation, or once repaired).
STRICT_JSON = "metadata_strict_json"
# The only tables whose names are ever put into SQL text; every value travels as a parameter.
VECTOR_TABLES = ("documents", "chunks")
# Values bound per ``IN (…)`` list: SQLite caps the variables of one statement (999 before
# 3.32, 32,766 since), so a long id list is sent in batches of this many.
IN_BATCH = 500

migrations = Migrations("searchkit")


@migrations()
def m001_initial(db: sqlite_utils.Database) -> None:
    db.execute("CREATE TABLE manifest (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("""
        CREATE TABLE documents (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            key TEXT NOT NULL UNIQUE,
            path TEXT,
            title TEXT NOT NULL,
            kind TEXT NOT NULL,
            content_hash TEXT NOT NULL,
            size INTEGER NOT NULL,
            mtime REAL,
            n_tokens INTEGER NOT NULL,
            text TEXT NOT NULL,
            metadata TEXT NOT NULL DEFAULT '{}',
            vector BLOB NOT NULL,
            indexed_at TEXT NOT NULL
        )""")
    db.execute("""
        CREATE TABLE chunks (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            doc_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            ordinal INTEGER NOT NULL,
            tok_start INTEGER NOT NULL,
            tok_end INTEGER NOT NULL,
            char_start INTEGER NOT NULL,
            char_end INTEGER NOT NULL,
            vector BLOB NOT NULL
        )""")
    db.execute("CREATE INDEX chunks_doc_id ON chunks(doc_id)")
    db.execute("CREATE INDEX documents_path ON documents(path)")


# Porter stemming over Unicode word tokens, accents folded. Measured on the shared evaluation
# sets (FTS5 bm25, whole text): git_whatis 0.657 nDCG@10 with stemming vs 0.649 without,
# man_whatis 0.643 vs 0.617, pg_refpurpose 0.656 vs 0.611.
FTS_TOKENIZE = "porter unicode61 remove_diacritics 2"


@migrations()
def m002_fts(db: sqlite_utils.Database) -> None:
    """FTS5 over document title + text and over chunk text, kept in step by triggers.

    ``documents_fts`` is an external-content table: it stores only the inverted index and reads
    title and text from ``documents``, so its delete trigger must hand back the old values.
    ``chunks_fts`` keeps its own copy of each chunk's text (SQLite's ``substr`` counts
    characters, as Python slicing does): a chunk's text is cut from its document, which may
    already be gone when a chunk row is deleted, and a stored copy deletes by rowid alone.
    Existing rows are indexed here, so an index built before this migration gains keyword
    search on open.
    """
    db.execute(f"""
        CREATE VIRTUAL TABLE documents_fts USING fts5(
            title, text, content='documents', content_rowid='id', tokenize='{FTS_TOKENIZE}')""")
    db.execute(f"CREATE VIRTUAL TABLE chunks_fts USING fts5(text, tokenize='{FTS_TOKENIZE}')")
    db.execute("""
        CREATE TRIGGER documents_fts_insert AFTER INSERT ON documents BEGIN
            INSERT INTO documents_fts (rowid, title, text) VALUES (new.id, new.title, new.text);
        END""")
    db.execute("""
        CREATE TRIGGER documents_fts_delete AFTER DELETE ON documents BEGIN
            INSERT INTO documents_fts (documents_fts, rowid, title, text)
            VALUES ('delete', old.id, old.title, old.text);
        END""")
    db.execute("""
        CREATE TRIGGER documents_fts_update AFTER UPDATE OF title, text ON documents BEGIN
            INSERT INTO documents_fts (documents_fts, rowid, title, text)
            VALUES ('delete', old.id, old.title, old.text);
            INSERT INTO documents_fts (rowid, title, text) VALUES (new.id, new.title, new.text);
        END""")
    db.execute("""
        CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN
            INSERT INTO chunks_fts (rowid, text)
            SELECT new.id, substr(d.text, new.char_start + 1, new.char_end - new.char_start)
            FROM documents d WHERE d.id = new.doc_id;
        END""")
    db.execute("""
        CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN
            DELETE FROM chunks_fts WHERE rowid = old.id;
        END""")
    db.execute("INSERT INTO documents_fts (documents_fts) VALUES ('rebuild')")
    db.execute("""
        INSERT INTO chunks_fts (rowid, text)
        SELECT c.id, substr(d.text, c.char_start + 1, c.char_end - c.char_start)
        FROM chunks c JOIN documents d ON d.id = c.doc_id""")


SCHEMA_VERSION = len(migrations._migrations)


def to_blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=np.float32).tobytes()


def from_blobs(blobs: Sequence[bytes], dim: int) -> np.ndarray:
    if not blobs:
        return np.zeros((0, dim), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), dim).copy()


class Store:
    """One index database. Open it with :meth:`Store.open`."""

    def __init__(self, db: sqlite_utils.Database, path: Path):
        self.db = db
        self.path = path
        self._snapshot_generation: int | None = None   # read once per snapshot

    @classmethod
    def open(cls, folder: Path, create: bool = False, migrate_wait: float = 30.0) -> "Store":
        """Open (or create) the database in ``folder``.

        An index written by an older searchkit is migrated on open, under the folder's writer
        lock (waiting up to ``migrate_wait`` seconds for a running writer).

        Raises:
            NotAnIndexError: the folder or file is not a searchkit index.
            CorruptIndexError: the database is damaged.
            SchemaVersionError: a newer searchkit wrote it.
            IndexLockedError: the index needs migrating and another writer held it too long.
        """
        folder = Path(folder)
        path = folder / DB_NAME
        if folder.exists() and not folder.is_dir():
            raise NotAnIndexError(f"{folder} is a file, not an index folder")
        if not path.exists():
            if not create:
                raise NotAnIndexError(f"{folder} is not a searchkit index (no {DB_NAME}); "
                                      "create one with `searchkit index PATH --index FOLDER`")
            if not creatable(folder):
                raise NotAnIndexError(f"{folder} is a non-empty folder that is not a searchkit index; "
                                      "choose an empty or new folder for --index")
            make_folder(folder)
            try:
                _create(path)
            except OSError as exc:
                raise _cannot_write(folder, exc) from None
        try:
            conn = _connect(path)
            db = sqlite_utils.Database(conn)
            db.execute("PRAGMA foreign_keys = ON")
            tables = set(db.table_names())
        except sqlite3.DatabaseError as exc:
            raise explain(path, exc, "cannot be opened") from None
        store = cls(db, path)
        if not tables:
            raise NotAnIndexError(f"{path} is an empty database, not a searchkit index")
        if "manifest" not in tables or "documents" not in tables:
            raise NotAnIndexError(f"{path} is a SQLite database but not a searchkit index")
        version = store.manifest().get("schema_version")
        if not isinstance(version, int):
            raise NotAnIndexError(f"{path} has no schema version: not a searchkit index")
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{path} was written by a newer searchkit (schema {version}, this one reads up to "
                f"{SCHEMA_VERSION}); upgrade searchkit to open it")
        if version < SCHEMA_VERSION:
            store._migrate(folder, migrate_wait)
        if not store.manifest().get(STRICT_JSON):
            store._repair_metadata(folder)
        return store

    @property
    def writable(self) -> bool:
        """Whether this process may write to the index folder (false on read-only media)."""
        return os.access(self.path.parent, os.W_OK)

    def _repair_metadata(self, folder: Path) -> None:
        """Rewrite metadata an older searchkit stored as JSON that is not JSON (``NaN``,
        ``Infinity``, which SQLite's JSON functions reject, so every filtered query failed)
        as strict JSON, NaN and Infinity as null; then mark the index checked.

        Done once per index, by the first process that opens it where it can be written while
        no writer runs; until then a filtered query on such a row reports the cause.
        """
        if not self.writable:
            return
        try:
            lock = WriteLock(folder).acquire()
        except IndexStoreError:  # a writer is busy (it, or a later opener, will do this)
            return
        try:
            rows = self.db.execute("SELECT id, metadata FROM documents WHERE NOT json_valid(metadata)")
            fixed = [(metadata_json(_lenient_metadata(text)), doc_id) for doc_id, text in rows]
            with self.db.atomic():
                self.db.conn.executemany("UPDATE documents SET metadata = ? WHERE id = ?", fixed)
                self._put({STRICT_JSON: True})
        finally:
            lock.release()
        if fixed:
            log.warning("%s: repaired the metadata of %d document(s) written as JSON SQLite cannot "
                        "read (NaN or Infinity, now null)", self.path, len(fixed))

    def _migrate(self, folder: Path, wait: float) -> None:
        # Two processes opening an old index at once must not both run a migration, and a
        # migration must not interleave with a writer's transactions: take the writer lock and
        # look again, since the other process may have migrated while this one waited.
        with WriteLock(folder, wait):
            if self.manifest().get("schema_version", 0) < SCHEMA_VERSION:
                migrations.apply(self.db)
                with self.db.atomic():
                    self._put({"schema_version": SCHEMA_VERSION})

    def close(self) -> None:
        self.db.close()

    # -- manifest -------------------------------------------------------------------------

    def manifest(self) -> dict[str, Any]:
        try:
            return {r["key"]: json.loads(r["value"]) for r in self.db.query("SELECT key, value FROM manifest")}
        except sqlite3.DatabaseError as exc:
            raise explain(self.path, exc, "cannot read its manifest") from None
        except (ValueError, TypeError) as exc:
            raise CorruptIndexError(f"{self.path} holds a manifest searchkit did not write ({exc})") from None

    def _put(self, values: dict[str, Any]) -> None:
        self.db["manifest"].upsert_all(
            [{"key": k, "value": json.dumps(v)} for k, v in values.items()], pk="key")

    def set_manifest(self, **values: Any) -> None:
        """Write manifest entries in their own transaction."""
        with self.transaction():
            self._put(values)

    def annotate(self, **values: Any) -> None:
        """Write manifest entries that change nothing a search sees (cache checksums), atomically
        but without bumping the generation, so the FAISS files just saved stay current."""
        with self.db.atomic():
            self._put(values)

    def record_checksum(self, name: str, checksum: int) -> None:
        """Record one FAISS file's checksum at once, on a connection of its own (the caller may
        be a reader inside a snapshot, which must stay read-only). Writer lock held."""
        conn = _connect(self.path)
        try:
            with conn:
                row = conn.execute("SELECT value FROM manifest WHERE key = 'faiss_crc32'").fetchone()
                sums = {**(json.loads(row[0]) if row else {}), name: checksum}
                conn.execute("INSERT OR REPLACE INTO manifest (key, value) VALUES ('faiss_crc32', ?)",
                             [json.dumps(sums)])
        finally:
            conn.close()

    @property
    def generation(self) -> int:
        if self._snapshot_generation is not None:
            return self._snapshot_generation
        row = self.db.conn.execute("SELECT value FROM manifest WHERE key = 'generation'").fetchone()
        return int(row[0]) if row else 0   # a JSON integer: int() reads it as json would

    @contextlib.contextmanager
    def snapshot(self) -> Iterator["Store"]:
        """A read transaction: every read inside sees one committed state (WAL snapshot).

        Readers never wait for the writer in WAL mode; the snapshot only keeps a commit that
        lands halfway through a search from mixing two generations. Nested use is a no-op.
        """
        conn = self.db.conn
        if conn.in_transaction:
            yield self
            return
        conn.execute("BEGIN")
        try:
            # A snapshot sees one generation: read it once (a search asks several times).
            self._snapshot_generation = self.generation
            yield self
        finally:
            self._snapshot_generation = None
            if conn.in_transaction:
                conn.execute("COMMIT")  # nothing was written: this only ends the snapshot

    @contextlib.contextmanager
    def transaction(self) -> Iterator["Store"]:
        """One atomic write; bumps the generation so cached FAISS files are known stale."""
        self._snapshot_generation = None   # a write inside a read snapshot moves it on
        with self.db.atomic():
            self.db.execute("UPDATE manifest SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
            yield self

    # -- writes (call inside transaction()) -----------------------------------------------

    def insert(self, item: EmbeddedDocument) -> tuple[int, list[int]]:
        """Store one embedded document; returns its id and its chunk ids."""
        doc = item.document
        table = self.db["documents"]
        table.insert({
            "key": doc.key, "path": doc.path, "title": doc.title, "kind": doc.kind,
            "content_hash": doc.content_hash, "size": doc.size, "mtime": doc.mtime,
            "n_tokens": item.n_tokens, "text": doc.text,
            "metadata": metadata_json(doc.metadata),
            "vector": to_blob(item.vector), "indexed_at": _now(),
        })
        doc_id = int(table.last_rowid)
        chunk_ids = []
        for chunk in item.chunks:
            cur = self.db.execute(
                "INSERT INTO chunks (doc_id, ordinal, tok_start, tok_end, char_start, char_end, vector) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [doc_id, chunk.ordinal, chunk.tok_start, chunk.tok_end, chunk.char_start,
                 chunk.char_end, to_blob(chunk.vector)])
            chunk_ids.append(int(cur.lastrowid))
        return doc_id, chunk_ids

    def restamp(self, stamps: Iterable[tuple[str, int, float]]) -> int:
        """Record the current ``(key, size, mtime)`` of unchanged files, in its own transaction;
        returns how many rows differed and were updated.

        Filters read mtime from here and no FAISS file holds it, so the generation stays and
        the FAISS files stay current.
        """
        with self.db.atomic():
            cur = self.db.conn.executemany(
                "UPDATE documents SET size = ?, mtime = ? WHERE key = ? "
                "AND (size IS NOT ? OR mtime IS NOT ?)",
                [(size, mtime, key, size, mtime) for key, size, mtime in stamps])
            return max(cur.rowcount, 0)

    def update_title_metadata(self, rows: Iterable[tuple[int, str, dict[str, Any]]]) -> None:
        """Replace the title and metadata of documents ``(id, title, metadata)`` whose text is
        unchanged, in its own transaction. Keyword search sees the new title at once (the FTS5
        trigger); no FAISS file holds either, so the generation stays."""
        with self.db.atomic():
            self.db.conn.executemany(
                "UPDATE documents SET title = ?, metadata = ? WHERE id = ?",
                [(title, metadata_json(metadata), int(doc_id)) for doc_id, title, metadata in rows])

    def delete(self, doc_ids: Sequence[int]) -> list[int]:
        """Delete documents and their chunks; returns the removed chunk ids."""
        doc_ids = [int(i) for i in doc_ids]
        chunk_ids = [r[0] for r in self._in_batches(
            "SELECT id FROM chunks WHERE doc_id IN ({ids})", doc_ids)]
        self._in_batches("DELETE FROM chunks WHERE doc_id IN ({ids})", doc_ids)
        self._in_batches("DELETE FROM documents WHERE id IN ({ids})", doc_ids)
        return chunk_ids

    # -- reads ----------------------------------------------------------------------------

    def _in_batches(self, sql: str, values: Sequence[Any], before: Sequence[Any] = (),
                    after: Sequence[Any] = ()) -> list[tuple]:
        """Run ``sql`` once per batch of ``IN_BATCH`` ``values`` and return every row.

        ``{ids}`` in ``sql`` becomes one batch's placeholders; the parameters ``before`` and
        ``after`` are bound on either side of them. Each batch is ordered on its own, so a
        caller that needs one order across batches sorts ``values`` or the rows.
        """
        rows: list[tuple] = []
        for start in range(0, len(values), IN_BATCH):
            part = list(values[start:start + IN_BATCH])
            sql_part = sql.replace("{ids}", ",".join("?" * len(part)))
            rows.extend(self.db.conn.execute(sql_part, [*before, *part, *after]).fetchall())
        return rows

    def states(self, keys: Iterable[str] | None = None) -> dict[str, tuple[int, str]]:
        """``key → (id, content_hash)`` for the given keys (all documents when ``None``)."""
        if keys is None:
            rows = self.db.execute("SELECT key, id, content_hash FROM documents")
            return {k: (i, h) for k, i, h in rows}
        rows = self._in_batches("SELECT key, id, content_hash FROM documents WHERE key IN ({ids})",
                                list(keys))
        return {k: (i, h) for k, i, h in rows}

    def title_metadata(self, ids: Sequence[int]) -> dict[int, tuple[str, dict[str, Any]]]:
        """``id → (title, metadata)`` of the given documents."""
        rows = self._in_batches("SELECT id, title, metadata FROM documents WHERE id IN ({ids})",
                                [int(i) for i in ids])
        return {i: (title, json.loads(metadata)) for i, title, metadata in rows}

    def paths_under(self, folder: str) -> dict[str, int]:
        """``path → id`` of file documents stored under ``folder`` (an absolute path)."""
        prefix = folder.rstrip("/") + "/"
        # GLOB on the escaped prefix is exact where LIKE would treat % and _ in names as wildcards.
        pattern = escape_glob(prefix) + "*"
        rows = self.db.execute("SELECT path, id FROM documents WHERE path GLOB ?", [pattern])
        return {p: i for p, i in rows}

    def count(self, table: str = "documents") -> int:
        return int(self.db.execute(f"SELECT count(*) FROM [{_table(table)}]").fetchone()[0])

    def ids(self, table: str) -> np.ndarray:
        """Every live id of ``documents`` or ``chunks``, ascending."""
        rows = self.db.execute(f"SELECT id FROM [{_table(table)}] ORDER BY id")
        return np.fromiter((r[0] for r in rows), dtype=np.int64)

    def vectors(self, table: str, dim: int,
                ids: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, vectors)`` of ``documents`` or ``chunks`` (all rows, or only ``ids``)."""
        if ids is None:
            rows = self.db.execute(f"SELECT id, vector FROM [{_table(table)}] ORDER BY id").fetchall()
        else:
            rows = self._in_batches(f"SELECT id, vector FROM [{_table(table)}] WHERE id IN ({{ids}}) "
                                    "ORDER BY id", [int(i) for i in ids])
        return np.asarray([r[0] for r in rows], dtype=np.int64), from_blobs([r[1] for r in rows], dim)

    def documents(self, ids: Sequence[int]) -> dict[int, DocRow]:
        rows = self._in_batches(
            "SELECT id, key, path, title, kind, content_hash, size, mtime, n_tokens, text, metadata "
            "FROM documents WHERE id IN ({ids})", [int(i) for i in ids])
        return {r[0]: DocRow(*r[:10], metadata=_metadata(r[10])) for r in rows}

    def document_vectors(self, ids: Sequence[int], dim: int) -> dict[int, np.ndarray]:
        """``id → vector`` of the given documents."""
        found, matrix = self.vectors("documents", dim, ids=ids)
        return {int(i): matrix[row] for row, i in enumerate(found)}

    def chunks_of(self, doc_ids: Sequence[int], dim: int) -> tuple[list[ChunkRow], np.ndarray]:
        """Chunks of the given documents with their vectors (for late reranking)."""
        # Sorted and distinct, so the batches read in one order by (doc_id, ordinal) overall.
        rows = self._in_batches(
            "SELECT id, doc_id, ordinal, tok_start, tok_end, char_start, char_end, vector FROM chunks "
            "WHERE doc_id IN ({ids}) ORDER BY doc_id, ordinal", sorted({int(i) for i in doc_ids}))
        return [ChunkRow(*r[:7]) for r in rows], from_blobs([r[7] for r in rows], dim)

    def chunk_rows(self, doc_ids: Sequence[int]) -> list[ChunkRow]:
        """Chunks of the given documents without their vectors."""
        rows = self._in_batches(
            "SELECT id, doc_id, ordinal, tok_start, tok_end, char_start, char_end FROM chunks "
            "WHERE doc_id IN ({ids}) ORDER BY doc_id, ordinal", sorted({int(i) for i in doc_ids}))
        return [ChunkRow(*r) for r in rows]

    def chunks(self, ids: Sequence[int]) -> dict[int, ChunkRow]:
        rows = self._in_batches(
            "SELECT id, doc_id, ordinal, tok_start, tok_end, char_start, char_end FROM chunks "
            "WHERE id IN ({ids})", [int(i) for i in ids])
        return {r[0]: ChunkRow(*r) for r in rows}

    # -- keyword search and filters -------------------------------------------------------

    def keyword_documents(self, match: str, limit: int,
                          where: tuple[str, list[Any]] | None = None) -> dict[int, float]:
        """Top ``limit`` documents for an FTS5 ``match`` expression: ``id → BM25`` (higher is
        better; FTS5's ``bm25()`` is negated). ``where`` is an SQL condition on ``documents d``
        with its parameters (see :mod:`searchkit.filters`), applied before ranking.
        """
        sql, params = where or ("1", [])
        # Without filters no row of ``documents`` is needed: the triggers keep the FTS table
        # in step with it, and a join per matching row costs more than the ranking.
        join = "JOIN documents d ON d.id = documents_fts.rowid " if where else ""
        rows = self.db.execute(
            f"SELECT documents_fts.rowid, -bm25(documents_fts) FROM documents_fts {join}"
            f"WHERE documents_fts MATCH ? AND ({sql}) ORDER BY bm25(documents_fts) LIMIT ?",
            [match, *params, int(limit)])
        return {int(i): float(s) for i, s in rows}

    def keyword_chunks(self, match: str, doc_ids: Sequence[int] | None = None,
                       limit: int | None = None,
                       where: tuple[str, list[Any]] | None = None) -> dict[int, float]:
        """BM25 of matching chunks: ``chunk id → score`` (higher is better), best first.

        Either the chunks of ``doc_ids`` (to pick each document's passage) or the top ``limit``
        chunks of the documents passing ``where`` (passage search).
        """
        # Without filters or documents no row of ``chunks`` is needed (see keyword_documents).
        join = ("JOIN chunks c ON c.id = chunks_fts.rowid JOIN documents d ON d.id = c.doc_id "
                if where or doc_ids is not None else "")
        select = f"SELECT chunks_fts.rowid, -bm25(chunks_fts) FROM chunks_fts {join}WHERE chunks_fts MATCH ? AND "
        tail = " ORDER BY bm25(chunks_fts)" + (" LIMIT ?" if limit is not None else "")
        after = [int(limit)] if limit is not None else []
        if doc_ids is None:
            sql, params = where or ("1", [])
            rows = self.db.execute(f"{select}({sql}){tail}", [match, *params, *after]).fetchall()
        else:
            rows = self._in_batches(select + "c.doc_id IN ({ids})" + tail,
                                    [int(i) for i in doc_ids], [match], after)
            # Best first across batches (a stable sort keeps one batch's own order).
            rows = sorted(rows, key=lambda r: -r[1])[:limit]
        return {int(i): float(s) for i, s in rows}

    # FTS5's own index, read for the in-memory BM25 (:mod:`searchkit.backends.local.keywords`).

    def fts_sizes(self, table: str) -> tuple[np.ndarray, list[bytes]]:
        """Row ids of an FTS5 table, ascending, and each row's ``docsize`` record (one varint
        per column: the row's length in tokens)."""
        rows = self.db.execute(f"SELECT id, sz FROM [{_fts(table)}_docsize] ORDER BY id").fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)), [r[1] for r in rows]

    def fts_counts(self, table: str, token: str) -> tuple[np.ndarray, np.ndarray]:
        """``(row ids ascending, occurrences in the row, all columns)`` of one indexed token."""
        # One string of every instance's row id, not a row per instance or a GROUP BY (which
        # sorts): fts5vocab yields a term's instances in row order already.
        text = self.db.execute(f"SELECT group_concat(doc, ' ') FROM {self._fts_instances(table)} "
                               "WHERE term = ?", [token]).fetchone()[0]
        rows = np.fromstring(text, dtype=np.int64, sep=" ") if text else np.zeros(0, np.int64)
        if len(rows) > 1 and np.any(rows[1:] < rows[:-1]):
            rows = np.sort(rows)
        starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]]) if len(rows) else rows
        return rows[starts], np.diff(np.r_[starts, len(rows)])

    def fts_positions(self, table: str, token: str) -> np.ndarray:
        """``(n, 3)`` int64: row id, column number and token offset of each occurrence of one
        indexed token (for phrases of several tokens)."""
        rows = self.db.execute(
            f"SELECT doc, col, offset FROM {self._fts_instances(table)} WHERE term = ?", [token]).fetchall()
        names = {name: i for i, name in enumerate(FTS_COLUMNS[_fts(table)])}
        return np.asarray([(d, names[c], o) for d, c, o in rows], dtype=np.int64).reshape(len(rows), 3)

    def _fts_instances(self, table: str) -> str:
        """An ``fts5vocab`` table of ``table``'s token instances (temp schema, this connection)."""
        name = f"temp.[{_fts(table)}_instances]"
        self.db.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {name} "
                        f"USING fts5vocab(main, [{_fts(table)}], instance)")
        return name

    def filtered_ids(self, where: tuple[str, list[Any]], table: str = "documents") -> np.ndarray:
        """Ids of the documents (or of their chunks) that pass an SQL condition on ``documents d``."""
        sql, params = where
        if table == "chunks":
            query = f"SELECT c.id FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE {sql}"
        else:
            query = f"SELECT d.id FROM documents d WHERE {sql}"
        return np.fromiter((r[0] for r in self.db.execute(query, params)), dtype=np.int64)

    def integrity_ok(self) -> bool:
        return self.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def vacuum(self) -> None:
        """Give the pages freed by deletes back to the file system (writer only)."""
        self.db.execute("VACUUM")
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def creatable(folder: Path) -> bool:
    """Whether ``folder`` is missing or holds nothing but hidden files and the writer lock, so a
    new index may be created in it."""
    if not folder.exists():
        return True
    return folder.is_dir() and not any(
        p for p in folder.iterdir() if not p.name.startswith(".") and p.name != LOCK_NAME)


def make_folder(folder: Path) -> None:
    """Create the index folder (and its parents) or say in one line why it cannot be."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _cannot_write(folder, exc) from None


def _cannot_write(folder: Path, exc: OSError) -> IndexStoreError:
    cause = exc.strerror or str(exc)
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return ReadOnlyIndexError(f"cannot create an index in {folder}: {cause}")
    return IndexStoreError(f"cannot create an index in {folder}: {cause}")


def _connect(path: Path) -> sqlite3.Connection:
    """A connection to the index database, read-only when its folder cannot be written.

    On read-only media SQLite cannot create the ``-wal`` and ``-shm`` files a WAL database
    needs: with both already there (a copy taken while a writer had the index open) the
    database is opened read-only and reads them; with no ``-wal`` (the last writer closed
    cleanly, which checkpoints and removes it) it is opened immutable, which needs neither.
    One connection per thread (LocalBackend); not checked by sqlite3, so the backend can close
    every thread's connection when it closes.
    """
    if os.access(path.parent, os.W_OK):
        return sqlite3.connect(str(path), timeout=30.0, check_same_thread=False)
    uri = "file:" + urllib.parse.quote(str(path.absolute()))
    wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
    if wal.exists() and wal.stat().st_size:
        if not shm.exists():
            raise ReadOnlyIndexError(
                f"{path.parent} is read-only and {wal.name} holds writes SQLite cannot read there "
                f"without {shm.name}; copy the folder somewhere writable to open it")
        return sqlite3.connect(uri + "?mode=ro", uri=True, timeout=30.0, check_same_thread=False)
    return sqlite3.connect(uri + "?mode=ro&immutable=1", uri=True, check_same_thread=False)


def explain(path: Path, exc: sqlite3.DatabaseError, doing: str = "failed") -> IndexStoreError:
    """The searchkit error for an SQLite error on the database at ``path``.

    Only a failed integrity check makes it damage (:class:`CorruptIndexError`, with the advice
    to restore or re-index); a busy database is :class:`IndexLockedError`; anything else keeps
    SQLite's own words and says the database itself is sound.
    """
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return IndexLockedError(f"{path} stayed busy too long ({text}); try again")
    if "readonly" in text or "read-only" in text:
        return ReadOnlyIndexError(f"{path} {doing}: {text} (the folder or file cannot be written)")
    if isinstance(exc, sqlite3.OperationalError) and ("unable to open" in text or "disk" in text
                                                      or "full" in text):
        return IndexStoreError(f"{path} {doing}: {text}")
    problem = integrity_problem(path)
    if problem is not None:
        return CorruptIndexError(f"{path} is damaged ({text}; integrity check: {problem}); "
                                 "restore it from a backup or delete the folder and index again")
    if "JSON" in text:
        return IndexStoreError(
            f"{path}: the metadata of some documents is not valid JSON ({text}); the database "
            "itself is sound: open the index once where it can be written to repair it")
    return IndexStoreError(f"{path} {doing}: {text} (the database passes its integrity check)")


def integrity_problem(path: Path) -> str | None:
    """The first problem ``PRAGMA quick_check`` finds in the database at ``path``, else None."""
    try:
        conn = _connect(path)
        try:
            verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            conn.close()
    except (sqlite3.DatabaseError, IndexStoreError) as exc:
        return str(exc)
    return None if verdict == "ok" else str(verdict).splitlines()[0]


def _lenient_metadata(text: str) -> dict[str, Any]:
    """Stored metadata read as Python's json reads it (NaN and Infinity allowed), as strict
    JSON values; ``{}`` when it is not even that."""
    try:
        data = json.loads(text)
        return plain_metadata(data)[0] if isinstance(data, dict) else {}
    except (ValueError, TypeError):
        return {}


def _create(path: Path) -> None:
    """Build a new, empty index database beside ``path`` and rename it into place, so no other
    process ever opens a half-initialised one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        leftover.unlink(missing_ok=True)
    conn = sqlite3.connect(str(tmp))
    try:
        db = sqlite_utils.Database(conn)
        db.enable_wal()
        migrations.apply(db)
        with db.atomic():
            Store(db, tmp)._put({"schema_version": SCHEMA_VERSION, "generation": 0,
                                 "created_at": _now(), STRICT_JSON: True})
    finally:
        conn.close()
    os.replace(tmp, path)


FTS_COLUMNS = {"documents_fts": ("title", "text"), "chunks_fts": ("text",)}


def _table(name: str, known: Iterable[str] = VECTOR_TABLES) -> str:
    """``name`` if it is one of the ``known`` tables (names are spliced into SQL)."""
    if name not in known:
        raise ValueError(f"unknown table {name!r}")
    return name


def _fts(name: str) -> str:
    return _table(name, FTS_COLUMNS)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


_decode = json.JSONDecoder().decode   # json.loads without its per-call checks


def _metadata(stored: str) -> dict[str, Any]:
    # Many documents have none: spare the JSON parser the common case.
    return {} if stored == "{}" else _decode(stored)
