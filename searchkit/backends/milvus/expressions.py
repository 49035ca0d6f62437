"""Filters compiled to Milvus boolean expressions, with the same meaning as the local backend's.

Every row that a filter reads (documents, chunks, text parts) carries the same filter fields:
``path``, ``kind``, ``mtime`` with ``has_mtime`` (Milvus 2.3 has no NULL) and ``facets``, a
JSON object derived from the document's metadata by :func:`facets`. Metadata conditions
compile against ``facets`` rather than the raw metadata because Milvus cannot say "any element
of this list is greater than x" and has no case-insensitive comparison, while the local
backend means both:

- ``facets[KEY]`` holds, for the dotted key path ``KEY``, the values a condition looks at
  (the list's elements, an object's values, or the scalar itself, as SQLite's ``json_each``
  walks them), split by type: numbers ``n``, text ``t`` (ASCII letters lowered, as SQLite's
  NOCASE folds them), booleans ``b``, with the smallest and largest number and text.
- "any element = v" is ``json_contains(list, v)``; "any element > v" is ``max > v``;
  "any element < v" is ``min < v``; ``!=`` is "no element equals v", so a document without
  the key matches it, as in the local backend.

Values are written as JSON-escaped literals (:func:`literal`); nothing the user types becomes
expression syntax.
"""

from __future__ import annotations

import json
import math
from typing import Any, Iterable

from ...errors import FilterError
from ...filters import Condition, Filters

# JSON keys longer than this are not faceted (Milvus JSON path keys stay short).
MAX_KEY = 256


def literal(value: str | int | float | bool) -> str:
    """A Milvus expression literal: strings double-quoted with JSON escapes, numbers as floats."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        number = float(value)
        if not math.isfinite(number):
            raise FilterError(f"filter value {value!r}: not a finite number")
        return repr(number)
    return json.dumps(str(value), ensure_ascii=False)


def fold(text: str) -> str:
    """ASCII letters lowered and nothing else: SQLite's NOCASE, so text compares the same."""
    return text.translate(_ASCII_LOWER)


_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


def facets(metadata: Any) -> dict[str, dict[str, Any]]:
    """The filterable view of one document's metadata (see the module docstring)."""
    out: dict[str, dict[str, Any]] = {}

    def walk(value: Any, path: str) -> None:
        if path:
            _facet(out, path, value)
        if isinstance(value, dict):
            for key, inner in value.items():
                key = str(key)
                # A key with a dot is unreachable in the local backend too ("a.b" means
                # nested); skipping it keeps the dotted paths unambiguous.
                if "." in key or not key or len(key) > MAX_KEY:
                    continue
                walk(inner, f"{path}.{key}" if path else key)

    walk(metadata, "")
    return out


def _facet(out: dict[str, dict[str, Any]], path: str, value: Any) -> None:
    elements = list(value.values()) if isinstance(value, dict) else \
        value if isinstance(value, list) else [value]
    numbers = sorted({float(e) for e in elements
                      if isinstance(e, (int, float)) and not isinstance(e, bool) and math.isfinite(e)})
    texts = sorted({fold(e) for e in elements if isinstance(e, str)})
    bools = sorted({e for e in elements if isinstance(e, bool)})
    entry: dict[str, Any] = {}
    if numbers:
        entry.update(n=numbers, n_min=numbers[0], n_max=numbers[-1])
    if texts:
        entry.update(t=texts, t_min=texts[0], t_max=texts[-1])
    if bools:
        entry["b"] = bools
    if entry:
        out[path] = entry


def compile_filters(filters: Filters | None, general_like: bool = True,
                    server: str = "this Milvus server") -> str:
    """One Milvus expression for ``filters`` (``""`` when there are none).

    Args:
        filters: the parsed filters.
        general_like: whether ``like`` takes any pattern (milvus-lite, Milvus >= 2.4); Milvus
            2.3 only matches prefixes, so other path globs are refused with a clear error.
        server: how to name the server in that error.
    """
    if not filters:
        return ""
    parts: list[str] = []
    if filters.paths:
        parts.append(_any(_path(p, general_like, server) for p in filters.paths))
    if filters.kinds:
        parts.append(_any(f"kind == {literal(k)}" for k in filters.kinds))
    if filters.since is not None:
        parts.append(f"(has_mtime == true and mtime >= {literal(filters.since)})")
    if filters.until is not None:
        parts.append(f"(has_mtime == true and mtime < {literal(filters.until)})")
    parts.extend(_condition(c) for c in filters.where)
    return " and ".join(parts)


def _any(parts: Iterable[str]) -> str:
    parts = list(parts)
    return parts[0] if len(parts) == 1 else "(" + " or ".join(parts) + ")"


def _glob_parts(pattern: str) -> list[tuple[str, str]]:
    """A glob as ``(kind, text)`` pieces: ``("lit", "abc")``, ``("*", "")``, ``("?", "")``.

    ``[c]`` with one character is a literal (how searchkit escapes ``*?[`` in plain paths);
    any other bracket expression is returned as ``("class", ...)``.
    """
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c in "*?":
            out.append((c, ""))
            i += 1
        elif c == "[":
            end = pattern.find("]", i + 2)
            if end == i + 2:
                out.append(("lit", pattern[i + 1]))
                i = end + 1
            else:
                out.append(("class", pattern[i:end + 1 if end > 0 else len(pattern)]))
                i = end + 1 if end > 0 else len(pattern)
        else:
            out.append(("lit", c))
            i += 1
    return out


def _path(pattern: str, general_like: bool, server: str) -> str:
    parts = _glob_parts(pattern)
    if any(kind == "class" for kind, _ in parts):
        raise FilterError(f"filter path {pattern!r}: character classes ([...]) have no Milvus "
                          "equivalent; use * or ? instead")
    lead = 0
    while lead < len(parts) and parts[lead][0] == "lit":
        lead += 1
    prefix = "".join(text for _, text in parts[:lead])
    if lead == len(parts):
        return f"path == {literal(prefix)}"
    if parts[lead:] == [("*", "")]:
        return _prefix(prefix)
    if not general_like:
        raise FilterError(f"filter path {pattern!r}: {server} matches paths only by prefix "
                          "(a folder/ or name* pattern); * or ? elsewhere needs Milvus >= 2.4 "
                          "or milvus-lite")
    like = "".join({"*": "%", "?": "_"}.get(kind, "") or
                   text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                   for kind, text in parts)
    return f"path like {literal(like)}"


def _prefix(prefix: str) -> str:
    """Every string that starts with ``prefix``: a range, exact under byte order (no ``like``
    escaping, which Milvus 2.3 lacks)."""
    if not prefix:
        return 'path != ""'  # records have no path (stored as "")
    last = prefix[-1]
    if ord(last) < 0x10FFFF:
        upper = prefix[:-1] + chr(ord(last) + 1)
        return f"(path >= {literal(prefix)} and path < {literal(upper)})"
    return f"path >= {literal(prefix)}"


def _condition(cond: Condition) -> str:
    base = "facets[" + literal(cond.key) + "]"
    value = cond.value
    if isinstance(value, bool):
        test = f"json_contains({base}[\"b\"], {literal(value)})"
        return f"not {test}" if cond.op == "!=" else test
    kind, val = ("n", literal(value)) if isinstance(value, (int, float)) else ("t", literal(fold(value)))
    if cond.op in ("=", "!="):
        test = f"json_contains({base}[\"{kind}\"], {val})"
        return f"(not {test})" if cond.op == "!=" else test
    bound = "max" if cond.op in (">", ">=") else "min"
    return f"{base}[\"{kind}_{bound}\"] {cond.op} {val}"
