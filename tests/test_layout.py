"""The import graph of searchkit: dependencies point one way and never form a cycle.

cli → api → (querying, indexing, ingest, documents, chunking, pooling, embedding, ann, caches,
store, …) → config, errors. Model code (``searchkit.embedding``) never imports storage and storage never
imports model code. Read from the source with ``ast``, imports inside functions included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "searchkit"

STORAGE = {"searchkit.backends.local.store", "searchkit.backends.local.caches", "searchkit.backends.local.ann"}
# What the model side may never reach: storage, and everything that sits above it.
ABOVE_MODEL = STORAGE | {"searchkit.api", "searchkit.cli", "searchkit.retrieval.searcher",
                         "searchkit.ingest.pipeline", "searchkit.ingest.embedding_pass", "searchkit.evaluation.runner"}
# The only modules that may import the API: the CLI, evaluation (which drives the API) and
# the package itself, which re-exports it.
API_USERS = {"searchkit", "searchkit.cli", "searchkit.evaluation.runner"}


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


def test_the_graph_covers_the_package():
    assert {"searchkit.api", "searchkit.retrieval.searcher", "searchkit.ingest.pipeline", "searchkit.backends.local.store",
            "searchkit.backends.local.caches", "searchkit.embedding.embedder", "searchkit.cli"} <= set(GRAPH)
    assert "searchkit.backends.local.store" in GRAPH["searchkit.backends.local.caches"]
    assert "searchkit.retrieval.ranking" in GRAPH["searchkit.retrieval.searcher"]   # ``from . import ranking``


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m.startswith("searchkit.embedding")))
def test_model_code_never_imports_storage_or_what_sits_above_it(module):
    assert not GRAPH[module] & ABOVE_MODEL, sorted(GRAPH[module] & ABOVE_MODEL)


@pytest.mark.parametrize("module", sorted(STORAGE | {"searchkit.retrieval.searcher"}))
def test_storage_and_querying_never_import_model_code(module):
    model = {m for m in GRAPH[module] if m.startswith("searchkit.embedding")}
    assert not model, sorted(model)


def test_the_write_and_query_paths_never_import_each_other():
    assert "searchkit.retrieval.searcher" not in GRAPH["searchkit.ingest.pipeline"]
    assert "searchkit.ingest.pipeline" not in GRAPH["searchkit.retrieval.searcher"]


def test_only_the_cli_evaluation_and_package_import_the_api():
    users = {m for m, deps in GRAPH.items() if "searchkit.api" in deps}
    assert users <= API_USERS, sorted(users - API_USERS)
    cli_users = {m for m, deps in GRAPH.items() if "searchkit.cli" in deps}
    assert cli_users <= {"searchkit.__main__"}, sorted(cli_users)


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
