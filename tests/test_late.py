"""Late reranking, best-passage ranking and first-window indexes, on the real offline model."""

import numpy as np
import pytest

from searchkit import SearchIndex
from searchkit.embedding.chunking import fixed_spans
from searchkit.config import with_settings

FILLER = (
    "The aqueducts of ancient Rome carried water from distant springs into the city. Engineers "
    "built long arcades of stone so that the channel kept a gentle, steady slope. Public "
    "fountains, baths and private houses drew on this supply, and the emperors boasted of the "
    "abundance of water. Surveyors used simple instruments, yet their gradients were accurate "
    "over many miles. Some of these structures still stand in France and Spain today. ")
NEEDLE = ("To replace a worn bicycle chain, shift onto the smallest sprocket, open the master link "
          "with chain pliers, thread the new chain over the derailleur pulleys and close the link. ")
LONG = FILLER * 4 + NEEDLE + FILLER * 4
SHORT = "Cycling is popular in the Netherlands, where many people ride to work on flat roads."
QUERY = "replace a worn bicycle chain using chain pliers and the master link"


@pytest.fixture
def chunked(config):
    return with_settings(config, {"chunking.size": 64})


def test_late_rerank_lifts_a_long_document_whose_one_passage_matches(chunked):
    with SearchIndex.open(config=chunked, create=True) as ix:
        ix.add_records([("long", LONG), ("short", SHORT)])
        plain = ix.search(QUERY, k=2, rerank="none", mode="dense")
        late = ix.search(QUERY, k=2, rerank="late", mode="dense")
    # The document vector is drowned by the aqueduct text; the best chunk is not.
    assert [h.key for h in plain] == ["short", "long"]
    assert [h.key for h in late] == ["long", "short"]
    top = late[0]
    assert "master link" in top.passage.text
    assert LONG[top.passage.char_start:top.passage.char_end] == top.passage.text
    w = chunked.search.chunk_weight
    assert top.score == pytest.approx((1 - w) * top.scores["dense"] + w * top.scores["chunk"], abs=1e-5)


def test_distinct_chunks_rank_documents_by_their_best_passage(chunked):
    with SearchIndex.open(config=chunked, create=True) as ix:
        ix.add_records([("long", LONG), ("short", SHORT)])
        passages = ix.search(QUERY, k=5, chunks=True, mode="dense")
        distinct = ix.search(QUERY, k=5, chunks=True, distinct=True, mode="dense")
        fused = ix.search(QUERY, k=5, chunks=True, distinct=True, mode="hybrid")
    assert len({h.key for h in passages}) < len(passages)         # several from "long"
    assert sorted(h.key for h in fused) == ["long", "short"]      # hybrid too: one per document
    assert [h.key for h in distinct] == ["long", "short"]
    assert distinct[0].passage.chunk_id == passages[0].passage.chunk_id


def test_max_windows_embeds_only_the_start_of_a_document(chunked, embedder):
    cfg = with_settings(chunked, {"model.max_windows": 1})
    with SearchIndex.open(config=cfg, create=True) as ix:
        ix.add_records([("long", LONG)])
        info = ix.model_info
        row = ix.backend.store.documents([1])[1]
        _, chunk_vectors = ix.backend.store.chunks_of([1], info.dimension)
        vector = ix.backend.store.document_vectors([1], info.dimension)[1]
        assert ix.stats()["model"]["max_windows"] == 1
    capacity = info.window_tokens - 2
    assert row.n_tokens == capacity < len(embedder.tokenize(LONG))
    assert len(chunk_vectors) == len(fixed_spans(capacity, 64))     # chunks cover the start only
    first = embedder.tokenize(LONG).ids[:capacity]
    np.testing.assert_allclose(vector, embedder.embed_pieces([first])[0], atol=1e-5)


def test_search_many_equals_one_search_per_query(chunked):
    with SearchIndex.open(config=chunked, create=True) as ix:
        ix.add_records([("long", LONG), ("short", SHORT)])
        queries = [QUERY, "Roman water supply", QUERY]
        many = ix.search_many(queries, k=2, chunks=True, distinct=True, mode="dense")
        for query, hits in zip(queries, many):
            one = ix.search(query, k=2, chunks=True, distinct=True, mode="dense")
            assert [h.key for h in hits] == [h.key for h in one]
            assert [h.score for h in hits] == pytest.approx([h.score for h in one], abs=1e-5)
