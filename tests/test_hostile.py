"""Hostile inputs: odd encodings, broken records, tricky names, tables and questions.

One small corpus is built and indexed once for the module. Every input must end up
indexed, skipped with a named reason in the run record, or rejected with a clear error.
"""

from __future__ import annotations

import codecs
import json
from pathlib import Path

import polars as pl
import pytest

from indexer.config import IndexConfig
from indexer.normalize import entity_key
from indexer.store import Snapshot
from solver.search import MAX_QUERY_CHARS, QueryError

MAX_DOCUMENT_CHARS = 3_000

JSONL_RECORDS = [
    {"id": "good-first", "title": "Orla Fenwick", "text": "Orla Fenwick ran the ferry service across Loch Varran."},
    "",
    '{"id": "broken", "text": "this line stops',
    {"id": "good-second", "title": "Loch Varran", "text": "Loch Varran is a freshwater loch in the Highlands."},
    {
        "id": "near-1",
        "title": "Harwick Mill",
        "text": "Harwick Mill ground flour for the village of Denholme.",
        "metadata": {"edition": 1},
    },
    {
        "id": "near-2",
        "title": "Harwick Mill",
        "text": "Harwick Mill ground flour for the village of Denholme.",
        "metadata": {"edition": 2},
    },
    {"id": "name-plain", "title": "Chateau Margaux", "text": "Chateau Margaux is a wine estate."},
    {"id": "name-case", "title": "CHATEAU MARGAUX", "text": "CHATEAU MARGAUX sells wine."},
    {"id": "name-accent", "title": "Château Margaux", "text": "Château Margaux has a vineyard."},
    {"id": "name-punct", "title": "Chateau-Margaux!", "text": "Chateau-Margaux! was listed in 1855."},
    {"id": "name-zwsp", "title": "Chateau Mar\u200bgaux", "text": "Chateau Mar\u200bgaux exports wine."},
    {"id": "cjk", "title": "東京タワー", "text": "東京タワーは東京都港区にある電波塔です。"},
    {"id": "emoji", "title": "🦊🌋", "text": "🦊🌋 is the badge of the Ember Fox hiking club."},
    {"id": "good-first", "title": "Orla Fenwick", "text": "A second record that reuses an id."},
    "[1, 2, 3]",
]

MERGED_HEADER_TABLE = (
    "# Discount rates\n\n"
    "| | Domestic | | International | |\n"
    "| | 2019 | 2018 | 2019 | 2018 |\n"
    "| Discount rate | 4.00% | 3.75% | 1.90% | 2.80% |\n"
)

CURRENCY_CSV = 'Item,2019,2018\nRevenue,"$1,234.50","$1,100.00"\nImpairment,(45),(12)\n'

HTML_WITH_SCRIPT = (
    "<html><head><title>Kestrel Bay Harbor</title>"
    "<script>var payload = 'zzscriptpayload';</script></head>"
    "<body><p>The harbor at Kestrel Bay reopened in spring.</p></body></html>"
)


def _jsonl_text() -> str:
    lines = [item if isinstance(item, str) else json.dumps(item, ensure_ascii=False) for item in JSONL_RECORDS]
    return "\n".join(lines) + "\n"


def _build_corpus(folder: Path) -> None:
    folder.mkdir(parents=True)
    files: dict[str, bytes] = {
        "utf16.txt": "Quentin Abernathy founded the Velmora Lighthouse Society.".encode("utf-16"),
        "utf8bom.txt": codecs.BOM_UTF8 + "Ingrid Halvorsen painted the Brekke fjord.".encode("utf-8"),
        "latin1.txt": "Señora Ibáñez opened a café in Zaragoza.".encode("latin-1"),
        "mixed.txt": b"Torvald Brennick built a mill near Ostby.\x81\x8d then bad bytes.",
        "empty.txt": b"",
        "blank.md": b"   \n\t\n  \n",
        "long.txt": ("Filler sentence about nothing. " * 200).encode("utf-8"),
        "notes.xyz": b"Unknown format.",
        "utf16nobom.txt": "Text in UTF-16 without a byte-order mark.".encode("utf-16-le"),
        "dup_a.txt": b"Brindle Point lighthouse was built in 1872.",
        "dup_b.txt": b"Brindle Point lighthouse was built in 1872.",
        "records.jsonl": _jsonl_text().encode("utf-8"),
        "rates.md": MERGED_HEADER_TABLE.encode("utf-8"),
        "money.csv": CURRENCY_CSV.encode("utf-8"),
        "harbor.html": HTML_WITH_SCRIPT.encode("utf-8"),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)


@pytest.fixture(scope="module")
def hostile_index(tmp_path_factory, ray_local):
    from jobs.index_job import run_index

    root = tmp_path_factory.mktemp("hostile")
    corpus = root / "corpus"
    _build_corpus(corpus)
    db = root / "index"
    result = run_index(corpus, str(db), config=IndexConfig(max_document_chars=MAX_DOCUMENT_CHARS))
    return db, result


@pytest.fixture(scope="module")
def tables(hostile_index) -> dict[str, pl.DataFrame]:
    db, _ = hostile_index
    snapshot = Snapshot.open(str(db))
    names = ["documents", "chunks", "entities", "mentions", "table_cells", "source_tables", "index_runs"]
    return {name: pl.from_arrow(snapshot.arrow(name)) for name in names}


@pytest.fixture(scope="module")
def ponder(hostile_index):
    from solver.service import Ponder

    db, _ = hostile_index
    instance = Ponder(str(db))
    yield instance
    instance.close()


def _chunk_text(tables: dict[str, pl.DataFrame], doc_id: str) -> str:
    return " ".join(tables["chunks"].filter(pl.col("doc_id") == doc_id)["text"].to_list())


# -- files and records that must be indexed --------------------------------------------


@pytest.mark.parametrize(
    ("doc_id", "expected_text"),
    [
        ("utf16.txt", "Velmora Lighthouse Society"),
        ("utf8bom.txt", "Ingrid Halvorsen painted"),
        ("latin1.txt", "Señora Ibáñez opened a café"),
        ("mixed.txt", "Torvald Brennick built a mill"),
        ("good-first", "Orla Fenwick ran the ferry"),
        ("good-second", "Loch Varran is a freshwater loch"),
        ("dup_a.txt", "Brindle Point lighthouse"),
        ("dup_b.txt", "Brindle Point lighthouse"),
        ("near-1", "Harwick Mill ground flour"),
        ("near-2", "Harwick Mill ground flour"),
        ("cjk", "東京タワー"),
        ("emoji", "🦊🌋"),
        ("harbor.html", "Kestrel Bay reopened"),
    ],
)
def test_input_indexed_with_text(tables, doc_id, expected_text):
    assert doc_id in tables["documents"]["doc_id"].to_list()
    assert expected_text in _chunk_text(tables, doc_id)


def test_utf8_bom_not_in_text(tables):
    assert "\ufeff" not in _chunk_text(tables, "utf8bom.txt")


def test_utf16_text_has_no_nul(tables):
    assert "\x00" not in _chunk_text(tables, "utf16.txt")


@pytest.mark.parametrize("source", ["latin1.txt", "mixed.txt"])
def test_fallback_decoding_warned(hostile_index, source):
    _, result = hostile_index
    assert any(warning.startswith(source) for warning in result.scan.warnings)


def test_near_duplicates_keep_metadata(tables):
    documents = tables["documents"].filter(pl.col("doc_id").is_in(["near-1", "near-2"])).sort("doc_id")
    editions = [json.loads(metadata).get("edition") for metadata in documents["metadata"].to_list()]
    assert editions == [1, 2]


# -- inputs that must be skipped with a reason -----------------------------------------


@pytest.mark.parametrize(
    ("source", "reason_word"),
    [
        ("empty.txt", "empty"),
        ("blank.md", "empty"),
        ("records.jsonl:3", "invalid JSON"),
        ("long.txt", "max_document_chars"),
        ("notes.xyz", "xyz"),
        ("utf16nobom.txt", "binary"),
        ("records.jsonl:14", "duplicate doc_id"),
        ("records.jsonl:15", "JSON object"),
    ],
)
def test_input_skipped_with_reason(hostile_index, tables, source, reason_word):
    _, result = hostile_index
    reasons = {item.source: item.reason for item in result.scan.skipped}
    stored = {item["source"]: item["reason"] for item in json.loads(tables["index_runs"]["skipped_json"][-1])}
    assert source in reasons
    assert reason_word in reasons[source]
    assert stored.get(source) == reasons[source]


def test_jsonl_blank_line_not_skipped(hostile_index):
    _, result = hostile_index
    assert "records.jsonl:2" not in {item.source for item in result.scan.skipped}


def test_every_input_accounted_for(hostile_index, tables):
    _, result = hostile_index
    documents = set(tables["documents"]["doc_id"].to_list())
    skipped = {item.source for item in result.scan.skipped}
    expected_files = {
        "utf16.txt", "utf8bom.txt", "latin1.txt", "mixed.txt", "empty.txt", "blank.md", "long.txt",
        "notes.xyz", "utf16nobom.txt", "dup_a.txt", "dup_b.txt", "rates.md", "money.csv", "harbor.html",
    }
    missing = {name for name in expected_files if name not in documents and name not in skipped}
    assert missing == set()


# -- entity names ----------------------------------------------------------------------


@pytest.mark.parametrize("doc_id", ["name-plain", "name-case", "name-accent", "name-punct", "name-zwsp"])
def test_name_variant_one_entity(tables, doc_id):
    entities = tables["entities"].filter(pl.col("key") == "chateau margaux")
    mentions = tables["mentions"].filter(pl.col("doc_id") == doc_id)
    assert entities.height == 1
    assert entities["entity_id"][0] in mentions["entity_id"].to_list()


@pytest.mark.parametrize("name", ["東京タワー", "🦊🌋"])
def test_unusual_script_entity_indexed(tables, name):
    assert entity_key(name) in tables["entities"]["key"].to_list()


@pytest.mark.parametrize(("query", "doc_id"), [("東京タワー", "cjk"), ("🦊🌋 Ember Fox hiking club", "emoji")])
def test_unusual_script_searchable(ponder, query, doc_id):
    hits = ponder.toolbox.chunks.search(query, groups=("public",), limit=3)
    assert doc_id in [hit.doc_id for hit in hits]


def test_html_script_text_dropped(tables):
    assert not any("zzscriptpayload" in text for text in tables["chunks"]["text"].to_list())


# -- tables ----------------------------------------------------------------------------


def _cell(tables, doc_id: str, row_label: str, column_name: str) -> dict:
    cells = tables["table_cells"].filter(
        (pl.col("doc_id") == doc_id) & (pl.col("row_label") == row_label) & (pl.col("column_name") == column_name)
    )
    assert cells.height == 1, f"{doc_id}: no single cell at {row_label!r} / {column_name!r}"
    return cells.row(0, named=True)


def test_merged_header_columns_joined(tables):
    columns = tables["source_tables"].filter(pl.col("doc_id") == "rates.md")["columns"][0].to_list()
    assert "Domestic 2019" in columns
    assert "International 2018" in columns


@pytest.mark.parametrize(
    ("column", "number"), [("Domestic 2019", 4.0), ("Domestic 2018", 3.75), ("International 2019", 1.9)]
)
def test_merged_header_percent_typed(tables, column, number):
    cell = _cell(tables, "rates.md", "Discount rate", column)
    assert cell["number"] == pytest.approx(number)
    assert cell["percent"] is True


@pytest.mark.parametrize(
    ("row", "column", "number", "currency"),
    [("Revenue", "2019", 1234.5, "$"), ("Revenue", "2018", 1100.0, "$"), ("Impairment", "2019", -45.0, None), ("Impairment", "2018", -12.0, None)],
)
def test_csv_money_typed(tables, row, column, number, currency):
    cell = _cell(tables, "money.csv", row, column)
    assert cell["number"] == pytest.approx(number)
    assert (cell["currency"] or None) == currency


# -- questions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "question",
    [
        'Who ran the "ferry service" across Loch Varran?',
        "Who ran the ferry (across Loch Varran)?",
        "Loch Varran: who ran the ferry?",
        "Orla Fenwick AND ferry OR Loch NOT mill",
        "NOT AND OR",
        "Who ran the ferry? -- ' \" : ( ) * ~ ^",
        "x" * (MAX_QUERY_CHARS - 1),
    ],
)
def test_odd_question_answered(ponder, question):
    result = ponder.ask(question, budget=1500)
    assert result.cost <= 1500
    assert result.question == question


def test_question_at_limit_accepted(ponder):
    question = ("Who ran the ferry across Loch Varran? " * 60)[:MAX_QUERY_CHARS]
    result = ponder.ask(question, budget=1500)
    assert len(question) == MAX_QUERY_CHARS
    assert result.cost <= 1500


@pytest.mark.parametrize("question", ["", "   \n\t", "y" * (MAX_QUERY_CHARS + 1)])
def test_bad_question_rejected(ponder, question):
    with pytest.raises(QueryError, match="empty|maximum"):
        ponder.ask(question, budget=1500)


def test_quoted_question_finds_answer(ponder):
    result = ponder.ask('Who ran the "ferry service" across Loch Varran?', budget=3000)
    assert any(citation.doc_id == "good-first" for citation in result.citations)


UNANSWERABLE = "What is the boiling point of liquid nitrogen on Neptune?"


def test_unanswerable_question_cites_corpus(ponder, tables):
    result = ponder.ask(UNANSWERABLE, budget=3000)
    documents = set(tables["documents"]["doc_id"].to_list())
    assert 0.0 <= result.confidence <= 1.0
    assert result.cost <= 3000
    assert [citation.doc_id for citation in result.citations if citation.doc_id not in documents] == []


def test_unanswerable_question_not_confident(ponder):
    result = ponder.ask(UNANSWERABLE, budget=3000)
    assert result.abstained or result.confidence < 0.5


def test_unanswerable_question_abstains(ponder):
    result = ponder.ask(UNANSWERABLE, budget=3000)

    assert result.abstained
    assert result.answer is None
    assert result.citations == []


def test_unusual_script_title_links(ponder):
    linked = ponder.toolbox.graph.link("Where is 東京タワー?", ("public",))

    assert entity_key("東京タワー") in [entity_key(entity.name) for entity in linked]
