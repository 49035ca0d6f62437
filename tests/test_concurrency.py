"""One writer re-indexing changing files while several reader processes query in a loop.

Readers never take the lock and never wait for the writer (SQLite WAL, FAISS files swapped by
rename); every answer is checked inside one read snapshot (see tests/rw_worker.py). Set
SEARCHKIT_TEST_REPORT=FILE to get the figures as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from searchkit import SearchIndex

try:
    from tests import proc_helpers as ph
except ImportError:  # tests/ is not a package: pytest put tests/ itself on sys.path
    import proc_helpers as ph

WORKER = Path(__file__).with_name("rw_worker.py")
READERS = [("keep", 1), ("keep", 2), ("reopen", 3)]
SECONDS = 12.0


@pytest.mark.slow
def test_readers_see_consistent_answers_while_a_writer_reindexes(tmp_path):
    corpus, index = tmp_path / "corpus", tmp_path / "ix"
    corpus.mkdir()
    for i in range(40):
        (corpus / f"doc{i:03d}.txt").write_text(
            f"Document {i} version 0. " + " ".join(ph.WORDS[(i * 7 + j) % len(ph.WORDS)]
                                                   for j in range(30)) + ".\n")
    with SearchIndex.open(index, config=ph.index_config(index), create=True) as ix:
        ix.add_paths([corpus])
    go = tmp_path / "go"
    args = [str(index), str(corpus), str(SECONDS)]
    procs = [subprocess.Popen([sys.executable, str(WORKER), "writer", *args,
                               str(tmp_path / "ready.w"), str(go)],
                              env=ph.child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)]
    for n, (mode, seed) in enumerate(READERS):
        procs.append(subprocess.Popen([sys.executable, str(WORKER), "reader", *args,
                                       str(tmp_path / f"ready.{n}"), str(go), str(seed), mode],
                                      env=ph.child_env(), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("ready.*"))) < len(procs):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), \
            [p.communicate()[1][-1500:] for p in procs if p.poll() is not None]
        time.sleep(0.05)
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=SECONDS + 120)
        assert proc.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    writer, readers = results[0], results[1:]
    report = {"writer": writer, "readers": readers,
              "queries": sum(r["queries"] for r in readers),
              "errors": sum(r["errors"] for r in readers)}
    if os.environ.get("SEARCHKIT_TEST_REPORT"):
        Path(os.environ["SEARCHKIT_TEST_REPORT"]).write_text(json.dumps(report, indent=2))
    print(json.dumps(report))
    assert report["errors"] == 0, [r["failures"] for r in readers]
    assert writer["rounds"] >= 2
    assert all(r["queries"] >= 5 for r in readers)
    versions = {str(p.absolute()): {__import__("hashlib").sha256(p.read_bytes()).hexdigest()}
                for p in corpus.glob("*.txt")}
    final = ph.check_index(index, versions)
    assert final["documents"] == 40
