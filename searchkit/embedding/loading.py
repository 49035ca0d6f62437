"""Load the embedder a configuration names: the deterministic fake, or a real model."""

from __future__ import annotations

from ..config import ModelConfig
from .embedder import Embedder
from .fake import FAKE_MODEL, FakeEmbedder
from .protocol import TokenEmbedder


def load_embedder(config: ModelConfig, allow_download: bool = True,
                  name: str | None = None, allow_export: bool = False) -> TokenEmbedder:
    """The model ``name`` (default ``config.name``) with ``config``'s window settings, on the
    runtime ``config.runtime`` picks (``allow_export``: ``auto`` may export it to ONNX first).

    Raises:
        ModelNotFoundError: the model is unavailable and fallback is off.
    """
    if (name or config.name) == FAKE_MODEL:
        return FakeEmbedder(config)
    return Embedder.load(config, allow_download=allow_download, name=name, allow_export=allow_export)
