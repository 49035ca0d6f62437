"""Where ingest's model pass runs: in this process (``local``) or on a Ray cluster (``ray``).

The driver (the process running ``searchkit index``) walks the files, decides what is new or
changed and writes to the backend; an executor only turns documents into embedded documents.
Both executors hand back the same records in commit-sized groups, so the write path, its
commit batches and checkpoints are the same whichever one runs the model.

With ``ray``, Ray Data feeds the documents to a pool of actors (``map_batches`` with a callable
class): each actor builds the model once, tokenises and embeds its batches, and returns the
document vector and the chunk spans and vectors as plain arrays. An actor killed mid-run is
restarted by Ray and its batch run again; the driver stores each document once, when its
result arrives.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

import numpy as np

from ..config import ChunkingConfig, RayConfig
from ..embedding.protocol import TokenEmbedder
from ..errors import ConfigError
from ..records import Chunk, Document, EmbeddedDocument
from .embedding_pass import embed_documents

log = logging.getLogger("searchkit")

# One embedded document, or None when the text held no token (the driver skips it).
Result = tuple[Document, EmbeddedDocument | None]
ProgressFn = Callable[[int], None]


class Executor(Protocol):
    """Embeds documents with the index's chunking; yields ``(document, embedded or None)``
    pairs in groups of at most ``group`` documents, in any order. ``progress`` is called with
    the tokens fed. ``window`` is how many documents the driver should hand over at once."""

    window: int

    def run(self, docs: Sequence[Document], chunking: ChunkingConfig, group: int,
            progress: ProgressFn | None = None) -> Iterator[list[Result]]: ...


def _embed(embedder: TokenEmbedder, docs: Sequence[Document], chunking: ChunkingConfig,
           progress: ProgressFn | None = None) -> list[Result]:
    """The model pass for one group: empty documents come back as None, the rest embedded."""
    tokens = [embedder.truncate(embedder.tokenize(d.text)) for d in docs]
    keep = [i for i, t in enumerate(tokens) if len(t)]
    embedded = embed_documents(embedder, [docs[i] for i in keep], chunking, progress,
                               [tokens[i] for i in keep]) if keep else []
    out: list[Result] = [(d, None) for d in docs]
    for i, item in zip(keep, embedded):
        out[i] = (docs[i], item)
    return out


class LocalExecutor:
    """The model runs in this process, loaded on first use (``embedder`` returns it)."""

    window = 0  # the driver's own commit batch

    def __init__(self, embedder: Callable[[], TokenEmbedder]):
        self.embedder = embedder

    def run(self, docs: Sequence[Document], chunking: ChunkingConfig, group: int,
            progress: ProgressFn | None = None) -> Iterator[list[Result]]:
        if not docs:
            return
        embedder = self.embedder()
        for start in range(0, len(docs), group):
            yield _embed(embedder, docs[start:start + group], chunking, progress)


# -- Ray -----------------------------------------------------------------------------------

_SPAN_FIELDS = 6  # ordinal, tok_start, tok_end, char_start, char_end, (reserved) per chunk


class EmbedActor:
    """A Ray Data map-batches worker: builds the model once, then embeds batches of texts.

    Takes a model factory (a callable returning an :class:`TokenEmbedder`, shipped by Ray's
    cloudpickle), so it works the same for the configured model and for an embedder injected
    into ``SearchIndex.open``.
    """

    def __init__(self, factory: Callable[[], TokenEmbedder], chunking: ChunkingConfig):
        self.embedder: TokenEmbedder = factory()
        self.chunking = chunking

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        docs = [Document(key=str(i), text=str(t), title="", kind="", content_hash="")
                for i, t in zip(batch["i"], batch["text"])]
        results = _embed(self.embedder, docs, self.chunking)
        dim = self.embedder.info.dimension
        n_tokens, vectors, spans, chunk_vectors = [], [], [], []
        for _, item in results:
            if item is None:
                n_tokens.append(0)
                vectors.append(np.zeros(dim, dtype=np.float32))
                spans.append(np.zeros((0, _SPAN_FIELDS), dtype=np.int64).tobytes())
                chunk_vectors.append(b"")
                continue
            n_tokens.append(item.n_tokens)
            vectors.append(np.asarray(item.vector, dtype=np.float32))
            spans.append(np.asarray([(c.ordinal, c.tok_start, c.tok_end, c.char_start, c.char_end, 0)
                                     for c in item.chunks], dtype=np.int64)
                         .reshape(-1, _SPAN_FIELDS).tobytes())
            chunk_vectors.append(np.stack([c.vector for c in item.chunks]).astype(np.float32).tobytes()
                                 if item.chunks else b"")
        return {"i": np.asarray(batch["i"], dtype=np.int64),
                "n_tokens": np.asarray(n_tokens, dtype=np.int64),
                "vector": np.stack(vectors),
                "spans": np.asarray(spans, dtype=object),
                "chunk_vectors": np.asarray(chunk_vectors, dtype=object)}


def _decode(doc: Document, n_tokens: int, vector: np.ndarray, spans: bytes,
            chunk_vectors: bytes, dim: int) -> EmbeddedDocument | None:
    if n_tokens == 0:
        return None
    table = np.frombuffer(spans, dtype=np.int64).reshape(-1, _SPAN_FIELDS)
    vecs = np.frombuffer(chunk_vectors, dtype=np.float32).reshape(len(table), dim) if len(table) \
        else np.zeros((0, dim), dtype=np.float32)
    chunks = tuple(Chunk(ordinal=int(o), tok_start=int(a), tok_end=int(b), char_start=int(c),
                         char_end=int(e), vector=vecs[j].copy())
                   for j, (o, a, b, c, e, _) in enumerate(table))
    return EmbeddedDocument(doc, int(n_tokens), np.asarray(vector, dtype=np.float32), chunks)


@dataclass
class RayExecutor:
    """The model runs in a pool of Ray actors (``ray.workers`` of them).

    Args:
        factory: a picklable callable returning the index's :class:`TokenEmbedder` (called once
            in each actor, never in the driver).
        settings: ``ray.*`` settings (address, workers, CPUs and GPUs per worker, tokens a batch).
        dimension: the model's vector size (to decode results).
    """

    factory: Callable[[], TokenEmbedder]
    settings: RayConfig
    dimension: int

    @property
    def window(self) -> int:
        # Each hand-over starts the actors (and their models) anew: hand over many documents.
        return self.settings.window_docs

    def run(self, docs: Sequence[Document], chunking: ChunkingConfig, group: int,
            progress: ProgressFn | None = None) -> Iterator[list[Result]]:
        if not docs:
            return
        ray, data = connect(self.settings)
        # A batch of about ray.batch_tokens tokens (estimated at 4 characters a token): big
        # enough to keep the model busy, small enough that a killed actor loses little work.
        mean_chars = max(1.0, sum(len(d.text) for d in docs) / len(docs))
        batch_size = max(1, min(len(docs), int(self.settings.batch_tokens * 4 / mean_chars)))
        context = data.DataContext.get_current()
        context.enable_progress_bars = False
        context.verbose_stats_logs = False
        dataset = data.from_items([{"i": i, "text": d.text} for i, d in enumerate(docs)])
        remote: dict[str, Any] = {"num_cpus": self.settings.cpus_per_worker}
        if self.settings.gpus_per_worker:
            remote["num_gpus"] = self.settings.gpus_per_worker
        embedded = dataset.map_batches(
            EmbedActor, fn_constructor_args=(self.factory, chunking),
            batch_size=batch_size, batch_format="numpy",
            # Ray Data restarts an actor killed mid-run (OOM, kill -9, a lost node) and runs its
            # batch again (max_restarts and max_task_retries default to -1 for actor pools); the
            # driver stores what arrives, once per document.
            compute=data.ActorPoolStrategy(size=self.settings.workers), **remote)
        pending: list[Result] = []
        seen: set[int] = set()
        for batch in embedded.iter_batches(batch_size=None, batch_format="numpy"):
            tokens = 0
            for j, i in enumerate(batch["i"]):
                i = int(i)
                if i in seen:  # a retried batch whose first result already arrived
                    continue
                seen.add(i)
                item = _decode(docs[i], int(batch["n_tokens"][j]), batch["vector"][j],
                               batch["spans"][j], batch["chunk_vectors"][j], self.dimension)
                tokens += item.n_tokens if item is not None else 0
                pending.append((docs[i], item))
            if progress is not None and tokens:
                progress(tokens)
            while len(pending) >= group:
                yield pending[:group]
                pending = pending[group:]
        if pending:
            yield pending
        missing = len(docs) - len(seen)
        if missing:
            raise RuntimeError(f"Ray returned no result for {missing} of {len(docs)} documents")


def connect(settings: RayConfig) -> tuple[Any, Any]:
    """Import Ray and join (or start) the cluster ``ray.address`` names; returns ``(ray, ray.data)``.

    Empty address: a local cluster on this machine. ``auto``: the cluster this machine belongs
    to. ``ray://host:10001``: a remote cluster through Ray Client (searchkit must be installed
    on its workers).
    """
    try:
        import ray
        import ray.data
    except ImportError:
        raise ConfigError("ingest.executor: ray needs Ray Data: pip install 'searchkit[ray]'") from None
    if not ray.is_initialized():
        # Workers of a local cluster import searchkit from where this process found it (a
        # checkout works without installing).
        source = str(Path(__file__).resolve().parents[2])
        path = os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH", "")) if p)
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "configure_logging": False}
        if settings.address:
            kwargs["address"] = settings.address
        else:
            kwargs["runtime_env"] = {"env_vars": {"PYTHONPATH": path, "HF_HUB_OFFLINE":
                                                  os.environ.get("HF_HUB_OFFLINE", "0"),
                                                  "TOKENIZERS_PARALLELISM": "false"}}
            if settings.cpus:
                kwargs["num_cpus"] = settings.cpus
        log.info("starting Ray (%s)", settings.address or "local cluster")
        ray.init(**kwargs)
    return ray, ray.data
