"""Store reads and deletes that take id lists, with more ids than one ``IN (…)`` batch."""

from __future__ import annotations

import random
import sqlite3

import numpy as np
import pytest

from searchkit.ingest.documents import record_document
from searchkit.records import Chunk, EmbeddedDocument
from searchkit.backends.local.store import IN_BATCH, Store

DIM = 4
N_DOCS = 1_200


def _vector(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(DIM, dtype=np.float32)


@pytest.fixture
def store(tmp_path):
    """An index database of N_DOCS records with two chunks each, no model involved."""
    store = Store.open(tmp_path / "ix", create=True)
    # Old SQLite builds bound at most 999 variables per statement: an unbatched IN list of
    # N_DOCS ids fails here, as it would there.
    store.db.conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
    with store.transaction():
        for n in range(N_DOCS):
            text = f"alpha number{n} beta gamma"
            half = text.index(" beta")
            chunks = tuple(Chunk(ordinal=o, tok_start=o, tok_end=o + 1, char_start=a, char_end=b,
                                 vector=_vector(10_000 + 2 * n + o))
                           for o, (a, b) in enumerate([(0, half), (half, len(text))]))
            doc = record_document(f"doc-{n}", text)
            store.insert(EmbeddedDocument(doc, 4, _vector(n), chunks))
    yield store
    store.close()


def test_batches_are_smaller_than_the_id_lists_here():
    assert N_DOCS > 2 * IN_BATCH


def test_id_list_reads_span_several_batches(store):
    doc_ids = [int(i) for i in store.ids("documents")]
    chunk_ids = [int(i) for i in store.ids("chunks")]
    assert len(doc_ids) == N_DOCS and len(chunk_ids) == 2 * N_DOCS
    shuffled = doc_ids[:]
    random.Random(0).shuffle(shuffled)

    keys = [f"doc-{n}" for n in range(N_DOCS)]
    states = store.states(keys)
    assert sorted(states) == sorted(keys)
    assert {i for i, _ in states.values()} == set(doc_ids)

    rows = store.documents(shuffled)
    assert set(rows) == set(doc_ids)
    assert all(rows[i].key == f"doc-{rows[i].text.split()[1][6:]}" for i in doc_ids)

    found, vectors = store.vectors("documents", DIM, ids=shuffled)
    assert sorted(found.tolist()) == doc_ids and vectors.shape == (N_DOCS, DIM)
    by_id = store.document_vectors(shuffled, DIM)
    assert set(by_id) == set(doc_ids)
    all_ids, all_vectors = store.vectors("documents", DIM)
    for i, vector in zip(all_ids.tolist(), all_vectors):
        assert np.array_equal(by_id[i], vector)
        assert np.array_equal(vectors[found.tolist().index(i)], vector)

    found_c, vectors_c = store.vectors("chunks", DIM, ids=chunk_ids)
    assert found_c.tolist() == chunk_ids and vectors_c.shape == (2 * N_DOCS, DIM)

    chunks = store.chunks(chunk_ids)
    assert set(chunks) == set(chunk_ids)
    assert sorted(c.doc_id for c in chunks.values()) == sorted(doc_ids * 2)

    # One order over every batch, (doc_id, ordinal), whatever order the ids came in.
    rows_c, vecs_c = store.chunks_of(shuffled + shuffled[:10], DIM)
    assert [(c.doc_id, c.ordinal) for c in rows_c] == [(d, o) for d in doc_ids for o in (0, 1)]
    assert np.array_equal(vecs_c, store.vectors("chunks", DIM, ids=[c.id for c in rows_c])[1])
    assert store.chunk_rows(shuffled) == rows_c

    # Every chunk holds "alpha" or "beta"; best BM25 first across batches, and the limit holds.
    scores = store.keyword_chunks('"alpha" OR "gamma"', doc_ids=shuffled)
    assert set(scores) == set(chunk_ids)
    assert list(scores.values()) == sorted(scores.values(), reverse=True)
    top = store.keyword_chunks('"number7"', doc_ids=shuffled, limit=3)
    assert len(top) == 1 and chunks[next(iter(top))].doc_id == states["doc-7"][0]

    with store.transaction():
        removed = store.delete(shuffled[:N_DOCS - 5])
    assert sorted(removed) == sorted(c.id for c in rows_c if c.doc_id in set(shuffled[:N_DOCS - 5]))
    assert store.count("documents") == 5 and store.count("chunks") == 10
    assert store.keyword_chunks('"alpha"', doc_ids=doc_ids).keys() == \
        {c.id for c in rows_c if c.doc_id in set(shuffled[N_DOCS - 5:]) and c.ordinal == 0}


def test_empty_id_lists(store):
    assert store.states([]) == {}
    assert store.documents([]) == {} and store.chunks([]) == {}
    rows, vectors = store.chunks_of([], DIM)
    assert rows == [] and vectors.shape == (0, DIM)
    assert store.chunk_rows([]) == []
    assert store.keyword_chunks('"alpha"', doc_ids=[]) == {}
    with store.transaction():
        assert store.delete([]) == []
    assert store.vectors("documents", DIM, ids=[])[0].size == 0
