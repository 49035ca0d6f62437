"""How a paged document's text marks its pages, shared by the reader that writes the marks
(PDF extraction), the chunker that keeps spans within a page, and the searcher that names
a passage's page. No storage, no schema: the marks live in the text itself.

Pages are joined with a form feed, the page separator pdftotext writes. BERT tokenizers drop
it (a control character) instead of splitting on it, so each page's text ends with a newline.
"""

from __future__ import annotations

PAGE_BREAK = "\f"
# Kinds whose text holds PAGE_BREAK between pages; in any other kind a form feed is just text.
PAGED_KINDS = frozenset({"pdf"})


def page_at(text: str, offset: int) -> int:
    """The 1-based page of the character at ``offset`` in a paged document's text."""
    return 1 + text.count(PAGE_BREAK, 0, offset)
