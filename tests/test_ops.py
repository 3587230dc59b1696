"""Rollback, pruning, run checks and refreshing readers, on real LanceDB folders and local Ray."""

from __future__ import annotations

import json
import shutil
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from indexer.store import IndexStore, RunInfo, Snapshot
from jobs.cli import app
from jobs.index_job import run_index
from jobs.ops import LiveReader, OperationError, check_runs, prune, restorable_versions, rollback, run_operation

runner = CliRunner()

VERSION_1 = {
    "curie.txt": "Marie Curie was a physicist born in Warsaw. She won the Nobel Prize in Physics in 1903 with Pierre Curie.",
    "turing.md": "# Alan Turing\n\nAlan Turing was an English mathematician. He worked at Bletchley Park during the Second World War.",
    "lovelace.txt": "Ada Lovelace worked with Charles Babbage on the Analytical Engine in London.",
    "bohr.txt": "Niels Bohr was a Danish physicist who founded the Institute for Theoretical Physics in Copenhagen.",
}
CURIE_2 = "Marie Curie was a chemist born in Warsaw. She discovered polonium and radium in Paris."
HOPPER = "# Grace Hopper\n\nGrace Hopper developed COBOL at Remington Rand in Philadelphia."
QUERIES = ["Where did Alan Turing work during the war?", "Who discovered polonium?", "Analytical Engine"]

# Columns compared between versions; vectors and write times are left out.
COMPARED = {
    "documents": (["doc_id", "title", "content_hash", "n_chunks"], ["doc_id"]),
    "chunks": (["chunk_id", "doc_id", "text"], ["chunk_id"]),
    "entities": (["entity_id", "key", "name", "mention_count", "doc_count"], ["entity_id"]),
    "mentions": (["mention_id", "entity_id", "chunk_id"], ["mention_id"]),
    "relations": (["relation_id", "source_id", "target_id", "label", "weight", "sentence"], ["relation_id"]),
    "attributes": (["attribute_id", "entity_id", "attribute", "value"], ["attribute_id"]),
}


def write_corpus(folder: Path, version: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for path in folder.iterdir():
        path.unlink()
    for name, text in VERSION_1.items():
        (folder / name).write_text(text, encoding="utf-8")
    if version == 2:
        (folder / "curie.txt").write_text(CURIE_2, encoding="utf-8")
        (folder / "turing.md").unlink()
        (folder / "hopper.md").write_text(HOPPER, encoding="utf-8")


def rows(db: Path | str, *, version: int | None = None) -> dict[str, pl.DataFrame]:
    snapshot = Snapshot.open(str(db), version=version)
    return {name: pl.from_arrow(snapshot.arrow(name, columns)).sort(key) for name, (columns, key) in COMPARED.items()}


def search_ids(db: Path | str, searcher_factory, *, version: int | None = None) -> dict[str, list[str]]:
    searcher = searcher_factory(Snapshot.open(str(db), version=version))
    return {query: [hit.chunk_id for hit in searcher.search(query, limit=5)] for query in QUERIES}


@pytest.fixture(scope="module")
def embedder():
    from indexer.embedding import Embedder

    return Embedder()


@pytest.fixture(scope="module")
def searcher_factory(embedder):
    from solver.search import ChunkSearcher

    return lambda snapshot: ChunkSearcher(snapshot, embedder=embedder)


@pytest.fixture(scope="module")
def history(tmp_path_factory, ray_local, searcher_factory):
    """An index with versions 1 and 2, and what each version held; tests work on copies."""
    base = tmp_path_factory.mktemp("history")
    corpus, db = base / "corpus", base / "index"
    write_corpus(corpus, 1)
    run_index(corpus, str(db))
    first_rows, first_hits = rows(db), search_ids(db, searcher_factory)
    write_corpus(corpus, 2)
    run_index(corpus, str(db))
    return {"db": db, "rows": {1: first_rows, 2: rows(db)}, "hits": {1: first_hits, 2: search_ids(db, searcher_factory)}}


@pytest.fixture
def index_copy(history, tmp_path) -> Path:
    target = tmp_path / "index"
    shutil.copytree(history["db"], target)
    return target


# -- rollback -------------------------------------------------------------------------


def test_history_versions_differ(history):
    assert not history["rows"][1]["documents"].equals(history["rows"][2]["documents"])
    assert history["hits"][1] != history["hits"][2]


def test_rollback_restores_rows_and_search(history, index_copy, searcher_factory):
    run = rollback(str(index_copy), 1)

    restored = rows(index_copy)
    assert run.version == 3
    assert Snapshot.open(str(index_copy)).version == 3
    for name, frame in history["rows"][1].items():
        assert restored[name].equals(frame), name
    assert search_ids(index_copy, searcher_factory) == history["hits"][1]


def test_rollback_records_completed_run(index_copy):
    rollback(str(index_copy), 1)

    current = IndexStore(str(index_copy)).current_run()
    changes = json.loads(current.row["changes_json"])
    assert current.status == "completed"
    assert current.version == 3
    assert run_operation(current) == "rollback"
    assert changes["rolled_back_to"] == 1
    assert changes["rolled_back_from"] == 2
    assert "rolled back to index version 1" in changes["note"]


def test_rollback_keeps_older_versions_readable(history, index_copy):
    rollback(str(index_copy), 1)

    for name, frame in history["rows"][2].items():
        assert rows(index_copy, version=2)[name].equals(frame), name


def test_rollback_unknown_version_rejected(index_copy):
    with pytest.raises(OperationError, match=r"index version 7 not found .* known versions: \[1, 2\]"):
        rollback(str(index_copy), 7)


def test_rollback_current_version_rejected(index_copy):
    with pytest.raises(OperationError, match="already the current version"):
        rollback(str(index_copy), 2)


def test_rollback_then_index_reapplies_changes(history, index_copy, tmp_path):
    rollback(str(index_copy), 1)
    corpus = tmp_path / "corpus"
    write_corpus(corpus, 2)

    result = run_index(corpus, str(index_copy))

    assert result.version == 4
    assert [document.doc_id for document in result.plan.changed] == ["curie.txt"]
    assert result.plan.deleted == ["turing.md"]
    assert [document.doc_id for document in result.plan.added] == ["hopper.md"]
    assert rows(index_copy)["documents"].equals(history["rows"][2]["documents"])
    assert rows(index_copy)["chunks"].equals(history["rows"][2]["chunks"])


def test_cli_rollback_and_runs_note(index_copy):
    result = runner.invoke(app, ["rollback", "1", "--db", str(index_copy)])
    listing = runner.invoke(app, ["runs", "--db", str(index_copy), "--json"])

    assert result.exit_code == 0, result.output
    assert "index version 3" in result.output
    assert listing.exit_code == 0
    notes = [json.loads(row["changes_json"]).get("note", "") for row in json.loads(listing.output)]
    assert "rolled back to index version 1" in notes[-1]


def test_cli_rollback_unknown_version(index_copy):
    result = runner.invoke(app, ["rollback", "9", "--db", str(index_copy)])

    assert result.exit_code == 1
    assert "index version 9 not found" in result.output


# -- prune ----------------------------------------------------------------------------


def test_prune_recent_versions_kept(history, index_copy):
    report = prune(str(index_copy), keep_days=30, keep_versions=1)

    assert all(not versions for versions in report.removed.values())
    assert restorable_versions(IndexStore(str(index_copy))) == [1, 2]


def test_prune_current_stays_readable(history, index_copy, searcher_factory):
    report = prune(str(index_copy), keep_days=0, keep_versions=1)

    current = IndexStore(str(index_copy)).current_run()
    assert sum(len(versions) for versions in report.removed.values()) > 0
    assert report.protected_versions == [2]
    assert current.version == 2
    for name, frame in history["rows"][2].items():
        assert rows(index_copy)[name].equals(frame), name
    assert search_ids(index_copy, searcher_factory) == history["hits"][2]
    assert restorable_versions(IndexStore(str(index_copy))) == [2]


def test_prune_compaction_recorded(history, index_copy):
    report = prune(str(index_copy), keep_days=0, keep_versions=1)

    current = IndexStore(str(index_copy)).current_run()
    assert "chunks" in report.compacted
    assert "index_runs" in report.compacted
    assert len(IndexStore(str(index_copy)).runs()) == 3
    assert run_operation(current) == "prune"
    assert current.version == 2
    assert current.table_versions["chunks"] == IndexStore(str(index_copy)).open("chunks").version


def test_prune_then_rollback_rejected(index_copy):
    prune(str(index_copy), keep_days=0, keep_versions=1)

    with pytest.raises(OperationError, match=r"cannot be restored: pruning removed table versions .*restorable index versions: \[2\]"):
        rollback(str(index_copy), 1)


def test_prune_keeps_newest_versions(history, index_copy):
    prune(str(index_copy), keep_days=0, keep_versions=2)
    rollback(str(index_copy), 1)

    for name, frame in history["rows"][1].items():
        assert rows(index_copy)[name].equals(frame), name


def test_prune_open_snapshot_still_reads(history, index_copy):
    snapshot = Snapshot.open(str(index_copy))

    prune(str(index_copy), keep_days=0, keep_versions=1)

    assert snapshot.table("chunks").count_rows() == history["rows"][2]["chunks"].height
    assert pl.from_arrow(snapshot.arrow("documents", ["doc_id"])).sort("doc_id")["doc_id"].to_list() == sorted(
        history["rows"][2]["documents"]["doc_id"]
    )


def test_cli_prune_json(index_copy):
    result = runner.invoke(app, ["prune", "--db", str(index_copy), "--keep-days", "0", "--keep-versions", "1", "--json"])

    report = json.loads(result.output)
    assert result.exit_code == 0, result.output
    assert report["protected_versions"] == [2]
    assert report["removed"]["chunks"]


# -- run checks -----------------------------------------------------------------------


def fake_run(index: int, *, finished: datetime, seconds: float, changed: int = 1, operation: str | None = None) -> RunInfo:
    changes = {"added": [], "changed": [], "deleted": []}
    if operation:
        changes["operation"] = operation
    row = {
        "run_id": f"run-{index}",
        "version": index,
        "status": "completed",
        "started_at": finished - timedelta(seconds=seconds),
        "finished_at": finished,
        "n_added": changed,
        "n_changed": 0,
        "n_deleted": 0,
        "changes_json": json.dumps(changes),
    }
    return RunInfo(row["run_id"], index, "completed", row)


NOW = datetime(2026, 1, 10, 6, 0, tzinfo=UTC)


def nightly(count: int, seconds: float = 600) -> list[RunInfo]:
    return [fake_run(i, finished=NOW - timedelta(days=count - i), seconds=seconds) for i in range(1, count + 1)]


def test_check_healthy_runs():
    result = check_runs(nightly(5), now=NOW)

    assert result.ok, result.problems
    assert "median of earlier runs: 600 s" in result.summary


def test_check_stale_run():
    result = check_runs(nightly(5), now=NOW + timedelta(days=2))

    assert not result.ok
    assert "finished 48.0 h ago" in result.problems[0]


def test_check_slow_run():
    runs = [*nightly(5), fake_run(6, finished=NOW + timedelta(hours=1), seconds=2400)]

    result = check_runs(runs, now=NOW, max_slowdown=3)

    assert len(result.problems) == 1
    assert "4.0 times the median 600 s" in result.problems[0]


def test_check_ignores_unchanged_and_operations():
    runs = [
        *nightly(5),
        fake_run(6, finished=NOW + timedelta(hours=1), seconds=5000, changed=0),
        fake_run(7, finished=NOW + timedelta(hours=2), seconds=5000, changed=0, operation="rollback"),
    ]

    result = check_runs(runs, now=NOW)

    assert result.ok, result.problems
    assert "run-6" in result.summary


def test_check_without_runs():
    result = check_runs([], now=NOW)

    assert result.problems == ["no completed indexing run recorded"]


def test_cli_runs_check_exit_codes(index_copy):
    healthy = runner.invoke(app, ["runs", "--db", str(index_copy), "--check"])
    stale = runner.invoke(app, ["runs", "--db", str(index_copy), "--check", "--max-age-hours", "0"])

    assert healthy.exit_code == 0, healthy.output
    assert healthy.output.startswith("ok: newest indexing run")
    assert stale.exit_code == 1
    assert "more than the allowed 0 h" in stale.output


# -- readers during a run -------------------------------------------------------------


def test_live_reader_moves_after_run(history, index_copy, tmp_path, searcher_factory):
    live = LiveReader(str(index_copy), searcher_factory)
    store = IndexStore(str(index_copy))
    pinned_documents = live.snapshot.run.table_versions["documents"]
    corpus = tmp_path / "corpus"
    write_corpus(corpus, 1)
    (corpus / "extra.txt").write_text("Lise Meitner worked on nuclear fission in Berlin with Otto Hahn.", encoding="utf-8")
    errors: list[BaseException] = []

    def index() -> None:
        try:
            run_index(corpus, str(index_copy))
        except BaseException as error:  # noqa: BLE001 - re-raised in the test thread
            errors.append(error)

    writer = threading.Thread(target=index)
    writer.start()
    writes_seen = 0
    while writer.is_alive():
        moved = store.open("documents").version != pinned_documents
        changed = live.refresh()
        recorded = store.current_run().version
        if changed:
            # The reader may move only once the run has recorded its new version.
            assert recorded == 3
        elif moved and recorded == 2:
            # Writes are under way and the run has not recorded itself yet.
            writes_seen += 1
            assert live.version == 2
            assert {query: [hit.chunk_id for hit in live.reader.search(query, limit=5)] for query in QUERIES} == history["hits"][2]
        time.sleep(0.05)
    writer.join()
    live.refresh()

    assert not errors, errors
    assert writes_seen > 0
    assert live.version == 3
    assert live.refresh() is False
    assert "extra.txt" in {hit.doc_id for hit in live.reader.search("Lise Meitner nuclear fission", limit=3)}
    assert live.reader.snapshot is live.snapshot


def test_live_reader_ignores_unchanged_run(history, index_copy, tmp_path, searcher_factory):
    live = LiveReader(str(index_copy), searcher_factory)
    corpus = tmp_path / "corpus"
    write_corpus(corpus, 2)

    result = run_index(corpus, str(index_copy))

    assert result.wrote is False
    assert live.refresh() is False
    assert live.version == 2
