"""A client for ``searchkit serve``: the search API of :class:`searchkit.SearchIndex` over HTTP.

It imports neither the model nor storage, and talks HTTP with the standard library (httpx
alone takes longer to import than the rest of ``searchkit query --server``), so a process
that only asks a running server starts in a fraction of a second. Example::

    import searchkit
    client = searchkit.Client("http://127.0.0.1:8765", api_key=None)
    for hit in client.search("how do I rebase a branch", k=5, mode="hybrid"):
        print(hit.rank, hit.score, hit.path, hit.passage.text if hit.passage else hit.snippet)
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, Iterable, Mapping
from urllib.parse import quote, urlencode

from .errors import (ConfigError, FilterError, IndexLockedError, IndexStoreError, InputError,
                     SearchkitError)
from .filters import Filters
from .hits import Hit, Passage


class ServerError(SearchkitError):
    """The server answered with an error, or could not be reached; ``status`` is the HTTP
    status (0 when there was no answer)."""

    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status


class Client:
    """Talks to one ``searchkit serve`` over HTTP.

    Args:
        url: the server, e.g. ``http://127.0.0.1:8765``.
        api_key: sent as ``Authorization: Bearer KEY`` when given.
        timeout: seconds to wait for an answer (a large write can take long).
    """

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 300.0):
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"server URL {url!r} must start with http:// or https://")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._headers = {"Accept": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"

    def close(self) -> None:
        """Nothing to release (one connection per request); kept for ``with``."""

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def search(self, query: str, k: int | None = None, rerank: str | None = None,
               chunks: bool = False, distinct: bool = False, mode: str | None = None,
               filters: Filters | Mapping[str, Any] | None = None,
               fusion: str | None = None) -> list[Hit]:
        """As :meth:`searchkit.SearchIndex.search`; relative path filters are taken from the
        server's working folder."""
        return hits_of(self.search_json(query, k, rerank, chunks, distinct, mode, filters, fusion))

    def search_json(self, query: str, k: int | None = None, rerank: str | None = None,
                    chunks: bool = False, distinct: bool = False, mode: str | None = None,
                    filters: Filters | Mapping[str, Any] | None = None,
                    fusion: str | None = None) -> dict[str, Any]:
        """The server's answer as it came: what ``searchkit query --json`` prints."""
        body: dict[str, Any] = {"query": query, "chunks": chunks, "distinct": distinct}
        body.update({name: value for name, value in
                     (("k", k), ("rerank", rerank), ("mode", mode), ("fusion", fusion))
                     if value is not None})
        wanted = _filters(filters)
        if wanted:
            body["filters"] = wanted
        return self._call("POST", "/search", body)

    def add_records(self, records: Iterable[Any]) -> dict[str, Any]:
        """As :meth:`searchkit.SearchIndex.add_records`; returns the ingest report as plain data
        (``added``, ``updated``, ``unchanged``, ``removed``, ``skipped``, ``tokens``, ...)."""
        return self._call("POST", "/documents", {"records": [_record(r) for r in records]})

    def remove(self, keys: Iterable[str]) -> int:
        """As :meth:`searchkit.SearchIndex.remove`: how many documents were removed."""
        removed = 0
        for key in ([keys] if isinstance(keys, str) else keys):
            try:
                removed += self._call("DELETE", f"/documents/{_quote(key)}")["removed"]
            except ServerError as exc:
                if exc.status != 404:
                    raise
        return removed

    def document(self, doc_id: int, start: int = 0, end: int | None = None,
                 context: int = 600) -> dict[str, Any]:
        """A stored document (``Hit.doc_id``) with its text around ``start``-``end`` (see
        ``GET /documents/{doc_id}``)."""
        params = {"start": start, "context": context, **({"end": end} if end is not None else {})}
        return self._call("GET", f"/documents/{int(doc_id)}", params=params)

    def stats(self) -> dict[str, Any]:
        """As :meth:`searchkit.SearchIndex.stats`."""
        return self._call("GET", "/stats")

    def _call(self, method: str, path: str, body: Any = None,
              params: Mapping[str, Any] | None = None) -> Any:
        url = self.url + path + (f"?{urlencode(params)}" if params else "")
        headers = dict(self._headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status, payload = response.status, response.read()
        except urllib.error.HTTPError as exc:   # an answer with a 4xx/5xx status
            status, payload = exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServerError(f"cannot reach the searchkit server at {self.url}: {reason}") from None
        try:
            answer = json.loads(payload)
        except ValueError:
            answer = None
        if 200 <= status < 300 and answer is not None:
            return answer
        message = answer.get("error") if isinstance(answer, dict) else None
        raise _error(status, f"{self.url}: {message or f'HTTP {status}'}")


def _error(status: int, message: str) -> SearchkitError:
    """The API's own error type where the status says which, else :class:`ServerError`."""
    if status == 409:
        return IndexLockedError(message)
    if status in (400, 422) and "filter" in message:
        return FilterError(message)
    if status in (400, 422):
        return InputError(message)
    if status == 503:
        return IndexStoreError(message)
    return ServerError(message, status)


def _quote(key: str) -> str:
    return quote(key, safe="")   # a file key is a path: its slashes travel as %2F


def _filters(filters: Filters | Mapping[str, Any] | None) -> dict[str, Any]:
    if filters is None:
        return {}
    if isinstance(filters, Filters):
        return {name: value for name, value in (
            ("path", list(filters.paths)), ("type", list(filters.kinds)),
            ("since", filters.since), ("until", filters.until),
            ("where", [str(c) for c in filters.where])) if value not in (None, [])}
    return {name: list(value) if isinstance(value, tuple) else value
            for name, value in filters.items() if value is not None}


def _record(record: Any) -> dict[str, Any]:
    if isinstance(record, Mapping):
        return {k: record[k] for k in ("id", "text", "title", "metadata") if record.get(k) is not None}
    if isinstance(record, (tuple, list)) and len(record) in (2, 3):
        data = {"id": record[0], "text": record[1]}
        if len(record) == 3 and record[2] is not None:
            data["metadata"] = record[2]
        return data
    raise InputError(f"a record must be (id, text[, metadata]) or a mapping, got {type(record).__name__}")


def _hit(data: Mapping[str, Any]) -> Hit:
    passage = data.get("passage")
    return Hit(rank=data["rank"], score=data["score"], key=data["key"], title=data["title"],
               path=data["path"], snippet=data["snippet"], doc_id=data["doc_id"],
               metadata=data.get("metadata") or {},
               passage=Passage(passage["text"], passage["char_start"], passage["char_end"],
                               passage["score"], page=passage.get("page")) if passage else None,
               scores=data.get("scores") or {})


def hits_of(answer: Mapping[str, Any]) -> list[Hit]:
    """The hits of a ``/search`` answer (``search_json``) as :class:`Hit` objects."""
    return [_hit(h) for h in answer["hits"]]
