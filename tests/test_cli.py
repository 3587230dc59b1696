"""The ponder command line, run in-process on the indexed sample."""

from __future__ import annotations

import json

import networkx as nx
from typer.testing import CliRunner

from jobs.cli import app

runner = CliRunner()


def test_stats_json(sample_index):
    result = runner.invoke(app, ["stats", "--db", str(sample_index), "--json"])

    data = json.loads(result.output)
    assert result.exit_code == 0
    assert data["rows"]["documents"] == 326
    assert data["version"] == 1
    assert data["entity_labels"]["PERSON"] > 0


def test_search_json_ranks_relevant_title(sample_index):
    result = runner.invoke(
        app, ["search", "Which film starred Shirley Temple as Corliss Archer?", "--db", str(sample_index), "--json", "--limit", "3"]
    )

    hits = json.loads(result.output)["hits"]
    assert result.exit_code == 0
    assert len(hits) == 3
    assert hits[0]["title"] == "Kiss and Tell (1945 film)"
    assert hits[0]["vector_score"] is not None
    assert hits[0]["text_score"] is not None


def test_search_hostile_query(sample_index):
    query = 'Shirley "Temple AND (Kiss OR NOT: tell) -- \' ; DROP TABLE chunks'

    result = runner.invoke(app, ["search", query, "--db", str(sample_index), "--json"])

    assert result.exit_code == 0
    assert json.loads(result.output)["hits"]


def test_search_empty_query_rejected(sample_index):
    result = runner.invoke(app, ["search", "   ", "--db", str(sample_index)])

    assert result.exit_code == 1
    assert "query is empty" in result.output


def test_search_missing_index(tmp_path):
    result = runner.invoke(app, ["search", "anything", "--db", str(tmp_path / "nowhere")])

    assert result.exit_code == 1
    assert "no index found" in result.output


def test_graph_export_graphml(sample_index, tmp_path):
    out = tmp_path / "graph.graphml"

    result = runner.invoke(app, ["graph", "export", "--db", str(sample_index), "--out", str(out)])

    graph = nx.read_graphml(out)
    names = {data["name"] for _, data in graph.nodes(data=True)}
    assert result.exit_code == 0
    assert graph.number_of_nodes() > 1000
    assert graph.number_of_edges() > 500
    assert "Shirley Temple" in names


def test_runs_lists_run(sample_index):
    result = runner.invoke(app, ["runs", "--db", str(sample_index), "--json"])

    runs = json.loads(result.output)
    assert result.exit_code == 0
    assert runs[0]["n_added"] == 326
    assert runs[0]["status"] == "completed"


def test_index_bad_config(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[index]\nchunk_tokens = 9000\n", encoding="utf-8")

    result = runner.invoke(app, ["index", str(tmp_path), "--db", str(tmp_path / "db"), "--config", str(config)])

    assert result.exit_code == 1
    assert "chunk_tokens must be between" in result.output


def test_index_missing_corpus(tmp_path):
    result = runner.invoke(app, ["index", str(tmp_path / "missing"), "--db", str(tmp_path / "db")])

    assert result.exit_code == 1
    assert "missing" in result.output


def test_bracketed_text_printed_literally(capsys):
    from jobs import cli
    from solver.episode import Citation, EpisodeResult
    from solver.state import REASON, Action, StepRecord

    step = StepRecord(0, Action(REASON, "synthesize"), 12.0, 1.0, {}, tier_used="embedded", tokens_in=10, tokens_out=2)

    result = EpisodeResult(
        episode_id="e1",
        question="What do wombats produce?",
        answer="cubes [/citation needed]",
        confidence=0.7,
        abstained=False,
        citations=[Citation("c1", "d1", "[bold red]Wombat[/]", "Wombats produce cube-shaped droppings [see note].")],
        steps=[step],
        cost=10.0,
        budget=100.0,
        latency_ms=1.0,
        policy="adaptive",
        index_version=1,
        groups=("public",),
    )

    cli._print_episode(result)
    printed = capsys.readouterr().out

    assert "cubes [/citation needed]" in printed
    assert "[[bold red]Wombat[/]]" in printed
    assert "[see note]" in printed
    assert "[tier embedded, 10 in, 2 out]" in printed
    assert "\\[" not in printed


def test_help_keeps_bracketed_names():
    result = CliRunner().invoke(app, ["index", "--help"])

    assert result.exit_code == 0
    assert "[index]" in result.output


def test_config_folder_rejected(tmp_path):
    result = CliRunner().invoke(app, ["index", str(tmp_path), "--db", str(tmp_path / "db"), "--config", str(tmp_path)])

    assert result.exit_code == 1
    assert "is a folder" in result.output
