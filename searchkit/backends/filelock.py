"""One writer at a time through an advisory ``flock`` on a lock file (the local backend's
``write.lock``, a milvus-lite database's ``<file>.lock``).

The kernel releases a flock when its process dies, so a lock left by a killed writer is
never stale: the next writer simply gets it. The holder's pid is written into the file so a
refused writer can name it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

from ..errors import IndexLockedError, IndexStoreError, ReadOnlyIndexError


class FileLock:
    """Exclusive lock on ``path`` guarding ``subject`` (named in errors); a context manager."""

    def __init__(self, path: Path, wait: float | None = None, subject: Path | str | None = None):
        self.path = Path(path)
        self.wait = wait
        self.subject = subject if subject is not None else self.path.parent
        self._fd: int | None = None

    def acquire(self) -> "FileLock":
        """Take the lock, waiting up to ``wait`` seconds (``None``: fail at once).

        Raises:
            IndexLockedError: another live process holds it.
            ReadOnlyIndexError: the lock file cannot be made (read-only media, no permission).
        """
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise ReadOnlyIndexError(
                    f"{self.subject} cannot be written ({exc.strerror}: {self.path.name}); "
                    "an index there can be searched, not changed") from None
            raise IndexStoreError(f"{self.subject}: cannot make {self.path.name} "
                                  f"({exc.strerror or exc})") from None
        deadline = None if self.wait is None else time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is None or time.monotonic() >= deadline:
                    holder = self.holder()
                    os.close(fd)
                    who = f"process {holder}" if holder else "another process"
                    raise IndexLockedError(
                        f"{self.subject} is being written by {who}; wait for it to finish "
                        "or pass --wait", holder=holder) from None
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def holder(self) -> int | None:
        try:
            text = self.path.read_text().strip()
            return int(text) if text else None
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "FileLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
