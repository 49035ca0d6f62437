"""Pick a storage backend by name (``config.backend``), as txtai resolves its ANN backends."""

from __future__ import annotations

import os
from typing import Callable

from ..config import BACKENDS, Config
from ..errors import ConfigError
from .base import Backend
from .local.backend import LocalBackend

Opener = Callable[[str, Config, bool, "float | None"], Backend]

# Name → how to open an index there. Every name here is listed in config.BACKENDS.
OPENERS: dict[str, Opener] = {
    "local": lambda location, config, create, wait: LocalBackend(location, config, create, wait),
    "milvus": lambda location, config, create, wait: _milvus(location, config, create, wait),
}


def _milvus(location: str, config: Config, create: bool, wait: float | None) -> Backend:
    # pymilvus is an optional dependency: import it only when an index asks for Milvus.
    try:
        from .milvus import MilvusBackend
    except ImportError as exc:
        raise ConfigError(f"backend milvus needs the Milvus client ({exc.name} is missing): "
                          "pip install 'searchkit[milvus]'") from None
    return MilvusBackend(config.milvus, create=create, wait=wait, folder=location)


def open_backend(name: str, location: str | os.PathLike, config: Config, create: bool = False,
                 wait: float | None = None) -> Backend:
    """Open the index at ``location`` in backend ``name`` (creating it with ``create``).

    Args:
        name: a backend name (``config.backend``): one of :data:`searchkit.config.BACKENDS`.
        location: where the index lives (the local backend: its folder).
        config: the whole configuration (each backend reads its own section).
        create: create the index if it does not exist.
        wait: seconds to wait for another process creating the same index.

    Raises:
        ConfigError: no backend has that name.
    """
    opener = OPENERS.get(name)
    if opener is None:
        raise ConfigError(f"backend {name!r} is not available; choose one of {', '.join(BACKENDS)}")
    return opener(str(location), config, create, wait)
