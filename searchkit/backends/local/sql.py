"""The local backend's query language: parsed filters and keyword queries compiled for SQLite.

A :class:`searchkit.filters.Filters` becomes one condition on ``documents d`` with its
parameters, and a keyword query an FTS5 ``MATCH`` expression; user values only ever travel as
parameters, never spliced into SQL.
"""

from __future__ import annotations

from typing import Any

from ...filters import Condition, Filters
from ..base import query_terms


def where_sql(filters: Filters) -> tuple[str, list[Any]]:
    """One SQL condition on ``documents d`` and its parameters (``"1"`` when empty)."""
    parts: list[str] = []
    params: list[Any] = []
    if filters.paths:
        parts.append("(" + " OR ".join("d.path GLOB ?" for _ in filters.paths) + ")")
        params.extend(filters.paths)
    if filters.kinds:
        parts.append(f"d.kind IN ({','.join('?' * len(filters.kinds))})")
        params.extend(filters.kinds)
    if filters.since is not None:
        parts.append("d.mtime >= ?")
        params.append(filters.since)
    if filters.until is not None:
        parts.append("d.mtime < ?")
        params.append(filters.until)
    for cond in filters.where:
        sql, values = _condition_sql(cond)
        parts.append(sql)
        params.extend(values)
    return (" AND ".join(parts) or "1"), params


def _condition_sql(cond: Condition) -> tuple[str, list[Any]]:
    """``EXISTS`` over ``json_each`` so a list matches when any element does (a scalar is a
    one-element walk; a missing key walks nothing)."""
    path = "$." + ".".join(f'"{s}"' for s in cond.key.split("."))
    value = cond.value
    if isinstance(value, bool):
        test, params = "e.type = ?", ["true" if value else "false"]
    elif isinstance(value, (int, float)):
        test, params = f"e.type IN ('integer', 'real') AND e.value {'=' if cond.op == '!=' else cond.op} ?", [value]
    else:
        test = f"e.type = 'text' AND e.value {'=' if cond.op == '!=' else cond.op} ? COLLATE NOCASE"
        params = [value]
    exists = f"EXISTS (SELECT 1 FROM json_each(d.metadata, ?) e WHERE {test})"
    return (f"NOT {exists}" if cond.op == "!=" else exists), [path, *params]


def fts_query(text: str) -> str | None:
    """An FTS5 MATCH expression for free text: any of its terms, ranked by BM25.

    Every term (:func:`searchkit.backends.base.query_terms`) becomes one double-quoted FTS5
    string (inner ``"`` doubled), so nothing the user types is read as FTS5 syntax: ``AND``,
    ``NEAR(``, ``*``, ``-``, ``:`` and parentheses are plain text, and FTS5's tokenizer turns
    a term such as ``pg_dump`` or ``git-rebase`` into a phrase of its words. ``None`` when
    nothing is left to search.
    """
    terms = query_terms(text)
    if not terms:
        return None
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)
