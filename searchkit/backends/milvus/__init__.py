"""Milvus storage backend."""

from .backend import MilvusBackend

__all__ = ["MilvusBackend"]
