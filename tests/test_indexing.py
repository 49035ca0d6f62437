"""The write path on re-runs: what a second `index` keeps, replaces, refreshes and removes.

Real offline model, tiny corpora built in code (see conftest.py).
"""

from __future__ import annotations

import dataclasses
import os
from datetime import datetime
from pathlib import Path

import pytest

from searchkit import SearchIndex
from searchkit.config import load_config
from searchkit.ingest.documents import read_document


@pytest.fixture
def config(fake_index_config):
    """This file tests storage, not retrieval quality: the deterministic fake embedder."""
    return fake_index_config


def stored_paths(ix: SearchIndex) -> set[str]:
    return {p for p, in ix.backend.store.db.execute("SELECT path FROM documents WHERE path IS NOT NULL")}


def with_extensions(config, *extensions):
    return dataclasses.replace(config, ingest=dataclasses.replace(config.ingest, extensions=extensions))


def test_files_of_a_type_no_longer_indexed_keep_their_entries(config, corpus):
    with SearchIndex.open(config=config, create=True) as ix:
        ix.add_paths([corpus])
    # Written without dots, as in SEARCHKIT_INGEST_EXTENSIONS=txt,md: still .txt and .md.
    env = {"SEARCHKIT_INGEST_EXTENSIONS": "txt,md"}
    narrow = dataclasses.replace(config, ingest=load_config(environ=env, discover=False).ingest)
    assert narrow.ingest.extensions == (".txt", ".md")
    with SearchIndex.open(config=narrow) as ix:
        report = ix.add_paths([corpus])
        assert (report.unchanged, report.removed) == (2, 0)
        assert ix.stats()["documents"] == 4
    with SearchIndex.open(config=with_extensions(config, ".rst")) as ix:
        assert ix.add_paths([corpus]).removed == 0
        assert len(stored_paths(ix)) == 4


def test_files_in_a_folder_that_cannot_be_listed_keep_their_entries(config, corpus, monkeypatch):
    sub = corpus / "locked"
    sub.mkdir()
    (sub / "tides.txt").write_text("The Moon's gravity raises the tides twice a day.")
    with SearchIndex.open(config=config, create=True) as ix:
        ix.add_paths([corpus])
        real_scandir, real_lstat = os.scandir, os.lstat

        # As for a folder with mode 000 (which does not stop root, who runs CI): it can be
        # neither listed nor looked into.
        def scandir(path="."):
            if Path(path) == sub:
                raise PermissionError(13, "Permission denied", str(path))
            return real_scandir(path)

        def lstat(path, *args, **kwargs):
            if Path(path).parent == sub:
                raise PermissionError(13, "Permission denied", str(path))
            return real_lstat(path, *args, **kwargs)

        monkeypatch.setattr(os, "scandir", scandir)
        monkeypatch.setattr(os, "lstat", lstat)
        report = ix.add_paths([corpus])
        monkeypatch.undo()
        assert [s.reason for s in report.skipped] == ["folder cannot be read: Permission denied"]
        assert report.removed == 0
        assert str(sub / "tides.txt") in stored_paths(ix)


def test_a_hidden_file_named_on_its_own_keeps_its_entry_when_its_folder_is_indexed(config, corpus):
    (corpus / ".notes.txt").write_text("Private notes about the lunar orbit and its tides.")
    with SearchIndex.open(config=config, create=True) as ix:
        ix.add_paths([corpus / ".notes.txt"])
        report = ix.add_paths([corpus])
        assert (report.added, report.removed) == (4, 0)
        assert str(corpus / ".notes.txt") in stored_paths(ix)


def test_a_deleted_file_is_removed_and_a_deleted_folder_takes_its_files(config, corpus):
    sub = corpus / "more"
    sub.mkdir()
    (sub / "tides.txt").write_text("The Moon's gravity raises the tides twice a day.")
    with SearchIndex.open(config=config, create=True) as ix:
        ix.add_paths([corpus])
        (corpus / "chess.html").unlink()
        (sub / "tides.txt").unlink()
        sub.rmdir()
        report = ix.add_paths([corpus])
        assert report.removed == 2
        assert sorted(os.path.basename(p) for p in stored_paths(ix)) == [
            "bread.md", "orbit.rst", "volcano.txt"]


def test_a_path_with_dot_dot_names_the_same_file(config, corpus, monkeypatch):
    sub = corpus / "sub"
    sub.mkdir()
    with SearchIndex.open(config=config, create=True) as ix:
        ix.add_paths([corpus])
        monkeypatch.chdir(sub)
        report = ix.add_paths(["../", "../volcano.txt"])
        assert (report.added, report.unchanged) == (0, 4)
        assert stored_paths(ix) == {str(corpus / name) for name in
                                    ("volcano.txt", "bread.md", "chess.html", "orbit.rst")}
        assert [os.path.basename(h.path) for h in ix.search("lava", k=10)].count("volcano.txt") == 1
        assert ix.remove(["../bread.md"]) == 1
        assert ix.remove([f"../{sub.name}/../chess.html"]) == 1
        assert ix.stats()["documents"] == 2


def test_an_entry_stored_under_a_dot_dot_path_goes_at_the_next_run(config, corpus):
    # Made the way searchkit stored `index ../` from a subfolder before paths were normalised.
    (corpus / "sub").mkdir()
    alias = str(corpus / "sub" / ".." / "volcano.txt")
    old = dataclasses.replace(read_document(corpus / "volcano.txt"), key=alias, path=alias)
    with SearchIndex.open(config=config, create=True) as ix:
        ix.add_paths([corpus])
        ix.add_records([old])
        assert alias in stored_paths(ix)
        report = ix.add_paths([corpus])
        assert (report.unchanged, report.removed) == (4, 1)
        assert alias not in stored_paths(ix) and ix.stats()["documents"] == 4


def test_a_file_whose_content_became_unusable_loses_its_entry(config, corpus, monkeypatch, deny_read):
    (corpus / "tides.txt").write_text("The Moon's gravity raises the tides twice a day.")
    (corpus / "rain.txt").write_text("Rain falls when droplets in a cloud grow too heavy to float.")
    config = dataclasses.replace(config, ingest=dataclasses.replace(config.ingest, max_file_mb=0.01))
    with SearchIndex.open(config=config, create=True) as ix:
        ix.add_paths([corpus])
        (corpus / "volcano.txt").write_text("")                       # `: > volcano.txt`
        (corpus / "bread.md").write_bytes(b"\x00\x01 binary now")
        (corpus / "chess.html").write_bytes(b"caf\xe9 au lait")
        (corpus / "orbit.rst").write_text("orbit " * 3000)            # past ingest.max_file_mb
        (corpus / "rain.txt").write_text("\u200b\u200b")              # text without a token
        (corpus / "tides.txt").write_text("Changed, but it cannot be read now.")
        deny_read("tides.txt")
        report = ix.add_paths([corpus])
        monkeypatch.undo()
        reasons = {os.path.basename(s.path): s.reason for s in report.skipped}
        assert reasons == {"volcano.txt": "no text", "bread.md": "binary file",
                           "chess.html": "not valid UTF-8 (byte 3)",
                           "orbit.rst": "larger than ingest.max_file_mb (0.0 MB)",
                           "rain.txt": "no tokens", "tides.txt": "permission denied"}
        assert (report.updated, report.unchanged, report.removed) == (0, 0, 5)
        # An access failure says nothing about the content: the old entry stays.
        assert [os.path.basename(p) for p in stored_paths(ix)] == ["tides.txt"]
        assert ix.search("volcano lava eruption", mode="keyword") == []


def test_a_touched_file_is_found_by_its_new_time_without_a_rewrite(config, corpus):
    with SearchIndex.open(config=config, create=True) as ix:
        ix.add_paths([corpus])
        generation, faiss = ix.backend.store.generation, sorted(p.name for p in ix.folder.glob("*.faiss"))
        spring_2020 = datetime(2020, 3, 1).timestamp()
        os.utime(corpus / "volcano.txt", (spring_2020, spring_2020))   # touch -d 2020-03-01
        report = ix.add_paths([corpus])
        assert (report.added, report.updated, report.unchanged, report.tokens) == (0, 0, 4, 0)
        hits = ix.search("lava", filters={"until": "2021-01-01"})
        assert [os.path.basename(h.path) for h in hits] == ["volcano.txt"]
        row = ix.backend.store.db.execute("SELECT mtime, size FROM documents WHERE path = ?",
                                  [str(corpus / "volcano.txt")]).fetchone()
        assert row == (spring_2020, (corpus / "volcano.txt").stat().st_size)
        # Nothing a FAISS file holds changed: same generation, same files, nothing rewritten.
        assert ix.backend.store.generation == generation
        assert sorted(p.name for p in ix.folder.glob("*.faiss")) == faiss


def test_a_record_readded_with_new_metadata_or_title_is_updated_without_embedding(config):
    text = "Minutes of the meeting about the new library opening hours."
    with SearchIndex.open(config=config, create=True) as ix:
        ix.add_records([{"id": "n1", "text": text, "metadata": {"author": "ann", "year": 2020},
                         "title": "Draft"}])
        generation = ix.backend.store.generation
        report = ix.add_records([{"id": "n1", "text": text, "title": "Opening hours",
                                  "metadata": {"author": "bob", "year": 2021}}])
        assert (report.added, report.updated, report.unchanged, report.tokens) == (0, 1, 0, 0)
        assert report.embedded == 0
        assert ix.backend.store.generation == generation         # no vector changed: no FAISS rewrite
        [hit] = ix.search("library hours", filters={"where": ["author=bob"]})
        assert (hit.key, hit.title, hit.metadata) == ("n1", "Opening hours",
                                                      {"author": "bob", "year": 2021})
        assert ix.search("library hours", filters={"where": ["author=ann"]}) == []
        assert [h.key for h in ix.search("opening", mode="keyword")] == ["n1"]
        assert ix.search("draft", mode="keyword") == []   # the title's keywords moved too
        # The same metadata again, keys in another order, is no change.
        again = ix.add_records([{"id": "n1", "text": text, "title": "Opening hours",
                                 "metadata": {"year": 2021, "author": "bob"}}])
        assert (again.updated, again.unchanged) == (0, 1)
