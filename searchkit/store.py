"""The index's source of truth: one SQLite database written through sqlite-utils.

Tables: ``manifest`` (model, settings, schema version, generation), ``documents`` (metadata,
text and the whole-document vector as a float32 blob) and ``chunks`` (token and character
spans, vector). Ids come from AUTOINCREMENT so a removed id is never reused: a FAISS file
that still holds a removed id can never confuse it with a newer document.

Every write happens in :meth:`Store.transaction`, which bumps the generation; FAISS files are
named after the generation they reflect, so a stale one is recognised on open.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import sqlite_utils
from sqlite_utils import Migrations

from .errors import CorruptIndexError, NotAnIndexError, SchemaVersionError
from .records import EmbeddedDocument

DB_NAME = "searchkit.db"

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


SCHEMA_VERSION = len(migrations._migrations)


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class ChunkRow:
    id: int
    doc_id: int
    ordinal: int
    tok_start: int
    tok_end: int
    char_start: int
    char_end: int


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

    @classmethod
    def open(cls, folder: Path, create: bool = False) -> "Store":
        """Open (or create) the database in ``folder``.

        Raises:
            NotAnIndexError: the folder or file is not a searchkit index.
            CorruptIndexError: the database is damaged.
            SchemaVersionError: a newer searchkit wrote it.
        """
        folder = Path(folder)
        path = folder / DB_NAME
        if folder.exists() and not folder.is_dir():
            raise NotAnIndexError(f"{folder} is a file, not an index folder")
        if not path.exists():
            if not create:
                raise NotAnIndexError(f"{folder} is not a searchkit index (no {DB_NAME}); "
                                      "create one with `searchkit index PATH --index FOLDER`")
            if folder.exists() and any(p for p in folder.iterdir() if not p.name.startswith(".")):
                raise NotAnIndexError(f"{folder} is a non-empty folder that is not a searchkit index; "
                                      "choose an empty or new folder for --index")
            folder.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(str(path), timeout=30.0)
            db = sqlite_utils.Database(conn)
            db.execute("PRAGMA foreign_keys = ON")
            tables = set(db.table_names())
        except sqlite3.DatabaseError as exc:
            raise CorruptIndexError(f"{path} is not a readable SQLite database ({exc})") from None
        store = cls(db, path)
        if not tables:
            if not create:
                raise NotAnIndexError(f"{path} is an empty database, not a searchkit index")
            db.enable_wal()
            migrations.apply(db)
            with db.atomic():
                store._put({"schema_version": SCHEMA_VERSION, "generation": 0,
                            "created_at": _now()})
            return store
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
            migrations.apply(db)
            with db.atomic():
                store._put({"schema_version": SCHEMA_VERSION})
        return store

    def close(self) -> None:
        self.db.close()

    # -- manifest -------------------------------------------------------------------------

    def manifest(self) -> dict[str, Any]:
        try:
            return {r["key"]: json.loads(r["value"]) for r in self.db.query("SELECT key, value FROM manifest")}
        except sqlite3.DatabaseError as exc:
            raise CorruptIndexError(f"{self.path}: cannot read the manifest ({exc})") from None

    def _put(self, values: dict[str, Any]) -> None:
        self.db["manifest"].upsert_all(
            [{"key": k, "value": json.dumps(v)} for k, v in values.items()], pk="key")

    def set_manifest(self, **values: Any) -> None:
        """Write manifest entries in their own transaction."""
        with self.transaction():
            self._put(values)

    @property
    def generation(self) -> int:
        row = self.db.execute("SELECT value FROM manifest WHERE key = 'generation'").fetchone()
        return int(json.loads(row[0])) if row else 0

    @contextlib.contextmanager
    def transaction(self) -> Iterator["Store"]:
        """One atomic write; bumps the generation so cached FAISS files are known stale."""
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
            "metadata": json.dumps(doc.metadata, ensure_ascii=False, default=str),
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

    def delete(self, doc_ids: Sequence[int]) -> list[int]:
        """Delete documents and their chunks; returns the removed chunk ids."""
        if not doc_ids:
            return []
        marks = ",".join("?" * len(doc_ids))
        chunk_ids = [r[0] for r in self.db.execute(
            f"SELECT id FROM chunks WHERE doc_id IN ({marks})", list(doc_ids))]
        self.db.execute(f"DELETE FROM chunks WHERE doc_id IN ({marks})", list(doc_ids))
        self.db.execute(f"DELETE FROM documents WHERE id IN ({marks})", list(doc_ids))
        return chunk_ids

    # -- reads ----------------------------------------------------------------------------

    def states(self, keys: Iterable[str] | None = None) -> dict[str, tuple[int, str]]:
        """``key → (id, content_hash)`` for the given keys (all documents when ``None``)."""
        if keys is None:
            rows = self.db.execute("SELECT key, id, content_hash FROM documents")
            return {k: (i, h) for k, i, h in rows}
        out: dict[str, tuple[int, str]] = {}
        keys = list(keys)
        for start in range(0, len(keys), 500):
            part = keys[start:start + 500]
            rows = self.db.execute(
                f"SELECT key, id, content_hash FROM documents WHERE key IN ({','.join('?' * len(part))})", part)
            out.update({k: (i, h) for k, i, h in rows})
        return out

    def paths_under(self, folder: str) -> dict[str, int]:
        """``path → id`` of file documents stored under ``folder`` (an absolute path)."""
        prefix = folder.rstrip("/") + "/"
        # GLOB on the escaped prefix is exact where LIKE would treat % and _ in names as wildcards.
        pattern = "".join(f"[{c}]" if c in "*?[" else c for c in prefix) + "*"
        rows = self.db.execute("SELECT path, id FROM documents WHERE path GLOB ?", [pattern])
        return {p: i for p, i in rows}

    def count(self, table: str = "documents") -> int:
        return int(self.db.execute(f"SELECT count(*) FROM [{table}]").fetchone()[0])

    def vectors(self, table: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """All ``(ids, vectors)`` of ``documents`` or ``chunks``, to (re)build a FAISS index."""
        ids, blobs = [], []
        for row_id, blob in self.db.execute(f"SELECT id, vector FROM [{table}] ORDER BY id"):
            ids.append(row_id)
            blobs.append(blob)
        return np.asarray(ids, dtype=np.int64), from_blobs(blobs, dim)

    def documents(self, ids: Sequence[int]) -> dict[int, DocRow]:
        out: dict[int, DocRow] = {}
        ids = [int(i) for i in ids]
        for start in range(0, len(ids), 500):
            part = ids[start:start + 500]
            rows = self.db.execute(
                "SELECT id, key, path, title, kind, content_hash, size, mtime, n_tokens, text, metadata "
                f"FROM documents WHERE id IN ({','.join('?' * len(part))})", part)
            for r in rows:
                out[r[0]] = DocRow(*r[:10], metadata=json.loads(r[10]))
        return out

    def document_vectors(self, ids: Sequence[int], dim: int) -> dict[int, np.ndarray]:
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        rows = self.db.execute(
            f"SELECT id, vector FROM documents WHERE id IN ({','.join('?' * len(ids))})", ids).fetchall()
        matrix = from_blobs([r[1] for r in rows], dim)
        return {r[0]: matrix[i] for i, r in enumerate(rows)}

    def chunks_of(self, doc_ids: Sequence[int], dim: int) -> tuple[list[ChunkRow], np.ndarray]:
        """Chunks of the given documents with their vectors (for late reranking)."""
        doc_ids = [int(i) for i in doc_ids]
        if not doc_ids:
            return [], np.zeros((0, dim), dtype=np.float32)
        rows = self.db.execute(
            "SELECT id, doc_id, ordinal, tok_start, tok_end, char_start, char_end, vector FROM chunks "
            f"WHERE doc_id IN ({','.join('?' * len(doc_ids))}) ORDER BY doc_id, ordinal", doc_ids).fetchall()
        return [ChunkRow(*r[:7]) for r in rows], from_blobs([r[7] for r in rows], dim)

    def chunks(self, ids: Sequence[int]) -> dict[int, ChunkRow]:
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        rows = self.db.execute(
            "SELECT id, doc_id, ordinal, tok_start, tok_end, char_start, char_end FROM chunks "
            f"WHERE id IN ({','.join('?' * len(ids))})", ids)
        return {r[0]: ChunkRow(*r) for r in rows}

    def integrity_ok(self) -> bool:
        return self.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
