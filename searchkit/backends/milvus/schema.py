"""The Milvus collections of one index, their fields and vector index parameters.

Four collections share a prefix (``searchkit_`` by default):

- ``settings``: one row per name: ``manifest`` (model, chunking, dimension, schema version),
  ``journal`` (the id counter and the ids of the write in flight) and ``lock`` (the writer's
  lease on a server).
- ``documents``: one row per document with its whole-document vector. The row is written after
  the document's chunks and text, so it is the document's commit mark.
- ``chunks``: one row per chunk: document id, spans, chunk text (for BM25) and vector.
- ``texts``: each document's text in parts of at most :data:`TEXT_PART_BYTES` (a VARCHAR holds
  65,535 bytes), so passages are cut from the exact text whatever the chunk spans cover.

Every collection needs a vector field in Milvus 2.3: ``settings`` (and ``texts`` on a server
without full-text search) carry a two-dimensional placeholder. Rows that filters read
(``documents``, ``chunks``, ``texts``) carry the filter fields of :mod:`.expressions`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pymilvus import DataType, Function, FunctionType, MilvusClient

from ...errors import ConfigError

SCHEMA_VERSION = 1
VARCHAR_BYTES = 65_535
TEXT_PART_BYTES = 60_000          # leaves room for the title in part 0's BM25 text
TITLE_BM25_BYTES = 4_000
PLACEHOLDER_DIM = 2
INDEX_TYPES = ("HNSW", "IVF_FLAT", "AUTOINDEX", "FLAT")
COLLECTIONS = ("settings", "documents", "chunks", "texts")
PREFIX = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,200}$")

# Fields read back from each collection (everything but the BM25 function's output).
FILTER_FIELDS = ["path", "kind", "mtime", "has_mtime", "facets"]
DOCUMENT_FIELDS = ["id", "key", "title", "content_hash", "size", "n_tokens", "metadata",
                   "n_parts", "indexed_at", *FILTER_FIELDS]
CHUNK_FIELDS = ["id", "doc_id", "ordinal", "tok_start", "tok_end", "char_start", "char_end",
                *FILTER_FIELDS]
TEXT_FIELDS = ["id", "doc_id", "part", "text", *FILTER_FIELDS]


def derived_prefix(folder: Any) -> str:
    """``searchkit_<folder name>_`` for an empty ``milvus.collection_prefix``: on a server,
    ``--index NAME`` picks the index as it does a folder for the local backend."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", Path(str(folder or "")).name).strip("_")
    return f"searchkit_{name}_" if name else "searchkit_"


def check_prefix(prefix: str) -> str:
    if not PREFIX.match(prefix):
        raise ConfigError(f"milvus.collection_prefix {prefix!r}: use letters, digits and _ "
                          "(not starting with a digit)")
    return prefix


def utf8_cut(text: str, limit: int) -> str:
    """The longest start of ``text`` that is at most ``limit`` bytes in UTF-8."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", errors="ignore")


def text_parts(text: str, limit: int = TEXT_PART_BYTES) -> list[str]:
    """``text`` in consecutive parts of at most ``limit`` UTF-8 bytes each, joined they give
    ``text`` back. A part ends after a space when one is near the limit, so BM25 over the
    parts sees whole words."""
    parts, data, start = [], text.encode("utf-8"), 0
    while start < len(data):
        end = min(start + limit, len(data))
        if end < len(data):
            space = data.rfind(b" ", max(start + 1, end - 1000), end)
            if space > start:
                end = space + 1
        while end < len(data) and (data[end] & 0xC0) == 0x80:   # inside a character
            end -= 1
        parts.append(data[start:end].decode("utf-8"))
        start = end
    return parts or [""]


# Runs of this many characters without whitespace carry no searchable word (the model's
# tokenizer makes them one unknown token too): they are left out of the BM25 text, so a
# chunk's words fit Milvus's 65,535-byte VARCHAR however long such a run is.
LONG_RUN = re.compile(r"\S{200,}")


def bm25_text(text: str) -> str:
    """What BM25 indexes of a chunk or text part: ``text`` without runs of 200+ non-space
    characters, cut to the VARCHAR limit as a last resort."""
    return utf8_cut(LONG_RUN.sub(" ", text), VARCHAR_BYTES)


def _filter_fields(schema) -> None:
    schema.add_field("path", DataType.VARCHAR, max_length=VARCHAR_BYTES)
    schema.add_field("kind", DataType.VARCHAR, max_length=64)
    schema.add_field("mtime", DataType.DOUBLE)
    schema.add_field("has_mtime", DataType.BOOL)
    schema.add_field("facets", DataType.JSON)


def settings_schema(client: MilvusClient):
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("name", DataType.VARCHAR, is_primary=True, max_length=256)
    schema.add_field("value", DataType.JSON)
    schema.add_field("placeholder", DataType.FLOAT_VECTOR, dim=PLACEHOLDER_DIM)
    return schema


def documents_schema(client: MilvusClient, dim: int):
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("key", DataType.VARCHAR, max_length=VARCHAR_BYTES)
    schema.add_field("title", DataType.VARCHAR, max_length=VARCHAR_BYTES)
    schema.add_field("content_hash", DataType.VARCHAR, max_length=256)
    schema.add_field("size", DataType.INT64)
    schema.add_field("n_tokens", DataType.INT64)
    schema.add_field("metadata", DataType.JSON)
    schema.add_field("n_parts", DataType.INT64)
    schema.add_field("indexed_at", DataType.VARCHAR, max_length=64)
    _filter_fields(schema)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    return schema


def chunks_schema(client: MilvusClient, dim: int, full_text: bool):
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("doc_id", DataType.INT64)
    for name in ("ordinal", "tok_start", "tok_end", "char_start", "char_end"):
        schema.add_field(name, DataType.INT64)
    _filter_fields(schema)
    _bm25_text(schema, "text", full_text)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    return schema


def texts_schema(client: MilvusClient, full_text: bool):
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("doc_id", DataType.INT64)
    schema.add_field("part", DataType.INT64)
    schema.add_field("text", DataType.VARCHAR, max_length=VARCHAR_BYTES)
    _filter_fields(schema)
    # Part 0 also carries the title, as the local backend's documents_fts indexes title + text.
    _bm25_text(schema, "search_text", full_text)
    if not full_text:
        schema.add_field("placeholder", DataType.FLOAT_VECTOR, dim=PLACEHOLDER_DIM)
    return schema


def _bm25_text(schema, field: str, full_text: bool) -> None:
    schema.add_field(field, DataType.VARCHAR, max_length=VARCHAR_BYTES,
                     **({"enable_analyzer": True} if full_text else {}))
    if full_text:
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(Function(name=f"{field}_bm25", function_type=FunctionType.BM25,
                                     input_field_names=[field], output_field_names=["sparse"]))


def vector_index(client: MilvusClient, index_type: str, params: dict[str, Any]):
    """Index parameters of a dense ``vector`` field (inner product: vectors are normalised)."""
    index = client.prepare_index_params()
    index.add_index("vector", index_type=index_type, metric_type="IP", params=build_params(index_type, params))
    return index


def build_params(index_type: str, params: dict[str, Any]) -> dict[str, Any]:
    if index_type == "HNSW":
        return {"M": int(params["hnsw_m"]), "efConstruction": int(params["hnsw_ef_construction"])}
    if index_type == "IVF_FLAT":
        return {"nlist": int(params["nlist"])}
    return {}


def search_params(index_type: str, params: dict[str, Any], k: int) -> dict[str, Any]:
    if index_type == "HNSW":
        return {"metric_type": "IP", "params": {"ef": max(int(params["ef_search"]), k)}}
    if index_type == "IVF_FLAT":
        return {"metric_type": "IP", "params": {"nprobe": int(params["nprobe"])}}
    return {"metric_type": "IP", "params": {}}


def placeholder_index(client: MilvusClient):
    index = client.prepare_index_params()
    index.add_index("placeholder", index_type="FLAT", metric_type="L2")
    return index


def sparse_index(client: MilvusClient, index):
    index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    return index
