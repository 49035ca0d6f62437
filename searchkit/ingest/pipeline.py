"""The write path: files and records in, documents and their vectors stored, stale entries out.

An :class:`Indexer` writes through one backend write session
(:class:`searchkit.backends.base.WriteSession`). It never loads a model itself: it asks for
the embedder only when a batch needs embedding, so a re-run over unchanged files never loads
it. :class:`searchkit.SearchIndex` checks the arguments, opens the write session (the writer
lock), records and checks the model. The model pass itself (document and chunk vectors) is in
:mod:`searchkit.ingest.embedding_pass`.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from tqdm import tqdm

from ..backends.base import WriteSession
from ..config import ChunkingConfig, IngestConfig
from .documents import Skipped, Unchanged, iter_files, read_document
from ..errors import InputError
from .executors import Executor
from ..records import Document, metadata_json

log = logging.getLogger("searchkit")


@dataclass
class IngestReport:
    """What one ``add_paths`` / ``add_records`` call did.

    ``updated`` counts every changed entry; ``relabelled`` those of them whose title or
    metadata changed while their text did not, so nothing was embedded for them.
    ``on_skip``, when set, hears of each skipped path as it happens (the CLI prints them while
    a long run goes on).
    """

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0
    relabelled: int = 0
    on_skip: Callable[[Skipped], None] | None = field(default=None, repr=False, compare=False)

    def skip(self, item: Skipped) -> None:
        self.skipped.append(item)
        if self.on_skip is not None:
            self.on_skip(item)

    @property
    def embedded(self) -> int:
        return self.added + self.updated - self.relabelled

    def summary(self) -> str:
        rate = f", {self.tokens / self.seconds:,.0f} tokens/s" if self.seconds and self.tokens else ""
        return (f"added {self.added}, updated {self.updated}, unchanged {self.unchanged}, "
                f"removed {self.removed}, skipped {len(self.skipped)} "
                f"({self.tokens:,} tokens in {self.seconds:.1f}s{rate})")


class Indexer:
    """Adds and removes documents through one backend write session.

    The adding methods expect the write prepared (model recorded, session prepared).
    """

    def __init__(self, session: WriteSession, settings: IngestConfig,
                 executor: Executor):
        """
        Args:
            session: the backend's write session (it holds the writer lock).
            settings: which files are read, and how many documents go in one commit.
            executor: where the model pass runs (this process, or a Ray cluster); it loads
                the model only when a batch needs embedding.
        """
        self.session = session
        self.settings = settings
        self.executor = executor

    def add_paths(self, paths: Sequence[str | os.PathLike], chunking: ChunkingConfig,
                  show_progress: bool = False,
                  on_skip: Callable[[Skipped], None] | None = None) -> IngestReport:
        """Index the files under ``paths``: unchanged ones are counted, new and changed ones
        embedded, files deleted from the given folders removed. A stored file the walk passes
        over but that still exists keeps its entry; one whose content became unusable (emptied,
        binary, too large, ...) is skipped and its entry removed; one that cannot be read now
        (permission denied, read error) is skipped and keeps its entry.

        Args:
            paths: files and folders (at least one).
            chunking: the index's chunking.
            show_progress: show a progress bar.
            on_skip: called with each skipped path as soon as it is known.

        Raises:
            InputError: a path does not exist, or the folders hold no supported file at all.
        """
        report = IngestReport(on_skip=on_skip)
        max_bytes = int(self.settings.max_file_mb * 1_000_000)
        existing = self.session.states()
        seen: set[str] = set()
        todo: list[tuple[Path, str]] = []   # each file with its key
        # abspath, not Path.absolute(): "docs/sub/../b.txt" must be stored as "docs/b.txt".
        roots = [Path(os.path.abspath(p)) for p in paths]
        for item in iter_files(roots, self.settings.extensions):
            if isinstance(item, Skipped):
                report.skip(item)
                continue
            key = os.path.abspath(item)
            if key in seen:  # overlapping roots, or a file named twice
                continue
            seen.add(key)
            todo.append((item, key))
        gone = [doc_id for root in roots if root.is_dir()
                for path, doc_id in self.session.paths_under(str(root)).items()
                if _gone(path, seen)]
        if not seen and not gone:
            exts = ", ".join(self.settings.extensions)
            raise InputError(f"no files to index under {', '.join(map(str, paths))} "
                             f"(supported: {exts})")
        stale = self._ingest(todo, existing, report, max_bytes, chunking, show_progress)
        dropped = sorted(set(gone) | set(stale))
        if dropped:
            self._remove_ids(dropped)
            report.removed += len(dropped)
        return report

    def add_documents(self, docs: Sequence[Document], chunking: ChunkingConfig,
                      show_progress: bool = False) -> IngestReport:
        """Index documents: one whose key is stored with the same content hash is unchanged,
        or updated in place when its title or metadata differ (nothing re-embedded); one with
        another hash replaces the stored one."""
        report = IngestReport()
        existing = self.session.states(d.key for d in docs)
        same_text = {d.key: existing[d.key][0] for d in docs
                     if d.key in existing and existing[d.key][1] == d.content_hash}
        stored = self.session.title_metadata(list(same_text.values()))
        fresh, relabel = [], []
        for doc in docs:
            doc_id = same_text.get(doc.key)
            if doc_id is None:
                fresh.append(doc)
            elif stored[doc_id] == (doc.title, json.loads(metadata_json(doc.metadata))):
                report.unchanged += 1
            else:
                relabel.append((doc_id, doc.title, doc.metadata))
        report.updated += len(relabel)
        report.relabelled += len(relabel)
        if relabel:
            self.session.relabel(relabel)
        self._embed_and_store(fresh, existing, report, chunking, show_progress)
        return report

    def remove(self, keys: Iterable[str]) -> int:
        """Remove the documents ``keys`` match (see :meth:`SearchIndex.remove`); returns how
        many were removed. Keys that match nothing are logged as a warning."""
        ids: set[int] = set()
        for key in keys:
            found = self._match_key(key)
            if not found:
                log.warning("not in the index: %s", key)
            ids.update(found)
        if ids:
            self._remove_ids(sorted(ids))
        return len(ids)

    def _match_key(self, key: str) -> list[int]:
        exact = self.session.states([key])
        if exact:
            return [i for i, _ in exact.values()]
        path = _absolute(key)
        if path is None:
            return []
        as_path = self.session.states([path])
        if as_path:
            return [i for i, _ in as_path.values()]
        return list(self.session.paths_under(path).values())

    def _ingest(self, paths: list[tuple[Path, str]], existing: dict, report: IngestReport,
                max_bytes: int, chunking: ChunkingConfig, show_progress: bool) -> list[int]:
        """Read each file once: one with its stored hash unchanged is counted and left alone,
        the others are embedded and stored in batches.

        An unchanged file whose size or mtime moved (``touch``) gets them updated, without
        re-embedding. Returns the ids of stored files whose content is now unusable (emptied,
        binary, ...): their entries are stale. A file that could not be read keeps its entry.
        """
        stale: list[int] = []
        stamps: list[tuple[str, int, float]] = []
        bar = tqdm(total=len(paths), unit="doc", disable=not show_progress or not paths,
                   desc="indexing", dynamic_ncols=True)
        batch: list[Document] = []
        step = self.executor.window or self.settings.commit_every
        with bar:
            for path, key in paths:
                state = existing.get(key)
                doc = read_document(path, max_bytes, state[1] if state is not None else None,
                                    self.settings.max_pages)
                if isinstance(doc, Unchanged):
                    report.unchanged += 1
                    stamps.append((key, doc.size, doc.mtime))
                elif isinstance(doc, Skipped):
                    report.skip(doc)
                    if doc.unusable_content and state is not None:
                        stale.append(state[0])
                else:
                    batch.append(doc)
                    if len(batch) >= step:
                        self._embed_and_store(batch, existing, report, chunking, bar=bar)
                        batch = []
                    continue
                bar.update(1)
            if batch:
                self._embed_and_store(batch, existing, report, chunking, bar=bar)
        self.session.restamp(stamps)
        return stale

    def _embed_and_store(self, docs: list[Document], existing: dict, report: IngestReport,
                         chunking: ChunkingConfig, show_progress: bool = False,
                         bar: tqdm | None = None) -> None:
        """Embed ``docs`` (through the executor) and store them, one commit per group of
        ``ingest.commit_every``; a document without a single token is skipped, and its stored
        entry, if any, goes in the same commit."""
        if not docs:
            return
        started = time.perf_counter()
        fed = 0

        def progress(n: int) -> None:
            nonlocal fed
            fed += n
            if bar is not None:
                elapsed = time.perf_counter() - started
                bar.set_postfix_str(f"{fed / max(elapsed, 1e-9):,.0f} tok/s fed", refresh=True)

        for group in self.executor.run(docs, chunking, self.settings.commit_every, progress):
            embedded = [item for _, item in group if item is not None]
            empty = [doc for doc, item in group if item is None]
            for doc in empty:
                report.skip(Skipped(doc.path or doc.key, "no tokens", unusable_content=True))
            # What was indexed from a document's earlier content must not stay searchable.
            stale = [existing[d.key][0] for d in empty if d.key in existing]
            old_ids = [existing[d.key][0] for d, item in group if item is not None and d.key in existing]
            if embedded or stale:
                self.session.replace(old_ids + stale, embedded)
            report.removed += len(stale)
            report.tokens += sum(e.n_tokens for e in embedded)
            for doc, item in group:
                if item is None:
                    continue
                if doc.key in existing:
                    report.updated += 1
                else:
                    report.added += 1
            if bar is not None:
                bar.update(len(group))
        report.seconds += time.perf_counter() - started

    def _remove_ids(self, doc_ids: list[int]) -> None:
        self.session.delete(doc_ids)


def _absolute(key: str) -> str | None:
    """``key`` read as a path and made absolute the way file keys are stored (``..`` resolved
    by name, as :func:`os.path.abspath` does); None if it cannot be one."""
    try:
        return os.path.abspath(key) if key and "\x00" not in key else None
    except (OSError, ValueError):
        return None


def _gone(path: str, seen: set[str]) -> bool:
    """Whether the stored file ``path``, not among the files just walked (``seen``), is gone.

    Only a file that no longer exists is: one the walk passed over (hidden, of a type not
    indexed now, in a folder that could not be listed) still has its content and keeps its
    entry. A path stored with ``..`` in it (as searchkit did before keys were normalised) is
    gone once the file it names has been walked under its plain name, or is deleted.
    """
    if path in seen:
        return False
    plain = os.path.abspath(path)
    return plain in seen or _deleted(plain)


def _deleted(path: str) -> bool:
    """Whether the stored file ``path`` no longer exists (or is a folder now).

    Only a definite answer counts: a path that cannot be looked at (its folder is not
    searchable, say) may well still exist, and its entry is kept.
    """
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except (OSError, ValueError):
        return False
