"""Helpers shared by the benchmark scripts: environment, timing, machine description."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

EVAL = Path(os.environ.get("SEARCHKIT_EVAL_DIR", ROOT.parent / "shared" / "eval"))
OUT = ROOT / "bench_out"


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def eval_texts(name: str, limit: int | None = None) -> list[tuple[str, str]]:
    """``(id, text)`` of an eval corpus, title prepended when there is one."""
    rows = read_jsonl(EVAL / name / "corpus.jsonl")[:limit]
    return [(r["_id"], (r["title"] + "\n" + r["text"]) if r.get("title") else r["text"]) for r in rows]


def eval_queries(name: str) -> list[str]:
    return [r["text"] for r in read_jsonl(EVAL / name / "queries.jsonl")]


def median(xs) -> float:
    return float(statistics.median(xs))


def pct(xs, q: float) -> float:
    import numpy as np
    return float(np.percentile(np.asarray(xs), q))


def percentiles(times) -> dict[str, float]:
    """p50 and p95 of durations in seconds, as milliseconds."""
    return {"p50": round(pct(times, 50) * 1e3, 2), "p95": round(pct(times, 95) * 1e3, 2)}


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


def machine() -> str:
    """One line: CPUs, load, RAM, Python and library versions."""
    import numpy as np
    parts = [f"{os.cpu_count()} CPUs", f"load {os.getloadavg()[0]:.1f}"]
    try:
        with open("/proc/meminfo") as fh:
            kb = int(fh.readline().split()[1])
        parts.append(f"{kb / 2**20:.0f} GiB RAM")
    except OSError:
        pass
    parts.append(f"Python {platform.python_version()}")
    parts.append(f"numpy {np.__version__}")
    for mod in ("torch", "faiss", "sentence_transformers"):
        if mod in sys.modules:
            parts.append(f"{mod} {sys.modules[mod].__version__}")
    if os.environ.get("OPENBLAS_CORETYPE"):
        parts.append(f"OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']}")
    return ", ".join(parts)


def rss_peak_mb() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
