"""The whole index/query path on a tiny random jina-embeddings-v2 checkpoint in the published
layout: the vectors are meaningless, the plumbing (native loader, 8192-token windows, late
chunking, manifest, reopening without network) is real."""

import dataclasses
import json

import numpy as np
import pytest

from searchkit import SearchIndex
from searchkit.config import ChunkingConfig, Config, ModelConfig
from tests.jina_fixtures import write_tiny_jina_checkpoint

LONG = " ".join(f"the history of the search index chapter {i} is a long text." for i in range(400))


def test_tiny_jina_checkpoint_indexes_and_answers(tmp_path):
    folder = write_tiny_jina_checkpoint(tmp_path / "jina")
    config = Config(index=str(tmp_path / "ix"),
                    model=ModelConfig(name=str(folder), fallback=False),
                    chunking=ChunkingConfig(size=64))
    with SearchIndex.open(config=config, create=True) as ix:
        report = ix.add_records([("long", LONG), ("short", "a short page of data science words.")])
        assert report.added == 2
        info = ix.model_info
        assert info.name == str(folder.resolve())
        assert info.dimension == 64 and info.window_tokens == 8192
        n_tokens = ix.backend.store.db.execute("SELECT n_tokens FROM documents WHERE key='long'").fetchone()[0]
        assert n_tokens > 4000                      # one window holds the whole long document
        assert ix.stats()["chunks"] >= n_tokens // 64
        hits = ix.search("history of the search index", k=2, rerank="late")
        assert {h.key for h in hits} == {"long", "short"}
        assert all(np.isfinite(h.score) for h in hits)

    # Reopen with a config that names another model: the index's own model is used, offline.
    other = dataclasses.replace(config, model=ModelConfig(fallback=False))
    with SearchIndex.open(config=other) as ix:
        assert len(ix.search("data science", k=1)) == 1
        assert json.dumps(ix.stats())  # plain data throughout


def test_base_code_variant_is_refused_even_without_auto_map(tmp_path):
    from searchkit.embedding.models import load_folder
    from searchkit.errors import UnsupportedModelError

    folder = write_tiny_jina_checkpoint(tmp_path / "code", variant="code")
    config = json.loads((folder / "config.json").read_text())
    config.pop("auto_map", None)  # a re-saved copy: nothing points at remote code any more
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedModelError):
        load_folder(folder)
