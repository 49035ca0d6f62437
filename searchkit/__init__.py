"""searchkit: semantic search for long documents.

Whole-document embeddings from a long-context model, late-chunked passage vectors, and a
storage backend (local: FAISS for k-NN search, SQLite as the source of truth). Start with
:class:`SearchIndex`.
"""

from .api import SearchIndex
from .config import Config, load_config
from .ingest.documents import Skipped
from .errors import (ConfigError, CorruptIndexError, FilterError, IndexLockedError, InputError,
                     ModelError, ModelMismatchError, ModelNotFoundError, NotAnIndexError,
                     SchemaVersionError, SearchkitError, UnsupportedModelError)
from .filters import Filters
from .ingest.pipeline import IngestReport
from .hits import Hit, Passage
from .records import Chunk, Document

__all__ = [
    "SearchIndex", "IngestReport", "Config", "load_config", "Document", "Skipped", "Chunk", "Hit",
    "Passage", "Filters", "SearchkitError", "ConfigError", "InputError", "FilterError", "ModelError",
    "ModelNotFoundError", "ModelMismatchError", "UnsupportedModelError", "NotAnIndexError", "CorruptIndexError",
    "SchemaVersionError", "IndexLockedError",
]
