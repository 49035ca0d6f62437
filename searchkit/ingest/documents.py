"""Files → Document records: walking folders, reading text, extracting HTML, hashing.

Nothing here knows about models or storage. A file that cannot be used becomes a
:class:`Skipped` with a one-line reason instead of an exception, so one bad file never stops
a run.
"""

from __future__ import annotations

import codecs
import hashlib
import logging
import os
import re
from stat import S_ISREG
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator, Mapping

import yaml

from ..errors import InputError
from ..metadata import MetadataError, describe, plain_metadata
from ..records import KIND_ALIASES, Document
from .formats import DOCX_UNPACK_FACTOR, FormatError, read_docx, read_pdf

log = logging.getLogger(__name__)

BINARY_SNIFF_BYTES = 8192
# Formats read from bytes by searchkit.ingest.formats rather than decoded as text.
BINARY_KINDS = ("pdf", "docx")
# Front matter is metadata, not a data store. A block longer than this never reaches the YAML
# parser (pure-Python YAML takes seconds per megabyte); one with more values than this is
# dropped too (which also defuses YAML alias bombs, which expand exponentially when copied).
FRONT_MATTER_MAX_CHARS = 64_000
FRONT_MATTER_MAX_VALUES = 10_000
# A byte-order mark says the file is text in that encoding (UTF-32 first: its little-endian
# mark starts with UTF-16's). UTF-8's own mark is handled by the utf-8-sig codec.
BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when installed
# Elements whose text is never document content.
HTML_DROP = ("script", "style", "noscript", "template", "svg", "head")
HTML_BLOCKS = ("p", "div", "section", "article", "li", "tr", "pre", "blockquote",
               "h1", "h2", "h3", "h4", "h5", "h6", "br", "td", "th", "dd", "dt")
FRONT_MATTER_OPEN = re.compile(r"\A---[ \t]*\r?\n")
FRONT_MATTER_CLOSE = re.compile(r"^(?:---|\.\.\.)[ \t]*\r?(?:\n|\Z)", re.M)
# What the first lines of a YAML mapping look like: "key: value", "- item", indented or comment.
YAML_LINE = re.compile(r"^(?:[^\s#:\-][^\n]*?:(?:[ \t]|$)|[ \t]+\S|-(?:[ \t]|$)|#)")
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
            metadata, changed = plain_metadata(metadata)
            notes = [f"document metadata {describe(changed)}"] if changed else []
        else:
            raw = _decode(data)
            if isinstance(raw, Skipped):
                return _unusable(shown, raw.reason)
            text, title, metadata, notes = parse_text(raw, kind)
    except FormatError as exc:
        return _unusable(shown, str(exc))
    except (RecursionError, ValueError) as exc:  # pathological markup nesting
        return _unusable(shown, f"cannot be parsed ({type(exc).__name__})")
    if notes:  # once per file content: an unchanged file is never parsed again
        log.warning("%s: %s", shown, "; ".join(notes))
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


def _decode(data: bytes) -> str | Skipped:
    """A file's bytes as text: UTF-16 or UTF-32 after their byte-order mark, else UTF-8 (with or
    without its mark). A :class:`Skipped` (path left empty) says why they are not text."""
    encoding = next((name for bom, name in BOMS if data.startswith(bom)), None)
    if encoding is None and b"\x00" in data[:BINARY_SNIFF_BYTES]:
        return Skipped("", "binary file")
    try:
        raw = data.decode(encoding or "utf-8-sig")
    except UnicodeDecodeError as exc:
        return Skipped("", f"not valid {(encoding or 'utf-8').upper()} (byte {exc.start})")
    if encoding is not None and "\x00" in raw[:BINARY_SNIFF_BYTES]:
        return Skipped("", "binary file")
    return raw


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


def parse_text(raw: str, kind: str) -> tuple[str, str | None, dict[str, Any], list[str]]:
    """Extract (text, title, metadata, notes) from a file's decoded content by its kind.

    ``notes`` say what was dropped or changed on the way (front matter too large, a NaN value
    stored as null), for one warning naming the file.
    """
    if kind == "html":
        return (*html_to_text(raw), {}, [])
    metadata: dict[str, Any] = {}
    text = raw
    notes: list[str] = []
    if kind == "md":
        metadata, text, notes = split_front_matter(raw)
    title = metadata.get("title") if isinstance(metadata.get("title"), str) else None
    if title is None and kind == "md":
        match = MD_HEADING.search(text)
        title = match.group(1).strip() if match else None
    if title is None and kind == "rst":
        match = RST_TITLE.search(text)
        title = match.group("title").strip() if match else None
    return text, title, metadata, notes


def split_front_matter(raw: str) -> tuple[dict[str, Any], str, list[str]]:
    """Split a leading YAML front-matter block off Markdown text: (metadata, text, notes).

    A block that is not a YAML mapping (or not YAML) is left in the text: it was not front
    matter. Front matter that cannot be kept (longer than :data:`FRONT_MATTER_MAX_CHARS`, more
    than :data:`FRONT_MATTER_MAX_VALUES` values, nested too deeply) is dropped whole, from the
    metadata and from the text, with a note; so are values JSON cannot hold (NaN, binary), which
    become null. A block over the length cap never reaches the YAML parser: it counts as front
    matter when its first lines look like YAML keys.
    """
    opener = FRONT_MATTER_OPEN.match(raw)
    closer = FRONT_MATTER_CLOSE.search(raw, opener.end()) if opener else None
    if closer is None:
        return {}, raw, []
    block, rest = raw[opener.end():closer.start()], raw[closer.end():]
    if len(block) > FRONT_MATTER_MAX_CHARS:
        if not _looks_like_yaml(block):
            return {}, raw, []
        return {}, rest, [f"front matter ignored: longer than {FRONT_MATTER_MAX_CHARS:,} characters"]
    try:
        data = yaml.load(block, Loader=YAML_LOADER)
    except yaml.YAMLError:
        return {}, raw, []
    except RecursionError:
        return {}, rest, ["front matter ignored: nested too deeply"]
    if not isinstance(data, dict):
        return {}, raw, []
    try:
        clean, changed = plain_metadata(data, FRONT_MATTER_MAX_VALUES)
    except MetadataError as exc:  # too many values (an alias bomb, say) or too deep
        return {}, rest, [f"front matter ignored: {exc}"]
    return clean, rest, [f"front matter {describe(changed)}"] if changed else []


def _looks_like_yaml(block: str, lines: int = 20) -> bool:
    """Whether the first ``lines`` non-blank lines of ``block`` all look like YAML."""
    head = [line for line in block[:8192].splitlines() if line.strip()][:lines]
    return bool(head) and all(YAML_LINE.match(line) for line in head)


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
    if metadata is not None and not isinstance(metadata, Mapping):
        raise InputError(f"record {key!r}: metadata must be a mapping, got {type(metadata).__name__}")
    try:
        clean, changed = plain_metadata(metadata or {})
    except MetadataError as exc:  # a structure that contains itself ends here too
        raise InputError(f"record {key!r}: metadata {exc}") from None
    if changed:
        log.warning("record %r: metadata %s", key, describe(changed))
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:  # unpaired surrogates: SQLite could not store the text
        raise InputError(f"record {key!r}: text is not valid Unicode (character {exc.start})") from None
    return Document(key=key, text=text, title=title or key, kind="record",
                    content_hash=content_hash(data), size=len(data), metadata=clean)
