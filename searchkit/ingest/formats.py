"""Binary document formats → text: PDF (pypdfium2) and DOCX (python-docx).

Each reader takes the file's bytes (already read and hashed by :mod:`searchkit.ingest.documents`,
so an unchanged file is never extracted again) and returns an :class:`Extracted`, or raises
:class:`FormatError` whose message is the one-line reason the file is skipped.

PDF pages are joined with a form feed (``\\f``, the page separator pdftotext writes), so a
character offset tells its page without any extra storage (:mod:`searchkit.pages`), and
chunk spans never cross a page (:func:`searchkit.embedding.chunking.make_spans`).
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..pages import PAGE_BREAK

# An .docx may unpack to at most this many times ingest.max_file_mb: Word XML compresses
# about 5-10x, a zip bomb by a million.
DOCX_UNPACK_FACTOR = 10
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# An encrypted Office file is an OLE container holding a stream of this name (UTF-16 in the
# directory), as MS-OFFCRYPTO specifies.
ENCRYPTED_PACKAGE = "EncryptedPackage".encode("utf-16-le")
PDF_DATE = re.compile(r"^(?:D:)?(\d{4})(\d{2})?(\d{2})?")


class FormatError(ValueError):
    """A file of a known format that cannot be used; the message is the reason, one line."""


@dataclass(frozen=True)
class Extracted:
    """What a reader found: the text, a title if the file names one, and metadata."""

    text: str
    title: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def read_pdf(data: bytes, max_pages: int | None = None) -> Extracted:
    """Text of every page, joined by :data:`PAGE_BREAK`; title, author, created and pages.

    Pages are loaded and closed one at a time, so memory holds one page's objects plus the
    text so far, whatever the page count.

    Raises:
        FormatError: encrypted, corrupt, over ``max_pages``, or without a text layer.
    """
    # Imported here for startup cost only (no cycle), like bs4 in documents.py: only PDFs need it.
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if exc.err_code == pdfium_c.FPDF_ERR_PASSWORD:
            raise FormatError("encrypted PDF (needs a password)") from None
        if exc.err_code == pdfium_c.FPDF_ERR_SECURITY:
            raise FormatError("encrypted PDF (unsupported security handler)") from None
        raise FormatError("corrupt or truncated PDF (cannot be opened)") from None
    try:
        n_pages = len(pdf)
        if n_pages == 0:
            raise FormatError("corrupt or truncated PDF (no pages)")
        if max_pages is not None and n_pages > max_pages:
            raise FormatError(f"{n_pages} pages, more than ingest.max_pages ({max_pages})")
        pages = []
        for number in range(n_pages):
            try:
                page = pdf[number]
            except pdfium.PdfiumError:
                raise FormatError(f"corrupt PDF (page {number + 1} cannot be loaded)") from None
            try:
                textpage = page.get_textpage()
                try:
                    pages.append(_clean_page(textpage.get_text_range()))
                finally:
                    textpage.close()
            finally:
                page.close()
        if not any(p.strip() for p in pages):
            raise FormatError(f"no text layer (scanned?): {n_pages} page{'s' * (n_pages > 1)} "
                              "without extractable text")
        info = pdf.get_metadata_dict(skip_empty=True)
    finally:
        pdf.close()
    metadata: dict[str, Any] = {"pages": n_pages}
    if info.get("Author", "").strip():
        metadata["author"] = info["Author"].strip()
    created = _pdf_date(info.get("CreationDate", ""))
    if created:
        metadata["created"] = created
    title = info.get("Title", "").strip() or None
    return Extracted(PAGE_BREAK.join(pages), title, metadata)


def _clean_page(text: str) -> str:
    """One page's text with plain newlines, no stray page breaks, ending in a newline.

    The newline keeps the last word of a page apart from the first of the next: BERT
    tokenizers drop a form feed (a control character) rather than split on it.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    # pdfium marks a hyphen it judged to break a word at a line end with U+FFFE/U+0002.
    text = text.replace("\ufffe\n", "").replace("\x02\n", "").replace("\ufffe", "-").replace("\x02", "-")
    text = text.replace(PAGE_BREAK, "\n").replace("\x00", "")
    return text.rstrip() + "\n"


def _pdf_date(value: str) -> str | None:
    """``D:20240131120000+01'00'`` → ``2024-01-31`` (or ``2024-01``, ``2024``), else None."""
    match = PDF_DATE.match(value.strip())
    if not match:
        return None
    return "-".join(part for part in match.groups() if part)


def read_docx(data: bytes, max_unpacked: int | None = None) -> Extracted:
    """Paragraphs and tables in reading order (a table row per line, cells split by tabs);
    title, author and created from the core properties.

    The zip's declared sizes are checked against ``max_unpacked`` before anything is
    decompressed (python-docx loads every part into memory).

    Raises:
        FormatError: password-protected, not a DOCX, a zip bomb, or unparsable.
    """
    if data.startswith(OLE_MAGIC):
        if ENCRYPTED_PACKAGE in data:
            raise FormatError("encrypted or password-protected DOCX")
        raise FormatError("not a DOCX (an OLE file: a legacy .doc?)")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        raise FormatError("not a DOCX (not a zip file)") from None
    if not any(m.filename == "word/document.xml" for m in members):
        raise FormatError("not a DOCX (a zip without word/document.xml)")
    unpacked = sum(m.file_size for m in members)
    if max_unpacked is not None and unpacked > max_unpacked:
        raise FormatError(f"unpacks to {unpacked / 1e6:.0f} MB, more than {DOCX_UNPACK_FACTOR}x "
                          "ingest.max_file_mb (zip bomb?)")
    # Imported here for startup cost only (no cycle): python-docx and lxml serve DOCX alone.
    import docx
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(data))
        blocks = []
        title = None
        for block in document.iter_inner_content():
            if isinstance(block, Table):
                blocks.extend(_table_lines(block))
                continue
            line = block.text.strip()
            if not line:
                continue
            style = block.style.name if block.style is not None else ""
            if title is None and style.startswith(("Title", "Heading")):
                title = line
            blocks.append(line)
        props = document.core_properties
        title = (props.title or "").strip() or title
        metadata: dict[str, Any] = {}
        if (props.author or "").strip():
            metadata["author"] = props.author.strip()
        if isinstance(props.created, datetime):
            metadata["created"] = props.created.date().isoformat()
    # A hostile package fails in many ways (KeyError for a missing part, lxml syntax
    # errors, ValueError for bad relationships, ...): all of them mean "cannot be read".
    except Exception as exc:  # noqa: BLE001
        raise FormatError(f"cannot be parsed as DOCX ({type(exc).__name__})") from None
    return Extracted("\n".join(blocks), title, metadata)


def _table_lines(table: Any) -> list[str]:
    """One line per row, cells separated by tabs; a merged cell is written once."""
    lines = []
    for row in table.rows:
        cells, seen = [], set()
        for cell in row.cells:
            if id(cell._tc) in seen:  # python-docx repeats a merged cell for each grid column
                continue
            seen.add(id(cell._tc))
            cells.append(" ".join(cell.text.split()))
        line = "\t".join(cells).strip()
        if line:
            lines.append(line)
    return lines
