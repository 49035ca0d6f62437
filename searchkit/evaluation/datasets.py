"""Evaluation datasets in the BEIR layout: ``corpus.jsonl``, ``queries.jsonl``, ``qrels.tsv``.

``corpus.jsonl`` holds one ``{"_id", "title", "text"}`` object a line, ``queries.jsonl`` one
``{"_id", "text"}`` a line, and ``qrels.tsv`` a ``query-id  corpus-id  score`` header then one
judged pair a line (``qrels/test.tsv``, BEIR's own place for it, is read when ``qrels.tsv`` is
absent). Any missing file or malformed line raises :class:`~searchkit.errors.DatasetError`
naming the file and line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..errors import DatasetError


@dataclass(frozen=True)
class Dataset:
    """A loaded BEIR folder."""

    name: str
    folder: Path
    corpus: dict[str, dict[str, str]]       # doc id → {"title", "text"}
    queries: dict[str, str]                 # query id → text
    qrels: dict[str, dict[str, int]]        # query id → doc id → grade

    def records(self) -> Iterator[dict[str, Any]]:
        """The corpus as ``SearchIndex.add_records`` input; a title is put before the text."""
        for doc_id, doc in self.corpus.items():
            title, text = doc["title"], doc["text"]
            if title and not text.startswith(title):
                text = f"{title}\n\n{text}"
            yield {"id": doc_id, "text": text, "title": title or doc_id}

    @property
    def judged_queries(self) -> dict[str, str]:
        """Queries with at least one relevant document (the ones that are scored)."""
        return {q: t for q, t in self.queries.items()
                if any(g > 0 for g in self.qrels.get(q, {}).values())}


def _jsonl(path: Path, fields: tuple[str, ...]) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        handle = path.open(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"{path}: missing (a BEIR folder holds corpus.jsonl, queries.jsonl "
                           "and qrels.tsv)") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read ({exc})") from None
    with handle:
        try:
            for lineno, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
                if not isinstance(obj, dict):
                    raise DatasetError(f"{path}:{lineno}: expected a JSON object")
                for name in fields:
                    if not isinstance(obj.get(name), str):
                        raise DatasetError(f"{path}:{lineno}: field {name!r} missing or not a string")
                yield lineno, obj
        except UnicodeDecodeError:
            raise DatasetError(f"{path}: not UTF-8 text") from None


def load_beir(folder: str | Path) -> Dataset:
    """Read a BEIR folder.

    Raises:
        DatasetError: a file is missing, a line is malformed, an id repeats, or a judgment
            names a query or document the folder does not have.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder (expected a BEIR folder with corpus.jsonl, "
                           "queries.jsonl and qrels.tsv)")
    corpus: dict[str, dict[str, str]] = {}
    path = folder / "corpus.jsonl"
    for lineno, obj in _jsonl(path, ("_id", "text")):
        if obj["_id"] in corpus:
            raise DatasetError(f"{path}:{lineno}: duplicate _id {obj['_id']!r}")
        title = obj.get("title") or ""
        if not isinstance(title, str):
            raise DatasetError(f"{path}:{lineno}: field 'title' is not a string")
        corpus[obj["_id"]] = {"title": title, "text": obj["text"]}
    if not corpus:
        raise DatasetError(f"{path}: no documents")

    queries: dict[str, str] = {}
    path = folder / "queries.jsonl"
    for lineno, obj in _jsonl(path, ("_id", "text")):
        if obj["_id"] in queries:
            raise DatasetError(f"{path}:{lineno}: duplicate _id {obj['_id']!r}")
        queries[obj["_id"]] = obj["text"]

    path = folder / "qrels.tsv"
    if not path.exists() and (folder / "qrels" / "test.tsv").exists():
        path = folder / "qrels" / "test.tsv"
    qrels = _read_qrels(path, queries, corpus)
    if not any(g > 0 for rels in qrels.values() for g in rels.values()):
        raise DatasetError(f"{path}: no relevant query-document pair")
    return Dataset(folder.name, folder, corpus, queries, qrels)


def _read_qrels(path: Path, queries: dict, corpus: dict) -> dict[str, dict[str, int]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DatasetError(f"{path}: missing (a BEIR folder holds corpus.jsonl, queries.jsonl "
                           "and qrels.tsv)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot be read ({exc})") from None
    qrels: dict[str, dict[str, int]] = {}
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        cells = line.rstrip("\r").split("\t")
        if lineno == 1 and cells[0].strip().lower() in ("query-id", "query_id", "qid"):
            continue
        if len(cells) != 3:
            raise DatasetError(f"{path}:{lineno}: expected 3 tab-separated columns "
                               f"(query-id, corpus-id, score), got {len(cells)}")
        qid, did, grade = (c.strip() for c in cells)
        try:
            score = int(grade)
        except ValueError:
            raise DatasetError(f"{path}:{lineno}: score {grade!r} is not an integer") from None
        if qid not in queries:
            raise DatasetError(f"{path}:{lineno}: query {qid!r} is not in queries.jsonl")
        if did not in corpus:
            raise DatasetError(f"{path}:{lineno}: document {did!r} is not in corpus.jsonl")
        qrels.setdefault(qid, {})[did] = score
    return qrels
