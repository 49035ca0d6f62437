"""The ``searchkit`` command: a thin layer over :mod:`searchkit.api`.

Every command loads the configuration (flag > environment > config file > default), calls the
API, and prints. Library errors become one line on stderr and exit status 1.

The API (storage, and through it the model) is imported when a command first opens an index,
not with this module: ``query --server`` asks a running server and starts in a fraction of a
second, where importing storage alone takes 0.4 s (sqlite-utils loads pandas).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from typing import Any, Callable

import click
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from .client import Client, hits_of
from .config import (CHUNKING_MODES, EXECUTORS, FUSIONS, INDEX_TYPES, MODES, QUANTIZATIONS, RERANKS, all_keys,
                     env_var, load_config)
from .errors import SearchkitError
from .filters import Filters
from .hits import Hit

log = logging.getLogger("searchkit")


def _setup_logging(quiet: bool, model: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("searchkit: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.ERROR if quiet else logging.INFO)
    log.propagate = False
    # Library chatter (weight loading bars, deprecation notes) is not for end users.
    for name in ("sentence_transformers", "transformers", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not model or "transformers" not in sys.modules:
        # Importing transformers just to quieten it costs a second or two, which the ONNX query
        # path never needs: the environment quietens it when (if) the torch runtime imports it.
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        return
    try:
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except Exception:  # noqa: BLE001 - cosmetic only
        pass


def handle_errors(fn: Callable) -> Callable:
    """Turn searchkit's own exceptions into one line and a non-zero exit."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SearchkitError as exc:
            raise click.ClickException(str(exc)) from None
    return wrapper


def open_index(**kwargs: Any):
    """:meth:`searchkit.SearchIndex.open`, importing the API on first use (see the module doc)."""
    from .api import SearchIndex
    return SearchIndex.open(**kwargs)


def common_options(fn: Callable, with_index: bool = True) -> Callable:
    """Options every command shares: the index folder, config file and generic overrides."""
    options = [
        click.option("--index", "index_dir", metavar="DIR", default=None,
                     help=f"Index folder (setting `index`, env {env_var('index')}; default .searchkit)."),
    ] if with_index else []
    options += [
        click.option("--config", "config_file", metavar="FILE", default=None,
                     help="YAML config file (default: $SEARCHKIT_CONFIG, else ./config.yaml if present)."),
        click.option("--set", "settings", metavar="KEY=VALUE", multiple=True,
                     help="Override any setting, e.g. --set search.rerank_depth=100 (repeatable)."),
        click.option("-q", "--quiet", is_flag=True, help="Only print results and errors."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def build_config(index_dir: str | None, config_file: str | None, settings: tuple[str, ...],
                 **flags: Any):
    sets: dict[str, str] = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--set")
        if key.strip() not in all_keys():
            raise click.BadParameter(f"unknown setting {key.strip()!r}", param_hint="--set")
        sets[key.strip()] = value
    overrides = {k: v for k, v in flags.items() if v is not None}
    if index_dir is not None:
        overrides["index"] = index_dir
    return load_config(config_file, overrides=overrides, settings=sets)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="searchkit")
def main() -> None:
    """searchkit: semantic search for long documents.

    Index folders of .txt, .md, .rst and .html files, then query them by meaning. Settings come
    from flags, SEARCHKIT_* environment variables, then config.yaml.
    """


@main.command("index")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@common_options
@click.option("--model", default=None, help="Embedding model: hub name, local folder or all-MiniLM-L6-v2.")
@click.option("--index-type", type=click.Choice(INDEX_TYPES), default=None,
              help="FAISS index type for a new index (setting ann.type).")
@click.option("--chunking", type=click.Choice(CHUNKING_MODES), default=None,
              help="How chunk vectors are made for a new index (setting chunking.mode).")
@click.option("--chunk-size", type=int, default=None, help="Tokens per chunk (setting chunking.size).")
@click.option("--batch-tokens", type=int, default=None,
              help="Token budget of one model batch (setting model.batch_tokens).")
@click.option("--executor", type=click.Choice(EXECUTORS), default=None,
              help="Where the model runs: this process, or a Ray cluster (setting ingest.executor; see ray.*).")
@click.option("--wait", type=float, default=None, metavar="SECONDS",
              help="Wait this long for another writer instead of failing.")
@handle_errors
def index_cmd(paths, index_dir, config_file, settings, quiet, model, index_type, chunking,
              chunk_size, batch_tokens, executor, wait):
    """Index files and folders (recursively), incrementally.

    Unchanged files (same SHA-256) are skipped without embedding (a touched one gets its new
    modification time recorded, for --since/--until); changed files replace their entry, or
    lose it when the file is now empty, binary or otherwise unusable; files deleted from the
    given folders are removed. Files are keyed by their absolute path with .. resolved. PDF
    and DOCX are read too. Hidden, binary, non-UTF-8, empty, oversized and unsupported files,
    and encrypted, corrupt or scanned (text-less) PDFs and DOCXs, are skipped with one line
    each; a summary line says added / updated / unchanged / removed / skipped.
    """
    _setup_logging(quiet)
    config = build_config(index_dir, config_file, settings, **{
        "model.name": model, "ann.type": index_type, "chunking.mode": chunking,
        "chunking.size": chunk_size, "model.batch_tokens": batch_tokens,
        "ingest.executor": executor})

    def print_skip(skipped) -> None:
        # As they happen, above the progress bar: a long document may embed for minutes.
        with tqdm.external_write_mode(file=sys.stderr):
            click.echo(f"skipped {_printable(skipped.path)}: {skipped.reason}", err=True)

    with open_index(config=config, create=True, wait=wait) as ix, \
            logging_redirect_tqdm(loggers=[log]):
        report = ix.add_paths(list(paths), show_progress=not quiet and sys.stderr.isatty(),
                              on_skip=None if quiet else print_skip)
        click.echo(report.summary())


@main.command("query")
@click.argument("text")
@common_options
@click.option("-k", "k", type=int, default=None, help="Number of results (setting search.k).")
@click.option("--mode", type=click.Choice(MODES), default=None,
              help="dense: vectors; keyword: BM25 over SQLite FTS5; hybrid: both, fused "
                   "(setting search.mode).")
@click.option("--fusion", type=click.Choice(FUSIONS), default=None,
              help="How hybrid fuses its lists: adaptive (default), weighted or rrf (setting search.fusion).")
@click.option("--rerank", type=click.Choice(RERANKS), default=None,
              help="late: rescore the top documents with their best late chunk (setting search.rerank).")
@click.option("--chunks", is_flag=True, help="Return passages from the chunk index instead of documents.")
@click.option("--distinct", is_flag=True,
              help="With --chunks: at most one passage (the best) per document.")
@click.option("--path", "paths", multiple=True, metavar="GLOB",
              help="Only files whose path matches GLOB, e.g. '*/19th-century/*' (repeatable: any).")
@click.option("--type", "types", multiple=True, metavar="EXT",
              help="Only this file type: txt, md, rst, html, pdf, docx, record (repeatable: any).")
@click.option("--since", default=None, metavar="DATE",
              help="Only files modified on or after DATE (YYYY-MM-DD, ISO datetime, Unix seconds).")
@click.option("--until", default=None, metavar="DATE",
              help="Only files modified before DATE (a date-only DATE includes that day).")
@click.option("--where", "where", multiple=True, metavar="KEY OP VALUE",
              help="Metadata condition, e.g. year>=1900 or party=Republican; OP is one of "
                   "= != < <= > >= (repeatable: all must hold).")
@click.option("--model", default=None, help="Refuse to run unless the index was built with this model.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@click.option("--server", metavar="URL", default=None, envvar="SEARCHKIT_SERVER",
              help="Ask a running `searchkit serve` at URL (env SEARCHKIT_SERVER) instead of "
                   "opening an index: same output, no model loaded.")
@click.option("--api-key", metavar="KEY", default=None, envvar="SEARCHKIT_API_KEY",
              help="API key for --server (env SEARCHKIT_API_KEY).")
@handle_errors
def query_cmd(text, index_dir, config_file, settings, quiet, k, mode, fusion, rerank, chunks,
              distinct, paths, types, since, until, where, model, as_json, server, api_key):
    """Search the index for TEXT.

    Prints rank, score, path (with "p. N", the passage's page, for a PDF), title and each
    document's best passage. Filters apply before ranking, so -k N returns N results whenever
    N documents match. --json prints one object: {"query", "index", "mode", "model", "hits":
    [{"rank", "score", "key", "path", "title", "snippet", "doc_id", "metadata", "scores",
    "passage": {"text", "char_start", "char_end", "score", "page"}}]} ("page" is null except
    for PDFs). With --server URL (or SEARCHKIT_SERVER) a running `searchkit serve` answers:
    same output, no model loaded.
    """
    filters = Filters.build(path=paths or None, type=types or None, since=since, until=until,
                            where=where or None)
    if server:
        local = [name for name, value in (("--index", index_dir), ("--config", config_file),
                                          ("--set", settings), ("--model", model)) if value]
        if local:
            raise click.UsageError(f"{', '.join(local)} apply to a local index, not to --server "
                                   "(the server uses its own settings)")
        _setup_logging(quiet, model=False)
        with Client(server, api_key=api_key) as client:
            answer = client.search_json(text, k=k, rerank=rerank, chunks=chunks,
                                        distinct=distinct, mode=mode, filters=filters,
                                        fusion=fusion)
        if as_json:
            click.echo(json.dumps(answer, ensure_ascii=False))
        else:
            _print_hits(hits_of(answer))
        return
    _setup_logging(quiet)
    config = build_config(index_dir, config_file, settings, **{
        "search.k": k, "search.rerank": rerank, "search.mode": mode, "search.fusion": fusion})
    with open_index(config=config) as ix:
        if model:
            ix.check_model(model)
        hits = ix.search(text, rerank=rerank, chunks=chunks, distinct=distinct,
                         filters=filters)
        if as_json:
            click.echo(json.dumps({"query": text, "index": str(ix.folder),
                                   "mode": config.search.mode,
                                   "model": ix.model_info.name if ix.model_info else None,
                                   "hits": [h.as_dict() for h in hits]}, ensure_ascii=False))
            return
        _print_hits(hits)


def _print_hits(hits: list[Hit]) -> None:
    if not hits:
        click.echo("no results")
    for hit in hits:
        where = _printable(_shown_path(hit.path) if hit.path else hit.key)
        page = hit.passage.page if hit.passage is not None else None
        if page is not None:
            where += f" p. {page}"
        click.echo(f"{hit.rank:>2}. {hit.score:.3f}  {where}  —  {hit.title}")
        click.echo(f"    {hit.snippet}")


def _printable(path: str) -> str:
    """A path on one line: newlines, control characters and undecodable bytes escaped."""
    return "".join(c if c.isprintable() or c == " " else ascii(c)[1:-1] for c in path)


def _shown_path(path: str) -> str:
    try:
        rel = os.path.relpath(path)
        return rel if not rel.startswith("..") else path
    except ValueError:
        return path


@main.command("eval")
@click.argument("dataset_dir", type=click.Path())
@functools.partial(common_options, with_index=False)
@click.option("--work-dir", metavar="DIR", default=None,
              help="Keep the index folders here and reuse them (default: a temporary folder, deleted).")
@click.option("--modes", default=None, metavar="M1,M2",
              help="Modes to evaluate, comma-separated (default all: doc-first, doc-long, naive, "
                   "late, late-long, rerank).")
@click.option("-k", "k", type=int, default=10, show_default=True,
              help="Results fetched per query (at least 10).")
@click.option("--model", default=None, help="Embedding model (setting model.name).")
@click.option("--chunk-size", type=int, default=None, help="Tokens per chunk (setting chunking.size).")
@click.option("--mode", "search_mode", type=click.Choice(MODES),
              default="dense", show_default=True,
              help="Query mode of every eval mode (hybrid fuses BM25 with each mode's dense side).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@handle_errors
def eval_cmd(dataset_dir, config_file, settings, quiet, work_dir, modes, k, model, chunk_size,
             search_mode, as_json):
    """Measure retrieval quality on a BEIR folder (corpus.jsonl, queries.jsonl, qrels.tsv).

    Indexes the corpus once per index variant the modes need, runs every query and prints
    nDCG@10, recall@1, recall@10 and MRR@10 per mode.
    """
    _setup_logging(quiet)
    config = build_config(None, config_file, settings, **{
        "model.name": model, "chunking.size": chunk_size})
    chosen = [m.strip() for m in modes.split(",") if m.strip()] if modes else None
    from .evaluation.runner import evaluate
    report = evaluate(dataset_dir, config, work_dir=work_dir, modes=chosen, k=k,
                      search_mode=search_mode,
                      progress=None if quiet else (lambda line: click.echo(line, err=True)),
                      show_progress=not quiet and sys.stderr.isatty())
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        click.echo(report.table())


@main.command("info")
@common_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def info_cmd(index_dir, config_file, settings, quiet, as_json):
    """Show the index: model, sizes, index structure and files."""
    _setup_logging(quiet)
    config = build_config(index_dir, config_file, settings)
    with open_index(config=config) as ix:
        stats = ix.stats()
    if as_json:
        click.echo(json.dumps(stats, indent=2))
        return
    model = stats["model"] or {}
    lines = [
        ("index", stats["index"]),
        ("model", model.get("name", "(none yet)")),
        ("dimension", model.get("dimension")),
        ("max tokens", model.get("max_tokens")),
        ("window / overlap", f"{model.get('window_tokens')} / {model.get('window_overlap')} tokens"),
        ("chunking", _fmt(stats["chunking"])),
        ("documents", stats["documents"]),
        ("chunks", stats["chunks"]),
        ("tokens", f"{stats['tokens']:,}"),
        ("index type", stats["ann_type"]),
        ("documents index", _fmt(stats["ann"]["documents"])),
        ("chunks index", _fmt(stats["ann"]["chunks"])),
        ("search params", _fmt(stats["search"])),
        ("on disk", f"{stats['bytes_on_disk'] / 1e6:.1f} MB "
                    f"({', '.join(f'{n} {s / 1e6:.1f} MB' for n, s in stats['files'].items())})"
         if stats["files"] else "on the server"),
        ("schema / generation", f"{stats['schema_version']} / {stats['generation']}"),
    ]
    if "milvus" in stats:   # where a backend: milvus index lives
        lines += [(f"milvus {k}", v) for k, v in stats["milvus"].items()]
    for name, value in lines:
        click.echo(f"{name:>20}: {value}")


def _fmt(data: dict | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in (data or {}).items()) or "-"


@main.command("remove")
@click.argument("keys", nargs=-1, required=True)
@common_options
@click.option("--wait", type=float, default=None, metavar="SECONDS", help="Wait for another writer.")
@handle_errors
def remove_cmd(keys, index_dir, config_file, settings, quiet, wait):
    """Remove documents by record id, file path (even if deleted) or folder.

    Each KEY is tried as a record id first, so a file of the same name in the current folder
    does not shadow it; a path may be relative or absolute; a folder removes everything indexed
    under it; a KEY that matches nothing is named in a warning.
    """
    _setup_logging(quiet)
    config = build_config(index_dir, config_file, settings)
    with open_index(config=config, wait=wait) as ix:
        n = ix.remove(list(keys))
    click.echo(f"removed {n}")


@main.command("rebuild")
@common_options
@click.option("--index-type", type=click.Choice(INDEX_TYPES), default=None,
              help="Switch the FAISS index type while rebuilding.")
@click.option("--wait", type=float, default=None, metavar="SECONDS", help="Wait for another writer.")
@handle_errors
def rebuild_cmd(index_dir, config_file, settings, quiet, index_type, wait):
    """Rebuild the FAISS files from the vectors in SQLite."""
    _setup_logging(quiet)
    config = build_config(index_dir, config_file, settings)
    with open_index(config=config, wait=wait) as ix:
        stats = ix.rebuild(index_type)
    click.echo(f"rebuilt: documents {_fmt(stats['ann']['documents'])}; chunks {_fmt(stats['ann']['chunks'])}")


@main.command("compact")
@common_options
@click.option("--wait", type=float, default=None, metavar="SECONDS", help="Wait for another writer.")
@handle_errors
def compact_cmd(index_dir, config_file, settings, quiet, wait):
    """Drop removed vectors for good (HNSW tombstones) and reclaim disk space (SQLite VACUUM)."""
    _setup_logging(quiet)
    config = build_config(index_dir, config_file, settings)
    with open_index(config=config, wait=wait) as ix:
        result = ix.compact()
    dropped = ", ".join(f"{t} {n}" for t, n in result["dropped"].items()) or "none"
    click.echo(f"compacted: tombstones dropped: {dropped}; "
               f"{result['bytes_before'] / 1e6:.1f} MB -> {result['bytes_after'] / 1e6:.1f} MB"
               + (f" ({result['note']})" if result.get("note") else ""))


@main.group("model")
def model_group() -> None:
    """Manage the embedding model (ONNX export)."""


@model_group.command("export")
@functools.partial(common_options, with_index=False)
@click.option("--model", default=None,
              help="Model to export (default: setting model.name, or its fallback as `index` would use).")
@click.option("--quantize", type=click.Choice(QUANTIZATIONS), default=None,
              help="Also make the int8 graph (setting model.quantize).")
@click.option("--force", is_flag=True, help="Export again even if an intact export is cached.")
@handle_errors
def model_export_cmd(config_file, settings, quiet, model, quantize, force):
    """Export the model to ONNX once, so queries run without torch (model.runtime auto or onnx).

    The export goes to the ONNX cache (setting model.onnx_cache; default
    ~/.cache/searchkit/onnx), keyed by the model's files; an intact export is kept.
    """
    _setup_logging(quiet)
    config = build_config(None, config_file, settings, **{"model.quantize": quantize})
    from .api import export_model  # imported on use, as _open does (see the module doc)
    click.echo(f"exported: {export_model(config, name=model, force=force)}")


@main.command("serve")
@common_options
@click.option("--host", default=None, help="Address to listen on (setting server.host; default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (setting server.port; default 8765).")
@click.option("--writable", is_flag=True, default=None,
              help="Accept writes: POST/DELETE /documents, POST /index (setting server.writable).")
@click.option("--allow-paths", metavar="DIR", default=None,
              help="Let POST /index index server-side files under DIR only (setting server.allow_paths).")
@handle_errors
def serve_cmd(index_dir, config_file, settings, quiet, host, port, writable, allow_paths):
    """Serve the index over HTTP: a JSON API and a search page at http://HOST:PORT/.

    The model is loaded once; searches run while writes (off unless --writable) go on. Keys,
    limits and CORS are settings under server.* (see config.yaml). Stop with Ctrl-C or SIGTERM.
    """
    _setup_logging(quiet)
    config = build_config(index_dir, config_file, settings, **{
        "server.host": host, "server.port": port, "server.writable": writable,
        "server.allow_paths": allow_paths})
    from .server import serve   # FastAPI and the API: only this command needs them
    serve(config=config)


if __name__ == "__main__":  # pragma: no cover
    main()
