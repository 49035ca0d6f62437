"""The in-memory BM25 (backends/local/keywords.py) gives FTS5's ``bm25()`` bit for bit.

Every query here runs twice: through the local read view (postings from FTS5's vocabulary,
ranked with numpy) and as the FTS5 statement the store still has (``MATCH`` an OR of quoted
terms, ``ORDER BY bm25()``). The ids, their order and the float scores must be equal, for
documents (two columns: title and text) and chunks, top-k and per-document, with filters,
phrases (terms FTS5 cuts into several tokens), stems, folded accents, repeated terms and
terms with no token, before and after documents are replaced and removed.
"""

from __future__ import annotations

import dataclasses
import math
import threading

import numpy as np
import pytest

from searchkit import SearchIndex
from searchkit.backends.local import keywords
from searchkit.backends.local.sql import fts_query, where_sql
from searchkit.config import ChunkingConfig, Config, ModelConfig
from searchkit.embedding.fake import FAKE_MODEL
from searchkit.filters import as_filters

TEXTS = [
    ("pg", "pg_dump", "Use pg_dump to back up a database; pg_dump writes SQL. The dump runs fast."),
    ("git", "git rebase", "git-rebase rewrites history. Run git rebase -i to squash; rebasing "
                          "moves commits. git git git rebase rebase."),
    ("cafe", "Café guide", "The café serves naïve coffee. Cafe culture; CAFÉ hours."),
    ("run", "Running", "Running runs ran the runner; run, run, run! Don't stop running."),
    ("sub", "Subscripts", "x₂ plus y² is not the point; ² alone is a token, ₂ is not."),
    ("phrase", "a a a", "a a a a b a a. The phrase a a counts overlapping starts."),
    ("title", "Rebase in the title only", "Nothing about it in the body text at all."),
]
QUERIES = ["pg_dump", "git-rebase", "git rebase squash", "cafe", "CAFÉ naive", "running runs",
           "run running RUN", "don't", "x₂", "² alone", "a a", "rebase title", "… — ₂₂ zzz",
           "the", "dump database sql", "nothingmatches", "pg_dump pg dump"]
FILTERS = [None, "year>=2003", "group=even"]


def records(extra: int = 30):
    out = [(key, f"{title}\n{text}", {"year": 2000 + i, "group": "even" if i % 2 == 0 else "odd"})
           for i, (key, title, text) in enumerate(TEXTS)]
    words = "the dump database rebase cafe run history commit squash sql".split()
    for i in range(extra):   # filler with repeats, so scores tie and common words abound
        body = " ".join(words[(i * 3 + j * j) % len(words)] for j in range(20 + i % 4 * 40))
        out.append((f"f{i}", body, {"year": 2000 + i % 10, "group": "even" if i % 2 == 0 else "odd"}))
    return out


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kw") / "ix"
    cfg = Config(index=str(folder), model=ModelConfig(name=FAKE_MODEL),
                 chunking=ChunkingConfig(size=16))
    ix = SearchIndex.open(config=cfg, create=True)
    ix.add_records(records())
    yield ix
    ix.close()


def both(view, query: str, filters, limit):
    """(in memory, FTS5) for documents, chunks top-k, and the chunks of given documents."""
    match = fts_query(query)
    where = where_sql(filters) if filters else None
    store = view.store
    pairs = [(view.keyword_documents(query, limit, filters),
              store.keyword_documents(match, limit, where) if match else {}),
             (view.keyword_chunks(query, limit=limit, filters=filters),
              store.keyword_chunks(match, None, limit, where) if match else {})]
    docs = list(store.ids("documents")[::2])   # the chunks of given documents (no filters)
    pairs.append((view.keyword_chunks(query, docs), store.keyword_chunks(match, docs) if match else {}))
    return pairs


def check_all(ix) -> int:
    compared = 0
    with ix.backend.snapshot() as view:
        for query in QUERIES:
            for spec in FILTERS:
                filters = as_filters({"where": spec}) if spec else None
                for limit in (1, 3, 10, 1000):
                    for mine, fts in both(view, query, filters, limit):
                        assert list(mine.items()) == list(fts.items()), (query, spec, limit)
                        compared += bool(fts)
    return compared


def test_scores_and_order_equal_fts5(index):
    assert check_all(index) > 200


def test_phrases_stems_and_accents_match_what_fts5_matches(index):
    with index.backend.snapshot() as view:
        keys = {d: r.key for d, r in view.documents(view.store.ids("documents").tolist()).items()}
        found = lambda q: {keys[i] for i in view.keyword_documents(q, 100)}   # noqa: E731
        assert "pg" in found("pg_dump")
        assert found("git-rebase") == {"git"}   # the words in a row, not each word anywhere
        assert {"git", "title"} <= found("rebase")
        assert "cafe" in found("cafe") and "cafe" in found("CAFÉ")
        assert "run" in found("runs")
        assert found("… —") == set() and found("₂₂") == set()   # no token; a token no row has
        assert "sub" in found("²") and "sub" in found("x₂")


def test_equal_after_replace_and_remove(index):
    changed = [(key, text + " pg_dump squash café", meta) for key, text, meta in records(4)[:3]]
    index.add_records(changed)
    index.remove(["f1", "run", "sub"])
    assert check_all(index) > 100
    with index.backend.snapshot() as view:
        assert "run" not in {r.key for r in view.documents(list(view.keyword_documents("running", 50))).values()}


def test_postings_cache_stays_within_budget(index, monkeypatch):
    monkeypatch.setattr(keywords, "POSTINGS_BUDGET", 5)
    with index.backend.snapshot() as view:
        table = keywords.KeywordTable.build(view.store, "chunks_fts")
        for query in QUERIES:
            phrases = [p for p in index.backend.query_tokens(query.split()) if p]
            fresh = table.top(view.store, phrases, 10)
            again = table.top(view.store, phrases, 10)
            assert fresh == again
            assert table._held <= 5 or len(table._postings) == 1


def test_threads_share_one_table(index):
    with index.backend.snapshot() as view:
        expected = {q: list(view.store.keyword_documents(fts_query(q), 10).items())
                    for q in QUERIES if fts_query(q)}
    errors: list[BaseException] = []

    def ask():
        try:
            for _ in range(5):
                for q, want in expected.items():
                    with index.backend.snapshot() as view:
                        assert list(view.keyword_documents(q, 10).items()) == want
        except BaseException as exc:   # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_row_lengths_decode_varints():
    def varint(n: int) -> bytes:
        groups = [n & 0x7F]
        n >>= 7
        while n:
            groups.append(0x80 | (n & 0x7F))
            n >>= 7
        return bytes(reversed(groups))
    sizes = [varint(3) + varint(300), varint(0), varint(127), varint(128) + varint(2**21 + 5)]
    assert keywords._row_lengths(sizes).tolist() == [303, 0, 127, 128 + 2**21 + 5]
    assert keywords._row_lengths([]).tolist() == []


def test_tokens_follow_the_index_tokenizer():
    tokens = keywords.QueryTokens()
    assert tokens(["Running", "pg_dump", "Café", "…"]) == [("run",), ("pg", "dump"), ("cafe",), ()]
    assert dataclasses.is_dataclass(keywords.Postings)
    assert np.array_equal(keywords.KeywordTable("chunks_fts", np.zeros(0, np.int64), np.zeros(0), 1.0)
                          ._ranked(np.zeros(0, np.int64), np.zeros(0), 5), [])


def test_passage_windows_score_two_adjacent_chunks_as_one(index):
    # passage_bm25: each document's best window of two adjacent chunks, each phrase's
    # counts and the lengths summed, FTS5's formula with the chunk table's idf and twice its
    # average length; a document's last chunk starts no window unless it is its only one.
    # Checked against the same arithmetic written out per window from the counts FTS5 gives.
    k1, b = keywords.K1, keywords.B
    with index.backend.snapshot() as view:
        store = view.store
        table = index.backend.keyword_table(store, "chunks_fts")
        docs = store.ids("documents").tolist()
        chunks: dict[int, list[int]] = {}
        for row in store.chunk_rows(docs):
            chunks.setdefault(row.doc_id, []).append(row.id)
        length = dict(zip(table.ids.tolist(), table.lengths.tolist()))
        many = "the dump database rebase cafe run history commit squash sql pg_dump git a"
        for query in [*QUERIES, many]:
            phrases = view._phrases(query)   # the query's terms as FTS5 tokenizes them
            chunk_scores, got = view.passage_bm25(query, docs[::2])
            # The chunks' own BM25 from the same pass: keyword_chunks' ids and floats.
            assert chunk_scores == view.keyword_chunks(query, docs[::2])
            counts = []
            for phrase in phrases:
                rows, n = table._matches(store, phrase)
                hits = len(rows)
                idf = max(math.log((len(table.ids) - hits + 0.5) / (hits + 0.5)), 1e-6)
                counts.append((idf, dict(zip(rows.tolist(), n.tolist()))))
            want = {}
            for doc in docs[::2]:
                ids = chunks[doc]
                windows = [ids[i:i + 2] for i in range(max(len(ids) - 1, 1))]
                best = 0.0
                for window in windows:
                    size = sum(length[c] for c in window)
                    score = 0.0
                    for idf, found in counts:
                        f = float(sum(found.get(c, 0) for c in window))
                        score += idf * ((f * (k1 + 1.0)) / (f + k1 * (1 - b + b * size / (2 * table.average))))
                    best = max(best, score)
                if best > 0:
                    want[doc] = best
            assert got.keys() == want.keys(), query
            assert np.allclose([got[d] for d in want], list(want.values()), rtol=1e-12), query
