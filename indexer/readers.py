"""Read a corpus folder or file into Documents, recording every input that was skipped and why.

Supported inputs are plain text, markdown, HTML, CSV and JSON lines (corpus documents,
question files with paragraphs, and table records). One bad file or line never stops the
scan: it becomes a ``Skipped`` entry with a reason, and the rest of the corpus still loads.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
import os
import re
import stat
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from selectolax.lexbor import LexborHTMLParser, LexborNode

from indexer.records import CorpusScan, Document, Skipped, SourceTable
from indexer.tables import find_markdown_tables, render_table

logger = logging.getLogger(__name__)

SUPPORTED_EXTENSIONS = (".csv", ".htm", ".html", ".jsonl", ".md", ".txt")

# Share of control characters (other than tab and line breaks) in the first 65,536 characters above
# which a decoded file counts as binary. NOTE: chosen by judgment, not measured on a corpus.
_BINARY_CONTROL_SHARE = 0.10
_BINARY_SAMPLE_CHARS = 65_536
_BINARY_CONTROL_RE = re.compile(r"[\x00-\x08\x0e-\x1f]")

# C0 controls except tab and line feed, DEL, and C1 controls. C1 characters only appear
# in text decoded with the wrong code page, such as latin-1 fallbacks.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_MARKDOWN_TITLE_RE = re.compile(r"^ {0,3}# +(.+?)(?:\s+#+)?\s*$")
_FENCE_RE = re.compile(r"^\s{0,3}(```|~~~)")

_HTML_DROPPED_TAGS = frozenset({"script", "style", "noscript", "template", "head", "-comment"})
_HTML_BLOCK_TAGS = frozenset(
    "address article aside blockquote body caption dd details dialog div dl dt fieldset "
    "figcaption figure footer form h1 h2 h3 h4 h5 h6 header hr li main nav ol p section "
    "summary ul".split()
)

_CSV_DELIMITERS = ",;\t|"
_CSV_SNIFF_CHARS = 65_536


class CorpusError(ValueError):
    """The corpus path does not exist or cannot be read at all."""


class _SkipInput(Exception):
    """Raised inside the scan to skip one file, record or paragraph with a reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def normalize_text(text: str) -> str:
    """Normalise decoded text: line breaks to ``\\n``, control characters removed, NFC.

    Tab and line feed stay. Other C0 controls, DEL and C1 controls are removed.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL_RE.sub("", text)
    return unicodedata.normalize("NFC", text)


def _normalize_title(title: str) -> str:
    return " ".join(normalize_text(title).split())


def _decode_bytes(data: bytes) -> tuple[str, str]:
    """Decode file content and return the text and the name of the encoding used.

    A byte order mark selects UTF-8, UTF-16 or UTF-32. Without one, the content must be
    UTF-8, else cp1252 and then latin-1 are tried (latin-1 accepts any bytes). Raises
    ``_SkipInput`` for content that looks binary: NUL bytes without a UTF-16 or UTF-32
    byte order mark, or too many control characters.
    """
    for bom, encoding in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            try:
                text = data.decode(encoding)
            except UnicodeDecodeError as error:
                raise _SkipInput(
                    f"invalid {encoding.upper()} content after the byte order mark: {error.reason} "
                    f"at byte {error.start}"
                ) from error
            _check_control_share(text)
            return text, encoding

    if b"\x00" in data:
        raise _SkipInput("binary file (contains NUL bytes and no UTF-16 byte order mark)")
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    for encoding in ("utf-8", "cp1252"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        encoding = "latin-1"
        text = data.decode(encoding)
    _check_control_share(text)
    return text, encoding


def _check_control_share(text: str) -> None:
    sample = text[:_BINARY_SAMPLE_CHARS]
    if not sample:
        return
    controls = len(_BINARY_CONTROL_RE.findall(sample))
    if controls / len(sample) > _BINARY_CONTROL_SHARE:
        raise _SkipInput(
            f"binary file ({controls / len(sample):.0%} of the first {len(sample)} characters "
            "are control characters)"
        )


def _validate_groups(value: object, field_name: str) -> list[str]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(group, str) and group.strip() for group in value)
    ):
        raise _SkipInput(f'"{field_name}" must be a non-empty list of non-empty strings, got {value!r:.80}')
    return list(value)


class _CorpusReader:
    """State of one scan: the documents kept so far, skipped inputs and warnings."""

    def __init__(self, default_groups: list[str], max_document_chars: int) -> None:
        self.default_groups = default_groups
        self.max_document_chars = max_document_chars
        self.scan = CorpusScan(documents=[])
        self._kept: dict[str, tuple[Document, bool]] = {}

    # Collecting results

    def skip(self, source: str, reason: str) -> None:
        self.scan.skipped.append(Skipped(source=source, reason=reason))

    def add(self, document: Document, *, from_question: bool = False) -> None:
        """Keep a document unless its doc_id was already read.

        A later copy with the same doc_id is skipped with a reason naming both sources,
        except that an identical copy (same content hash) is dropped silently when either
        copy is a question paragraph, because question files repeat paragraphs.
        """
        existing = self._kept.get(document.doc_id)
        if existing is None:
            self._kept[document.doc_id] = (document, from_question)
            self.scan.documents.append(document)
            return
        first, first_from_question = existing
        if (from_question or first_from_question) and first.content_hash == document.content_hash:
            return
        self.skip(
            document.source,
            f'duplicate doc_id "{document.doc_id}": already read from {first.source}, '
            "so this copy was skipped",
        )

    def make_document(
        self,
        *,
        doc_id: str,
        title: str,
        text: str,
        source: str,
        groups: list[str] | None = None,
        metadata: dict | None = None,
        tables: list[list[list[str]]] | None = None,
    ) -> Document:
        """Normalise and check one document's fields and build it.

        Tables default to the markdown pipe tables found in the text. Raises
        ``_SkipInput`` for empty text or text longer than ``max_document_chars``.
        """
        text = normalize_text(text)
        if not text.strip():
            raise _SkipInput("empty document")
        if len(text) > self.max_document_chars:
            raise _SkipInput(
                f"document too large: {len(text):,} characters is over the limit of "
                f"{self.max_document_chars:,}; raise the max_document_chars option to index it"
            )
        title = _normalize_title(title)
        if tables is None:
            tables = find_markdown_tables(text)
        source_tables = [
            SourceTable(table_id=f"{doc_id}#t{index}", title=title, rows=rows)
            for index, rows in enumerate(tables)
        ]
        return Document(
            doc_id=doc_id,
            title=title,
            text=text,
            source=source,
            groups=list(groups or self.default_groups),
            metadata=metadata or {},
            tables=source_tables,
        )

    # Walking the corpus

    def read_path(self, root: Path) -> None:
        if root.is_dir():
            try:
                os.scandir(root).close()
            except OSError as error:
                raise CorpusError(f"cannot read corpus folder {root}: {error.strerror or error}") from error
            for file_path, relpath in self._list_files(root):
                self.read_file(file_path, relpath)
        elif root.is_file():
            try:
                root.open("rb").close()
            except OSError as error:
                raise CorpusError(f"cannot read corpus file {root}: {error.strerror or error}") from error
            self.read_file(root, root.name)
        else:
            raise CorpusError(f"corpus path {root} is neither a file nor a folder")

    def _list_files(self, root: Path) -> list[tuple[Path, str]]:
        """List the files under root with their relative paths, sorted, without hidden entries."""
        files: list[tuple[Path, str]] = []

        def on_error(error: OSError) -> None:
            relpath = Path(error.filename).relative_to(root).as_posix() if error.filename else "."
            self.skip(relpath, f"cannot read folder: {error.strerror or error}")

        for folder, dir_names, file_names in os.walk(root, onerror=on_error):
            folder_path = Path(folder)
            visible_dirs = []
            for name in sorted(dir_names):
                if name.startswith("."):
                    continue
                if (folder_path / name).is_symlink():
                    relpath = (folder_path / name).relative_to(root).as_posix()
                    self.skip(relpath, "symbolic link to a folder, not followed")
                    continue
                visible_dirs.append(name)
            dir_names[:] = visible_dirs
            for name in file_names:
                if name.startswith("."):
                    continue
                file_path = folder_path / name
                relpath = file_path.relative_to(root).as_posix()
                if file_path.is_symlink() and not _inside(file_path, root):
                    # A link out of the corpus could publish any file the job can read,
                    # such as /etc files, under the corpus's access groups.
                    self.skip(relpath, "symbolic link to a file outside the corpus folder, not followed")
                    continue
                files.append((file_path, relpath))
        files.sort(key=lambda item: item[1])
        return files

    def read_file(self, file_path: Path, relpath: str) -> None:
        """Read one file into the scan. Every failure becomes a Skipped entry."""
        extension = file_path.suffix.lower()
        file_reader = self._file_readers().get(extension)
        try:
            if file_reader is None:
                file_type = extension or "(no extension)"
                raise _SkipInput(
                    f"unsupported file type {file_type} (supported: {', '.join(SUPPORTED_EXTENSIONS)})"
                )
            status = os.stat(file_path)
            if not stat.S_ISREG(status.st_mode):
                raise _SkipInput("not a regular file")
            file_reader(file_path, relpath, status.st_size)
        except _SkipInput as skip:
            self.skip(relpath, skip.reason)
        except OSError as error:
            self.skip(relpath, f"cannot read file: {error.strerror or error}")
        except Exception as error:
            # One file must not stop the scan, so an unexpected reader error is logged
            # with its traceback and the file is skipped.
            logger.exception("unexpected error while reading %s", file_path)
            self.skip(relpath, f"unexpected error while reading: {type(error).__name__}: {error}")

    def _file_readers(self) -> dict[str, Callable[[Path, str, int], None]]:
        return {
            ".txt": self._read_text_file,
            ".md": self._read_text_file,
            ".html": self._read_html_file,
            ".htm": self._read_html_file,
            ".csv": self._read_csv_file,
            ".jsonl": self._read_jsonl_file,
        }

    def _read_decoded(self, file_path: Path, relpath: str, size: int) -> str:
        # A character takes at most 4 bytes in every supported encoding, so a larger file
        # cannot fit the limit and is skipped before it is read into memory.
        max_bytes = 4 * self.max_document_chars + 4
        if size > max_bytes:
            raise _SkipInput(
                f"document too large: the file has {size:,} bytes, more than {self.max_document_chars:,} "
                "characters can take; raise the max_document_chars option to index it"
            )
        text, encoding = _decode_bytes(file_path.read_bytes())
        if encoding in ("cp1252", "latin-1"):
            self.scan.warnings.append(f"{relpath}: not valid UTF-8, decoded as {encoding}")
        return text

    def _file_metadata(self, relpath: str, file_path: Path) -> dict:
        return {"path": relpath, "format": file_path.suffix.lower().lstrip(".")}

    # File formats

    def _read_text_file(self, file_path: Path, relpath: str, size: int) -> None:
        text = self._read_decoded(file_path, relpath, size)
        title = file_path.stem
        if file_path.suffix.lower() == ".md":
            title = _markdown_title(text) or title
        document = self.make_document(
            doc_id=relpath,
            title=title,
            text=text,
            source=relpath,
            metadata=self._file_metadata(relpath, file_path),
        )
        self.add(document)

    def _read_html_file(self, file_path: Path, relpath: str, size: int) -> None:
        # NOTE: <meta charset> is ignored, so a page in another legacy encoding (such as
        # Shift_JIS) is decoded as cp1252 or latin-1, with a warning.
        html = self._read_decoded(file_path, relpath, size)
        title, text, tables = extract_html(html)
        document = self.make_document(
            doc_id=relpath,
            title=title or file_path.stem,
            text=text,
            source=relpath,
            metadata=self._file_metadata(relpath, file_path),
            tables=tables,
        )
        self.add(document)

    def _read_csv_file(self, file_path: Path, relpath: str, size: int) -> None:
        text = normalize_text(self._read_decoded(file_path, relpath, size))
        if not text.strip():
            raise _SkipInput("empty document")
        rows = _parse_csv(text)
        document = self.make_document(
            doc_id=relpath,
            title=file_path.stem,
            text=render_table(rows),
            source=relpath,
            metadata=self._file_metadata(relpath, file_path),
            tables=[rows],
        )
        self.add(document)

    def _read_jsonl_file(self, file_path: Path, relpath: str, size: int) -> None:
        any_content = False
        fallback_lines: list[int] = []
        for lineno, line, encoding in _iter_jsonl_lines(file_path):
            if encoding != "utf-8":
                fallback_lines.append(lineno)
            if not line.strip():
                continue
            any_content = True
            source = f"{relpath}:{lineno}"
            try:
                self._read_json_record(line, source)
            except _SkipInput as skip:
                self.skip(source, skip.reason)
        if fallback_lines:
            listed = ", ".join(str(lineno) for lineno in fallback_lines[:5])
            if len(fallback_lines) > 5:
                listed += f" and {len(fallback_lines) - 5} more"
            subject = f"lines {listed} are" if len(fallback_lines) > 1 else f"line {listed} is"
            self.scan.warnings.append(
                f"{relpath}: {subject} not valid UTF-8, decoded as cp1252 or latin-1"
            )
        if not any_content:
            raise _SkipInput("empty document")

    # JSON lines records

    def _read_json_record(self, line: str, source: str) -> None:
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise _SkipInput(f"invalid JSON: {error.msg} at column {error.colno}") from error
        if not isinstance(record, dict):
            raise _SkipInput(f"expected a JSON object, got {type(record).__name__}")
        if "paragraphs" in record:
            self._read_question(record, source)
        elif "rows" in record:
            self.add(self._table_record_document(record, source))
        elif "text" in record:
            self.add(self._corpus_record_document(record, source))
        else:
            raise _SkipInput(
                'record has neither "text" nor "rows"; expected a document with "id", "title" and '
                '"text", a question with "paragraphs", or a table with "rows"'
            )

    def _record_fields(self, record: dict) -> tuple[str, str, list[str], dict]:
        """Validate and return doc_id, title, groups and metadata of a record."""
        raw_id = record.get("id", record.get("pid"))
        if raw_id is None:
            raise _SkipInput('record has no "id" (or "pid") field')
        if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)) or not str(raw_id).strip():
            raise _SkipInput(f'"id" must be a non-empty string or an integer, got {raw_id!r:.80}')
        title = record.get("title")
        if title is None:
            title = ""
        if not isinstance(title, str):
            raise _SkipInput(f'"title" must be a string, got {type(title).__name__}')

        groups = self.default_groups
        for field_name in ("groups", "access_groups"):
            if field_name in record:
                groups = _validate_groups(record[field_name], field_name)
                break
        metadata = record.get("metadata")
        if metadata is None:
            metadata = {}
        if not isinstance(metadata, dict):
            raise _SkipInput(f'"metadata" must be an object, got {type(metadata).__name__}')
        return str(raw_id), title, groups, metadata

    def _corpus_record_document(self, record: dict, source: str) -> Document:
        doc_id, title, groups, metadata = self._record_fields(record)
        text = record["text"]
        if not isinstance(text, str):
            raise _SkipInput(f'"text" must be a string, got {type(text).__name__}')
        return self.make_document(
            doc_id=doc_id, title=title, text=text, source=source, groups=groups, metadata=metadata
        )

    def _table_record_document(self, record: dict, source: str) -> Document:
        doc_id, title, groups, metadata = self._record_fields(record)
        rows = _validate_rows(record["rows"])
        if not any(cell for row in rows for cell in row):
            raise _SkipInput("empty document")
        text = record.get("text")
        if text is not None and not isinstance(text, str):
            raise _SkipInput(f'"text" must be a string, got {type(text).__name__}')
        return self.make_document(
            doc_id=doc_id,
            title=title,
            text=text if text and text.strip() else render_table(rows),
            source=source,
            groups=groups,
            metadata=metadata,
            tables=[rows],
        )

    def _read_question(self, record: dict, source: str) -> None:
        paragraphs = record["paragraphs"]
        if not isinstance(paragraphs, list):
            raise _SkipInput(f'"paragraphs" must be a list, got {type(paragraphs).__name__}')
        for index, paragraph in enumerate(paragraphs):
            try:
                if not isinstance(paragraph, dict):
                    raise _SkipInput(f"expected a JSON object, got {type(paragraph).__name__}")
                if "text" not in paragraph:
                    raise _SkipInput('paragraph has no "text" field')
                document = self._corpus_record_document(paragraph, source)
            except _SkipInput as skip:
                self.skip(source, f"paragraph {index}: {skip.reason}")
                continue
            self.add(document, from_question=True)


def _validate_rows(rows: object) -> list[list[str]]:
    """Check that rows are a list of lists of cells and return them as cleaned strings.

    Numbers become their JSON text and null becomes an empty cell. Any other cell type
    raises ``_SkipInput``.
    """
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise _SkipInput('"rows" must be a list of lists of cell strings')
    cleaned: list[list[str]] = []
    for row_index, row in enumerate(rows):
        cells = []
        for cell in row:
            if cell is None:
                cells.append("")
            elif isinstance(cell, str):
                cells.append(" ".join(normalize_text(cell).split()))
            elif isinstance(cell, (int, float)) and not isinstance(cell, bool):
                cells.append(json.dumps(cell))
            else:
                raise _SkipInput(
                    f'"rows" row {row_index} has a cell of type {type(cell).__name__}; '
                    "cells must be strings, numbers or null"
                )
        cleaned.append(cells)
    return cleaned


def _iter_jsonl_lines(file_path: Path) -> Iterator[tuple[int, str, str]]:
    """Yield (line number, text, encoding) for each line of a JSON lines file.

    UTF-8 files are streamed line by line. A line that is not valid UTF-8 is decoded as
    cp1252, or latin-1 if that fails too. A file with a UTF-16 or UTF-32 byte order mark
    is decoded as a whole. Raises ``_SkipInput`` for binary content.
    """
    with file_path.open("rb") as handle:
        head = handle.read(8192)
        handle.seek(0)
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_BE)):
            text, encoding = _decode_bytes(handle.read())
            # split("\n") rather than splitlines(), which would also break at U+2028 and
            # other separators that JSON strings may contain.
            for lineno, line in enumerate(text.replace("\r\n", "\n").split("\n"), start=1):
                yield lineno, line, encoding
            return
        if b"\x00" in head:
            raise _SkipInput("binary file (contains NUL bytes and no UTF-16 byte order mark)")
        for lineno, raw in enumerate(handle, start=1):
            if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            try:
                yield lineno, raw.decode("utf-8"), "utf-8"
            except UnicodeDecodeError:
                try:
                    yield lineno, raw.decode("cp1252"), "cp1252"
                except UnicodeDecodeError:
                    yield lineno, raw.decode("latin-1"), "latin-1"


def _markdown_title(text: str) -> str | None:
    """Return the text of the first "# " heading outside fenced code blocks."""
    in_fence = False
    for line in text.split("\n"):
        if _FENCE_RE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        match = _MARKDOWN_TITLE_RE.match(line)
        if match:
            return match.group(1)
    return None


def _parse_csv(text: str) -> list[list[str]]:
    """Parse CSV text into rows of stripped cells, sniffing the delimiter.

    The delimiter is one of comma, semicolon, tab and pipe, with comma when sniffing
    fails. Quoted cells may contain delimiters and line breaks. Rows whose cells are all
    empty are dropped. Raises ``_SkipInput`` for malformed CSV.
    """
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(
            text[:_CSV_SNIFF_CHARS], delimiters=_CSV_DELIMITERS
        )
    except csv.Error:
        dialect = csv.excel
    try:
        rows = [
            [" ".join(cell.split()) for cell in row]
            for row in csv.reader(io.StringIO(text, newline=""), dialect)
        ]
    except csv.Error as error:
        raise _SkipInput(f"invalid CSV: {error}") from error
    return [row for row in rows if any(row)]


def extract_html(html: str) -> tuple[str, str, list[list[list[str]]]]:
    """Extract the title, the readable text and the tables of an HTML page.

    The text leaves out script, style, noscript and template elements and comments. Block elements start new
    lines, and each table is rendered as markdown pipe lines in the text and also returned
    as rows. The title comes from <title>, else the first <h1>, else is empty.
    """
    tree = LexborHTMLParser(html)
    title = ""
    for selector in ("title", "h1"):
        node = tree.css_first(selector)
        if node is not None:
            title = " ".join(node.text(deep=True, separator=" ").split())
            if title:
                break

    body = tree.body
    if body is None:
        return title, "", []
    lines, tables = _html_body_lines(body)
    return title, "\n".join(lines), tables


def _html_body_lines(body: LexborNode) -> tuple[list[str], list[list[list[str]]]]:
    """Walk the body and return text lines and table rows.

    The walk uses an explicit stack so that deeply nested pages cannot exhaust Python's
    recursion limit.
    """
    lines: list[str] = []
    tables: list[list[list[str]]] = []
    inline: list[str] = []

    def end_line() -> None:
        line = " ".join("".join(inline).split())
        inline.clear()
        if line:
            lines.append(line)

    stack: list[tuple[LexborNode, bool]] = [(body, False)]
    while stack:
        node, closing = stack.pop()
        if closing:
            end_line()
            continue
        tag = node.tag
        if tag == "-text":
            inline.append(node.text_content or "")
        elif tag in _HTML_DROPPED_TAGS:
            continue
        elif tag == "br":
            end_line()
        elif tag == "pre":
            end_line()
            preformatted = node.text(deep=True, separator="").strip("\n")
            if preformatted.strip():
                lines.append(preformatted)
        elif tag == "table":
            end_line()
            caption = node.css_first("caption")
            if caption is not None and caption.text(deep=True).strip():
                lines.append(" ".join(caption.text(deep=True, separator=" ").split()))
            rows = _html_table_rows(node)
            if rows:
                tables.append(rows)
                lines.append(render_table(rows))
        else:
            is_block = tag in _HTML_BLOCK_TAGS
            if is_block:
                end_line()
                stack.append((node, True))
            children = list(node.iter(include_text=True))
            stack.extend((child, False) for child in reversed(children))
    end_line()
    return lines, tables


def _html_table_rows(table: LexborNode) -> list[list[str]]:
    """Return the cell texts of a table's own rows, without rows of nested tables.

    A cell with colspan="n" is followed by n - 1 empty cells, so spanning headers line up
    with their columns. NOTE: rowspan is not expanded, so cells below a row-spanning cell
    shift one column to the left.
    """
    row_nodes: list[LexborNode] = []
    for child in table.iter():
        if child.tag == "tr":
            row_nodes.append(child)
        elif child.tag in ("thead", "tbody", "tfoot"):
            row_nodes.extend(row for row in child.iter() if row.tag == "tr")

    rows: list[list[str]] = []
    for row_node in row_nodes:
        cells: list[str] = []
        for cell in row_node.iter():
            if cell.tag not in ("td", "th"):
                continue
            cells.append(" ".join(normalize_text(cell.text(deep=True, separator=" ")).split()))
            span = cell.attributes.get("colspan") or "1"
            extra = int(span) - 1 if span.strip().isdigit() else 0
            cells.extend([""] * min(extra, 100))
        if any(cells):
            rows.append(cells)
    return rows


def read_corpus(
    path: str | Path,
    *,
    default_groups: Sequence[str] = ("public",),
    max_document_chars: int = 5_000_000,
) -> CorpusScan:
    """Read every supported file under ``path`` (a folder or one file) into a CorpusScan.

    Folders are walked recursively in sorted order, skipping hidden files and folders. A
    file's doc_id is its path relative to the folder with forward slashes, and a JSON
    lines record's doc_id is its "id" (or "pid"). Documents without a "groups" field get
    ``default_groups``. Files and records that cannot be read become Skipped entries, and
    fallback decodings become warnings. Raises CorpusError when ``path`` does not exist
    or cannot be read, and ValueError for invalid options.
    """
    root = Path(path).expanduser()
    if isinstance(default_groups, str) or not default_groups or not all(
        isinstance(group, str) and group.strip() for group in default_groups
    ):
        raise ValueError(
            f"default_groups must be a non-empty sequence of non-empty strings, got {default_groups!r}"
        )
    if max_document_chars < 1:
        raise ValueError(f"max_document_chars must be at least 1, got {max_document_chars}")
    if not root.exists():
        raise CorpusError(f"corpus path not found: {root}")

    reader = _CorpusReader(list(default_groups), max_document_chars)
    reader.read_path(root)
    scan = reader.scan
    logger.info(
        "read %d documents from %s; skipped %d inputs, %d warnings",
        len(scan.documents),
        root,
        len(scan.skipped),
        len(scan.warnings),
    )
    return scan


def _inside(path: Path, root: Path) -> bool:
    """Return whether ``path``, with links resolved, lies under ``root``."""
    try:
        return path.resolve().is_relative_to(root.resolve())
    except OSError:
        return False
