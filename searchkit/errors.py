"""Exception types. Every error a user can cause has its own type and a message that says
what to do; the CLI prints the message on one line and exits non-zero."""

from __future__ import annotations


class SearchkitError(Exception):
    """Base class of every error searchkit raises on purpose."""


class ConfigError(SearchkitError):
    """A setting has a value searchkit cannot use; the message names the setting."""


class ModelError(SearchkitError):
    """The embedding model could not be found, loaded or used."""


class ModelNotFoundError(ModelError):
    """The configured model is neither a local folder, nor cached, nor downloadable."""


class UnsupportedModelError(ModelError):
    """The checkpoint is of an architecture searchkit refuses to run (it would give wrong vectors)."""


class ModelMismatchError(ModelError):
    """The index was built with another model than the one asked for."""


class IndexStoreError(SearchkitError):
    """The index folder cannot be used."""


class NotAnIndexError(IndexStoreError):
    """The folder or database is not a searchkit index."""


class SchemaVersionError(IndexStoreError):
    """The index was written by a newer searchkit."""


class CorruptIndexError(IndexStoreError):
    """The index database is damaged."""


class ReadOnlyIndexError(IndexStoreError):
    """The index folder cannot be written (read-only media, no permission): it can be searched,
    not changed."""


class IndexLockedError(IndexStoreError):
    """Another process is writing to the index; ``holder`` is its pid when known."""

    def __init__(self, message: str, holder: int | None = None):
        super().__init__(message)
        self.holder = holder


class InputError(SearchkitError):
    """A path or document given by the user cannot be read."""


class DatasetError(SearchkitError):
    """An evaluation dataset is missing a file or has a malformed line."""


class FilterError(InputError):
    """A search filter is malformed; the message names the filter."""


class BackendError(IndexStoreError):
    """The storage backend cannot be reached, or cannot do what was asked (the message says
    which server and what it lacks)."""
