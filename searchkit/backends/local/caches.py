"""The FAISS caches of an index folder, kept level with the SQLite source of truth.

Each table (``documents``, ``chunks``) has one FAISS file named after the database generation
it reflects (``documents.g42.faiss``). Readers take the newest readable file and bring it level
with SQLite by id (ids are never reused, so comparing id sets is exact); with no usable file
they rebuild from SQLite. The writer keeps its in-memory indexes in step with its own commits,
checkpoints them during long writes, compacts HNSW tombstones, resizes the structure as the
collection grows, and saves atomically at the end. Storage side only: no model code here.

Thread safety: the caches readers share (``shared=True``) are loaded and swapped under a lock
and never changed once handed out: a reader that finds the database at a newer generation
catches up a copy, and keeps the last few generations, so threads whose snapshots straddle a
commit each get the index of their own snapshot. A writer has caches of its own, seeded with
copies of the shared ones and handed back to them when the write ends.
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .ann import AnnParams, VectorIndex, choose_params, why_not
from ...config import AnnConfig
from ...errors import IndexStoreError
from ...records import EmbeddedDocument
from ..base import TABLES
from .locking import WriteLock
from .store import DB_NAME, Store

log = logging.getLogger("searchkit")

# Generations of each table a shared cache keeps for readers whose snapshots lag a commit.
KEEP_GENERATIONS = 2
# Temporary files a killed writer left behind: of a FAISS save (VectorIndex.save), and of a
# database being created (store._create, under the writer lock like every write, so no live
# process owns one while a writer holds the lock).
LEFTOVER_GLOBS = ("*.faiss.*.tmp", f".{DB_NAME}.*.tmp", f".{DB_NAME}.*.tmp-wal", f".{DB_NAME}.*.tmp-shm")
# FAISS files this process found unreadable, as (path, size, mtime): each is reported once per
# process, and no save counts the folder's files as current while one is still there.
_UNREADABLE: set[tuple[str, int, int]] = set()


def _stamp(path: Path) -> tuple[str, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return str(path), st.st_size, st.st_mtime_ns


class VectorCaches:
    """The FAISS index of each table of one index folder, loaded, repaired and saved on demand."""

    def __init__(self, folder: Path, store: Callable[[], Store], config: AnnConfig,
                 checkpoint_seconds: float | None = None, shared: bool = False,
                 seed: "VectorCaches | None" = None):
        """
        Args:
            folder: the index folder.
            store: returns the calling thread's store (reads see that thread's snapshot).
            config: the ANN settings.
            checkpoint_seconds: a writer's checkpoint interval (see :meth:`checkpoint`).
            shared: readers in several threads use these caches: never change an index in place.
            seed: a writer's source of copies of what readers already loaded.
        """
        self.folder = folder
        self._store = store
        self.config = config
        self.checkpoint_seconds = checkpoint_seconds
        self.shared = shared
        self.seed = seed
        self._index: dict[str, VectorIndex] = {}
        self._generation: dict[str, int] = {}
        self._recent: dict[tuple[str, int], VectorIndex] = {}
        self._lock = threading.RLock()
        self._last_save = time.monotonic()
        self.saved_generation: int | None = None  # the generation the last save wrote

    @property
    def store(self) -> Store:
        return self._store()

    def file(self, table: str, generation: int) -> Path:
        return self.folder / f"{table}.g{generation}.faiss"

    def _files(self, table: str, generation: int) -> list[Path]:
        """FAISS files of ``table`` on disk: the one for ``generation`` first, then newest first."""
        found = []
        for path in self.folder.glob(f"{table}.g*.faiss"):
            gen = path.name[len(table) + 2:-len(".faiss")]
            if gen.isdigit():
                found.append((int(gen) != generation, -int(gen), path))
        return [path for *_, path in sorted(found)]

    def _params(self, table: str) -> AnnParams:
        data = self.store.manifest().get(f"ann_{table}")
        return AnnParams(**data) if data else self._choose(self.config, table)

    def get(self, table: str) -> VectorIndex:
        """The FAISS index of ``documents`` or ``chunks`` for the database's current state.

        Readers call this inside :meth:`Store.snapshot`, so the index and every row read
        afterwards come from one generation. The index comes from, cheapest first: the copy in
        memory, the FAISS file of this generation, the newest older file; whichever it is, it is
        then brought level with SQLite by id (vectors added since are read from SQLite, removed
        ones dropped or, in HNSW, left as tombstones). With no usable file it is rebuilt from
        SQLite, with one line saying so.
        """
        generation = self.store.generation
        with self._lock:
            cached = self._index.get(table)
            if cached is not None and self._generation.get(table) == generation:
                return cached
            if (table, generation) in self._recent:
                return self._recent[(table, generation)]
            seeded = self.seed.peek(table, generation) if self.seed is not None else None
            if seeded is not None:
                return self._publish(table, generation, seeded.copy())
            return self._publish(table, generation, self._load(table, generation, cached))

    def peek(self, table: str, generation: int) -> VectorIndex | None:
        """The index of ``table`` already loaded for ``generation``, if any (not to be changed)."""
        with self._lock:
            if self._generation.get(table) == generation:
                return self._index[table]
            return self._recent.get((table, generation))

    def adopt(self, indexes: dict[str, VectorIndex], generation: int) -> None:
        """Take over a finished writer's indexes, which reflect ``generation``."""
        with self._lock:
            for table, index in indexes.items():
                self._publish(table, generation, index)

    def _publish(self, table: str, generation: int, index: VectorIndex) -> VectorIndex:
        if self._generation.get(table, -1) <= generation:
            self._index[table], self._generation[table] = index, generation
        if self.shared:
            self._recent[(table, generation)] = index
            mine = sorted(g for t, g in self._recent if t == table)
            for old in mine[:-KEEP_GENERATIONS]:
                del self._recent[(table, old)]
        return index

    def _load(self, table: str, generation: int, cached: VectorIndex | None) -> VectorIndex:
        dim = self.dimension()
        index, source, warned = None, None, {}
        if cached is not None and cached.params == self._params(table) \
                and _tombstone_share(cached, self.store.count(table)) <= self.config.compact_ratio:
            # A shared index may be in use by another thread: catch up a copy of it.
            index = cached.copy() if self.shared else cached
        else:
            index, source, warned = self._load_newest(table, generation, dim)
        built = index is None
        if built:
            if self.store.count(table) and not warned:
                log.warning("no FAISS file for %s; rebuilt from SQLite", table)
            index = self.build(table, self._params(table))
        repaired = False
        if built and self.shared and self.file(table, generation) in warned:
            # A reader: write the repair now if nobody is writing (a writer saves anyway).
            repaired = self._save_repaired(table, generation, index)
        for path, problem in warned.items():
            log.warning("FAISS file %s is unreadable (%s); %s", path.name, problem,
                        "rebuilt from SQLite and saved" if repaired and path == self.file(table, generation)
                        else "using SQLite instead until a write replaces it")
        if not built:
            added, removed = self._catch_up(table, index, dim)
            if (added or removed) and source is not None:
                current = source == self.file(table, generation)
                (log.warning if current else log.info)(
                    "FAISS file %s %s; brought level with SQLite (+%d, -%d vectors)", source.name,
                    "disagreed with the database" if current else "is older than the database",
                    added, removed)
        return index

    def dimension(self) -> int:
        model = self.store.manifest().get("model") or {}
        return int(model.get("dimension", 1))

    def _load_newest(self, table: str, generation: int,
                     dim: int) -> tuple[VectorIndex | None, Path | None, dict[Path, str]]:
        """The newest readable FAISS file of ``table`` (this generation's first), its path, and
        the damaged files found on the way that this process has not reported yet, with why."""
        bad: set[Path] = set()
        new: dict[Path, str] = {}
        for _ in range(2):  # a writer may swap files while we look: list them again once
            # A file saved by a writer that crashed before recording its checksum, or by a
            # searchkit before checksums, has none: it is loaded on FAISS's own checks alone.
            checksums = self.store.manifest().get("faiss_crc32") or {}
            for path in self._files(table, generation):
                if path in bad:
                    continue
                try:
                    index = VectorIndex.load(path, checksums.get(path.name))
                    if index.dim != dim:
                        raise ValueError(f"dimension {index.dim}, not {dim}")
                except ValueError as exc:
                    stamp = _stamp(path)
                    if stamp is not None:  # else the writer swapped it away while we read it
                        bad.add(path)
                        if stamp not in _UNREADABLE:
                            _UNREADABLE.add(stamp)
                            new[path] = str(exc)
                    continue
                return index, path, new
        return None, None, new

    def _catch_up(self, table: str, index: VectorIndex, dim: int) -> tuple[int, int]:
        """Bring ``index`` level with SQLite by id; returns (vectors added, ids removed).

        Ids are never reused (AUTOINCREMENT), so comparing id sets is exact: an id only in
        SQLite was added since the index was saved, an id only in the index was removed.
        """
        live, have = self.store.ids(table), index.ids()
        new = np.setdiff1d(live, have, assume_unique=True)
        gone = np.setdiff1d(have, live, assume_unique=True)
        # HNSW cannot remove: its ids of removed documents are tombstones it was saved with
        # (queries skip them), not a sign that the file lags, so they are not counted.
        removed = len(gone) if len(gone) and index.remove(gone) else 0
        if len(new):
            ids, vectors = self.store.vectors(table, dim, ids=new)
            index.add(ids, vectors)
        return len(new), removed

    def _save_repaired(self, table: str, generation: int, index: VectorIndex) -> bool:
        """Replace this generation's unreadable file with ``index`` (rebuilt from SQLite at
        ``generation``), if this process can take the writer lock at once and no writer has
        saved a newer generation since; else the next write does it."""
        path = self.file(table, generation)
        try:
            with WriteLock(self.folder):
                newer = [p for p in self.folder.glob(f"{table}.g*.faiss") if _generation_of(p) > generation]
                if newer or _stamp(path) not in _UNREADABLE:
                    return False
                self.store.record_checksum(path.name, index.save(path))
        except (IndexStoreError, OSError, sqlite3.DatabaseError):
            return False
        return True

    def build(self, table: str, params: AnnParams) -> VectorIndex:
        dim = self.dimension()
        ids, vectors = self.store.vectors(table, dim)
        if params.kind == "ivf" and len(ids) < (params.nlist or 1):
            params = self._choose(self.config, table, len(ids))
        return VectorIndex.build(params, dim, ids, vectors)

    def save(self) -> None:
        """Record the FAISS structure, write the caches for the new generation, drop older files.

        Writer only. The manifest commit comes first: a crash before the files are renamed into
        place leaves this generation without files, and the next reader brings the newest
        older file level with SQLite. Older files are removed once the new ones are in place;
        a reader already holding one keeps its copy in memory.
        """
        self.store.set_manifest(**{f"ann_{t}": ix.params.as_dict() for t, ix in self._index.items()})
        generation = self.store.generation
        checksums = {}
        for table, index in self._index.items():
            path = self.file(table, generation)
            checksums[path.name] = index.save(path)
            self._generation[table] = generation
        self.saved_generation = generation
        self.store.annotate(faiss_crc32=checksums)
        for path in self.folder.glob("*.g*.faiss"):
            if not path.name.endswith(f".g{generation}.faiss"):
                path.unlink(missing_ok=True)
        for path in _leftovers(self.folder):  # left by a writer killed mid-save or mid-create
            path.unlink(missing_ok=True)
        self._last_save = time.monotonic()

    def files_current(self) -> bool:
        """Whether the folder holds exactly this generation's FAISS files and nothing left over
        from an interrupted writer (older generations, temporary files)."""
        generation = self.store.generation
        wanted = {self.file(table, generation).name for table in TABLES}
        files = list(self.folder.glob("*.faiss"))
        return {p.name for p in files} == wanted and not _leftovers(self.folder) \
            and not any(_stamp(p) in _UNREADABLE for p in files)

    def checkpoint(self) -> None:
        """During a long write, save the FAISS caches every ``ingest.checkpoint_seconds``, so
        readers and a restarted run catch up from a recent file instead of rebuilding."""
        every = self.checkpoint_seconds
        if every and time.monotonic() - self._last_save >= every:
            self.save()

    def compact(self, force: bool) -> dict[str, int]:
        """Rebuild from SQLite each index whose tombstones (HNSW) exceed ``ann.compact_ratio``
        (any tombstone with ``force``), keeping its structure; returns tombstones dropped."""
        dropped = {}
        for table in TABLES:
            index = self.current(table)
            dead = index.ntotal - self.store.count(table)
            if dead > 0 and (force or _tombstone_share(index, index.ntotal - dead)
                             > self.config.compact_ratio):
                self._index[table] = self.build(table, index.params)
                dropped[table] = dead
                log.info("compacted %s: %d removed vectors dropped", table, dead)
        return dropped

    def resize(self) -> None:
        """Rebuild a FAISS index whose structure no longer suits the collection size."""
        for table in TABLES:
            index = self.current(table)
            wanted = self._choose(self.effective_config(), table)
            if _needs_rebuild(index.params, wanted):
                self._index[table] = self.build(table, wanted)

    def _choose(self, config: AnnConfig, table: str, count: int | None = None) -> AnnParams:
        """The structure ``config`` gives ``table`` at its current size (or ``count``)."""
        count = self.store.count(table) if count is None else count
        return choose_params(config, count, table, self.dimension())

    def effective_config(self) -> AnnConfig:
        """The ANN settings with the index type recorded in the manifest."""
        kind = self.store.manifest().get("ann_type", self.config.type)
        return dataclasses.replace(self.config, type=kind)

    def apply(self, old_ids, old_chunks, new: list[tuple[int, list[int]]],
              embedded: list[EmbeddedDocument]) -> None:
        """Mirror one committed batch: remove replaced ids, add the new document and chunk vectors."""
        docs_ann, chunks_ann = self.current("documents"), self.current("chunks")
        docs_ann.remove(np.asarray(old_ids, dtype=np.int64))
        chunks_ann.remove(np.asarray(old_chunks, dtype=np.int64))
        if new:
            docs_ann.add(np.asarray([i for i, _ in new]), np.stack([e.vector for e in embedded]))
            chunk_ids = [c for _, cids in new for c in cids]
            if chunk_ids:
                chunks_ann.add(np.asarray(chunk_ids),
                               np.stack([c.vector for e in embedded for c in e.chunks]))
        generation = self.store.generation
        for table in TABLES:
            self._generation[table] = generation

    def loaded(self) -> dict[str, VectorIndex]:
        """The indexes in memory, by table."""
        return dict(self._index)

    def current(self, table: str) -> VectorIndex:
        """The in-memory index a writer keeps in step with its own commits."""
        if table not in self._index:
            return self.get(table)
        return self._index[table]

    def loaded_generation(self, table: str) -> int | None:
        """The database generation the in-memory index of ``table`` reflects (None: not loaded)."""
        return self._generation.get(table)

    def load_all(self) -> None:
        """Load (or rebuild) every table's index: a writer does this before its first commit,
        so its in-memory indexes and SQLite move in step from there on."""
        for table in TABLES:
            self.get(table)

    def start_write(self) -> None:
        """Restart the checkpoint clock at the start of a write."""
        self._last_save = time.monotonic()

    def rebuild_all(self) -> None:
        """Rebuild every index from SQLite with the structure suited to its size, and save."""
        config = self.effective_config()
        for table in TABLES:
            count = self.store.count(table)
            reason = why_not(config.type, count)
            if reason is not None:  # asked for by name: say why it is not used
                log.warning("%s: %s", table, reason)
            self._index[table] = self.build(table, self._choose(config, table, count))
        self.save()

    def finish_write(self) -> None:
        """After a write: resize what outgrew its structure, compact past the tombstone share, save."""
        self.resize()
        self.compact(force=False)
        self.save()

def _tombstone_share(index: VectorIndex, live: int) -> float:
    return (index.ntotal - live) / index.ntotal if index.ntotal else 0.0
def _needs_rebuild(have: AnnParams, want: AnnParams) -> bool:
    if have.kind != want.kind:
        return True
    if have.kind == "ivf":
        return not (want.nlist / 2 <= (have.nlist or 1) <= want.nlist * 2)
    return False


def _generation_of(path: Path) -> int:
    number = path.name.rsplit(".g", 1)[-1][:-len(".faiss")]
    return int(number) if number.isdigit() else -1


def _leftovers(folder: Path) -> list[Path]:
    return [path for pattern in LEFTOVER_GLOBS for path in folder.glob(pattern)]
