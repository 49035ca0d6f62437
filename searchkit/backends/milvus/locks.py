"""The one-writer rule on Milvus: a file lock beside a milvus-lite file, a lease on a server.

A milvus-lite database is a local file: an advisory ``flock`` on ``<file>.lock`` works as for
the local backend (the kernel drops it when the writer dies).

A server offers no lock and no compare-and-set, so the writer keeps a lease in the settings
collection: a ``lock`` row naming its owner and an expiry, renewed by a background thread
every third of its lifetime. A writer that finds a live lease of another owner waits or
fails; an expired lease (its writer died) is taken over. Caveat: two writers starting within
the same instant can both read "free" before either lease is visible; the second read after
writing (:meth:`Lease.acquire`) narrows that window to the server's write latency but cannot
close it. Run one ``searchkit index`` per index at a time, as the scheduler's job.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

from ...errors import IndexLockedError
from ..filelock import FileLock as BaseFileLock

LEASE_SECONDS = 60.0


class FileLock(BaseFileLock):
    """Exclusive ``flock`` on ``<file>.lock`` beside a milvus-lite database file."""

    def __init__(self, path: Path, wait: float | None):
        super().__init__(path, wait, subject=Path(path).with_suffix(""))


class Lease:
    """A writer lease kept through ``read()`` / ``write(value)`` of the settings ``lock`` row."""

    def __init__(self, read: Callable[[], dict | None], write: Callable[[dict | None], None],
                 where: str, wait: float | None, seconds: float = LEASE_SECONDS):
        self.read, self.write, self.where = read, write, where
        self.wait, self.seconds = wait, seconds
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _mine(self) -> dict:
        return {"owner": self.owner, "expires": time.time() + self.seconds}

    def __enter__(self) -> "Lease":
        deadline = None if self.wait is None else time.monotonic() + self.wait
        while True:
            current = self.read()
            if not current or current.get("expires", 0) < time.time() or current.get("owner") == self.owner:
                self.write(self._mine())
                time.sleep(0.2)   # let a writer that raced us land, then see who won
                current = self.read()
                if current and current.get("owner") == self.owner:
                    break
            if deadline is None or time.monotonic() >= deadline:
                who = (current or {}).get("owner", "another writer")
                raise IndexLockedError(f"{self.where} is being written by {who} (lease until "
                                       f"{time.ctime((current or {}).get('expires', 0))}); wait for "
                                       "it to finish or pass --wait")
            time.sleep(0.5)
        self._thread = threading.Thread(target=self._renew, daemon=True)
        self._thread.start()
        return self

    def _renew(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                self.write(self._mine())
            except Exception:   # a renewal that fails is retried; expiry is the fallback
                pass

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        current = self.read()
        if current and current.get("owner") == self.owner:
            self.write(None)
