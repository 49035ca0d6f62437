import codecs
import hashlib
import json
import logging
from pathlib import Path

import pytest

from searchkit.ingest import documents
from searchkit.ingest.documents import (Document, Skipped, Unchanged, html_to_text, iter_files,
                                 read_document, record_document, split_front_matter)
from searchkit.errors import InputError

EXTS = (".txt", ".md", ".html", ".rst")


def test_html_text_comes_from_a_parser_without_script_or_style():
    text, title = html_to_text("<html><head><title>T</title><style>p{}</style></head>"
                               "<body><p>One &amp; two</p><script>evil()</script><p>three</p></body></html>")
    assert title == "T"
    assert text == "One & two\nthree"


def test_markdown_front_matter_becomes_metadata(tmp_path):
    path = tmp_path / "a.md"
    path.write_text("---\nyear: 1862\npresident: Lincoln\n---\n# Annual message\n\nBody text.\n")
    doc = read_document(path)
    assert isinstance(doc, Document)
    assert doc.metadata == {"year": 1862, "president": "Lincoln"}
    assert doc.title == "Annual message"
    assert doc.text.startswith("# Annual message")
    assert doc.kind == "md"


def test_front_matter_that_is_not_a_mapping_stays_text():
    meta, text, notes = split_front_matter("---\njust a line\n---\nbody")
    assert meta == {} and text.startswith("---") and notes == []


@pytest.mark.parametrize("data, reason", [
    (b"\x00\x01\x02binary", "binary file"),
    (b"caf\xe9 au lait", "not valid UTF-8"),
    (b"   \n\n", "no text"),
])
def test_unusable_files_are_skipped_with_a_reason(tmp_path, data, reason):
    path = tmp_path / "f.txt"
    path.write_bytes(data)
    result = read_document(path)
    assert isinstance(result, Skipped)
    assert reason in result.reason and result.path == str(path)


def test_huge_file_is_skipped(tmp_path):
    path = tmp_path / "big.txt"
    path.write_text("word " * 1000)
    result = read_document(path, max_bytes=100)
    assert isinstance(result, Skipped) and "max_file_mb" in result.reason


def test_a_file_with_its_stored_hash_is_unchanged_and_not_parsed(tmp_path, monkeypatch):
    path = tmp_path / "a.md"
    data = "---\nyear: 1862\n---\n# Title\n\nBody text.\n".encode()
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    doc = read_document(path, known_hash="0" * 64)
    assert isinstance(doc, Document) and doc.content_hash == digest
    monkeypatch.setattr(documents, "parse_text", lambda *a: pytest.fail("parsed"))
    stat = path.stat()
    assert read_document(path, max_bytes=1000, known_hash=digest) == Unchanged(
        str(path), stat.st_size, stat.st_mtime)


def test_an_oversized_file_is_hashed_whole_against_its_stored_hash(tmp_path):
    path = tmp_path / "big.txt"
    data = b"word " * 1000
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    stat = path.stat()
    assert read_document(path, max_bytes=100, known_hash=digest) == Unchanged(
        str(path), stat.st_size, stat.st_mtime)
    changed = read_document(path, max_bytes=100, known_hash=hashlib.sha256(b"old").hexdigest())
    assert isinstance(changed, Skipped) and "max_file_mb" in changed.reason


def test_walk_skips_hidden_and_unsupported_and_recurses(tmp_path):
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "sub" / "deeper" / "a.txt").write_text("a")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "b.txt").write_text("b")
    (tmp_path / ".hidden.md").write_text("c")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    items = list(iter_files([tmp_path], EXTS))
    files = [i for i in items if isinstance(i, Path)]
    skipped = {Path(s.path).name: s.reason for s in items if isinstance(s, Skipped)}
    assert files == [tmp_path / "sub" / "deeper" / "a.txt"]
    assert skipped == {".git": "hidden folder", ".hidden.md": "hidden file",
                       "image.png": "unsupported file type .png"}


def test_missing_path_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="nope"):
        list(iter_files([tmp_path / "nope"], EXTS))


def test_symlink_loop_does_not_hang(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "loop").symlink_to(tmp_path / "a")
    (tmp_path / "a" / "x.txt").write_text("x")
    assert [p.name for p in iter_files([tmp_path], EXTS) if isinstance(p, Path)] == ["x.txt"]


def test_records_need_an_id_and_text():
    doc = record_document("r1", "hello", {"tag": "x"})
    assert doc.key == "r1" and doc.metadata == {"tag": "x"} and doc.kind == "record"
    with pytest.raises(InputError):
        record_document("", "hello")
    with pytest.raises(InputError):
        record_document("r2", "   ")


@pytest.fixture
def logs(caplog, monkeypatch):
    # The CLI, run earlier in the same session, stops "searchkit" records reaching the root.
    monkeypatch.setattr(logging.getLogger("searchkit"), "propagate", True)
    caplog.set_level(logging.INFO, logger="searchkit")
    return caplog


def _warnings(logs) -> list[str]:
    return [r.getMessage() for r in logs.records if r.levelname == "WARNING"]


def test_non_finite_front_matter_is_stored_as_null_with_one_warning_naming_file_and_keys(tmp_path, logs):
    path = tmp_path / "a.md"
    path.write_text("---\nscore: .nan\nratio: -.inf\nyear: 2021\nnested: {x: [1, .inf]}\n---\nNotes.\n")
    doc = read_document(path)
    assert doc.metadata == {"score": None, "ratio": None, "year": 2021, "nested": {"x": [1, None]}}
    json.dumps(doc.metadata, allow_nan=False)   # strict JSON: what SQLite's JSON functions read
    (warning,) = _warnings(logs)
    assert warning.startswith(f"{path}: front matter ")
    assert "score: NaN stored as null" in warning and "ratio: -Infinity" in warning
    assert "nested.x[1]: Infinity" in warning


def test_front_matter_types_yaml_carries_become_json(tmp_path, logs):
    path = tmp_path / "a.md"
    path.write_text("---\nday: 2021-03-04\nat: 2021-03-04T10:00:00Z\nblob: !!binary aGk=\n"
                    "big: 123456789012345678901234567890\ntags: !!set {b, a}\n1: one\n---\nBody.\n")
    doc = read_document(path)
    assert doc.metadata == {"day": "2021-03-04", "at": "2021-03-04 10:00:00+00:00", "blob": None,
                            "big": 123456789012345678901234567890, "tags": ["a", "b"], "1": "one"}
    assert json.loads(json.dumps(doc.metadata, allow_nan=False)) == doc.metadata
    assert "blob: binary data stored as null" in _warnings(logs)[0]


def test_record_metadata_is_made_json_with_one_warning_naming_record_and_key(logs):
    import datetime
    import numpy as np
    meta = {"score": float("nan"), "n": np.int64(3), "x": np.float32(0.5), "inf": np.float64("inf"),
            "when": datetime.date(2020, 1, 2), "raw": b"\x00\x01", "ok": True, "s": {1}, "bad": "a\udc80"}
    doc = record_document("r1", "hello", meta)
    assert doc.metadata == {"score": None, "n": 3, "x": 0.5, "inf": None, "when": "2020-01-02",
                            "raw": None, "ok": True, "s": [1], "bad": "a?"}
    json.dumps(doc.metadata, allow_nan=False)
    (warning,) = _warnings(logs)
    assert warning.startswith("record 'r1': metadata score: NaN stored as null")
    loop: dict = {}
    loop["self"] = loop
    with pytest.raises(InputError, match="record 'r2': metadata nested more than"):
        record_document("r2", "hello", loop)
    with pytest.raises(InputError, match="record 'r3': metadata must be a mapping"):
        record_document("r3", "hello", ["a", "b"])
    with pytest.raises(InputError, match="record 'r4': text is not valid Unicode"):
        record_document("r4", "bad \udc80 text")


def test_storing_nan_metadata_is_refused_rather_than_written_as_invalid_json():
    from searchkit.records import metadata_json
    assert metadata_json({"d": datetime_date()}) == '{"d": "2020-01-02"}'
    with pytest.raises(ValueError):
        metadata_json({"score": float("nan")})


def datetime_date():
    import datetime
    return datetime.date(2020, 1, 2)


def test_huge_front_matter_never_reaches_yaml_nor_the_text(tmp_path, monkeypatch, logs):
    seen: list[int] = []
    real_load = documents.yaml.load
    monkeypatch.setattr(documents.yaml, "load", lambda text, **kw: seen.append(len(text)) or real_load(text, **kw))
    path = tmp_path / "big.md"
    keys = "".join(f"key{i}: value number {i}\n" for i in range(100_000))   # about 2.6 MB
    path.write_text(f"---\n{keys}---\n# The real title\n\nThe body about otters.\n")
    doc = read_document(path)
    assert seen == []                                  # the parser never saw it
    assert doc.metadata == {} and doc.title == "The real title"
    assert doc.text == "# The real title\n\nThe body about otters.\n"
    (warning,) = _warnings(logs)
    assert warning == f"{path}: front matter ignored: longer than 64,000 characters"


def test_front_matter_dropped_for_too_many_values_is_not_text_either(tmp_path, logs):
    path = tmp_path / "bomb.md"
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8))
    path.write_text(f"---\n{bomb}---\nText after an alias bomb.\n")
    doc = read_document(path)
    assert doc.metadata == {} and doc.text == "Text after an alias bomb.\n"
    assert _warnings(logs) == [f"{path}: front matter ignored: too many values"]


def test_a_long_block_that_is_not_yaml_stays_text(tmp_path, logs):
    # A document that opens with a thematic break and has another far below: its text.
    prose = "Plain prose, line after line, with no key and no colon at all.\n" * 2000
    path = tmp_path / "essay.md"
    path.write_text(f"---\n{prose}---\nMore prose.\n")
    doc = read_document(path)
    assert doc.text.startswith("---\nPlain prose") and doc.metadata == {} and not _warnings(logs)


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be", "utf-8"])
def test_text_with_a_byte_order_mark_is_decoded(tmp_path, encoding):
    bom = {"utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE,
           "utf-32-le": codecs.BOM_UTF32_LE, "utf-32-be": codecs.BOM_UTF32_BE,
           "utf-8": codecs.BOM_UTF8}[encoding]
    path = tmp_path / "wide.md"
    path.write_bytes(bom + "---\ntitle: Café\n---\nNotes about capybaras, naïvely.\n".encode(encoding))
    doc = read_document(path)
    assert isinstance(doc, Document), doc
    assert doc.title == "Café" and doc.text == "Notes about capybaras, naïvely.\n"


def test_utf16_without_a_mark_or_broken_after_it_is_still_skipped(tmp_path):
    path = tmp_path / "nomark.txt"
    path.write_bytes("no mark here".encode("utf-16-le"))
    assert read_document(path).reason == "binary file"
    path.write_bytes(codecs.BOM_UTF16_LE + "odd".encode("utf-16-le") + b"\x00")
    assert read_document(path).reason.startswith("not valid UTF-16")
