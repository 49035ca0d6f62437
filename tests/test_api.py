"""The Python API end to end on the real offline model and a tiny corpus built in code."""

import dataclasses
import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from searchkit import SearchIndex
from searchkit.config import AnnConfig, ModelConfig
from searchkit.errors import (ConfigError, IndexLockedError, InputError, ModelMismatchError, NotAnIndexError)
from searchkit.backends.local.locking import WriteLock

QUERIES = {
    "lava and eruptions from a mountain": "volcano.txt",
    "how to make a loaf with a starter": "bread.md",
    "which opening should I play against e4": "chess.html",
    "moving a spacecraft to a higher orbit": "orbit.rst",
}


def names(hits):
    return [os.path.basename(h.path) for h in hits]


def test_index_then_query_ranks_the_right_document_first(config, corpus):
    with SearchIndex.open(config=config, create=True) as ix:
        report = ix.add_paths([corpus])
        assert (report.added, report.updated, report.unchanged, report.removed) == (4, 0, 0, 0)
        for query, expected in QUERIES.items():
            hits = ix.search(query, k=4)
            assert names(hits)[0] == expected, query
            assert [h.rank for h in hits] == [1, 2, 3, 4]
            assert hits[0].score >= hits[1].score
        assert ix.stats()["documents"] == 4


def test_html_script_text_is_not_indexed(config, corpus):
    with SearchIndex.open(config=config, create=True) as ix:
        ix.add_paths([corpus])
        text = ix.backend.store.db.execute("SELECT text FROM documents WHERE kind = 'html'").fetchone()[0]
    assert "secretscriptword" not in text and "Sicilian" in text


def test_reindex_of_unchanged_folder_embeds_nothing(config, corpus):
    with SearchIndex.open(config=config, create=True) as ix:
        ix.add_paths([corpus])
        generation = ix.backend.store.generation
        again = ix.add_paths([corpus])
        assert ix.backend.store.generation == generation  # nothing written, so the FAISS files stay current
    assert (again.added, again.updated, again.unchanged, again.tokens) == (0, 0, 4, 0)


def test_changed_file_replaces_its_entry(config, corpus):
    with SearchIndex.open(config=config, create=True) as ix:
        ix.add_paths([corpus])
        (corpus / "volcano.txt").write_text("Tax law: deductions, income brackets and filing returns.")
        report = ix.add_paths([corpus])
        assert (report.added, report.updated, report.unchanged) == (0, 1, 3)
        assert ix.stats()["documents"] == 4
        assert names(ix.search("filing an income tax return", k=1)) == ["volcano.txt"]
        assert "volcano.txt" not in names(ix.search("lava eruption", k=1))


def test_each_file_is_opened_once_per_run_and_its_hash_stored(config, corpus, monkeypatch):
    opened: list[str] = []
    real = Path.open

    def counting(self, *args, **kwargs):
        if corpus in self.parents:
            opened.append(self.name)
        return real(self, *args, **kwargs)

    files = sorted(p.name for p in corpus.iterdir())
    monkeypatch.setattr(Path, "open", counting)
    with SearchIndex.open(config=config, create=True) as ix:
        ix.add_paths([corpus])
        assert sorted(opened) == files
        (corpus / "volcano.txt").write_text("Tax law: deductions, income brackets and filing returns.")
        opened.clear()
        report = ix.add_paths([corpus])
        assert (report.updated, report.unchanged) == (1, 3)
        assert sorted(opened) == files, "a changed or unchanged file was read twice"
        stored = dict(ix.backend.store.db.execute("SELECT path, content_hash FROM documents").fetchall())
    assert stored == {str(corpus / name): hashlib.sha256((corpus / name).read_bytes()).hexdigest()
                      for name in files}


def test_deleted_file_disappears_from_results(config, corpus):
    with SearchIndex.open(config=config, create=True) as ix:
        ix.add_paths([corpus])
        (corpus / "chess.html").unlink()
        report = ix.add_paths([corpus])
        assert report.removed == 1
        assert "chess.html" not in names(ix.search("chess openings and castling", k=10))
        assert ix.stats()["documents"] == 3


def test_records_can_be_added_searched_and_removed(config):
    with SearchIndex.open(config=config, create=True) as ix:
        ix.add_records([("a", "The cat sat on the warm windowsill."),
                        {"id": "b", "text": "Interest rates rose at the central bank.",
                         "metadata": {"topic": "finance"}}])
        hits = ix.search("monetary policy", k=1)
        assert hits[0].key == "b" and hits[0].metadata == {"topic": "finance"} and hits[0].path is None
        assert ix.add_records([("a", "The cat sat on the warm windowsill.")]).unchanged == 1
        assert ix.remove(["b"]) == 1
        assert [h.key for h in ix.search("monetary policy", k=5)] == ["a"]


def test_reopened_index_answers_with_the_recorded_model(config, corpus):
    with SearchIndex.open(config=config, create=True) as ix:
        ix.add_paths([corpus])
    # A config naming another model (the default jina) must not matter for queries.
    other = dataclasses.replace(config, model=ModelConfig(fallback=False))
    with SearchIndex.open(config=other) as ix:
        assert names(ix.search("volcanic ash", k=1)) == ["volcano.txt"]
        assert ix.model_info.name == "sentence-transformers/all-MiniLM-L6-v2"


def test_writing_with_the_default_model_name_keeps_the_recorded_model(config, corpus):
    with SearchIndex.open(config=config, create=True) as ix:
        ix.add_paths([corpus])
    default = dataclasses.replace(config, model=ModelConfig(fallback=False))  # model.name defaulted
    with SearchIndex.open(config=default) as ix:
        report = ix.add_records([("r1", "Glaciers carve valleys as they move.")])
        assert report.added == 1
        assert ix.model_info.name == "sentence-transformers/all-MiniLM-L6-v2"
        assert ix.search("glacier valleys", k=1)[0].key == "r1"


def test_indexing_with_a_different_model_is_refused(config, corpus, tmp_path):
    with SearchIndex.open(config=config, create=True) as ix:
        ix.add_paths([corpus])
    other = dataclasses.replace(config, model=ModelConfig(name=str(tmp_path)))
    with SearchIndex.open(config=other) as ix:
        with pytest.raises(ModelMismatchError, match="all-MiniLM-L6-v2") as info:
            ix.add_paths([corpus])
        assert str(tmp_path) in str(info.value)
        with pytest.raises(ModelMismatchError):
            ix.check_model("jinaai/jina-embeddings-v2-small-en")


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_every_index_type_returns_the_same_top_hit_as_flat(minilm_config, tmp_path, kind):
    records = [(f"d{i}", f"Note {i}: " + text) for i, text in enumerate([
        "volcanic eruptions and lava", "baking bread with yeast", "chess strategy and openings",
        "satellite orbits and rockets", "the history of the roman empire", "jazz music and saxophones",
        "football tactics and goals", "rainforests and biodiversity"] * 10)]
    results = {}
    for k in ("flat", kind):
        config = dataclasses.replace(minilm_config, index=str(tmp_path / k), ann=AnnConfig(type=k, nprobe=4))
        with SearchIndex.open(config=config, create=True) as ix:
            ix.add_records(records)
            assert ix.stats()["ann"]["documents"]["kind"] == k
            results[k] = [ix.search(q, k=1)[0].key for q in
                          ["magma", "sourdough", "checkmate", "spaceflight", "caesar", "improvised music"]]
    assert results[kind] == results["flat"]


def test_hnsw_removal_leaves_tombstones_that_queries_skip(minilm_config, tmp_path):
    config = dataclasses.replace(minilm_config, index=str(tmp_path / "h"),
                                 ann=AnnConfig(type="hnsw", compact_ratio=0.5))
    with SearchIndex.open(config=config, create=True) as ix:
        ix.add_records([("a", "volcano lava"), ("b", "volcanic eruption ash"), ("c", "bread")])
        ix.remove(["a"])
        assert ix.backend.ann("documents").ntotal == 3       # tombstone kept in the graph
        assert [h.key for h in ix.search("volcano", k=2)] == ["b", "c"]


def test_missing_path_and_empty_folder_are_clear_errors(config, tmp_path):
    (tmp_path / "empty").mkdir()
    with SearchIndex.open(config=config, create=True) as ix:
        with pytest.raises(InputError, match="nope"):
            ix.add_paths([tmp_path / "nope"])
        with pytest.raises(InputError, match="no files to index"):
            ix.add_paths([tmp_path / "empty"])


def test_bad_files_are_skipped_and_nothing_indexed_is_lost(config, corpus):
    with SearchIndex.open(config=config, create=True) as ix:
        ix.add_paths([corpus])
        (corpus / "bin.txt").write_bytes(b"\x00\x01")
        (corpus / "latin1.txt").write_bytes(b"caf\xe9")
        report = ix.add_paths([corpus])
        assert sorted(os.path.basename(s.path) for s in report.skipped) == ["bin.txt", "latin1.txt"]
        assert report.unchanged == 4 and ix.stats()["documents"] == 4


def test_unreadable_file_keeps_its_old_entry(config, corpus, deny_read):
    with SearchIndex.open(config=config, create=True) as ix:
        ix.add_paths([corpus])
        (corpus / "bread.md").write_text("changed, but now unreadable")
        deny_read("bread.md")
        report = ix.add_paths([corpus])
        assert any("permission" in s.reason for s in report.skipped)
        assert ix.stats()["documents"] == 4


def test_folder_that_is_not_an_index_is_refused(tmp_path, minilm_config):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("hello")
    with pytest.raises(NotAnIndexError, match="not a searchkit index"):
        SearchIndex.open(tmp_path / "stuff", config=minilm_config)
    with pytest.raises(NotAnIndexError, match="non-empty folder"):
        SearchIndex.open(tmp_path / "stuff", config=minilm_config, create=True)


def test_second_writer_is_refused_naming_the_holder(config, corpus):
    with SearchIndex.open(config=config, create=True) as ix:
        with WriteLock(ix.folder):
            with pytest.raises(IndexLockedError, match=f"process {os.getpid()}"):
                ix.add_paths([corpus])


def test_stale_faiss_file_is_rebuilt_from_sqlite(config, corpus, caplog, monkeypatch):
    # The CLI stops propagation to keep its own one-line format; caplog listens at the root.
    monkeypatch.setattr(logging.getLogger("searchkit"), "propagate", True)
    with SearchIndex.open(config=config, create=True) as ix:
        ix.add_paths([corpus])
        folder = ix.folder
    for path in folder.glob("*.faiss"):
        path.unlink()
    with SearchIndex.open(config=config) as ix:
        assert names(ix.search("lava", k=1)) == ["volcano.txt"]
    assert "rebuilt from SQLite" in caplog.text


def test_document_vectors_are_normalised(config, corpus):
    with SearchIndex.open(config=config, create=True) as ix:
        ix.add_paths([corpus])
        ids, vectors = ix.backend.store.vectors("documents", 384)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        _, chunk_vectors = ix.backend.store.vectors("chunks", 384)
        assert len(chunk_vectors) >= 4


def test_remove_matches_ids_then_paths_then_folders(config, corpus, tmp_path, monkeypatch, caplog):
    sub = corpus / "more"
    sub.mkdir()
    (sub / "tides.txt").write_text("The Moon's gravity raises the tides twice a day.")
    (sub / "rain.txt").write_text("Rain falls when droplets in a cloud grow too heavy to float.")
    monkeypatch.chdir(corpus)
    with SearchIndex.open(config=config, create=True) as ix:
        ix.add_paths([corpus])
        ix.add_records([("volcano.txt", "A record whose id happens to be a file name here.")])
        assert ix.stats()["documents"] == 7
        # A record id wins over a file of the same name in the current directory.
        assert ix.remove(["volcano.txt"]) == 1
        assert ix.search("record whose id", mode="keyword") == []
        assert names(ix.search("magma eruption", k=1)) == ["volcano.txt"]
        # A relative path to a file already deleted still finds its entry.
        (corpus / "bread.md").unlink()
        assert ix.remove(["bread.md"]) == 1
        # A folder removes everything stored under it; unknown keys are named in a warning.
        monkeypatch.setattr(logging.getLogger("searchkit"), "propagate", True)  # the CLI tests turn it off
        with caplog.at_level(logging.WARNING, logger="searchkit"):
            assert ix.remove(["more", "no-such-thing"]) == 2
        assert "not in the index: no-such-thing" in caplog.text
        assert sorted(names(ix.search("anything", k=10))) == ["chess.html", "orbit.rst", "volcano.txt"]


def test_naive_chunks_that_could_outgrow_the_window_are_refused(config):
    # 200-token chunks fit a 256-token window, but a tail of up to 99 tokens joins the last one.
    naive = dataclasses.replace(config, chunking=dataclasses.replace(config.chunking, mode="naive", size=200))
    with SearchIndex.open(config=naive, create=True) as ix:
        with pytest.raises(ConfigError, match=r"can reach 299 tokens; use at most 170"):
            ix.add_records([("a", "A short record.")])
        assert ix.stats()["documents"] == 0


def test_searching_an_empty_index_never_loads_the_model(fake_index_config):
    with SearchIndex.open(config=fake_index_config, create=True) as ix:
        ix.add_records([("a", "river harbour engine", {})])
        ix.remove(["a"])
    with SearchIndex.open(config=fake_index_config) as ix:
        for mode in ("dense", "hybrid"):
            assert ix.search("river", k=5, mode=mode) == []
        assert ix._embedder is None


def test_an_emptied_index_finds_nothing_in_every_mode(fake_index_config):
    # The first search of a query embeds it; once every document is removed, the same query
    # (its vector kept) and a new one (no model run for an empty index) both find nothing.
    with SearchIndex.open(config=fake_index_config, create=True) as ix:
        ix.add_records([("a", "river harbour engine", {}), ("b", "glacier market", {})])
        assert ix.search("river", k=5)
        ix.remove(["a", "b"])
        for mode in ("dense", "keyword", "hybrid"):
            for chunks in (False, True):
                assert ix.search("river", k=5, mode=mode, chunks=chunks) == []
                assert ix.search("never asked before", k=5, mode=mode, chunks=chunks) == []
