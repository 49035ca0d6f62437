"""PDF and DOCX in, page-aware passages out: the readers, the read-once path, the CLI."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime

import pytest
from click.testing import CliRunner

from doc_fixtures import docx_bytes, pdf_bytes
from searchkit import SearchIndex
from searchkit.ingest import documents
from searchkit.cli import main
from searchkit.config import IngestConfig
from searchkit.ingest.documents import Document, Skipped, Unchanged, read_document
from searchkit.pages import PAGE_BREAK, page_at

# Each page longer than a chunk (64 tokens), so a passage falls on one page.
PAGES = [
    "The harbour town\nFishing boats leave the harbour before dawn and return with the tide. "
    "Nets are mended on the quay in the afternoon, gulls circle the market where the catch is "
    "sold, and the lighthouse keeper logs every ship that passes the breakwater at night. "
    "In winter storms the ferry stays in port and the town waits for calmer water.",
    "Volcanoes form where magma from the mantle reaches the surface. When pressure builds in a\n"
    "magma chamber, an eruption throws ash, lava and gas into the air. Mount Vesuvius buried "
    "Pompeii in the year 79. Lava flows can travel many kilometres before they cool into "
    "basalt rock, and ash clouds ground aircraft far from the crater.",
    "Chess openings\nThe Sicilian Defence answers the king's pawn with c5, and castling early\n"
    "protects the king. Controlling the centre squares gives the pieces room to move, and a "
    "knight on an outpost is hard to dislodge. Grandmasters prepare opening lines at home and "
    "test them in tournament games against strong opponents.",
]
INFO = {"Title": "Notes on three topics", "Author": "Ada Writer",
        "CreationDate": "D:20240131120000+01'00'"}


@pytest.fixture
def paged(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "notes.pdf").write_bytes(pdf_bytes(PAGES, INFO))
    (folder / "report.docx").write_bytes(docx_bytes(
        [("h1", "Quarterly bakery report"),
         ("p", "Sourdough sales rose after the bakery bought a second Dutch oven."),
         ("table", [["Loaf", "Sold"], ["Sourdough", "420"], ["Rye", "130"]]),
         ("p", "Rye stayed flat.")],
        title="Bakery report", author="Ben Baker", created=datetime(2023, 5, 6, 9, 30)))
    (folder / "plain.txt").write_text("A text file with a form feed\fin it, about gardening.")
    return folder


def test_pdf_pages_are_joined_by_form_feeds_with_info_as_title_and_metadata(paged):
    doc = read_document(paged / "notes.pdf")
    assert isinstance(doc, Document) and doc.kind == "pdf"
    pages = doc.text.split(PAGE_BREAK)
    assert [" ".join(p.split()) for p in pages] == [" ".join(p.split()) for p in PAGES]
    assert doc.title == "Notes on three topics"
    assert doc.metadata == {"pages": 3, "author": "Ada Writer", "created": "2024-01-31"}
    assert page_at(doc.text, doc.text.index("Vesuvius")) == 2
    assert page_at(doc.text, 0) == 1 and page_at(doc.text, len(doc.text)) == 3


def test_pdf_without_info_is_titled_by_its_file_name(tmp_path):
    path = tmp_path / "untitled-scan-ocr.pdf"
    path.write_bytes(pdf_bytes(["Just one page of text."]))
    doc = read_document(path)
    assert doc.title == "untitled-scan-ocr" and doc.metadata == {"pages": 1}


def test_docx_reads_headings_paragraphs_and_tables_in_order_with_core_properties(paged):
    doc = read_document(paged / "report.docx")
    assert isinstance(doc, Document) and doc.kind == "docx"
    assert doc.text == ("Quarterly bakery report\n"
                        "Sourdough sales rose after the bakery bought a second Dutch oven.\n"
                        "Loaf\tSold\nSourdough\t420\nRye\t130\n"
                        "Rye stayed flat.")
    assert doc.title == "Bakery report"
    assert doc.metadata == {"author": "Ben Baker", "created": "2023-05-06"}


def test_docx_without_a_core_title_is_titled_by_its_first_heading(tmp_path):
    path = tmp_path / "memo.docx"
    path.write_bytes(docx_bytes([("p", "Intro line."), ("h2", "Budget memo"), ("p", "Body.")]))
    assert read_document(path).title == "Budget memo"


def test_an_unchanged_pdf_is_hashed_but_never_extracted_again(paged, monkeypatch):
    first = read_document(paged / "notes.pdf")

    def no_extraction(*args, **kwargs):
        raise AssertionError("extracted again")

    monkeypatch.setattr(documents, "read_pdf", no_extraction)
    again = read_document(paged / "notes.pdf", known_hash=first.content_hash)
    assert isinstance(again, Unchanged)


def test_a_pdf_over_max_pages_is_skipped_and_a_long_one_is_read_page_by_page(tmp_path):
    path = tmp_path / "book.pdf"
    path.write_bytes(pdf_bytes([f"Page {i} of the long book." for i in range(1, 2001)]))
    doc = read_document(path, max_pages=5000)
    assert doc.text.count(PAGE_BREAK) == 1999 and doc.metadata["pages"] == 2000
    assert page_at(doc.text, doc.text.index("Page 1234 ")) == 1234
    skipped = read_document(path, max_pages=1000)
    assert isinstance(skipped, Skipped) and skipped.unusable_content
    assert skipped.reason == "2000 pages, more than ingest.max_pages (1000)"


def test_hits_and_passages_carry_the_page_of_a_pdf_and_none_elsewhere(config, paged):
    with SearchIndex.open(config=config, create=True) as ix:
        report = ix.add_paths([paged])
        assert report.added == 3 and not report.skipped
        hit = ix.search("volcanic eruption that buried Pompeii", k=1)[0]
        assert hit.path.endswith("notes.pdf") and hit.passage.page == 2
        assert "Vesuvius" in hit.passage.text
        passages = ix.search("Sicilian Defence castling", chunks=True, k=1)
        assert passages[0].passage.page == 3
        assert ix.search("gardening form feed", k=1)[0].passage.page is None
        assert ix.search("sourdough sales Dutch oven", k=1)[0].passage.page is None
        by_author = ix.search("report", filters={"where": ["author=Ben Baker"]})
        assert [h.title for h in by_author] == ["Bakery report"]
        recent = ix.search("topics", filters={"where": ["created>=2024-01-01"], "type": "pdf"})
        assert [h.title for h in recent] == ["Notes on three topics"]


def test_cli_shows_the_page_and_json_carries_it(paged, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    ix = str(tmp_path / "ix")
    result = runner.invoke(main, ["index", str(paged), "--index", ix,
                                  "--set", "model.name=all-MiniLM-L6-v2"])
    assert result.exit_code == 0, result.output
    assert "added 3" in result.output
    result = runner.invoke(main, ["query", "Mount Vesuvius buried Pompeii", "--index", ix, "-k", "1"])
    assert result.exit_code == 0, result.output
    first = result.stdout.splitlines()[0]   # stderr carries log lines (the runtime notice)
    assert "notes.pdf p. 2  —  Notes on three topics" in first
    result = runner.invoke(main, ["query", "Mount Vesuvius buried Pompeii", "--index", ix,
                                  "--json", "-k", "3"])
    hits = json.loads(result.stdout)["hits"]
    assert hits[0]["passage"]["page"] == 2
    assert hits[0]["metadata"] == {"pages": 3, "author": "Ada Writer", "created": "2024-01-31"}
    assert {h["path"].rsplit("/", 1)[1]: h["passage"]["page"] for h in hits}["report.docx"] is None
    result = runner.invoke(main, ["query", "bakery", "--index", ix, "--type", "docx", "--json"])
    assert [h["title"] for h in json.loads(result.stdout)["hits"]] == ["Bakery report"]


def test_pdf_and_docx_are_read_by_default_and_can_be_turned_off(config, paged):
    assert {".pdf", ".docx"} <= set(IngestConfig().extensions)
    text_only = dataclasses.replace(config, ingest=IngestConfig(extensions=(".txt",)))
    with SearchIndex.open(config=text_only, create=True) as ix:
        report = ix.add_paths([paged])
    assert report.added == 1
    assert sorted(s.reason for s in report.skipped) == ["unsupported file type .docx",
                                                        "unsupported file type .pdf"]


def test_an_ole_file_named_docx_is_told_apart_from_an_encrypted_one(tmp_path):
    # Both are OLE compound files; only an encrypted Office file holds an EncryptedPackage
    # stream. These two are just the header and a directory entry name, which is all the
    # reader looks at before giving up.
    header = bytes.fromhex("d0cf11e0a1b11ae1") + bytes(504)
    (tmp_path / "old.docx").write_bytes(header + "WordDocument".encode("utf-16-le"))
    (tmp_path / "locked.docx").write_bytes(header + "EncryptedPackage".encode("utf-16-le"))
    assert read_document(tmp_path / "old.docx").reason == "not a DOCX (an OLE file: a legacy .doc?)"
    assert read_document(tmp_path / "locked.docx").reason == "encrypted or password-protected DOCX"
