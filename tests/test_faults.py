"""Faults during indexing: kills at seeded points, unusable embeddings, full disks, read-only folders.

The kill tests run the job in a subprocess against one Ray head started for the module,
and kill it through the ``PONDER_FAULT_AFTER`` hook (indexer/faults.py). Each kill must
leave index version 1 readable as it was, and the next uninterrupted run must end in
the same index as a run that was never interrupted.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from indexer.config import IndexConfig
from indexer.embedding import Embedder
from indexer.faults import FaultConfigError, FaultPlan
from indexer.schema import DATA_TABLES
from indexer.store import IndexStore, IndexWriteError, Snapshot, is_storage_error, storage_errno, write_error
from jobs.index_job import run_index
from solver.search import ChunkSearcher

ROOT = Path(__file__).resolve().parents[1]

CORPUS_V1 = {
    "curie.txt": "Marie Curie was a physicist born in Warsaw. She won the Nobel Prize in Physics in 1903 with Pierre Curie.",
    "turing.md": "# Alan Turing\n\nAlan Turing was an English mathematician. He worked at Bletchley Park during the Second World War.",
    "lovelace.txt": "Ada Lovelace worked with Charles Babbage on the Analytical Engine in London.",
    "bohr.txt": "Niels Bohr was born in Copenhagen. He founded the Institute for Theoretical Physics there in 1921.",
    "sales.csv": "Item,2019,2018\nAnvils,120,100\nRockets,45,30\n",
}

# Version 2 changes one document, deletes one and adds four, one of them a table.
CORPUS_V2_CHANGES = {
    "curie.txt": "Marie Curie was a chemist born in Warsaw. She discovered polonium in Paris in 1898.",
    "meitner.txt": "Lise Meitner worked with Otto Hahn in Berlin. She later moved to Stockholm.",
    "noether.md": "# Emmy Noether\n\nEmmy Noether taught at the University of Göttingen and proved Noether's theorem.",
    "franklin.txt": "Rosalind Franklin studied DNA at King's College London with Maurice Wilkins.",
    "figures.csv": "Region,2020,2019\nNorth,310,290\nSouth,(12),40\n",
}
V2_DELETED = "bohr.txt"
V2_PROCESSED = 5  # documents the second run analyses and embeds

# Small batches give the run many distinct points to die at.
RUN_SETTINGS = "[index]\nbatch_size = 1\nflush_documents = 2\nanalyzers = 1\nembedders = 1\n"

# Points the second run passes for certain, whatever order Ray returns the documents
# in. ``delete`` counts 7 tables for the deleted document and 7 for the changed one.
# ``write`` counts the non-empty tables of each of the 3 flushes. Every flush writes at
# least 3 (documents, chunks and mentions, or documents, tables and cells), so the
# first 9 writes are certain and 8 are listed.
KILL_POINTS = (
    [("delete", n) for n in range(1, 15)]
    + [("analysis", n) for n in range(1, V2_PROCESSED + 1)]
    + [("embedding", n) for n in range(1, V2_PROCESSED + 1)]
    + [("write", n) for n in range(1, 9)]
    + [("entities", 1), ("indexes", 1), ("indexes", 2), ("record", 1), ("record", 2)]
)
KILL_SEED = 20261204
QUERIES = ("Who was born in Copenhagen?", "Marie Curie Nobel Prize", "Anvils 2019")


def write_docs(folder: Path, docs: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in docs.items():
        (folder / name).write_text(text, encoding="utf-8")


def corpus_v2(folder: Path) -> Path:
    write_docs(folder, {**CORPUS_V1, **CORPUS_V2_CHANGES})
    (folder / V2_DELETED).unlink()
    return folder


def seeded_points(count: int) -> list[tuple[str, int]]:
    """Pick ``count`` kill points by a fixed seed, covering as many kinds of point as fit."""
    rng = random.Random(KILL_SEED)
    kinds = sorted({point for point, _ in KILL_POINTS})
    chosen = [rng.choice([item for item in KILL_POINTS if item[0] == kind]) for kind in rng.sample(kinds, min(count, len(kinds)))]
    rest = [item for item in KILL_POINTS if item not in chosen]
    chosen += rng.sample(rest, count - len(chosen))
    return sorted(chosen, key=KILL_POINTS.index)


def table_contents(db: Path, name: str, version: int | None = None) -> tuple[pl.DataFrame, np.ndarray | None]:
    """Return a table's rows sorted by id without run-specific columns, and its vectors apart."""
    frame = pl.from_arrow(Snapshot.open(str(db), version=version).arrow(name))
    frame = frame.drop([column for column in ("updated_at", "run_id") if column in frame.columns])
    frame = frame.sort(frame.columns[0])
    vectors = None
    if "vector" in frame.columns:
        vectors = np.array(frame["vector"].to_list(), dtype=np.float32).reshape(frame.height, -1)
        frame = frame.drop("vector")
    return frame, vectors


def assert_same_index(db: Path, reference: Path) -> None:
    for name in DATA_TABLES:
        rows, vectors = table_contents(db, name)
        expected_rows, expected_vectors = table_contents(reference, name)
        assert rows.equals(expected_rows), f"table {name} differs from the uninterrupted run"
        if expected_vectors is not None:
            assert np.allclose(vectors, expected_vectors, atol=1e-5), f"vectors of {name} differ"


def reader_view(db: Path, embedder: Embedder, version: int | None = None) -> dict:
    """Return what readers of one index version get: its version, row counts and search results."""
    snapshot = Snapshot.open(str(db), version=version)
    searcher = ChunkSearcher(snapshot, embedder)
    return {
        "version": snapshot.version,
        "counts": {name: snapshot.table(name).count_rows() for name in DATA_TABLES},
        "search": {query: [hit.chunk_id for hit in searcher.search(query, groups=("public",), limit=3)] for query in QUERIES},
    }


@pytest.fixture(scope="module")
def head():
    from tests.test_cluster import LocalCluster

    cluster = LocalCluster(object_store_bytes=300_000_000)
    try:
        cluster.start(workers=0, cpus=2)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def kill_setup(tmp_path_factory, ray_local):
    """Index version 1, a never-interrupted version 2 to compare with, and the embedder."""
    root = tmp_path_factory.mktemp("kills")
    settings = root / "ponder.toml"
    settings.write_text(RUN_SETTINGS, encoding="utf-8")
    config = IndexConfig.from_file(settings)
    write_docs(root / "corpus-v1", CORPUS_V1)
    version_1 = root / "index-v1"
    run_index(root / "corpus-v1", str(version_1), config=config)
    corpus = corpus_v2(root / "corpus-v2")
    reference = root / "reference"
    shutil.copytree(version_1, reference)
    result = run_index(corpus, str(reference), config=config)
    assert result.version == 2
    embedder = Embedder()
    return {
        "root": root,
        "settings": settings,
        "config": config,
        "corpus": corpus,
        "version_1": version_1,
        "reference": reference,
        "embedder": embedder,
        "view_1": reader_view(version_1, embedder),
    }


def kill_and_resume(setup: dict, head, point: str, count: int) -> None:
    db = setup["root"] / f"index-{point}-{count}"
    shutil.copytree(setup["version_1"], db)
    env = {**head.driver_env, "PONDER_FAULT_AFTER": f"{point}:{count}"}
    job = subprocess.run(
        [
            sys.executable, "-m", "jobs.cli", "index", str(setup["corpus"]), "--db", str(db),
            "--ray-address", head.address, "--config", str(setup["settings"]),
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )

    assert job.returncode == -signal.SIGKILL, f"{point}:{count} was not reached:\n{job.stderr[-3000:]}"
    assert reader_view(db, setup["embedder"], version=1) == setup["view_1"], f"version 1 changed after {point}:{count}"
    if (point, count) != ("record", 2):
        assert reader_view(db, setup["embedder"]) == setup["view_1"], f"readers left version 1 after {point}:{count}"

    resumed = run_index(setup["corpus"], str(db), config=setup["config"])

    assert resumed.version == 2
    assert_same_index(db, setup["reference"])
    shutil.rmtree(db)


def test_seeded_points_cover_kinds():
    points = seeded_points(20)

    assert len(points) == len(set(points)) == 20
    assert {point for point, _ in points} == {point for point, _ in KILL_POINTS}


@pytest.mark.parametrize(("point", "count"), seeded_points(3))
def test_killed_run_recovers(kill_setup, head, point, count):
    kill_and_resume(kill_setup, head, point, count)


@pytest.mark.slow
@pytest.mark.parametrize(("point", "count"), seeded_points(20))
def test_killed_run_recovers_everywhere(kill_setup, head, point, count):
    kill_and_resume(kill_setup, head, point, count)


# -- the hook itself -------------------------------------------------------------------


def test_fault_plan_inert_when_unset():
    plan = FaultPlan.from_environment({})

    assert not plan.active
    plan.reach("write")
    vectors = np.ones((2, 3), dtype=np.float32)
    assert plan.corrupt("any", vectors) is vectors


@pytest.mark.parametrize("value", ["write", "write:0", "write:x", "flush:2", "write:2:explode"])
def test_fault_plan_rejects_bad_point(value):
    with pytest.raises(FaultConfigError, match="PONDER_FAULT_AFTER must be POINT:N"):
        FaultPlan.from_environment({"PONDER_FAULT_AFTER": value})


def test_fault_plan_raises_at_count():
    plan = FaultPlan.from_environment({"PONDER_FAULT_AFTER": "write:2:enospc"})

    plan.reach("write")
    plan.reach("delete")
    with pytest.raises(OSError, match="No space left"):
        plan.reach("write")


# -- unusable embeddings ---------------------------------------------------------------


def test_bad_vectors_reject_only_their_documents(tmp_path, ray_local, monkeypatch):
    corpus, db = tmp_path / "corpus", tmp_path / "index"
    write_docs(corpus, CORPUS_V1)
    run_index(corpus, str(db))
    old_curie = table_contents(db, "chunks")[0].filter(pl.col("doc_id") == "curie.txt")
    write_docs(corpus, CORPUS_V2_CHANGES)
    monkeypatch.setenv("PONDER_FAULT_VECTORS", "nan:curie.txt,empty:meitner.txt,zero:franklin.txt")

    result = run_index(corpus, str(db))

    documents = table_contents(db, "documents")[0]
    chunks = table_contents(db, "chunks")[0]
    run = IndexStore(str(db)).current_run()
    skipped = {item["source"]: item["reason"] for item in json.loads(run.row["skipped_json"])}
    assert result.version == 2
    assert sorted(document.doc_id for document in result.plan.added) == ["figures.csv", "noether.md"]
    assert result.plan.changed == []
    assert "non-finite" in skipped["curie.txt"]
    assert "previously indexed version stays" in skipped["curie.txt"]
    assert "0 vectors" in skipped["meitner.txt"]
    assert "not indexed" in skipped["meitner.txt"]
    assert "empty or non-finite" in skipped["franklin.txt"]
    assert run.row["n_skipped"] == 3
    assert run.row["n_added"] == 2
    assert json.loads(run.row["counts_json"])["documents_rejected"] == 3
    assert chunks.filter(pl.col("doc_id") == "curie.txt").equals(old_curie)
    assert "meitner.txt" not in documents["doc_id"].to_list()
    assert "franklin.txt" not in documents["doc_id"].to_list()
    assert {"noether.md", "figures.csv"} <= set(documents["doc_id"].to_list())

    monkeypatch.delenv("PONDER_FAULT_VECTORS")
    retry = run_index(corpus, str(db))

    assert sorted(document.doc_id for document in retry.plan.added) == ["franklin.txt", "meitner.txt"]
    assert [document.doc_id for document in retry.plan.changed] == ["curie.txt"]
    assert "polonium" in " ".join(table_contents(db, "chunks")[0].filter(pl.col("doc_id") == "curie.txt")["text"])


# -- full disks and read-only folders --------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("write:3:enospc", r"no space left on the device .* free space on that device"),
        ("indexes:1:enospc", r"no space left on the device .* free space on that device"),
        ("delete:2:eacces", r"permission denied .* chmod -R u\+w"),
    ],
)
def test_write_failure_keeps_previous_version(tmp_path, ray_local, monkeypatch, fault, expected):
    corpus, db = tmp_path / "corpus", tmp_path / "index"
    write_docs(corpus, CORPUS_V1)
    run_index(corpus, str(db))
    before = {name: table_contents(db, name)[0] for name in DATA_TABLES}
    corpus_v2(corpus)
    monkeypatch.setenv("PONDER_FAULT_AFTER", fault)

    with pytest.raises(IndexWriteError, match=expected) as raised:
        run_index(corpus, str(db))

    store = IndexStore(str(db))
    assert str(db) in str(raised.value)
    assert "Readers still see index version 1" in str(raised.value)
    assert store.current_run().version == 1
    for name in DATA_TABLES:
        assert table_contents(db, name)[0].equals(before[name]), f"{name} changed in version 1"
        # The failed run's writes were undone at once, not only hidden from readers.
        assert store.open(name).count_rows() == before[name].height, f"{name} keeps partial writes"

    monkeypatch.delenv("PONDER_FAULT_AFTER")
    assert run_index(corpus, str(db)).version == 2


# The text of the error LanceDB 0.40 raised when an unprivileged user added rows to a
# read-only table folder.
LANCE_PERMISSION_ERROR = (
    'lance error: LanceError(IO): Permission denied (os error 13) at path "/srv/index/chunks.lance/data/.tmp1", '
    "lance-io-13.0.0/src/object_store.rs:1006:34"
)


def test_lance_permission_error_explained():
    error = RuntimeError(LANCE_PERMISSION_ERROR)

    message = str(write_error("/srv/index", error, version=3))

    assert is_storage_error(error)
    assert storage_errno(error) == 13
    assert "permission denied" in message
    assert "chmod -R u+w /srv/index" in message
    assert "Readers still see index version 3" in message


def test_other_runtime_error_not_storage():
    assert not is_storage_error(RuntimeError("embedding stage returned 3 vectors for 4 chunks"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders, so chmod cannot make one")
def test_read_only_index_rejected(tmp_path, ray_local):
    corpus, db = tmp_path / "corpus", tmp_path / "index"
    write_docs(corpus, CORPUS_V1)
    run_index(corpus, str(db))
    corpus_v2(corpus)
    modes = {path: path.stat().st_mode for path in [db, *db.rglob("*")]}
    for path in modes:
        path.chmod(stat.S_IMODE(modes[path]) & ~0o222)
    try:
        with pytest.raises(IndexWriteError, match=r"permission denied .* chmod -R u\+w"):
            run_index(corpus, str(db))
        assert Snapshot.open(str(db)).version == 1
    finally:
        for path, mode in modes.items():
            path.chmod(stat.S_IMODE(mode))


def test_run_record_names_user_and_host(kill_setup):
    import getpass
    import socket

    run = IndexStore(str(kill_setup["reference"])).current_run()

    assert run.row["user"] == getpass.getuser()
    assert run.row["host"] == socket.gethostname()
