"""The LangChain and LlamaIndex retrievers, against the real frameworks and the offline model."""

from __future__ import annotations

import importlib
import sys

import pytest

from doc_fixtures import pdf_bytes
from searchkit import SearchIndex

PDF_PAGES = [
    "Lighthouse log\nThe keeper lit the lamp at dusk and wound the clockwork every four hours. "
    "Ships passing the headland signalled with flags, and the keeper wrote each name in the log "
    "with the hour, the wind and the state of the sea.",
    "Storm season\nIn November a gale tore slates from the roof and salt spray reached the "
    "lantern room. The keeper trimmed the wick through the night so the light never failed, "
    "and the relief boat could not land for eleven days.",
]


@pytest.fixture
def index(config, corpus):
    (corpus / "lighthouse.pdf").write_bytes(pdf_bytes(PDF_PAGES, {"Title": "Keeper's notes",
                                                                   "Author": "J. Keeper"}))
    with SearchIndex.open(config=config, create=True) as ix:
        ix.add_paths([corpus])
        yield ix


class Recorder:
    """Any object with ``search()`` will do (a server client, say): this one notes the options."""

    def __init__(self, index):
        self.index, self.calls = index, []

    def search(self, query, **options):
        self.calls.append(options)
        return self.index.search(query, **options)


def test_langchain_retriever_returns_passages_with_citations(index):
    from langchain_core.documents import Document

    from searchkit.integrations.langchain import SearchkitRetriever

    docs = SearchkitRetriever(index=index, k=2).invoke("volcanic eruption and lava")
    assert len(docs) == 2 and all(isinstance(d, Document) for d in docs)
    top = docs[0]
    assert top.metadata["path"].endswith("volcano.txt") and top.metadata["title"] == "volcano"
    assert "Vesuvius" in top.page_content or "eruption" in top.page_content
    assert top.metadata["score"] >= docs[1].metadata["score"]
    assert top.metadata["page"] is None and isinstance(top.metadata["doc_id"], int)

    storm = SearchkitRetriever(index=index, k=1).invoke("gale at the lighthouse, spray on the lantern")
    meta = storm[0].metadata
    assert meta["title"] == "Keeper's notes" and meta["page"] == 2 and meta["author"] == "J. Keeper"
    assert "gale" in storm[0].page_content


def test_langchain_fields_become_search_options(index):
    from searchkit.integrations.langchain import SearchkitRetriever

    recorder = Recorder(index)
    retriever = SearchkitRetriever(index=recorder, k=3, mode="keyword",
                                   filters={"type": "md"}, rerank="none")
    docs = retriever.invoke("sourdough starter")
    assert recorder.calls == [{"k": 3, "mode": "keyword", "rerank": "none", "filters": {"type": "md"}}]
    assert [d.metadata["title"] for d in docs] == ["Baking sourdough bread"]
    assert docs[0].metadata["cuisine"] == "french"          # the document's own metadata too
    SearchkitRetriever(index=recorder).invoke("bread")
    assert recorder.calls[-1] == {}                          # unset fields: the index's defaults


def test_langchain_chain_without_an_llm(index):
    from langchain_core.runnables import RunnableLambda

    from searchkit.integrations.langchain import SearchkitRetriever

    def format_docs(docs):
        return "\n\n".join(f"[{d.metadata['title']}" + (f", p. {d.metadata['page']}" if d.metadata["page"] else "")
                           + f"] {d.page_content}" for d in docs)

    chain = (SearchkitRetriever(index=index, k=2, chunks=True) | RunnableLambda(format_docs)
             | RunnableLambda(lambda context: f"Answer from the context.\n{context}"))
    prompt = chain.invoke("how often was the clockwork wound?")
    assert prompt.startswith("Answer from the context.\n[Keeper's notes, p. 1] ")
    assert "wound the clockwork" in prompt
    # batch() and ainvoke() run the retriever on worker threads: the index serves them.
    assert [p.count("[Keeper's notes") for p in chain.batch(["gale on the roof", "keeper's log"])] == [2, 2]
    import asyncio
    docs = asyncio.run(SearchkitRetriever(index=index, k=1).ainvoke("relief boat"))
    assert docs[0].metadata["page"] == 2


def test_llama_index_retriever_returns_scored_nodes(index):
    from llama_index.core.schema import NodeWithScore

    from searchkit.integrations.llama_index import SearchkitRetriever

    nodes = SearchkitRetriever(index, k=3).retrieve("satellite orbit and rocket burns")
    assert len(nodes) == 3 and all(isinstance(n, NodeWithScore) for n in nodes)
    assert nodes[0].node.metadata["path"].endswith("orbit.rst")
    assert nodes[0].score == pytest.approx(index.search("satellite orbit and rocket burns", k=1)[0].score)
    assert "Hohmann" in nodes[0].node.get_content() or "orbit" in nodes[0].node.get_content()
    recorder = Recorder(index)
    SearchkitRetriever(recorder, k=2, mode="dense", filters={"type": "pdf"}).retrieve("storm")
    assert recorder.calls == [{"k": 2, "mode": "dense", "filters": {"type": "pdf"}}]


def test_llama_index_query_engine_without_an_llm(index):
    from llama_index.core.llms import MockLLM
    from llama_index.core.query_engine import RetrieverQueryEngine
    from llama_index.core.response_synthesizers.no_text import NoText
    from llama_index.core.schema import MetadataMode

    from searchkit.integrations.llama_index import SearchkitRetriever

    # NoText returns the retrieved nodes without calling a model (handed a MockLLM so
    # LlamaIndex does not go looking for OpenAI).
    engine = RetrieverQueryEngine(retriever=SearchkitRetriever(index, k=2, chunks=True),
                                  response_synthesizer=NoText(llm=MockLLM()))
    response = engine.query("the relief boat could not land")
    top = response.source_nodes[0]
    assert top.node.metadata["title"] == "Keeper's notes" and top.node.metadata["page"] == 2
    assert len({n.node.node_id for n in response.source_nodes}) == 2
    for_llm = top.node.get_content(metadata_mode=MetadataMode.LLM)
    assert "page: 2" in for_llm and "char_start" not in for_llm and "relief boat" in for_llm


@pytest.mark.parametrize("module, framework, extra", [
    ("searchkit.integrations.langchain", "langchain_core.retrievers", "searchkit[langchain]"),
    ("searchkit.integrations.llama_index", "llama_index.core.retrievers", "searchkit[llamaindex]"),
])
def test_a_missing_framework_names_the_extra_to_install(module, framework, extra, monkeypatch):
    monkeypatch.setitem(sys.modules, framework, None)   # None in sys.modules: import fails
    monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(ImportError, match=extra.replace("[", r"\[").replace("]", r"\]")):
        importlib.import_module(module)
