"""The command line, through click's CliRunner, as the README uses it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from searchkit.cli import main

# The deterministic fake embedder: most tests here are about the commands, not retrieval
# quality; the round trip and the model checks use the real offline model.
FAKE = ["--set", "model.name=searchkit-fake"]
MINILM = ["--set", "model.name=all-MiniLM-L6-v2"]


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no stray ./config.yaml, default index lands in tmp
    runner = CliRunner()

    # result.output interleaves stderr (the runtime notice, warnings); results are on result.stdout.
    def invoke(*args):
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)
    return invoke


def test_index_query_info_round_trip(run, corpus, tmp_path):
    ix = tmp_path / "ix"
    result = run("index", corpus, "--index", ix, *MINILM)
    assert result.exit_code == 0, result.output
    assert "added 4, updated 0, unchanged 0, removed 0, skipped 0" in result.output

    result = run("query", "volcanic eruption", "--index", ix, "-k", "2")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith(" 1. ") and "volcano.txt" in lines[0]
    assert len([l for l in lines if l[:4].strip().endswith(".")]) == 2

    result = run("query", "volcanic eruption", "--index", ix, "--json", "-k", "3")
    data = json.loads(result.stdout)
    assert data["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert [h["rank"] for h in data["hits"]] == [1, 2, 3]
    assert set(data["hits"][0]) >= {"rank", "score", "path", "title", "snippet", "key", "passage"}
    assert data["hits"][0]["path"].endswith("volcano.txt")

    result = run("info", "--index", ix)
    assert result.exit_code == 0
    assert "all-MiniLM-L6-v2" in result.output and "documents: 4" in result.output
    info = json.loads(run("info", "--index", ix, "--json").output)
    assert info["model"]["dimension"] == 384 and info["documents"] == 4


def test_rerun_reports_unchanged(run, corpus, tmp_path):
    run("index", corpus, "--index", tmp_path / "ix", *FAKE)
    result = run("index", corpus, "--index", tmp_path / "ix", *FAKE)
    assert "added 0, updated 0, unchanged 4, removed 0" in result.output


def test_skipped_files_get_one_line_each(run, corpus, tmp_path):
    (corpus / "blob.txt").write_bytes(b"\x00\x00")
    (corpus / ".secret.txt").write_text("x")
    result = run("index", corpus, "--index", tmp_path / "ix", *FAKE)
    assert result.exit_code == 0
    assert f"skipped {corpus / 'blob.txt'}: binary file" in result.output
    assert f"skipped {corpus / '.secret.txt'}: hidden file" in result.output


def test_environment_variable_selects_the_index(run, corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("SEARCHKIT_INDEX", str(tmp_path / "envix"))
    monkeypatch.setenv("SEARCHKIT_MODEL_NAME", "all-MiniLM-L6-v2")
    assert run("index", corpus).exit_code == 0
    assert (tmp_path / "envix" / "searchkit.db").exists()


@pytest.mark.parametrize("args, message", [
    (["index", "does-not-exist"], "does-not-exist: no such file or folder"),
    (["query", "x", "--index", "nowhere"], "nowhere is not a searchkit index"),
    (["index", ".", "--set", "search.k=zero"], "search.k (--set): expected int"),
    (["index", ".", "--set", "nokey=1"], "unknown setting 'nokey'"),
    (["query", "x", "--config", "missing.yaml"], "config file missing.yaml does not exist"),
    (["query", "x", "--index", "idx #2"], "idx #2 is not a searchkit index"),
    (["info", "--index", "@idx"], "@idx is not a searchkit index"),
    (["info", "--index", "010"], "010 is not a searchkit index"),
    (["index", ".", "--set", "search.k=[1"], "search.k (--set): expected int"),
    (["query", "war", "-k", "1", "--set", "search.k=abc"], "search.k (--set): expected int, got 'abc'"),
    (["index", ".", "--set", "ingest.extensions="], "ingest.extensions (--set): expected a list of words"),
])
def test_bad_input_is_one_clear_line_and_nonzero_exit(run, args, message):
    result = run(*args, *FAKE)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_index_folder_is_taken_verbatim(run, corpus, tmp_path):
    assert run("index", corpus, "--index", "idx #2", *FAKE).exit_code == 0
    assert (tmp_path / "idx #2" / "searchkit.db").exists() and not (tmp_path / "idx").exists()


def test_text_setting_from_environment_is_verbatim(run, monkeypatch):
    monkeypatch.setenv("SEARCHKIT_INDEX", "*x")
    result = run("info")
    assert result.exit_code == 1 and "*x is not a searchkit index" in result.output
    assert "Traceback" not in result.output


def test_reindex_without_model_flag_keeps_the_recorded_model(run, corpus, tmp_path):
    ix = tmp_path / "ix"
    assert run("index", corpus, "--index", ix, "--model", "all-MiniLM-L6-v2").exit_code == 0
    (corpus / "new.txt").write_text("Glaciers carve valleys as they slowly move downhill.")
    result = run("index", corpus, "--index", ix)
    assert result.exit_code == 0, result.output
    assert "added 1, updated 0, unchanged 4" in result.output
    assert json.loads(run("info", "--index", ix, "--json").output)["model"]["name"] == \
        "sentence-transformers/all-MiniLM-L6-v2"


def test_reindex_with_another_explicit_model_is_refused(run, corpus, tmp_path, monkeypatch):
    ix = tmp_path / "ix"
    assert run("index", corpus, "--index", ix, *FAKE).exit_code == 0
    monkeypatch.setenv("SEARCHKIT_MODEL_NAME", str(tmp_path / "other-model"))
    result = run("index", corpus, "--index", ix)
    assert result.exit_code == 1 and "was built with model" in result.output
    assert "other-model" in result.output


def test_another_tools_config_yaml_in_the_current_folder_is_ignored(run, tmp_path):
    (tmp_path / "config.yaml").write_text("baseURL: https://example.org/\ntitle: My site\n")
    result = run("info", "--index", "nowhere")
    assert "nowhere is not a searchkit index" in result.output
    assert "ignoring config.yaml" in result.output and "unknown setting" not in result.output
    result = run("info", "--index", "nowhere", "--config", "config.yaml")
    assert result.exit_code == 1 and "unknown setting 'baseURL' (config.yaml)" in result.output


def test_model_mismatch_on_query_names_both(run, corpus, tmp_path):
    run("index", corpus, "--index", tmp_path / "ix", *MINILM)
    result = run("query", "x", "--index", tmp_path / "ix", "--model", "jinaai/jina-embeddings-v2-small-en")
    assert result.exit_code == 1
    assert "all-MiniLM-L6-v2" in result.output and "jina-embeddings-v2-small-en" in result.output


def test_remove_and_rebuild(run, corpus, tmp_path):
    ix = tmp_path / "ix"
    run("index", corpus, "--index", ix, *FAKE)
    assert "removed 1" in run("remove", str(corpus / "chess.html"), "--index", ix).output
    result = run("rebuild", "--index", ix, "--index-type", "hnsw")
    assert result.exit_code == 0 and "kind=hnsw" in result.output
    data = json.loads(run("query", "chess", "--index", ix, "--json").stdout)
    assert all(not h["path"].endswith("chess.html") for h in data["hits"])


def test_every_command_has_help(run):
    for name, command in main.commands.items():
        assert command.help, name
        result = run(name, "--help")
        assert result.exit_code == 0 and "Usage" in result.output


def test_query_modes_and_filters(run, corpus, tmp_path):
    ix = tmp_path / "ix"
    assert run("index", corpus, "--index", ix, *FAKE).exit_code == 0
    for mode in ("dense", "keyword", "hybrid"):
        data = json.loads(run("query", "Vesuvius Pompeii", "--index", ix, "--mode", mode,
                              "--json", "-k", "2").stdout)
        assert data["mode"] == mode and data["hits"][0]["path"].endswith("volcano.txt"), mode
    result = run("query", "Sicilian", "--index", ix, "--mode", "keyword")
    assert result.exit_code == 0 and "chess.html" in result.output and " 2. " not in result.output

    def paths(*args):
        result = run("query", "bread lava chess orbit", "--index", ix, "--json", *args)
        assert result.exit_code == 0, result.output
        return sorted(os.path.basename(h["path"]) for h in json.loads(result.stdout)["hits"])

    assert paths("--type", "md") == ["bread.md"]
    assert paths("--type", "html", "--type", ".rst", "--mode", "hybrid") == ["chess.html", "orbit.rst"]
    assert paths("--where", "year>=2020", "--where", "cuisine=french", "--mode", "keyword") == ["bread.md"]
    assert paths("--path", "*/corpus/*.txt") == ["volcano.txt"]
    assert paths("--since", "2000-01-01") == ["bread.md", "chess.html", "orbit.rst", "volcano.txt"]
    assert paths("--until", "2000-01-01") == []
    assert "no results" in run("query", "bread", "--index", ix, "--where", "year<1900").output
    assert "no results" in run("query", "'(", "--index", ix, "--mode", "keyword").output


@pytest.mark.parametrize("args, message", [
    (["--where", "year>>1900"], "filter where 'year>>1900'"),
    (["--type", "xlsx"], "filter type 'xlsx'"),
    (["--since", "last week"], "filter since 'last week'"),
    (["--mode", "fuzzy"], "Invalid value for '--mode'"),
])
def test_malformed_filters_are_one_line_errors(run, tmp_path, args, message):
    # Filters are checked before the index is opened.
    result = run("query", "bread", "--index", tmp_path / "none", *args)
    assert result.exit_code != 0 and message in result.output
    assert "Traceback" not in result.output


def test_commands_that_need_no_model_do_not_import_torch():
    """Startup cost: torch, sentence-transformers and bs4 load only when a command needs them."""
    code = ("import sys, searchkit.cli; "
            "print(sorted(m for m in ('torch', 'sentence_transformers', 'bs4') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"


def test_nan_front_matter_leaves_filtered_queries_working(run, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("---\nscore: .nan\n---\nNotes about capybaras.\n")
    (docs / "b.md").write_text("---\nyear: 2021\n---\nNotes about otters.\n")
    result = run("index", docs, "--index", tmp_path / "ix", *FAKE)
    assert result.exit_code == 0, result.output
    assert f"searchkit: {docs / 'a.md'}: front matter score: NaN stored as null" in result.output
    for mode in ("keyword", "dense", "hybrid"):
        result = run("query", "otters", "--where", "year>=2000", "--index", tmp_path / "ix",
                     "--mode", mode, "--json")
        assert result.exit_code == 0, result.output
        assert [h["path"] for h in json.loads(result.output)["hits"]] == [str(docs / "b.md")]
    result = run("query", "capybaras", "--where", "score!=1", "--index", tmp_path / "ix", "--json")
    assert str(docs / "a.md") in [h["path"] for h in json.loads(result.output)["hits"]]
