"""Typed tables: number parsing, header detection, markdown pipe tables and a long cell format.

A ``SourceTable`` contains raw cell strings. ``typed_table`` turns it into a polars frame with
one column per table column, and ``table_cell_rows`` turns it into one record per body cell
for storage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import polars as pl

from indexer.records import SourceTable

# Currency markers that may stand before or after a number. Multi-character symbols come
# first so that "US$" is not read as "US" followed by "$".
_CURRENCY = r"US\$|A\$|C\$|HK\$|NZ\$|S\$|R\$|\$|€|£|¥|₹|₩|₽|CHF|USD|EUR|GBP|JPY|CNY|RMB|INR|AUD|CAD"
# Digits with optional comma thousands separators in groups of three, and optional decimals.
_DIGITS = r"[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?|[0-9]+(?:\.[0-9]+)?|\.[0-9]+"
_SIGN = r"[-+\u2212\u2013]"  # hyphen-minus, plus, minus sign, en dash
_MINUS_SIGNS = ["-", "\u2212", "\u2013"]

# One pattern serves both the per-cell parser (Python re) and the vectorised parser
# (polars, Rust regex), so both accept the same cells. Opening and closing brackets are
# both optional here, and the parsers reject a cell that has only one of them.
_NUMBER_PATTERN = (
    rf"(?P<sign1>{_SIGN})?\s*(?P<currency1>{_CURRENCY})?\s*(?P<open>\()?\s*"
    rf"(?P<currency2>{_CURRENCY})?\s*(?P<sign2>{_SIGN})?\s*(?P<currency3>{_CURRENCY})?\s*"
    rf"(?P<digits>{_DIGITS})\s*(?P<currency4>{_CURRENCY})?\s*"
    rf"(?P<percent1>%)?\s*(?P<close>\))?\s*(?P<percent2>%)?"
)
_NUMBER_RE = re.compile(_NUMBER_PATTERN)
_ANCHORED_NUMBER_PATTERN = f"^(?:{_NUMBER_PATTERN})$"
_CURRENCY_GROUPS = ("currency1", "currency2", "currency3", "currency4")

# Cells that mean "no value" in financial tables: dashes, a lone currency or percent sign, n/a.
# They count as empty when deciding whether a column is numeric.
_NO_VALUE_PATTERN = r"(?i)^(?:[\s$€£¥%\-\u2212\u2013\u2014]*|n/?a|n\.?m\.?)$"
_YEAR_RE = re.compile(r"19[0-9]{2}|20[0-9]{2}|2100")

_SEPARATOR_CELL_RE = re.compile(r":?-+:?")
_UNESCAPED_PIPE_RE = re.compile(r"(?<!\\)\|")
_FENCE_RE = re.compile(r"^\s{0,3}(```|~~~)")

LABEL_COLUMN = "label"


@dataclass(frozen=True)
class ParsedNumber:
    """A number read from a table cell, as shown: 12.5% gives value 12.5 and percent True."""

    value: float
    percent: bool
    currency: str | None


@dataclass
class TypedTable:
    """A table with detected header rows, unique column names and typed columns.

    ``frame`` contains the body rows only. Numeric columns are Float64 with null for cells
    that do not parse, and text columns are Utf8 with null for empty cells.
    """

    table_id: str
    title: str
    header_rows: int
    columns: list[str]
    frame: pl.DataFrame
    dtypes: list[pl.DataType]  # one per column, in the order of ``columns``


def parse_number(raw: str) -> ParsedNumber | None:
    """Parse one cell such as "$1,234.5", "(1,234)", "−5" or "(3.2)%" into a signed number.

    Brackets and minus signs make the value negative. Units and scale words are not part
    of the grammar, so "1.2 million" and "63 bps" return None, as do text, empty cells and
    dashes. Years such as "2019" parse as plain numbers.
    """
    match = _NUMBER_RE.fullmatch(raw.strip())
    if match is None:
        return None
    if (match["open"] is None) != (match["close"] is None):
        return None
    magnitude = float(match["digits"].replace(",", ""))
    negative = (
        match["open"] is not None
        or match["sign1"] in _MINUS_SIGNS
        or match["sign2"] in _MINUS_SIGNS
    )
    currency = next((match[name] for name in _CURRENCY_GROUPS if match[name]), None)
    percent = match["percent1"] is not None or match["percent2"] is not None
    return ParsedNumber(-magnitude if negative else magnitude, percent, currency)


def number_expressions(cell: pl.Expr) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """Build the polars expressions for value, percent and currency of a Utf8 column.

    The expressions give the same results as ``parse_number`` applied cell by cell, with
    null value and currency and False percent where a cell does not parse.
    """
    groups = cell.str.strip_chars().str.extract_groups(_ANCHORED_NUMBER_PATTERN)
    opened = groups.struct.field("open").is_not_null()
    closed = groups.struct.field("close").is_not_null()
    digits = groups.struct.field("digits")
    valid = digits.is_not_null() & (opened == closed)

    magnitude = digits.str.replace_all(",", "", literal=True).cast(pl.Float64)
    negative = (
        opened
        | groups.struct.field("sign1").is_in(_MINUS_SIGNS).fill_null(False)
        | groups.struct.field("sign2").is_in(_MINUS_SIGNS).fill_null(False)
    )
    value = pl.when(valid).then(pl.when(negative).then(-magnitude).otherwise(magnitude))
    has_percent = (
        groups.struct.field("percent1").is_not_null() | groups.struct.field("percent2").is_not_null()
    )
    percent = pl.when(valid).then(has_percent).otherwise(False)
    currency = pl.when(valid).then(
        pl.coalesce([groups.struct.field(name) for name in _CURRENCY_GROUPS])
    )
    return value.alias("value"), percent.alias("percent"), currency.alias("currency")


def parse_numbers(cells: pl.Series) -> pl.DataFrame:
    """Parse a Series of cell strings into a frame with columns value, percent and currency."""
    frame = pl.DataFrame({"cell": cells.cast(pl.Utf8)})
    return frame.select(number_expressions(pl.col("cell")))


def _clean_cell(cell: str) -> str:
    return " ".join(cell.split())


def _pad_rows(rows: list[list[str]]) -> list[list[str]]:
    width = max((len(row) for row in rows), default=0)
    return [[_clean_cell(cell) for cell in row] + [""] * (width - len(row)) for row in rows]


def _is_year(cell: str) -> bool:
    return _YEAR_RE.fullmatch(cell) is not None


def _is_header_like(row: list[str]) -> bool:
    """Check that every cell after the first is empty, not a number, or a year."""
    for cell in row[1:]:
        if cell and parse_number(cell) is not None and not _is_year(cell):
            return False
    return True


def _is_section_label(row: list[str]) -> bool:
    """Check for a row with only a first cell, such as "Deferred tax assets:"."""
    return bool(row[0]) and not any(row[1:])


def count_header_rows(rows: list[list[str]]) -> int:
    """Count the leading header rows of padded, cleaned rows.

    Header rows are the leading rows whose cells after the first are empty, not numbers,
    or years (TAT-QA tables have one to four such rows). Section labels just above the
    first data row belong to the body. When every row looks like a header, only the first
    row is taken as the header.
    """
    if not rows:
        return 0
    if len(rows[0]) == 1:
        # A single column gives no cells to compare, so only a non-numeric first cell
        # above other rows counts as a header.
        return 1 if len(rows) > 1 and parse_number(rows[0][0]) is None else 0

    count = 0
    while count < len(rows) and _is_header_like(rows[count]):
        count += 1
    while count > 0 and _is_section_label(rows[count - 1]):
        count -= 1
    if count == len(rows):
        count = 1 if len(rows) > 1 else 0
    return count


def _fill_spanning_headers(header: list[list[str]]) -> list[list[str]]:
    """Forward-fill empty header cells that sit under a header spanning several columns.

    A cell is filled from its left neighbour when a lower header row has its own text in
    that column, which makes the column a sub-column of the span. Every row above must
    also put both columns in the same group. Column 0 never spreads, because it is the
    row label column in almost every table.
    """
    filled = [list(row) for row in header]
    width = len(header[0]) if header else 0
    for row_index, row in enumerate(filled):
        for column in range(2, width):
            if row[column] or not row[column - 1]:
                continue
            has_sub_header = any(header[lower][column] for lower in range(row_index + 1, len(header)))
            if not has_sub_header:
                continue
            same_group = all(
                filled[upper][column] == filled[upper][column - 1] for upper in range(row_index)
            )
            if same_group:
                row[column] = row[column - 1]
    return filled


def _column_names(header: list[list[str]], width: int, has_row_labels: bool) -> list[str]:
    filled = _fill_spanning_headers(header)
    names: list[str] = []
    seen: set[str] = set()
    for column in range(width):
        if column == 0 and has_row_labels:
            name = LABEL_COLUMN
        else:
            name = " ".join(" ".join(row[column] for row in filled).split())
            name = name or f"column_{column}"
        unique = name
        copy = 2
        while unique in seen:
            unique = f"{name} ({copy})"
            copy += 1
        seen.add(unique)
        names.append(unique)
    return names


def typed_table(table: SourceTable) -> TypedTable:
    """Detect the header rows of a table, name its columns and type its body as a polars frame.

    A column is Float64 when more than half of its body cells that hold a value parse as
    numbers. Dashes and "n/a" count as holding no value. Other columns are Utf8. Ragged
    rows are padded with empty cells, and an empty table gives a frame without rows.
    """
    rows = _pad_rows(table.rows)
    if not rows or not rows[0]:
        return TypedTable(table.table_id, table.title, 0, [], pl.DataFrame(), [])

    width = len(rows[0])
    header_rows = count_header_rows(rows)
    body = rows[header_rows:]
    positional = [f"c{column}" for column in range(width)]
    cells = pl.DataFrame(
        {name: [row[column] for row in body] for column, name in enumerate(positional)},
        schema={name: pl.Utf8 for name in positional},
    )

    numeric = _numeric_columns(cells)
    has_row_labels = width > 1 and not numeric[0]
    columns = _column_names(rows[:header_rows], width, has_row_labels)

    typed = cells.select(
        [
            number_expressions(pl.col(name))[0].alias(columns[index])
            if numeric[index]
            else pl.when(pl.col(name) != "").then(pl.col(name)).alias(columns[index])
            for index, name in enumerate(positional)
        ]
    )
    return TypedTable(
        table_id=table.table_id,
        title=table.title,
        header_rows=header_rows,
        columns=columns,
        frame=typed,
        dtypes=list(typed.schema.dtypes()),
    )


def _numeric_columns(cells: pl.DataFrame) -> list[bool]:
    """Decide per column whether most cells that hold a value parse as numbers."""
    if cells.height == 0:
        return [False] * cells.width
    counts = cells.select(
        [
            expression
            for name in cells.columns
            for expression in (
                number_expressions(pl.col(name))[0].is_not_null().sum().alias(f"{name}:numbers"),
                (~pl.col(name).str.contains(_NO_VALUE_PATTERN)).sum().alias(f"{name}:values"),
            )
        ]
    ).row(0, named=True)
    return [
        counts[f"{name}:values"] > 0 and counts[f"{name}:numbers"] * 2 > counts[f"{name}:values"]
        for name in cells.columns
    ]


def table_cell_rows(doc_id: str, table: TypedTable, raw: SourceTable) -> list[dict]:
    """Flatten the body of a typed table into one record per non-empty cell.

    Each record has table_id, doc_id, row_index (0 for the first body row), row_label
    (the text of the row's first cell), column_index, column_name, raw (the cell as
    written), number, percent and currency. Cells of the row label column are not
    records of their own because every record carries its row label.
    """
    if raw.table_id != table.table_id:
        raise ValueError(
            f"raw table {raw.table_id!r} does not match typed table {table.table_id!r}; "
            "pass the SourceTable that typed_table was built from"
        )
    width = len(table.columns)
    if width == 0:
        return []

    body = [list(row) + [""] * (width - len(row)) for row in raw.rows[table.header_rows :]]
    skip_first = table.columns[0] == LABEL_COLUMN and table.dtypes[0] == pl.Utf8
    first_column = 1 if skip_first else 0
    wide = pl.DataFrame(
        {
            "row_label": [_clean_cell(row[0]) for row in body],
            **{str(column): [row[column] for row in body] for column in range(first_column, width)},
        },
        schema={"row_label": pl.Utf8, **{str(column): pl.Utf8 for column in range(first_column, width)}},
    )
    names = pl.DataFrame(
        {"column_index": list(range(width)), "column_name": table.columns},
        schema={"column_index": pl.Int64, "column_name": pl.Utf8},
    )
    long = (
        wide.with_row_index("row_index")
        .unpivot(index=["row_index", "row_label"], variable_name="column_index", value_name="raw")
        .filter(pl.col("raw").str.strip_chars() != "")
        .with_columns(
            pl.col("row_index").cast(pl.Int64),
            pl.col("column_index").cast(pl.Int64),
        )
        .join(names, on="column_index", how="left")
        .with_columns(number_expressions(pl.col("raw")))
        .rename({"value": "number"})
        .sort(["row_index", "column_index"])
        .select(
            pl.lit(table.table_id).alias("table_id"),
            pl.lit(doc_id).alias("doc_id"),
            "row_index",
            "row_label",
            "column_index",
            "column_name",
            "raw",
            "number",
            "percent",
            "currency",
        )
    )
    return long.to_dicts()


def _is_separator_row(line: str) -> bool:
    stripped = line.strip()
    if "|" not in stripped or "-" not in stripped:
        return False
    cells = _split_row(stripped)
    return all(_SEPARATOR_CELL_RE.fullmatch(cell) for cell in cells)


def _is_pipe_row(line: str) -> bool:
    stripped = line.strip()
    return stripped.startswith("|") and stripped.count("|") >= 2


def _split_row(line: str) -> list[str]:
    stripped = line.strip()
    if stripped.startswith("|"):
        stripped = stripped[1:]
    if stripped.endswith("|") and not stripped.endswith("\\|"):
        stripped = stripped[:-1]
    return [_clean_cell(cell.replace("\\|", "|")) for cell in _UNESCAPED_PIPE_RE.split(stripped)]


def find_markdown_tables(text: str) -> list[list[list[str]]]:
    """Find pipe tables in markdown or plain text and return each as rows of cell strings.

    A table is a run of at least two lines that start with "|", or a header line with
    pipes followed by a "|---|" separator line (GitHub style, leading pipes optional).
    Separator lines are dropped, "\\|" is a literal pipe, and fenced code blocks are
    ignored. Cells are stripped and their inner whitespace collapsed.
    """
    lines = text.split("\n")
    tables: list[list[list[str]]] = []
    in_fence = False
    index = 0
    while index < len(lines):
        line = lines[index]
        if _FENCE_RE.match(line):
            in_fence = not in_fence
            index += 1
            continue
        if in_fence:
            index += 1
            continue

        # Only the second line of a table can be its separator, so a body row of dashes
        # ("| - | - |") stays a row.
        has_separator = index + 1 < len(lines) and _is_separator_row(lines[index + 1])
        if _is_pipe_row(line):
            end = index + 2 if has_separator else index + 1
            while end < len(lines) and _is_pipe_row(lines[end]):
                end += 1
        elif "|" in line and has_separator:
            end = index + 2
            while end < len(lines) and "|" in lines[end] and lines[end].strip():
                end += 1
        else:
            index += 1
            continue

        block = lines[index:end]
        if has_separator:
            del block[1]
        rows = [_split_row(row) for row in block]
        if len(rows) >= 2 or (rows and has_separator):
            tables.append(rows)
        index = end
    return tables


def render_table(rows: list[list[str]]) -> str:
    """Render rows as markdown pipe lines such as "| a | b |", one line per row.

    Empty cells render as "| |", pipes in cells are escaped, and ragged rows are padded,
    so ``find_markdown_tables`` reads the output back as the same cleaned rows.
    """
    width = max((len(row) for row in rows), default=0)
    lines = []
    for row in rows:
        cells = [_clean_cell(cell).replace("|", "\\|") for cell in row]
        cells += [""] * (width - len(cells))
        lines.append("|" + "|".join(f" {cell} " if cell else " " for cell in cells) + "|")
    return "\n".join(lines)
