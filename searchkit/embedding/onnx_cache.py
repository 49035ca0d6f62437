"""Where exported ONNX models live, and whether one is intact.

One folder per model, ``<cache>/<key>/``, holding ``model.onnx`` (fp32), optionally
``model.int8.onnx``, the ``tokenizer.json`` the model was exported with, and ``manifest.json``
(written last) with each ONNX file's size and CRC-32 and what the runtime needs to know about the
model without loading it in torch: special token ids, dimension, sequence limits.

The key hashes the model folder's file names, sizes and modification times (a changed or
reinstalled model gets a new key) and the export format; hashing the weights' content would
cost a cold query about as much as the search itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import ModelError

# Bumped when the exported graph changes (inputs, outputs, attention layout): old exports are
# then simply not found and made again.
EXPORT_FORMAT = 1
MANIFEST = "manifest.json"
TOKENIZER = "tokenizer.json"
QUANTIZE_FILES = {"none": "model.onnx", "int8": "model.int8.onnx"}


@dataclass(frozen=True)
class ExportManifest:
    """What an export folder records about its model (``manifest.json``)."""

    model: str
    dimension: int
    max_tokens: int
    position_limit: int | None
    cls_id: int
    sep_id: int
    pad_id: int
    files: dict[str, dict[str, int]] = field(default_factory=dict)  # file name -> bytes, crc32
    format: int = EXPORT_FORMAT

    @classmethod
    def read(cls, folder: Path) -> "ExportManifest | None":
        """The folder's manifest, or None when it is missing or unreadable (then: export again)."""
        try:
            data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
            manifest = cls(**data)
        except (OSError, ValueError, TypeError):
            return None
        return manifest if manifest.format == EXPORT_FORMAT else None

    def write(self, folder: Path) -> None:
        _atomic_write(folder / MANIFEST, json.dumps(asdict(self), indent=2).encode("utf-8"))


def cache_root(configured: str | None = None) -> Path:
    """``model.onnx_cache``, else ``$XDG_CACHE_HOME/searchkit/onnx``, else ``~/.cache/searchkit/onnx``."""
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "searchkit" / "onnx"


def model_key(folder: Path) -> str:
    """A short hash of the model folder's files (names, sizes, modification times)."""
    digest = hashlib.sha256(f"searchkit-onnx-{EXPORT_FORMAT}\n".encode())
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue
        stat = path.stat()
        digest.update(f"{rel.as_posix()}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def export_folder(model_folder: Path, configured_cache: str | None = None) -> Path:
    """The cache folder for a model folder's exports (it may not exist yet)."""
    return cache_root(configured_cache) / model_key(model_folder)


def checksum(data: bytes) -> dict[str, int]:
    return {"bytes": len(data), "crc32": zlib.crc32(data)}


def read_verified(folder: Path, manifest: ExportManifest, name: str) -> bytes | None:
    """The bytes of an exported file if the manifest lists it and its checksum holds, else None."""
    expected = manifest.files.get(name)
    if expected is None:
        return None
    try:
        data = (folder / name).read_bytes()
    except OSError:
        return None
    return data if checksum(data) == expected else None


def intact(model_folder: Path, configured_cache: str | None, quantize: str = "none") -> bool:
    """Whether the cache holds an intact export of the model (the fp32 graph, and the int8 one if asked)."""
    folder = export_folder(model_folder, configured_cache)
    manifest = ExportManifest.read(folder)
    names = [QUANTIZE_FILES["none"]] + ([QUANTIZE_FILES["int8"]] if quantize == "int8" else [])
    return manifest is not None and all(read_verified(folder, manifest, n) is not None for n in names)


def write_file(folder: Path, name: str, data: bytes) -> dict[str, int]:
    """Write one exported file atomically; returns its checksum entry for the manifest."""
    _atomic_write(folder / name, data)
    return checksum(data)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ModelError(f"cannot write {path}: {exc}") from None
