"""The embedding model on ONNX Runtime: an exported graph plus the ``tokenizers`` fast tokenizer.

Nothing here imports torch, transformers or sentence-transformers: a query on an index whose
model has been exported (:mod:`searchkit.embedding.export`) starts in about a second instead of
the seven that importing sentence-transformers takes. The graph returns token embeddings, so
windows, pooling and late chunking stay in :class:`~searchkit.embedding.embedder.Embedder`.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from ..errors import ModelError
from . import onnx_cache
from .onnx_cache import ExportManifest

log = logging.getLogger(__name__)


class OnnxEncoder:
    """Token embeddings from an exported model; see :func:`open_export` to build one."""

    runtime = "onnx"

    def __init__(self, path: Path, tokenizer: Tokenizer, manifest: ExportManifest, quantize: str):
        self.path = path
        self.tokenizer = tokenizer
        self.manifest = manifest
        self.quantize = quantize
        self.model = None  # no torch model behind this runtime
        self.cls_id, self.sep_id, self.pad_id = manifest.cls_id, manifest.sep_id, manifest.pad_id
        self.dimension = manifest.dimension
        self.max_tokens = manifest.max_tokens
        self.position_limit = manifest.position_limit
        self._sessions: dict[int, ort.InferenceSession] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        # Pickled into Ray actors: sessions and the lock stay behind, each process makes its own.
        state = dict(self.__dict__, _sessions={})
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"onnx ({'int8' if self.quantize == 'int8' else 'fp32'}, {self.path})"

    def tokenize(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Content token ids and character offsets of ``text`` (no special tokens, no truncation)."""
        enc = self.tokenizer.encode(text, add_special_tokens=False)
        return (np.asarray(enc.ids, dtype=np.int64),
                np.asarray(enc.offsets, dtype=np.int64).reshape(-1, 2))

    def forward(self, ids: np.ndarray, mask: np.ndarray, single: bool = False) -> np.ndarray:
        """``(B, L, D)`` float32 token embeddings of ``ids`` and ``mask``, both ``(B, L)`` int64;
        ``single``: on a one-thread session (a single query). Safe from several threads."""
        session = self._session(1 if single else _default_threads())
        return session.run(None, {"input_ids": ids, "attention_mask": mask})[0]

    def _session(self, threads: int) -> ort.InferenceSession:
        # Two sessions at most, each made on first use: the query path never pays for the
        # multi-threaded one, nor ingest for the single-threaded one.
        with self._lock:
            if threads not in self._sessions:
                self._sessions[threads] = self._new_session(threads)
        return self._sessions[threads]

    def _new_session(self, threads: int) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # "extended", not "all": the layout passes of "all" added 0.3 s to making a session
        # (a cold query's share) for no speed on these models (BENCHMARKS.md, "Runtimes").
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        try:
            return ort.InferenceSession(str(self.path), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
            raise ModelError(f"ONNX Runtime cannot load {self.path}: {exc}".splitlines()[0]) from None


def _default_threads() -> int:
    """OMP_NUM_THREADS when set (torch follows it too, so both runtimes share one knob), else 0:
    ONNX Runtime's own choice, one thread per physical core."""
    try:
        return max(0, int(os.environ.get("OMP_NUM_THREADS", "0")))
    except ValueError:
        return 0


def open_export(model_folder: Path, cache: str | None, quantize: str = "none") -> OnnxEncoder | None:
    """The encoder of ``model_folder``'s export in the cache, or None when there is no intact one.

    A file whose size or CRC-32 differs from the manifest counts as missing (it is exported again).
    """
    folder = onnx_cache.export_folder(model_folder, cache)
    manifest = ExportManifest.read(folder)
    if manifest is None:
        return None
    name = onnx_cache.QUANTIZE_FILES[quantize]
    if onnx_cache.read_verified(folder, manifest, name) is None:
        if (folder / name).exists():
            log.warning("exported model %s is damaged (checksum); it will be exported again", folder / name)
        return None
    try:
        tokenizer = Tokenizer.from_file(str(folder / onnx_cache.TOKENIZER))
    except Exception:  # noqa: BLE001 - a damaged tokenizer file: export again
        return None
    return OnnxEncoder(folder / name, tokenizer, manifest, quantize)
