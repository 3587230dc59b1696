"""Access control under attack: public callers ask about restricted facts.

The corpus mixes public documents with ``finance`` documents that share the entity
"Acme Corporation" and name entities found nowhere else ("Project Bluebird", "Globex").
A caller with only the ``public`` group must see none of the restricted chunks, entities,
table rows or text, whether through search, graph walks, table tools, answers,
citations or the stored traces. A caller with ``finance`` must see them.
"""

from __future__ import annotations

import json
from pathlib import Path

import lancedb
import polars as pl
import pytest

from indexer.normalize import entity_id, entity_key
from indexer.store import Snapshot

PUBLIC = ("public",)
FINANCE = ("public", "finance")

RECORDS = [
    {
        "id": "pub-acme",
        "title": "Acme Corporation",
        "text": "Acme Corporation was founded in Springfield in 1952. Acme Corporation makes anvils and rockets.",
    },
    {
        "id": "pub-springfield",
        "title": "Springfield",
        "text": "Springfield is a city on the river. Acme Corporation is its largest employer.",
    },
    {
        "id": "pub-sales",
        "title": "Acme sales",
        "rows": [["Item", "2024", "2023"], ["Anvil sales", "120", "100"]],
    },
    {
        "id": "fin-acme",
        "title": "Acme Corporation acquisition plan",
        "text": (
            "Acme Corporation plans to acquire Globex under the code name Project Bluebird. "
            "Project Bluebird is budgeted at 48 million dollars and led by Wilhelmina Crane."
        ),
        "groups": ["finance"],
    },
    {
        "id": "fin-budget",
        "title": "Bluebird budget",
        "rows": [["Item", "2024", "2023"], ["Bluebird spend", "48", "31"], ["Legal fees", "7", "5"]],
        "groups": ["finance"],
    },
]

RESTRICTED_DOCS = ("fin-acme", "fin-budget")
# Strings that appear only in restricted documents and in no question below.
SECRET_MARKERS = ("Globex", "48 million", "Wilhelmina", "Legal fees", "fin-acme", "fin-budget")
RESTRICTED_ENTITIES = ("Project Bluebird", "Globex", "Wilhelmina Crane")

QUESTIONS = [
    "What is Project Bluebird?",
    "What company does Acme Corporation plan to acquire?",
    "How much money is budgeted for Project Bluebird?",
    "Who leads Project Bluebird at Acme Corporation?",
    "What was the Bluebird spend in 2024?",
    "What was the change in Bluebird spend from 2023 to 2024?",
]


def _leaks(text: str | None) -> list[str]:
    return [marker for marker in SECRET_MARKERS if text and marker in text]


@pytest.fixture(scope="module")
def access_index(tmp_path_factory, ray_local) -> Path:
    from jobs.index_job import run_index

    root = tmp_path_factory.mktemp("access")
    corpus = root / "corpus"
    corpus.mkdir()
    lines = [json.dumps(record) for record in RECORDS]
    (corpus / "records.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    db = root / "index"
    run_index(corpus, str(db))
    return db


@pytest.fixture(scope="module")
def ponder(access_index):
    from solver.service import Ponder

    instance = Ponder(str(access_index))
    yield instance
    instance.close()


@pytest.fixture(scope="module")
def public_results(ponder):
    results = [ponder.ask(question, budget=3000, groups=PUBLIC) for question in QUESTIONS]
    ponder.traces.flush()
    return results


def test_corpus_has_restricted_rows(access_index):
    documents = pl.from_arrow(Snapshot.open(str(access_index)).arrow("documents"))
    restricted = documents.filter(pl.col("doc_id").is_in(list(RESTRICTED_DOCS)))
    assert restricted.height == 2
    assert all(groups.to_list() == ["finance"] for groups in restricted["groups"])


@pytest.mark.parametrize("name", RESTRICTED_ENTITIES)
def test_restricted_entity_indexed(access_index, name):
    entities = pl.from_arrow(Snapshot.open(str(access_index)).arrow("entities"))
    row = entities.filter(pl.col("key") == entity_key(name))
    assert row.height == 1
    assert row["groups"][0].to_list() == ["finance"]


# -- chunk search ----------------------------------------------------------------------


@pytest.mark.parametrize("question", QUESTIONS)
@pytest.mark.parametrize("mode", ["hybrid", "vector", "text"])
def test_search_hides_restricted(ponder, question, mode):
    hits = ponder.toolbox.chunks.search(question, groups=PUBLIC, limit=20, mode=mode)
    assert [hit.doc_id for hit in hits if hit.doc_id in RESTRICTED_DOCS] == []
    assert [hit.chunk_id for hit in hits if _leaks(hit.text)] == []


def test_search_finance_sees_restricted(ponder):
    hits = ponder.toolbox.chunks.search("Project Bluebird code name", groups=FINANCE, limit=5)
    assert "fin-acme" in [hit.doc_id for hit in hits]


# Group names that try to widen a SQL filter or to match "finance" loosely.
HOSTILE_GROUPS = ["x' OR true OR 'a", "public'])) OR true --", "finance\u200b", "Finance", " finance", "*", "%"]


@pytest.mark.parametrize("group", HOSTILE_GROUPS)
def test_hostile_group_name_sees_nothing(ponder, group):
    hits = ponder.toolbox.chunks.search("Project Bluebird code name", groups=(group,), limit=20)
    linked = ponder.toolbox.graph.link("Project Bluebird", (group,))
    rows = ponder.toolbox.tables.lookup("Bluebird spend 2024", (group,), limit=20)
    assert hits == []
    assert linked == []
    assert rows == []


# -- graph -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", RESTRICTED_ENTITIES)
def test_link_hides_restricted_entity(ponder, name):
    linked = ponder.toolbox.graph.link(f"Tell me about {name} and Acme Corporation.", PUBLIC)
    assert entity_id(entity_key(name)) not in [entity.entity_id for entity in linked]


def test_link_finance_sees_bluebird(ponder):
    linked = ponder.toolbox.graph.link("Tell me about Project Bluebird.", FINANCE)
    assert entity_id(entity_key("Project Bluebird")) in [entity.entity_id for entity in linked]


@pytest.mark.parametrize("question", QUESTIONS)
def test_walk_hides_restricted(ponder, question):
    found = ponder.toolbox.graph.walk(question, PUBLIC, limit=20, extra_seed_names=RESTRICTED_ENTITIES)
    assert [item.doc_id for item in found if item.doc_id in RESTRICTED_DOCS] == []
    assert [item.evidence_id for item in found if _leaks(item.text)] == []


def test_walk_ignores_restricted_seeds(ponder):
    seeds = ponder.toolbox.graph.link("Project Bluebird, Globex and Wilhelmina Crane", FINANCE)
    found = ponder.toolbox.graph.walk("Project Bluebird", PUBLIC, limit=20, seeds=seeds)
    assert seeds
    assert [item.doc_id for item in found if item.doc_id in RESTRICTED_DOCS] == []


def test_walk_finance_reaches_restricted(ponder):
    found = ponder.toolbox.graph.walk("What is Project Bluebird?", FINANCE, limit=20)
    assert "fin-acme" in [item.doc_id for item in found]


def test_shared_entity_neighbors_public_only(ponder):
    neighbors = ponder.toolbox.graph.neighbors(entity_id(entity_key("Acme Corporation")), PUBLIC, limit=50)
    restricted_ids = {entity_id(entity_key(name)) for name in RESTRICTED_ENTITIES}
    assert neighbors
    assert [neighbor for neighbor in neighbors if neighbor.entity_id in restricted_ids] == []
    assert [neighbor for neighbor in neighbors if _leaks(json.dumps(neighbor.__dict__, default=str))] == []


@pytest.mark.parametrize("name", RESTRICTED_ENTITIES)
def test_restricted_entity_no_neighbors(ponder, name):
    assert ponder.toolbox.graph.neighbors(entity_id(entity_key(name)), PUBLIC, limit=50) == []


def test_finance_bluebird_has_neighbors(ponder):
    assert ponder.toolbox.graph.neighbors(entity_id(entity_key("Project Bluebird")), FINANCE, limit=50)


def test_attributes_hide_restricted(ponder):
    ids = [entity_id(entity_key(name)) for name in ("Acme Corporation", *RESTRICTED_ENTITIES)]
    rows = ponder.toolbox.graph.attributes_of(ids, PUBLIC)
    assert [row for row in rows if row.get("doc_id") in RESTRICTED_DOCS] == []
    assert [row for row in rows if _leaks(json.dumps(row, default=str))] == []


# -- tables ----------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["Bluebird spend 2024", "Legal fees", "Bluebird budget 2023", "Item 2024"])
def test_table_lookup_hides_restricted(ponder, query):
    rows = ponder.toolbox.tables.lookup(query, PUBLIC, limit=20)
    assert [row.doc_id for row in rows if row.doc_id in RESTRICTED_DOCS] == []
    assert [row.evidence_id for row in rows if _leaks(row.text)] == []


def test_table_lookup_finance_sees_restricted(ponder):
    rows = ponder.toolbox.tables.lookup("Bluebird spend 2024", FINANCE, limit=5)
    assert "fin-budget" in [row.doc_id for row in rows]


@pytest.mark.parametrize("question", QUESTIONS[4:])
def test_table_compute_hides_restricted(ponder, question):
    candidates = ponder.toolbox.tables.compute(question, PUBLIC)
    texts = [candidate.text for candidate in candidates]
    assert [text for text in texts if text.strip() in {"48", "31", "17", "7", "5"}] == []
    assert [candidate for candidate in candidates if _leaks(json.dumps(candidate.__dict__, default=str))] == []


def test_table_compute_finance_uses_restricted(ponder):
    candidates = ponder.toolbox.tables.compute("What was the change in Bluebird spend from 2023 to 2024?", FINANCE)
    assert "17" in [candidate.text.strip() for candidate in candidates]


# -- episodes and stored traces ----------------------------------------------------------


@pytest.mark.parametrize("index", range(len(QUESTIONS)))
def test_answer_hides_restricted(public_results, index):
    result = public_results[index]
    assert _leaks(result.answer) == []
    assert [citation.doc_id for citation in result.citations if citation.doc_id in RESTRICTED_DOCS] == []
    assert [citation for citation in result.citations if _leaks(citation.sentence)] == []
    assert [item.doc_id for item in result.evidence if item.doc_id in RESTRICTED_DOCS] == []
    assert [step.note for step in result.steps if _leaks(step.note)] == []


def _trace_frames(ponder) -> tuple[pl.DataFrame, pl.DataFrame]:
    ponder.traces.flush()
    connection = lancedb.connect(ponder.db)
    episodes = pl.from_arrow(connection.open_table("episodes").to_arrow())
    steps = pl.from_arrow(connection.open_table("steps").to_arrow())
    return episodes, steps


def test_stored_traces_hide_restricted(ponder, public_results):
    episodes, steps = _trace_frames(ponder)
    ids = [result.episode_id for result in public_results]
    mine = episodes.filter(pl.col("episode_id").is_in(ids))
    my_steps = steps.filter(pl.col("episode_id").is_in(ids))
    evidence_ids = [item for row in mine["evidence_ids"].to_list() for item in row]
    assert mine.height == len(QUESTIONS)
    assert all(groups.to_list() == ["public"] for groups in mine["groups"])
    assert [item for item in evidence_ids if item.split("#")[0] in RESTRICTED_DOCS or _leaks(item)] == []
    assert [answer for answer in mine["answer"].to_list() if _leaks(answer)] == []
    assert [text for text in mine["citations_json"].to_list() if _leaks(text)] == []
    for column in ("arguments_json", "top_answer", "note"):
        assert [text for text in my_steps[column].to_list() if _leaks(text)] == [], column


def test_finance_episode_sees_restricted(ponder):
    result = ponder.ask("What is Project Bluebird?", budget=3000, groups=FINANCE)
    episodes, _ = _trace_frames(ponder)
    row = episodes.filter(pl.col("episode_id") == result.episode_id)
    assert "fin-acme" in [item.doc_id for item in result.evidence]
    assert row["groups"][0].to_list() == ["finance", "public"]
    assert any(item.startswith("fin-acme") for item in row["evidence_ids"][0].to_list())


# -- audit: from an exported trace back to the sources -------------------------------------


def _evidence_groups(access_index) -> dict[str, set[str]]:
    """Map every chunk id and table row id to the groups of the document it comes from."""
    snapshot = Snapshot.open(str(access_index))
    chunks = snapshot.arrow("chunks", ["chunk_id", "groups"]).to_pylist()
    groups = {row["chunk_id"]: set(row["groups"]) for row in chunks}
    for table in snapshot.arrow("source_tables", ["table_id", "n_rows", "groups"]).to_pylist():
        for row_index in range(table["n_rows"]):
            groups[f"{table['table_id']}:r{row_index}"] = set(table["groups"])
    return groups


# Questions that a public caller can answer, asked besides those about restricted facts.
PUBLIC_QUESTIONS = [
    "In which city was Acme Corporation founded?",
    "What does Acme Corporation make?",
    "What was the Anvil sales figure in 2024?",
]


@pytest.mark.parametrize(("user", "caller"), [("alice", PUBLIC), ("bob", FINANCE), (None, PUBLIC)])
def test_exported_trace_leads_to_sources(ponder, access_index, tmp_path, user, caller):
    import getpass

    questions = PUBLIC_QUESTIONS + QUESTIONS
    results = [ponder.ask(question, budget=3000, groups=caller, user=user) for question in questions]
    out = tmp_path / "steps.jsonl"
    ponder.traces.export(out)

    rows = pl.read_ndjson(out)
    sources = _evidence_groups(access_index)
    cited = 0
    for result in results:
        mine = rows.filter(pl.col("episode_id") == result.episode_id)
        step_ids = {evidence_id for ids in mine["evidence_ids"].to_list() for evidence_id in ids or []}
        citations = json.loads(mine["citations_json"][0])
        assert mine.height == len(result.steps)
        assert set(mine["user"].to_list()) == {user or getpass.getuser()}
        assert {citation["evidence_id"] for citation in citations} <= step_ids, result.question
        assert [evidence_id for evidence_id in step_ids if evidence_id not in sources] == []
        assert [evidence_id for evidence_id in step_ids if not sources[evidence_id] & set(caller)] == []
        cited += bool(citations)
    assert cited >= len(PUBLIC_QUESTIONS)


def test_stats_count_only_visible_mentions(access_index):
    from jobs.inspect import index_stats

    public = index_stats(str(access_index), groups=PUBLIC, top=50)
    everything = index_stats(str(access_index), top=50)
    public_acme = next(row for row in public["top_entities"] if row["name"] == "Acme Corporation")
    all_acme = next(row for row in everything["top_entities"] if row["name"] == "Acme Corporation")

    assert _leaks(json.dumps(public, default=str)) == []
    assert public_acme["doc_count"] < all_acme["doc_count"]
    assert public_acme["mention_count"] < all_acme["mention_count"]
