"""Write the sample corpus's PDF and DOCX from two addresses kept as text in scripts/sample_sources/.

    pip install reportlab          # only for this script; searchkit reads PDFs with pypdfium2
    python3 scripts/make_sample_docs.py

sample_corpus/2002-bush.pdf: the 2002 address typeset on Letter pages (a real text PDF, as a
word processor exports it), with title, author and creation date in its Info dictionary.
sample_corpus/1932-hoover.docx: the 1932 address as a Word document with a title heading and
core properties. Both carry the same words as their source; the output is byte-for-byte the
same on every run (fixed dates, reportlab's invariant mode), so the committed files only change
when this script does.
"""

from __future__ import annotations

import io
import zipfile
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ROOT / "scripts" / "sample_sources"
CORPUS = ROOT / "sample_corpus"
MADE = datetime(2026, 12, 3, tzinfo=timezone.utc)   # when these files were first generated


def paragraphs(name: str) -> list[str]:
    text = (SOURCES / name).read_text(encoding="utf-8")
    return [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]


def write_pdf(source: str, out: Path, title: str, author: str) -> None:
    from reportlab.lib.pagesizes import LETTER
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import inch
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer

    styles = getSampleStyleSheet()
    body = styles["BodyText"]
    body.fontSize, body.leading = 11, 15

    def page_setup(canvas, doc):
        canvas.setDateFormatter(lambda *_: MADE.strftime("D:%Y%m%d%H%M%S+00'00'"))
        canvas.setFont("Helvetica", 9)
        canvas.drawCentredString(LETTER[0] / 2, 0.5 * inch, str(doc.page))

    doc = SimpleDocTemplate(str(out), pagesize=LETTER, title=title, author=author,
                            creator="scripts/make_sample_docs.py", invariant=1,
                            leftMargin=inch, rightMargin=inch, topMargin=inch, bottomMargin=inch)
    story = [Paragraph(title, styles["Title"])]
    for para in paragraphs(source):
        story += [Paragraph(para.replace("&", "&amp;").replace("<", "&lt;"), body), Spacer(1, 4)]
    doc.build(story, onFirstPage=page_setup, onLaterPages=page_setup)


def write_docx(source: str, out: Path, title: str, author: str) -> None:
    import docx

    document = docx.Document()
    document.add_heading(title, level=1)
    for para in paragraphs(source):
        document.add_paragraph(para)
    props = document.core_properties
    props.title, props.author = title, author
    props.created = props.modified = MADE.replace(tzinfo=None)
    props.last_modified_by, props.revision = author, 1
    buffer = io.BytesIO()
    document.save(buffer)
    out.write_bytes(_fixed_zip_times(buffer.getvalue()))


def _fixed_zip_times(data: bytes) -> bytes:
    """The same package with every member stamped MADE, so reruns write identical bytes."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for item in source.infolist():
            stamped = zipfile.ZipInfo(item.filename, date_time=MADE.timetuple()[:6])
            stamped.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(stamped, source.read(item))
    return out.getvalue()


def main() -> None:
    write_pdf("2002-bush.txt", CORPUS / "2002-bush.pdf",
              "George W. Bush: State of the Union Address, 2002", "George W. Bush")
    write_docx("1932-hoover.txt", CORPUS / "1932-hoover.docx",
               "Herbert Hoover: State of the Union Address, 1932", "Herbert Hoover")
    for name in ("2002-bush.pdf", "1932-hoover.docx"):
        print(f"wrote sample_corpus/{name} ({(CORPUS / name).stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
