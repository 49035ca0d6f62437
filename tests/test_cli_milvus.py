"""Every command on ``backend: milvus``, through click's CliRunner as the README uses it: an
embedded milvus-lite file in the index folder, and a real Milvus server."""

from __future__ import annotations

import json
import os
import uuid

import pytest
from click.testing import CliRunner

from searchkit.cli import main

pytest.importorskip("pymilvus", reason="pip install -e '.[milvus]'")

FAKE = ["--set", "model.name=searchkit-fake", "--set", "backend=milvus"]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def milvus_args(request, tmp_path):
    """Index arguments for milvus-lite (the default file in --index) or the test server."""
    args = [*FAKE, "--index", tmp_path / "ix"]
    if getattr(request, "param", "lite") == "server":
        uri = request.getfixturevalue("milvus_server_uri")
        args += ["--set", f"milvus.uri={uri}", "--set", f"milvus.collection_prefix=cli{uuid.uuid4().hex[:8]}_"]
    return args


def test_every_command_on_milvus_lite(corpus, tmp_path, monkeypatch, milvus_args):
    monkeypatch.chdir(tmp_path)
    result = invoke("index", corpus, *milvus_args)
    assert result.exit_code == 0, result.output
    assert "added 4, updated 0, unchanged 0, removed 0, skipped 0" in result.output
    assert (tmp_path / "ix" / "milvus.db").exists()

    # Dense: the same ranking as the local backend over the same (fake) vectors.
    local = [*FAKE[:2], "--index", tmp_path / "local"]
    assert invoke("index", corpus, *local).exit_code == 0
    for query in ("magma eruption lava", "bread", "satellite orbit"):
        want = json.loads(invoke("query", query, *local, "--mode", "dense", "--json").output)["hits"]
        got = json.loads(invoke("query", query, *milvus_args, "--mode", "dense", "--json").output)["hits"]
        assert [(h["path"], round(h["score"], 4)) for h in got] == [(h["path"], round(h["score"], 4)) for h in want]
    for mode in ("keyword", "hybrid"):
        result = invoke("query", "magma eruption lava", *milvus_args, "--mode", mode, "--json", "-k", "2")
        assert result.exit_code == 0, result.output
        hits = json.loads(result.output)["hits"]
        assert "volcano.txt" in {h["path"].rsplit("/", 1)[-1] for h in hits}, (mode, hits)
        if mode == "keyword":
            assert [h["path"].rsplit("/", 1)[-1] for h in hits] == ["volcano.txt"]
            assert "lava" in hits[0]["passage"]["text"].lower()

    result = invoke("query", "bread", *milvus_args, "--mode", "hybrid", "--fusion", "rrf", "--json",
                    "--where", "cuisine=FRENCH", "--type", "md", "--path", f"{corpus}/",
                    "--since", "2000-01-01")
    assert [h["title"] for h in json.loads(result.output)["hits"]] == ["Baking sourdough bread"]
    result = invoke("query", "bread", *milvus_args, "--json", "--chunks", "--distinct", "-k", "3")
    assert len({h["key"] for h in json.loads(result.output)["hits"]}) == 3

    (corpus / "bread.md").write_text("---\ntitle: Rye\n---\nRye bread with caraway.", encoding="utf-8")
    os.remove(corpus / "chess.html")
    result = invoke("index", corpus, *milvus_args)
    assert "added 0, updated 1, unchanged 2, removed 1" in result.output, result.output

    info = invoke("info", *milvus_args)
    assert info.exit_code == 0, info.output
    assert "documents: 3" in info.output and "milvus uri" in info.output
    stats = json.loads(invoke("info", *milvus_args, "--json").output)
    assert stats["milvus"]["full-text"] and stats["ann_type"] == "milvus HNSW"

    assert "removed 1" in invoke("remove", corpus / "orbit.rst", *milvus_args).output
    result = invoke("rebuild", *milvus_args, "--index-type", "flat")
    assert result.exit_code == 0 and "index_type=FLAT" in result.output, result.output
    result = invoke("compact", *milvus_args)
    assert result.exit_code == 0 and "compacted" in result.output, result.output
    hits = json.loads(invoke("query", "volcano", *milvus_args, "--json").output)["hits"]
    assert {h["path"].rsplit("/", 1)[-1] for h in hits} == {"volcano.txt", "bread.md"}


@pytest.mark.parametrize("milvus_args", ["server"], indirect=True)
def test_server_dense_filters_and_the_keyword_error(corpus, tmp_path, monkeypatch, milvus_args):
    monkeypatch.chdir(tmp_path)
    result = invoke("index", corpus, *milvus_args)
    assert result.exit_code == 0, result.output
    result = invoke("query", "magma eruption lava", *milvus_args, "--mode", "dense", "--json",
                    "--where", "cuisine!=french", "--path", f"{corpus}/")
    hits = json.loads(result.output)["hits"]
    assert {h["path"].rsplit("/", 1)[-1] for h in hits} == {"volcano.txt", "chess.html", "orbit.rst"}
    for mode in ("keyword", "hybrid"):
        result = invoke("query", "lava", *milvus_args, "--mode", mode)
        assert result.exit_code != 0
        assert "Milvus >= 2.5" in result.output and "v2.3.5" in result.output
        assert "Traceback" not in result.output
    result = invoke("query", "lava", *milvus_args, "--mode", "dense", "--path", "*/volcano.txt")
    assert result.exit_code != 0 and "matches paths only by prefix" in result.output
    assert "documents: 4" in invoke("info", *milvus_args).output
    assert "removed 4" in invoke("remove", corpus, *milvus_args).output


def test_a_bad_milvus_setting_is_one_line(tmp_path, corpus, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("index", corpus, *FAKE, "--index", tmp_path / "ix", "--set", "milvus.index_type=HNSWX")
    assert result.exit_code != 0 and "milvus.index_type" in result.output
    result = invoke("index", corpus, *FAKE, "--set", f"milvus.uri={tmp_path / 'file.txt'}")
    assert result.exit_code != 0 and "must end in .db" in result.output
    result = invoke("query", "x", *FAKE, "--index", tmp_path / "none")
    assert result.exit_code != 0 and "does not exist" in result.output
