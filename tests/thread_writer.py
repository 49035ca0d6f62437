"""The writer process of the thread test (tests/test_threads.py).

    python tests/thread_writer.py INDEX FOLDER

Round after round it changes the index (adds, replaces and removes records through the API,
with the fake embedder), then writes ``FOLDER/paused_N`` and waits for ``FOLDER/go_N`` (or
``FOLDER/stop``), so the test can record the single-threaded results of each state it leaves
the index in while reader threads keep searching throughout.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from searchkit import SearchIndex  # noqa: E402
from searchkit.config import Config, IngestConfig, ModelConfig  # noqa: E402
from searchkit.embedding.fake import FAKE_MODEL  # noqa: E402

WORDS = ("river mountain harbour engine garden violin glacier market lantern compass meadow "
         "canyon orchard tunnel beacon quarry summit prairie lagoon citadel festival archive").split()


def config(index: str) -> Config:
    return Config(index=index, model=ModelConfig(name=FAKE_MODEL),
                  ingest=IngestConfig(commit_every=2, checkpoint_seconds=0.05))


def record(i: int, version: int) -> tuple[str, str, dict]:
    """A record whose words depend on its number and version (no two alike)."""
    words = " ".join(WORDS[(i * 7 + version * 3 + j * j) % len(WORDS)] for j in range(30))
    return f"r{i}", f"Record {i} version {version} unique{i}x{version}. {words}.", \
        {"year": 1900 + i % 20, "group": "even" if i % 2 == 0 else "odd"}


def main(index: str, folder: str) -> None:
    base = Path(folder)
    with SearchIndex.open(config=config(index), wait=30) as ix:
        round_ = 0
        while True:
            i = round_
            # Replace a few, add a few, remove one: every kind of write.
            ix.add_records([record(n, round_ + 1) for n in range(i % 5, 40, 9)])
            ix.add_records([record(100 + i * 2 + j, 0) for j in range(2)])
            ix.remove([f"r{100 + (i - 1) * 2}"] if i else [])
            (base / f"paused_{round_}").write_text(str(os.getpid()))
            while not (base / f"go_{round_}").exists():
                if (base / "stop").exists():
                    return
                time.sleep(0.01)
            round_ += 1


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
