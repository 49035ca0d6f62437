"""Security: no pickle anywhere in searchkit or its index format, SQL values always bound as
parameters, and no code from a model folder run unless ``model.trust_remote_code`` is set."""

from __future__ import annotations

import ast
import io
import json
import tokenize
from pathlib import Path

import pytest

from searchkit import SearchIndex
from searchkit.embedding import models
from searchkit.errors import UnsupportedModelError


@pytest.fixture
def config(fake_index_config):
    """This file tests storage, not retrieval quality: the deterministic fake embedder."""
    return fake_index_config

PACKAGE = Path(__file__).resolve().parent.parent / "searchkit"
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "joblib", "marshal", "shelve", "cloudpickle"}


def sources():
    return sorted(PACKAGE.rglob("*.py"))


def test_no_pickle_in_searchkit():
    """Code only (comments and docstrings may mention the word): no pickle-family module is
    named, no numpy ``allow_pickle=True``, and every ``torch.load`` passes ``weights_only=True``."""
    for path in sources():
        text = path.read_text(encoding="utf-8")
        names = {tok.string for tok in tokenize.generate_tokens(io.StringIO(text).readline)
                 if tok.type == tokenize.NAME}
        assert not names & UNSAFE_MODULES, (path.name, names & UNSAFE_MODULES)
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.Call):
                continue
            keywords = {k.arg: k.value for k in node.keywords}
            if "allow_pickle" in keywords:
                assert isinstance(keywords["allow_pickle"], ast.Constant) and \
                    keywords["allow_pickle"].value is False, path.name
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr == "load" and \
                    isinstance(func.value, ast.Name) and func.value.id == "torch":
                flag = keywords.get("weights_only")
                assert isinstance(flag, ast.Constant) and flag.value is True, \
                    f"{path.name}:{node.lineno} torch.load without weights_only=True"


def test_index_folder_holds_only_sqlite_faiss_and_json(config):
    with SearchIndex.open(config=config, create=True) as ix:
        ix.add_records([("a", "First note about rivers."), ("b", "Second note about hills.")])
        folder, dim = ix.folder, ix.model_info.dimension
        manifest_rows = ix.backend.store.db.execute("SELECT key, value FROM manifest").fetchall()
        blobs = [r[0] for r in ix.backend.store.db.execute("SELECT vector FROM documents UNION ALL "
                                                   "SELECT vector FROM chunks")]
    assert all(json.loads(v) is not None or v == "null" for _, v in manifest_rows)
    assert blobs and all(len(b) == 4 * dim for b in blobs)          # raw float32, nothing else
    for path in folder.iterdir():
        head = path.read_bytes()[:16]
        assert not head.startswith(b"\x80"), path.name                  # a pickle stream
        if path.name == "searchkit.db":
            assert head == b"SQLite format 3\x00"
        elif path.suffix == ".faiss":
            assert head[:4] in (b"IxM2", b"IwFl", b"IHNf"), (path.name, head[:4])
        else:
            assert path.name in ("searchkit.db-wal", "searchkit.db-shm", "write.lock"), path.name


def test_user_values_are_bound_not_spliced(config, tmp_path):
    nasty = ["'; DROP TABLE documents; --", 'x" OR 1=1 --', "100%_*?[]", "ünï\u0000còdé"]
    with SearchIndex.open(config=config, create=True) as ix:
        ix.add_records([(key, f"Note {i} with its own words.") for i, key in enumerate(nasty)])
        assert set(ix.backend.store.states(nasty)) == set(nasty)
        assert ix.remove([nasty[0], nasty[3]]) == 2
        assert ix.backend.store.count("documents") == 2
        assert ix.backend.store.paths_under(str(tmp_path / "100%_*?[")) == {}
        with pytest.raises(ValueError):
            ix.backend.store.count("documents; DROP TABLE chunks")


def test_model_folder_code_never_runs_without_opt_in(tmp_path):
    folder = tmp_path / "remote-model"
    folder.mkdir()
    marker = tmp_path / "ran"
    (folder / "config.json").write_text(json.dumps({
        "model_type": "bert", "auto_map": {"AutoModel": "evil.EvilModel"}}))
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('pwned')\n")
    with pytest.raises(UnsupportedModelError, match="trust_remote_code"):
        models.load_folder(folder, trust_remote_code=False)
    assert not marker.exists()
