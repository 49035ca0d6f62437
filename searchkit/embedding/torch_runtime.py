"""The embedding model on torch (sentence-transformers): the reference runtime, and the exporter's source."""

from __future__ import annotations

import functools
import threading
import warnings

import numpy as np
import torch

from ..errors import ModelError


class TorchEncoder:
    """Token embeddings from a loaded SentenceTransformer's first module (its token encoder)."""

    runtime = "torch"

    def __init__(self, model, name: str):
        self.model = model
        self.tokenizer = model.tokenizer
        if not getattr(self.tokenizer, "is_fast", False):
            raise ModelError(f"model {name} has no fast tokenizer; searchkit needs token offsets")
        self.cls_id = self.tokenizer.cls_token_id
        self.sep_id = self.tokenizer.sep_token_id
        self.pad_id = self.tokenizer.pad_token_id or 0
        if self.cls_id is None or self.sep_id is None:
            raise ModelError(f"model {name}: tokenizer lacks [CLS]/[SEP] style special tokens")
        self.max_tokens = int(model.max_seq_length or 512)
        self.position_limit = _position_limit(model)
        self.dimension = _dimension(model)
        _default_threads()  # torch's own count, read before any thread changes it

    def describe(self) -> str:
        return f"torch ({self.model.device})"

    def tokenize(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Content token ids and character offsets of ``text`` (no special tokens, no truncation)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True,
                                 return_attention_mask=False, return_token_type_ids=False,
                                 truncation=False, verbose=False)
        return (np.asarray(enc["input_ids"], dtype=np.int64),
                np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2))

    def forward(self, ids: np.ndarray, mask: np.ndarray, single: bool = False) -> np.ndarray:
        """``(B, L, D)`` float32 token embeddings of ``ids`` and ``mask``, both ``(B, L)`` int64;
        ``single``: on one thread (a single query)."""
        _use_threads(1 if single else _default_threads())
        device = self.model.device
        ids_t = torch.from_numpy(ids).to(device)
        features = {"input_ids": ids_t, "attention_mask": torch.from_numpy(mask).to(device),
                    "token_type_ids": torch.zeros_like(ids_t)}
        with torch.inference_mode():
            return self.model[0](features)["token_embeddings"].float().cpu().numpy()


# torch's intra-op threads of each thread that runs the model. Set only when a thread moves
# between single queries (one thread) and batches (all of them), never per call: a thread
# that serves queries sets it once. torch keeps the setting per OpenMP thread.
_threads = threading.local()


@functools.cache
def _default_threads() -> int:
    return torch.get_num_threads()


def _use_threads(n: int) -> None:
    if getattr(_threads, "n", None) != n:
        torch.set_num_threads(n)
        _threads.n = n


def _dimension(model) -> int:
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    dim = getter()
    if not dim:
        raise ModelError("model does not report its embedding dimension")
    return int(dim)


def _position_limit(model) -> int | None:
    """The longest input the first module accepts (BERT position tables cap it); None: no cap."""
    config = getattr(getattr(model[0], "auto_model", None), "config", None)
    if config is not None and getattr(config, "position_embedding_type", "absolute") == "absolute":
        limit = getattr(config, "max_position_embeddings", None)
        return int(limit) if limit else None
    return None
