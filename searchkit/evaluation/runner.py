"""``searchkit eval``: retrieval quality of each way searchkit can rank, on a BEIR folder.

Every mode is a real product configuration: index-time settings (the index folder it needs)
plus the query-time call. Modes that need the same index share one folder, and folders are
named by their settings, so a kept ``work_dir`` is reused: indexing again embeds nothing,
because ``add_records`` skips unchanged records.

==============  =============================================================================
mode            what ranks the documents
==============  =============================================================================
doc-first       document vector of the first window only (``model.max_windows: 1``), as
                engines that truncate do
doc-long        document vector pooled over all (overlapping) windows
naive           best chunk per document, each chunk embedded on its own (``chunking.mode:
                naive``)
late            best late chunk per document, windows without overlap (each window
                late-chunked on its own; ``model.window_overlap: 0``)
late-long       best late chunk per document, long late chunking over overlapping windows
rerank          document vector for the top ``search.rerank_depth`` documents, rescored with
                their best late chunk (``rerank="late"``), on the late-long index
default         what a user gets without flags: the built-in ``search`` settings (hybrid
                search, adaptive fusion) whatever ``--mode`` and ``--set search.*`` say, on
                the late-long index
==============  =============================================================================
"""

from __future__ import annotations

import dataclasses
import logging
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..api import SearchIndex
from ..config import Config, SearchConfig, with_settings
from .datasets import Dataset, load_beir
from ..embedding.models import locate_or_fall_back
from ..errors import InputError
from .metrics import score_run

log = logging.getLogger("searchkit")

# (metric, cutoff) pairs reported for every mode; passkey sets are read at recall@1.
MEASURES: tuple[tuple[str, int], ...] = (("ndcg", 10), ("recall", 1), ("recall", 10), ("mrr", 10))


@dataclass(frozen=True)
class Mode:
    """One evaluated configuration.

    Attributes:
        name: short name used by ``--modes``.
        description: one line for the table's legend.
        index: dotted index-time settings applied over the base configuration.
        search: keyword arguments of :meth:`SearchIndex.search` (``rerank``, ``chunks``, ...).
        settings: dotted query-time settings (e.g. ``search.mode``) applied when searching.
    """

    name: str
    description: str
    index: Mapping[str, Any] = field(default_factory=dict)
    search: Mapping[str, Any] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)


EVAL_MODES: dict[str, Mode] = {m.name: m for m in (
    Mode("doc-first", "document vector, first window only",
         index={"model.max_windows": 1, "model.window_overlap": 0, "chunking.mode": "none"},
         search={"rerank": "none"}),
    Mode("doc-long", "document vector pooled over all windows",
         index={"chunking.mode": "late"}, search={"rerank": "none"}),
    Mode("naive", "best naive chunk (each chunk embedded alone)",
         index={"chunking.mode": "naive"}, search={"chunks": True, "distinct": True}),
    Mode("late", "best late chunk, windows without overlap",
         index={"chunking.mode": "late", "model.window_overlap": 0},
         search={"chunks": True, "distinct": True}),
    Mode("late-long", "best late chunk, long late chunking (overlapping windows)",
         index={"chunking.mode": "late"}, search={"chunks": True, "distinct": True}),
    Mode("rerank", "document top-N rescored with best late chunk",
         index={"chunking.mode": "late"}, search={"rerank": "late"}),
    Mode("default", "the built-in search settings (no flags)",
         index={"chunking.mode": "late"},
         settings={f"search.{f.name}": getattr(SearchConfig(), f.name)
                   for f in dataclasses.fields(SearchConfig)}),
)}

# Settings that shape an index's vectors: they name its folder.
INDEX_KEYS = ("model.name", "model.quantize", "model.window_tokens", "model.window_overlap", "model.max_windows",
              "chunking.mode", "chunking.strategy", "chunking.size")


@dataclass
class ModeResult:
    """Figures of one mode: the mean of each measure over the judged queries."""

    mode: str
    description: str
    index: str
    scores: dict[str, float]
    queries: int
    seconds: float


@dataclass
class EvalReport:
    """What :func:`evaluate` measured on one dataset."""

    dataset: str
    documents: int
    queries: int
    k: int
    model: str | None
    window_tokens: int | None
    window_overlap: int | None
    search_mode: str
    chunking: dict[str, Any]
    results: list[ModeResult]
    indexes: dict[str, dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["results"] = {r.mode: {**{k: round(v, 4) for k, v in r.scores.items()},
                                    "queries": r.queries, "index": r.index,
                                    "description": r.description, "seconds": round(r.seconds, 2)}
                           for r in self.results}
        return data

    def table(self) -> str:
        """The figures as a text table, one row per mode."""
        names = [f"{m}@{k}" for m, k in MEASURES]
        width = max(len(r.mode) for r in self.results) if self.results else 4
        lines = [f"{self.dataset}: {self.documents} documents, {self.queries} queries, model "
                 f"{self.model}, window {self.window_tokens} / overlap {self.window_overlap}, "
                 f"chunks {self.chunking.get('strategy')} {self.chunking.get('size')}, "
                 f"search mode {self.search_mode}",
                 f"{'mode':<{width}}  " + "  ".join(f"{n:>9}" for n in names)]
        for r in self.results:
            lines.append(f"{r.mode:<{width}}  " + "  ".join(f"{r.scores[n]:>9.3f}" for n in names))
        return "\n".join(lines)


def index_settings(config: Config, mode: Mode) -> dict[str, Any]:
    """The index-time settings a mode needs, on top of ``config``."""
    cfg = with_settings(config, mode.index)
    values = {"model.name": cfg.model.name, "model.window_tokens": cfg.model.window_tokens,
              "model.window_overlap": cfg.model.window_overlap,
              "model.max_windows": cfg.model.max_windows, "chunking.mode": cfg.chunking.mode,
              "chunking.strategy": cfg.chunking.strategy, "chunking.size": cfg.chunking.size}
    if values["chunking.mode"] == "none":
        values["chunking.strategy"] = values["chunking.size"] = None
    return values


def folder_name(settings: Mapping[str, Any]) -> str:
    """A readable folder name from index settings, e.g. ``all-MiniLM-L6-v2_w256_o64_late-fixed64``."""
    model = re.sub(r"[^A-Za-z0-9._-]+", "-", str(settings["model.name"]).rstrip("/").split("/")[-1])
    window = settings["model.window_tokens"] or "max"
    parts = [model, f"w{window}", f"o{settings['model.window_overlap']}"]
    if settings["model.max_windows"] is not None:
        parts.append(f"first{settings['model.max_windows']}")
    if settings["chunking.mode"] == "none":
        parts.append("nochunks")
    else:
        parts.append(f"{settings['chunking.mode']}-{settings['chunking.strategy']}{settings['chunking.size']}")
    return "_".join(parts)


def evaluate(dataset: str | Path | Dataset, config: Config, work_dir: str | Path | None = None,
             modes: Sequence[str] | None = None, k: int = 10,
             progress: Callable[[str], None] | None = None,
             show_progress: bool = False, search_mode: str = "dense") -> EvalReport:
    """Index a BEIR folder once per needed index variant, run every query, score each mode.

    Args:
        dataset: a BEIR folder (or a loaded :class:`Dataset`).
        config: the base settings (model, window, chunk size, rerank depth, chunk weight...);
            each mode changes only what it needs.
        work_dir: where index folders live (kept and reused); ``None`` uses a temporary
            folder deleted afterwards.
        modes: names from :data:`EVAL_MODES` (default: all of them, in that order).
        k: results fetched per query (at least 10, the deepest cutoff measured).
        progress: called with one line per step (indexing, searching).
        show_progress: show a progress bar while embedding.
        search_mode: ``search.mode`` of every query: ``dense`` (the default: the modes compare
            vector rankings), ``keyword`` or ``hybrid`` (BM25 fused with each mode's dense side).

    Raises:
        DatasetError: the folder is not a valid BEIR dataset.
        InputError: an unknown mode.
    """
    say = progress or (lambda line: None)
    chosen = list(modes or EVAL_MODES)
    unknown = [m for m in chosen if m not in EVAL_MODES]
    if unknown:
        raise InputError(f"unknown eval mode {', '.join(unknown)}; choose from {', '.join(EVAL_MODES)}")
    data = dataset if isinstance(dataset, Dataset) else load_beir(dataset)
    depth = max(k, max(c for _, c in MEASURES))
    temp = None
    if work_dir is None:
        temp = tempfile.mkdtemp(prefix="searchkit-eval-")
        root = Path(temp)
    else:
        root = Path(work_dir)
        root.mkdir(parents=True, exist_ok=True)
    # Name the index folders after the model that will really embed (the fallback, if the
    # configured one is missing), so a kept work_dir never holds one model under another's name.
    model = config.model
    source = locate_or_fall_back(model.name, model.fallback_name if model.fallback else None,
                                 model.network_timeout)
    if source.fallback_reason:
        log.warning("%s; evaluating the fallback model %s instead", source.fallback_reason, source.name)
    config = with_settings(config, {"model.name": source.name})
    queries = data.judged_queries
    results: list[ModeResult] = []
    indexes: dict[str, dict[str, Any]] = {}
    info = None
    try:
        for name in chosen:
            mode = EVAL_MODES[name]
            settings = index_settings(config, mode)
            folder = root / folder_name(settings)
            cfg = with_settings(config, {**mode.index, "search.mode": search_mode,
                                         **mode.settings, "index": str(folder)})
            with SearchIndex.open(folder, config=cfg, create=True) as ix:
                if folder.name not in indexes:
                    say(f"indexing {data.name} into {folder}")
                    report = ix.add_records(data.records(), show_progress=show_progress)
                    say(f"  {report.summary()}")
                    indexes[folder.name] = {"settings": settings, "embedded": report.embedded,
                                            "unchanged": report.unchanged,
                                            "tokens": report.tokens,
                                            "seconds": round(report.seconds, 1)}
                info = info or ix.model_info
                start = time.perf_counter()
                hits = ix.search_many(list(queries.values()), k=depth, **mode.search)
                run = {qid: [h.key for h in found] for qid, found in zip(queries, hits)}
                seconds = time.perf_counter() - start
            scores = score_run(run, data.qrels, MEASURES)
            say(f"  {name}: " + ", ".join(f"{m} {v:.3f}" for m, v in scores.items()))
            results.append(ModeResult(name, mode.description, folder.name, scores, len(queries),
                                      seconds))
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
    return EvalReport(
        dataset=data.name, documents=len(data.corpus), queries=len(queries), k=depth,
        model=info.name if info else None,
        window_tokens=info.window_tokens if info else None,
        window_overlap=config.model.window_overlap, search_mode=search_mode,
        chunking=dataclasses.asdict(config.chunking), results=results, indexes=indexes)
