"""Tests for reading corpus folders and files into Documents."""

from __future__ import annotations

import codecs
import json
import os
from pathlib import Path

import pytest

from indexer.readers import CorpusError, extract_html, normalize_text, read_corpus
from indexer.records import CorpusScan, Document


def write(root: Path, relpath: str, content: str | bytes) -> Path:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


def write_jsonl(root: Path, relpath: str, lines: list[object]) -> Path:
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n"
    return write(root, relpath, text)


def only_document(scan: CorpusScan) -> Document:
    assert len(scan.documents) == 1, scan.skipped
    return scan.documents[0]


def skip_reasons(scan: CorpusScan) -> dict[str, str]:
    return {skipped.source: skipped.reason for skipped in scan.skipped}


# Plain text and markdown


def test_text_file_doc_id(tmp_path: Path) -> None:
    write(tmp_path, "notes/plain.txt", "Alpha beta.\n")
    assert only_document(read_corpus(tmp_path)).doc_id == "notes/plain.txt"


def test_text_file_title_is_stem(tmp_path: Path) -> None:
    write(tmp_path, "plain.txt", "# Not a title in text files\nAlpha.")
    assert only_document(read_corpus(tmp_path)).title == "plain"


def test_text_file_text(tmp_path: Path) -> None:
    write(tmp_path, "plain.txt", "Alpha beta.\nGamma.\n")
    assert only_document(read_corpus(tmp_path)).text == "Alpha beta.\nGamma.\n"


def test_file_metadata_and_source(tmp_path: Path) -> None:
    write(tmp_path, "notes/a.md", "# A\nBody")
    document = only_document(read_corpus(tmp_path))
    assert (document.metadata, document.source) == ({"path": "notes/a.md", "format": "md"}, "notes/a.md")


def test_default_groups_applied(tmp_path: Path) -> None:
    write(tmp_path, "a.txt", "Alpha")
    document = only_document(read_corpus(tmp_path, default_groups=["staff", "hr"]))
    assert document.groups == ["hr", "staff"]


def test_markdown_title_from_heading(tmp_path: Path) -> None:
    write(tmp_path, "a.md", "Intro line\n\n#  The Title  ##\n\nBody")
    assert only_document(read_corpus(tmp_path)).title == "The Title"


def test_markdown_title_skips_fenced_code(tmp_path: Path) -> None:
    write(tmp_path, "a.md", "```\n# comment in code\n```\n# Real\n")
    assert only_document(read_corpus(tmp_path)).title == "Real"


def test_markdown_title_falls_back_to_stem(tmp_path: Path) -> None:
    write(tmp_path, "release-notes.md", "## Second level only\nBody")
    assert only_document(read_corpus(tmp_path)).title == "release-notes"


def test_markdown_table_extracted(tmp_path: Path) -> None:
    write(tmp_path, "notes/a.md", "# Sales\n\n| Region | 2019 |\n|---|---|\n| North | 10 |\n")
    document = only_document(read_corpus(tmp_path))
    assert [(table.table_id, table.rows) for table in document.tables] == [
        ("notes/a.md#t0", [["Region", "2019"], ["North", "10"]])
    ]


def test_markdown_table_text_kept_as_written(tmp_path: Path) -> None:
    text = "# Sales\n\n| Region | 2019 |\n|---|---|\n| North | 10 |\n"
    write(tmp_path, "a.md", text)
    assert only_document(read_corpus(tmp_path)).text == text


def test_text_file_table_extracted(tmp_path: Path) -> None:
    write(tmp_path, "a.txt", "| | 2019 |\n| Revenue | 10 |\n")
    assert len(only_document(read_corpus(tmp_path)).tables) == 1


# HTML


HTML_PAGE = """<!doctype html>
<html><head><title>Quarterly  Report</title>
<style>p { color: red }</style>
<script>var leaked = "SCRIPT-CONTENT";</script></head>
<body>
<!-- COMMENT-CONTENT -->
<noscript>NOSCRIPT-CONTENT</noscript>
<template><p>TEMPLATE-CONTENT</p></template>
<h1>Results</h1>
<p>Revenue grew <b>strongly</b> this year.</p>
<ul><li>First point</li><li>Second point</li></ul>
<table><tr><th></th><th>2019</th></tr><tr><td>Revenue</td><td>1,234</td></tr></table>
<script>document.write("SCRIPT-BODY")</script>
</body></html>
"""


def test_html_title_from_title_element(tmp_path: Path) -> None:
    write(tmp_path, "report.html", HTML_PAGE)
    assert only_document(read_corpus(tmp_path)).title == "Quarterly Report"


def test_html_title_from_h1(tmp_path: Path) -> None:
    write(tmp_path, "report.htm", "<html><body><h1>Main Heading</h1><p>Text</p></body></html>")
    assert only_document(read_corpus(tmp_path)).title == "Main Heading"


@pytest.mark.parametrize(
    "hidden", ["SCRIPT-CONTENT", "SCRIPT-BODY", "NOSCRIPT-CONTENT", "TEMPLATE-CONTENT", "COMMENT-CONTENT", "color"]
)
def test_html_drops_hidden_content(tmp_path: Path, hidden: str) -> None:
    write(tmp_path, "report.html", HTML_PAGE)
    assert hidden not in only_document(read_corpus(tmp_path)).text


def test_html_text_lines(tmp_path: Path) -> None:
    write(tmp_path, "report.html", HTML_PAGE)
    assert only_document(read_corpus(tmp_path)).text.split("\n")[:4] == [
        "Results",
        "Revenue grew strongly this year.",
        "First point",
        "Second point",
    ]


def test_html_table_in_text(tmp_path: Path) -> None:
    write(tmp_path, "report.html", HTML_PAGE)
    assert "| Revenue | 1,234 |" in only_document(read_corpus(tmp_path)).text


def test_html_table_extracted(tmp_path: Path) -> None:
    write(tmp_path, "report.html", HTML_PAGE)
    tables = only_document(read_corpus(tmp_path)).tables
    assert [(table.table_id, table.rows) for table in tables] == [
        ("report.html#t0", [["", "2019"], ["Revenue", "1,234"]])
    ]


def test_html_colspan_padded() -> None:
    _, _, tables = extract_html("<table><tr><th colspan=2>Domestic</th></tr><tr><td>1</td><td>2</td></tr></table>")
    assert tables == [[["Domestic", ""], ["1", "2"]]]


def test_html_nested_table_rows_stay_in_cell() -> None:
    html = "<table><tr><td>outer<table><tr><td>inner</td></tr></table></td><td>2</td></tr></table>"
    _, _, tables = extract_html(html)
    assert tables == [[["outer inner", "2"]]]


def test_html_preformatted_keeps_lines() -> None:
    _, text, _ = extract_html("<body><pre>line one\n  line two</pre></body>")
    assert text == "line one\n  line two"


def test_html_without_text_is_empty(tmp_path: Path) -> None:
    write(tmp_path, "blank.html", "<html><head><script>x()</script></head><body> </body></html>")
    assert skip_reasons(read_corpus(tmp_path)) == {"blank.html": "empty document"}


# CSV


def test_csv_quoted_comma(tmp_path: Path) -> None:
    write(tmp_path, "prices.csv", 'item,price\n"Widget, large","1,234"\nBolt,5\n')
    table = only_document(read_corpus(tmp_path)).tables[0]
    assert table.rows == [["item", "price"], ["Widget, large", "1,234"], ["Bolt", "5"]]


def test_csv_quoted_newline(tmp_path: Path) -> None:
    write(tmp_path, "notes.csv", 'name,note\nAnn,"first line\nsecond line"\n')
    table = only_document(read_corpus(tmp_path)).tables[0]
    assert table.rows[1] == ["Ann", "first line second line"]


def test_csv_semicolon_sniffed(tmp_path: Path) -> None:
    write(tmp_path, "eu.csv", "land;wert\nDeutschland;12,5\nFrankreich;7,1\n")
    table = only_document(read_corpus(tmp_path)).tables[0]
    assert table.rows == [["land", "wert"], ["Deutschland", "12,5"], ["Frankreich", "7,1"]]


def test_csv_text_rendered_as_table(tmp_path: Path) -> None:
    write(tmp_path, "prices.csv", 'item,price\n"Widget, large",3\n')
    assert only_document(read_corpus(tmp_path)).text == "| item | price |\n| Widget, large | 3 |"


def test_csv_table_id_and_title(tmp_path: Path) -> None:
    write(tmp_path, "data/prices.csv", "item,price\nBolt,5\n")
    table = only_document(read_corpus(tmp_path)).tables[0]
    assert (table.table_id, table.title) == ("data/prices.csv#t0", "prices")


def test_csv_crlf_line_endings(tmp_path: Path) -> None:
    write(tmp_path, "win.csv", b"a,b\r\n1,2\r\n")
    assert only_document(read_corpus(tmp_path)).tables[0].rows == [["a", "b"], ["1", "2"]]


# JSON lines: corpus documents


def test_jsonl_document_fields(tmp_path: Path) -> None:
    write_jsonl(
        tmp_path,
        "docs.jsonl",
        [{"id": "d1", "title": "Title One", "text": "Body one.", "groups": ["finance"], "metadata": {"year": 2019}}],
    )
    document = only_document(read_corpus(tmp_path))
    assert (document.doc_id, document.title, document.text, document.groups, document.metadata) == (
        "d1",
        "Title One",
        "Body one.",
        ["finance"],
        {"year": 2019},
    )


def test_jsonl_document_source_has_line(tmp_path: Path) -> None:
    write_jsonl(tmp_path, "docs.jsonl", [{"id": "d1", "text": "One."}, {"id": "d2", "text": "Two."}])
    assert [document.source for document in read_corpus(tmp_path).documents] == ["docs.jsonl:1", "docs.jsonl:2"]


def test_jsonl_pid_as_id(tmp_path: Path) -> None:
    write_jsonl(tmp_path, "corpus.jsonl", [{"pid": "3b0297edf43e3813", "title": "Teutberga", "text": "A queen."}])
    assert only_document(read_corpus(tmp_path)).doc_id == "3b0297edf43e3813"


def test_jsonl_access_groups(tmp_path: Path) -> None:
    write_jsonl(tmp_path, "docs.jsonl", [{"id": "d1", "text": "One.", "access_groups": ["legal"]}])
    assert only_document(read_corpus(tmp_path)).groups == ["legal"]


def test_jsonl_default_groups(tmp_path: Path) -> None:
    write_jsonl(tmp_path, "docs.jsonl", [{"id": "d1", "text": "One."}])
    assert only_document(read_corpus(tmp_path, default_groups=("internal",))).groups == ["internal"]


def test_jsonl_markdown_table_in_text(tmp_path: Path) -> None:
    write_jsonl(tmp_path, "docs.jsonl", [{"id": "d1", "text": "| | 2019 |\n| Revenue | 10 |"}])
    assert [table.table_id for table in only_document(read_corpus(tmp_path)).tables] == ["d1#t0"]


def test_jsonl_blank_and_broken_lines(tmp_path: Path) -> None:
    write_jsonl(
        tmp_path,
        "docs.jsonl",
        [{"id": "d1", "text": "One."}, "", '{"id": "d2", "text": "unterminated', {"id": "d3", "text": "Three."}],
    )
    scan = read_corpus(tmp_path)
    assert [document.doc_id for document in scan.documents] == ["d1", "d3"]


def test_jsonl_broken_line_reason(tmp_path: Path) -> None:
    write_jsonl(tmp_path, "docs.jsonl", [{"id": "d1", "text": "One."}, "", '{"id": "d2", "text": "unterminated'])
    assert skip_reasons(read_corpus(tmp_path))["docs.jsonl:3"].startswith("invalid JSON")


@pytest.mark.parametrize(
    ("record", "expected_reason"),
    [
        ({"id": "d1", "text": 42}, '"text" must be a string'),
        ({"id": "d1", "title": "No text"}, 'neither "text" nor "rows"'),
        ({"title": "No id", "text": "Body"}, 'no "id"'),
        ({"id": True, "text": "Body"}, '"id" must be'),
        ({"id": "d1", "title": 7, "text": "Body"}, '"title" must be a string'),
        ({"id": "d1", "text": "Body", "groups": "finance"}, '"groups" must be a non-empty list'),
        ({"id": "d1", "text": "Body", "groups": []}, '"groups" must be a non-empty list'),
        ({"id": "d1", "text": "Body", "groups": ["ok", ""]}, '"groups" must be a non-empty list'),
        ({"id": "d1", "text": "Body", "access_groups": [3]}, '"access_groups" must be a non-empty list'),
        ({"id": "d1", "text": "Body", "metadata": ["x"]}, '"metadata" must be an object'),
        ({"id": "d1", "text": "   "}, "empty document"),
        ([1, 2], "expected a JSON object"),
    ],
)
def test_jsonl_invalid_record_skipped(tmp_path: Path, record: object, expected_reason: str) -> None:
    write_jsonl(tmp_path, "docs.jsonl", [{"id": "ok", "text": "Fine."}, json.dumps(record)])
    assert expected_reason in skip_reasons(read_corpus(tmp_path))["docs.jsonl:2"]


def test_jsonl_invalid_record_keeps_rest(tmp_path: Path) -> None:
    write_jsonl(tmp_path, "docs.jsonl", [{"id": "bad", "text": 42}, {"id": "ok", "text": "Fine."}])
    assert [document.doc_id for document in read_corpus(tmp_path).documents] == ["ok"]


def test_jsonl_only_blank_lines_is_empty(tmp_path: Path) -> None:
    write(tmp_path, "docs.jsonl", "\n  \n\n")
    assert skip_reasons(read_corpus(tmp_path)) == {"docs.jsonl": "empty document"}


# JSON lines: question files and table records


def question(question_id: str, paragraphs: list[dict]) -> dict:
    return {"id": question_id, "question": "Who?", "answers": ["x"], "paragraphs": paragraphs}


def paragraph(pid: str, title: str, text: str, supporting: bool = False) -> dict:
    return {"pid": pid, "title": title, "text": text, "is_supporting": supporting}


def test_question_paragraphs_deduped(tmp_path: Path) -> None:
    shared = paragraph("p1", "Shared", "Shared paragraph.")
    write_jsonl(
        tmp_path,
        "questions.jsonl",
        [
            question("q1", [shared, paragraph("p2", "Two", "Second.")]),
            question("q2", [paragraph("p3", "Three", "Third."), shared]),
        ],
    )
    assert [document.doc_id for document in read_corpus(tmp_path).documents] == ["p1", "p2", "p3"]


def test_question_dedup_is_silent(tmp_path: Path) -> None:
    shared = paragraph("p1", "Shared", "Shared paragraph.")
    write_jsonl(tmp_path, "questions.jsonl", [question("q1", [shared]), question("q2", [shared])])
    assert read_corpus(tmp_path).skipped == []


def test_question_paragraph_fields(tmp_path: Path) -> None:
    write_jsonl(tmp_path, "questions.jsonl", [question("q1", [paragraph("p1", "Title", "Text.", True)])])
    document = only_document(read_corpus(tmp_path))
    assert (document.doc_id, document.title, document.text, document.metadata) == ("p1", "Title", "Text.", {})


def test_question_conflicting_paragraph_skipped(tmp_path: Path) -> None:
    write_jsonl(
        tmp_path,
        "questions.jsonl",
        [question("q1", [paragraph("p1", "A", "First text.")]), question("q2", [paragraph("p1", "A", "Other.")])],
    )
    reason = skip_reasons(read_corpus(tmp_path))["questions.jsonl:2"]
    assert reason == 'duplicate doc_id "p1": already read from questions.jsonl:1, so this copy was skipped'


def test_question_bad_paragraph_reason(tmp_path: Path) -> None:
    write_jsonl(tmp_path, "questions.jsonl", [question("q1", [paragraph("p1", "A", "Fine."), {"pid": "p2"}])])
    assert skip_reasons(read_corpus(tmp_path))["questions.jsonl:1"] == 'paragraph 1: paragraph has no "text" field'


def test_question_paragraphs_not_list(tmp_path: Path) -> None:
    write_jsonl(tmp_path, "questions.jsonl", [{"id": "q1", "paragraphs": "oops"}])
    assert skip_reasons(read_corpus(tmp_path))["questions.jsonl:1"] == '"paragraphs" must be a list, got str'


def test_table_record_document(tmp_path: Path) -> None:
    rows = [["", "2019", "2018"], ["Revenue", "1,234", "(56)"]]
    write_jsonl(tmp_path, "tables.jsonl", [{"doc_uid": "u1", "pid": "t1", "title": "A table", "rows": rows}])
    document = only_document(read_corpus(tmp_path))
    assert (document.doc_id, document.text) == ("t1", "| | 2019 | 2018 |\n| Revenue | 1,234 | (56) |")


def test_table_record_source_table(tmp_path: Path) -> None:
    rows = [["", "2019"], ["Revenue", "1,234"]]
    write_jsonl(tmp_path, "tables.jsonl", [{"pid": "t1", "title": "A table", "rows": rows}])
    tables = only_document(read_corpus(tmp_path)).tables
    assert [(table.table_id, table.title, table.rows) for table in tables] == [("t1#t0", "A table", rows)]


def test_table_record_bad_cell(tmp_path: Path) -> None:
    write_jsonl(tmp_path, "tables.jsonl", [{"pid": "t1", "rows": [["a", {"x": 1}]]}])
    assert "cells must be strings, numbers or null" in skip_reasons(read_corpus(tmp_path))["tables.jsonl:1"]


def test_duplicate_doc_id_across_files(tmp_path: Path) -> None:
    write_jsonl(tmp_path, "a.jsonl", [{"id": "d1", "text": "First."}])
    write_jsonl(tmp_path, "b.jsonl", [{"id": "d1", "text": "Second."}])
    reason = skip_reasons(read_corpus(tmp_path))["b.jsonl:1"]
    assert reason == 'duplicate doc_id "d1": already read from a.jsonl:1, so this copy was skipped'


def test_duplicate_keeps_first(tmp_path: Path) -> None:
    write_jsonl(tmp_path, "a.jsonl", [{"id": "d1", "text": "First."}])
    write_jsonl(tmp_path, "b.jsonl", [{"id": "d1", "text": "Second."}])
    assert only_document(read_corpus(tmp_path)).text == "First."


# Encodings, binary, empty and unsupported files


def test_utf16_le_bom(tmp_path: Path) -> None:
    write(tmp_path, "u16.txt", codecs.BOM_UTF16_LE + "Grüße aus Köln".encode("utf-16-le"))
    assert only_document(read_corpus(tmp_path)).text == "Grüße aus Köln"


def test_utf16_be_bom(tmp_path: Path) -> None:
    write(tmp_path, "u16.md", codecs.BOM_UTF16_BE + "# Título\nTexto".encode("utf-16-be"))
    assert only_document(read_corpus(tmp_path)).title == "Título"


def test_utf16_jsonl(tmp_path: Path) -> None:
    line = json.dumps({"id": "d1", "text": "naïve"}, ensure_ascii=False) + "\n"
    write(tmp_path, "docs.jsonl", codecs.BOM_UTF16_LE + line.encode("utf-16-le"))
    assert only_document(read_corpus(tmp_path)).text == "naïve"


def test_utf8_bom_removed(tmp_path: Path) -> None:
    write(tmp_path, "bom.md", codecs.BOM_UTF8 + "# Title\nText".encode("utf-8"))
    assert only_document(read_corpus(tmp_path)).title == "Title"


def test_utf8_bom_jsonl(tmp_path: Path) -> None:
    write(tmp_path, "docs.jsonl", codecs.BOM_UTF8 + b'{"id": "d1", "text": "One."}\n')
    assert only_document(read_corpus(tmp_path)).doc_id == "d1"


def test_latin1_decoded(tmp_path: Path) -> None:
    write(tmp_path, "old.txt", "Ærø café".encode("latin-1"))
    assert only_document(read_corpus(tmp_path)).text == "Ærø café"


def test_latin1_warning(tmp_path: Path) -> None:
    write(tmp_path, "old.txt", "Ærø café".encode("latin-1"))
    assert read_corpus(tmp_path).warnings == ["old.txt: not valid UTF-8, decoded as cp1252"]


def test_latin1_fallback_warning(tmp_path: Path) -> None:
    write(tmp_path, "odd.txt", b"caf\xe9 \x81 end")
    assert read_corpus(tmp_path).warnings == ["odd.txt: not valid UTF-8, decoded as latin-1"]


def test_c1_controls_removed_after_latin1(tmp_path: Path) -> None:
    write(tmp_path, "odd.txt", b"caf\xe9 \x81 end")
    assert only_document(read_corpus(tmp_path)).text == "café  end"


def test_jsonl_invalid_utf8_line_warning(tmp_path: Path) -> None:
    write(tmp_path, "docs.jsonl", b'{"id": "d1", "text": "ok"}\n{"id": "d2", "text": "caf\xe9"}\n')
    assert read_corpus(tmp_path).warnings == ["docs.jsonl: line 2 is not valid UTF-8, decoded as cp1252 or latin-1"]


def test_binary_file_with_nul(tmp_path: Path) -> None:
    write(tmp_path, "image.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    assert skip_reasons(read_corpus(tmp_path))["image.txt"].startswith("binary file")


def test_binary_file_with_controls(tmp_path: Path) -> None:
    write(tmp_path, "blob.md", bytes(range(1, 32)) * 20)
    assert skip_reasons(read_corpus(tmp_path))["blob.md"].startswith("binary file")


def test_binary_jsonl(tmp_path: Path) -> None:
    write(tmp_path, "blob.jsonl", b'{"id": 1}\x00\x00\x00')
    assert skip_reasons(read_corpus(tmp_path))["blob.jsonl"].startswith("binary file")


@pytest.mark.parametrize("content", [b"", b"   \n\t\n", b"\xef\xbb\xbf  \r\n"])
def test_empty_file(tmp_path: Path, content: bytes) -> None:
    write(tmp_path, "empty.md", content)
    assert skip_reasons(read_corpus(tmp_path)) == {"empty.md": "empty document"}


def test_empty_csv(tmp_path: Path) -> None:
    write(tmp_path, "empty.csv", "\n\n")
    assert skip_reasons(read_corpus(tmp_path)) == {"empty.csv": "empty document"}


def test_unsupported_extension(tmp_path: Path) -> None:
    write(tmp_path, "slides.xyz", "content")
    assert skip_reasons(read_corpus(tmp_path)) == {
        "slides.xyz": "unsupported file type .xyz (supported: .csv, .htm, .html, .jsonl, .md, .txt)"
    }


def test_no_extension(tmp_path: Path) -> None:
    write(tmp_path, "Makefile", "all:")
    assert skip_reasons(read_corpus(tmp_path))["Makefile"].startswith("unsupported file type (no extension)")


def test_extension_case_insensitive(tmp_path: Path) -> None:
    write(tmp_path, "README.MD", "# Upper\nText")
    assert only_document(read_corpus(tmp_path)).title == "Upper"


def test_document_over_size_limit(tmp_path: Path) -> None:
    write(tmp_path, "big.txt", "x" * 101)
    reason = skip_reasons(read_corpus(tmp_path, max_document_chars=100))["big.txt"]
    assert reason == (
        "document too large: 101 characters is over the limit of 100; "
        "raise the max_document_chars option to index it"
    )


def test_huge_file_skipped_unread(tmp_path: Path) -> None:
    write(tmp_path, "huge.txt", "x" * 1000)
    reason = skip_reasons(read_corpus(tmp_path, max_document_chars=100))["huge.txt"]
    assert "1,000 bytes" in reason


def test_document_at_size_limit_kept(tmp_path: Path) -> None:
    write(tmp_path, "exact.txt", "x" * 100)
    assert len(read_corpus(tmp_path, max_document_chars=100).documents) == 1


def test_jsonl_record_over_size_limit(tmp_path: Path) -> None:
    write_jsonl(tmp_path, "docs.jsonl", [{"id": "d1", "text": "y" * 50}, {"id": "d2", "text": "short"}])
    reason = skip_reasons(read_corpus(tmp_path, max_document_chars=20))["docs.jsonl:1"]
    assert "max_document_chars" in reason


# Text normalisation


def test_crlf_normalised(tmp_path: Path) -> None:
    write(tmp_path, "win.txt", b"one\r\ntwo\rthree")
    assert only_document(read_corpus(tmp_path)).text == "one\ntwo\nthree"


def test_control_characters_removed(tmp_path: Path) -> None:
    write_jsonl(tmp_path, "docs.jsonl", [{"id": "d1", "text": "a\u0000b\u0007c\td\ne\u000bf"}])
    assert only_document(read_corpus(tmp_path)).text == "abc\td\nef"


def test_text_nfc(tmp_path: Path) -> None:
    write(tmp_path, "accent.txt", "Cafe\u0301")
    assert only_document(read_corpus(tmp_path)).text == "Caf\u00e9"


def test_normalize_text_keeps_tabs_and_newlines() -> None:
    assert normalize_text("a\tb\r\nc\x1fd") == "a\tb\ncd"


# Folder walking


def test_hidden_files_and_folders_skipped(tmp_path: Path) -> None:
    write(tmp_path, ".git/config.txt", "secret")
    write(tmp_path, "notes/.draft.md", "# Draft")
    write(tmp_path, "notes/visible.md", "# Visible")
    assert [document.doc_id for document in read_corpus(tmp_path).documents] == ["notes/visible.md"]


def test_hidden_entries_not_reported(tmp_path: Path) -> None:
    write(tmp_path, ".git/objects.bin", b"\x00\x01")
    write(tmp_path, "a.txt", "A")
    assert read_corpus(tmp_path).skipped == []


def test_documents_sorted_by_path(tmp_path: Path) -> None:
    for relpath in ["b.txt", "a/z.txt", "a/b/c.txt", "A.txt", "c.md"]:
        write(tmp_path, relpath, relpath)
    assert [document.doc_id for document in read_corpus(tmp_path).documents] == [
        "A.txt",
        "a/b/c.txt",
        "a/z.txt",
        "b.txt",
        "c.md",
    ]


def test_single_file_path(tmp_path: Path) -> None:
    path = write(tmp_path, "deep/folder/note.md", "# Note\nBody")
    assert only_document(read_corpus(path)).doc_id == "note.md"


def test_path_given_as_string(tmp_path: Path) -> None:
    write(tmp_path, "a.txt", "A")
    assert len(read_corpus(str(tmp_path)).documents) == 1


def test_broken_symlink_reports_os_error(tmp_path: Path) -> None:
    (tmp_path / "gone.txt").symlink_to(tmp_path / "missing.txt")
    assert skip_reasons(read_corpus(tmp_path)) == {"gone.txt": "cannot read file: No such file or directory"}


def test_symlinked_folder_not_followed(tmp_path: Path) -> None:
    write(tmp_path, "real/a.txt", "A")
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    assert skip_reasons(read_corpus(tmp_path)) == {"link": "symbolic link to a folder, not followed"}


def test_symlink_out_of_corpus_skipped(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    write(corpus, "inside.txt", "Inside")
    write(tmp_path, "secret.txt", "Secret")
    (corpus / "link.txt").symlink_to(tmp_path / "secret.txt")
    (corpus / "alias.txt").symlink_to(corpus / "inside.txt")

    scan = read_corpus(corpus)

    assert skip_reasons(scan) == {"link.txt": "symbolic link to a file outside the corpus folder, not followed"}
    assert sorted(document.doc_id for document in scan.documents) == ["alias.txt", "inside.txt"]


def test_fifo_skipped(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.txt")
    assert skip_reasons(read_corpus(tmp_path)) == {"pipe.txt": "not a regular file"}


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read files without read permission")
def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path, "locked.txt", "secret")
    path.chmod(0)
    assert skip_reasons(read_corpus(tmp_path)) == {"locked.txt": "cannot read file: Permission denied"}


def test_missing_path_raises(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="corpus path not found"):
        read_corpus(tmp_path / "nowhere")


@pytest.mark.parametrize("groups", [(), ("",), "public", (1,)])
def test_invalid_default_groups_raise(tmp_path: Path, groups: object) -> None:
    with pytest.raises(ValueError, match="default_groups"):
        read_corpus(tmp_path, default_groups=groups)


def test_empty_folder(tmp_path: Path) -> None:
    assert read_corpus(tmp_path) == CorpusScan(documents=[])


# Content hashes


def test_content_hash_stable_across_reads(tmp_path: Path) -> None:
    write(tmp_path, "a.md", "# A\n| x | y |\n| 1 | 2 |\n")
    write_jsonl(tmp_path, "docs.jsonl", [{"id": "d1", "text": "One.", "metadata": {"k": [1, 2]}}])
    first = [document.content_hash for document in read_corpus(tmp_path).documents]
    second = [document.content_hash for document in read_corpus(tmp_path).documents]
    assert first == second


def test_content_hash_changes_with_metadata(tmp_path: Path) -> None:
    write_jsonl(tmp_path, "docs.jsonl", [{"id": "d1", "text": "One.", "metadata": {"year": 2019}}])
    before = only_document(read_corpus(tmp_path)).content_hash
    write_jsonl(tmp_path, "docs.jsonl", [{"id": "d1", "text": "One.", "metadata": {"year": 2020}}])
    assert only_document(read_corpus(tmp_path)).content_hash != before


def test_content_hash_changes_with_groups(tmp_path: Path) -> None:
    write_jsonl(tmp_path, "docs.jsonl", [{"id": "d1", "text": "One.", "groups": ["a"]}])
    before = only_document(read_corpus(tmp_path)).content_hash
    write_jsonl(tmp_path, "docs.jsonl", [{"id": "d1", "text": "One.", "groups": ["a", "b"]}])
    assert only_document(read_corpus(tmp_path)).content_hash != before


def test_content_hash_changes_with_default_groups(tmp_path: Path) -> None:
    write(tmp_path, "a.txt", "A")
    before = only_document(read_corpus(tmp_path)).content_hash
    assert only_document(read_corpus(tmp_path, default_groups=["staff"])).content_hash != before


def test_content_hash_changes_with_file_path(tmp_path: Path) -> None:
    write(tmp_path, "a.txt", "Same text")
    write(tmp_path, "b.txt", "Same text")
    first, second = read_corpus(tmp_path).documents
    assert first.content_hash != second.content_hash


# Shared QA data


def test_hotpotqa_distinct_paragraphs(shared_data: Path) -> None:
    scan = read_corpus(shared_data / "hotpotqa-dev.jsonl")
    assert len(scan.documents) == 4858


def test_hotpotqa_nothing_skipped(shared_data: Path) -> None:
    scan = read_corpus(shared_data / "hotpotqa-dev.jsonl")
    assert scan.skipped == []


def test_tatqa_tables_file(shared_data: Path) -> None:
    scan = read_corpus(shared_data / "tatqa-tables.jsonl")
    assert sum(1 for document in scan.documents if len(document.tables) == 1) == 141


def test_tatqa_question_tables(shared_data: Path) -> None:
    questions = read_corpus(shared_data / "tatqa-dev.jsonl").documents
    tables = read_corpus(shared_data / "tatqa-tables.jsonl").documents
    from_questions = {table.table_id: table.rows for document in questions for table in document.tables}
    from_table_file = {table.table_id: table.rows for document in tables for table in document.tables}
    assert from_questions == from_table_file


def test_2wiki_corpus(shared_data: Path) -> None:
    scan = read_corpus(shared_data / "2wiki-corpus.jsonl")
    assert len(scan.documents) == 6119
