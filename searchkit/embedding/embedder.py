"""The Embedder: tokenise once, run the model over token windows, return token embeddings.

Everything searchkit embeds goes through :meth:`Embedder.token_matrices`: documents are
tokenised once with character offsets, cut into macro windows on tokens, batched by a token
budget after sorting by length (little padding), and stitched back into one token matrix per
document. Whole-document vectors and late-chunk vectors are both pooled from that matrix, so
one forward pass serves both.
"""

from __future__ import annotations

import functools
import logging
import threading
import warnings
from typing import Sequence

import numpy as np

from ..config import ModelConfig
from ..errors import ModelError
from .pooling import SPECIAL_TOKENS, normalize, plan_windows, stitch
from .protocol import ModelInfo, ProgressFn, Tokens, truncate
from . import models

log = logging.getLogger(__name__)




class Embedder:
    """A loaded model plus the windowing and batching rules of an index.

    Build one with :meth:`Embedder.load`.
    """

    def __init__(self, model, info: ModelInfo, batch_tokens: int, fallback_reason: str | None = None):
        self.model = model
        self.info = info
        self.batch_tokens = batch_tokens
        self.fallback_reason = fallback_reason
        _default_threads()  # torch's own count, read before any thread changes it
        self.tokenizer = model.tokenizer
        if not getattr(self.tokenizer, "is_fast", False):
            raise ModelError(f"model {info.name} has no fast tokenizer; searchkit needs token offsets")
        self._cls = self.tokenizer.cls_token_id
        self._sep = self.tokenizer.sep_token_id
        self._pad = self.tokenizer.pad_token_id or 0
        if self._cls is None or self._sep is None:
            raise ModelError(f"model {info.name}: tokenizer lacks [CLS]/[SEP] style special tokens")

    @classmethod
    def load(cls, config: ModelConfig, allow_download: bool = True,
             name: str | None = None) -> "Embedder":
        """Resolve and load the configured model (or ``name``), falling back if allowed.

        Raises:
            ModelNotFoundError: the model is unavailable and fallback is off.
        """
        requested = name or config.name
        source = models.locate_or_fall_back(requested, config.fallback_name if config.fallback else None,
                                            config.network_timeout, allow_download)
        fallback_reason = source.fallback_reason
        device = models.resolve_device(config.device)
        model = models.load_folder(source.folder, device=device, trust_remote_code=config.trust_remote_code)
        model.eval()
        max_tokens = int(model.max_seq_length or 512)
        window = config.window_tokens or max_tokens
        window = min(window, _position_limit(model, window))
        dim = _dimension(model)
        info = ModelInfo(name=source.name, requested=requested, dimension=dim, max_tokens=max_tokens,
                         window_tokens=window, window_overlap=config.window_overlap,
                         max_windows=config.max_windows)
        embedder = cls(model, info, config.batch_tokens, fallback_reason)
        if fallback_reason:
            log.warning("!! %s; USING THE BUNDLED OFFLINE MODEL %s instead (%d-d, %d-token windows). "
                        "Set model.fallback: false to make this an error.",
                        fallback_reason, source.name, dim, window)
        return embedder

    # -- tokenisation ---------------------------------------------------------------------

    def tokenize(self, text: str) -> Tokens:
        """Content tokens of a whole text (no special tokens, no truncation) with offsets."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True,
                                 return_attention_mask=False, return_token_type_ids=False,
                                 truncation=False, verbose=False)
        return Tokens(np.asarray(enc["input_ids"], dtype=np.int64),
                      np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2))

    def truncate(self, tokens: Tokens) -> Tokens:
        """The tokens the index embeds: all of them, or those of the first ``max_windows`` windows."""
        return truncate(tokens, self.info)

    # -- forward passes -------------------------------------------------------------------

    def token_matrices(self, docs: Sequence[Tokens], window_tokens: int | None = None,
                       progress: ProgressFn | None = None) -> list[np.ndarray]:
        """Stitched ``(n + 2, d)`` token embeddings of each document (late-chunking input).

        ``window_tokens`` overrides the index's window (used to embed only spans, e.g. naive chunks).
        """
        _use_threads(_default_threads())
        window = window_tokens or self.info.window_tokens
        plans = [plan_windows(len(d), window, self.info.window_overlap) for d in docs]
        pieces = [(di, wi, d.ids[w.start:w.end]) for di, (d, plan) in enumerate(zip(docs, plans))
                  for wi, w in enumerate(plan)]
        outputs = self._forward_pieces([p[2] for p in pieces], progress)
        per_doc: list[list[np.ndarray]] = [[None] * len(p) for p in plans]  # type: ignore[list-item]
        for (di, wi, _), out in zip(pieces, outputs):
            per_doc[di][wi] = out
        return [stitch(plan, outs) for plan, outs in zip(plans, per_doc)]

    def embed_pieces(self, pieces: Sequence[np.ndarray], progress: ProgressFn | None = None) -> np.ndarray:
        """Mean-pooled, normalised vector of each token sequence embedded on its own (one window each)."""
        _use_threads(_default_threads())
        return self._pool(self._forward_pieces(pieces, progress))

    def _pool(self, outs: list[np.ndarray]) -> np.ndarray:
        return normalize(np.stack([o.mean(axis=0) for o in outs])) if outs else \
            np.zeros((0, self.info.dimension), dtype=np.float32)

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        """Normalised query vectors, through the same token path as documents (truncated to one window)."""
        toks = [self.tokenize(q).ids[: self.info.window_tokens - SPECIAL_TOKENS] for q in queries]
        # A single query is a few dozen tokens: splitting it across threads gains nothing,
        # and on busy cores waiting for the other threads made one query 14x slower
        # (BENCHMARKS.md, "Query latency").
        _use_threads(1 if len(toks) == 1 else _default_threads())
        return self._pool(self._forward_pieces(toks, None))

    def _forward_pieces(self, pieces: Sequence[np.ndarray], progress: ProgressFn | None) -> list[np.ndarray]:
        """Token embeddings of ``[CLS] piece [SEP]`` for each piece, batched by token budget."""
        import torch

        order = sorted(range(len(pieces)), key=lambda i: len(pieces[i]))
        results: list[np.ndarray] = [None] * len(pieces)  # type: ignore[list-item]
        module = self.model[0]
        device = self.model.device
        batch: list[int] = []

        def run(batch: list[int]) -> None:
            longest = len(pieces[batch[-1]]) + SPECIAL_TOKENS
            ids = torch.full((len(batch), longest), self._pad, dtype=torch.long)
            mask = torch.zeros((len(batch), longest), dtype=torch.long)
            for row, i in enumerate(batch):
                n = len(pieces[i]) + SPECIAL_TOKENS
                ids[row, 0] = self._cls
                ids[row, 1:n - 1] = torch.from_numpy(np.asarray(pieces[i], dtype=np.int64))
                ids[row, n - 1] = self._sep
                mask[row, :n] = 1
            features = {"input_ids": ids.to(device), "attention_mask": mask.to(device),
                        "token_type_ids": torch.zeros_like(ids).to(device)}
            with torch.inference_mode():
                out = module(features)["token_embeddings"].float().cpu().numpy()
            for row, i in enumerate(batch):
                results[i] = out[row, : len(pieces[i]) + SPECIAL_TOKENS]
            if progress is not None:
                progress(sum(len(pieces[i]) for i in batch))

        for i in order:
            # Sorted ascending, so the newest piece is the longest: padded size = count × its length.
            if batch and (len(batch) + 1) * (len(pieces[i]) + SPECIAL_TOKENS) > self.batch_tokens:
                run(batch)
                batch = []
            batch.append(i)
        if batch:
            run(batch)
        return results


# torch's intra-op threads of each thread that runs the model. Set only when a thread moves
# between single queries (one thread) and batches (all of them), never per call: a thread
# that serves queries sets it once. torch keeps the setting per OpenMP thread.
_threads = threading.local()


@functools.cache
def _default_threads() -> int:
    import torch

    return torch.get_num_threads()


def _use_threads(n: int) -> None:
    if getattr(_threads, "n", None) != n:
        import torch

        torch.set_num_threads(n)
        _threads.n = n


def _dimension(model) -> int:
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    dim = getter()
    if not dim:
        raise ModelError("model does not report its embedding dimension")
    return int(dim)


def _position_limit(model, default: int) -> int:
    """The longest input the first module accepts (BERT position tables cap it)."""
    config = getattr(getattr(model[0], "auto_model", None), "config", None)
    if config is not None and getattr(config, "position_embedding_type", "absolute") == "absolute":
        return int(getattr(config, "max_position_embeddings", default))
    return default
