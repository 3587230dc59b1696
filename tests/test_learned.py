"""The learned controller: labels, training, the saved model, the policy and probes."""

from __future__ import annotations

import json
import random

import numpy as np
import polars as pl
import pytest

from controller.learned import MODEL_FEATURES, ControllerError, LearnedPolicy, load_controller, train_controller
from controller.monitors import FEATURE_NAMES
from controller.policies import make_policy
from controller.training import fit_controller, labelled_rows, read_traces
from solver.action_space import key_of
from tests.conftest import SAMPLE

NOISE = "entropy"


def synthetic_step(episode: str, index: int, action: str, features: dict, **values) -> dict:
    row = {
        "episode_id": episode,
        "index_version": 1,
        "step_index": index,
        "action": action,
        "arguments_json": json.dumps({"query": values.pop("query", ""), "tier": "embedded", "limit": 5}),
        "tier": "",
        "cost": 300.0,
        "latency_ms": 1.0,
        "new_evidence": 0,
        "new_supporting": 0,
        "confidence_before": 0.0,
        "confidence_after": 0.0,
        "confidence_delta": 0.0,
        "top_answer": "",
        "note": "",
        "features": features,
        "question": f"question {episode}",
        "policy": "synthetic",
        "budget": 4000.0,
        "outcome": "wrong",
        "outcome_source": "gold",
        "exact_match": 0.0,
        "f1": 0.0,
        "final_answer": None,
        "gold_answers_json": json.dumps(["Paris"]),
    }
    row.update(values)
    return row


def random_features(rng: random.Random) -> dict[str, float]:
    return {name: rng.random() for name in FEATURE_NAMES}


def rule_traces(path, *, episodes: int = 1200, seed: int = 0, flip: float = 0.03):
    """One-step episodes where retrieving chunks helps exactly when coverage < 0.5.

    Every feature is uniform noise except coverage; a share ``flip`` of outcomes is
    inverted, as real outcomes are noisy.
    """
    rng = random.Random(seed)
    rows = []
    for number in range(episodes):
        features = random_features(rng)
        helps = features["coverage"] < 0.5
        if rng.random() < flip:
            helps = not helps
        rows.append(
            synthetic_step(
                f"e{number}", 0, "retrieve:chunks", features,
                new_evidence=3 if helps else 0,
                top_answer="Paris" if helps else "",
                final_answer="Paris" if helps else None,
                f1=1.0 if helps else 0.0,
                outcome="correct" if helps else "wrong",
            )
        )
    pl.DataFrame(rows).write_ndjson(path)
    return path


def fresh_states(count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    matrix = rng.random((count, len(MODEL_FEATURES)))
    for position, name in enumerate(MODEL_FEATURES):
        if name not in FEATURE_NAMES:
            matrix[:, position] = 0.0
    return matrix


def test_trainer_recovers_known_rule(tmp_path):
    traces = rule_traces(tmp_path / "steps.jsonl")

    report = train_controller([traces], tmp_path / "controller.json", seed=0)
    controller = load_controller(tmp_path / "controller.json")

    states = fresh_states(4000, seed=1)
    coverage = states[:, MODEL_FEATURES.index("coverage")]
    decisions = controller.probability("retrieve:chunks", states) >= 0.5
    assert report["rows"] == 1200
    assert report["actions"]["retrieve:chunks"]["model"] == "logistic"
    assert report["actions"]["retrieve:chunks"]["cv_accuracy"] > 0.9
    assert np.mean(decisions == (coverage < 0.5)) > 0.95


def test_noise_feature_does_not_change_decisions(tmp_path):
    rows = labelled_rows(read_traces([rule_traces(tmp_path / "steps.jsonl")]))
    controller, _ = fit_controller(rows, seed=0)
    weights = controller.weights("retrieve:chunks")

    states = fresh_states(4000, seed=2)
    low, high = states.copy(), states.copy()
    low[:, MODEL_FEATURES.index(NOISE)] = 0.0
    high[:, MODEL_FEATURES.index(NOISE)] = 1.0
    flipped = (controller.probability("retrieve:chunks", low) >= 0.5) != (controller.probability("retrieve:chunks", high) >= 0.5)
    assert abs(weights[NOISE]) < 0.1 * abs(weights["coverage"])
    assert weights["coverage"] < 0
    assert np.mean(flipped) < 0.03


def test_saved_controller_matches_memory(tmp_path):
    rows = labelled_rows(read_traces([rule_traces(tmp_path / "steps.jsonl")]))
    controller, _ = fit_controller(rows, seed=0)
    controller.save(tmp_path / "controller.json")

    loaded = load_controller(tmp_path / "controller.json")

    states = fresh_states(500, seed=3)
    for key in controller.actions:
        assert np.array_equal(loaded.probability(key, states), controller.probability(key, states))


def test_training_is_reproducible(tmp_path):
    traces = rule_traces(tmp_path / "steps.jsonl")

    first = train_controller([traces], tmp_path / "first.json", seed=7)
    second = train_controller([traces], tmp_path / "second.json", seed=7)

    assert (tmp_path / "first.json").read_bytes() == (tmp_path / "second.json").read_bytes()
    assert first["actions"] == second["actions"]


def test_labels_follow_outcome_and_feedback():
    features = {name: 0.0 for name in FEATURE_NAMES}
    # Retrieve, read a wrong answer, hop, read the right one, then verify it.
    steps = [
        synthetic_step("a", 0, "retrieve:chunks", features, new_evidence=4),
        synthetic_step("a", 1, "reason:synthesize", features, confidence_delta=0.4, top_answer="Lyon"),
        synthetic_step("a", 2, "retrieve:chunks", features, new_evidence=2, top_answer="Lyon", query="capital of France"),
        synthetic_step("a", 3, "reason:synthesize", features, confidence_delta=0.1, top_answer="Paris"),
        synthetic_step("a", 4, "reason:verify", features, confidence_delta=0.2, top_answer="Paris"),
        # A retrieval that found nothing new.
        synthetic_step("a", 5, "retrieve:graph", features, top_answer="Paris"),
    ]
    for step in steps:
        step.update(final_answer="Paris", f1=1.0, outcome="correct")
    steps[3].update(probe_action="retrieve:table", probe_arguments_json="{}", probe_new_evidence=1, probe_answer="Lyon", probe_answer_changed=False, probe_f1=0.0, probe_confidence_delta=0.0, probe_cost=50.0)
    steps[1].update(probe_action="reason:compare", probe_arguments_json="{}", probe_new_evidence=0, probe_answer="Paris", probe_answer_changed=True, probe_f1=1.0, probe_confidence_delta=0.3, probe_cost=80.0)
    unlabelled = synthetic_step("b", 0, "retrieve:chunks", features, new_evidence=3, outcome="", gold_answers_json="[]")

    rows = labelled_rows(pl.DataFrame([*steps, unlabelled]))

    step_rows = rows["sources"] == "step"
    assert rows["keys"][step_rows].tolist() == ["retrieve:chunks", "reason:synthesize", "retrieve:hop", "reason:synthesize", "reason:verify", "retrieve:graph"]
    assert rows["labels"][step_rows].tolist() == [1, 1, 1, 1, 0, 0]
    probes = dict(zip(rows["keys"][~step_rows].tolist(), rows["labels"][~step_rows].tolist(), strict=True))
    assert probes == {"reason:compare": 1, "retrieve:table": 0}
    assert rows["skipped"] == 1
    repeats = rows["matrix"][step_rows][:, MODEL_FEATURES.index("repeats")]
    assert repeats.tolist() == [0, 0, 0, 1, 0, 0]


def test_user_feedback_labels():
    features = {name: 0.0 for name in FEATURE_NAMES}
    steps = [
        synthetic_step("c", 0, "retrieve:chunks", features, new_evidence=3),
        synthetic_step("c", 1, "reason:synthesize", features, confidence_delta=0.5, top_answer="Paris"),
        synthetic_step("c", 2, "reason:verify", features, confidence_delta=0.1, top_answer="Paris"),
    ]
    for step in steps:
        step.update(final_answer="Paris", outcome="correct", outcome_source="user", gold_answers_json="[]", f1=None)

    rows = labelled_rows(pl.DataFrame(steps))

    assert rows["labels"].tolist() == [1, 1, 0]


def test_bad_model_files_rejected(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    wrong_features = tmp_path / "features.json"
    wrong_features.write_text(json.dumps({"format": "ponder-controller", "format_version": 1, "features": ["a"], "actions": {}}))

    with pytest.raises(ControllerError, match="controller model not found"):
        load_controller(tmp_path / "missing.json")
    with pytest.raises(ControllerError, match="not JSON"):
        load_controller(broken)
    with pytest.raises(ControllerError, match="other features"):
        load_controller(wrong_features)
    with pytest.raises(ControllerError, match="needs a controller model"):
        make_policy("learned")


def test_trace_file_errors(tmp_path):
    partial = tmp_path / "partial.jsonl"
    partial.write_text(json.dumps({"episode_id": "x"}) + "\n", encoding="utf-8")

    with pytest.raises(ControllerError, match="trace file not found"):
        read_traces([tmp_path / "none.jsonl"])
    with pytest.raises(ControllerError, match="lacks the columns"):
        read_traces([partial])
    with pytest.raises(ControllerError, match="no labelled steps"):
        fit_controller(labelled_rows(pl.DataFrame([synthetic_step("b", 0, "retrieve:chunks", {n: 0.0 for n in FEATURE_NAMES}, outcome="", gold_answers_json="[]")])))


def test_cli_train_and_option_errors(tmp_path):
    from typer.testing import CliRunner

    from jobs.cli import app

    runner = CliRunner()
    traces = rule_traces(tmp_path / "steps.jsonl", episodes=200)
    model = tmp_path / "controller.json"

    trained = runner.invoke(app, ["controller", "train", str(traces), "--out", str(model), "--seed", "3", "--json"])
    without_model = runner.invoke(app, ["ask", "Who directed Kiss and Tell?", "--policy", "learned", "--db", str(tmp_path / "none")])
    missing_model = runner.invoke(app, ["ask", "Who?", "--policy", "learned", "--controller", str(tmp_path / "none.json")])
    wrong_policy = runner.invoke(app, ["ask", "Who?", "--policy", "adaptive", "--controller", str(model)])

    assert trained.exit_code == 0
    assert json.loads(trained.output)["rows"] == 200
    assert load_controller(model).seed == 3
    assert without_model.exit_code == 1
    assert "--policy learned needs --controller MODEL" in without_model.output
    assert missing_model.exit_code == 1
    assert "controller model not found" in missing_model.output
    assert wrong_policy.exit_code == 1
    assert "only with --policy learned" in wrong_policy.output


def test_trace_store_adds_probe_columns(tmp_path):
    import lancedb
    import pyarrow as pa

    from solver.traces import EPISODES, PROBE_COLUMNS, STEPS, TraceStore

    older = pa.schema([field for field in STEPS if field not in PROBE_COLUMNS])
    db = lancedb.connect(str(tmp_path / "db"))
    db.create_table("steps", schema=older)
    db.create_table("episodes", schema=EPISODES)

    TraceStore(str(tmp_path / "db"))

    columns = lancedb.connect(str(tmp_path / "db")).open_table("steps").schema.names
    for field in PROBE_COLUMNS:
        assert field.name in columns


# -- real episodes on the indexed sample ----------------------------------------------------


@pytest.fixture(scope="module")
def ponder(sample_index):
    from solver.service import Ponder

    instance = Ponder(str(sample_index))
    yield instance
    instance.close()


def sample_questions(count: int) -> list[dict]:
    lines = (SAMPLE / "hotpotqa-questions.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines[:count]]


def test_probes_leave_episode_unchanged(ponder, tmp_path):
    record = sample_questions(1)[0]

    plain = ponder.ask(record["question"], budget=4000, gold=record["answers"])
    probed = ponder.ask(record["question"], budget=4000, gold=record["answers"], probe_rate=1.0, probe_seed=0)
    ponder.traces.flush()
    ponder.traces.export(tmp_path / "steps.parquet", export_format="parquet")

    assert probed.answer == plain.answer
    assert probed.cost == plain.cost
    assert [step.action for step in probed.steps] == [step.action for step in plain.steps]
    assert [step.cost for step in probed.steps] == [step.cost for step in plain.steps]
    assert all(step.probe is None for step in plain.steps)
    assert any(step.probe is not None for step in probed.steps)
    frame = pl.read_parquet(tmp_path / "steps.parquet").filter(pl.col("episode_id") == probed.episode_id)
    probed_rows = frame.filter(pl.col("probe_action").is_not_null())
    assert probed_rows.height == sum(step.probe is not None for step in probed.steps)
    assert probed_rows["probe_f1"].is_not_null().all()
    for step in probed.steps:
        if step.probe is not None:
            assert key_of(step.probe.action, probed.question) != key_of(step.action, probed.question)


def test_learned_policy_on_sample(ponder, tmp_path):
    for record in sample_questions(4):
        for policy in ("adaptive", "fixed"):
            ponder.ask(record["question"], policy=policy, budget=3000, gold=record["answers"], probe_rate=0.5, probe_seed=1)
    ponder.traces.flush()
    ponder.traces.export(tmp_path / "steps.jsonl")
    model = tmp_path / "controller.json"
    report = train_controller([tmp_path / "steps.jsonl"], model, seed=0)

    results = []
    for record, budget in zip(sample_questions(4), (300, 1000, 2500, 4000), strict=True):
        results.append(ponder.ask(record["question"], policy="learned", budget=budget, policy_options={"controller": model}))

    assert report["probe_rows"] > 0
    assert report["rows"] == report["step_rows"] + report["probe_rows"]
    for result in results:
        assert result.policy == "learned"
        assert result.cost <= result.budget
        assert result.steps
    assert isinstance(make_policy("learned", controller=model), LearnedPolicy)


def test_sparse_action_shrinks_to_base_rate():
    from controller.training import _fit_action

    matrix = np.zeros((2, len(MODEL_FEATURES)))
    labels = np.array([1, 1])
    _, summary = _fit_action(
        "reason:compare", matrix, labels, np.array(["a", "b"]), np.array([300.0, 300.0]),
        seed=0, min_rows=20, regularization=1.0, base_rate=0.17,
    )

    assert summary["model"] == "constant"
    assert 0.17 < summary["probability"] < 0.3
