"""Shared fixtures: the bundled offline model and tiny corpora built in code."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import pytest

# Tests never touch the network: the bundled model is local and the hub is off.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# ONNX exports (model.runtime auto/onnx) go to a cache of this test session, never the user's;
# the Hugging Face cache stays where it was.
os.environ.setdefault("HF_HOME", os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                                              "huggingface"))
_ONNX_CACHE = tempfile.TemporaryDirectory(prefix="searchkit-test-cache-")
os.environ["XDG_CACHE_HOME"] = _ONNX_CACHE.name

from searchkit.config import Config, ModelConfig  # noqa: E402
from searchkit.embedding.fake import FAKE_MODEL  # noqa: E402

MINILM = "sentence-transformers/all-MiniLM-L6-v2"

TOPICS = {
    "volcano.txt": (
        "Volcanoes form where magma from the Earth's mantle reaches the surface. When pressure "
        "builds in a magma chamber, an eruption throws ash, lava and gas into the air. Mount "
        "Vesuvius buried Pompeii in the year 79. Lava flows can travel many kilometres before "
        "they cool into basalt rock."),
    "bread.md": (
        "---\ntitle: Baking sourdough bread\ncuisine: french\nyear: 2021\n---\n"
        "# Baking sourdough bread\n\nMix flour, water and salt with an active starter. Let the "
        "dough rise overnight, shape the loaf, and bake it in a hot Dutch oven until the crust "
        "is dark and crisp. Yeast and lactic bacteria give the bread its sour taste."),
    "chess.html": (
        "<html><head><title>Chess openings</title><style>.x{color:red}</style></head><body>"
        "<h1>Chess openings</h1><p>The Sicilian Defence answers the king's pawn with c5.</p>"
        "<p>Castling early protects the king, and controlling the centre squares gives the "
        "pieces room to move.</p><script>var secretscriptword = 1;</script></body></html>"),
    "orbit.rst": (
        "Orbital mechanics\n=================\n\nA satellite stays in orbit because its forward "
        "speed balances the pull of gravity. Rockets change orbit with engine burns; a Hohmann "
        "transfer moves a spacecraft between two circular orbits with two burns."),
}


@pytest.fixture(scope="session")
def minilm_config() -> Config:
    # The torch runtime, the reference: tests of the ONNX runtime ask for it by name.
    return Config(model=ModelConfig(name=MINILM, runtime="torch"))


@pytest.fixture(scope="session")
def fake_config() -> Config:
    """The deterministic fake embedder (searchkit.embedding.fake): for tests of storage,
    filters, lifecycle and the CLI, where what a model understands is not the point."""
    return Config(model=ModelConfig(name=FAKE_MODEL))


@pytest.fixture
def fake_index_config(fake_config: Config, tmp_path: Path) -> Config:
    return dataclasses.replace(fake_config, index=str(tmp_path / "ix"))


@pytest.fixture
def config(minilm_config: Config, tmp_path: Path) -> Config:
    return dataclasses.replace(minilm_config, index=str(tmp_path / "ix"))


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name, text in TOPICS.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def embedder(minilm_config: Config):
    from searchkit.embedding.embedder import Embedder
    return Embedder.load(minilm_config.model)


@pytest.fixture
def deny_read(monkeypatch):
    """``deny_read("a.txt", ...)``: opening files of those names fails with PermissionError from
    then on (chmod 000 does not stop root, and CI runs as root); ``monkeypatch.undo()`` ends it."""
    def deny(*names: str) -> None:
        real_open = Path.open

        def refuse(self, *args, **kwargs):
            if self.name in names:
                raise PermissionError(13, "Permission denied")
            return real_open(self, *args, **kwargs)

        monkeypatch.setattr(Path, "open", refuse)
    return deny


# -- Milvus ----------------------------------------------------------------------------------

@pytest.fixture
def milvus_lite_uri(tmp_path: Path) -> str:
    """An embedded milvus-lite database file (created on first use)."""
    pytest.importorskip("pymilvus", reason="pip install -e '.[milvus]'")
    pytest.importorskip("milvus_lite", reason="pip install -e '.[milvus]'")
    return str(tmp_path / "milvus.db")


@pytest.fixture(scope="session")
def milvus_server_uri(tmp_path_factory) -> str:
    """A real Milvus standalone server (PyPI ``milvus``), started once per test session on
    127.0.0.1 and stopped at its end; see tests/milvus_server.py."""
    from milvus_server import MilvusServer, available
    why = available()
    if why:
        pytest.skip(f"no Milvus server: {why}")
    server = MilvusServer(tmp_path_factory.mktemp("milvus-server"))
    uri = server.start()
    yield uri
    server.stop()


@pytest.fixture(params=["lite", "server"])
def milvus_uri(request) -> str:
    """Each Milvus flavour in turn: milvus-lite, then the real server."""
    if request.param == "lite":
        return request.getfixturevalue("milvus_lite_uri")
    return request.getfixturevalue("milvus_server_uri")
