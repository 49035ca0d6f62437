"""Metadata as plain JSON: what front matter and records may carry, made storable and filterable.

Metadata is stored as JSON text and filtered with SQLite's JSON functions, which reject
anything that is not JSON. YAML and Python carry more: NaN and infinities (YAML ``.nan``,
``.inf``), dates, binary data (``!!binary``), sets, numpy numbers, objects, structures that
contain themselves. :func:`plain_metadata` turns a mapping into values JSON can hold, and says
which keys it had to change so the caller can warn once, naming the file or record and key.

- text, booleans, null and integers are kept (an integer past 64 bits compares as a floating
  point number in filters, as SQLite reads it);
- finite floats are kept; NaN, Infinity and -Infinity become null (reported);
- dates and times become text (``2021-03-04``, ``2021-03-04 10:00:00+00:00``);
- binary data becomes null (reported): it is not metadata anyone can filter on;
- lists, tuples and sets become lists (sets in a stable order), mappings get text keys;
- text with unpaired surrogates (not encodable as UTF-8) gets "?" in their place (reported);
- anything else becomes its ``str()``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Mapping

# Deeper than this is a structure that contains itself, or an attack on the parser.
MAX_DEPTH = 64


class MetadataError(ValueError):
    """Metadata that cannot become JSON at all: too many values, or nested too deeply."""


@dataclass
class _Walk:
    budget: int | None
    changed: list[str] = field(default_factory=list)


def plain_metadata(data: Mapping[Any, Any], max_values: int | None = None
                   ) -> tuple[dict[str, Any], list[str]]:
    """``data`` as JSON-safe values, and one note per key whose value had to change.

    Each note names the key path and what happened (``score: NaN stored as null``).

    Raises:
        MetadataError: more than ``max_values`` values, or nesting deeper than
            :data:`MAX_DEPTH` (which is also what a structure containing itself becomes).
    """
    walk = _Walk(max_values)
    return _mapping(data, walk, "", 0), walk.changed


def _mapping(data: Mapping[Any, Any], walk: _Walk, where: str, depth: int) -> dict[str, Any]:
    return {name: _value(value, walk, f"{where}.{name}" if where else name, depth + 1)
            for name, value in ((_text(str(k), walk, where), v) for k, v in data.items())}


def _value(value: Any, walk: _Walk, where: str, depth: int) -> Any:
    if walk.budget is not None:
        walk.budget -= 1
        if walk.budget < 0:
            raise MetadataError("too many values")
    if depth > MAX_DEPTH:
        raise MetadataError(f"nested more than {MAX_DEPTH} levels deep")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _text(value, walk, where)
    if isinstance(value, numbers.Integral):  # int, numpy integers
        return int(value)
    if isinstance(value, numbers.Real):      # float, numpy floats, fractions
        number = float(value)
        if math.isfinite(number):
            return number
        walk.changed.append(f"{where}: {_non_finite(number)} stored as null")
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        walk.changed.append(f"{where}: binary data stored as null")
        return None
    if isinstance(value, Mapping):
        return _mapping(value, walk, where, depth)
    if isinstance(value, (set, frozenset)):
        value = sorted(value, key=repr)  # iteration order changes from run to run
    if isinstance(value, (list, tuple)):
        return [_value(v, walk, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    return _text(str(value), walk, where)  # dates, times, decimals, other objects


def _text(value: str, walk: _Walk, where: str) -> str:
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        walk.changed.append(f"{where or 'a key'}: invalid Unicode replaced")
        return value.encode("utf-8", "replace").decode("utf-8")


def _non_finite(number: float) -> str:
    return "NaN" if math.isnan(number) else ("Infinity" if number > 0 else "-Infinity")


def describe(changed: list[str]) -> str:
    """The notes of :func:`plain_metadata` as one line (the first five, then a count)."""
    more = f"; and {len(changed) - 5} more" if len(changed) > 5 else ""
    return "; ".join(changed[:5]) + more + " (metadata is stored as JSON)"
