"""Tests for number parsing, typed tables, the long cell format and markdown pipe tables."""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl
import pytest

from indexer.records import SourceTable
from indexer.tables import (
    ParsedNumber,
    count_header_rows,
    find_markdown_tables,
    parse_number,
    parse_numbers,
    render_table,
    table_cell_rows,
    typed_table,
)

# A TAT-QA dev table (doc_uid 52164b70-6973-4844-af6a-76e8f1298d64, CC BY 4.0) with three
# header rows, spanning "Domestic" and "International" headers, and a "- - %" null cell.
PENSION_ROWS = [
    ["", "Domestic", "", "International", ""],
    ["", "September 30,", "", "September 30,", ""],
    ["", "2019", "2018", "2019", "2018"],
    ["Discount rate", "4.00%", "3.75%", "1.90%", "2.80%"],
    ["Expected return on plan assets", "", "", "3.40%", "3.70%"],
    ["Rate of compensation increase", "", "", "- - %", "- - %"],
]
PENSION_COLUMNS = [
    "label",
    "Domestic September 30, 2019",
    "Domestic September 30, 2018",
    "International September 30, 2019",
    "International September 30, 2018",
]


@pytest.fixture(scope="module")
def tatqa_tables(shared_data: Path) -> list[dict]:
    with (shared_data / "tatqa-tables.jsonl").open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


@pytest.fixture(scope="module")
def pension_table() -> SourceTable:
    return SourceTable(table_id="pension#t0", title="Actuarial assumptions", rows=PENSION_ROWS)


# parse_number


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1,234", ParsedNumber(1234.0, False, None)),
        ("$1,234.5", ParsedNumber(1234.5, False, "$")),
        ("€ 12", ParsedNumber(12.0, False, "€")),
        ("12 €", ParsedNumber(12.0, False, "€")),
        ("US$ 5", ParsedNumber(5.0, False, "US$")),
        ("(1,234)", ParsedNumber(-1234.0, False, None)),
        ("-5", ParsedNumber(-5.0, False, None)),
        ("\u22125", ParsedNumber(-5.0, False, None)),
        ("+3", ParsedNumber(3.0, False, None)),
        ("12.5%", ParsedNumber(12.5, True, None)),
        ("(3.2)%", ParsedNumber(-3.2, True, None)),
        ("(13%)", ParsedNumber(-13.0, True, None)),
        ("$ (12)", ParsedNumber(-12.0, False, "$")),
        ("$(498.7)", ParsedNumber(-498.7, False, "$")),
        ("-$7", ParsedNumber(-7.0, False, "$")),
        ("  7  ", ParsedNumber(7.0, False, None)),
        ("\u00a07\u00a0", ParsedNumber(7.0, False, None)),
        (".5", ParsedNumber(0.5, False, None)),
        ("2019", ParsedNumber(2019.0, False, None)),
    ],
)
def test_parse_number_accepts(raw: str, expected: ParsedNumber) -> None:
    assert parse_number(raw) == expected


@pytest.mark.parametrize(
    "raw",
    ["", "   ", "-", "\u2014", "\u2013", "- - %", "$\u2014", "n/a", "N/A", "abc", "1.2 million",
     "63 bps", "(12", "12)", "1,2345", "2 0 1 8", "3-5", "2019 €m"],
)
def test_parse_number_rejects(raw: str) -> None:
    assert parse_number(raw) is None


def test_parse_numbers_matches_reference() -> None:
    cells = ["1,234", "$1,234.5", "(3.2)%", "$ (12)", "-", "n/a", "abc", "", "\u22125", "12 €", "(12"]
    parsed = parse_numbers(pl.Series(cells)).to_dicts()
    expected = []
    for cell in cells:
        number = parse_number(cell)
        if number is None:
            expected.append({"value": None, "percent": False, "currency": None})
        else:
            expected.append({"value": number.value, "percent": number.percent, "currency": number.currency})
    assert parsed == expected


def test_parse_numbers_null_cell() -> None:
    parsed = parse_numbers(pl.Series([None], dtype=pl.Utf8)).row(0)
    assert parsed == (None, False, None)


def test_parse_numbers_tatqa_cells(tatqa_tables: list[dict]) -> None:
    cells = [cell for record in tatqa_tables for row in record["rows"] for cell in row]
    parsed = parse_numbers(pl.Series(cells))
    expected = [None if (number := parse_number(cell)) is None else number.value for cell in cells]
    assert parsed["value"].to_list() == expected


# typed_table


def test_typed_table_header_rows(pension_table: SourceTable) -> None:
    assert typed_table(pension_table).header_rows == 3


def test_typed_table_spanning_column_names(pension_table: SourceTable) -> None:
    assert typed_table(pension_table).columns == PENSION_COLUMNS


def test_typed_table_dtypes(pension_table: SourceTable) -> None:
    assert typed_table(pension_table).dtypes == [pl.Utf8, pl.Float64, pl.Float64, pl.Float64, pl.Float64]


def test_typed_table_frame_columns(pension_table: SourceTable) -> None:
    assert typed_table(pension_table).frame.columns == PENSION_COLUMNS


def test_typed_table_percent_kept_as_shown(pension_table: SourceTable) -> None:
    frame = typed_table(pension_table).frame
    assert frame["Domestic September 30, 2019"].to_list() == [4.0, None, None]


def test_typed_table_null_percent_marker(pension_table: SourceTable) -> None:
    frame = typed_table(pension_table).frame
    assert frame["International September 30, 2018"].to_list() == [2.8, 3.7, None]


def test_typed_table_row_labels(pension_table: SourceTable) -> None:
    labels = typed_table(pension_table).frame["label"].to_list()
    assert labels == ["Discount rate", "Expected return on plan assets", "Rate of compensation increase"]


def test_typed_table_keeps_id_and_title(pension_table: SourceTable) -> None:
    typed = typed_table(pension_table)
    assert (typed.table_id, typed.title) == ("pension#t0", "Actuarial assumptions")


def test_typed_table_title_row_and_currency_headers() -> None:
    rows = [
        ["Income statement expense", "", "", ""],
        ["", "2019 €m", "2018 €m", "2017 €m"],
        ["Defined contribution schemes", "166", "178", "192"],
        ["Defined benefit schemes", "57", "44", "20"],
    ]
    typed = typed_table(SourceTable("t", "", rows))
    assert typed.columns == ["label", "2019 €m", "2018 €m", "2017 €m"]


def test_typed_table_section_label_stays_in_body() -> None:
    rows = [
        ["", "2019", "2018"],
        ["Deferred tax assets:", "", ""],
        ["Accrued liabilities", "$ 245", "$ 255"],
    ]
    assert typed_table(SourceTable("t", "", rows)).header_rows == 1


def test_typed_table_negative_parentheses() -> None:
    rows = [["", "2019"], ["Valuation allowance", "(19,911)"], ["Net", "795"]]
    frame = typed_table(SourceTable("t", "", rows)).frame
    assert frame["2019"].to_list() == [-19911.0, 795.0]


def test_typed_table_dashes_count_empty() -> None:
    rows = [["", "2019"], ["a", "\u2014"], ["b", "\u2014"], ["c", "\u2014"], ["d", "12"]]
    assert typed_table(SourceTable("t", "", rows)).dtypes[1] == pl.Float64


def test_typed_table_text_column() -> None:
    rows = [["Name", "Role"], ["Ann", "Chief Executive Officer"], ["Bob", "Controller"]]
    assert typed_table(SourceTable("t", "", rows)).dtypes == [pl.Utf8, pl.Utf8]


def test_typed_table_all_text_rows_take_one_header() -> None:
    rows = [["Name", "Role"], ["Ann", "Chief Executive Officer"], ["Bob", "Controller"]]
    assert typed_table(SourceTable("t", "", rows)).header_rows == 1


def test_typed_table_headerless_numbers() -> None:
    rows = [["1", "2.5"], ["3", "4.5"]]
    typed = typed_table(SourceTable("t", "", rows))
    assert typed.columns == ["column_0", "column_1"]


def test_typed_table_ragged_rows_padded() -> None:
    rows = [["", "2019", "2018"], ["Revenue", "10"], ["Cost", "4", "3"]]
    frame = typed_table(SourceTable("t", "", rows)).frame
    assert frame["2018"].to_list() == [None, 3.0]


def test_typed_table_duplicate_names_made_unique() -> None:
    rows = [["", "Amount", "Amount"], ["Revenue", "10", "11"]]
    assert typed_table(SourceTable("t", "", rows)).columns == ["label", "Amount", "Amount (2)"]


def test_typed_table_empty_table() -> None:
    typed = typed_table(SourceTable("t", "", []))
    assert typed.frame.height == 0


def test_typed_table_empty_table_has_no_columns() -> None:
    assert typed_table(SourceTable("t", "", [])).columns == []


def test_count_header_rows_single_column() -> None:
    assert count_header_rows([["Name"], ["Ann"], ["Bob"]]) == 1


def test_typed_table_all_tatqa_tables(tatqa_tables: list[dict]) -> None:
    without_numbers = []
    for record in tatqa_tables:
        typed = typed_table(SourceTable(f"{record['pid']}#t0", record["title"], record["rows"]))
        if pl.Float64 not in typed.dtypes:
            without_numbers.append(record["pid"])
    assert without_numbers == []


def test_typed_table_tatqa_header_counts(tatqa_tables: list[dict]) -> None:
    counts = {
        typed_table(SourceTable("t", "", record["rows"])).header_rows for record in tatqa_tables
    }
    assert counts <= {1, 2, 3, 4}


def test_typed_table_tatqa_units_row() -> None:
    rows = [
        ["", "December 31", ""],
        ["", "2019", "2018"],
        ["Operating loss carryforward", "73,260", "57,768"],
        ["Valuation allowance", "(19,911)", "(15,916)"],
    ]
    assert typed_table(SourceTable("t", "", rows)).columns == ["label", "December 31 2019", "December 31 2018"]


# table_cell_rows


def test_table_cell_rows_count(pension_table: SourceTable) -> None:
    cells = table_cell_rows("pension", typed_table(pension_table), pension_table)
    assert len(cells) == 8


def test_table_cell_rows_first_cell(pension_table: SourceTable) -> None:
    cells = table_cell_rows("pension", typed_table(pension_table), pension_table)
    assert cells[0] == {
        "table_id": "pension#t0",
        "doc_id": "pension",
        "row_index": 0,
        "row_label": "Discount rate",
        "column_index": 1,
        "column_name": "Domestic September 30, 2019",
        "raw": "4.00%",
        "number": 4.0,
        "percent": True,
        "currency": None,
    }


def test_table_cell_rows_keep_unparsed_cells(pension_table: SourceTable) -> None:
    cells = table_cell_rows("pension", typed_table(pension_table), pension_table)
    assert (cells[-1]["raw"], cells[-1]["number"]) == ("- - %", None)


def test_table_cell_rows_skip_label_column(pension_table: SourceTable) -> None:
    cells = table_cell_rows("pension", typed_table(pension_table), pension_table)
    assert {cell["column_index"] for cell in cells} == {1, 2, 3, 4}


def test_table_cell_rows_currency() -> None:
    raw = SourceTable("t", "", [["", "2019"], ["Customer relationships", "$(498.7)"]])
    cells = table_cell_rows("d", typed_table(raw), raw)
    assert (cells[0]["number"], cells[0]["currency"]) == (-498.7, "$")


def test_table_cell_rows_empty_table() -> None:
    raw = SourceTable("t", "", [])
    assert table_cell_rows("d", typed_table(raw), raw) == []


def test_table_cell_rows_rejects_other_table(pension_table: SourceTable) -> None:
    other = SourceTable("other#t0", "", [["a", "1"]])
    with pytest.raises(ValueError, match="does not match"):
        table_cell_rows("pension", typed_table(pension_table), other)


# find_markdown_tables and render_table


def test_find_tatqa_rendered_table() -> None:
    text = (
        "| | Domestic | | International | |\n"
        "| | 2019 | 2018 | 2019 | 2018 |\n"
        "| Discount rate | 4.00% | 3.75% | 1.90% | 2.80% |"
    )
    assert find_markdown_tables(text) == [
        [
            ["", "Domestic", "", "International", ""],
            ["", "2019", "2018", "2019", "2018"],
            ["Discount rate", "4.00%", "3.75%", "1.90%", "2.80%"],
        ]
    ]


def test_find_table_with_separator() -> None:
    text = "Intro line.\n\n| a | b |\n|---|:--:|\n| 1 | 2 |\n\nAfter."
    assert find_markdown_tables(text) == [[["a", "b"], ["1", "2"]]]


def test_find_table_without_outer_pipes() -> None:
    text = "a | b\n--- | ---\n1 | 2"
    assert find_markdown_tables(text) == [[["a", "b"], ["1", "2"]]]


def test_find_header_only_table() -> None:
    assert find_markdown_tables("| a | b |\n|---|---|") == [[["a", "b"]]]


def test_find_single_pipe_line_is_not_table() -> None:
    assert find_markdown_tables("before\n| just one line |\nafter") == []


def test_find_text_with_pipe_is_not_table() -> None:
    assert find_markdown_tables("cats | dogs\nbirds | fish") == []


def test_find_ignores_fenced_code() -> None:
    text = "```\n| a | b |\n| 1 | 2 |\n```"
    assert find_markdown_tables(text) == []


def test_find_escaped_pipe() -> None:
    assert find_markdown_tables("| a \\| b | c |\n| 1 | 2 |") == [[["a | b", "c"], ["1", "2"]]]


def test_find_dash_row_stays_body_row() -> None:
    text = "| Item | 2019 |\n| Revenue | 10 |\n| - | - |"
    assert find_markdown_tables(text)[0][-1] == ["-", "-"]


def test_find_two_tables() -> None:
    text = "| a | b |\n| 1 | 2 |\nText between.\n| c | d |\n| 3 | 4 |"
    assert len(find_markdown_tables(text)) == 2


def test_render_table_empty_cells() -> None:
    assert render_table([["", "Domestic", ""], ["Rate", "4%", "5%"]]) == "| | Domestic | |\n| Rate | 4% | 5% |"


def test_render_table_pads_ragged_rows() -> None:
    assert render_table([["a", "b"], ["c"]]) == "| a | b |\n| c | |"


def test_render_table_round_trip() -> None:
    rows = [["", "x | y", "multi\nline"], ["label", "1", "(2)"], ["", "", ""]]
    expected = [["", "x | y", "multi line"], ["label", "1", "(2)"], ["", "", ""]]
    assert find_markdown_tables(render_table(rows)) == [expected]


def test_find_tatqa_paragraph_tables(shared_data: Path, tatqa_tables: list[dict]) -> None:
    rows_by_pid = {
        record["pid"]: [[" ".join(cell.split()) for cell in row] for row in record["rows"]]
        for record in tatqa_tables
    }
    found: dict[str, list[list[str]]] = {}
    with (shared_data / "tatqa-dev.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            for paragraph in json.loads(line)["paragraphs"]:
                for rows in find_markdown_tables(paragraph["text"]):
                    found[paragraph["pid"]] = rows
    assert found == rows_by_pid


def test_render_table_tatqa_paragraphs(shared_data: Path, tatqa_tables: list[dict]) -> None:
    texts: dict[str, str] = {}
    with (shared_data / "tatqa-dev.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            for paragraph in json.loads(line)["paragraphs"]:
                texts[paragraph["pid"]] = paragraph["text"]
    mismatched = [record["pid"] for record in tatqa_tables if render_table(record["rows"]) != texts[record["pid"]]]
    assert mismatched == []
