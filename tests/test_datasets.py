"""The BEIR loader: valid folders load, every malformed file names its file and line."""

import json

import pytest

from searchkit.evaluation.datasets import load_beir
from searchkit.errors import DatasetError


def write_beir(folder, corpus=None, queries=None, qrels=None):
    folder.mkdir(parents=True, exist_ok=True)
    corpus = corpus if corpus is not None else [
        {"_id": "d1", "title": "Volcanoes", "text": "Lava and ash."},
        {"_id": "d2", "title": "", "text": "Bread needs flour."}]
    queries = queries if queries is not None else [{"_id": "q1", "text": "eruption"},
                                                   {"_id": "q2", "text": "baking"}]
    for name, rows in (("corpus.jsonl", corpus), ("queries.jsonl", queries)):
        (folder / name).write_text("".join(r if isinstance(r, str) else json.dumps(r) + "\n"
                                           for r in rows))
    (folder / "qrels.tsv").write_text(
        qrels if qrels is not None else "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t2\n")
    return folder


def test_valid_folder_loads(tmp_path):
    ds = load_beir(write_beir(tmp_path / "set"))
    assert ds.name == "set"
    assert ds.qrels == {"q1": {"d1": 1}, "q2": {"d2": 2}}
    records = {r["id"]: r for r in ds.records()}
    assert records["d1"]["text"] == "Volcanoes\n\nLava and ash."   # title leads the text
    assert records["d2"]["text"] == "Bread needs flour." and records["d2"]["title"] == "d2"


@pytest.mark.parametrize("kwargs, where, words", [
    ({"corpus": [{"_id": "d1", "text": "x"}, "{not json\n"]}, "corpus.jsonl:2", "not valid JSON"),
    ({"corpus": [{"_id": "d1"}]}, "corpus.jsonl:1", "'text'"),
    ({"corpus": [{"_id": "d1", "text": "x"}, {"_id": "d1", "text": "y"}]}, "corpus.jsonl:2", "duplicate"),
    ({"queries": [{"_id": "q1", "text": "a"}, [1, 2]]}, "queries.jsonl:2", "JSON object"),
    ({"qrels": "query-id\tcorpus-id\tscore\nq1\td1\n"}, "qrels.tsv:2", "3 tab-separated"),
    ({"qrels": "query-id\tcorpus-id\tscore\nq1\td1\thigh\n"}, "qrels.tsv:2", "not an integer"),
    ({"qrels": "query-id\tcorpus-id\tscore\nq9\td1\t1\n"}, "qrels.tsv:2", "'q9'"),
    ({"qrels": "query-id\tcorpus-id\tscore\nq1\td9\t1\n"}, "qrels.tsv:2", "'d9'"),
])
def test_malformed_lines_name_file_and_line(tmp_path, kwargs, where, words):
    folder = write_beir(tmp_path / "set", **kwargs)
    with pytest.raises(DatasetError) as err:
        load_beir(folder)
    assert where in str(err.value) and words in str(err.value)


def test_missing_files_and_folder(tmp_path):
    folder = write_beir(tmp_path / "set")
    (folder / "qrels.tsv").unlink()
    with pytest.raises(DatasetError, match="qrels.tsv: missing"):
        load_beir(folder)
    with pytest.raises(DatasetError, match="not a folder"):
        load_beir(tmp_path / "nowhere")
