"""Helpers for the tests that run searchkit in real processes (kill test, reader/writer test):
a generated corpus, the environment a child needs, and a full consistency check of an index."""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import sys
from pathlib import Path

import numpy as np

from searchkit import SearchIndex
from searchkit.config import Config, ModelConfig

REPO = Path(__file__).resolve().parent.parent
MODEL = "searchkit-fake"  # the deterministic fake embedder: these tests are about storage
WORDS = ("river mountain harbour engine garden violin glacier market lantern compass meadow "
         "canyon orchard tunnel beacon quarry summit prairie lagoon citadel festival archive "
         "telescope furnace vineyard monastery railway satellite volcano parliament cathedral "
         "bakery foundry library lighthouse observatory reservoir workshop").split()


def child_env() -> dict[str, str]:
    """A child python that imports this checkout, stays offline and uses one CPU thread
    (torch's default thread pool spins badly on a shared two-core machine)."""
    env = dict(os.environ)
    env.update(PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               TOKENIZERS_PARALLELISM="false")
    return env


def searchkit_cmd(*args: str | os.PathLike) -> list[str]:
    return [sys.executable, "-m", "searchkit", *map(str, args), "--set", f"model.name={MODEL}"]


def doc_text(i: int, version: int, rng: random.Random, words: int = 40) -> str:
    body = " ".join(rng.choice(WORDS) for _ in range(words))
    return f"Document {i} version {version}. {body}.\n"


def write_corpus(folder: Path, n: int, seed: int = 0, words: int = 40) -> dict[str, set[str]]:
    """``n`` small text files in a few sub-folders; returns path → hashes of versions written."""
    rng = random.Random(seed)
    versions: dict[str, set[str]] = {}
    for i in range(n):
        path = folder / f"part{i % 4}" / f"doc{i:04d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_version(path, doc_text(i, 0, rng, words), versions)
    return versions


def write_version(path: Path, text: str, versions: dict[str, set[str]]) -> None:
    data = text.encode()
    path.write_bytes(data)
    versions.setdefault(str(path.absolute()), set()).add(hashlib.sha256(data).hexdigest())


def index_config(index: Path) -> Config:
    return Config(index=str(index), model=ModelConfig(name=MODEL))


def generation(index: Path) -> int | None:
    """The committed generation, read as a plain SQLite reader would; None before creation."""
    db = index / "searchkit.db"
    if not db.exists():
        return None
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            row = conn.execute("SELECT value FROM manifest WHERE key = 'generation'").fetchone()
            return int(json.loads(row[0])) if row else None
    except sqlite3.DatabaseError:
        return None


def check_index(index: Path, versions: dict[str, set[str]]) -> dict:
    """Everything a killed writer must leave true. Returns figures for the report.

    - SQLite passes ``PRAGMA integrity_check``; no chunk without its document;
    - each FAISS index holds exactly the live vectors (ntotal == rows);
    - every committed document and chunk is found by an exact lookup of its own vector;
    - every stored document is a version of its file that was really written.
    """
    with SearchIndex.open(index, config=index_config(index)) as ix:
        assert ix.backend.store.integrity_ok()
        db = ix.backend.store.db
        assert db.execute("SELECT count(*) FROM chunks WHERE doc_id NOT IN "
                          "(SELECT id FROM documents)").fetchone()[0] == 0
        files_before = sorted(p.name for p in index.glob("*.faiss"))
        figures = {"generation": ix.backend.store.generation, "faiss_files": files_before,
                   "tmp_files": len(list(index.glob("*.tmp")))}
        if ix.model_info is None:
            return {**figures, "documents": 0, "chunks": 0}
        dim = ix.model_info.dimension
        with ix.backend.store.snapshot():
            for table in ("documents", "chunks"):
                ids, vectors = ix.backend.store.vectors(table, dim)
                ann = ix.backend.ann(table)
                assert ann.ntotal == len(ids), (table, ann.ntotal, len(ids))
                if len(ids):
                    _, found = ann.search(vectors, 1)
                    assert np.array_equal(found[:, 0], ids), table
                figures[table] = len(ids)
            rows = db.execute("SELECT key, content_hash FROM documents").fetchall()
        for key, digest in rows:
            assert digest in versions.get(key, ()), key
        return figures
