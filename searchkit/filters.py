"""Search filters: path glob, file type, modification time and metadata conditions.

A :class:`Filters` is the parsed form that travels to the storage backend, which compiles it
to its own query language (the local backend: one parameterised SQL condition, see
``backends/local/sql.py``) and applies it before ranking, so ``k`` results come back whenever
``k`` documents match.

Metadata conditions (``--where``) read the JSON stored with each document: the metadata given
to ``add_records`` or a Markdown file's YAML front matter.

- ``KEY=VALUE``, ``KEY!=VALUE``, ``KEY<VALUE``, ``KEY<=VALUE``, ``KEY>VALUE``, ``KEY>=VALUE``.
- ``VALUE`` is a number (``1900``, ``2.5``), ``true``/``false``, or text (quotes optional).
  Numbers compare with numbers, text with text (case-insensitively, so ISO dates compare in
  order), booleans only with ``=`` and ``!=``.
- A list value (``tags: [war, economy]``) matches when any element does: ``tags=war``.
- Dots address nested keys: ``author.name=Lincoln``.
- A document without the key never matches, except ``!=``, which is "not equal to".
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Iterable, Mapping

from .errors import FilterError
from .records import KIND_ALIASES, KINDS

OPERATORS = ("!=", ">=", "<=", "==", "=", ">", "<")
WHERE = re.compile(r"^\s*([^=!<>\s][^=!<>]*?)\s*(!=|>=|<=|==|=|>|<)\s*(.*?)\s*$", re.S)
KEY_SEGMENT = re.compile(r'^[^"\\\x00-\x1f]+$')
NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class Condition:
    """One metadata condition: ``key op value``."""

    key: str
    op: str
    value: Any

    def __str__(self) -> str:
        return f"{self.key}{self.op}{self.value}"


@dataclass(frozen=True)
class Filters:
    """What a document must satisfy to be ranked. Build one with :meth:`Filters.build`.

    Attributes:
        paths: SQLite GLOB patterns on the absolute path (any may match; ``*`` also crosses
            ``/``).
        kinds: file types (``txt``, ``md``, ``rst``, ``html``, ``record``; any may match).
        since: earliest modification time (Unix seconds, inclusive).
        until: latest modification time (Unix seconds, exclusive).
        where: metadata conditions (all must hold).
    """

    paths: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    since: float | None = None
    until: float | None = None
    where: tuple[Condition, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.paths or self.kinds or self.where) or self.since is not None \
            or self.until is not None

    @classmethod
    def build(cls, path: str | Iterable[str] | None = None, type: str | Iterable[str] | None = None,
              since: Any = None, until: Any = None,
              where: str | Iterable[Any] | Mapping[str, Any] | None = None) -> "Filters":
        """Parse user-facing filter values.

        Args:
            path: glob(s) such as ``*/19th-century/*``. A relative pattern is taken from the
                current folder; a pattern without ``*``, ``?`` or ``[`` matches that file or
                anything under that folder.
            type: file type(s): ``md``, ``.md``, ``txt``, ``rst``, ``html``, ``record``.
            since, until: modification-time bounds: ``YYYY-MM-DD`` or an ISO datetime (naive
                values are local time), a ``datetime``/``date``, or Unix seconds. A date-only
                ``until`` includes that whole day.
            where: ``"KEY OP VALUE"`` strings, ``(key, op, value)`` tuples, or a mapping of
                key to value (equality).

        Raises:
            FilterError: a value cannot be used; the message names the filter.
        """
        paths = tuple(g for p in _many(path, "path") for g in _globs(p))
        kinds = tuple(dict.fromkeys(_kind(t) for t in _many(type, "type", split=",")))
        lower = _time(since, "since", end_of_day=False)
        upper = _time(until, "until", end_of_day=True)
        if lower is not None and upper is not None and lower >= upper:
            raise FilterError(f"filter since/until: since ({since}) is not before until ({until})")
        return cls(paths, kinds, lower, upper, tuple(_conditions(where)))


def as_filters(value: "Filters | Mapping[str, Any] | None") -> Filters | None:
    """Accept a :class:`Filters`, a mapping of :meth:`Filters.build` arguments, or ``None``."""
    if value is None or isinstance(value, Filters):
        return value or None
    if isinstance(value, Mapping):
        known = {"path", "type", "since", "until", "where"}
        unknown = set(value) - known
        if unknown:
            raise FilterError(f"unknown filter {sorted(unknown)[0]!r}; filters are "
                              f"{', '.join(sorted(known))}")
        return Filters.build(**value) or None
    raise FilterError(f"filters must be a Filters or a mapping, got {type(value).__name__}")


# -- parsing ------------------------------------------------------------------------------

def _many(value: Any, name: str, split: str | None = None) -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    out = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise FilterError(f"filter {name} {item!r}: expected a non-empty string")
        out.extend(p.strip() for p in (item.split(split) if split else [item]) if p.strip())
    return out


def _globs(pattern: str) -> list[str]:
    folder = pattern.endswith("/")
    if not pattern.startswith(("*", "?", "[")):
        pattern = os.path.abspath(os.path.expanduser(pattern))
    if folder:
        return [pattern.rstrip("/") + "/*"]
    if not any(c in pattern for c in "*?["):
        # A plain path: the file itself, or everything under the folder.
        plain = escape_glob(pattern)
        return [plain, plain + "/*"]
    return [pattern]


def escape_glob(text: str) -> str:
    """``text`` as a GLOB pattern that matches exactly it (``*``, ``?`` and ``[`` made literal)."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def _kind(value: str) -> str:
    kind = value.lower().lstrip(".")
    kind = KIND_ALIASES.get(kind, kind)
    if kind not in KINDS:
        raise FilterError(f"filter type {value!r}: expected one of {', '.join(KINDS)}")
    return kind


def _time(value: Any, name: str, end_of_day: bool) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise FilterError(f"filter {name} {value!r}: expected a date, datetime or Unix seconds")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise FilterError(f"filter {name} {value!r}: not a finite time")
        return float(value)
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, date):
        day = datetime(value.year, value.month, value.day)
        return (day + timedelta(days=1 if end_of_day else 0)).timestamp()
    if isinstance(value, str):
        text = value.strip()
        if NUMBER.match(text):
            return float(text)
        try:
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
                return _time(date.fromisoformat(text), name, end_of_day)
            return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    raise FilterError(f"filter {name} {value!r}: expected YYYY-MM-DD, an ISO datetime or Unix seconds")


def _conditions(where: Any) -> Iterable[Condition]:
    if where is None:
        return
    if isinstance(where, Mapping):
        for key, value in where.items():
            yield _condition(str(key), "=", value, f"{key}={value}")
        return
    items = [where] if isinstance(where, (str, Condition)) else list(where)
    for item in items:
        if isinstance(item, Condition):
            yield _condition(item.key, item.op, item.value, str(item))
        elif isinstance(item, str):
            match = WHERE.match(item)
            if not match or not match.group(3) or match.group(3)[0] in "=<>!":
                raise FilterError(f"filter where {item!r}: expected KEY OP VALUE with OP one of "
                                  f"{', '.join(o for o in OPERATORS if o != '==')}, e.g. year>=1900")
            key, op, raw = match.groups()
            yield _condition(key, op, _value(raw), item)
        elif isinstance(item, (tuple, list)) and len(item) == 3:
            yield _condition(str(item[0]), str(item[1]), item[2], "".join(map(str, item)))
        else:
            raise FilterError(f"filter where {item!r}: expected 'KEY OP VALUE' or (key, op, value)")


def _condition(key: str, op: str, value: Any, shown: str) -> Condition:
    op = "=" if op == "==" else op
    if op not in OPERATORS:
        raise FilterError(f"filter where {shown!r}: unknown operator {op!r}")
    segments = key.strip().split(".")
    if not all(s and KEY_SEGMENT.match(s) for s in segments):
        raise FilterError(f"filter where {shown!r}: bad metadata key {key!r}")
    if isinstance(value, (date, datetime)):
        value = value.isoformat()
    if isinstance(value, bool):
        if op not in ("=", "!="):
            raise FilterError(f"filter where {shown!r}: true/false only compare with = or !=")
    elif isinstance(value, int) and not -2**63 <= value < 2**63:
        # Past SQLite's 64-bit integers: compared as a float, as SQLite reads such stored values.
        if value.bit_length() > 1023:
            raise FilterError(f"filter where {shown!r}: number too large")
        value = float(value)
    elif isinstance(value, float) and not math.isfinite(value):
        raise FilterError(f"filter where {shown!r}: not a finite number")
    elif not isinstance(value, (int, float, str)):
        raise FilterError(f"filter where {shown!r}: value must be a number, true/false or text")
    return Condition(key.strip(), op, value)


def _value(raw: str) -> Any:
    """Text from the command line → number, boolean or text (quotes strip to text)."""
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]
    if re.fullmatch(r"[+-]?\d+", raw):
        return int(raw)
    if NUMBER.match(raw):
        return float(raw)
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    return raw
