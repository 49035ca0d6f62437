"""Searchkit as a retriever in other frameworks: :mod:`.langchain` and :mod:`.llama_index`.

Each module imports its framework when it is imported (install the matching extra:
``pip install "searchkit[langchain]"`` or ``"searchkit[llamaindex]"``); searchkit itself never
imports them. Both wrap anything with :meth:`searchkit.SearchIndex.search`'s signature: an
open :class:`searchkit.SearchIndex`, or a client of a searchkit server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol

from ..filters import Filters
from ..hits import Hit


class Searchable(Protocol):
    """What a retriever needs: ``SearchIndex.search``'s signature, returning hits."""

    def search(self, query: str, k: int | None = None, rerank: str | None = None,
               chunks: bool = False, distinct: bool = False, mode: str | None = None,
               filters: Filters | Mapping[str, Any] | None = None,
               fusion: str | None = None) -> list[Hit]: ...


@dataclass(frozen=True)
class Retrieved:
    """One hit as a framework document: the text to hand a model, and what to cite it by."""

    text: str
    metadata: dict[str, Any]
    score: float
    id: str


def retrieved(hit: Hit) -> Retrieved:
    """The hit's best passage (its snippet when the index keeps no chunks) and metadata.

    The document's own metadata comes first, so searchkit's fields (``path``, ``title``,
    ``key``, ``score``, ``page``, ``doc_id``, ``char_start``, ``char_end``) win a clash.
    """
    passage = hit.passage
    metadata = {**hit.metadata, "path": hit.path, "title": hit.title, "key": hit.key,
                "score": float(hit.score), "page": passage.page if passage else None,
                "doc_id": hit.doc_id,
                "char_start": passage.char_start if passage else None,
                "char_end": passage.char_end if passage else None}
    text = passage.text if passage is not None else hit.snippet
    # A passage id names the chunk, so two passages of one document stay two nodes.
    chunk = passage.chunk_id if passage is not None and passage.chunk_id is not None else "doc"
    return Retrieved(text, metadata, float(hit.score), f"{hit.doc_id}:{chunk}")


def search_options(k: int | None, mode: str | None, rerank: str | None,
                   filters: Filters | Mapping[str, Any] | None, chunks: bool) -> dict[str, Any]:
    """Keyword arguments for ``search()``: only what was set, so the index's defaults apply."""
    options: dict[str, Any] = {"k": k, "mode": mode, "rerank": rerank, "filters": filters}
    options = {name: value for name, value in options.items() if value is not None}
    if chunks:
        options.update(chunks=True, distinct=False)
    return options
