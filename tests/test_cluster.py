"""Indexing on a real two-node Ray cluster: a head node and a worker node in separate processes.

Both nodes run on this machine with one CPU each, listen on the loopback address only,
use their own short session folders and a token generated for the test, and are stopped
by the processes the test started. The index job runs in a subprocess because the test
process may already hold the session's local Ray.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import psutil
import pytest

from indexer.config import IndexConfig
from indexer.store import IndexStore, Snapshot
from jobs.index_job import actor_share, run_index

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_PARAGRAPHS = ROOT / "sample" / "corpus" / "hotpotqa-paragraphs.jsonl"
START_TIMEOUT = 120.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LocalCluster:
    """A Ray head node and worker nodes on this machine, each a separate process with one CPU.

    Ray 2.60's ``ray start`` replaces 127.0.0.1 with the machine's routable address, and
    its servers then listen on every interface. So each node is started by
    :func:`serve_node` in its own process (``python -m tests.test_cluster node ...``),
    which builds the node with ``node_ip_address="127.0.0.1"``: every server of it then
    listens on the loopback address only. Nodes get free ports, short session folders and
    a token generated for this cluster, so nothing collides with another Ray here.
    """

    def __init__(self, *, object_store_bytes: int = 200_000_000) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.object_store_bytes = object_store_bytes
        self.auth = {
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(32),
            # Makes Ray keep 127.0.0.1 as this machine's node address in drivers and nodes.
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "RAY_USAGE_STATS_ENABLED": "0",
        }
        self.nodes: list[tuple[subprocess.Popen, str]] = []

    @property
    def driver_env(self) -> dict[str, str]:
        """Environment for a driver process that joins this cluster."""
        return {**os.environ, "PONDER_PROGRESS": "0", **self.auth}

    def start(self, workers: int = 1, *, cpus: int = 1) -> None:
        self._start_node(["--head-port", str(self.port)], cpus)
        self._wait_for_nodes(1)
        for _ in range(workers):
            self._start_node(["--address", self.address], cpus)
        self._wait_for_nodes(1 + workers)

    def _start_node(self, role: list[str], cpus: int) -> None:
        temp_dir = tempfile.mkdtemp(prefix="pr-")
        command = [
            sys.executable, "-m", "tests.test_cluster", "node", *role, "--temp-dir", temp_dir,
            "--cpus", str(cpus), "--object-store-bytes", str(self.object_store_bytes),
        ]
        with open(Path(temp_dir) / "node.log", "w") as log:
            process = subprocess.Popen(
                command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.auth},
                start_new_session=True,
            )
        self.nodes.append((process, temp_dir))

    def _wait_for_nodes(self, count: int) -> None:
        """Wait until the head's GCS log shows ``count`` registered nodes."""
        head_dir = self.nodes[0][1]
        gcs_log = Path(head_dir, "session_latest", "logs", "gcs_server.out")
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            for process, temp_dir in self.nodes:
                if process.poll() is not None:
                    log = Path(temp_dir, "node.log").read_text(errors="replace")[-3000:]
                    message = f"Ray node process exited with code {process.returncode}:\n{log}"
                    raise RuntimeError(message)
            if gcs_log.exists() and gcs_log.read_text(errors="replace").count("Registering new node") >= count:
                return
            time.sleep(0.5)
        message = f"{count} Ray nodes did not register within {START_TIMEOUT:.0f} s; see {gcs_log}"
        raise TimeoutError(message)

    def stop(self) -> None:
        """Stop the worker nodes, then the head, and remove their session folders."""
        for process, _ in reversed(self.nodes):
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                pass
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()
        # A Ray process that outlived its node process is found by its command line,
        # which names the node's session folder, unique to this cluster.
        folders = [temp_dir for _, temp_dir in self.nodes]
        for process in psutil.process_iter(["pid", "cmdline"]):
            command_line = " ".join(process.info["cmdline"] or [])
            if any(folder in command_line for folder in folders):
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                    process.kill()
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
        self.nodes = []


def serve_node(argv: list[str]) -> None:
    """Start one Ray node as children of this process and keep it until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m tests.test_cluster node")
    role = parser.add_mutually_exclusive_group(required=True)
    role.add_argument("--head-port", type=int, help="Start a head node whose GCS listens on this port.")
    role.add_argument("--address", help="Join the cluster whose head GCS is at HOST:PORT.")
    parser.add_argument("--temp-dir", required=True, help="Session folder; keep it short for Ray's socket paths.")
    parser.add_argument("--cpus", type=int, default=1, help="CPUs the node offers.")
    parser.add_argument("--object-store-bytes", type=int, default=200_000_000, help="Object store size in bytes.")
    args = parser.parse_args(argv)

    from ray._private.node import Node
    from ray._private.parameter import RayParams

    params = RayParams(
        node_ip_address="127.0.0.1",
        num_cpus=args.cpus,
        object_store_memory=args.object_store_bytes,
        temp_dir=args.temp_dir,
        min_worker_port=0,
        max_worker_port=0,
        object_manager_port=free_port(),
        dashboard_agent_listen_port=free_port(),
        runtime_env_agent_port=free_port(),
        metrics_export_port=free_port(),
        include_dashboard=False,
        dashboard_port=free_port(),
    )
    head = args.head_port is not None
    if head:
        params.gcs_server_port = args.head_port
    else:
        params.gcs_address = args.address
        params.include_log_monitor = False
    # shutdown_at_exit stops the node's processes when this process exits, SIGTERM included.
    Node(params, head=head, shutdown_at_exit=True, spawn_reaper=True)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    print("node started", flush=True)
    while True:
        time.sleep(1)


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def cluster():
    cluster = LocalCluster()
    try:
        cluster.start(workers=1)
        yield cluster
    finally:
        cluster.stop()


def small_corpus(folder: Path, n_documents: int = 30) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = SAMPLE_PARAGRAPHS.read_text(encoding="utf-8").splitlines()[:n_documents]
    (folder / "paragraphs.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def table_frame(db: Path, table: str, columns: list[str], key: list[str]) -> pl.DataFrame:
    return pl.from_arrow(Snapshot.open(str(db)).arrow(table, columns)).sort(key)


def test_cluster_run_matches_local(tmp_path, cluster, ray_local):
    corpus = small_corpus(tmp_path / "corpus")
    cluster_db, local_db = tmp_path / "cluster-index", tmp_path / "local-index"
    # Small batches give the pipeline enough blocks to keep actors on both nodes busy.
    config = tmp_path / "ponder.toml"
    config.write_text("[index]\nbatch_size = 4\n", encoding="utf-8")

    job = subprocess.run(
        [
            sys.executable, "-m", "jobs.cli", "index", str(corpus), "--db", str(cluster_db),
            "--ray-address", cluster.address, "--config", str(config), "--json",
        ],
        cwd=ROOT, env=cluster.driver_env, capture_output=True, text=True, timeout=600,
    )
    assert job.returncode == 0, job.stderr[-3000:]
    summary = json.loads(job.stdout)
    run = IndexStore(str(cluster_db)).current_run()

    assert summary["added"] == 30
    assert summary["counts"]["ray_nodes"] == 2
    assert json.loads(run.row["counts_json"])["ray_nodes"] == 2
    assert run.row["ray_address"] == cluster.address

    run_index(corpus, str(local_db), config=IndexConfig.from_file(config))
    for table, columns, key in [
        ("documents", ["doc_id", "title", "content_hash", "n_chunks", "n_tables"], ["doc_id"]),
        ("chunks", ["chunk_id", "doc_id", "text", "start", "end", "n_tokens"], ["chunk_id"]),
        ("entities", ["key", "name", "label", "mention_count", "doc_count"], ["key"]),
        ("mentions", ["mention_id", "entity_id", "chunk_id", "surface"], ["mention_id"]),
        ("relations", ["relation_id", "doc_id", "source_id", "target_id", "label", "weight", "chunk_id", "sentence"], ["relation_id"]),
        ("attributes", ["attribute_id", "entity_id", "attribute", "value"], ["attribute_id"]),
    ]:
        on_cluster = table_frame(cluster_db, table, columns, key)
        local = table_frame(local_db, table, columns, key)
        assert on_cluster.height > 0, table
        assert on_cluster.equals(local), table
    cluster_vectors = table_frame(cluster_db, "chunks", ["chunk_id", "vector"], ["chunk_id"])["vector"].to_list()
    local_vectors = table_frame(local_db, "chunks", ["chunk_id", "vector"], ["chunk_id"])["vector"].to_list()
    assert np.allclose(np.array(cluster_vectors), np.array(local_vectors), atol=1e-5)




@pytest.mark.parametrize(
    ("cpus", "actors", "node_cpus", "expected"),
    [
        (2, 3, [2.0], 2 / 3),  # one node: the even share
        (2, 3, [1.0, 1.0], 0.5),  # 2/3 CPU fits once per 1-CPU node, so three actors need halves
        (8, 8, [4.0, 4.0], 1.0),
        (8, 8, [0.0, 4.0, 4.0], 1.0),  # a head without CPUs takes no actors
        (3, 4, [1.0, 2.0], 2 / 3),  # one actor on the 1-CPU node, three on the 2-CPU node
        (2, 3, [], 2 / 3),  # unknown nodes: the even share
    ],
)
def test_actor_share_fits_nodes(cpus, actors, node_cpus, expected):
    share = actor_share(cpus, actors, node_cpus)

    assert share == pytest.approx(expected)
    assert not node_cpus or sum(int(cpu / share + 1e-9) for cpu in node_cpus) >= actors

if __name__ == "__main__" and sys.argv[1:2] == ["node"]:
    serve_node(sys.argv[2:])
