"""Files → Document records: walking folders, reading text, extracting HTML, hashing.

Nothing here knows about models or storage. A file that cannot be used becomes a
:class:`Skipped` with a one-line reason instead of an exception, so one bad file never stops
a run.
"""

from __future__ import annotations

import hashlib
import os
import re
from stat import S_ISREG
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator

import yaml

from ..errors import InputError
from ..records import KIND_ALIASES, Document
from .formats import DOCX_UNPACK_FACTOR, FormatError, read_docx, read_pdf

BINARY_SNIFF_BYTES = 8192
# Formats read from bytes by searchkit.ingest.formats rather than decoded as UTF-8 text.
BINARY_KINDS = ("pdf", "docx")
# Front matter is metadata, not a data store: more values than this is treated as plain text
# (it also defuses YAML alias bombs, which expand exponentially when copied).
FRONT_MATTER_MAX_VALUES = 10_000
# Elements whose text is never document content.
HTML_DROP = ("script", "style", "noscript", "template", "svg", "head")
HTML_BLOCKS = ("p", "div", "section", "article", "li", "tr", "pre", "blockquote",
               "h1", "h2", "h3", "h4", "h5", "h6", "br", "td", "th", "dd", "dt")
FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n(?:---|\.\.\.)[ \t]*(?:\r?\n|\Z)", re.S)
MD_HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)
RST_TITLE = re.compile(r"^(?P<title>[^\n]+)\n(?P<rule>[=\-~^\"'`#*+]{3,})[ \t]*$", re.M)


@dataclass(frozen=True)
class Skipped:
    """A path that was not ingested, and why.

    ``unusable_content`` tells two kinds of skip apart. True: the verdict is on what the file
    holds now (no text, binary, not UTF-8, too large, unparsable, not a regular file, a broken
    symlink), so anything indexed from its earlier content is stale. False: the walk passed it
    over, or it could not be read (permission denied, a read error, vanished mid-run), which
    says nothing about its content.
    """

    path: str
    reason: str
    unusable_content: bool = False


@dataclass(frozen=True)
class Unchanged:
    """A file whose content still has the hash stored for it: read and hashed, not parsed.

    ``size`` and ``mtime`` are the file's as read now (a touched file keeps its content).
    """

    path: str
    size: int
    mtime: float


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hash_rest(head: bytes, fh: BinaryIO) -> str:
    """:func:`content_hash` of ``head`` and everything left in ``fh``, read in blocks."""
    hasher = hashlib.sha256(head)
    for block in iter(lambda: fh.read(1 << 20), b""):
        hasher.update(block)
    return hasher.hexdigest()


def iter_files(paths: Iterable[str | os.PathLike], extensions: Iterable[str]) -> Iterator[Path | Skipped]:
    """Walk ``paths`` recursively, yielding candidate files or the reason one is passed over.

    Hidden files and folders are skipped, symlinked folders are not followed (which also rules
    out symlink loops), files with other extensions or names that are not valid UTF-8 are
    passed over, and a folder that cannot be listed is reported: each as one :class:`Skipped`.
    The walk keeps its own stack, so a tree of any depth cannot exhaust Python's recursion.

    Raises:
        InputError: a given path does not exist.
    """
    wanted = {e.lower() for e in extensions}
    for root in paths:
        root = Path(root)
        if not root.exists():
            raise InputError(f"{root}: no such file or folder")
        if not root.is_dir():
            yield root
            continue
        stack = [root]
        while stack:
            folder = stack.pop()
            try:
                with os.scandir(folder) as listing:
                    entries = sorted(listing, key=lambda e: e.name)
            except OSError as exc:
                yield Skipped(str(folder), f"folder cannot be read: {exc.strerror or exc}")
                continue
            subfolders = []
            for entry in entries:
                path = Path(folder, entry.name)
                skip = _walk_skip(entry, path, wanted)
                if skip is not None:
                    yield skip
                elif _is_dir(entry):
                    subfolders.append(path)
                else:
                    yield path
            stack.extend(reversed(subfolders))


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _walk_skip(entry: os.DirEntry, path: Path, wanted: set[str]) -> Skipped | None:
    """Why a folder entry is passed over, or None to keep it (a file to read, a folder to enter)."""
    name = entry.name
    folder = _is_dir(entry)
    if name.startswith("."):
        return Skipped(str(path), "hidden folder" if folder else "hidden file")
    if not _valid_utf8(name):
        return Skipped(str(path), "name is not valid UTF-8")
    if folder:
        return None
    if entry.is_symlink():
        try:
            if path.is_dir():
                return Skipped(str(path), "symlinked folder (not followed)")
        except OSError:  # a symlink loop: is_dir() cannot resolve it
            pass
    if path.suffix.lower() not in wanted:
        return Skipped(str(path), f"unsupported file type {path.suffix or '(none)'}")
    return None


def _valid_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:  # undecodable bytes arrive as surrogate escapes
        return False


def read_document(path: str | os.PathLike, max_bytes: int | None = None,
                  known_hash: str | None = None,
                  max_pages: int | None = None) -> Document | Skipped | Unchanged:
    """Read one file into a Document, or say why it cannot be used. Never raises for a bad file.

    A :class:`Skipped` for what the file holds (no text, binary, too large, ...) has
    ``unusable_content`` set; one for a failed read (permission denied, ...) does not.

    The file is opened and read once. ``known_hash`` is the content hash stored for this file
    when it is already indexed: if the file still hashes to it the result is
    :class:`Unchanged`, and nothing is decoded or parsed. Such a file is hashed whole even
    past ``max_bytes`` (it may be the stored one), yet no more than ``max_bytes + 1`` of its
    bytes are kept in memory. PDF and DOCX text is extracted from those same bytes
    (:mod:`searchkit.ingest.formats`); a PDF of more than ``max_pages`` pages is skipped.
    """
    path = Path(path)
    shown = str(path)
    try:
        stat = path.stat()
        if not S_ISREG(stat.st_mode):
            return _unusable(shown, "not a regular file")
        too_big = max_bytes is not None and stat.st_size > max_bytes
        over_cap = f"larger than ingest.max_file_mb ({stat.st_size / 1e6:.1f} MB)"
        if too_big and known_hash is None:
            return _unusable(shown, over_cap)
        with path.open("rb") as fh:
            # Read at most one byte past the cap: a file may grow between stat and read.
            data = fh.read(max_bytes + 1) if max_bytes is not None else fh.read()
            whole = max_bytes is None or len(data) <= max_bytes
            digest = None
            if whole:
                digest = content_hash(data)
            elif known_hash is not None:  # past the cap, yet it may still be the stored file
                digest = _hash_rest(data, fh)
    except FileNotFoundError:
        if path.is_symlink():
            return _unusable(shown, "broken symlink")
        return Skipped(shown, "vanished before it could be read")
    except PermissionError:
        return Skipped(shown, "permission denied")
    except OSError as exc:
        return Skipped(shown, f"cannot be read: {exc.strerror or exc}")
    if known_hash is not None and digest == known_hash:
        return Unchanged(shown, stat.st_size, stat.st_mtime)
    if too_big:
        return _unusable(shown, over_cap)
    if not whole:
        return _unusable(shown, "larger than ingest.max_file_mb (it grew while being read)")
    kind = path.suffix.lower().lstrip(".")
    kind = KIND_ALIASES.get(kind, kind)
    try:
        if kind in BINARY_KINDS:
            text, title, metadata = parse_binary(data, kind, max_bytes, max_pages)
        else:
            if b"\x00" in data[:BINARY_SNIFF_BYTES]:
                return _unusable(shown, "binary file")
            try:
                raw = data.decode("utf-8-sig")
            except UnicodeDecodeError as exc:
                return _unusable(shown, f"not valid UTF-8 (byte {exc.start})")
            text, title, metadata = parse_text(raw, kind)
    except FormatError as exc:
        return _unusable(shown, str(exc))
    except (RecursionError, ValueError) as exc:  # pathological markup nesting
        return _unusable(shown, f"cannot be parsed ({type(exc).__name__})")
    if not text.strip():
        return _unusable(shown, "no text")
    absolute = os.path.abspath(path)  # ".." resolved by name, as filters.py reads paths
    return Document(
        key=absolute,
        text=text,
        title=title or path.stem,
        kind=kind,
        content_hash=digest,
        path=absolute,
        size=stat.st_size,
        mtime=stat.st_mtime,
        metadata=metadata,
    )


def _unusable(path: str, reason: str) -> Skipped:
    return Skipped(path, reason, unusable_content=True)


def parse_binary(data: bytes, kind: str, max_bytes: int | None = None,
                 max_pages: int | None = None) -> tuple[str, str | None, dict[str, Any]]:
    """Extract (text, title, metadata) from a PDF's or DOCX's bytes.

    Raises:
        FormatError: the file cannot be used; the message says why.
    """
    if kind == "pdf":
        found = read_pdf(data, max_pages)
    else:
        found = read_docx(data, None if max_bytes is None else max_bytes * DOCX_UNPACK_FACTOR)
    return found.text, found.title, found.metadata


def parse_text(raw: str, kind: str) -> tuple[str, str | None, dict[str, Any]]:
    """Extract (text, title, metadata) from a file's decoded content by its kind."""
    if kind == "html":
        return (*html_to_text(raw), {})
    metadata: dict[str, Any] = {}
    text = raw
    if kind == "md":
        metadata, text = split_front_matter(raw)
    title = metadata.get("title") if isinstance(metadata.get("title"), str) else None
    if title is None and kind == "md":
        match = MD_HEADING.search(text)
        title = match.group(1).strip() if match else None
    if title is None and kind == "rst":
        match = RST_TITLE.search(text)
        title = match.group("title").strip() if match else None
    return text, title, metadata


def split_front_matter(raw: str) -> tuple[dict[str, Any], str]:
    """Split a leading YAML front-matter block off Markdown text.

    A block that is not a YAML mapping is left in the text: it was not front matter.
    """
    match = FRONT_MATTER.match(raw)
    if not match:
        return {}, raw
    try:
        data = yaml.safe_load(match.group(1))
        if not isinstance(data, dict):
            return {}, raw
        # Keep only JSON-friendly scalar values: they are stored as JSON and filtered on.
        budget = [FRONT_MATTER_MAX_VALUES]
        clean = {str(k): _plain(v, budget) for k, v in data.items()}
    except (yaml.YAMLError, RecursionError, ValueError):
        # Malformed, too deeply nested, or an alias bomb that would expand without bound.
        return {}, raw
    return clean, raw[match.end():]


def _plain(value: Any, budget: list[int]) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise ValueError("front matter holds too many values")
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v, budget) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v, budget) for k, v in value.items()}
    return str(value)  # dates and other YAML types


def html_to_text(raw: str) -> tuple[str, str | None]:
    """Visible text of an HTML page, one block per line, and its title."""
    # Imported here for startup cost only (no cycle): bs4 adds about a quarter of a second to
    # every command, and only HTML files need it.
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(raw, "html.parser")
    title_tag = soup.find("title")
    title = title_tag.get_text(" ", strip=True) if title_tag else None
    for tag in soup.find_all(HTML_DROP):
        tag.decompose()
    if not title:
        heading = soup.find(["h1", "h2"])
        title = heading.get_text(" ", strip=True) if heading else None
    lines = (" ".join(line.split()) for line in _block_text(soup).splitlines())
    text = "\n".join(line for line in lines if line)
    return text, title or None


def _block_text(soup: Any) -> str:
    """The page's text with a line break around every block element.

    One pass with an explicit stack: linear in the page size and free of recursion, where
    inserting break strings into the tree costs time proportional to the nesting depth for
    every element (minutes for a page of 50,000 nested divs).
    """
    from bs4 import CData, NavigableString, Tag  # lazily, like BeautifulSoup above

    out: list[str] = []
    stack: list[tuple[Any, bool]] = [(soup, False)]
    while stack:
        node, closing = stack.pop()
        if closing:
            out.append("\n")
        elif isinstance(node, NavigableString):
            if type(node) in (NavigableString, CData):  # what get_text() keeps: no comments
                out.append(str(node))
        elif isinstance(node, Tag):
            if node.name in HTML_BLOCKS:
                out.append("\n")
                stack.append((node, True))
            stack.extend((child, False) for child in reversed(node.contents))
    return "".join(out)


def record_document(key: str, text: str, metadata: dict[str, Any] | None = None,
                    title: str | None = None) -> Document:
    """A Document from caller-supplied text (the API's ``add_records``)."""
    if not isinstance(key, str) or not key:
        raise InputError(f"record id must be a non-empty string, got {key!r}")
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"record {key!r}: text is empty")
    data = text.encode("utf-8")
    return Document(key=key, text=text, title=title or key, kind="record",
                    content_hash=content_hash(data), size=len(data),
                    metadata=dict(metadata or {}))
