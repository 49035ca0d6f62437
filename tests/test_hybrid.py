"""Keyword (FTS5 BM25) and hybrid search: the FTS index stays in step with every write, user
text never breaks FTS5, and keyword search finds what vectors miss."""

import dataclasses
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import sqlite_utils

from searchkit import SearchIndex
from searchkit.config import ChunkingConfig
from searchkit.ingest.documents import record_document
from searchkit.errors import IndexLockedError, InputError
from searchkit.backends.local.locking import WriteLock
from searchkit.records import Chunk, EmbeddedDocument
from searchkit.backends.local.sql import fts_query
from searchkit.retrieval.ranking import fuse, weighted_fusion
from searchkit.backends.local.store import DB_NAME, Store, migrations

# Six notes full of look-alike codes; only n2 holds ZX-4417-Q, buried in unrelated talk, so
# its document vector says little about it.
NOTES = [
    ("n1", "The build server failed overnight with error code QB-1187-X because the disk filled "
           "up with old logs."),
    ("n2", "After the upgrade the team met to plan the spring release and review the budget. The "
           "deploy step logged ZX-4417-Q once. Everyone agreed the new office coffee machine is a "
           "great improvement."),
    ("n3", "The build server needs more memory; error ZX-4471-O appears when compiling the large "
           "project runs out of RAM."),
    ("n4", "Nightly builds on the server are slow since the network share moved; see ticket "
           "XZ-4147-Q."),
    ("n5", "The server that runs our builds was rebooted and the queue cleared after fault ZQ-7144-Z."),
    ("n6", "Our continuous integration server keeps timing out on long test runs, code ZX-1447-P."),
]


def fts_counts(ix):
    db = ix.backend.store.db
    return (db.execute("SELECT count(*) FROM documents_fts").fetchone()[0],
            ix.backend.store.count("documents"),
            db.execute("SELECT count(*) FROM chunks_fts").fetchone()[0],
            ix.backend.store.count("chunks"))


def assert_fts_in_step(ix):
    docs_fts, docs, chunks_fts, chunks = fts_counts(ix)
    assert (docs_fts, chunks_fts) == (docs, chunks)
    # FTS5's own check compares the index with the content it was built from.
    ix.backend.store.db.execute("INSERT INTO documents_fts (documents_fts) VALUES ('integrity-check')")
    ix.backend.store.db.execute("INSERT INTO chunks_fts (chunks_fts) VALUES ('integrity-check')")
    # Every chunk's stored text is its document's text at the chunk's character span.
    for chunk_id, fts_text, text, start, end in ix.backend.store.db.execute(
            "SELECT c.id, f.text, d.text, c.char_start, c.char_end FROM chunks c "
            "JOIN chunks_fts f ON f.rowid = c.id JOIN documents d ON d.id = c.doc_id"):
        assert fts_text == text[start:end], chunk_id


def keys(hits):
    return [h.key for h in hits]


@pytest.fixture
def small_chunks(config):
    # 16-token chunks so a note has several passages to choose from.
    return dataclasses.replace(config, chunking=ChunkingConfig(size=16))


def test_fts_stays_in_step_through_add_replace_remove(small_chunks):
    with SearchIndex.open(config=small_chunks, create=True) as ix:
        ix.add_records(NOTES + [("accent", "Crème brûlée at the café, naïve résumé.")])
        assert_fts_in_step(ix)
        assert keys(ix.search("ZX-4417-Q", mode="keyword")) == ["n2"]
        assert keys(ix.search("creme brulee", mode="keyword")) == ["accent"]

        ix.add_records([("n2", "The deploy step now passes; the build server is healthy again.")])
        assert_fts_in_step(ix)
        assert ix.search("ZX-4417-Q", mode="keyword") == []
        assert keys(ix.search("healthy", mode="keyword")) == ["n2"]

        assert ix.remove(["n2", "accent"]) == 2
        assert_fts_in_step(ix)
        assert fts_counts(ix)[:2] == (5, 5)
        assert ix.search("healthy", mode="keyword") == []
        assert "n2" not in keys(ix.search("build server deploy", mode="hybrid", k=10))


def test_fts_follows_changed_and_deleted_files(config, corpus):
    with SearchIndex.open(config=config, create=True) as ix:
        ix.add_paths([corpus])
        assert keys(ix.search("Vesuvius", mode="keyword"))[0].endswith("volcano.txt")
        (corpus / "volcano.txt").write_text("Glaciers carve valleys as the ice moves downhill.")
        (corpus / "chess.html").unlink()
        ix.add_paths([corpus])
        assert_fts_in_step(ix)
        assert ix.search("Vesuvius", mode="keyword") == []
        assert ix.search("Sicilian", mode="keyword") == []
        assert keys(ix.search("glaciers", mode="keyword"))[0].endswith("volcano.txt")


def _old_index(folder):
    """An index as searchkit wrote it before migration 2 (keyword search)."""
    folder.mkdir()
    db = sqlite_utils.Database(sqlite3.connect(str(folder / DB_NAME)))
    migrations.apply(db, stop_before="m002_fts")
    old = Store(db, folder / DB_NAME)
    with old.transaction():
        old._put({"schema_version": 1, "generation": 0})
        vec = np.ones(4, dtype=np.float32) / 2
        doc = record_document("old-1", "An index from before keyword search knew zeppelins.")
        old.insert(EmbeddedDocument(doc, 9, vec, (Chunk(0, 0, 9, 3, 24, vec),)))
    db.close()


def test_migration_indexes_an_index_built_before_fts(tmp_path):
    folder = tmp_path / "old"
    _old_index(folder)
    store = Store.open(folder)
    assert store.manifest()["schema_version"] == 2
    assert list(store.keyword_documents(fts_query("zeppelins"), 10)) == [1]
    assert store.db.execute("SELECT text FROM chunks_fts").fetchall() == [("index from before key",)]
    store.close()


def test_migration_waits_for_the_writer_lock(tmp_path):
    folder = tmp_path / "old"
    _old_index(folder)
    with WriteLock(folder):  # a writer is busy: the migration must neither run nor corrupt
        with pytest.raises(IndexLockedError):
            Store.open(folder, migrate_wait=0.2)
    raw = sqlite3.connect(str(folder / DB_NAME))
    assert raw.execute("SELECT value FROM manifest WHERE key = 'schema_version'").fetchone() == ("1",)
    raw.close()
    # Several processes opening the old index at once: one migrates, the others find it done.
    def open_and_look(_):
        store = Store.open(folder)
        try:
            return (store.manifest()["schema_version"], list(store.keyword_documents(fts_query("zeppelins"), 10)),
                    store.db.execute("SELECT count(*) FROM chunks_fts").fetchone()[0])
        finally:
            store.close()

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(open_and_look, range(4))) == [(2, [1], 1)] * 4


HOSTILE = ['"', "'", '"unbalanced', "it's", 'say "hello" "', "AND", "OR", "NOT", "a AND b OR NOT c",
           "NEAR(", "NEAR(a b, 3)", "*", "build*", "-", "-server", ":", "title:build", "text : x",
           "(", ")", "((server)", "^server", "{title text}: x", "+", "'; DROP TABLE documents; --",
           "%", "_", "\\", "\x00", "...", "?!", "серверы сборки", "构建服务器", "Ünïcödé ÄÖ ß",
           "emoji 🚀 build", "x" * 2000, " ".join(["build"] * 200) + " server"]


def test_hostile_queries_never_break_fts(small_chunks):
    with SearchIndex.open(config=small_chunks, create=True) as ix:
        ix.add_records(NOTES)
        for text in HOSTILE:
            assert len(ix.search(text, mode="keyword", k=3)) <= 3, text
            ix.search(text, mode="keyword", chunks=True, k=3)
        for text in HOSTILE[:12:3]:  # hybrid runs the same keyword query; a few suffice
            assert len(ix.search(text, mode="hybrid", k=3)) == 3, text
        assert ix.backend.store.count("documents") == 6
        # Operators are words, quotes are characters, wildcards are literal.
        assert ix.search("NOT", mode="keyword") == []
        assert sorted(keys(ix.search("build*", mode="keyword"))) == ["n1", "n3", "n4", "n5"]
        assert ix.search("?!", mode="keyword") == []
        assert len(ix.search("?!", mode="hybrid", k=3)) == 3  # nothing to match: dense alone
        with pytest.raises(InputError, match="empty"):
            ix.search("   ", mode="keyword")


def test_fts_query_quotes_every_term():
    assert fts_query('say "hi" NEAR(x') == '"say" OR """hi""" OR "NEAR(x"'
    assert fts_query("Build build BUILD server") == '"Build" OR "server"'
    assert fts_query("- * : ( )") is None
    assert fts_query("") is None


def test_keyword_finds_a_rare_identifier_that_dense_misses(small_chunks):
    with SearchIndex.open(config=small_chunks, create=True) as ix:
        ix.add_records(NOTES)
        query = "ZX-4417-Q"
        # Document vectors alone (late rerank, the default, can lift n2 through its chunk).
        dense = ix.search(query, mode="dense", rerank="none", k=3)
        keyword = ix.search(query, mode="keyword", k=3)
        hybrid = ix.search(query, mode="hybrid", k=3)
        assert "n2" not in keys(dense)
        assert keys(keyword) == ["n2"]
        assert keys(hybrid)[0] == "n2"
        # The passage is the chunk holding the identifier, with exact offsets.
        for hit in (keyword[0], hybrid[0]):
            assert "ZX-4417-Q" in hit.passage.text
            assert hit.passage.text == dict(NOTES)["n2"][hit.passage.char_start:hit.passage.char_end]
        assert set(hybrid[0].scores) >= {"dense", "keyword"}
        assert "dense" not in keyword[0].scores


def test_every_mode_returns_one_hit_per_document(small_chunks):
    with SearchIndex.open(config=small_chunks, create=True) as ix:
        ix.add_records(NOTES)
        for mode in ("dense", "keyword", "hybrid"):
            hits = ix.search("server deploy", mode=mode, k=10)
            assert len(keys(hits)) == len(set(keys(hits))) == 6, mode
            assert [h.rank for h in hits] == list(range(1, 7))
            assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))
            assert all(h.passage is not None for h in hits)
        passages = ix.search("server", mode="keyword", chunks=True, k=20)
        assert all("server" in h.passage.text.lower() for h in passages)


def test_keyword_mode_does_not_load_the_model(small_chunks):
    with SearchIndex.open(config=small_chunks, create=True) as ix:
        ix.add_records(NOTES)
    with SearchIndex.open(config=small_chunks) as ix:
        assert keys(ix.search("ZX-4417-Q", mode="keyword")) == ["n2"]
        assert ix._embedder is None


def test_fusion_arithmetic():
    dense = {1: 0.9, 2: 0.5, 3: 0.1}
    keyword = {3: 12.0, 4: 6.0}
    # Cosines as they are; BM25 over the best BM25; a missing document gets the list's floor.
    fused = weighted_fusion(dense, keyword, 0.5)
    assert fused == pytest.approx({1: 0.7, 2: 0.5, 3: 0.55, 4: 0.3})
    assert weighted_fusion(dense, {}, 0.5) == dense
    # A complete keyword list (fewer than asked for): the others matched nothing, BM25 0.
    assert weighted_fusion(dense, keyword, 0.5, depth=50)[1] == pytest.approx(0.45)
    rrf = fuse(dense, keyword, "rrf", 0.5, 60)
    assert rrf[3] == pytest.approx(1 / 63 + 1 / 61)
    assert rrf[1] == pytest.approx(1 / 61)
    # Weight 1: keyword order alone decides among its documents.
    only_kw = fuse(dense, keyword, "rrf", 1.0, 60)
    assert sorted(only_kw, key=lambda i: -only_kw[i])[:2] == [3, 4]


def test_unknown_mode_is_an_input_error(config):
    with SearchIndex.open(config=config, create=True) as ix:
        with pytest.raises(InputError, match="unknown search mode 'fuzzy'"):
            ix.search("x", mode="fuzzy")
