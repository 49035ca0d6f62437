"""Choosing what runs the model: ONNX Runtime on an exported copy, or torch.

``model.runtime``: ``onnx`` always uses ONNX Runtime (exporting the model first if the cache has
no intact copy); ``torch`` always uses torch; ``auto`` uses ONNX when an export is at hand, and
exports when asked to (the first index build) or falls back to torch otherwise. Each choice is
logged once, on one line, with the reason for torch where there is one.
"""

from __future__ import annotations

import logging

from ..config import ModelConfig
from ..errors import ConfigError, ModelError
from . import models, onnx_cache

log = logging.getLogger(__name__)


def open_encoder(config: ModelConfig, source: models.ModelSource, allow_export: bool = False):
    """A token encoder (``TorchEncoder`` or ``OnnxEncoder``) for the located model.

    Args:
        config: ``runtime``, ``quantize``, ``onnx_cache`` and the torch loading settings.
        source: the model's folder.
        allow_export: in ``auto`` mode, export the model when no export is cached (index builds).

    Raises:
        ConfigError: int8 asked of the torch runtime.
        ModelError: the onnx runtime was asked for and the model cannot be exported or run.
    """
    quantize, runtime = config.quantize, config.runtime
    if quantize == "int8" and runtime == "torch":
        raise ConfigError("model.quantize int8 runs on ONNX Runtime only: set model.runtime to onnx or "
                          "auto (an index built with int8 keeps it)")
    if runtime == "auto" and config.device != "cpu" and quantize != "int8":
        return _torch(config, source, "model.device is not cpu")
    if runtime == "torch":
        return _torch(config, source, None)
    try:
        from . import onnx_runtime
    except ImportError as exc:
        if runtime == "onnx" or quantize == "int8":
            raise ModelError(f"model.runtime onnx needs onnxruntime and tokenizers ({exc}): "
                             "pip install onnxruntime") from None
        return _torch(config, source, f"ONNX Runtime is not installed ({exc})")
    encoder = onnx_runtime.open_export(source.folder, config.onnx_cache, quantize)
    if encoder is None:
        must = runtime == "onnx" or quantize == "int8"
        if not (must or allow_export):
            return _torch(config, source, f"no ONNX export of {source.name} yet "
                                          "(`searchkit model export` makes one)")
        from . import export  # torch, once, to make the export

        try:
            export.export_source(config, source, quantize)
        except ModelError as exc:
            if must:
                raise
            log.warning("%s; staying on torch", exc)
            return _torch(config, source, "the ONNX export failed")
        encoder = onnx_runtime.open_export(source.folder, config.onnx_cache, quantize)
        if encoder is None:  # pragma: no cover - written and verified just above
            raise ModelError(f"the ONNX export of {source.name} cannot be read back")
    log.info("model runtime: %s", encoder.describe())
    return encoder


def export(config: ModelConfig, name: str | None = None, quantize: str | None = None,
           force: bool = False):
    """Export ``name``, else the configured model (with its fallback, as an index build would
    use it), to the ONNX cache unless an intact export is there; returns the export folder."""
    fallback = config.fallback_name if config.fallback and name is None else None
    source = models.locate_or_fall_back(name or config.name, fallback, config.network_timeout)
    if source.fallback_reason:
        log.warning("!! %s; exporting the bundled offline model %s instead", source.fallback_reason, source.name)
    quantize = quantize or config.quantize
    if not force and onnx_cache.intact(source.folder, config.onnx_cache, quantize):
        return onnx_cache.export_folder(source.folder, config.onnx_cache)
    from . import export as exporter  # torch: only when there is something to export

    return exporter.export_source(config, source, quantize, force)


def _torch(config: ModelConfig, source: models.ModelSource, reason: str | None):
    # Imported here, not at the top, for startup cost only (no cycle): torch takes seconds.
    from .torch_runtime import TorchEncoder

    model = models.load_folder(source.folder, device=models.resolve_device(config.device),
                               trust_remote_code=config.trust_remote_code)
    model.eval()
    encoder = TorchEncoder(model, source.name)
    log.info("model runtime: %s%s", encoder.describe(), f"; {reason}" if reason else "")
    return encoder
