"""Hostile input: a generated fuzz corpus of a few hundred files of every awkward kind.

Indexing must not crash, must report every skipped path exactly once with a reason, must
index every usable file (whatever its name), and must never lose a document indexed before.
Permission loss and files vanishing mid-run are simulated (the tests run as root, for whom
chmod 000 blocks nothing).
"""

from __future__ import annotations

import codecs
import dataclasses
import os
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from doc_fixtures import (docx_bytes, encrypted_docx_bytes, pdf_bytes, renamed_zip_bytes,
                          zip_bomb_docx_bytes)
from searchkit import Filters, SearchIndex
from searchkit.ingest import pipeline as indexing
from searchkit.ingest.executors import LocalExecutor
from searchkit.cli import main
from searchkit.config import IngestConfig


@pytest.fixture
def config(fake_index_config):
    """This file tests storage, not retrieval quality: the deterministic fake embedder."""
    return fake_index_config

CAP_BYTES = 600_000
WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike".split()
WEIRD_NAMES = ["with space.txt", "new\nline.txt", "tab\there.md", "café.txt", "日本語.md",
               "emoji 🦊.txt", "-rf.txt", "[glob]*?.txt", "100%_like.txt", "quote'\"s.txt",
               "UPPER.TXT", "back\\slash.txt", " leading space.txt", "trailing space .txt"]


def text(rng: random.Random, words: int = 25) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)) + "\n"


def build_fuzz_corpus(root: Path, seed: int = 7, n_good: int = 40) -> dict[str, set[Path]]:
    """Write the corpus; returns the paths expected to be indexed ("good"), indexed with one
    warning ("warned", a subset of "good") and skipped, by reason."""
    rng = random.Random(seed)
    good, bad, warned = set(), {}, set()

    def put(rel: str, data: bytes, ok: bool, reason: str | None = None, warn: bool = False) -> Path:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        (good.add(path) if ok else bad.setdefault(reason, set()).add(path))
        if warn:
            warned.add(path)
        return path

    for i in range(n_good):
        put(f"good/g{i:03d}.txt", f"Good file {i}. {text(rng)}".encode(), True)
    for i in range(40):
        put(f"bin/b{i:03d}.txt", rng.randbytes(200) + b"\x00" + rng.randbytes(50), False, "binary file")
    for i in range(40):
        put(f"latin/l{i:03d}.md", f"caf{i}".encode() + b"\xe9\xff\xfe" + rng.randbytes(30).replace(b"\x00", b"x"),
            False, "not valid UTF-8")
    for i in range(20):
        put(f"empty/e{i:03d}.txt", b"", False, "no text")
        put(f"empty/w{i:03d}.rst", b"  \n\t \n", False, "no text")
    for i in range(10):
        put(f"huge/h{i:03d}.txt", b"word " * (CAP_BYTES // 5 + 100 * (i + 1)), False, "larger than")
    for i, name in enumerate(WEIRD_NAMES):
        put(f"weird/{name}", f"Weird name {i}. {text(rng)}".encode(), True)
    bad_name = os.fsdecode(b"bad\xffname.txt")
    put(f"weird/{bad_name}", b"fine text, awkward name", False, "name is not valid UTF-8")
    # A tree deeper than Python's recursion limit (os.walk recursed in Python 3.11).
    deep = root / "deep"
    deep.mkdir(parents=True)
    for _ in range(1100):  # one level at a time: Path.mkdir(parents=True) recurses too
        deep = deep / "d"
        os.mkdir(deep)
    put(str((deep / "bottom.txt").relative_to(root)), b"At the bottom of a very deep tree.", True)
    # Symlinks: a loop back to an ancestor, a file pointing at itself, broken ones, a device.
    links = root / "links"
    links.mkdir()
    (links / "up").symlink_to(root)
    bad.setdefault("symlinked folder", set()).add(links / "up")
    (links / "self.txt").symlink_to(links / "self.txt")
    bad.setdefault("cannot be read", set()).add(links / "self.txt")
    for i in range(10):
        (links / f"broken{i}.txt").symlink_to(root / "nowhere" / f"{i}.txt")
        bad.setdefault("broken symlink", set()).add(links / f"broken{i}.txt")
    (links / "zero.txt").symlink_to("/dev/zero")
    os.mkfifo(links / "pipe.txt")
    bad.setdefault("not a regular file", set()).update({links / "zero.txt", links / "pipe.txt"})
    (links / "good-link.txt").symlink_to(root / "good" / "g000.txt")
    good.add(links / "good-link.txt")
    # Markup built to exhaust parsers: nested HTML, a YAML alias bomb, deeply nested YAML.
    put("markup/nested.html", b"<div>" * 50_000 + b"deep words here" + b"</div>" * 50_000, True)
    bomb = "---\na: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(8))
    put("markup/bomb.md", (bomb + "---\n# Bomb\n\nText after an alias bomb.\n").encode(), True, warn=True)
    put("markup/deep-yaml.md", ("---\nx: " + "[" * 800 + "]" * 800 + "\n---\nBody.\n").encode(), True,
        warn=True)
    # Front matter SQLite's JSON cannot hold (NaN, Infinity) and front matter far over its cap
    # (40,000 keys: seconds of YAML parsing, and all of it text, before the cap).
    for i in range(6):
        put(f"frontmatter/nan{i}.md", (f"---\nscore: {('.nan', '.inf', '-.inf')[i % 3]}\n"
                                       f"year: {2000 + i}\n---\nNot a number {i}. {text(rng)}").encode(),
            True, warn=True)
    keys = "".join(f"k{i}: {i}\n" for i in range(40_000))
    put("frontmatter/huge.md", f"---\n{keys}---\n# Huge\n\nBody after a huge front matter.\n".encode(),
        True, warn=True)
    # Text in UTF-16 and UTF-32 after a byte-order mark.
    for i, (encoding, bom) in enumerate((("utf-16-le", codecs.BOM_UTF16_LE), ("utf-16-be", codecs.BOM_UTF16_BE),
                                         ("utf-32-le", codecs.BOM_UTF32_LE))):
        put(f"wide/w{i}.txt", bom + f"Wide text {i}, café. {text(rng)}".encode(encoding), True)
    put("markup/broken.html", b"<html><body><p>unclosed <b>tags <i>everywhere", True)
    put_hostile_documents(put)
    for i in range(20):
        put(f"other/o{i:03d}.png", b"\x89PNG", False, "unsupported file type")
        put(f"other/.hidden{i}.txt", b"hidden", False, "hidden file")
    return {"good": good, "warned": warned, **bad}


def put_hostile_documents(put) -> None:
    """PDF and DOCX files as they turn up: fine, long, scanned, encrypted, broken, disguised."""
    fine = pdf_bytes(["A fine PDF about lighthouses.", "Its second page, about tides."])
    put("docs/fine.pdf", fine, True)
    put("docs/fine.docx", docx_bytes([("h1", "A fine DOCX"), ("p", "About harbours.")]), True)
    # 2,000 pages are read one page at a time (memory does not grow with the page count).
    put("docs/long.pdf", pdf_bytes([f"Page {i} of a long book." for i in range(2000)]), True)
    put("docs/encrypted.pdf", pdf_bytes(["Secret."], password="secret"), False, "encrypted PDF")
    put("docs/truncated.pdf", fine[: len(fine) // 2], False, "corrupt or truncated PDF")
    put("docs/garbage.pdf", b"%PDF-1.7\n" + bytes(range(256)) * 8, False, "corrupt or truncated PDF")
    put("docs/scanned.pdf", pdf_bytes(["", ""], text_layer=False), False, "no text layer (scanned?)")
    put("docs/protected.docx", encrypted_docx_bytes(), False, "encrypted or password-protected")
    put("docs/photos.docx", renamed_zip_bytes(), False, "not a DOCX (a zip without word/document.xml)")
    put("docs/notes.docx", b"plain text saved with the wrong extension", False,
        "not a DOCX (not a zip file)")
    put("docs/cut.docx", docx_bytes([("p", "cut short")])[:3000], False, "not a DOCX (not a zip file)")
    # 30 MB of zeros packed into a few KB: over ten times ingest.max_file_mb (0.6 MB here).
    put("docs/bomb.docx", zip_bomb_docx_bytes(30), False, "(zip bomb?)")


def remove_deep_tree(root: Path) -> None:
    """Delete the deep tree bottom-up: shutil.rmtree (and so pytest's clean-up) recurses."""
    chain = [root / "deep"]
    while (chain[-1] / "d").is_dir():
        chain.append(chain[-1] / "d")
    for folder in reversed(chain):
        for child in folder.iterdir():
            if not child.is_dir():
                child.unlink()
        folder.rmdir()


@pytest.fixture
def fuzz(tmp_path, request):
    corpus = tmp_path / "fuzz"
    request.addfinalizer(lambda: remove_deep_tree(corpus) if (corpus / "deep").exists() else None)
    expected = build_fuzz_corpus(corpus, n_good=getattr(request, "param", 40))
    return corpus, expected


def test_fuzz_corpus_zero_crashes_every_skip_once_nothing_lost(config, fuzz, monkeypatch):
    corpus, expected = fuzz
    config = dataclasses.replace(config, ingest=IngestConfig(max_file_mb=CAP_BYTES / 1e6, commit_every=32))
    with SearchIndex.open(config=config, create=True) as ix:
        first = ix.add_paths([corpus / "good", corpus / "weird"])
        indexed_before = {k for k, in ix.backend.store.db.execute("SELECT key FROM documents")}
        assert len(indexed_before) == 40 + len(WEIRD_NAMES)

        # Mid-run trouble: some indexed files change but then cannot be read (permission lost),
        # others vanish between the walk and the read, one folder cannot be listed.
        denied = {corpus / "good" / f"g{i:03d}.txt" for i in range(0, 10)}
        vanishing = {corpus / "good" / f"g{i:03d}.txt" for i in range(10, 15)}
        for path in denied | vanishing:
            path.write_text("changed " + path.read_text())
        real_open, real_read, real_scandir = Path.open, indexing.read_document, os.scandir

        def open_denied(self, *args, **kwargs):
            if self in denied:
                raise PermissionError(13, "Permission denied", str(self))
            return real_open(self, *args, **kwargs)

        def read_then_vanish(path, *args, **kwargs):
            if Path(path) in vanishing:
                Path(path).unlink()
            return real_read(path, *args, **kwargs)

        def scandir_denied(path="."):
            if Path(path) == corpus / "other":
                raise PermissionError(13, "Permission denied", str(path))
            return real_scandir(path)

        monkeypatch.setattr(Path, "open", open_denied)
        monkeypatch.setattr(indexing, "read_document", read_then_vanish)
        monkeypatch.setattr(os, "scandir", scandir_denied)
        report = ix.add_paths([corpus, corpus / "good"])   # overlapping roots on purpose
        monkeypatch.undo()

        skipped = [s.path for s in report.skipped]
        assert len(skipped) == len(set(skipped)), "a path was reported twice"
        reasons = {s.path: s.reason for s in report.skipped}
        for reason, paths in expected.items():
            if reason in ("good", "warned", "unsupported file type", "hidden file"):
                continue
            for path in paths:
                assert reason in reasons.get(str(path), ""), (path, reasons.get(str(path)))
        assert reasons[str(corpus / "other")].startswith("folder cannot be read")
        for path in denied:
            assert reasons[str(path)] == "permission denied"
        for path in vanishing:
            assert reasons[str(path)] == "vanished before it could be read"

        keys = {k for k, in ix.backend.store.db.execute("SELECT key FROM documents")}
        assert indexed_before <= keys, "an indexed document was lost"
        must_index = {str(p.absolute()) for p in expected["good"]} - {str(p) for p in vanishing | denied}
        assert must_index <= keys, sorted(must_index - keys)[:5]
        assert not any("\x00" in k for k in keys)
        assert [s.reason for s in first.skipped] == ["name is not valid UTF-8"]
        hits = ix.search("At the bottom of a very deep tree", k=3)
        assert any(h.key.endswith("bottom.txt") for h in hits)
        hits = ix.search("Page 1234 of a long book", mode="keyword", chunks=True, k=1)
        assert hits[0].key.endswith("long.pdf") and hits[0].passage.page == 1235

        # NaN front matter stored as null: filtered queries work in every mode.
        for mode in ("dense", "keyword", "hybrid"):
            hits = ix.search("not a number", k=10, mode=mode, filters=Filters.build(where="year>=2003"))
            assert {h.path for h in hits} == {str(corpus / "frontmatter" / f"nan{i}.md") for i in (3, 4, 5)}
            assert all(h.metadata["score"] is None for h in hits)
        huge, = ix.backend.store.db.execute("SELECT text, metadata FROM documents WHERE key = ?",
                                    (str(corpus / "frontmatter" / "huge.md"),)).fetchall()
        assert huge == ("# Huge\n\nBody after a huge front matter.\n", "{}")
        assert ix.search("Wide text café", k=3, mode="keyword")[0].path.startswith(str(corpus / "wide"))


@pytest.mark.parametrize("fuzz", [3], indirect=True)
def test_cli_reports_each_skip_on_one_printable_line(fuzz, tmp_path, monkeypatch):
    corpus, expected = fuzz
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["index", str(corpus), "--index", str(tmp_path / "ix"),
                                       "--set", "model.name=all-MiniLM-L6-v2",
                                       "--set", f"ingest.max_file_mb={CAP_BYTES / 1e6}"])
    assert result.exit_code == 0, result.output
    # Log lines (the model runtime notice, an ONNX export) are not about files.
    lines = [line for line in result.output.splitlines() if not line.startswith("searchkit: ")]
    skip_lines = [line for line in lines if line.startswith("skipped ")]
    summary = lines[-1]
    assert summary.startswith("added ")
    n_skipped = int(summary.split("skipped ")[1].split()[0])
    assert len(skip_lines) == n_skipped == len(set(skip_lines))
    # One warning for each file whose front matter was dropped or changed, naming it.
    warnings = [line for line in result.output.splitlines() if line.startswith(f"searchkit: {corpus}")]
    assert sorted(w.split(": ")[1] for w in warnings) == sorted(map(str, expected["warned"]))
    assert len(lines) == n_skipped + 1          # nothing else, no line broken by a newline in a name
    assert any("new\\nline.txt" in line for line in lines) is False  # indexed, so not listed
    assert any("bad\\udcffname.txt: name is not valid UTF-8" in line for line in skip_lines)
    documents = {str(path): reason for reason, paths in expected.items() if reason != "good"
                 for path in paths if path.parent.name == "docs"}
    assert len(documents) == 9
    for path, reason in documents.items():
        assert sum(line.startswith(f"skipped {path}: ") and reason in line
                   for line in skip_lines) == 1, (path, reason)


@pytest.mark.parametrize("fuzz", [3], indirect=True)
def test_skips_are_reported_as_they_happen_not_after_the_embedding(config, fuzz, monkeypatch):
    corpus, _ = fuzz
    config = dataclasses.replace(config, ingest=IngestConfig(max_file_mb=CAP_BYTES / 1e6, commit_every=4))
    heard, heard_at_embedding = [], []
    real_run = LocalExecutor.run

    def run(self, *args, **kwargs):
        heard_at_embedding.append(len(heard))
        return real_run(self, *args, **kwargs)

    monkeypatch.setattr(LocalExecutor, "run", run)
    with SearchIndex.open(config=config, create=True) as ix:
        report = ix.add_paths([corpus], on_skip=heard.append)
    assert heard == report.skipped and len(heard) > 100
    assert heard_at_embedding[0] > 0           # the walk's skips were out before any model work
    assert heard_at_embedding[0] < heard_at_embedding[-1]  # later ones came between batches
