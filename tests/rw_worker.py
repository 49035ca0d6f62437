"""A writer or reader process for the reader/writer test (run by tests/test_concurrency.py).

    python tests/rw_worker.py writer INDEX CORPUS SECONDS READY_FILE GO_FILE
    python tests/rw_worker.py reader INDEX CORPUS SECONDS READY_FILE GO_FILE SEED MODE

Both wait for GO_FILE, work for SECONDS, then print one JSON line of figures. A reader checks
every answer inside one read snapshot: each hit's document exists, its key, path and text agree
with the file it came from, the FAISS score equals the score of the document's stored vector
(so the FAISS id really points at that document's vector), and the passage is a slice of the
document's text.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from searchkit import SearchIndex  # noqa: E402
from searchkit.config import Config, IngestConfig, ModelConfig  # noqa: E402

WORDS = ("river mountain harbour engine garden violin glacier market lantern compass meadow "
         "canyon orchard tunnel beacon quarry summit prairie lagoon citadel festival archive").split()


def config(index: str) -> Config:
    return Config(index=index, model=ModelConfig(name="searchkit-fake"),
                  ingest=IngestConfig(commit_every=4, checkpoint_seconds=0.5))


def wait_for_go(ready: str, go: str) -> None:
    Path(ready).write_text(str(os.getpid()))
    while not os.path.exists(go):
        time.sleep(0.02)


def writer(index: str, corpus: str, seconds: float, ready: str, go: str) -> dict:
    rng = random.Random(1)
    files = sorted(Path(corpus).glob("*.txt"))
    rounds = changed = removed = 0
    with SearchIndex.open(config=config(index), wait=30) as ix:
        ix.embedder  # noqa: B018 (loads the model before the timed rounds)
        wait_for_go(ready, go)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rounds += 1
            for path in rng.sample(files, 8):
                number = int(path.stem[3:])
                path.write_text(f"Document {number} version {rounds}. "
                                + " ".join(rng.choice(WORDS) for _ in range(30)) + ".\n")
                changed += 1
            gone = rng.choice(files)
            if gone.exists():
                gone.unlink()
                removed += 1
            report = ix.add_paths([corpus])
            if not gone.exists():
                gone.write_text(f"Document {int(gone.stem[3:])} version {rounds}. back again.\n")
        report = ix.add_paths([corpus])
    return {"role": "writer", "rounds": rounds, "files_changed": changed, "files_removed": removed,
            "last": report.summary()}


def check(ix: SearchIndex, query: str, qvec) -> int:
    """One search with its answer verified in the same snapshot; returns the hits checked."""
    with ix.backend.store.snapshot():
        hits = ix.search(query, k=5)
        rows = ix.backend.store.documents([h.doc_id for h in hits])
        vectors = ix.backend.store.document_vectors([h.doc_id for h in hits], qvec.shape[0])
        for hit in hits:
            row = rows[hit.doc_id]
            assert row.key == hit.key == hit.path, (row.key, hit.key)
            assert row.text.startswith(f"Document {int(Path(row.path).stem[3:])} version "), row.text[:40]
            assert abs(float(vectors[hit.doc_id] @ qvec) - hit.scores["dense"]) < 1e-4, hit
            if hit.passage is not None:
                assert row.text[hit.passage.char_start:hit.passage.char_end] == hit.passage.text
    return len(hits)


def reader(index: str, corpus: str, seconds: float, ready: str, go: str, seed: int, mode: str) -> dict:
    rng = random.Random(seed)
    queries = errors = hits = 0
    failures: list[str] = []
    latencies = []
    ix = SearchIndex.open(config=config(index))
    embedder = ix.embedder
    wait_for_go(ready, go)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        query = " ".join(rng.sample(WORDS, 4))
        started = time.perf_counter()
        try:
            if mode == "reopen":  # a fresh reader each time, as the CLI is: loads from the files
                ix.close()
                ix = SearchIndex.open(config=config(index))
                ix._embedder = embedder
            if queries % 2:  # as an API user searches: no snapshot of its own around it
                for hit in ix.search(query, k=5):
                    assert hit.key == hit.path and hit.snippet, hit
                    hits += 1
            else:
                qvec = ix.embedder.encode_queries([query])[0]
                hits += check(ix, query, qvec)
        except Exception:  # noqa: BLE001 - every failure is counted and reported
            errors += 1
            failures.append(traceback.format_exc(limit=3)[-600:])
        queries += 1
        latencies.append(time.perf_counter() - started)
    ix.close()
    latencies.sort()
    return {"role": "reader", "mode": mode, "queries": queries, "hits_checked": hits,
            "errors": errors, "failures": failures[:3],
            "p50_ms": round(1000 * latencies[len(latencies) // 2], 1) if latencies else None,
            "max_ms": round(1000 * latencies[-1], 1) if latencies else None}


if __name__ == "__main__":
    role, index, corpus, seconds, ready, go, *rest = sys.argv[1:]
    if role == "writer":
        result = writer(index, corpus, float(seconds), ready, go)
    else:
        result = reader(index, corpus, float(seconds), ready, go, int(rest[0]), rest[1])
    print(json.dumps(result))
