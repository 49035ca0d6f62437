"""Configuration: one frozen dataclass tree.

Precedence, highest first: command-line flag > environment variable > config file > built-in
default. Every field has a dotted key (``model.name``) and an environment variable
(``SEARCHKIT_MODEL_NAME``); top-level fields drop the section (``index`` → ``SEARCHKIT_INDEX``).
The shipped ``config.yaml`` documents every field and holds exactly the built-in defaults.
Flag and environment values are strings read by the field's type (text verbatim, numbers
decimal), never as YAML text: see :func:`_parse_text`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from .errors import ConfigError

log = logging.getLogger(__name__)

ENV_PREFIX = "SEARCHKIT_"
CONFIG_ENV = "SEARCHKIT_CONFIG"
# model.name when none is set. Writing to an existing index with this name keeps the index's
# own model; any other name must match it (see SearchIndex.check_model).
DEFAULT_MODEL = "jinaai/jina-embeddings-v2-small-en"

# The words each choice accepts, defined once: config checks, the API, the retrieval code, the
# local backend's FAISS structures and the CLI's click choices all read these.
BACKENDS = ("local", "milvus")
MILVUS_INDEX_TYPES = ("HNSW", "IVF_FLAT", "AUTOINDEX", "FLAT")
DEVICES = ("cpu", "cuda", "mps", "auto")
RUNTIMES = ("auto", "torch", "onnx")
QUANTIZATIONS = ("none", "int8")
CHUNKING_MODES = ("late", "naive", "none")
CHUNKING_STRATEGIES = ("fixed", "sentence")
ANN_KINDS = ("flat", "ivf", "hnsw")
INDEX_TYPES = ("auto", *ANN_KINDS)
MODES = ("dense", "keyword", "hybrid")
RERANKS = ("none", "late")
FUSIONS = ("adaptive", "weighted", "rrf")
EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class ModelConfig:
    """The embedding model and how documents are fed to it."""

    name: str = DEFAULT_MODEL
    fallback: bool = True
    fallback_name: str = "sentence-transformers/all-MiniLM-L6-v2"
    device: str = "cpu"
    window_tokens: int | None = None
    window_overlap: int = 64
    max_windows: int | None = None
    batch_tokens: int = 8192
    trust_remote_code: bool = False
    network_timeout: float = 2.0
    runtime: str = "auto"
    quantize: str = "none"
    onnx_cache: str | None = None


@dataclass(frozen=True)
class ChunkingConfig:
    """How documents are cut into passages (on tokens, never on characters)."""

    mode: str = "late"
    strategy: str = "fixed"
    size: int = 64


@dataclass(frozen=True)
class AnnConfig:
    """The FAISS index over the vectors kept in SQLite."""

    type: str = "auto"
    auto_flat_max: int = 100_000
    auto_flat_mb_documents: float = 16.0
    nlist: int | None = None
    nprobe: int = 32
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 64
    compact_ratio: float = 0.2


@dataclass(frozen=True)
class IngestConfig:
    """Which files are read and how often progress is committed."""

    extensions: tuple[str, ...] = (".txt", ".md", ".markdown", ".rst", ".html", ".htm", ".pdf",
                                   ".docx")
    max_file_mb: float = 20.0
    max_pages: int = 5000
    commit_every: int = 16
    checkpoint_seconds: float = 30.0
    executor: str = "local"

    def __post_init__(self) -> None:
        # "txt" means ".txt" (an environment variable or flag is easily written without dots):
        # a bare word would match no file at all.
        object.__setattr__(self, "extensions", tuple(
            e if e.startswith(".") else f".{e}" for e in self.extensions))


@dataclass(frozen=True)
class RayConfig:
    """The Ray cluster that embeds with ``ingest.executor: ray``."""

    address: str | None = None   # None: start a local cluster; "auto" or "ray://host:10001": join one
    cpus: int | None = None      # CPUs of a local cluster (None: all of this machine's)
    workers: int = 2             # model actors
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    batch_tokens: int = 16384    # about this many tokens per batch sent to an actor
    window_docs: int = 1024      # documents the driver hands to the cluster at once


@dataclass(frozen=True)
class SearchConfig:
    """Query-time defaults."""

    k: int = 10
    mode: str = "hybrid"
    rerank: str = "none"
    rerank_depth: int = 50
    chunk_weight: float = 0.5
    fusion: str = "adaptive"
    keyword_weight: float = 0.2
    rrf_k: int = 60
    snippet_words: int = 40


@dataclass(frozen=True)
class MilvusConfig:
    """Where a ``backend: milvus`` index lives and how Milvus indexes its vectors."""

    uri: str | None = None             # None: <index>/milvus.db (milvus-lite); or http://host:19530
    token: str | None = None
    collection_prefix: str | None = None   # None: searchkit_<index folder name>_
    index_type: str = "HNSW"
    hnsw_m: int = 16
    hnsw_ef_construction: int = 200
    ef_search: int = 64
    nlist: int = 1024
    nprobe: int = 16
    lease_seconds: float = 60.0        # a server writer's lease (see backends/milvus/locks.py)
    consistency: str = "Strong"        # what searches wait for (the writer always uses Strong)
    shards: int = 1                    # per collection, fixed when the index is created
    replicas: int = 1                  # in-memory replicas a cluster loads (query throughput, HA)


@dataclass(frozen=True)
class ServerConfig:
    """``searchkit serve``: where it listens, what it lets through, and who may write."""

    host: str = "127.0.0.1"
    port: int = 8765
    writable: bool = False
    api_key: str | None = None
    read_key: str | None = None
    max_body_mb: float = 10.0
    max_k: int = 100
    max_query_chars: int = 2000
    cors_origins: tuple[str, ...] = ()
    allow_paths: str | None = None
    write_wait: float = 0.0


@dataclass(frozen=True)
class Config:
    """The whole configuration. Build one with :func:`load_config`."""

    index: str = ".searchkit"
    backend: str = "local"
    model: ModelConfig = field(default_factory=ModelConfig)
    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    ann: AnnConfig = field(default_factory=AnnConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    milvus: MilvusConfig = field(default_factory=MilvusConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    server: ServerConfig = field(default_factory=ServerConfig)


# Settings whose value must be one of a few words; checked after every merge.
CHOICES: dict[str, tuple[str, ...]] = {
    "backend": BACKENDS,
    "milvus.index_type": MILVUS_INDEX_TYPES,
    "milvus.consistency": ("Strong", "Bounded", "Session", "Eventually"),
    "model.device": DEVICES,
    "model.runtime": RUNTIMES,
    "model.quantize": QUANTIZATIONS,
    "chunking.mode": CHUNKING_MODES,
    "chunking.strategy": CHUNKING_STRATEGIES,
    "ann.type": INDEX_TYPES,
    "search.mode": MODES,
    "search.rerank": RERANKS,
    "search.fusion": FUSIONS,
    "ingest.executor": EXECUTORS,
}

POSITIVE = {
    "model.window_tokens", "model.max_windows", "model.batch_tokens", "model.network_timeout", "chunking.size",
    "ann.auto_flat_max", "ann.auto_flat_mb_documents", "ann.nlist", "ann.nprobe", "ann.hnsw_m", "ann.ef_construction",
    "ann.ef_search", "ingest.max_file_mb", "ingest.max_pages", "ingest.commit_every", "search.k",
    "search.rerank_depth", "search.rrf_k", "search.snippet_words",
    "milvus.hnsw_m", "milvus.hnsw_ef_construction", "milvus.ef_search", "milvus.nlist",
    "milvus.nprobe", "milvus.lease_seconds", "milvus.shards", "milvus.replicas",
    "ray.cpus", "ray.workers", "ray.batch_tokens", "ray.cpus_per_worker", "ray.window_docs",
    "server.port", "server.max_body_mb", "server.max_k", "server.max_query_chars",
}
NON_EMPTY = {"ingest.extensions"}  # an empty list would index nothing at all
NON_NEGATIVE = {"model.window_overlap", "ingest.checkpoint_seconds", "ray.gpus_per_worker",
                "server.write_wait"}
UNIT_INTERVAL = {"ann.compact_ratio", "search.chunk_weight", "search.keyword_weight"}


def env_var(key: str) -> str:
    """The environment variable that overrides a dotted key: ``model.name`` → ``SEARCHKIT_MODEL_NAME``."""
    return ENV_PREFIX + key.replace(".", "_").upper()


def _fields(cls: type) -> dict[str, tuple[Any, dataclasses.Field]]:
    hints = typing.get_type_hints(cls)
    return {f.name: (hints[f.name], f) for f in dataclasses.fields(cls)}


def all_keys(cls: type = Config, prefix: str = "") -> dict[str, Any]:
    """Every dotted key of the tree with its type annotation."""
    keys: dict[str, Any] = {}
    for name, (hint, _) in _fields(cls).items():
        if dataclasses.is_dataclass(hint):
            keys.update(all_keys(hint, f"{prefix}{name}."))
        else:
            keys[f"{prefix}{name}"] = hint
    return keys


def _unwrap(hint: Any) -> tuple[Any, bool]:
    """The field's base type and whether it may be null: ``int | None`` → ``(int, True)``."""
    args = typing.get_args(hint)
    if args and typing.get_origin(hint) in (typing.Union, types.UnionType):
        return next(a for a in args if a is not type(None)), type(None) in args
    return hint, False


def _parse_text(key: str, hint: Any, text: str, where: str) -> Any:
    """A flag or environment string as the field's type wants it, before :func:`_coerce`.

    Text settings take the string verbatim (``idx #2``, ``010``, ``on`` and ``@x`` stay as
    typed); an empty string is null for an optional one. Numbers are plain decimal (``010`` is
    ten, ``2:30`` is an error). Booleans and lists are read as YAML (``off``, ``[.txt, .md]``).
    For the other types an empty string, ``null`` or ``~`` is null.
    """
    base, optional = _unwrap(hint)
    if base is str:
        return None if optional and text == "" else text
    stripped = text.strip()
    if stripped in ("", "null", "~"):
        return None
    if base in (int, float):
        try:
            return base(stripped)
        except ValueError:
            return text  # _coerce reports it with the expected type
    try:
        return yaml.safe_load(stripped)
    except yaml.YAMLError:
        raise ConfigError(f"{key} ({where}): expected {_type_name(hint)}, got {text!r}, "
                          "which is not valid YAML") from None


def _coerce(key: str, hint: Any, value: Any, where: str, text: bool = False) -> Any:
    """Turn a value into the field's type, or raise ConfigError naming the key and ``where``.

    ``text``: the value is a raw string from a flag or environment variable (see
    :func:`_parse_text`); otherwise it is already typed (a YAML file, or Python code).
    """
    given = value
    if text and isinstance(value, str):
        value = _parse_text(key, hint, value, where)
    base, optional = _unwrap(hint)
    bad = ConfigError(f"{key} ({where}): expected {_type_name(hint)}, got {given!r}")
    if value is None:
        if optional:
            return None
        raise bad
    if base is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if base is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if base is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad
        return float(value)
    if base is str:
        if isinstance(value, (dict, list)) or value == "":
            raise bad
        return str(value)
    if typing.get_origin(base) is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise bad
        return tuple(value)
    raise bad  # pragma: no cover - every annotation above is handled


def _type_name(hint: Any) -> str:
    if typing.get_origin(_unwrap(hint)[0]) is tuple:
        return "a list of words, comma-separated (.txt,.md) or in YAML ([.txt, .md])"
    text = getattr(hint, "__name__", None) or str(hint)
    return text.replace("typing.", "").replace("NoneType", "null")


def _validate(key: str, value: Any, source: str) -> None:
    if key in NON_EMPTY and not value:
        raise ConfigError(f"{key} ({source}): expected a list of one or more words "
                          "(.txt,.md or [.txt, .md]), got an empty list")
    if key in CHOICES and value not in CHOICES[key]:
        raise ConfigError(f"{key} ({source}): must be one of {', '.join(CHOICES[key])}, got {value!r}")
    if key in POSITIVE and value is not None and value <= 0:
        raise ConfigError(f"{key} ({source}): must be greater than 0, got {value!r}")
    if key in UNIT_INTERVAL and not 0.0 <= value <= 1.0:
        raise ConfigError(f"{key} ({source}): must be between 0 and 1, got {value!r}")
    if key in NON_NEGATIVE and value < 0:
        raise ConfigError(f"{key} ({source}): must be 0 or more, got {value!r}")
    if key == "server.port" and value > 65535:
        raise ConfigError(f"{key} ({source}): must be a TCP port (1-65535), got {value!r}")


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in data.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def _build(cls: type, values: Mapping[str, Any], prefix: str = "") -> Any:
    kwargs = {}
    for name, (hint, _) in _fields(cls).items():
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, values, f"{prefix}{name}.")
        elif f"{prefix}{name}" in values:
            kwargs[name] = values[f"{prefix}{name}"]
    return cls(**kwargs)


def find_config_file(explicit: str | os.PathLike | None = None,
                     environ: Mapping[str, str] | None = None) -> Path | None:
    """The config file to read: the one given, else ``$SEARCHKIT_CONFIG``, else ``./config.yaml``."""
    environ = os.environ if environ is None else environ
    if explicit is not None:
        return Path(explicit)
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV])
    local = Path("config.yaml")
    return local if local.is_file() else None


def load_config(path: str | os.PathLike | None = None,
                overrides: Mapping[str, Any] | None = None,
                environ: Mapping[str, str] | None = None,
                discover: bool = True,
                settings: Mapping[str, str] | None = None) -> Config:
    """Build the configuration from defaults, a YAML file, the environment and overrides.

    Args:
        path: YAML file to read. ``None`` looks for ``$SEARCHKIT_CONFIG`` then ``./config.yaml``
            when ``discover`` is true. A ``./config.yaml`` found that way with none of
            searchkit's top-level sections belongs to another tool and is ignored (logged).
        overrides: dotted keys to values (from command-line flags); ``None`` values are ignored.
        environ: environment to read ``SEARCHKIT_*`` variables from (default ``os.environ``).
        discover: whether to look for a config file when ``path`` is ``None``.
        settings: dotted keys to raw strings from ``--set KEY=VALUE``: above the environment,
            below ``overrides``, and checked even where an override replaces them (every
            source is validated the same way).

    Raises:
        ConfigError: a file is missing or malformed, a key is unknown, or a value is invalid.
    """
    environ = os.environ if environ is None else environ
    keys = all_keys()
    merged: dict[str, Any] = {}
    # (key, value, where it came from, whether it is a raw string to parse)
    given: list[tuple[str, Any, str, bool]] = []

    file = find_config_file(path, environ) if (path is not None or discover) else None
    if file is not None:
        data = _read_yaml(file)
        implicit = path is None and not environ.get(CONFIG_ENV)
        if implicit and not _is_ours(data):
            # Another tool's ./config.yaml (a Hugo site, say): not ours to judge.
            log.info("ignoring %s: it has none of searchkit's sections (%s)", file,
                     ", ".join(f.name for f in dataclasses.fields(Config)))
        else:
            given += [(key, value, str(file), False) for key, value in _check_mapping(file, data).items()]
    given += [(key, environ[env_var(key)], f"env {env_var(key)}", True)
              for key in keys if env_var(key) in environ]
    given += [(key, value, "--set", True) for key, value in (settings or {}).items()]
    given += [(key, value, "flag", True) for key, value in (overrides or {}).items() if value is not None]

    for key, raw, where, text in given:
        merged[key] = _setting(keys, key, raw, where, text)
    return _build(Config, merged)


def _setting(keys: Mapping[str, Any], key: str, raw: Any, where: str, text: bool = False) -> Any:
    """One setting's value, typed and validated, or ConfigError naming the key and ``where``."""
    if key not in keys:
        raise ConfigError(f"unknown setting {key!r} ({where}); known settings are listed in config.yaml")
    value = _coerce(key, keys[key], raw, where, text=text)
    _validate(key, value, where)
    return value


def _read_yaml(file: Path) -> Any:
    """The file's YAML document as it stands ({} when empty), or ConfigError if unreadable."""
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {file} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {file} cannot be read: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {file} is not valid YAML: {exc}".splitlines()[0]) from None
    return {} if data is None else data


def _is_ours(data: Any) -> bool:
    """Whether a file's YAML has at least one of searchkit's top-level keys (or is empty)."""
    if data == {}:
        return True
    names = {f.name for f in dataclasses.fields(Config)}
    return isinstance(data, dict) and any(key in names for key in data)


def _check_mapping(file: Path, data: Any) -> dict[str, Any]:
    """The file's settings as dotted keys, or ConfigError if it is not a mapping."""
    if not isinstance(data, dict):
        raise ConfigError(f"config file {file} must hold a mapping of settings, not {type(data).__name__}")
    return _flatten_sections(data, Config, "", str(file))


def _flatten_sections(data: Mapping[str, Any], cls: type, prefix: str, where: str) -> dict[str, Any]:
    """Like :func:`_flatten`, but a section (``search:``) must hold a mapping of its settings
    (or nothing: every line commented out), and a setting's mapping is its value, not more keys."""
    fields = _fields(cls)
    flat: dict[str, Any] = {}
    for name, value in data.items():
        key = f"{prefix}{name}"
        hint = fields[name][0] if name in fields else None
        if hint is not None and dataclasses.is_dataclass(hint):
            if value is None:
                continue
            if not isinstance(value, Mapping):
                known = ", ".join(f.name for f in dataclasses.fields(hint))
                raise ConfigError(f"{key} ({where}): expected a section of settings ({known}), "
                                  f"got {value!r}")
            flat.update(_flatten_sections(value, hint, f"{key}.", where))
        elif hint is None and isinstance(value, Mapping):
            flat.update(_flatten(value, f"{key}."))
        else:
            flat[key] = value
    return flat


def with_settings(config: Config, settings: Mapping[str, Any], source: str = "override") -> Config:
    """A copy of ``config`` with dotted keys replaced (``{"chunking.mode": "naive"}``), validated.

    Raises:
        ConfigError: a key is unknown or a value is invalid.
    """
    keys = all_keys()
    flat = _flatten(as_dict(config))
    for key, value in settings.items():
        flat[key] = _setting(keys, key, value, source)  # typed values: no string parsing
    return _build(Config, flat)


def as_dict(config: Config) -> dict[str, Any]:
    """The configuration as nested plain data (for ``info`` and JSON output)."""
    return dataclasses.asdict(config)
