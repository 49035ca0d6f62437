"""``searchkit serve``: an HTTP API and a search page over one index folder (FastAPI on uvicorn).

The server is thin over :class:`searchkit.SearchIndex`. It holds two handles on the folder: a
reader, shared by the thread pool that runs searches, stats and document text concurrently,
and a writer (opened on the first write) on a thread of its own for ``add_records``,
``add_paths`` and ``remove``, so a long write never holds up searches (and each handle has
its own model, as a tokenizer serves one thread at a time). The reader sees the writer's
commits as it would a second process's. Writes from other processes are kept out by the
folder's writer lock (409 with the holder's pid, or a wait of ``server.write_wait`` seconds).

Every error is ``{"error": "..."}`` with a 4xx status (503 while the model loads); the mapping
from searchkit's exceptions to statuses is :data:`ERROR_STATUS`, in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any, AsyncIterator, Callable, Literal, TypeVar

import uvicorn
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .api import SearchIndex
from .config import Config, ServerConfig, load_config
from .errors import (ConfigError, FilterError, IndexLockedError, IndexStoreError, InputError,
                     ModelError, ModelMismatchError, NotAnIndexError, SearchkitError)
from .filters import Filters

log = logging.getLogger("searchkit")

STATIC = Path(__file__).resolve().parent / "static"
# Characters of document text shown on each side of a passage when none is asked for.
DEFAULT_CONTEXT = 600
MAX_CONTEXT = 20_000

# searchkit's exceptions → HTTP status, first match wins (subclasses before their bases).
ERROR_STATUS: tuple[tuple[type[SearchkitError], int], ...] = (
    (IndexLockedError, 409),      # another process holds the writer lock
    (ModelMismatchError, 409),    # the index was built with another model
    (FilterError, 400),
    (InputError, 400),
    (ConfigError, 400),
    (NotAnIndexError, 503),       # the folder was replaced under a running server
    (IndexStoreError, 503),       # damaged or unwritable index: the server's state, not the request
    (ModelError, 503),
    (SearchkitError, 400),
)

T = TypeVar("T")


def error_status(exc: SearchkitError) -> int:
    return next(status for kind, status in ERROR_STATUS if isinstance(exc, kind))


# -- request bodies ---------------------------------------------------------------------------

class _Strict(BaseModel):
    # Unknown fields and loose types ("k": "5", "chunks": "yes") are errors, not guesses.
    model_config = ConfigDict(extra="forbid", strict=True)


class FiltersIn(_Strict):
    """The arguments of :meth:`searchkit.Filters.build`."""

    path: str | list[str] | None = None
    type: str | list[str] | None = None
    since: str | int | float | None = None
    until: str | int | float | None = None
    where: str | list[str] | dict[str, str | int | float | bool] | None = None


class SearchIn(_Strict):
    query: str
    k: int | None = Field(None, ge=1)
    mode: Literal["dense", "keyword", "hybrid"] | None = None
    rerank: Literal["none", "late"] | None = None
    fusion: Literal["rrf", "weighted"] | None = None
    chunks: bool = False
    distinct: bool = False
    filters: FiltersIn | None = None


class RecordIn(_Strict):
    id: str = Field(min_length=1)
    text: str
    title: str | None = None
    metadata: dict[str, Any] | None = None


class DocumentsIn(_Strict):
    records: list[RecordIn] = Field(min_length=1)


class PathsIn(_Strict):
    paths: list[str] = Field(min_length=1)


# -- the index behind the server --------------------------------------------------------------

class ServedIndex:
    """The reader (shared by the thread pool) and the writer (one thread) on one folder."""

    def __init__(self, folder: Path, config: Config):
        self.folder = folder
        self.config = config
        self._write_thread = ThreadPoolExecutor(1, thread_name_prefix="searchkit-write")
        self.reader: SearchIndex | None = None
        self.writer: SearchIndex | None = None
        self.ready = False
        self.load_error: str | None = None

    async def read(self, fn: Callable[[SearchIndex], T]) -> T:
        return await run_in_threadpool(fn, self.reader)

    async def write(self, fn: Callable[[SearchIndex], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(
            self._write_thread, lambda: fn(self._writer()))

    def _writer(self) -> SearchIndex:
        if self.writer is None:
            wait = self.config.server.write_wait
            self.writer = SearchIndex.open(self.folder, self.config, create=True,
                                           wait=wait if wait > 0 else None)
        return self.writer

    async def open(self) -> None:
        """Open the reader (failing start-up if the folder is not an index), then load the
        model in the background: /readyz answers 503 until it is loaded."""
        if self.config.server.writable:
            await self.write(lambda ix: None)   # creates an empty index if there is none
        self.reader = await run_in_threadpool(SearchIndex.open, self.folder, self.config)
        asyncio.get_running_loop().run_in_executor(None, self._warm)

    def _warm(self) -> None:
        try:
            if self.reader.model_info is not None:
                _ = self.reader.embedder
                if self.config.server.writable:
                    # Its own copy: a tokenizer may not be used by two threads at once.
                    self._write_thread.submit(lambda: self._writer().embedder).result()
            self.ready = True
        except Exception as exc:  # noqa: BLE001 - reported by /readyz, the server keeps serving keyword search
            self.load_error = f"the model could not be loaded: {exc}"
            log.error("%s", self.load_error)

    def close(self) -> None:
        """Finish the writes under way, then close both handles (uvicorn has finished the
        requests under way before the app shuts down)."""
        self._write_thread.submit(self._close_writer).result()
        self._write_thread.shutdown(wait=True)
        if self.reader is not None:
            self.reader.close()
            self.reader = None

    def _close_writer(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


# -- middleware -------------------------------------------------------------------------------

class BodyLimit:
    """413 for a body over ``limit`` bytes, by its Content-Length or as it streams in."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = _error(413, f"request body over server.max_body_mb ({self.limit / 1e6:g} MB)")
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await too_large(scope, receive, send)
            return
        seen, cut = 0, False

        async def counted() -> Message:
            nonlocal seen, cut
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                cut = True   # the app sees the client leave, and its answer is dropped
                return {"type": "http.disconnect"}
            return message

        async def unless_cut(message: Message) -> None:
            if not cut:
                await send(message)

        await self.app(scope, counted, unless_cut)
        if cut:
            await too_large(scope, receive, send)


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> tuple[int, str]:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return 400, "request body is not valid JSON"
    first = errors[0] if errors else {}
    loc = list(first.get("loc", ()))
    if loc and loc[0] in ("body", "query", "path", "header"):
        loc = loc[1:]   # where it came from; the field names are enough
    where = ".".join(str(p) for p in loc)
    message = first.get("msg", "invalid request")
    if first.get("type") == "extra_forbidden":
        message = "unknown field"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return 422, f"{where or 'request'}: {message}{more}"


# -- the app ----------------------------------------------------------------------------------

def create_app(index: str | os.PathLike | None = None, config: Config | None = None) -> FastAPI:
    """The FastAPI app serving the index folder ``index`` (default ``config.index``).

    The index is opened when the app starts (its lifespan), so an app built for a folder that
    is not an index fails at start-up, not here.
    """
    config = config or load_config()
    settings = config.server
    served = ServedIndex(Path(index if index is not None else config.index), config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await served.open()
        try:
            yield
        finally:
            await asyncio.get_running_loop().run_in_executor(None, served.close)

    app = FastAPI(title="searchkit", version=_version(), lifespan=lifespan,
                  description="Semantic search over one searchkit index.")
    app.state.index = served
    app.add_middleware(BodyLimit, limit=int(settings.max_body_mb * 1e6))
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"])
    _add_error_handlers(app)
    reader, writer = Depends(_access(settings, "read")), Depends(_access(settings, "write"))

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={
            # The page builds every result from text nodes; the policy is a second wall.
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                                       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/healthz", tags=["status"])
    def healthz() -> dict:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["status"])
    def readyz() -> JSONResponse:
        """The index is open and its model loaded (503 until then)."""
        if served.ready:
            return JSONResponse({"status": "ready"})
        return _error(503, served.load_error or "loading the model")

    @app.get("/stats", tags=["index"], dependencies=[reader])
    async def stats() -> dict:
        """What ``searchkit info --json`` prints."""
        return await served.read(lambda ix: ix.stats())

    @app.post("/search", tags=["search"], dependencies=[reader])
    async def search(body: SearchIn) -> dict:
        """Rank documents (or passages with ``chunks``); the object ``searchkit query --json`` prints."""
        return await _search(served, body)

    @app.get("/search", tags=["search"], dependencies=[reader])
    async def search_get(
            q: Annotated[str, Query(description="the query")],
            k: Annotated[int | None, Query(ge=1)] = None,
            mode: Literal["dense", "keyword", "hybrid"] | None = None,
            rerank: Literal["none", "late"] | None = None,
            fusion: Literal["rrf", "weighted"] | None = None,
            chunks: bool = False, distinct: bool = False,
            path: Annotated[list[str] | None, Query()] = None,
            type: Annotated[list[str] | None, Query()] = None,
            since: str | None = None, until: str | None = None,
            where: Annotated[list[str] | None, Query()] = None) -> dict:
        """``POST /search`` for quick use: ``/search?q=lava&k=5&type=md&where=year>=1900``."""
        filters = FiltersIn(path=path, type=type, since=since, until=until, where=where)
        return await _search(served, SearchIn(query=q, k=k, mode=mode, rerank=rerank,
                                              fusion=fusion, chunks=chunks, distinct=distinct,
                                              filters=filters))

    @app.get("/documents/{doc_id}", tags=["documents"], dependencies=[reader])
    async def document(doc_id: int, start: Annotated[int, Query(ge=0)] = 0,
                       end: Annotated[int | None, Query(ge=0)] = None,
                       context: Annotated[int, Query(ge=0, le=MAX_CONTEXT)] = DEFAULT_CONTEXT) -> dict:
        """A document (a hit's ``doc_id``) with its text from ``start - context`` to
        ``end + context`` (character offsets, as in a hit's passage), and where that window
        sits in the whole text."""
        found = await served.read(lambda ix: ix.document(doc_id))
        if found is None:
            raise HTTPException(404, f"no document with id {doc_id} (removed, or replaced by a "
                                     "newer version: search again)")
        text = found.pop("text")
        end = start if end is None else end
        if end < start:
            raise InputError(f"end ({end}) is before start ({start})")
        lo, hi = max(0, min(start, len(text)) - context), min(len(text), end + context)
        return {**found, "length": len(text), "offset": lo, "text": text[lo:hi]}

    @app.post("/documents", tags=["documents"], dependencies=[writer])
    async def add_documents(body: DocumentsIn) -> dict:
        """Add or replace records: ``{"records": [{"id", "text", "title", "metadata"}]}``."""
        records = [r.model_dump(exclude_none=True) for r in body.records]
        return _report(await served.write(lambda ix: ix.add_records(records)))

    @app.delete("/documents/{key:path}", tags=["documents"], dependencies=[writer])
    async def remove_document(key: str) -> dict:
        """Remove a document by key (a record id, or a file path: a folder removes its files)."""
        removed = await served.write(lambda ix: ix.remove([key]))
        if not removed:
            raise HTTPException(404, f"no document matches {key!r}")
        return {"removed": removed}

    @app.post("/index", tags=["documents"], dependencies=[writer])
    async def index_paths(body: PathsIn) -> dict:
        """Index server-side files and folders under ``server.allow_paths`` (``--allow-paths``)."""
        paths = [_allowed(settings, p) for p in body.paths]
        return _report(await served.write(lambda ix: ix.add_paths(paths)))

    return app


async def _search(served: ServedIndex, body: SearchIn) -> dict:
    settings = served.config.server
    if len(body.query) > settings.max_query_chars:
        raise InputError(f"query of {len(body.query)} characters is over server.max_query_chars "
                         f"({settings.max_query_chars})")
    if body.k is not None and body.k > settings.max_k:
        raise InputError(f"k {body.k} is over server.max_k ({settings.max_k})")
    wanted = body.filters.model_dump(exclude_none=True) if body.filters else {}

    def run(ix: SearchIndex) -> dict:
        hits = ix.search(body.query, k=body.k, rerank=body.rerank, chunks=body.chunks,
                         distinct=body.distinct, mode=body.mode, fusion=body.fusion,
                         filters=Filters.build(**wanted) if wanted else None)
        info = ix.model_info
        return {"query": body.query, "index": str(ix.folder),
                "mode": body.mode or ix.config.search.mode,
                "model": info.name if info else None, "hits": [h.as_dict() for h in hits]}
    return await served.read(run)


def _report(report: Any) -> dict:
    return {**dataclasses.asdict(report), "embedded": report.embedded}


def _allowed(settings: ServerConfig, path: str) -> str:
    """``path`` (relative ones from the allowed folder) resolved, if it lies under it."""
    if settings.allow_paths is None:
        raise HTTPException(403, "POST /index is off: start the server with --allow-paths DIR")
    if "\x00" in path:
        raise InputError("a path contains a NUL character")
    root = os.path.realpath(settings.allow_paths)
    # realpath resolves '..' and symlinks, so neither can lead out of the folder.
    real = os.path.realpath(os.path.join(root, path))
    if os.path.commonpath([real, root]) != root:
        raise HTTPException(403, f"path {path!r} is outside the folder the server may index "
                                 "(server.allow_paths)")
    return real


def _access(settings: ServerConfig, scope: Literal["read", "write"]) -> Callable:
    """A dependency checking the Bearer key for ``scope`` and, for writes, server.writable."""
    keys = [k.encode() for k in (settings.api_key, settings.read_key) if k]

    def check(request: Request) -> None:
        if keys:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise HTTPException(401, "this server needs an API key: send "
                                         "'Authorization: Bearer KEY'")
            given = token.strip().encode()
            # Compare with every key, always, in constant time: no early exit to time.
            full = bool(settings.api_key) and hmac.compare_digest(given, settings.api_key.encode())
            read = bool(settings.read_key) and hmac.compare_digest(given, settings.read_key.encode())
            if not (full or read):
                raise HTTPException(401, "wrong API key")
            if scope == "write" and not full:
                raise HTTPException(403, "the read key cannot write; use server.api_key")
        if scope == "write" and not settings.writable:
            raise HTTPException(403, "this server is read-only; start it with "
                                     "--set server.writable=true to accept writes")
    return check


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(SearchkitError)
    async def searchkit_error(request: Request, exc: SearchkitError) -> JSONResponse:
        status = error_status(exc)
        if isinstance(exc, IndexLockedError):
            return _error(status, str(exc), holder=exc.holder)
        return _error(status, str(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        return _error(exc.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(*_validation_message(exc))



def _version() -> str:
    try:
        return version("searchkit")
    except PackageNotFoundError:
        return "0"


def serve(index: str | os.PathLike | None = None, config: Config | None = None) -> None:
    """Run the server until SIGINT or SIGTERM (uvicorn finishes requests under way, then the
    index is closed)."""
    config = config or load_config()
    settings = config.server
    folder = index if index is not None else config.index
    # A folder that is not an index: one clear line now, not a traceback from the app's start.
    SearchIndex.open(folder, config, create=settings.writable).close()
    if settings.host not in ("127.0.0.1", "localhost", "::1") and not (settings.api_key or settings.read_key):
        log.warning("serving on %s with no API key: anyone who can reach this port can search"
                    "%s", settings.host, " and write" if settings.writable else "")
    uvicorn.run(create_app(folder, config), host=settings.host, port=settings.port,
                log_level="info", server_header=False, timeout_graceful_shutdown=30,
                # uvicorn's 5 s closes an idle keep-alive connection just as a client on a
                # stalled machine reuses it (one such disconnect in the 30 s benchmark).
                timeout_keep_alive=30)
