"""A LangChain retriever over a searchkit index (``pip install "searchkit[langchain]"``).

    from searchkit import SearchIndex
    from searchkit.integrations.langchain import SearchkitRetriever

    retriever = SearchkitRetriever(index=SearchIndex.open(".searchkit"), k=4)
    docs = retriever.invoke("what did Lincoln say about the Union?")
"""

from __future__ import annotations

from typing import Any

try:
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
    from pydantic import ConfigDict
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("searchkit.integrations.langchain needs langchain-core: "
                      'pip install "searchkit[langchain]"') from exc

from . import retrieved, search_options


class SearchkitRetriever(BaseRetriever):
    """Documents for a query from a searchkit index, best first.

    Each ``Document`` holds the hit's best passage as ``page_content`` and ``path``,
    ``title``, ``key``, ``score``, ``page`` (PDFs), ``doc_id``, ``char_start``, ``char_end``
    and the document's own metadata in ``metadata``.

    Attributes:
        index: an open :class:`searchkit.SearchIndex`, or anything with its ``search()``
            (a client of a searchkit server).
        k: documents per query (None: the index's ``search.k``).
        mode: ``dense``, ``keyword`` or ``hybrid`` (None: ``search.mode``).
        filters: a :class:`searchkit.Filters` or a mapping of its ``build`` arguments.
        rerank: ``late`` or ``none`` (None: ``search.rerank``).
        chunks: passages from the chunk index (several may come from one document).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: Any
    k: int | None = None
    mode: str | None = None
    filters: Any = None
    rerank: str | None = None
    chunks: bool = False

    def _get_relevant_documents(self, query: str, *,
                                run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        hits = self.index.search(query, **search_options(self.k, self.mode, self.rerank,
                                                          self.filters, self.chunks))
        found = [retrieved(hit) for hit in hits]
        return [Document(page_content=r.text, metadata=r.metadata, id=r.id) for r in found]
