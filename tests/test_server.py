"""The HTTP API of ``ponder serve``, run as a real server process on 127.0.0.1.

One server runs over a copy of the sample index in local mode. A second one serves a
small corpus with a restricted ``hr`` document and is configured with two API keys: one
in the config file (stored hashed) that grants ``hr``, and one in ``PONDER_API_KEYS``
that grants only ``public``.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import polars as pl
import pytest

from jobs.server_config import KEYS_ENV, ConfigError, ServeConfig, hash_key
from jobs.solver_worker import QueueFullError, SolverWorker

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "What government position was held by the woman who portrayed Corliss Archer in the film Kiss and Tell?"

HR_KEY = "hr-team-key-0123456789abcdef"
PUBLIC_KEY = "public-reader-key-fedcba9876543210"
RECORDS = [
    {
        "id": "pub-harbor",
        "title": "Northwind Harbor",
        "text": "Northwind Harbor is a port town on the Grey Coast. Northwind Harbor ships timber and salt.",
    },
    {
        "id": "pub-ferry",
        "title": "Grey Coast ferry",
        "text": "The Grey Coast ferry links Northwind Harbor with the islands twice a day.",
    },
    {
        "id": "hr-larkspur",
        "title": "Operation Larkspur",
        "text": (
            "Operation Larkspur is the plan to move the Northwind Harbor office to Eastbay. "
            "Operation Larkspur is led by Theodora Vance and will cut 140 positions."
        ),
        "groups": ["hr"],
    },
]
# Strings found only in the restricted document and in no question below.
RESTRICTED_MARKERS = ("Theodora", "Vance", "Eastbay", "140 positions", "hr-larkspur")
RESTRICTED_QUESTIONS = [
    "Who leads Operation Larkspur?",
    "Where will the Northwind Harbor office move?",
    "How many positions will Operation Larkspur cut?",
]


# -- running the server ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    """A ``ponder serve`` subprocess on a free loopback port, stopped by its pid."""

    def __init__(self, db: Path, log: Path, *, config: Path | None = None, keys_env: str | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {name: value for name, value in os.environ.items() if name not in {KEYS_ENV, "PONDER_CONFIG"}}
        if keys_env is not None:
            env[KEYS_ENV] = keys_env
        command = [sys.executable, "-m", "jobs.cli", "serve", "--db", str(db), "--port", str(self.port)]
        if config is not None:
            command += ["--config", str(config)]
        self._log_file = log.open("w", encoding="utf-8")
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=self._log_file, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"ponder serve exited with status {self.process.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        self.stop()
        pytest.fail(f"ponder serve was not ready after {timeout} s:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, 15)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, 9)
                self.process.wait()
        self._log_file.close()


@pytest.fixture(scope="module")
def server(sample_index, tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    db = root / "index"
    shutil.copytree(sample_index, db)
    process = ServerProcess(db, root / "server.log")
    process.wait_ready()
    with httpx.Client(base_url=process.url, timeout=120) as client:
        yield client
    process.stop()


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory, ray_local):
    from jobs.index_job import run_index

    root = tmp_path_factory.mktemp("serve-keys")
    corpus = root / "corpus"
    corpus.mkdir()
    (corpus / "records.jsonl").write_text("\n".join(json.dumps(record) for record in RECORDS) + "\n", encoding="utf-8")
    db = root / "index"
    run_index(corpus, str(db))
    config = root / "ponder.toml"
    config.write_text(
        "[index]\nflush_documents = 100\n\n"
        "[serve]\nqueue_limit = 4\n\n"
        f'[[serve.keys]]\nname = "hr-team"\nsha256 = "{hash_key(HR_KEY)}"\ngroups = ["public", "hr"]\n',
        encoding="utf-8",
    )
    keys_env = json.dumps([{"name": "reader", "key": PUBLIC_KEY, "groups": ["public"]}])
    process = ServerProcess(db, root / "server.log", config=config, keys_env=keys_env)
    process.wait_ready()
    with httpx.Client(base_url=process.url, timeout=120) as client:
        yield client, process
    process.stop()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def read_events(response: httpx.Response) -> list[tuple[str, dict]]:
    """Parse a text/event-stream body into (event, data) pairs, skipping comments."""
    events, kind, data = [], None, []
    for line in response.iter_lines():
        if line.startswith(":"):
            continue
        if not line:
            if kind is not None:
                events.append((kind, json.loads("\n".join(data))))
            kind, data = None, []
        elif line.startswith("event:"):
            kind = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            data.append(line.split(":", 1)[1].strip())
    return events


def export_frame(client: httpx.Client, headers: dict[str, str] | None = None) -> pl.DataFrame:
    response = client.get("/v1/traces/export", params={"format": "jsonl"}, headers=headers or {})
    assert response.status_code == 200, response.text
    if not response.content.strip():
        return pl.DataFrame()
    return pl.read_ndjson(io.BytesIO(response.content))


# -- answering ------------------------------------------------------------------------


def test_ask_returns_episode(server):
    response = server.post("/v1/ask", json={"question": QUESTION, "budget": 3000, "policy": "fixed"})

    assert response.status_code == 200, response.text
    episode = response.json()
    assert len(episode["episode_id"]) == 32
    assert episode["question"] == QUESTION
    assert episode["policy"] == "fixed"
    assert episode["budget"] == 3000
    assert episode["groups"] == ["public"]
    assert episode["steps"]
    assert 0 < episode["cost"] <= 3000
    assert episode["cost"] == pytest.approx(sum(step["cost"] for step in episode["steps"]), abs=0.05)
    assert episode["abstained"] or episode["answer"]
    for citation in episode["citations"]:
        assert citation["doc_id"]
        assert citation["sentence"]


def test_ask_uses_server_defaults(server):
    limits = server.get("/v1/stats").json()["limits"]

    episode = server.post("/v1/ask", json={"question": "Who portrayed Corliss Archer?"}).json()

    assert episode["budget"] == limits["default_budget"]
    assert episode["policy"] == limits["default_policy"]


def test_stream_steps_match_trace(server):
    with server.stream("POST", "/v1/ask/stream", json={"question": QUESTION, "budget": 4000}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = read_events(response)
    kinds = [kind for kind, _ in events]
    steps = [data for kind, data in events if kind == "step"]
    result = events[-1][1]
    stored = export_frame(server).filter(pl.col("episode_id") == result["episode_id"]).sort("step_index")

    assert kinds == ["step"] * len(steps) + ["result"]
    assert steps
    assert [step["index"] for step in steps] == list(range(len(steps)))
    assert steps == result["steps"]
    assert stored.height == len(steps)
    assert stored["action"].to_list() == [step["action"] for step in steps]
    assert stored["cost"].to_list() == pytest.approx([step["cost"] for step in steps], abs=0.01)
    assert stored["question"].unique().to_list() == [QUESTION]


def test_stream_rejects_before_streaming(server):
    response = server.post("/v1/ask/stream", json={"question": QUESTION, "policy": "no-such-policy"})

    assert response.status_code == 422
    assert "unknown policy 'no-such-policy'" in response.json()["error"]


# -- feedback and traces --------------------------------------------------------------


def test_feedback_stored(server):
    episode = server.post("/v1/ask", json={"question": "Who portrayed Corliss Archer?", "budget": 2000}).json()

    response = server.post(f"/v1/episodes/{episode['episode_id']}/feedback", json={"correct": False, "answer": "someone else"})
    stored = export_frame(server).filter(pl.col("episode_id") == episode["episode_id"])

    assert response.status_code == 200, response.text
    assert response.json() == {
        "episode_id": episode["episode_id"],
        "outcome": "wrong",
        "outcome_source": "user",
        "feedback_answer": "someone else",
    }
    assert stored.height == len(episode["steps"])
    assert set(stored["outcome"].to_list()) == {"wrong"}
    assert set(stored["outcome_source"].to_list()) == {"user"}


def test_feedback_unknown_episode(server):
    missing = server.post(f"/v1/episodes/{'0' * 32}/feedback", json={"correct": True})
    malformed = server.post("/v1/episodes/not-an-id/feedback", json={"correct": True})
    no_verdict = server.post(f"/v1/episodes/{'0' * 32}/feedback", json={})

    assert missing.status_code == 404
    assert "not found" in missing.json()["error"]
    assert malformed.status_code == 422
    assert "episode_id" in malformed.json()["error"]
    assert no_verdict.status_code == 422
    assert "correct" in no_verdict.json()["error"]


def test_gold_scores_trace(server):
    episode = server.post("/v1/ask", json={"question": QUESTION, "gold": ["a phrase nobody answers"]}).json()

    stored = export_frame(server).filter(pl.col("episode_id") == episode["episode_id"])

    assert set(stored["outcome"].to_list()) == {"wrong"}
    assert set(stored["outcome_source"].to_list()) == {"gold"}


def test_export_formats_readable(server):
    server.post("/v1/ask", json={"question": "Who portrayed Corliss Archer?", "budget": 2000})

    jsonl = server.get("/v1/traces/export", params={"format": "jsonl"})
    parquet = server.get("/v1/traces/export", params={"format": "parquet"})
    from_jsonl = pl.read_ndjson(io.BytesIO(jsonl.content))
    from_parquet = pl.read_parquet(io.BytesIO(parquet.content))

    assert jsonl.status_code == 200
    assert jsonl.headers["content-type"].startswith("application/x-ndjson")
    assert parquet.status_code == 200
    assert from_jsonl.height > 0
    assert from_parquet.height == from_jsonl.height == int(parquet.headers["x-row-count"])
    for column in ("episode_id", "step_index", "action", "cost", "features", "outcome", "groups", "user"):
        assert column in from_parquet.columns
    assert from_parquet.sort(["episode_id", "step_index"])["cost"].to_list() == from_jsonl.sort(["episode_id", "step_index"])["cost"].to_list()


def test_export_unknown_format(server):
    response = server.get("/v1/traces/export", params={"format": "csv"})

    assert response.status_code == 422
    assert "jsonl" in response.json()["error"]


# -- inspection -----------------------------------------------------------------------


def test_stats_report_index(server):
    ready = server.get("/readyz").json()

    stats = server.get("/v1/stats").json()

    assert stats["version"]
    assert stats["access"] == "local"
    assert stats["caller"] == {"user": "local", "groups": ["public"]}
    assert {"adaptive", "fixed"} <= set(stats["policies"])
    assert stats["index"]["version"] == ready["index_version"]
    assert stats["index"]["rows"]["documents"] > 0
    assert stats["index"]["rows"]["chunks"] > 0
    assert "db" not in stats["index"]


def test_health_and_readiness(server):
    live = server.get("/healthz")
    ready = server.get("/readyz")

    assert live.status_code == 200
    assert live.json() == {"status": "ok"}
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert ready.json()["capacity"] >= 1


def test_openapi_lists_endpoints(server):
    paths = server.get("/openapi.json").json()["paths"]

    assert server.get("/docs").status_code == 200
    for path in ("/v1/ask", "/v1/ask/stream", "/v1/episodes/{episode_id}/feedback", "/v1/traces/export", "/v1/stats"):
        assert path in paths


# -- bad input ------------------------------------------------------------------------

BAD_REQUESTS = [
    ({"question": ""}, 422, "question is empty"),
    ({"question": "   \n "}, 422, "question is empty"),
    ({"question": "x" * 2001}, 422, "the maximum is 2000"),
    ({"question": "Who\x00 wrote it?"}, 422, "control characters"),
    ({"question": "?!;--*"}, 422, "no letters or digits"),
    ({"question": QUESTION, "budget": 0}, 422, "budget must be above 0"),
    ({"question": QUESTION, "budget": -5}, 422, "budget must be above 0"),
    ({"question": QUESTION, "budget": 10_000_000}, 422, "budget must be at most"),
    ({"question": QUESTION, "budget": "lots"}, 422, "body.budget"),
    ({"question": QUESTION, "policy": "greedy"}, 422, "unknown policy 'greedy'"),
    ({"question": QUESTION, "policy": "learned"}, 422, "needs a controller model"),
    ({"question": QUESTION, "groups": ["hr"]}, 422, "body.groups: Extra inputs are not permitted"),
    ({"question": 42}, 422, "body.question"),
    ({"budget": 100}, 422, "body.question: Field required"),
    ({"question": QUESTION, "gold": [""]}, 422, "gold answer must be non-empty"),
    ([QUESTION], 422, "must be a JSON object"),
]


@pytest.mark.parametrize(("body", "status", "message"), BAD_REQUESTS)
def test_bad_request_rejected(server, body, status, message):
    response = server.post("/v1/ask", json=body)

    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_invalid_json_rejected(server):
    response = server.post("/v1/ask", content=b'{"question": "Who', headers={"Content-Type": "application/json"})

    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]


def test_huge_body_rejected(server):
    body = json.dumps({"question": "a " * 100_000}).encode()

    declared = server.post("/v1/ask", content=body, headers={"Content-Type": "application/json"})
    chunked = server.post("/v1/ask", content=iter([body[:1000], body[1000:]]), headers={"Content-Type": "application/json"})

    assert declared.status_code == 413
    assert "larger than the limit of 65536 bytes" in declared.json()["error"]
    assert chunked.status_code == 413
    assert "larger than the limit" in chunked.json()["error"]


def test_unknown_route_json_error(server):
    response = server.get("/v1/nothing-here")

    assert response.status_code == 404
    assert response.json() == {"error": "Not Found"}


@pytest.mark.parametrize(
    "question",
    [
        "Who portrayed Corliss Archer'); DROP TABLE chunks; --",
        "Corliss Archer\" OR 1=1 OR groups IS NOT NULL",
        "array_has_any(groups, ['hr']) Kiss and Tell",
        "Kiss AND Tell NOT film: \"Corliss\"~2 *",
        "Wer spielte Corliss Archer? 誰がコーリス・アーチャーを演じたか",
    ],
)
def test_hostile_question_answered_safely(server, question):
    response = server.post("/v1/ask", json={"question": question, "budget": 1500})

    assert response.status_code == 200, response.text
    assert response.json()["question"] == question
    assert response.json()["cost"] <= 1500


def test_local_mode_ignores_keys(server):
    stats = server.get("/v1/stats", headers=bearer(HR_KEY)).json()

    assert stats["caller"] == {"user": "local", "groups": ["public"]}


# -- keys and access groups -----------------------------------------------------------


def test_markers_absent_from_questions():
    for question in RESTRICTED_QUESTIONS:
        assert [marker for marker in RESTRICTED_MARKERS if marker in question] == []


def test_key_required_when_configured(keyed_server):
    client, _ = keyed_server

    missing = client.post("/v1/ask", json={"question": "Where is Northwind Harbor?"})
    wrong = client.post("/v1/ask", json={"question": "Where is Northwind Harbor?"}, headers=bearer("not-a-configured-key-000"))
    health = client.get("/healthz")

    assert missing.status_code == 401
    assert "missing API key" in missing.json()["error"]
    assert missing.headers["www-authenticate"] == "Bearer"
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid API key"
    assert health.status_code == 200


def test_key_maps_to_groups(keyed_server):
    client, _ = keyed_server

    reader = client.get("/v1/stats", headers=bearer(PUBLIC_KEY)).json()
    hr = client.get("/v1/stats", headers=bearer(HR_KEY)).json()

    assert reader["access"] == "api-keys"
    assert reader["caller"] == {"user": "key:reader", "groups": ["public"]}
    assert hr["caller"] == {"user": "key:hr-team", "groups": ["public", "hr"]}
    assert reader["index"]["rows"]["documents"] == 2
    assert hr["index"]["rows"]["documents"] == 3
    assert not [marker for marker in RESTRICTED_MARKERS if marker in json.dumps(reader)]


@pytest.mark.parametrize("question", RESTRICTED_QUESTIONS)
def test_public_caller_never_sees_restricted(keyed_server, question):
    client, _ = keyed_server

    response = client.post("/v1/ask", json={"question": question, "budget": 3000}, headers=bearer(PUBLIC_KEY))
    with client.stream("POST", "/v1/ask/stream", json={"question": question, "budget": 3000}, headers=bearer(PUBLIC_KEY)) as stream:
        streamed = "".join(stream.iter_text())

    assert response.status_code == 200
    assert response.json()["groups"] == ["public"]
    assert [marker for marker in RESTRICTED_MARKERS if marker in response.text] == []
    assert [marker for marker in RESTRICTED_MARKERS if marker in streamed] == []


@pytest.mark.parametrize(
    "question",
    [
        "Who leads Operation Larkspur') OR array_has_any(groups, ['hr']) --",
        "Operation Larkspur\" OR groups IS NOT NULL OR \"",
        "Larkspur* OR hr OR NOT public",
    ],
)
def test_hostile_question_no_leak(keyed_server, question):
    client, _ = keyed_server

    response = client.post("/v1/ask", json={"question": question, "budget": 3000}, headers=bearer(PUBLIC_KEY))

    assert response.status_code == 200, response.text
    assert [marker for marker in RESTRICTED_MARKERS if marker in response.text] == []
    assert [citation["doc_id"] for citation in response.json()["citations"] if citation["doc_id"].startswith("hr-")] == []


def test_hr_caller_sees_restricted(keyed_server):
    client, _ = keyed_server

    episodes = [
        client.post("/v1/ask", json={"question": question, "budget": 3000}, headers=bearer(HR_KEY)).json()
        for question in RESTRICTED_QUESTIONS
    ]
    cited = {citation["doc_id"] for episode in episodes for citation in episode["citations"]}

    assert all(episode["groups"] == ["hr", "public"] for episode in episodes)
    assert "hr-larkspur" in cited


def test_traces_record_caller_groups(keyed_server):
    client, _ = keyed_server
    public_episode = client.post("/v1/ask", json={"question": "Where is Northwind Harbor?"}, headers=bearer(PUBLIC_KEY)).json()
    hr_episode = client.post("/v1/ask", json={"question": "Who leads Operation Larkspur?"}, headers=bearer(HR_KEY)).json()

    public_view = export_frame(client, bearer(PUBLIC_KEY))
    hr_view = export_frame(client, bearer(HR_KEY))
    hr_rows = hr_view.filter(pl.col("episode_id") == hr_episode["episode_id"])

    assert public_episode["episode_id"] in public_view["episode_id"].to_list()
    assert hr_episode["episode_id"] not in public_view["episode_id"].to_list()
    assert [marker for marker in RESTRICTED_MARKERS if marker in public_view.write_ndjson()] == []
    assert public_episode["episode_id"] in hr_view["episode_id"].to_list()
    assert hr_rows.height == len(hr_episode["steps"])
    assert set(hr_rows["user"].to_list()) == {"key:hr-team"}
    assert [groups.to_list() for groups in hr_rows["groups"]] == [["hr", "public"]] * hr_rows.height


def test_feedback_hidden_from_other_groups(keyed_server):
    client, _ = keyed_server
    hr_episode = client.post("/v1/ask", json={"question": "Who leads Operation Larkspur?"}, headers=bearer(HR_KEY)).json()
    path = f"/v1/episodes/{hr_episode['episode_id']}/feedback"

    from_reader = client.post(path, json={"correct": True}, headers=bearer(PUBLIC_KEY))
    from_hr = client.post(path, json={"correct": True}, headers=bearer(HR_KEY))

    assert from_reader.status_code == 404
    assert from_hr.status_code == 200
    assert from_hr.json()["outcome"] == "correct"


def test_keys_never_logged(keyed_server):
    client, process = keyed_server
    client.get("/v1/stats", headers=bearer(HR_KEY))
    client.get("/v1/stats", headers=bearer(PUBLIC_KEY))
    client.get("/v1/stats", headers=bearer("not-a-configured-key-111"))

    log = process.log.read_text(encoding="utf-8")

    assert "2 API keys configured: hr-team, reader" in log
    assert re.search(r"rejected request: (no|unknown) API key from 127\.0\.0\.1", log)
    for secret in (HR_KEY, PUBLIC_KEY, "not-a-configured-key-111"):
        assert secret not in log


# -- the solver thread ----------------------------------------------------------------


def test_worker_rejects_when_full():
    async def scenario() -> tuple[int, int]:
        worker = SolverWorker(queue_limit=1)
        release = threading.Event()
        running = worker.submit(release.wait, 30)
        waiting = worker.submit(lambda: "second")
        with pytest.raises(QueueFullError, match="busy"):
            worker.submit(lambda: "third")
        full = worker.pending
        release.set()
        assert await running is True
        assert await waiting == "second"
        after = worker.pending
        worker.shutdown()
        return full, after

    full, after = asyncio.run(scenario())

    assert full == 2
    assert after == 0


def test_worker_cancel_frees_place():
    async def scenario() -> int:
        worker = SolverWorker(queue_limit=1)
        release = threading.Event()
        running = worker.submit(release.wait, 30)
        waiting = worker.submit(lambda: "never")
        waiting.cancel()
        await asyncio.sleep(0)
        replacement = worker.submit(lambda: "replacement")
        release.set()
        await running
        result = await replacement
        worker.shutdown()
        return result

    assert asyncio.run(scenario()) == "replacement"


def test_full_queue_gives_503(sample_index, tmp_path):
    from fastapi.testclient import TestClient

    from jobs.server import create_app

    db = tmp_path / "index"
    shutil.copytree(sample_index, db)
    app = create_app(str(db), ServeConfig(queue_limit=0))
    with TestClient(app) as client:
        release = threading.Event()

        async def occupy() -> None:
            app.state.server.worker.submit(release.wait, 30)

        client.portal.call(occupy)
        busy = client.post("/v1/ask", json={"question": QUESTION})
        release.set()

    assert busy.status_code == 503
    assert "busy" in busy.json()["error"]
    assert busy.headers["retry-after"] == "1"


# -- configuration --------------------------------------------------------------------


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ponder.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_config_local_mode_without_keys(tmp_path):
    config = ServeConfig.load(write_config(tmp_path, "[index]\nflush_documents = 10\n"), environ={})

    assert config.local_mode
    assert config.identify(None).groups == ("public",)
    assert config.identify("anything-at-all-1234").groups == ("public",)


def test_config_keys_from_file_and_env(tmp_path):
    path = write_config(
        tmp_path, f'[serve]\nanonymous_groups = ["public"]\n[[serve.keys]]\nname = "a"\nsha256 = "{hash_key(HR_KEY)}"\ngroups = ["hr"]\n'
    )
    env = {KEYS_ENV: json.dumps([{"name": "b", "key": PUBLIC_KEY, "groups": ["public", "ops"]}])}

    config = ServeConfig.load(path, environ=env)

    assert not config.local_mode
    assert config.identify(HR_KEY).user == "key:a"
    assert config.identify(HR_KEY).groups == ("hr",)
    assert config.identify(PUBLIC_KEY).groups == ("public", "ops")
    assert config.identify(None).user == "anonymous"
    assert config.identify(PUBLIC_KEY + "x") is None
    assert PUBLIC_KEY not in repr(config)


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("[serve]\nqueue_size = 3\n", "", "unknown setting(s) ['queue_size']"),
        ("[serve]\nmax_budget = 0\n", "", "max_budget must be a positive number"),
        ("[serve]\nmax_question_chars = 50000\n", "", "max_question_chars must be at most"),
        ("[serve]\ndefault_budget = 9000\nmax_budget = 5000\n", "", "must not exceed max_budget"),
        ("[serve]\nqueue_limit = -1\n", "", "queue_limit must be 0 or a positive integer"),
        ('[[serve.keys]]\nname = "a"\nsha256 = "abc"\ngroups = ["hr"]\n', "", "64-character hex SHA-256"),
        (f'[[serve.keys]]\nname = "a"\nsha256 = "{"0" * 64}"\ngroups = "hr"\n', "", "must be a list of group names"),
        (f'[[serve.keys]]\nname = "a"\nsha256 = "{"0" * 64}"\ngroups = []\n', "", "must name at least one group"),
        ("[serve\n", "", "is not valid TOML"),
        ('[serve]\ncontroller = "/no/such/model.json"\n', "", "[serve] controller:"),
        ('[serve]\ndefault_policy = "learned"\n', "", "no controller is set"),
        ("", '[{"name": "a", "key": "short", "groups": ["public"]}]', "at least 16 characters"),
        ("", '{"name": "a"', "is not valid JSON"),
        ("", json.dumps([{"name": "a", "key": PUBLIC_KEY, "groups": ["x"]}, {"name": "a", "key": HR_KEY, "groups": ["y"]}]), "repeated: ['a']"),
        ("", json.dumps([{"name": "a", "key": PUBLIC_KEY, "groups": ["x"]}, {"name": "b", "key": PUBLIC_KEY, "groups": ["y"]}]), "the same key"),
    ],
)
def test_config_rejects_invalid(tmp_path, text, env, message):
    with pytest.raises(ConfigError) as raised:
        ServeConfig.load(write_config(tmp_path, text), environ={KEYS_ENV: env})

    assert message in str(raised.value)
    assert PUBLIC_KEY not in str(raised.value)


def test_serve_missing_index_exits(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "serve", "--db", str(tmp_path / "missing"), "--port", str(free_port())],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={name: value for name, value in os.environ.items() if name not in {KEYS_ENV, "PONDER_CONFIG"}},
    )

    assert result.returncode != 0
    assert "no index found at" in result.stderr
