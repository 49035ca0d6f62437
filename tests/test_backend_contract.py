"""One contract for every storage backend, through the public API with the fake embedder: the
local backend (SQLite + FAISS), milvus-lite and a real Milvus server give the same answers.

Dense search over the same vectors (exact search on both sides: FAISS flat, Milvus FLAT) must
rank the same documents in the same order with the same scores; every filter must select the
same documents; incremental indexing, removal, rebuild and compact must count the same. BM25
implementations differ (FTS5 with Porter stemming vs Milvus's standard analyzer), so keyword
and hybrid are checked for behaviour, not for identical rankings.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from searchkit import Filters, SearchIndex
from searchkit.config import Config, MilvusConfig
from searchkit.errors import BackendError

pytest.importorskip("pymilvus", reason="pip install -e '.[milvus]'")

NOW = time.time()
# Records with metadata of every shape the filters read: numbers, text in both cases, lists,
# nested objects, booleans, and keys some records lack.
RECORDS = [{"id": f"r{i:02d}",
            "text": f"River report {i}: the river flooded the {['valley', 'plain', 'delta'][i % 3]} "
                    f"and the water rose {i} metres before the levee held.",
            "title": f"Report {i}",
            "metadata": {"n": i, "era": ["Old", "new", "NEW"][i % 3],
                         "tags": ["flood", f"t{i % 4}"] + ([i] if i % 5 == 0 else []),
                         "ok": i % 2 == 0, "meta": {"region": "north" if i < 10 else "south"},
                         **({"year": 1850 + 5 * i} if i % 3 else {})}}
           for i in range(40)]

FILTERS = [
    dict(where="n>=30"), dict(where="n<5"), dict(where="n=7"), dict(where="n!=7"),
    dict(where="era=new"), dict(where="era!=old"), dict(where="era>=n"), dict(where="era<O"),
    dict(where="tags=t1"), dict(where="tags!=t1"), dict(where="tags=15"), dict(where="tags>20"),
    dict(where="ok=true"), dict(where="ok!=true"), dict(where="meta.region=NORTH"),
    dict(where="year>=1900"), dict(where="year!=1900"), dict(where=["n>3", "era=old", "ok=false"]),
    dict(where="missing=1"), dict(where="missing!=1"), dict(type="record"), dict(type="md"),
    dict(where=[("era", "=", 'new" or n > 0 or "')]),
]


def _config(tmp_path: Path, fake_config: Config, backend: str, uri: str | None = None,
            index_type: str = "FLAT") -> Config:
    milvus = MilvusConfig(uri=uri, collection_prefix=f"c{uuid.uuid4().hex[:10]}_", index_type=index_type)
    return dataclasses.replace(fake_config, index=str(tmp_path / backend), backend=backend,
                               milvus=milvus)


def _open(config: Config, records=RECORDS) -> SearchIndex:
    ix = SearchIndex.open(config=config, create=True)
    ix.add_records(records)
    return ix


# The searches below only read: one pair of indexes serves the whole module.
@pytest.fixture(scope="module")
def local(tmp_path_factory, fake_config):
    ix = _open(_config(tmp_path_factory.mktemp("local"), fake_config, "local"))
    yield ix
    ix.close()


@pytest.fixture(scope="module", params=["lite", "server"])
def milvus(request, tmp_path_factory, fake_config):
    uri = None if request.param == "lite" else request.getfixturevalue("milvus_server_uri")
    ix = _open(_config(tmp_path_factory.mktemp("milvus"), fake_config, "milvus", uri))
    yield ix
    ix.backend.drop()
    ix.close()


def _keys(hits):
    return [h.key for h in hits]


def test_dense_rankings_and_scores_match(local, milvus):
    for query in ["river flooded the delta", "levee held 12 metres", "plain water"]:
        want, got = local.search(query, k=10, mode="dense"), milvus.search(query, k=10, mode="dense")
        assert _keys(got) == _keys(want)
        assert [h.score for h in got] == pytest.approx([h.score for h in want], abs=1e-5)
        assert [h.passage.text for h in got] == [h.passage.text for h in want]
        assert [h.metadata for h in got] == [h.metadata for h in want]


def test_late_rerank_and_passages_match(local, milvus):
    query = "water rose 30 metres"
    assert _keys(milvus.search(query, k=5, mode="dense", rerank="late")) == \
        _keys(local.search(query, k=5, mode="dense", rerank="late"))
    for distinct in (False, True):
        want = local.search(query, k=8, mode="dense", chunks=True, distinct=distinct)
        got = milvus.search(query, k=8, mode="dense", chunks=True, distinct=distinct)
        assert [(h.key, h.passage.char_start) for h in got] == [(h.key, h.passage.char_start) for h in want]


@pytest.mark.parametrize("filters", FILTERS, ids=str)
def test_filters_select_the_same_documents(local, milvus, filters):
    f = Filters.build(**filters)
    want = local.search("river report", k=100, mode="dense", filters=f)
    got = milvus.search("river report", k=100, mode="dense", filters=f)
    assert sorted(_keys(got)) == sorted(_keys(want))
    assert _keys(got) == _keys(want)


def test_incremental_remove_rebuild_compact(tmp_path, fake_config, milvus):
    # Fresh indexes: this test writes.
    uri = milvus.backend.uri if not milvus.backend.lite else None
    local = _open(_config(tmp_path, fake_config, "local"))
    milvus = _open(_config(tmp_path, fake_config, "milvus", uri))
    changed = [dict(RECORDS[0], text="A new text about a dam."), dict(RECORDS[1], title="Renamed"),
               *RECORDS[2:], {"id": "extra", "text": "An extra record about canals."}]
    for ix in (local, milvus):
        report = ix.add_records(changed)
        assert (report.added, report.updated, report.unchanged, report.relabelled) == (1, 2, 38, 1)
        assert ix.remove(["r05", "r06", "nope"]) == 2
        stats = ix.stats()
        assert (stats["documents"], stats["model"]["name"]) == (39, "searchkit-fake")
        ix.rebuild()
        ix.compact()
    query = "a dam and canals"
    assert _keys(milvus.search(query, k=5, mode="dense")) == _keys(local.search(query, k=5, mode="dense"))
    assert milvus.search("renamed", k=1, mode="dense", filters={"where": "n=1"})[0].title == "Renamed"
    milvus.backend.drop()
    for ix in (local, milvus):
        ix.close()


def test_keyword_and_hybrid(local, milvus):
    if not milvus.backend.full_text:
        for mode in ("keyword", "hybrid"):
            with pytest.raises(BackendError, match=r"v2\.3\.5"):
                milvus.search("delta", mode=mode)
        return
    for ix in (local, milvus):
        hits = ix.search("delta", k=20, mode="keyword")
        assert {h.key for h in hits} == {r["id"] for i, r in enumerate(RECORDS) if i % 3 == 2}
        assert all("delta" in h.passage.text for h in hits)
        assert len(ix.search("delta levee", k=7, mode="hybrid", fusion="rrf")) == 7
        assert not ix.search("delta", k=5, mode="keyword", filters={"where": "n<2"})


def test_copy_index_moves_an_index_between_backends_without_embedding(local, tmp_path, fake_config):
    script = Path(__file__).resolve().parents[1] / "scripts" / "copy_index.py"
    target = tmp_path / "moved"
    # The local backend serves other processes meanwhile: the copy reads it from one.
    out = subprocess.run([sys.executable, str(script), "--index", local.folder, "--to-index", target,
                          "--set-to", "backend=milvus", "--set-to", "milvus.index_type=FLAT"],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"copied {len(RECORDS)} documents" in out.stdout
    config = dataclasses.replace(fake_config, backend="milvus", milvus=MilvusConfig(index_type="FLAT"))
    with SearchIndex.open(target, config=config) as moved:
        query = "the river flooded the delta"
        assert _keys(moved.search(query, k=10, mode="dense")) == _keys(local.search(query, k=10, mode="dense"))
        assert moved.stats()["model"] == local.stats()["model"]
        assert moved.add_records(RECORDS).unchanged == len(RECORDS)     # nothing to embed again
