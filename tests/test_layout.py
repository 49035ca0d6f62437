"""The import graph of searchkit: dependencies point one way and never form a cycle.

cli → api (and evaluation, which drives it) → (ingest, retrieval) → (embedding, backends) →
records, hits, filters, config, errors. Storage libraries (sqlite3, sqlite-utils, FAISS) are
imported only under ``searchkit/backends/``; model code (``searchkit.embedding``) never imports
a backend and a backend never imports model code. Read from the source with ``ast``, imports
inside functions included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "searchkit"

STORAGE_LIBRARIES = {"sqlite3", "sqlite_utils", "faiss", "pymilvus", "milvus_lite"}
MODEL_LIBRARIES = {"torch", "transformers", "sentence_transformers", "tokenizers"}
# What sits above the model and the backends, which neither may reach.
ABOVE = ("searchkit.api", "searchkit.cli", "searchkit.ingest", "searchkit.retrieval",
         "searchkit.evaluation")
# What the CLI may import from searchkit: the API and what it takes and gives.
CLI_IMPORTS = {"searchkit.api", "searchkit.config", "searchkit.errors", "searchkit.filters",
               "searchkit.evaluation.runner", "searchkit.client", "searchkit.hits",
               "searchkit.server"}
# The only modules that may import the API: the CLI, the server, evaluation (which drives the
# API) and the package itself, which re-exports it.
API_USERS = {"searchkit", "searchkit.cli", "searchkit.evaluation.runner", "searchkit.server"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(name: str) -> str | None:
    """The searchkit module a dotted name refers to (a module, else its package), or None."""
    if name != "searchkit" and not name.startswith("searchkit."):
        return None
    path = PACKAGE.parent.joinpath(*name.split("."))
    if path.with_suffix(".py").is_file() or (path / "__init__.py").is_file():
        return name
    return name.rsplit(".", 1)[0]   # a name imported from a module, not a module


def _libraries(path: Path) -> set[str]:
    """Top-level names of the libraries outside searchkit that ``path`` imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    return found - {"searchkit"}


def _imports(path: Path) -> set[str]:
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                prefix = f"{base}.{node.module}" if node.module else base
            else:
                prefix = node.module or ""
            # ``from . import search`` names a module; ``from .store import Store`` does not.
            targets = [f"{prefix}.{alias.name}" for alias in node.names] + [prefix]
            targets = [t for t in targets[:-1] if _resolve(t) == t] or [prefix]
        else:
            continue
        found.update(m for m in map(_resolve, targets) if m is not None and m != module)
    return found


GRAPH = {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}
LIBRARIES = {_module_name(p): _libraries(p) for p in sorted(PACKAGE.rglob("*.py"))}


def _under(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_the_graph_covers_the_package():
    assert {"searchkit.api", "searchkit.retrieval.searcher", "searchkit.ingest.pipeline",
            "searchkit.backends.base", "searchkit.backends.factory",
            "searchkit.backends.local.store", "searchkit.backends.local.caches",
            "searchkit.embedding.embedder", "searchkit.embedding.fake", "searchkit.cli"} <= set(GRAPH)
    assert "searchkit.backends.local.store" in GRAPH["searchkit.backends.local.caches"]
    assert "searchkit.retrieval.ranking" in GRAPH["searchkit.retrieval.searcher"]   # ``from . import ranking``
    assert {"sqlite3", "faiss"} <= LIBRARIES["searchkit.backends.local.backend"] | \
        LIBRARIES["searchkit.backends.local.ann"]


@pytest.mark.parametrize("module", sorted(m for m in LIBRARIES if not _under(m, "searchkit.backends")))
def test_storage_libraries_only_under_backends(module):
    assert not LIBRARIES[module] & STORAGE_LIBRARIES, sorted(LIBRARIES[module] & STORAGE_LIBRARIES)


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if _under(m, "searchkit.embedding")))
def test_model_code_never_imports_backends_or_what_sits_above_it(module):
    bad = {m for m in GRAPH[module] if _under(m, "searchkit.backends", *ABOVE)}
    assert not bad, sorted(bad)


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if _under(m, "searchkit.backends")))
def test_backends_never_import_model_code_or_what_sits_above_them(module):
    bad = {m for m in GRAPH[module] if _under(m, "searchkit.embedding", *ABOVE)}
    assert not bad, sorted(bad)
    assert not LIBRARIES[module] & MODEL_LIBRARIES, sorted(LIBRARIES[module] & MODEL_LIBRARIES)


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if _under(m, "searchkit.retrieval")))
def test_retrieval_never_imports_model_code_or_a_backend_implementation(module):
    bad = {m for m in GRAPH[module] if _under(m, "searchkit.embedding", "searchkit.backends.local",
                                              "searchkit.backends.factory")}
    assert not bad, sorted(bad)


def test_the_write_and_query_paths_never_import_each_other():
    assert not any(_under(m, "searchkit.retrieval") for d in GRAPH if _under(d, "searchkit.ingest")
                   for m in GRAPH[d])
    assert not any(_under(m, "searchkit.ingest") for d in GRAPH if _under(d, "searchkit.retrieval")
                   for m in GRAPH[d])


def test_the_cli_imports_only_the_api_and_what_it_takes_and_gives():
    ours = GRAPH["searchkit.cli"]
    assert ours <= CLI_IMPORTS, sorted(ours - CLI_IMPORTS)


def test_only_the_cli_evaluation_and_package_import_the_api():
    users = {m for m, deps in GRAPH.items() if "searchkit.api" in deps}
    assert users <= API_USERS, sorted(users - API_USERS)
    cli_users = {m for m, deps in GRAPH.items() if "searchkit.cli" in deps}
    assert cli_users <= {"searchkit.__main__"}, sorted(cli_users)


def test_the_http_client_needs_neither_model_nor_storage():
    reached, todo = set(), ["searchkit.client"]
    while todo:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo.extend(GRAPH.get(module, ()) - {"searchkit"})
    heavy = {m for m in reached if _under(m, "searchkit.embedding", "searchkit.backends", *ABOVE)}
    assert not heavy, sorted(heavy)
    assert not set().union(*(LIBRARIES[m] for m in reached)) & (STORAGE_LIBRARIES | MODEL_LIBRARIES)


def test_no_import_cycles():
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycle = path[path.index(module):] + [module]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if module in done:
            return
        for dep in sorted(GRAPH.get(module, ())):
            visit(dep, path + [module])
        done.add(module)

    for module in sorted(GRAPH):
        visit(module, [])
