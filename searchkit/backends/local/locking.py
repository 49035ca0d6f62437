"""One writer per index folder: a :class:`~searchkit.backends.filelock.FileLock` on
``write.lock`` in the folder."""

from __future__ import annotations

from pathlib import Path

from ..filelock import FileLock

LOCK_NAME = "write.lock"


class WriteLock(FileLock):
    """Exclusive writer lock on an index folder; use as a context manager."""

    def __init__(self, folder: Path, wait: float | None = None):
        super().__init__(Path(folder) / LOCK_NAME, wait)
