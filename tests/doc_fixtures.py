"""PDF and DOCX files built in code for the format tests: real files, small and exact.

PDFs are written object by object (Helvetica text, an Info dictionary, optionally the
standard 40-bit RC4 security handler of PDF 1.3), so each test controls what a page holds.
DOCX files come from python-docx itself; a password-protected one from msoffcrypto-tool.
"""

from __future__ import annotations

import hashlib
import io
import struct
import zipfile

# The padding string of the PDF standard security handler (ISO 32000-1, 7.6.3.3).
PAD = bytes.fromhex("28BF4E5E4E758A4164004E56FFFA01082E2E00B6D0683E802F0CA9FE6453697A")
FILE_ID = bytes(range(16))


def rc4(key: bytes, data: bytes) -> bytes:
    s = list(range(256))
    j = 0
    for i in range(256):
        j = (j + s[i] + key[i % len(key)]) % 256
        s[i], s[j] = s[j], s[i]
    out, i, j = bytearray(), 0, 0
    for byte in data:
        i = (i + 1) % 256
        j = (j + s[i]) % 256
        s[i], s[j] = s[j], s[i]
        out.append(byte ^ s[(s[i] + s[j]) % 256])
    return bytes(out)


def _pdf_string(text: str) -> bytes:
    return text.encode("latin-1").replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def pdf_bytes(pages: list[str], info: dict[str, str] | None = None,
              password: str | None = None, text_layer: bool = True) -> bytes:
    """A PDF with one page per string (lines split on newlines, set in 11 pt Helvetica).

    ``password``: encrypted with that user password (RC4, 40 bits), so it cannot be opened
    without it. ``text_layer=False``: each page holds only drawn rectangles, as a scan holds
    only an image.
    """
    key = None
    objects: dict[int, bytes] = {}
    n = len(pages)
    first_page = 4
    kids = " ".join(f"{first_page + 2 * i} 0 R" for i in range(n))
    objects[1] = b"<< /Type /Catalog /Pages 2 0 R >>"
    objects[2] = f"<< /Type /Pages /Kids [{kids}] /Count {n} >>".encode()
    objects[3] = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
    if password is not None:
        owner = hashlib.md5((b"owner" + PAD)[:32]).digest()[:5]
        o_entry = rc4(owner, (password.encode("latin-1") + PAD)[:32])
        permissions = -4
        key = hashlib.md5((password.encode("latin-1") + PAD)[:32] + o_entry
                          + struct.pack("<i", permissions) + FILE_ID).digest()[:5]
        u_entry = rc4(key, PAD)
    streams: dict[int, bytes] = {}
    for i, text in enumerate(pages):
        page_no, content_no = first_page + 2 * i, first_page + 2 * i + 1
        objects[page_no] = (f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {content_no} 0 R >>").encode()
        if text_layer:
            lines = b" T* ".join(b"(" + _pdf_string(line) + b") Tj" for line in text.split("\n"))
            streams[content_no] = b"BT /F1 11 Tf 14 TL 72 740 Td " + lines + b" ET"
        else:
            streams[content_no] = b"0.5 g 72 72 468 648 re f 0 g 100 600 200 20 re f"
    info_no = first_page + 2 * n
    if info:
        entries = b" ".join(b"/" + k.encode() + b" (" + _pdf_string(v) + b")" for k, v in info.items())
        objects[info_no] = b"<< " + entries + b" >>"
    encrypt_no = info_no + 1
    if key is not None:
        objects[encrypt_no] = (b"<< /Filter /Standard /V 1 /R 2 /O <" + o_entry.hex().encode()
                               + b"> /U <" + u_entry.hex().encode() + b"> /P -4 >>")

    def seal(number: int, data: bytes) -> bytes:
        if key is None:
            return data
        object_key = hashlib.md5(key + struct.pack("<i", number)[:3] + b"\0\0").digest()[:10]
        return rc4(object_key, data)

    for number, data in streams.items():
        data = seal(number, data)
        objects[number] = b"<< /Length %d >>\nstream\n" % len(data) + data + b"\nendstream"
    if key is not None and info:  # strings are encrypted too
        entries = b" ".join(b"/" + k.encode() + b" <" + seal(info_no, v.encode("latin-1")).hex().encode() + b">"
                            for k, v in info.items())
        objects[info_no] = b"<< " + entries + b" >>"
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n" % number + objects[number] + b"\nendobj\n"
    size = max(objects) + 1
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    for number in range(1, size):
        out += (b"%010d 00000 n \n" % offsets[number]) if number in offsets else b"0000000000 65535 f \n"
    trailer = b"<< /Size %d /Root 1 0 R" % size
    if info:
        trailer += b" /Info %d 0 R" % info_no
    if key is not None:
        trailer += b" /Encrypt %d 0 R" % encrypt_no
    trailer += b" /ID [<" + FILE_ID.hex().encode() + b"> <" + FILE_ID.hex().encode() + b">] >>"
    out += b"trailer\n" + trailer + b"\nstartxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


def docx_bytes(blocks: list, title: str | None = None, author: str | None = None,
               created=None) -> bytes:
    """A DOCX from blocks: ``("h1", text)`` a heading, ``("p", text)`` a paragraph,
    ``("table", [[cell, ...], ...])`` a table; core properties as given."""
    import docx

    document = docx.Document()
    for kind, value in blocks:
        if kind == "table":
            table = document.add_table(rows=len(value), cols=len(value[0]))
            for r, row in enumerate(value):
                for c, cell in enumerate(row):
                    table.cell(r, c).text = cell
        elif kind.startswith("h"):
            document.add_heading(value, level=int(kind[1:]))
        else:
            document.add_paragraph(value)
    props = document.core_properties
    props.title = title or ""
    props.author = author or ""
    if created is not None:
        props.created = created
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def encrypted_docx_bytes(password: str = "secret") -> bytes:
    """A DOCX protected with a password as Word does it (ECMA-376 agile encryption)."""
    from msoffcrypto.format.ooxml import OOXMLFile

    plain = io.BytesIO(docx_bytes([("p", "Text nobody may read without the password.")]))
    out = io.BytesIO()
    OOXMLFile(plain).encrypt(password, out)
    return out.getvalue()


def zip_bomb_docx_bytes(unpacked_mb: int) -> bytes:
    """A valid DOCX plus one extra part of ``unpacked_mb`` MB of zeros (a few KB packed)."""
    source = zipfile.ZipFile(io.BytesIO(docx_bytes([("p", "A small document with a big secret.")])))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for item in source.infolist():
            archive.writestr(item, source.read(item))
        with archive.open("word/media/padding.bin", "w") as part:
            block = bytes(1 << 20)
            for _ in range(unpacked_mb):
                part.write(block)
    return out.getvalue()


def renamed_zip_bytes() -> bytes:
    """A zip archive that is not a Word document (say, photos.zip renamed to .docx)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("photos/readme.txt", "holiday photos")
    return out.getvalue()
