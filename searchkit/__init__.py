"""searchkit: semantic search for long documents.

Whole-document embeddings from a long-context model, late-chunked passage vectors, and a
storage backend (local: FAISS for k-NN search, SQLite as the source of truth). Start with
:class:`SearchIndex`; talk to a running ``searchkit serve`` with :class:`Client`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (ConfigError, CorruptIndexError, FilterError, IndexLockedError,
                     IndexStoreError, InputError, ModelError, ModelMismatchError,
                     ModelNotFoundError, NotAnIndexError, ReadOnlyIndexError, SchemaVersionError,
                     SearchkitError, UnsupportedModelError)

if TYPE_CHECKING:
    from .api import SearchIndex
    from .client import Client
    from .config import Config, load_config
    from .filters import Filters
    from .hits import Hit, Passage
    from .ingest.documents import Skipped
    from .ingest.pipeline import IngestReport
    from .records import Chunk, Document

# Imported on first use: `searchkit query --server` and the Client never load storage
# (sqlite-utils pulls in pandas: 0.4 s) or the model.
_LAZY = {
    "SearchIndex": ".api", "Client": ".client", "Config": ".config", "load_config": ".config",
    "Skipped": ".ingest.documents", "Filters": ".filters", "IngestReport": ".ingest.pipeline",
    "Hit": ".hits", "Passage": ".hits", "Chunk": ".records", "Document": ".records",
}

__all__ = [
    "SearchIndex", "Client", "IngestReport", "Config", "load_config", "Document", "Skipped", "Chunk",
    "Hit", "Passage", "Filters", "SearchkitError", "ConfigError", "InputError", "FilterError",
    "ModelError", "ModelNotFoundError", "ModelMismatchError", "UnsupportedModelError",
    "NotAnIndexError", "CorruptIndexError", "SchemaVersionError", "IndexLockedError",
    "IndexStoreError", "ReadOnlyIndexError",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'searchkit' has no attribute {name!r}")
