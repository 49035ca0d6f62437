"""A LlamaIndex retriever over a searchkit index (``pip install "searchkit[llamaindex]"``).

    from searchkit import SearchIndex
    from searchkit.integrations.llama_index import SearchkitRetriever

    retriever = SearchkitRetriever(SearchIndex.open(".searchkit"), k=4)
    nodes = retriever.retrieve("what did Lincoln say about the Union?")
"""

from __future__ import annotations

from typing import Any, Mapping

try:
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("searchkit.integrations.llama_index needs llama-index-core: "
                      'pip install "searchkit[llamaindex]"') from exc

from ..filters import Filters
from . import Searchable, retrieved, search_options

# Metadata a model has no use for: LlamaIndex leaves it out of the text it sends to an LLM
# (title, path, page and the document's own fields stay in, to cite).
BOOKKEEPING = ("key", "score", "doc_id", "char_start", "char_end")


class SearchkitRetriever(BaseRetriever):
    """Nodes for a query from a searchkit index, best first, each scored as searchkit ranked it.

    Each ``TextNode`` holds the hit's best passage as text and ``path``, ``title``, ``key``,
    ``score``, ``page`` (PDFs), ``doc_id``, ``char_start``, ``char_end`` and the document's
    own metadata in ``metadata``.

    Args:
        index: an open :class:`searchkit.SearchIndex`, or anything with its ``search()``
            (a client of a searchkit server).
        k: nodes per query (None: the index's ``search.k``).
        mode: ``dense``, ``keyword`` or ``hybrid`` (None: ``search.mode``).
        filters: a :class:`searchkit.Filters` or a mapping of its ``build`` arguments.
        rerank: ``late`` or ``none`` (None: ``search.rerank``).
        chunks: passages from the chunk index (several may come from one document).
        **kwargs: LlamaIndex's own retriever arguments (``callback_manager``, ``verbose``).
    """

    def __init__(self, index: Searchable, k: int | None = None, mode: str | None = None,
                 filters: Filters | Mapping[str, Any] | None = None, rerank: str | None = None,
                 chunks: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.index = index
        self.k, self.mode, self.filters, self.rerank, self.chunks = k, mode, filters, rerank, chunks

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = self.index.search(query_bundle.query_str,
                                 **search_options(self.k, self.mode, self.rerank, self.filters,
                                                  self.chunks))
        found = [retrieved(hit) for hit in hits]
        return [NodeWithScore(node=TextNode(id_=r.id, text=r.text, metadata=r.metadata,
                                            excluded_llm_metadata_keys=list(BOOKKEEPING),
                                            excluded_embed_metadata_keys=list(BOOKKEEPING)),
                              score=r.score) for r in found]
