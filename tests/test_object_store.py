"""An index on S3: a real moto S3 server process on the loopback address, reached over HTTP.

Credentials, region and endpoint come from the standard AWS environment variables, the
way a deployment passes them; the credentials are dummies that only moto accepts.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from indexer.store import IndexBusyError, IndexStore, Snapshot, WriterLease, storage_options_for
from jobs.cli import app
from jobs.index_job import run_index
from jobs.ops import LiveReader, rollback

MOTO_SERVER = Path(sys.executable).with_name("moto_server")
BUCKET = "ponder-test"

DOCUMENTS = {
    "curie.txt": "Marie Curie was a physicist born in Warsaw. She won the Nobel Prize in Physics in 1903 with Pierre Curie.",
    "turing.md": "# Alan Turing\n\nAlan Turing was an English mathematician. He worked at Bletchley Park during the Second World War.",
    "lovelace.txt": "Ada Lovelace worked with Charles Babbage on the Analytical Engine in London.",
    "bohr.txt": "Niels Bohr was a Danish physicist who founded the Institute for Theoretical Physics in Copenhagen.",
    "meitner.txt": "Lise Meitner and Otto Hahn discovered nuclear fission in Berlin in 1938.",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    """Start moto's S3 server, point the AWS environment variables at it, create the bucket."""
    if not MOTO_SERVER.exists():
        pytest.skip(f"{MOTO_SERVER} not found; install the dev dependencies (moto[server])")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                break
            except (urllib.error.URLError, ConnectionError):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start on {endpoint}") from None
                time.sleep(0.1)
        with pytest.MonkeyPatch.context() as patch:
            for name, value in {
                "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_ACCESS_KEY_ID": "ponder-test-key",
                "AWS_SECRET_ACCESS_KEY": "ponder-test-secret",
                "AWS_REGION": "us-east-1",
                "AWS_ENDPOINT_URL": endpoint,
            }.items():
                patch.setenv(name, value)
            for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT", "AWS_ENDPOINT_URL_S3", "PONDER_CONFIG"):
                patch.delenv(name, raising=False)
            import boto3

            boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
            yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def embedder():
    from indexer.embedding import Embedder

    return Embedder()


@pytest.fixture(scope="module")
def searcher_factory(embedder):
    from solver.search import ChunkSearcher

    return lambda snapshot: ChunkSearcher(snapshot, embedder=embedder)


def write_docs(folder: Path, docs: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in docs.items():
        (folder / name).write_text(text, encoding="utf-8")


def frame(uri: str, table: str, columns: list[str], key: str) -> pl.DataFrame:
    return pl.from_arrow(Snapshot.open(uri).arrow(table, columns)).sort(key)


@pytest.fixture(scope="module")
def s3_history(s3_endpoint, tmp_path_factory, ray_local):
    """A full build into S3 and an incremental run, with a local-folder build of each state."""
    base = tmp_path_factory.mktemp("s3")
    corpus, uri = base / "corpus", f"s3://{BUCKET}/index"
    write_docs(corpus, DOCUMENTS)
    first = run_index(corpus, uri)
    first_local = base / "local-1"
    run_index(corpus, str(first_local))

    (corpus / "curie.txt").write_text("Marie Curie was a chemist who discovered polonium in Paris.", encoding="utf-8")
    (corpus / "turing.md").unlink()
    write_docs(corpus, {"hopper.md": "# Grace Hopper\n\nGrace Hopper developed COBOL at Remington Rand in Philadelphia."})
    second = run_index(corpus, uri)
    return {"uri": uri, "corpus": corpus, "first": first, "second": second, "first_local": first_local}


# -- storage options ------------------------------------------------------------------


def test_storage_options_from_environment(s3_endpoint):
    options = storage_options_for("s3://bucket/index")

    assert options["aws_endpoint"] == s3_endpoint
    assert options["aws_region"] == "us-east-1"
    assert options["aws_access_key_id"] == "ponder-test-key"
    assert options["allow_http"] == "true"


def test_storage_options_precedence(tmp_path):
    settings = tmp_path / "ponder.toml"
    settings.write_text('[storage]\naws_region = "eu-west-1"\nallow_http = false\n', encoding="utf-8")
    environ = {
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_ENDPOINT": "http://ignored:1",
        "PONDER_CONFIG": str(settings),
    }

    options = storage_options_for("s3://bucket/index", {"timeout": "60s"}, environ=environ)

    assert options == {
        "aws_region": "eu-west-1",
        "aws_endpoint": "http://127.0.0.1:9000",
        "allow_http": "false",
        "timeout": "60s",
    }


def test_storage_options_remote_http_not_allowed():
    options = storage_options_for("s3://bucket/index", environ={"AWS_ENDPOINT_URL": "http://storage.example:9000"})

    assert "allow_http" not in options


def test_storage_options_local_folder_ignores_environment():
    assert storage_options_for("/tmp/index", environ={"AWS_REGION": "us-east-1"}) is None


# -- runs on S3 -----------------------------------------------------------------------


def test_s3_full_build_matches_local(s3_history):
    uri, local = s3_history["uri"], str(s3_history["first_local"])
    snapshot = Snapshot.open(uri, version=1)

    assert s3_history["first"].version == 1
    assert snapshot.table("documents").count_rows() == len(DOCUMENTS)
    for table, columns, key in [
        ("chunks", ["chunk_id", "text"], "chunk_id"),
        ("entities", ["key", "name"], "key"),
        ("relations", ["relation_id", "source_id", "target_id", "label", "weight"], "relation_id"),
    ]:
        on_s3 = pl.from_arrow(snapshot.arrow(table, columns)).sort(key)
        assert on_s3.height > 0, table
        assert on_s3.equals(frame(local, table, columns, key)), table


def test_s3_incremental_run(s3_history):
    uri, second = s3_history["uri"], s3_history["second"]
    documents = frame(uri, "documents", ["doc_id"], "doc_id")["doc_id"].to_list()
    chunks = frame(uri, "chunks", ["chunk_id", "doc_id", "text"], "chunk_id")

    assert second.version == 2
    assert [document.doc_id for document in second.plan.changed] == ["curie.txt"]
    assert second.plan.deleted == ["turing.md"]
    assert documents == ["bohr.txt", "curie.txt", "hopper.md", "lovelace.txt", "meitner.txt"]
    assert chunks.filter(pl.col("doc_id") == "turing.md").height == 0
    assert "polonium" in " ".join(chunks.filter(pl.col("doc_id") == "curie.txt")["text"])


def test_s3_lease_released_after_run(s3_history):
    store = IndexStore(s3_history["uri"])

    assert WriterLease(store, seconds=60, owner="test").holder() is None


def test_s3_cli_runs_lists_both(s3_history):
    result = runner_invoke(["runs", "--db", s3_history["uri"], "--json"])

    assert result.exit_code == 0, result.output
    assert [row["version"] for row in json.loads(result.output)][:2] == [1, 2]


def runner_invoke(args: list[str]):
    return CliRunner().invoke(app, args)


def test_s3_reader_moves_after_run(s3_history, searcher_factory, tmp_path):
    uri = s3_history["uri"]
    corpus = tmp_path / "corpus"
    shutil.copytree(s3_history["corpus"], corpus)
    # A changed document makes the run delete rows early, long before it records itself.
    write_docs(corpus, {
        "franklin.txt": "Rosalind Franklin made X-ray images of DNA at King's College London.",
        "lovelace.txt": "Ada Lovelace wrote the first published program for the Analytical Engine.",
    })
    live = LiveReader(uri, searcher_factory)
    store = IndexStore(uri)
    start_version = live.version
    pinned_documents = live.snapshot.run.table_versions["documents"]
    baseline = [hit.chunk_id for hit in live.reader.search("Who developed COBOL?", limit=5)]
    errors: list[BaseException] = []

    def index() -> None:
        try:
            run_index(corpus, uri)
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
            assert recorded == start_version + 1
        elif moved and recorded == start_version:
            writes_seen += 1
            assert live.version == start_version
            assert [hit.chunk_id for hit in live.reader.search("Who developed COBOL?", limit=5)] == baseline
            assert "franklin.txt" not in {hit.doc_id for hit in live.reader.search("X-ray images of DNA", limit=5)}
        time.sleep(0.1)
    writer.join()
    live.refresh()

    assert not errors, errors
    assert writes_seen > 0
    assert live.version == start_version + 1
    assert "franklin.txt" in {hit.doc_id for hit in live.reader.search("X-ray images of DNA", limit=3)}


def test_s3_rollback(s3_history, tmp_path):
    uri = s3_history["uri"]
    before = IndexStore(uri).current_run().version

    run = rollback(uri, 1)

    documents = frame(uri, "documents", ["doc_id"], "doc_id")["doc_id"].to_list()
    assert run.version == before + 1
    assert documents == sorted(DOCUMENTS)


# -- the writer lease -----------------------------------------------------------------


def test_s3_second_run_rejected(s3_endpoint, tmp_path):
    uri = f"s3://{BUCKET}/leased"
    corpus = tmp_path / "corpus"
    write_docs(corpus, {"bohr.txt": DOCUMENTS["bohr.txt"]})

    with IndexStore(uri).lock(), pytest.raises(IndexBusyError, match=r"holds the writer lease on s3://ponder-test/leased \(pid"):
        run_index(corpus, uri)


def test_s3_expired_lease_taken_over(s3_endpoint):
    store = IndexStore(f"s3://{BUCKET}/expiry")
    stale = WriterLease(store, seconds=1, owner="killed run")
    newcomer = WriterLease(store, seconds=60, owner="next run")

    assert stale.acquire() is True
    assert newcomer.acquire() is False
    assert newcomer.holder()["owner"] == "killed run"
    time.sleep(1.2)
    assert newcomer.acquire() is True
    with pytest.raises(IndexBusyError, match="lost the writer lease"):
        stale.check()
    newcomer.release()
    assert newcomer.holder() is None


def test_s3_racing_acquires_one_winner(s3_endpoint):
    uri = f"s3://{BUCKET}/race"
    IndexStore(uri).lease_table()
    leases = [WriterLease(IndexStore(uri), seconds=60, owner=f"run {i}") for i in range(4)]
    barrier = threading.Barrier(len(leases))
    results: list[bool] = [False] * len(leases)

    def take(i: int) -> None:
        barrier.wait()
        results[i] = leases[i].acquire()

    threads = [threading.Thread(target=take, args=(i,)) for i in range(len(leases))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(results) == 1
    winner = leases[results.index(True)]
    assert winner.holder()["owner"] == winner.owner


def test_s3_lock_waits_for_release(s3_endpoint):
    uri = f"s3://{BUCKET}/waiting"
    holder = IndexStore(uri, lease_seconds=30)
    waiter = IndexStore(uri, lease_seconds=2)
    acquired_at: list[float] = []
    started = time.monotonic()

    with holder.lock():
        thread = threading.Thread(target=lambda: _lock_and_note(waiter, acquired_at))
        thread.start()
        time.sleep(1.0)
        assert not acquired_at
    thread.join(30)

    assert acquired_at
    assert acquired_at[0] - started >= 1.0


def _lock_and_note(store: IndexStore, acquired_at: list[float]) -> None:
    with store.lock(wait=True):
        acquired_at.append(time.monotonic())


def test_s3_lease_renewed_during_hold(s3_endpoint):
    store = IndexStore(f"s3://{BUCKET}/renewal", lease_seconds=1)

    with store.lock():
        time.sleep(1.6)
        lease = WriterLease(IndexStore(f"s3://{BUCKET}/renewal"), seconds=60, owner="other")
        assert lease.acquire() is False


def test_secrets_not_in_repr_or_logs(s3_endpoint, caplog):
    caplog.set_level("DEBUG", logger="ponder")
    store = IndexStore(f"s3://{BUCKET}/logged")

    with store.lock():
        pass

    assert "ponder-test-secret" not in repr(store)
    assert "ponder-test-secret" not in caplog.text
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == "ponder-test-secret"
