"""Storage under hostile conditions: metadata an older searchkit stored as invalid JSON, errors
that are not damage, and read-only media (a real read-only bind mount where the test may
mount, as root in CI; otherwise those tests are skipped and the monkeypatched ones still run).
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from searchkit import Filters, SearchIndex
from searchkit.backends.local import store as store_module
from searchkit.backends.local.store import DB_NAME, STRICT_JSON, explain
from searchkit.cli import main
from searchkit.errors import CorruptIndexError, IndexStoreError, InputError, ReadOnlyIndexError

FAKE = ["--set", "model.name=searchkit-fake"]
RECORDS = [("a", "Notes about capybaras.", {"score": 1.5, "year": 2020}),
           ("b", "Notes about otters.", {"year": 2021})]


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def legacy(fake_index_config):
    """An index whose row "a" holds NaN, as searchkit stored it before metadata was strict JSON."""
    with SearchIndex.open(config=fake_index_config, create=True) as ix:
        ix.add_records(RECORDS)
    with sqlite3.connect(Path(fake_index_config.index) / DB_NAME) as conn:
        conn.execute("""UPDATE documents SET metadata = '{"score": NaN, "year": 2020}' WHERE key = 'a'""")
        conn.execute("DELETE FROM manifest WHERE key = ?", [STRICT_JSON])
    return fake_index_config


@pytest.fixture
def logs(caplog, monkeypatch):
    # The CLI, run earlier in the same session, stops "searchkit" records reaching the root.
    monkeypatch.setattr(logging.getLogger("searchkit"), "propagate", True)
    caplog.set_level(logging.INFO, logger="searchkit")
    return caplog


def keys(ix, where, mode="keyword"):
    return sorted(h.key for h in ix.search("notes", k=5, mode=mode, filters=Filters.build(where=where)))


def test_nan_metadata_from_an_older_searchkit_is_repaired_on_open(legacy, logs):
    with SearchIndex.open(config=legacy) as ix:
        for mode in ("keyword", "dense", "hybrid"):
            assert keys(ix, "year>=2000", mode) == ["a", "b"]
        assert ix.search("capybaras", k=1, mode="keyword")[0].metadata == {"score": None, "year": 2020}
    repaired = [r.getMessage() for r in logs.records if "repaired the metadata" in r.getMessage()]
    assert len(repaired) == 1 and "1 document(s)" in repaired[0]
    with SearchIndex.open(config=legacy) as ix:     # checked once: no second scan, no second line
        assert keys(ix, "score<2") == []
    assert len([r for r in logs.records if "repaired the metadata" in r.getMessage()]) == 1


def test_an_unrepaired_row_is_named_as_the_cause_never_as_damage(legacy, monkeypatch):
    # Where the index cannot be written (read-only media) nothing is repaired: a filtered query
    # says what is wrong, and that the database is sound.
    monkeypatch.setattr(store_module.os, "access", lambda path, mode: mode != os.W_OK)
    with SearchIndex.open(config=legacy) as ix:
        assert [h.key for h in ix.search("otters", k=1, mode="keyword")] == ["b"]  # no filter: fine
        with pytest.raises(IndexStoreError) as info:
            keys(ix, "year>=2000")
    assert not isinstance(info.value, CorruptIndexError)
    message = str(info.value)
    assert "not valid JSON" in message and "itself is sound" in message and "delete" not in message


def test_an_error_is_damage_only_when_the_integrity_check_fails(fake_index_config, tmp_path):
    with SearchIndex.open(config=fake_index_config, create=True) as ix:
        ix.add_records(RECORDS)
    path = Path(fake_index_config.index) / DB_NAME
    odd = explain(path, sqlite3.OperationalError("something unexpected"))
    assert type(odd) is IndexStoreError and "passes its integrity check" in str(odd)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = path.read_bytes()
    path.write_bytes(data[:4096] + b"\xff" * (len(data) - 8192) + data[-4096:])
    damaged = explain(path, sqlite3.OperationalError("something unexpected"))
    assert isinstance(damaged, CorruptIndexError) and "integrity check" in str(damaged)


def test_a_lock_file_that_cannot_be_made_is_one_line_naming_the_folder(fake_index_config, monkeypatch):
    # Simulated (chmod does not stop root): os.open of write.lock fails as on read-only media.
    with SearchIndex.open(config=fake_index_config, create=True) as ix:
        ix.add_records(RECORDS)
    real_open = os.open

    def refuse(path, *args, **kwargs):
        if str(path).endswith("write.lock"):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    with SearchIndex.open(config=fake_index_config) as ix:
        with pytest.raises(ReadOnlyIndexError, match=rf"{fake_index_config.index} cannot be written "
                                                    r"\(Read-only file system: write.lock\)"):
            ix.add_records(RECORDS)


# -- a real read-only mount ---------------------------------------------------------------

@pytest.fixture
def read_only(tmp_path):
    """``(source, mount)``: what is written under ``source`` is seen read-only under ``mount``."""
    source, mount = tmp_path / "source", tmp_path / "mount"
    source.mkdir()
    mount.mkdir()
    done = subprocess.run(["mount", "--bind", str(source), str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {done.stderr.decode().strip()}")
    try:
        done = subprocess.run(["mount", "-o", "remount,ro,bind", str(mount)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot remount read-only here: {done.stderr.decode().strip()}")
        yield source, mount
    finally:
        # A failing test may still hold a file open under the mount: detach it lazily then.
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_healthy_index_on_read_only_media_is_searched_and_never_written(read_only, fake_config):
    source, mount = read_only
    docs = source / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("---\nyear: 2021\n---\nNotes about otters.\n")
    assert cli("index", docs, "--index", source / "ix", *FAKE).exit_code == 0
    before = sorted(p.name for p in (source / "ix").iterdir())

    result = cli("query", "otters", "--index", mount / "ix", "--where", "year>=2000")
    assert result.exit_code == 0 and "a.md" in result.output, result.output
    config = dataclasses.replace(fake_config, index=str(mount / "ix"))
    with SearchIndex.open(config=config) as ix:
        assert [h.key for h in ix.search("otters", k=1)] == [str(docs / "a.md")]
        assert ix.stats()["documents"] == 1

    for args, message in [
        (["index", mount / "docs", "--index", mount / "ix"],
         f"Error: {mount / 'ix'} cannot be written (Read-only file system: write.lock)"),
        (["remove", "x", "--index", mount / "ix"], f"Error: {mount / 'ix'} cannot be written"),
        (["index", mount / "docs", "--index", mount / "new"],
         f"Error: cannot create an index in {mount / 'new'}: Read-only file system"),
    ]:
        result = cli(*args, *FAKE)
        assert result.exit_code == 1 and result.output.startswith(message), result.output
        assert result.output.count("\n") == 1
    assert sorted(p.name for p in (source / "ix").iterdir()) == before
    assert not (source / "new").exists()


def test_an_index_copied_with_its_wal_is_read_from_read_only_media(read_only, fake_config):
    source, mount = read_only
    config = dataclasses.replace(fake_config, index=str(source / "ix"))
    with SearchIndex.open(config=config, create=True) as ix:
        ix.add_records(RECORDS)
    # A copy taken while a writer had it open: the last rows are still in searchkit.db-wal.
    holder = sqlite3.connect(source / "ix" / DB_NAME)   # not the last to close: no checkpoint
    holder.execute("SELECT count(*) FROM documents").fetchone()
    with SearchIndex.open(config=config) as ix:
        ix.add_records([("c", "Notes about beavers.", {"year": 2022})])
    assert (source / "ix" / f"{DB_NAME}-wal").stat().st_size > 0
    with SearchIndex.open(config=dataclasses.replace(fake_config, index=str(mount / "ix"))) as ix:
        assert keys(ix, "year>=2022") == ["c"]
    holder.close()


# -- what a failed or refused write leaves ------------------------------------------------

def test_a_failed_first_write_leaves_no_index_behind(fake_index_config, tmp_path):
    folder = Path(fake_index_config.index)
    with SearchIndex.open(config=fake_index_config, create=True) as ix:
        with pytest.raises(InputError, match="no such file or folder"):
            ix.add_paths([tmp_path / "missing"])
        assert not folder.exists()
        ix.add_records(RECORDS)              # the same object creates it afresh on its next write
        assert ix.stats()["documents"] == 2
    with SearchIndex.open(config=fake_index_config, create=True) as ix:   # holds documents now
        with pytest.raises(InputError):
            ix.add_paths([tmp_path / "missing"])
        assert ix.stats()["documents"] == 2

    result = cli("index", tmp_path / "missing", "--index", tmp_path / "new", *FAKE)
    assert result.exit_code == 1 and "no such file or folder" in result.output
    assert not (tmp_path / "new").exists()
    (tmp_path / "mine").mkdir()                # a folder the user made stays, empty
    assert cli("index", tmp_path / "missing", "--index", tmp_path / "mine", *FAKE).exit_code == 1
    assert (tmp_path / "mine").is_dir() and not any((tmp_path / "mine").iterdir())
    result = cli("query", "x", "--index", tmp_path / "new")
    assert result.exit_code == 1 and "is not a searchkit index" in result.output   # as if never run


def test_rebuild_to_ivf_on_a_small_index_says_why_it_is_not_used(fake_index_config):
    with SearchIndex.open(config=fake_index_config, create=True) as ix:
        ix.add_records(RECORDS)
    result = cli("rebuild", "--index", fake_index_config.index, "--index-type", "ivf")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line for line in lines if line.startswith("searchkit: ")] == [
        "searchkit: documents: 2 vectors are too few to train IVF (it needs 39): flat (exact) "
        "until a write brings enough, then IVF",
        "searchkit: chunks: 2 vectors are too few to train IVF (it needs 39): flat (exact) "
        "until a write brings enough, then IVF"]
    with SearchIndex.open(config=fake_index_config) as ix:
        assert ix.stats()["ann_type"] == "ivf"      # recorded: used once there are enough


def test_integers_past_64_bits_are_stored_and_filtered_on(fake_index_config):
    from searchkit.errors import FilterError
    with SearchIndex.open(config=fake_index_config, create=True) as ix:
        ix.add_records([("big", "A very large number.", {"n": 123456789012345678901234567890}),
                        ("small", "A small number.", {"n": 7})])
        assert keys(ix, "n>99999999999999999999", "dense") == ["big"]
        assert keys(ix, "n<99999999999999999999", "dense") == ["small"]
        assert ix.search("large", k=1, mode="keyword")[0].metadata == {"n": 123456789012345678901234567890}
    with pytest.raises(FilterError, match="number too large"):
        Filters.build(where="n>" + "9" * 400)
