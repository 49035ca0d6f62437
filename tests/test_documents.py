import hashlib
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
    meta, text = split_front_matter("---\njust a line\n---\nbody")
    assert meta == {} and text.startswith("---")


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
