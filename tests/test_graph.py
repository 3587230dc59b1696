"""The entity graph walker on real indexes: the bundled sample and a small corpus with restricted documents."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from indexer.embedding import Embedder
from indexer.store import Snapshot
from jobs.index_job import run_index
from solver.graph import GraphWalker

SHIRLEY_TEMPLE = "86a45d5d6e831fbf"  # sample paragraph "Shirley Temple"
CORLISS_QUESTION = (
    "What government position was held by the woman who portrayed Corliss Archer in the film Kiss and Tell?"
)

# Two documents that share the entity "Harbor Bridge". Only the "survey" group may read the
# second, so "Project Nightjar" and "Marcus Oyelaran" exist only for that group.
PUBLIC_DOCUMENT = {
    "id": "harbor-bridge",
    "title": "Harbor Bridge",
    "text": (
        "Harbor Bridge is a suspension bridge in Portmouth, Maine. "
        "Harbor Bridge was designed by the engineer Elena Varga and opened in 1931."
    ),
}
RESTRICTED_DOCUMENT = {
    "id": "project-nightjar",
    "title": "Project Nightjar",
    "text": (
        "Project Nightjar is a structural survey of Harbor Bridge. "
        "Marcus Oyelaran leads Project Nightjar for the Portmouth port authority."
    ),
    "groups": ["survey"],
}


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


@pytest.fixture(scope="module")
def walker(sample_index, embedder) -> GraphWalker:
    return GraphWalker(Snapshot.open(str(sample_index)), embedder)


@pytest.fixture(scope="module")
def restricted_index(tmp_path_factory, ray_local) -> Path:
    corpus = tmp_path_factory.mktemp("restricted-corpus")
    lines = [json.dumps(record) for record in (PUBLIC_DOCUMENT, RESTRICTED_DOCUMENT)]
    (corpus / "documents.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    db = tmp_path_factory.mktemp("restricted") / "index"
    run_index(corpus, str(db))
    return db


@pytest.fixture(scope="module")
def restricted_walker(restricted_index, embedder) -> GraphWalker:
    return GraphWalker(Snapshot.open(str(restricted_index)), embedder)


@pytest.fixture(scope="module")
def survey_only_entities(restricted_index) -> set[str]:
    """Ids of the entities that only the restricted document mentions."""
    entities = pl.from_arrow(Snapshot.open(str(restricted_index)).arrow("entities", ["entity_id", "groups"]))
    only_survey = entities.filter(pl.col("groups").list.join(",") == "survey")
    return set(only_survey["entity_id"].to_list())


# -- linking ------------------------------------------------------------------------------


def test_link_finds_corliss_archer(walker):
    names = [entity.name for entity in walker.link(CORLISS_QUESTION, ["public"])]

    assert "Corliss Archer" in names


def test_link_finds_kiss_and_tell(walker):
    names = [entity.name for entity in walker.link(CORLISS_QUESTION, ["public"])]

    assert "Kiss and Tell" in names


def test_link_finds_shirley_temple(walker):
    linked = walker.link("Which ambassador posts did Shirley Temple hold?", ["public"])

    assert [entity.name for entity in linked][:1] == ["Shirley Temple"]


def test_link_ranks_rare_names_first(walker):
    linked = walker.link(CORLISS_QUESTION, ["public"])
    scores = {entity.name: entity.score for entity in linked}

    assert linked[0].name in {"Corliss Archer", "Kiss and Tell"}
    assert all(score <= scores["Corliss Archer"] for score in scores.values())


def test_link_keeps_surface_text(walker):
    linked = {entity.name: entity for entity in walker.link(CORLISS_QUESTION, ["public"])}

    assert linked["Kiss and Tell"].surface == "Kiss and Tell"


def test_link_ignores_stop_words(walker):
    assert walker.link("What was it and who were they?", ["public"]) == []


def test_link_without_groups_finds_nothing(walker):
    assert walker.link(CORLISS_QUESTION, []) == []


# -- walking ------------------------------------------------------------------------------


def test_walk_reaches_shirley_temple(walker):
    found = walker.walk("Kiss and Tell", ["public"], limit=5, seeds=[], extra_seed_names=["Kiss and Tell"])

    assert SHIRLEY_TEMPLE in [item.doc_id for item in found]


def test_walk_returns_graph_evidence(walker):
    found = walker.walk(CORLISS_QUESTION, ["public"], limit=5)

    assert found
    assert {item.kind for item in found} == {"graph"}
    assert {item.source for item in found} == {"retrieve:graph"}
    assert all(item.n_tokens > 0 for item in found)
    assert [item.score for item in found] == sorted((item.score for item in found), reverse=True)


def test_walk_explains_path_from_seed(walker):
    found = walker.walk("Kiss and Tell", ["public"], limit=5, seeds=[], extra_seed_names=["Kiss and Tell"])
    shirley = next(item for item in found if item.doc_id == SHIRLEY_TEMPLE)

    assert shirley.details["seeds"] == ["Kiss and Tell"]
    assert shirley.details["path"].startswith("Kiss and Tell -> ")
    assert shirley.details["path"].endswith("[Shirley Temple]")


def test_walk_without_seeds_returns_nothing(walker):
    assert walker.walk("what was it", ["public"], seeds=[]) == []


def test_walk_respects_limit(walker):
    assert len(walker.walk(CORLISS_QUESTION, ["public"], limit=2)) == 2


# -- neighbours and attributes --------------------------------------------------------------


def test_neighbors_include_shirley_temple(walker):
    kiss_and_tell = next(entity for entity in walker.link("Kiss and Tell", ["public"]) if entity.name == "Kiss and Tell")
    neighbors = walker.neighbors(kiss_and_tell.entity_id, ["public"], limit=20)
    by_name = {neighbor.name: neighbor for neighbor in neighbors}

    assert "Shirley Temple" in by_name
    assert by_name["Shirley Temple"].relations
    assert by_name["Shirley Temple"].chunk_ids


def test_attributes_include_birth_date(walker):
    shirley = walker.link("Shirley Temple", ["public"])[0]
    rows = walker.attributes_of([shirley.entity_id], ["public"])
    birth_dates = [row["date"] for row in rows if row["attribute"] == "birth_date"]

    assert "1928-04-23" in birth_dates


# -- access groups ------------------------------------------------------------------------


def test_survey_only_entities_exist(survey_only_entities):
    assert survey_only_entities


def test_public_walk_never_returns_restricted_chunk(restricted_walker):
    found = restricted_walker.walk(
        "Who leads the survey of Harbor Bridge?", ["public"], limit=10, extra_seed_names=["Harbor Bridge"]
    )

    assert found
    assert RESTRICTED_DOCUMENT["id"] not in {item.doc_id for item in found}


def test_survey_walk_returns_restricted_chunk(restricted_walker):
    found = restricted_walker.walk(
        "Who leads the survey of Harbor Bridge?", ["survey"], limit=10, extra_seed_names=["Harbor Bridge"]
    )

    assert RESTRICTED_DOCUMENT["id"] in {item.doc_id for item in found}


def test_public_link_skips_restricted_entities(restricted_walker, survey_only_entities):
    linked = restricted_walker.link("Does Marcus Oyelaran lead Project Nightjar at Harbor Bridge?", ["public"])

    assert not {entity.entity_id for entity in linked} & survey_only_entities


def test_survey_link_finds_restricted_entities(restricted_walker, survey_only_entities):
    linked = restricted_walker.link("Does Marcus Oyelaran lead Project Nightjar at Harbor Bridge?", ["survey"])

    assert {entity.entity_id for entity in linked} & survey_only_entities


def test_public_walk_ignores_restricted_seed(restricted_walker):
    found = restricted_walker.walk("Project Nightjar", ["public"], seeds=[], extra_seed_names=["Project Nightjar"])

    assert RESTRICTED_DOCUMENT["id"] not in {item.doc_id for item in found}


def test_public_neighbors_skip_restricted_entities(restricted_walker, survey_only_entities):
    bridge = next(entity for entity in restricted_walker.link("Harbor Bridge", ["public"]) if entity.name == "Harbor Bridge")
    neighbors = restricted_walker.neighbors(bridge.entity_id, ["public"], limit=50)

    assert not {neighbor.entity_id for neighbor in neighbors} & survey_only_entities


def test_public_neighbors_cite_public_chunks_only(restricted_walker):
    bridge = next(entity for entity in restricted_walker.link("Harbor Bridge", ["public"]) if entity.name == "Harbor Bridge")
    neighbors = restricted_walker.neighbors(bridge.entity_id, ["public"], limit=50)
    chunks = {chunk for neighbor in neighbors for chunk in neighbor.chunk_ids}

    assert all(chunk.startswith(PUBLIC_DOCUMENT["id"] + "#") for chunk in chunks)
