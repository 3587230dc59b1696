"""Table rows as evidence, and arithmetic over them: lookups, changes, ratios, sums and averages.

``TableTool`` loads the ``source_tables`` and ``table_cells`` of a snapshot into memory
once. A lookup scores every body row against the question with BM25-style weights over
the row label, the section label above the row, the table's column names and its title.
Rows that have values for the years the question names get a bonus. ``compute`` reads
the operation from the question's wording ("percentage change", "average",
"proportion", ...), picks the operand rows and columns the same way, and returns the
result with the arithmetic written out.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from indexer.store import Snapshot
from indexer.tables import LABEL_COLUMN
from solver.evidence import Candidate, Evidence

logger = logging.getLogger("ponder.table_tool")

# Weight of a question word found in each part of a row's description.
LABEL_WEIGHT = 1.0
SECTION_WEIGHT = 0.5
COLUMN_WEIGHT = 0.35
TITLE_WEIGHT = 0.25
# Added to a row's score for each question year that one of its value columns carries.
YEAR_BONUS = 1.0
# Rows scoring below this share of the best row's score are not operands.
MIN_RELATIVE_SCORE = 0.5

# Confidence factors for each way an operand match can be uncertain.
# NOTE: set by judgment. Over the 846 TAT-QA dev questions, top candidates with
# confidence 0.7 or more were exact matches 68% of the time, and those below 0.3 about 1%.
AMBIGUOUS_COLUMN_FACTOR = 0.6  # two columns fit a year equally well
MISSING_YEAR_FACTOR = 0.5  # the row has no column for a year the question names
NO_YEAR_FACTOR = 0.6  # the question names no year, so all value columns are candidates
INFERRED_FACTOR = 0.8  # operands inferred: two rows, two columns, or the latest two years
FALLBACK_FACTOR = 0.5  # the operation found no operands, so a plain cell is returned
NOT_A_FIGURE_FACTOR = 0.3  # the question requests a method, reason or list

_TOKEN = re.compile(r"[a-z0-9]+(?:[.'][a-z0-9]+)*")
_YEAR = re.compile(r"(?<![0-9])(19[5-9][0-9]|20[0-9][0-9])(?![0-9])")
# "F19", "FY2019", "FY 19" and "fiscal 19" name fiscal years.
_FISCAL_YEAR = re.compile(r"\b(?:fy|f|fiscal)\s?'?([0-9]{2}|[0-9]{4})\b", re.IGNORECASE)
# Digits written with spaces between them, such as "2 0 1 8" in a scanned header.
_SPACED_DIGITS = re.compile(r"\b([0-9]) ([0-9]) ([0-9]) ([0-9])\b")
_TRAILING_PARENTHETICAL = re.compile(r"\s*\([^()]*\)\s*$")

_STOP_WORDS = frozenset(
    """
    a an and are as at be been being between both by did do does during each for from had has
    have how in into is it its of on or over than that the their there these this those to
    was were what when where which who will with year years ended ending as compared
    company company's companys respectively value values amount amounts much many
    """.split()
)

# Cues of each operation, checked in the order of ``_operation``.
_PERCENT_CHANGE = re.compile(
    r"percent(?:age)?\s+(?:change|increase|decrease|growth|decline|rise|drop|difference)"
    r"|%\s*(?:change|increase|decrease)|growth\s+rate|rate\s+of\s+(?:change|growth|increase|decrease)"
)
_AVERAGE = re.compile(r"\b(?:average|mean)\b")
_RATIO = re.compile(
    r"\bratio\b|\bproportion\b|percent(?:age)?\s+of\b|what\s+percent(?:age)?\b|as\s+a\s+percent(?:age)?\b"
    r"|%\s+of\b|percentage\s+constitution|\bportion\b|\bshare\s+of\b"
)
_DIFFERENCE = re.compile(
    r"\bchange\b|\bchanges\b|\bdifference\b|\bincrease\b|\bdecrease\b|\bvariance\b|\bgrowth\b"
    r"|how\s+much\s+(?:more|less|higher|lower)|\bdeclin\w*\b"
)
_COUNT = re.compile(r"^\s*how\s+many\b")
_COMPARATIVE = re.compile(
    r"\b(?:higher|larger|greater|bigger|more|less|lower|smaller|fewer|highest|largest|greatest|lowest|smallest|least|most)\b"
)
_WHICH = re.compile(r"^\s*(?:in\s+)?(?:which|what)\b")
_WHICH_PERIOD = re.compile(r"\b(?:which|what)\s+(?:fiscal\s+)?(?:year|period)\b")
_SUM = re.compile(r"\bsum\b|\btotal\b|\bcombined\b|\baltogether\b|\bin\s+aggregate\b")
_EXPLICIT_SUM = re.compile(r"\bsum\b|\bcombined\b|\baltogether\b|\bin\s+aggregate\b|\bin\s+total\b")
_SUM_OF_TWO = re.compile(r"\b(?:sum|combined|altogether)\b|\btotal\s+of\b.*\band\b")
_YEAR_RANGE = re.compile(
    r"\b(?:from|between)\s+(?:fiscal\s+)?((?:19|20)[0-9]{2})\s*(?:to|and|-|through)\s*(?:fiscal\s+)?((?:19|20)[0-9]{2})\b"
    r"|\b((?:19|20)[0-9]{2})\s*-\s*((?:19|20)[0-9]{2})\b"
)
_THRESHOLD = re.compile(
    r"\b(exceed|exceeded|exceeds|above|over|more than|greater than|higher than|below|under|less than|lower than)"
    r"\s+\$?\s?([0-9][0-9,]*(?:\.[0-9]+)?)"
)
_BELOW_WORDS = frozenset({"below", "under", "less than", "lower than"})
_SMALLER_WORDS = frozenset({"less", "lower", "smaller", "fewer", "lowest", "smallest", "least", "below"})
_PERCENT_WORDS = re.compile(r"percent|%")
# Questions that ask for a method, reason or list rather than a figure.
_NOT_A_FIGURE = re.compile(
    r"^\s*(?:why|how\s+(?:is|are|was|were|does|do|did|often|long)"
    r"|what\s+(?:are|were)\s+the\s+(?:components|items|years)|which\s+(?:countries|items|components|segments))\b"
)
# Words that split "the ratio of A to B" and "A as a percentage of B" into numerator and
# denominator, strongest first. "A in B" splits only when no stronger word is present.
_RATIO_CONNECTORS = (
    r"as\s+a\s+percent(?:age)?\s+of",
    r"relative\s+to",
    r"divided\s+by",
    r"compared\s+(?:to|with)",
    "to",
    "over",
    "among",
    "against",
    "within",
    "in",
    "of",
)


@dataclass
class _Row:
    table: int  # position in TableTool._tables
    row_index: int  # position in the table body, as in table_cells
    label: str
    section: str  # label of the nearest row above that has no values, such as "Deferred tax assets"
    cells: list[dict]  # column_index, column_name, raw, number, percent


@dataclass
class _Table:
    table_id: str
    doc_id: str
    title: str
    columns: list[str]
    column_years: list[set[int]]  # years named in each column's header
    column_words: list[set[str]]  # word stems of each column's header
    groups: frozenset[str]
    rows: list[int] = field(default_factory=list)  # positions in TableTool._rows


@dataclass
class _Match:
    """Rows scored against some text, best first."""

    rows: np.ndarray  # row positions
    scores: np.ndarray


def _stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _words(text: str) -> list[str]:
    """Return the lower-case word stems of ``text`` without stop words or bare numbers."""
    words = []
    for word in _TOKEN.findall(text.lower().replace("’", "'")):
        word = word.removesuffix("'s").replace("'", "")
        if word in _STOP_WORDS or word.replace(".", "").isdigit():
            continue
        words.append(_stem(word))
    return words


def _years(text: str) -> list[int]:
    """Return the years ``text`` names, in order of appearance and without repeats."""
    text = _SPACED_DIGITS.sub(r"\1\2\3\4", text)
    found: list[tuple[int, int]] = [(match.start(), int(match.group(1))) for match in _YEAR.finditer(text)]
    for match in _FISCAL_YEAR.finditer(text):
        digits = match.group(1)
        year = int(digits) if len(digits) == 4 else 2000 + int(digits)
        if 1950 <= year <= 2099:
            found.append((match.start(), year))
    years: list[int] = []
    for _, year in sorted(found):
        if year not in years:
            years.append(year)
    return years


def format_number(value: float) -> str:
    """Format a computed value as TAT-QA answers are written: at most two decimals, no trailing zeros."""
    if not math.isfinite(value):
        return str(value)
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in {"-0", ""} else text


def _show(value: float) -> str:
    """Format an operand for a derivation with thousands separators and its own decimals."""
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:,.6f}".rstrip("0").rstrip(".")


def _normalize_groups(groups: Sequence[str] | str) -> tuple[str, ...]:
    if isinstance(groups, str):
        groups = [groups]
    return tuple(sorted({group for group in groups if group}))


def _count_tokens(text: str) -> int:
    from indexer.embedding import count_tokens

    return count_tokens([text])[0]


class TableTool:
    """Row lookup and arithmetic over the tables of one snapshot, restricted to the caller's groups."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.tables = pl.from_arrow(
            snapshot.arrow("source_tables", ["table_id", "doc_id", "title", "header_rows", "columns", "rows_json", "groups"])
        )
        self.cells = pl.from_arrow(
            snapshot.arrow(
                "table_cells",
                ["table_id", "row_index", "row_label", "column_index", "column_name", "raw", "number", "percent"],
            )
        )
        self._tables: list[_Table] = []
        self._rows: list[_Row] = []
        self._allowed: dict[tuple[str, ...], np.ndarray] = {}
        self._build_rows()
        self._build_index()
        logger.info("table tool loaded: %d tables, %d rows", len(self._tables), len(self._rows))

    @property
    def has_tables(self) -> bool:
        return bool(self._tables)

    # -- loading --------------------------------------------------------------------------

    def _build_rows(self) -> None:
        """Collect the body rows that have values, with their section labels from ``rows_json``."""
        cells_by_row: dict[tuple[str, int], list[dict]] = {}
        labels: dict[tuple[str, int], str] = {}
        for cell in self.cells.sort(["table_id", "row_index", "column_index"]).iter_rows(named=True):
            key = (cell["table_id"], cell["row_index"])
            labels[key] = cell["row_label"] or ""
            cells_by_row.setdefault(key, []).append(
                {
                    "column_index": cell["column_index"],
                    "column_name": cell["column_name"],
                    "raw": cell["raw"],
                    "number": cell["number"],
                    "percent": bool(cell["percent"]),
                }
            )

        for record in self.tables.iter_rows(named=True):
            columns = list(record["columns"] or [])
            table = _Table(
                table_id=record["table_id"],
                doc_id=record["doc_id"],
                title=record["title"] or "",
                columns=columns,
                column_years=[set(_years(name)) if name != LABEL_COLUMN else set() for name in columns],
                column_words=[set(_words(name)) if name != LABEL_COLUMN else set() for name in columns],
                groups=frozenset(record["groups"] or ()),
            )
            position = len(self._tables)
            self._tables.append(table)
            try:
                raw_rows = json.loads(record["rows_json"] or "[]")
            except json.JSONDecodeError as error:
                logger.warning("table %s has invalid rows_json (%s); its rows get no section labels", table.table_id, error)
                raw_rows = []
            section = ""
            for row_index, raw_row in enumerate(raw_rows[int(record["header_rows"] or 0) :]):
                cells = [str(cell or "").strip() for cell in raw_row]
                label = cells[0] if cells else ""
                if label and not any(cells[1:]):
                    # A row with only a first cell ("Deferred tax assets:") heads the rows below it.
                    section = label.rstrip(":")
                    continue
                key = (table.table_id, row_index)
                if key not in cells_by_row:
                    continue
                table.rows.append(len(self._rows))
                self._rows.append(_Row(position, row_index, labels[key], section, cells_by_row.pop(key)))

        # Cells whose rows rows_json does not show still become rows, without a section.
        index_of = {table.table_id: position for position, table in enumerate(self._tables)}
        for (table_id, row_index), cells in sorted(cells_by_row.items()):
            position = index_of.get(table_id)
            if position is None:
                continue
            self._tables[position].rows.append(len(self._rows))
            self._rows.append(_Row(position, row_index, labels[(table_id, row_index)], "", cells))

    def _build_index(self) -> None:
        """Build an inverted index from word stems to (row, weight), and the IDF of each word over rows."""
        postings: dict[str, dict[int, float]] = {}
        for row_id, row in enumerate(self._rows):
            table = self._tables[row.table]
            headers = table.columns[1:] if table.columns[:1] == [LABEL_COLUMN] else table.columns
            weights: dict[str, float] = {}
            parts = (
                (table.title, TITLE_WEIGHT),
                (" ".join(headers), COLUMN_WEIGHT),
                (row.section, SECTION_WEIGHT),
                (row.label, LABEL_WEIGHT),
            )
            for text, weight in parts:
                for word in _words(text):
                    weights[word] = max(weights.get(word, 0.0), weight)
            for word, weight in weights.items():
                postings.setdefault(word, {})[row_id] = weight

        n_rows = max(len(self._rows), 1)
        self._postings = {
            word: (np.fromiter(rows.keys(), dtype=np.int64), np.fromiter(rows.values(), dtype=np.float64))
            for word, rows in postings.items()
        }
        self._idf = {
            word: math.log(1.0 + (n_rows - len(rows) + 0.5) / (len(rows) + 0.5)) for word, rows in postings.items()
        }
        self._row_table = np.array([row.table for row in self._rows], dtype=np.int64)

        # The IDF-weighted words that name a row (its label, and its section label at a
        # lower weight), to measure how much of that name a question covers.
        self._name_words: list[dict[str, float]] = []
        for row in self._rows:
            name: dict[str, float] = {}
            for word in _words(row.section):
                name[word] = SECTION_WEIGHT * self._idf.get(word, 1.0)
            for word in _words(row.label):
                name[word] = LABEL_WEIGHT * self._idf.get(word, 1.0)
            self._name_words.append(name)
        self._row_years = [
            {
                year
                for cell in row.cells
                if cell["number"] is not None
                for year in self._tables[row.table].column_years[cell["column_index"]]
            }
            for row in self._rows
        ]

    def _allowed_rows(self, groups: tuple[str, ...]) -> np.ndarray:
        if groups not in self._allowed:
            caller = set(groups)
            tables = np.array([bool(caller & table.groups) for table in self._tables], dtype=bool)
            self._allowed[groups] = tables[self._row_table] if self._rows else np.zeros(0, dtype=bool)
        return self._allowed[groups]

    # -- scoring --------------------------------------------------------------------------

    def _score(self, text: str, mask: np.ndarray, *, years: Sequence[int] = ()) -> _Match:
        """Score the rows under ``mask`` against ``text`` and return those with a positive score."""
        scores = np.zeros(len(self._rows), dtype=np.float64)
        words = list(dict.fromkeys(_words(text)))
        for word in words:
            posting = self._postings.get(word)
            if posting is not None:
                rows, weights = posting
                np.add.at(scores, rows, self._idf[word] * weights)
        candidates = np.flatnonzero((scores > 0) & mask)
        if len(candidates) == 0:
            return _Match(candidates, np.zeros(0))

        query = set(words)
        final = np.empty(len(candidates), dtype=np.float64)
        for position, row_id in enumerate(candidates):
            # Scaling by the covered share of the row's name makes "Total revenue" beat
            # "Total revenue from subscriptions" for a question about total revenue.
            coverage = self._coverage(int(row_id), query)
            final[position] = scores[row_id] * (0.5 + 0.5 * coverage)
            if years:
                final[position] += YEAR_BONUS * len(self._row_years[row_id].intersection(years))
        order = np.lexsort((candidates, -final))
        return _Match(candidates[order], final[order])

    def _coverage(self, row_id: int, query: set[str]) -> float:
        """Return the IDF-weighted share of the row's name words that ``query`` contains."""
        name = self._name_words[row_id]
        total = sum(name.values())
        if total <= 0:
            return 0.0
        return sum(weight for word, weight in name.items() if word in query) / total

    # -- lookup ---------------------------------------------------------------------------

    def lookup(self, query: str, groups: Sequence[str], *, limit: int = 5) -> list[Evidence]:
        """Return the table rows most relevant to ``query`` that the caller's groups may read, best first."""
        groups = _normalize_groups(groups)
        if not groups or not self._rows or limit < 1 or not query or not query.strip():
            return []
        match = self._score(query, self._allowed_rows(groups), years=_years(query))
        return [
            self.row_evidence(int(row_id), float(score))
            for row_id, score in zip(match.rows[:limit], match.scores[:limit], strict=True)
        ]

    def row_evidence(self, row_id: int, score: float) -> Evidence:
        """Build the evidence of one row; its id is ``{table_id}:r{row_index}``."""
        row = self._rows[row_id]
        table = self._tables[row.table]
        text = self.render_row(row_id)
        return Evidence(
            evidence_id=f"{table.table_id}:r{row.row_index}",
            kind="table",
            doc_id=table.doc_id,
            title=table.title,
            text=text,
            score=score,
            n_tokens=_count_tokens(text),
            source="retrieve:table",
            details={
                "table_id": table.table_id,
                "row_index": row.row_index,
                "row_label": row.label,
                "section": row.section,
                "cells": [dict(cell) for cell in row.cells],
            },
        )

    def render_row(self, row_id: int) -> str:
        """Render a row as "label | column: value | ...", with its section label in front when it has one."""
        row = self._rows[row_id]
        label = f"{row.section}: {row.label}" if row.section else row.label
        parts = [label or "(no label)"]
        parts += [f"{cell['column_name']}: {cell['raw']}" for cell in row.cells if cell["column_name"] != LABEL_COLUMN]
        return " | ".join(parts)

    # -- compute --------------------------------------------------------------------------

    def compute(self, question: str, groups: Sequence[str], evidence: list[Evidence] | None = None) -> list[Candidate]:
        """Answer ``question`` from table cells, best candidate first.

        The operation comes from the question's wording, the operand rows from word
        overlap with row names, and the operand columns from the years and header words
        the question names. With table rows in ``evidence``, only their tables are read.
        Returns no candidate when no row matches.
        """
        groups = _normalize_groups(groups)
        if not groups or not self._rows or not question or not question.strip():
            return []
        mask = self._allowed_rows(groups).copy()
        tables = {item.details.get("table_id") for item in evidence or () if item.kind == "table"}
        if tables:
            mask &= np.array([self._tables[row.table].table_id in tables for row in self._rows], dtype=bool)
        text = question.lower().replace("’", "'")
        years = _years(question)
        match = self._score(question, mask, years=years)
        if not len(match.rows):
            return []

        # The words of the matched row's own label ("Weighted average hedged rate") are no
        # operation cue.
        best_label = self._rows[int(match.rows[0])].label.lower()
        best_label = _TRAILING_PARENTHETICAL.sub("", best_label).strip()
        cue_text = text.replace(best_label, " ") if len(best_label) > 3 else text
        operation = _operation(cue_text, years)
        if operation == "sum" and not _EXPLICIT_SUM.search(text) and "total" in best_label:
            # "What was the total revenue in 2019 and 2018?" refers to the "Total revenue" row.
            operation = "lookup"
        if operation in {"average", "sum", "count"}:
            years = _year_range(text, years)

        solve = {
            "percent_change": self._difference,
            "difference": self._difference,
            "average": self._aggregate,
            "sum": self._aggregate,
            "ratio": self._ratio,
            "compare": self._compare,
            "count": self._count,
            "lookup": self._lookup_value,
        }[operation]
        candidates = solve(question, text, operation, years, match, mask)
        if not candidates and operation != "lookup":
            candidates = self._lookup_value(question, text, "lookup", years, match, mask)
            for candidate in candidates:
                candidate.confidence = candidate.score = round(candidate.confidence * FALLBACK_FACTOR, 4)
        candidates.sort(key=lambda candidate: -candidate.confidence)
        return candidates

    # Operand selection.

    def _best_rows(self, match: _Match, count: int = 2) -> list[int]:
        """Return the positions in ``match`` of at most ``count`` rows that score near the best."""
        if not len(match.rows):
            return []
        top = float(match.scores[0])
        positions = [position for position in range(len(match.rows)) if match.scores[position] >= MIN_RELATIVE_SCORE * top]
        return positions[:count]

    def _row_confidence(self, match: _Match, position: int, question: str) -> float:
        """Rate a matched row by how much of its name the question covers and by its lead over other labels."""
        row_id = int(match.rows[position])
        score = float(match.scores[position])
        label = self._rows[row_id].label
        runner_up = 0.0
        for other, other_score in zip(match.rows, match.scores, strict=True):
            if self._rows[int(other)].label != label:
                runner_up = float(other_score)
                break
        lead = (score - runner_up) / score if score > 0 else 0.0
        coverage = self._coverage(row_id, set(_words(question)))
        return max(0.05, min(1.0, 0.35 + 0.35 * coverage + 0.3 * lead))

    def _columns_for(self, row_id: int, years: Sequence[int], question: str) -> tuple[list[dict], float]:
        """Return the row's numeric cells for ``years``, one per year in that order, and a confidence.

        Several columns of one year ("Domestic 2019", "International 2019") are
        distinguished by header words in the question. Without years, all numeric cells are returned.
        """
        row = self._rows[row_id]
        table = self._tables[row.table]
        numeric = [cell for cell in row.cells if cell["number"] is not None and cell["column_name"] != LABEL_COLUMN]
        if not numeric:
            return [], 0.0
        if not years:
            return numeric, NO_YEAR_FACTOR
        question_words = set(_words(question))
        wants_percent = bool(_PERCENT_WORDS.search(question.lower()))

        def fit(cell: dict) -> tuple:
            # Prefer a column of this year alone (not "% Change 2018 to 2019"), of the kind
            # the question mentions (amount or percentage), sharing the most header words.
            column = cell["column_index"]
            return (
                len(table.column_years[column]) > 1,
                cell["percent"] != wants_percent,
                -len(table.column_words[column] & question_words),
                column,
            )

        chosen: list[dict] = []
        confidence = 1.0
        for year in years:
            options = sorted((cell for cell in numeric if year in table.column_years[cell["column_index"]]), key=fit)
            if not options:
                continue
            if len(options) > 1 and fit(options[0])[:3] == fit(options[1])[:3]:
                confidence *= AMBIGUOUS_COLUMN_FACTOR
            chosen.append(options[0])
        if len(chosen) < len(years):
            confidence *= MISSING_YEAR_FACTOR
        return chosen, confidence

    def _latest_two(self, row_id: int) -> tuple[dict, dict] | None:
        """Return the row's cells of its two latest single-year columns as (previous, latest)."""
        table = self._tables[self._rows[row_id].table]
        dated = [
            cell
            for cell in self._rows[row_id].cells
            if cell["number"] is not None and len(table.column_years[cell["column_index"]]) == 1
        ]
        by_year = {min(table.column_years[cell["column_index"]]): cell for cell in reversed(dated)}
        if len(by_year) < 2:
            return None
        latest, previous = sorted(by_year, reverse=True)[:2]
        return by_year[previous], by_year[latest]

    def _two_columns(self, question: str, text: str, years: Sequence[int], match: _Match):
        """Find the two columns of the best row that the sides of "between A and B" name.

        "the difference between the domestic and international discount rates" names the
        columns "Domestic ..." and "International ..." of the "Discount rate" row. Returns
        (row, first cell, second cell, confidence) or None.
        """
        sides = _split_sides(text, ratio=False)
        if sides is None or not len(match.rows):
            return None
        first_words, second_words = (set(_words(side)) for side in sides)
        row_id = int(match.rows[0])
        table = self._tables[self._rows[row_id].table]
        cells = [cell for cell in self._rows[row_id].cells if cell["number"] is not None]
        if years:
            cells = [cell for cell in cells if len(table.column_years[cell["column_index"]] & set(years)) == 1]

        def pick(words: set[str]) -> dict | None:
            ranked = sorted(
                cells,
                key=lambda cell: (-len(table.column_words[cell["column_index"]] & words), cell["column_index"]),
            )
            if ranked and table.column_words[ranked[0]["column_index"]] & words:
                return ranked[0]
            return None

        # Each side is matched by the words the other side does not share.
        first = pick(first_words - second_words)
        second = pick(second_words - first_words)
        if first is None or second is None or first["column_index"] == second["column_index"]:
            return None
        confidence = self._row_confidence(match, 0, question) * INFERRED_FACTOR
        return row_id, first, second, confidence

    def _two_rows(self, question: str, text: str, years: Sequence[int], mask: np.ndarray, *, ratio: bool = False):
        """Find two operand rows of one table, each matching one side of the question.

        "A to B", "A in B", "A over B", "A or B" and "between A and B" give the sides, and
        for a ratio the first side is the numerator. Returns ((row, cell), (row, cell),
        confidence) or None.
        """
        sides = _split_sides(text, ratio=ratio)
        if sides is None:
            return None
        first_text, second_text = sides
        first = self._score(first_text, mask, years=years)
        second = self._score(second_text, mask, years=years)
        if not len(first.rows) or not len(second.rows):
            return None

        # The best pair is the one of the highest summed score within one table.
        best: tuple[float, int, int, int, int] | None = None
        second_by_table: dict[int, list[tuple[int, float, int]]] = {}
        for position, (row_id, score) in enumerate(zip(second.rows[:50], second.scores[:50], strict=True)):
            second_by_table.setdefault(self._rows[int(row_id)].table, []).append((int(row_id), float(score), position))
        for position, (row_id, score) in enumerate(zip(first.rows[:50], first.scores[:50], strict=True)):
            for other, other_score, other_position in second_by_table.get(self._rows[int(row_id)].table, ()):
                if other == int(row_id):
                    continue
                total = float(score) + other_score
                if best is None or total > best[0]:
                    best = (total, int(row_id), other, position, other_position)
        if best is None:
            return None

        _, first_row, second_row, first_position, second_position = best
        first_cells, first_confidence = self._columns_for(first_row, years[:1], question)
        second_cells, second_confidence = self._columns_for(second_row, years[:1], question)
        if not first_cells or not second_cells:
            return None
        row_confidence = math.sqrt(
            self._row_confidence(first, first_position, first_text)
            * self._row_confidence(second, second_position, second_text)
        )
        confidence = row_confidence * min(first_confidence, second_confidence)
        return (first_row, first_cells[0]), (second_row, second_cells[0]), confidence

    # Operations. Each returns candidates, or nothing when it finds no operands.

    def _lookup_value(self, question, text, operation, years, match, mask) -> list[Candidate]:
        candidates = []
        for position in self._best_rows(match):
            row_id = int(match.rows[position])
            cells, column_confidence = self._columns_for(row_id, years, question)
            if not cells:
                continue
            if not years:
                cells = cells[:1]
            answer = ", ".join(cell["raw"] for cell in cells)
            confidence = self._row_confidence(match, position, question) * column_confidence
            if _NOT_A_FIGURE.search(text):
                # "How is the discount rate determined?" names a row but requests no cell.
                confidence *= NOT_A_FIGURE_FACTOR
            derivation = "; ".join(self._describe(row_id, cell) for cell in cells)
            candidates.append(self._candidate(answer, [row_id], derivation, confidence, "number"))
        return candidates

    def _difference(self, question, text, operation, years, match, mask) -> list[Candidate]:
        """Compute a change (new - old) or percentage change across years, columns or rows."""
        percent = operation == "percent_change"
        candidates = []
        if len(years) != 1:
            # One row across two years, or across its latest two years when none is named.
            for position in self._best_rows(match):
                row_id = int(match.rows[position])
                if years:
                    cells, column_confidence = self._columns_for(row_id, years, question)
                    if len(cells) < 2:
                        continue
                    table = self._tables[self._rows[row_id].table]
                    old, new = sorted(cells[:2], key=lambda cell: min(table.column_years[cell["column_index"]]))
                else:
                    pair = self._latest_two(row_id)
                    if pair is None:
                        # Without dated columns, financial tables put the newer value first.
                        cells, _ = self._columns_for(row_id, (), question)
                        if len(cells) < 2:
                            continue
                        pair = (cells[1], cells[0])
                    (old, new), column_confidence = pair, INFERRED_FACTOR
                confidence = self._row_confidence(match, position, question) * column_confidence
                candidate = self._change((row_id, old), (row_id, new), percent, confidence)
                if candidate:
                    candidates.append(candidate)
            if candidates:
                return candidates

        columns = self._two_columns(question, text, years, match)
        if columns is not None:
            row_id, first_cell, second_cell, confidence = columns
            candidate = self._change((row_id, second_cell), (row_id, first_cell), percent, confidence)
            return [candidate] if candidate else []
        rows = self._two_rows(question, text, years, mask)
        if rows is None:
            return []
        first, second, confidence = rows
        candidate = self._change(second, first, percent, confidence * INFERRED_FACTOR)
        return [candidate] if candidate else []

    def _change(self, old: tuple[int, dict], new: tuple[int, dict], percent: bool, confidence: float) -> Candidate | None:
        (old_row, old_cell), (new_row, new_cell) = old, new
        a, b = float(old_cell["number"]), float(new_cell["number"])
        if percent:
            if a == 0:
                return None
            value = (b - a) / abs(a) * 100
            arithmetic = f"({_show(b)} - {_show(a)}) / {_show(abs(a))} * 100 = {format_number(value)}"
        else:
            value = b - a
            arithmetic = f"{_show(b)} - {_show(a)} = {format_number(value)}"
        operands = f"{self._describe(new_row, new_cell)}; {self._describe(old_row, old_cell)}"
        rows = list(dict.fromkeys([new_row, old_row]))
        return self._candidate(format_number(value), rows, f"{arithmetic} ({operands})", confidence, "number")

    def _aggregate(self, question, text, operation, years, match, mask) -> list[Candidate]:
        """Compute a sum or average of one row across years, or of two rows."""
        candidates = []
        for position in self._best_rows(match):
            row_id = int(match.rows[position])
            table = self._tables[self._rows[row_id].table]
            column_years = list(years)
            if operation == "average" and len(years) == 1:
                # The average balance of a year is the mean of its opening and closing
                # values, which financial tables show as that year and the year before.
                column_years = [years[0], years[0] - 1]
            cells, column_confidence = self._columns_for(row_id, column_years, question)
            if not years:
                # Without years, only single-year columns count, not "% change" or notes.
                dated = [cell for cell in cells if len(table.column_years[cell["column_index"]]) == 1]
                cells = dated or cells
            cells = list({cell["column_index"]: cell for cell in cells}.values())
            if len(cells) < 2:
                continue
            confidence = self._row_confidence(match, position, question) * column_confidence
            if column_years != list(years):
                confidence *= INFERRED_FACTOR
            candidates.append(self._combine(operation, [(row_id, cell) for cell in cells], confidence))
        if candidates or len(years) > 1:
            return candidates

        rows = self._two_rows(question, text, years, mask)
        if rows is None:
            return []
        first, second, confidence = rows
        return [self._combine(operation, [first, second], confidence * INFERRED_FACTOR)]

    def _combine(self, operation: str, operands: list[tuple[int, dict]], confidence: float) -> Candidate:
        numbers = pl.Series("number", [float(cell["number"]) for _, cell in operands], dtype=pl.Float64)
        terms = " + ".join(_show(number) for number in numbers)
        if operation == "average":
            value = float(numbers.mean())
            arithmetic = f"({terms}) / {len(numbers)} = {format_number(value)}"
        else:
            value = float(numbers.sum())
            arithmetic = f"{terms} = {format_number(value)}"
        described = "; ".join(self._describe(row_id, cell) for row_id, cell in operands)
        rows = list(dict.fromkeys(row_id for row_id, _ in operands))
        return self._candidate(format_number(value), rows, f"{arithmetic} ({described})", confidence, "number")

    def _ratio(self, question, text, operation, years, match, mask) -> list[Candidate]:
        """Divide one row's value by another's, or one year's value by another year's."""
        as_percent = bool(_PERCENT_WORDS.search(text))
        if len(years) == 2:
            # "the ratio of X in 2019 to 2018" divides one row's first year by its second.
            for position in self._best_rows(match, count=1):
                row_id = int(match.rows[position])
                cells, column_confidence = self._columns_for(row_id, years, question)
                if len(cells) == 2:
                    confidence = self._row_confidence(match, position, question) * column_confidence
                    candidate = self._divide((row_id, cells[0]), (row_id, cells[1]), as_percent, confidence)
                    return [candidate] if candidate else []
        rows = self._two_rows(question, text, years, mask, ratio=True)
        if rows is None:
            return []
        part, whole, confidence = rows
        candidate = self._divide(part, whole, as_percent, confidence)
        return [candidate] if candidate else []

    def _divide(self, part: tuple[int, dict], whole: tuple[int, dict], as_percent: bool, confidence: float) -> Candidate | None:
        (part_row, part_cell), (whole_row, whole_cell) = part, whole
        a, b = float(part_cell["number"]), float(whole_cell["number"])
        if b == 0:
            return None
        value = a / b * 100 if as_percent else a / b
        scale = " * 100" if as_percent else ""
        arithmetic = f"{_show(a)} / {_show(b)}{scale} = {format_number(value)}"
        operands = f"{self._describe(part_row, part_cell)}; {self._describe(whole_row, whole_cell)}"
        rows = list(dict.fromkeys([part_row, whole_row]))
        return self._candidate(format_number(value), rows, f"{arithmetic} ({operands})", confidence, "number")

    def _compare(self, question, text, operation, years, match, mask) -> list[Candidate]:
        """Pick the year with the larger (or smaller) value of a row, or the larger of two rows."""
        smaller = any(word in _SMALLER_WORDS for word in re.findall(r"[a-z]+", text))
        choose = min if smaller else max
        name = "min" if smaller else "max"
        asks_period = bool(_WHICH_PERIOD.search(text))
        threshold = _THRESHOLD.search(text)
        if asks_period and threshold is not None:
            return self._years_meeting(question, threshold, years, match)

        candidates = []
        if asks_period or len(years) >= 2:
            for position in self._best_rows(match):
                row_id = int(match.rows[position])
                table = self._tables[self._rows[row_id].table]
                cells, column_confidence = self._columns_for(row_id, years, question)
                cells = [cell for cell in cells if len(table.column_years[cell["column_index"]]) == 1]
                if len(cells) < 2:
                    continue
                best = choose(cells, key=lambda cell: float(cell["number"]))
                year = min(table.column_years[best["column_index"]])
                shown = ", ".join(f"{min(table.column_years[cell['column_index']])}: {cell['raw']}" for cell in cells)
                confidence = self._row_confidence(match, position, question) * column_confidence
                candidates.append(self._candidate(str(year), [row_id], f"{name}({shown}) -> {year}", confidence, "date"))
            if candidates:
                return candidates

        rows = self._two_rows(question, text, years, mask)
        if rows is None:
            return []
        (first, first_cell), (second, second_cell), confidence = rows
        row_id, _ = choose([(first, first_cell), (second, second_cell)], key=lambda option: float(option[1]["number"]))
        label = self._rows[row_id].label
        shown = f"{self._rows[first].label}: {first_cell['raw']}, {self._rows[second].label}: {second_cell['raw']}"
        return [self._candidate(label, [first, second], f"{name}({shown}) -> {label}", confidence * INFERRED_FACTOR, "entity")]

    def _years_meeting(self, question, threshold, years, match) -> list[Candidate]:
        """Return every year whose value meets the condition of "In which year was X less than N?"."""
        limit = float(threshold.group(2).replace(",", ""))
        below = threshold.group(1) in _BELOW_WORDS
        sign = "<" if below else ">"
        candidates = []
        for position in self._best_rows(match):
            row_id = int(match.rows[position])
            table = self._tables[self._rows[row_id].table]
            cells, column_confidence = self._columns_for(row_id, years, question)
            cells = [cell for cell in cells if len(table.column_years[cell["column_index"]]) == 1]
            meeting = [cell for cell in cells if (float(cell["number"]) < limit if below else float(cell["number"]) > limit)]
            if not meeting:
                continue
            answer = ", ".join(str(min(table.column_years[cell["column_index"]])) for cell in meeting)
            shown = ", ".join(f"{min(table.column_years[cell['column_index']])}: {cell['raw']}" for cell in cells)
            derivation = f"years with value {sign} {_show(limit)} among ({shown}) -> {answer}"
            confidence = self._row_confidence(match, position, question) * column_confidence * INFERRED_FACTOR
            candidates.append(self._candidate(answer, [row_id], derivation, confidence, "date"))
        return candidates

    def _count(self, question, text, operation, years, match, mask) -> list[Candidate]:
        """Count the values of a row above or below a threshold: "How many years did X exceed N?"."""
        threshold = _THRESHOLD.search(text)
        if threshold is None:
            return []
        limit = float(threshold.group(2).replace(",", ""))
        below = threshold.group(1) in _BELOW_WORDS
        sign = "<" if below else ">"
        candidates = []
        for position in self._best_rows(match, count=1):
            row_id = int(match.rows[position])
            table = self._tables[self._rows[row_id].table]
            cells, column_confidence = self._columns_for(row_id, years, question)
            cells = [cell for cell in cells if table.column_years[cell["column_index"]]] or cells
            if not cells:
                continue
            numbers = pl.Series("number", [float(cell["number"]) for cell in cells], dtype=pl.Float64)
            count = int((numbers < limit).sum() if below else (numbers > limit).sum())
            derivation = f"count({', '.join(cell['raw'] for cell in cells)} {sign} {_show(limit)}) = {count}"
            confidence = self._row_confidence(match, position, question) * column_confidence * INFERRED_FACTOR
            candidates.append(self._candidate(str(count), [row_id], derivation, confidence, "number"))
        return candidates

    # Output.

    def _describe(self, row_id: int, cell: dict) -> str:
        return f"{self._rows[row_id].label} [{cell['column_name']}] = {cell['raw']}"

    def _candidate(self, answer: str, rows: list[int], derivation: str, confidence: float, answer_type: str) -> Candidate:
        support = [f"{self._tables[self._rows[row_id].table].table_id}:r{self._rows[row_id].row_index}" for row_id in rows]
        return Candidate(
            text=answer,
            score=round(confidence, 4),
            confidence=round(confidence, 4),
            answer_type=answer_type,
            support=support,
            sentence=" || ".join(self.render_row(row_id) for row_id in rows),
            derivation=derivation,
        )


def _operation(text: str, years: Sequence[int]) -> str:
    """Return the operation that a lower-case question requests, judged from its wording."""
    if _WHICH_PERIOD.search(text) and (_COMPARATIVE.search(text) or _THRESHOLD.search(text)):
        # "In which year was X larger?" picks a year, whatever X measures.
        return "compare"
    if _PERCENT_CHANGE.search(text):
        return "percent_change"
    if _AVERAGE.search(text):
        return "average"
    ratio = _RATIO.search(text)
    difference = _DIFFERENCE.search(text)
    if ratio and not (difference and difference.start() < ratio.start()):
        # A difference cue first makes "change in percentage of sales" a difference.
        return "ratio"
    if _COUNT.search(text) and _THRESHOLD.search(text):
        return "count"
    if _WHICH.search(text) and _COMPARATIVE.search(text):
        return "compare"
    if difference:
        return "difference"
    if _SUM.search(text) and (len(years) >= 2 or _SUM_OF_TWO.search(text)):
        return "sum"
    return "lookup"


def _year_range(text: str, years: list[int]) -> list[int]:
    """Expand "from 2015 to 2019" into every year of the range, for averages, sums and counts."""
    match = _YEAR_RANGE.search(text)
    if match is None:
        return years
    first, last = (int(value) for value in match.groups() if value)
    low, high = min(first, last), max(first, last)
    if high - low > 20:
        return years
    return list(range(low, high + 1))


def _split_sides(text: str, *, ratio: bool) -> tuple[str, str] | None:
    """Split a lower-case question into the texts of its two operands, or return None."""
    if ratio:
        # "What percentage of total X is Y" names the denominator first.
        whole_first = re.search(r"percent(?:age)?\s+of\s+(?:the\s+)?(total\s+.+?)\s+(?:is|was|are|were|does|did)\s+(.+)", text)
        if whole_first:
            return whole_first.group(2), whole_first.group(1)
        cue = _RATIO.search(text)
        rest = text[cue.end() :] if cue else text
        rest = re.sub(r"^[\s,]*(?:\(in percentage\)\s*)?(?:of|in|for)\s+", "", rest)
        for connector in _RATIO_CONNECTORS:
            split = re.search(rf"\s{connector}\s", rest)
            if split:
                return rest[: split.start()], rest[split.end() :]
        return None
    between = re.search(r"\bbetween\s+(.+?)\s+and\s+(.+)", text)
    if between:
        return between.group(1), between.group(2)
    options = re.search(r"(?:,|:)?\s*(?:the\s+)?([^,]+?)\s+or\s+(?:the\s+)?([^,?]+)\??$", text)
    if options:
        return options.group(1), options.group(2)
    both = re.search(r"\bof\s+(.+?)\s+and\s+(.+)", text)
    if both:
        return both.group(1), both.group(2)
    return None
