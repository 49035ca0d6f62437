"""Index lifecycle: deletes without bloat, compaction, open-time checks, the generation scheme
and readers that hold a snapshot while the writer moves on."""

import dataclasses
import logging
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from searchkit import SearchIndex
from searchkit.backends.local.ann import VectorIndex
from searchkit.backends.local.caches import VectorCaches
from searchkit.cli import main
from searchkit.config import IngestConfig
from searchkit.errors import CorruptIndexError, NotAnIndexError, SchemaVersionError
from searchkit.backends.local.store import DB_NAME, SCHEMA_VERSION


@pytest.fixture
def config(fake_index_config):
    """This file tests storage, not retrieval quality: the deterministic fake embedder."""
    return fake_index_config

WORDS = ("volcano lava magma ash", "bread flour yeast oven", "chess king pawn castle",
         "orbit rocket satellite burn", "jazz saxophone swing band", "rain forest frog canopy")


def records(n, version=0, start=0):
    return [(f"r{i}", f"Record {i}, version {version}: {WORDS[i % len(WORDS)]} and number {i * 7 + version}.")
            for i in range(start, start + n)]


@pytest.fixture
def logs(caplog, monkeypatch):
    # The CLI stops propagation to keep its own one-line format; caplog listens at the root.
    monkeypatch.setattr(logging.getLogger("searchkit"), "propagate", True)
    caplog.set_level(logging.INFO, logger="searchkit")
    return caplog


def with_ann(config, **ann):
    return dataclasses.replace(config, ann=dataclasses.replace(config.ann, **ann))


def faiss_files(folder):
    return sorted(p.name for p in folder.glob("*.faiss"))


def live_and_total(ix, table):
    with ix.backend.store.snapshot():
        return ix.backend.store.count(table), ix.backend.ann(table).ntotal


def assert_every_vector_finds_itself(ix):
    with ix.backend.store.snapshot():
        for table in ("documents", "chunks"):
            ids, vectors = ix.backend.store.vectors(table, ix.model_info.dimension)
            _, found = ix.backend.ann(table).search(vectors, 1, nprobe=64, ef_search=64)
            assert (found[:, 0] == ids).mean() == 1.0, table


# -- deletes without bloat ------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_replace_and_remove_cycles_do_not_bloat(config, kind):
    config = with_ann(config, type=kind, nlist=2, compact_ratio=0.2)
    with SearchIndex.open(config=config, create=True) as ix:
        ix.add_records(records(48))
        sizes = []
        for cycle in range(1, 5):
            ix.add_records(records(20, version=cycle))          # replace some
            ix.remove([f"r{i}" for i in range(40, 46)])         # remove some ...
            ix.add_records(records(6, version=cycle, start=40))  # ... and bring them back
            for table in ("documents", "chunks"):
                live, total = live_and_total(ix, table)
                if kind == "hnsw":
                    assert total - live <= 0.2 * total, (cycle, table)
                else:
                    assert total == live, (cycle, table)
            assert ix.backend.ann("documents").params.kind == kind
            sizes.append(sum(p.stat().st_size for p in ix.folder.glob("*.faiss")))
            assert len(faiss_files(ix.folder)) == 2               # one generation on disk
        assert ix.backend.store.count("documents") == 48
        assert max(sizes) <= sizes[0] * (1.35 if kind == "hnsw" else 1.0)
        assert_every_vector_finds_itself(ix)


def test_auto_moves_documents_to_ivf_by_the_bytes_a_query_would_scan():
    """``auto``: the documents' exact scan is bounded in bytes (dimension counts), the chunk
    index by its count alone."""
    from searchkit.backends.local.ann import choose_params
    from searchkit.config import AnnConfig
    auto = AnnConfig()                                  # 100k vectors, 16 MB of documents
    assert choose_params(auto, 10_000, "documents", 384).kind == "flat"    # 14.6 MB
    assert choose_params(auto, 12_000, "documents", 384).kind == "ivf"     # 17.6 MB
    assert choose_params(auto, 12_000, "documents", 64).kind == "flat"
    assert choose_params(auto, 100_000, "documents", 64).kind == "ivf"     # 24.4 MB
    assert choose_params(auto, 100_000, "chunks", 384).kind == "flat"
    assert choose_params(auto, 100_001, "chunks", 64).kind == "ivf"
    assert choose_params(AnnConfig(type="flat"), 10 ** 6, "documents", 384).kind == "flat"


def test_a_growing_collection_moves_its_documents_to_ivf_and_keeps_every_hit(config):
    # 60 documents of 64-d float32 are 15 KB: past a 0.01 MB budget, under 39 vectors a list.
    config = with_ann(config, auto_flat_mb_documents=0.01)
    with SearchIndex.open(config=config, create=True) as ix:
        ix.add_records(records(30))
        assert ix.backend.ann("documents").params.kind == "flat"     # 7.5 KB
        ix.add_records(records(60, start=30))
        assert ix.backend.ann("documents").params.kind == "ivf"
        assert ix.backend.ann("chunks").params.kind == "flat"
        assert ix.stats()["ann"]["documents"]["kind"] == "ivf"
        assert_every_vector_finds_itself(ix)
    with SearchIndex.open(config=config) as ix:                      # as saved
        assert ix.backend.ann("documents").params.kind == "ivf"
        hits = ix.search("volcano lava magma", k=5, mode="dense")
        assert hits and all("volcano" in h.snippet for h in hits)


def test_compact_drops_hnsw_tombstones_and_auto_compaction_follows_the_ratio(config, logs):
    config = with_ann(config, type="hnsw", compact_ratio=0.25)
    with SearchIndex.open(config=config, create=True) as ix:
        ix.add_records(records(12))
        ix.remove(["r0", "r1"])                     # 2/12 = 17 %: stays as tombstones
        assert live_and_total(ix, "documents") == (10, 12)
        result = ix.compact()
        assert result["dropped"]["documents"] == 2
        assert live_and_total(ix, "documents") == (10, 10)
        ix.remove(["r2", "r3", "r4"])               # 3/10 = 30 % > 25 %: compacted at once
        assert live_and_total(ix, "documents") == (7, 7)
        assert "compacted documents" in logs.text
        assert {h.key for h in ix.search("volcano lava", k=10)} == {f"r{i}" for i in range(5, 12)}


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_remove_then_query_reports_no_false_disagreement(config, logs, kind):
    """HNSW tombstones saved in the file are expected, and a remove loads its caches before it
    commits: neither may read as a FAISS file lagging behind or disagreeing with SQLite."""
    config = with_ann(config, type=kind, compact_ratio=1.0)
    with SearchIndex.open(config=config, create=True) as ix:
        ix.add_records(records(10))
    with SearchIndex.open(config=config) as ix:
        assert ix.remove(["r3"]) == 1
    with SearchIndex.open(config=config) as ix:   # a fresh reader loads the saved file
        assert "r3" not in {h.key for h in ix.search("chess king", k=10)}
    assert not [r.getMessage() for r in logs.records if "brought level" in r.getMessage()]


def test_compact_command(config, tmp_path):
    config = with_ann(config, type="hnsw", compact_ratio=1.0)
    with SearchIndex.open(config=config, create=True) as ix:
        ix.add_records(records(8))
        ix.remove(["r0", "r1", "r2"])
    result = CliRunner().invoke(main, ["compact", "--index", config.index])
    assert result.exit_code == 0, result.output
    assert "tombstones dropped: documents 3" in result.output
    with SearchIndex.open(config=config) as ix:
        assert live_and_total(ix, "documents") == (5, 5)


# -- open-time checks -----------------------------------------------------------------------

@pytest.fixture
def built(config):
    with SearchIndex.open(config=config, create=True) as ix:
        ix.add_records(records(12))
    return config


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("damage", ["garbage", "truncated", "zeroed_middle"])
def test_corrupt_sqlite_is_a_clear_error(built, damage):
    db = built.index + "/" + DB_NAME
    with sqlite3.connect(db) as conn:                # fold the WAL in so the file is everything
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = open(db, "rb").read()
    if damage == "garbage":
        data = bytes(range(256)) * 40
    elif damage == "truncated":
        data = data[:len(data) // 3]
    else:
        data = data[:4096] + b"\xff" * (len(data) - 8192) + data[-4096:]
    open(db, "wb").write(data)
    for args in (["query", "volcano", "--index", built.index], ["info", "--index", built.index],
                 ["index", built.index, "--index", built.index]):
        result = cli(*args)
        assert result.exit_code == 1, (args, result.output)
        assert isinstance(result.exception, SystemExit), (args, result.exception)  # no traceback
        assert result.output.count("\n") == 1
        assert any(w in result.output for w in ("damaged", "not a readable SQLite")), result.output


def test_foreign_sqlite_and_newer_schema_are_refused(built, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    with sqlite3.connect(foreign / DB_NAME) as conn:
        conn.execute("CREATE TABLE songs (title TEXT)")
    with pytest.raises(NotAnIndexError, match="not a searchkit index"):
        SearchIndex.open(foreign, config=built)
    result = cli("query", "x", "--index", foreign)
    assert result.exit_code == 1 and "not a searchkit index" in result.output

    with sqlite3.connect(built.index + "/" + DB_NAME) as conn:
        conn.execute("UPDATE manifest SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION + 1)])
    with pytest.raises(SchemaVersionError, match="newer searchkit"):
        SearchIndex.open(config=built)
    with sqlite3.connect(built.index + "/" + DB_NAME) as conn:
        conn.execute("UPDATE manifest SET value = '{not json' WHERE key = 'schema_version'")
    with pytest.raises(CorruptIndexError, match="manifest"):
        SearchIndex.open(config=built)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "wrong_dim", "flipped_bit"])
def test_damaged_faiss_file_is_rebuilt_with_one_line(built, damage, logs, tmp_path):
    folder = tmp_path / "ix"
    path = sorted(folder.glob("documents.g*.faiss"))[0]
    data = path.read_bytes()
    if damage == "flipped_bit":
        # Inside the vector data: FAISS alone would load this and answer with a wrong vector.
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0x10
        path.write_bytes(bytes(flipped))
        VectorIndex.load(path)  # (shows that it does)
    elif damage == "truncated":
        path.write_bytes(data[:len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(len(data)))
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        VectorIndex.build(VectorIndex.load(path).params, 8, np.arange(3),
                          np.eye(3, 8, dtype=np.float32)).save(path)
    with SearchIndex.open(config=built) as ix:
        hits = ix.search("chess king pawn castle", k=3)
        assert hits[0].key in {"r2", "r8"}
        assert live_and_total(ix, "documents") == (12, 12)
    # The reader could take the writer lock: it saved the file it rebuilt, and said so once.
    lines = [r.getMessage() for r in logs.records if path.name in r.getMessage()]
    assert len(lines) == 1 and lines[0].endswith("rebuilt from SQLite and saved"), lines
    VectorIndex.load(path, None)
    result = cli("query", "chess king", "--index", built.index)
    assert result.exit_code == 0 and "Traceback" not in result.output
    assert "FAISS" not in result.output                  # repaired for good: nothing to say


def test_a_reader_that_cannot_repair_says_so_once_and_the_next_writer_repairs(built, logs, tmp_path):
    from searchkit.backends.local.locking import WriteLock

    folder = tmp_path / "ix"
    path = sorted(folder.glob("documents.g*.faiss"))[0]
    path.write_bytes(b"garbage" * 100)
    damaged = path.read_bytes()
    with WriteLock(folder):                     # a writer is busy: the reader may not write
        with SearchIndex.open(config=built) as ix:
            for _ in range(3):
                assert ix.search("chess king pawn castle", k=3)[0].key in {"r2", "r8"}
        with SearchIndex.open(config=built) as ix:   # another open in the same process
            ix.search("chess king", k=3)
    lines = [r.getMessage() for r in logs.records if path.name in r.getMessage()]
    assert len(lines) == 1 and lines[0].endswith("using SQLite instead until a write replaces it")
    assert path.read_bytes() == damaged
    # The next writer repairs it, even one with nothing to commit.
    with SearchIndex.open(config=built) as ix:
        report = ix.add_records(records(12))
        assert report.unchanged == 12
    files = sorted(folder.glob("documents.g*.faiss"))
    assert len(files) == 1 and files[0].read_bytes() != damaged
    VectorIndex.load(files[0], None)


def test_writer_killed_between_commit_and_rename(built, monkeypatch, logs):
    """The SQLite commit lands, the FAISS save dies: readers catch up from the older file."""
    folder = built.index
    before = faiss_files(__import__("pathlib").Path(folder))
    real_save = VectorIndex.save

    def die(self, path):
        # Leave a half-written temporary file behind, as a SIGKILL mid-write would.
        (path.parent / (path.name + ".x1y2.tmp")).write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(VectorIndex, "save", die)
    with SearchIndex.open(config=built) as ix:
        with pytest.raises(KeyboardInterrupt):
            ix.add_records(records(4, version=9) + [("new", "A brand new note about submarines and sonar.")])
    monkeypatch.setattr(VectorIndex, "save", real_save)
    from pathlib import Path
    assert faiss_files(Path(folder)) == before          # only the older generation on disk
    with SearchIndex.open(config=built) as ix:
        assert ix.search("submarines and sonar", k=1)[0].key == "new"
        assert ix.backend.store.documents([h.doc_id for h in ix.search("Record 1, version 9", k=1)])
        assert live_and_total(ix, "documents") == (13, 13)
        assert "is older than the database" in logs.text
        ix.add_records([("later", "Another note.")])    # the next write tidies up
    assert not list(Path(folder).glob("*.tmp"))
    assert len(faiss_files(Path(folder))) == 2


def test_reader_snapshot_keeps_a_consistent_view_across_a_swap(built):
    with SearchIndex.open(config=built) as reader, SearchIndex.open(config=built) as writer:
        assert reader.search("volcano lava magma", k=1)[0].key in {"r0", "r6"}
        with reader.backend.store.snapshot():
            old = {h.key: h.doc_id for h in reader.search("volcano lava magma", k=12)}
            writer.add_records([(k, f"Now about taxes and accounting {k}.") for k in ("r0", "r6")])
            writer.remove(["r11"])
            assert not list(writer.folder.glob(f"*.g{reader.backend.caches.loaded_generation('documents')}.faiss"))
            again = {h.key: h.doc_id for h in reader.search("volcano lava magma", k=12)}
            assert again == old                          # same rows, same ids, inside the snapshot
        fresh = reader.search("volcano lava magma", k=12)
        assert {h.key for h in fresh} == {f"r{i}" for i in range(11)}
        assert all(h.doc_id not in old.values() for h in fresh if h.key in ("r0", "r6"))
        assert reader.search("taxes and accounting", k=1)[0].key in {"r0", "r6"}


def test_writer_checkpoints_faiss_during_a_long_write(config, monkeypatch):
    config = dataclasses.replace(config, ingest=IngestConfig(commit_every=2, checkpoint_seconds=1e-9))
    saves = []
    real = VectorCaches.save

    def spy(self):
        saves.append(self.store.generation)
        real(self)

    monkeypatch.setattr(VectorCaches, "save", spy)
    with SearchIndex.open(config=config, create=True) as ix:
        ix.add_records(records(8))
    assert len(saves) >= 4                              # one per commit, then the final one


def test_two_processes_creating_one_index_do_not_collide(config):
    errors = []

    def create():
        try:
            SearchIndex.open(config=config, create=True).close()
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_a_commit_landing_mid_search_does_not_mix_generations(built, monkeypatch):
    """The writer replaces every document between the reader's FAISS lookup and its row
    fetch: the reader still answers from one generation (its snapshot), in full."""
    with SearchIndex.open(config=built) as reader, SearchIndex.open(config=built) as writer:
        reader.search("warm up", k=3)
        real, fired = reader.backend.store.documents, []

        def documents(ids):
            if not fired:
                fired.append(True)
                writer.add_records([(f"r{i}", f"Replaced note {i} about sailing boats.") for i in range(12)])
            return real(ids)

        monkeypatch.setattr(reader.backend.store, "documents", documents)
        hits = reader.search("volcano lava magma", k=5)
        assert fired and len(hits) == 5
        assert all("Record" in h.snippet for h in hits)          # the old generation, whole
        monkeypatch.undo()
        assert all("Replaced" in h.snippet for h in reader.search("volcano lava magma", k=5))


def test_faiss_files_are_as_readable_as_the_database(built):
    """Other users who can read searchkit.db can read the FAISS caches too (umask decides)."""
    folder = Path(built.index)
    db_mode = (folder / DB_NAME).stat().st_mode & 0o777
    for path in folder.glob("*.faiss"):
        assert path.stat().st_mode & 0o777 == db_mode, path.name


def test_rerun_with_nothing_new_tidies_after_a_killed_writer(built):
    """A writer killed after its last commit but before its save leaves stale FAISS files and a
    temporary file; the next run has nothing to embed but must still leave the folder tidy."""
    folder = Path(built.index)
    with SearchIndex.open(config=built) as ix:
        generation = ix.backend.store.generation
    for path in folder.glob("*.faiss"):   # as if saved one generation ago
        path.rename(path.with_name(path.name.replace(f".g{generation}.", f".g{generation - 1}.")))
    (folder / f"chunks.g{generation}.faiss.dead.tmp").write_bytes(b"partial")
    with SearchIndex.open(config=built) as ix:
        report = ix.add_records(records(12))
        assert report.unchanged == 12 and report.embedded == 0
        current = ix.backend.store.generation
        assert ix.backend.caches.files_current()
    assert faiss_files(folder) == [f"chunks.g{current}.faiss", f"documents.g{current}.faiss"]
    assert not list(folder.glob("*.tmp"))
