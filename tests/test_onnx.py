"""The ONNX Runtime path: export and its cache, vectors equal to torch's, the runtime choice,
int8, and a `searchkit query` that never imports torch."""

from __future__ import annotations

import dataclasses
import logging
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from searchkit import ConfigError, SearchIndex
from searchkit.cli import main
from searchkit.config import ChunkingConfig, Config, ModelConfig, load_config
from searchkit.ingest.documents import record_document
from searchkit.embedding import onnx_cache, onnx_runtime, runtime
from searchkit.embedding.embedder import Embedder
from searchkit.ingest.embedding_pass import embed_documents
from tests.jina_fixtures import write_tiny_jina_checkpoint

ROOT = Path(__file__).resolve().parents[1]
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
TOL = 1e-4
LONG = " ".join(f"The river town built bridge number {i} over the water, and the history of "
                f"each search index chapter {i} is a long text about data science." for i in range(60))
TEXTS = ["Volcanoes form where magma from the mantle reaches the surface; an eruption throws ash and lava.",
         "Mix flour, water and salt with an active starter, let the dough rise overnight, bake it hot.",
         "The Sicilian Defence answers the king's pawn with c5. Castling early protects the king.",
         LONG, "tiny"]
QUERIES = ["how do volcanoes erupt", "bridges over water", "sourdough"]


@pytest.fixture(scope="session")
def onnx_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="session")
def minilm_onnx(onnx_dir) -> Embedder:
    return Embedder.load(ModelConfig(name=MINILM, runtime="onnx", onnx_cache=str(onnx_dir)))


def _docs(texts):
    return [record_document(f"d{i}", t) for i, t in enumerate(texts)]


def assert_same_vectors(torch_e: Embedder, onnx_e: Embedder, texts, mode: str = "late") -> None:
    """Tokens identical; document, chunk and query vectors within TOL of each other."""
    for text in texts:
        a, b = torch_e.tokenize(text), onnx_e.tokenize(text)
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_array_equal(a.offsets, b.offsets)
    chunking = ChunkingConfig(mode=mode, size=16)
    ref, got = embed_documents(torch_e, _docs(texts), chunking), embed_documents(onnx_e, _docs(texts), chunking)
    for r, g in zip(ref, got):
        assert np.abs(r.vector - g.vector).max() <= TOL
        assert len(r.chunks) == len(g.chunks) > 0
        assert np.abs(np.stack([c.vector for c in r.chunks]) - np.stack([c.vector for c in g.chunks])).max() <= TOL
    assert np.abs(torch_e.encode_queries(QUERIES) - onnx_e.encode_queries(QUERIES)).max() <= TOL
    assert np.abs(torch_e.encode_queries(QUERIES[:1]) - onnx_e.encode_queries(QUERIES[:1])).max() <= TOL


@pytest.mark.parametrize("mode", ["late", "naive"])
def test_minilm_on_onnx_gives_torchs_vectors(embedder, minilm_onnx, mode):
    assert embedder.runtime == "torch" and minilm_onnx.runtime == "onnx"
    assert minilm_onnx.info == embedder.info  # same dimension, windows, limits
    assert len(embedder.tokenize(LONG)) > embedder.info.window_tokens  # several windows, stitched
    assert_same_vectors(embedder, minilm_onnx, TEXTS, mode)


@pytest.mark.parametrize("hidden, heads", [(64, 4), (96, 12)])
def test_tiny_jinabert_on_onnx_gives_torchs_vectors(tmp_path, hidden, heads):
    folder = write_tiny_jina_checkpoint(tmp_path / "jina", hidden=hidden, heads=heads)
    config = ModelConfig(name=str(folder), fallback=False, onnx_cache=str(tmp_path / "cache"))
    torch_e = Embedder.load(dataclasses.replace(config, runtime="torch"))
    onnx_e = Embedder.load(dataclasses.replace(config, runtime="onnx"))
    assert onnx_e.info == torch_e.info and onnx_e.info.window_tokens == 8192
    # A 600-token window with a short one padded beside it in one batch.
    short = dataclasses.replace(config, window_tokens=600)
    assert_same_vectors(Embedder.load(dataclasses.replace(short, runtime="torch")),
                        Embedder.load(dataclasses.replace(short, runtime="onnx")), TEXTS)


def test_jinabert_export_runs_8192_token_windows(tmp_path):
    folder = write_tiny_jina_checkpoint(tmp_path / "jina", hidden=32, heads=2, intermediate=64)
    config = ModelConfig(name=str(folder), fallback=False, onnx_cache=str(tmp_path / "cache"))
    torch_e = Embedder.load(dataclasses.replace(config, runtime="torch"))
    onnx_e = Embedder.load(dataclasses.replace(config, runtime="onnx"))
    text = "the history of the search index is a long text . " * 900
    tokens = [torch_e.tokenize(text)]
    assert len(tokens[0]) > 8192  # a full 8192-token window and a second one
    ref, got = torch_e.token_matrices(tokens)[0], onnx_e.token_matrices(tokens)[0]
    assert ref.shape == got.shape
    ref, got = ref / np.linalg.norm(ref, axis=1, keepdims=True), got / np.linalg.norm(got, axis=1, keepdims=True)
    assert np.abs(ref - got).max() <= TOL


@pytest.fixture
def caplog(caplog, monkeypatch):
    """caplog, also after a CLI test made the searchkit logger stop propagating to the root."""
    monkeypatch.setattr(logging.getLogger("searchkit"), "propagate", True)
    return caplog


def test_export_is_kept_and_a_damaged_file_is_exported_again(tmp_path, caplog):
    folder = write_tiny_jina_checkpoint(tmp_path / "jina")
    config = ModelConfig(name=str(folder), fallback=False, onnx_cache=str(tmp_path / "cache"))
    out = runtime.export(config)
    assert out.parent == tmp_path / "cache" and (out / "manifest.json").is_file()
    model = out / "model.onnx"
    stamp = model.stat().st_mtime_ns
    assert runtime.export(config) == out and model.stat().st_mtime_ns == stamp  # never re-exported

    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="searchkit"):
        assert onnx_runtime.open_export(folder, config.onnx_cache) is None
    assert "damaged" in caplog.text
    embedder = Embedder.load(dataclasses.replace(config, runtime="onnx"))  # exports it again
    assert embedder.runtime == "onnx" and onnx_cache.intact(folder, config.onnx_cache)


def test_a_changed_model_folder_gets_a_new_export(tmp_path):
    folder = write_tiny_jina_checkpoint(tmp_path / "jina")
    before = onnx_cache.export_folder(folder, str(tmp_path / "cache"))
    write_tiny_jina_checkpoint(folder, seed=1)  # other weights, same place
    (folder / "model.safetensors").touch()
    assert onnx_cache.export_folder(folder, str(tmp_path / "cache")) != before


def test_auto_exports_on_the_first_index_build_and_queries_use_onnx(tmp_path, caplog):
    folder = write_tiny_jina_checkpoint(tmp_path / "jina")
    config = Config(index=str(tmp_path / "ix"),
                    model=ModelConfig(name=str(folder), fallback=False, onnx_cache=str(tmp_path / "cache")))
    # A query-only process does not wait for an export: torch, with a one-line hint.
    with caplog.at_level(logging.INFO, logger="searchkit"):
        assert Embedder.load(config.model).runtime == "torch"
    assert "searchkit model export" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="searchkit"), SearchIndex.open(config=config, create=True) as ix:
        ix.add_records([("a", "the history of data science"), ("b", "a chapter about a long query")])
        assert ix.embedder.runtime == "onnx"
    assert "exporting" in caplog.text and "model runtime: onnx" in caplog.text
    with SearchIndex.open(config=config) as ix:
        assert ix.search("data science", k=1)[0].key == "a"
        assert ix.embedder.runtime == "onnx"


def test_one_runtime_builds_the_other_queries_with_the_same_ranking(tmp_path, corpus, onnx_dir, minilm_onnx):
    def config(name: str, runtime_: str) -> Config:
        return Config(index=str(tmp_path / name),
                      model=ModelConfig(name=MINILM, runtime=runtime_, onnx_cache=str(onnx_dir)))

    def ranking(cfg: Config, query: str, **kw) -> list[tuple[str, float]]:
        with SearchIndex.open(config=cfg) as ix:
            return [(h.key, h.score) for h in ix.search(query, k=4, **kw)]

    for built, queried in (("torch", "onnx"), ("onnx", "torch")):
        with SearchIndex.open(config=config(built, built), create=True) as ix:
            ix.add_paths([corpus])
        for query in QUERIES + ["pieces on a board", "satellite engine burns"]:
            for kw in ({"mode": "dense"}, {"mode": "dense", "rerank": "late"}, {"chunks": True, "mode": "dense"}):
                same, other = ranking(config(built, built), query, **kw), ranking(config(built, queried), query, **kw)
                assert [k for k, _ in same] == [k for k, _ in other]
                assert np.allclose([s for _, s in same], [s for _, s in other], atol=TOL)


def test_int8_is_recorded_in_the_index_and_its_queries_use_it(tmp_path):
    folder = write_tiny_jina_checkpoint(tmp_path / "jina")
    model = ModelConfig(name=str(folder), fallback=False, onnx_cache=str(tmp_path / "cache"), quantize="int8")
    config = Config(index=str(tmp_path / "ix"), model=model)
    with SearchIndex.open(config=config, create=True) as ix:
        ix.add_records([("a", "the history of data science"), ("b", "a chapter about a long query")])
        assert ix.model_info.quantize == "int8"
    # Opened later with the default (fp32) setting: the index's int8 is used, not refused.
    plain = dataclasses.replace(config, model=dataclasses.replace(model, quantize="none"))
    with SearchIndex.open(config=plain) as ix:
        assert ix.embedder.encoder.quantize == "int8"
        assert ix.search("data science", k=1)[0].key == "a"
    # int8 changes the vectors, a little.
    fp32 = Embedder.load(dataclasses.replace(model, quantize="none", runtime="onnx"))
    int8 = Embedder.load(dataclasses.replace(model, runtime="onnx"))
    cos = (fp32.encode_queries(QUERIES) * int8.encode_queries(QUERIES)).sum(axis=1)
    assert (cos > 0.95).all() and (cos < 1 - 1e-7).any()
    torch_only = dataclasses.replace(plain, model=dataclasses.replace(model, runtime="torch"))
    with SearchIndex.open(config=torch_only) as ix, pytest.raises(ConfigError, match="model.runtime"):
        ix.search("data science", k=1)


def test_runtime_and_quantize_settings_are_checked():
    assert load_config(overrides={"model.runtime": "onnx"}, discover=False).model.runtime == "onnx"
    with pytest.raises(ConfigError, match="model.runtime"):
        load_config(overrides={"model.runtime": "tensorrt"}, discover=False)
    with pytest.raises(ConfigError, match="model.quantize"):
        load_config(overrides={"model.quantize": "int4"}, discover=False)


def test_model_export_command(tmp_path):
    folder = write_tiny_jina_checkpoint(tmp_path / "jina")
    args = ["model", "export", "--model", str(folder), "--set", f"model.onnx_cache={tmp_path / 'cache'}"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "exported:" in first.output
    assert onnx_cache.intact(folder, str(tmp_path / "cache"))
    again = CliRunner().invoke(main, args + ["--quantize", "int8"])
    assert again.exit_code == 0 and onnx_cache.intact(folder, str(tmp_path / "cache"), "int8")
    missing = CliRunner().invoke(main, ["model", "export", "--model", str(tmp_path / "nope")])
    assert missing.exit_code == 1 and "does not exist" in missing.output


def test_a_query_on_the_onnx_runtime_imports_no_torch(tmp_path, corpus, onnx_dir, minilm_onnx):
    """`python -m searchkit query` on an index whose model is exported: no torch, transformers or
    sentence-transformers in the process (read from -X importtime, which lists every import)."""
    index = tmp_path / "ix"
    with SearchIndex.open(config=Config(index=str(index), model=ModelConfig(
            name=MINILM, runtime="onnx", onnx_cache=str(onnx_dir))), create=True) as ix:
        ix.add_paths([corpus])
    for runtime_ in ("onnx", "auto"):
        out = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "searchkit", "query", "volcano eruption", "-k", "1",
             "--index", str(index), "--set", f"model.runtime={runtime_}", "--set", f"model.onnx_cache={onnx_dir}"],
            capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        assert "volcano.txt" in out.stdout
        imported = set(re.findall(r"^import time:.*\|\s*(\S+)$", out.stderr, re.M))
        assert "onnxruntime" in imported and "searchkit.api" in imported
        assert not {m for m in imported if m.split(".")[0] in ("torch", "transformers", "sentence_transformers")}
        notices = [line for line in out.stderr.splitlines() if line.startswith("searchkit: model runtime")]
        assert len(notices) == 1 and "onnx (fp32" in notices[0]


def test_an_onnx_embedder_pickles_for_ray_actors(minilm_onnx):
    import pickle

    minilm_onnx.encode_queries(QUERIES[:1])  # a session exists: it stays behind
    copy = pickle.loads(pickle.dumps(minilm_onnx))
    assert copy.runtime == "onnx"
    np.testing.assert_allclose(copy.encode_queries(QUERIES), minilm_onnx.encode_queries(QUERIES), atol=1e-6)
