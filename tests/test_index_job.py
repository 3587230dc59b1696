"""The indexing job on real components: local Ray, LanceDB folders, spaCy and the embedder."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import pytest

from indexer.config import IndexConfig
from indexer.normalize import entity_id, entity_key
from indexer.schema import DATA_TABLES
from indexer.store import IndexBusyError, IndexStore, Snapshot
from jobs.index_job import run_index

ROOT = Path(__file__).resolve().parents[1]
SHIRLEY = "86a45d5d6e831fbf"  # sample paragraph "Shirley Temple"
KISS_AND_TELL = "9e73d92681f61e16"  # sample paragraph "Kiss and Tell (1945 film)"


def frame(db: Path, table: str) -> pl.DataFrame:
    return pl.from_arrow(Snapshot.open(str(db)).arrow(table))


def write_docs(folder: Path, docs: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in docs.items():
        (folder / name).write_text(text, encoding="utf-8")


SMALL_CORPUS = {
    "curie.txt": "Marie Curie was a physicist born in Warsaw. She won the Nobel Prize in Physics in 1903 with Pierre Curie.",
    "turing.md": "# Alan Turing\n\nAlan Turing was an English mathematician. He worked at Bletchley Park during the Second World War.",
    "lovelace.txt": "Ada Lovelace worked with Charles Babbage on the Analytical Engine in London.",
}


# -- the sample corpus ----------------------------------------------------------------


def test_sample_index_counts(sample_index):
    snapshot = Snapshot.open(str(sample_index))
    documents = snapshot.table("documents").count_rows()
    chunks = snapshot.table("chunks").count_rows()

    assert documents == 326
    assert chunks >= documents
    assert snapshot.table("entities").count_rows() > 1000
    assert snapshot.table("relations").count_rows() > 500
    assert snapshot.table("source_tables").count_rows() == 3
    assert snapshot.table("table_cells").count_rows() > 20
    assert snapshot.version == 1


def test_sample_entities_from_text(sample_index):
    mentions = frame(sample_index, "mentions").filter(pl.col("doc_id") == SHIRLEY)
    keys = set(frame(sample_index, "entities").filter(pl.col("entity_id").is_in(mentions["entity_id"].to_list()))["key"])

    assert "shirley temple" in keys
    assert "ghana" in keys
    assert "czechoslovakia" in keys


def test_sample_title_entity_links_documents(sample_index):
    mentions = frame(sample_index, "mentions")
    temple = entity_id(entity_key("Shirley Temple"))
    docs = set(mentions.filter(pl.col("entity_id") == temple)["doc_id"])

    assert SHIRLEY in docs
    assert KISS_AND_TELL in docs


def test_sample_relations_have_evidence(sample_index):
    relations = frame(sample_index, "relations").filter(pl.col("doc_id") == KISS_AND_TELL)
    chunks = set(frame(sample_index, "chunks")["chunk_id"])

    assert relations.height > 0
    assert set(relations["chunk_id"]) <= chunks
    assert (relations["label"] != "").all()
    assert any(label != "related_to" for label in relations["label"])


def test_sample_birth_and_death_dates(sample_index):
    attributes = frame(sample_index, "attributes").filter(pl.col("doc_id") == SHIRLEY)
    dates = dict(zip(attributes["attribute"], attributes["date"], strict=False))

    assert dates.get("birth_date") == "1928-04-23"
    assert dates.get("death_date") == "2014-02-10"


def test_sample_tables_typed(sample_index):
    cells = frame(sample_index, "table_cells")
    numeric = cells.filter(pl.col("number").is_not_null())

    assert numeric.height > 0
    assert cells.filter(pl.col("raw").str.contains(r"^\(")).filter(pl.col("number") >= 0).height == 0


def test_noop_rerun_writes_nothing(sample_index):
    store = IndexStore(str(sample_index))
    before = store.table_versions()

    result = run_index(ROOT / "sample" / "corpus", str(sample_index))

    assert store.table_versions() == before
    assert result.wrote is False
    assert result.version == 1
    assert result.plan.unchanged == 326


# -- incremental runs -----------------------------------------------------------------


def test_modify_delete_add(tmp_path, ray_local):
    corpus, db = tmp_path / "corpus", tmp_path / "index"
    write_docs(corpus, SMALL_CORPUS)
    first = run_index(corpus, str(db))
    before_chunks = frame(db, "chunks")
    lovelace_before = before_chunks.filter(pl.col("doc_id") == "lovelace.txt")

    (corpus / "curie.txt").write_text("Marie Curie was a chemist born in Warsaw. She discovered polonium in Paris.", encoding="utf-8")
    (corpus / "turing.md").unlink()
    write_docs(corpus, {"hopper.md": "# Grace Hopper\n\nGrace Hopper developed COBOL at Remington Rand in Philadelphia."})
    second = run_index(corpus, str(db))

    chunks = frame(db, "chunks")
    entities = set(frame(db, "entities")["key"])
    assert first.version == 1
    assert second.version == 2
    assert [d.doc_id for d in second.plan.changed] == ["curie.txt"]
    assert second.plan.deleted == ["turing.md"]
    assert [d.doc_id for d in second.plan.added] == ["hopper.md"]
    assert chunks.filter(pl.col("doc_id") == "turing.md").height == 0
    for table in ("mentions", "relations", "attributes"):
        assert frame(db, table).filter(pl.col("doc_id") == "turing.md").height == 0
    assert "bletchley park" not in entities
    assert "grace hopper" in entities
    assert "polonium" in " ".join(chunks.filter(pl.col("doc_id") == "curie.txt")["text"]).lower()
    assert "physicist" not in " ".join(chunks.filter(pl.col("doc_id") == "curie.txt")["text"])
    assert chunks.filter(pl.col("doc_id") == "lovelace.txt").equals(lovelace_before)


def test_previous_version_readable_after_update(tmp_path, ray_local):
    corpus, db = tmp_path / "corpus", tmp_path / "index"
    write_docs(corpus, SMALL_CORPUS)
    run_index(corpus, str(db))
    (corpus / "lovelace.txt").unlink()
    run_index(corpus, str(db))

    old = Snapshot.open(str(db), version=1)
    new = Snapshot.open(str(db))

    assert old.table("documents").count_rows() == 3
    assert new.table("documents").count_rows() == 2


def test_second_run_stops_while_locked(tmp_path, ray_local):
    corpus, db = tmp_path / "corpus", tmp_path / "index"
    write_docs(corpus, SMALL_CORPUS)
    store = IndexStore(str(db))

    with store.lock(), pytest.raises(IndexBusyError, match="another indexing run"):
        run_index(corpus, str(db))


def test_bad_files_skipped_with_reasons(tmp_path, ray_local):
    corpus, db = tmp_path / "corpus", tmp_path / "index"
    write_docs(corpus, {"good.txt": "Niels Bohr was born in Copenhagen."})
    (corpus / "empty.txt").write_text("", encoding="utf-8")
    (corpus / "blank.md").write_text("  \n\t\n", encoding="utf-8")
    (corpus / "image.txt").write_bytes(bytes(range(256)) * 8)
    (corpus / "latin.txt").write_bytes("Café in Zürich, owned by François.".encode("latin-1"))
    (corpus / "bom.txt").write_bytes("\ufeffLise Meitner worked in Berlin.".encode("utf-16"))
    (corpus / "notes.pdf").write_bytes(b"%PDF-1.4")

    result = run_index(corpus, str(db))

    reasons = {item.source: item.reason for item in result.scan.skipped}
    indexed = set(frame(db, "documents")["doc_id"])
    assert indexed == {"good.txt", "latin.txt", "bom.txt"}
    assert "empty" in reasons["empty.txt"]
    assert "empty" in reasons["blank.md"]
    assert "binary" in reasons["image.txt"]
    assert "unsupported" in reasons["notes.pdf"]
    assert any("latin.txt" in warning for warning in result.scan.warnings)
    run = IndexStore(str(db)).current_run()
    assert len(json.loads(run.row["skipped_json"])) == 4


def test_huge_document_indexed(tmp_path, ray_local):
    corpus, db = tmp_path / "corpus", tmp_path / "index"
    sentence = "The Rhine flows through Basel and Cologne before reaching Rotterdam. "
    write_docs(corpus, {"rhine.txt": sentence * 15_000})  # about 1.05 million characters, past spaCy's limit

    run_index(corpus, str(db))

    chunks = frame(db, "chunks")
    assert chunks.height > 100
    assert chunks["n_tokens"].max() <= 200


# -- a run killed mid-way -------------------------------------------------------------


def test_killed_run_leaves_previous_version(tmp_path, ray_local, shared_data):
    corpus, db = tmp_path / "corpus", tmp_path / "index"
    write_docs(corpus, SMALL_CORPUS)
    run_index(corpus, str(db))
    before = frame(db, "documents")["doc_id"].sort().to_list()

    lines = (shared_data / "2wiki-corpus.jsonl").read_text(encoding="utf-8").splitlines()[:1500]
    (corpus / "wiki.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = tmp_path / "ponder.toml"
    config.write_text("[index]\nflush_documents = 100\nbatch_size = 50\n", encoding="utf-8")
    # Ray's socket paths must stay short, so its session folder cannot live under tmp_path.
    ray_dir = tempfile.mkdtemp(prefix="ponder-ray-")
    env = {**os.environ, "PONDER_PROGRESS": "0", "PONDER_RAY_TEMP_DIR": ray_dir}
    log = (tmp_path / "index.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "jobs.cli", "index", str(corpus), "--db", str(db), "--config", str(config)],
        cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True,
    )
    store = IndexStore(str(db))
    start_version = store.open("documents").version
    deadline = time.time() + 240
    while time.time() < deadline and store.open("documents").version == start_version:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()

    shutil.rmtree(ray_dir, ignore_errors=True)
    assert store.open("documents").version > start_version, (tmp_path / "index.log").read_text()[-3000:]
    assert frame(db, "documents")["doc_id"].sort().to_list() == before

    result = run_index(corpus, str(db), config=IndexConfig.from_file(config))
    assert result.version == 2
    assert frame(db, "documents").height == 3 + 1500
    assert frame(db, "chunks")["chunk_id"].n_unique() == frame(db, "chunks").height
    assert frame(db, "mentions")["mention_id"].n_unique() == frame(db, "mentions").height
    documents = set(frame(db, "documents")["doc_id"])
    for table in DATA_TABLES:
        if table in {"documents", "entities"}:
            continue
        assert set(frame(db, table)["doc_id"]) <= documents
