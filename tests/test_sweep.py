"""Budget sweep, baselines, splits, global allocation and uncertainty spending."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from controller.allocation import allocate
from controller.policies import make_policy, register
from controller.uncertainty import is_uncertain
from controller.monitors import analyse_question, monitor
from jobs.eval_job import load_questions
from jobs.splits import select_split
from solver.evidence import Candidate, Evidence
from solver.state import REASON, RETRIEVE, STOP, Action, EpisodeState, StepRecord
from tests.conftest import SAMPLE

HOTPOT = SAMPLE / "hotpotqa-questions.jsonl"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def ponder(sample_index):
    from solver.service import Ponder

    instance = Ponder(str(sample_index), record=False)
    yield instance
    instance.close()


def test_split_deterministic_and_disjoint():
    questions = load_questions(HOTPOT)

    train = select_split(questions, "train")
    heldout = select_split(questions, "heldout")
    again = select_split(load_questions(HOTPOT), "train")
    reseeded = select_split(questions, "train", seed=1)

    train_ids = {record["id"] for record in train}
    heldout_ids = {record["id"] for record in heldout}
    assert train_ids.isdisjoint(heldout_ids)
    assert train_ids | heldout_ids == {record["id"] for record in questions}
    assert [record["id"] for record in again] == [record["id"] for record in train]
    assert train and heldout
    assert {record["id"] for record in reseeded} != train_ids
    assert select_split(questions, "all") == questions


def test_split_rejects_unknown_name():
    with pytest.raises(ValueError, match="unknown split 'test'"):
        select_split([], "test")


BASELINE_ARMS = {"dense": {"vector"}, "fts": {"text"}, "hybrid": {"vector", "text"}, "ircot": {"vector", "text"}}


@pytest.mark.parametrize("policy", sorted(BASELINE_ARMS))
def test_baseline_budget_and_arm(ponder, policy):
    questions = load_questions(HOTPOT, limit=3)

    for budget in (400, 2500):
        for record in questions:
            result = ponder.ask(record["question"], policy=policy, budget=budget)

            retrievals = [step.action for step in result.steps if step.action.kind == RETRIEVE]
            assert result.cost <= budget + 1e-9
            assert retrievals
            assert {action.name for action in retrievals} == {"chunks"}
            for item in result.evidence:
                assert set(item.details["ranks"]) <= BASELINE_ARMS[policy]


def test_single_arm_baselines_use_one_list(ponder):
    question = load_questions(HOTPOT, limit=1)[0]["question"]

    dense = ponder.ask(question, policy="dense", budget=2500)
    fts = ponder.ask(question, policy="fts", budget=2500)

    assert dense.evidence
    assert fts.evidence
    assert all(set(item.details["ranks"]) == {"vector"} for item in dense.evidence)
    assert all(set(item.details["ranks"]) == {"text"} for item in fts.evidence)


@pytest.mark.parametrize("policy", sorted(BASELINE_ARMS))
def test_baseline_k_grows_with_budget(ponder, policy):
    question = load_questions(HOTPOT, limit=1)[0]["question"]

    small = ponder.ask(question, policy=policy, budget=500)
    large = ponder.ask(question, policy=policy, budget=4000)

    small_limit = next(step.action.limit for step in small.steps if step.action.kind == RETRIEVE)
    large_limit = next(step.action.limit for step in large.steps if step.action.kind == RETRIEVE)
    assert large_limit > small_limit


def test_ircot_follows_reasoning_query(ponder):
    bridge = "What government position was held by the woman who portrayed Corliss Archer in the film Kiss and Tell?"

    result = ponder.ask(bridge, policy="ircot", budget=4000)

    labels = [step.action.label for step in result.steps]
    retrievals = [step.action for step in result.steps if step.action.kind == RETRIEVE]
    assert labels[:3] == ["retrieve:chunks", "reason:bridge", "retrieve:chunks"]
    assert labels[-1] == "reason:synthesize"
    assert retrievals[0].query in ("", bridge)
    assert "Shirley Temple" in retrievals[1].query


def test_chunk_mode_rejected_for_graph(ponder):
    state = EpisodeState(question="Who directed A Kiss for Corliss?", budget=1000)
    ponder.toolbox.prepare(state)

    with pytest.raises(ValueError, match="applies only to chunk retrieval"):
        ponder.toolbox.retrieve("graph", state.question, state, limit=3, mode="dense")


def test_allocation_splits_total_by_difficulty():
    budgets = allocate([0.1, 0.9, 0.5], 3000)
    even = allocate([0.1, 0.9, 0.5], 3000, strategy="even")

    assert sum(budgets) <= 3000 + 1e-9
    assert sum(budgets) == pytest.approx(3000)
    assert budgets[1] > budgets[2] > budgets[0]
    assert even == pytest.approx([1000, 1000, 1000])
    with pytest.raises(ValueError, match="unknown allocation strategy"):
        allocate([0.5], 100, strategy="greedy")


def test_global_allocation_within_total(sample_index):
    from jobs.sweep import run_allocation

    questions = load_questions(HOTPOT, limit=4)

    result = run_allocation(str(sample_index), questions, total_budget=4000, policy="adaptive", workers=1)

    for strategy in ("global", "even"):
        rows = [row for row in result["rows"] if row["setting"] == strategy]
        summary = result["strategies"][strategy]
        assert len(rows) == 4
        assert sum(row["cost"] for row in rows) <= 4000 + 1e-6
        assert summary["spent"] <= 4000 + 1e-6
        assert summary["allocated"] == pytest.approx(4000)
        assert all(row["cost"] <= row["budget"] + 1e-9 for row in rows)
    global_budgets = [row["budget"] for row in result["rows"] if row["setting"] == "global"]
    assert len(set(round(budget, 6) for budget in global_budgets)) > 1


def test_sweep_writes_table_and_plots(sample_index, tmp_path):
    from jobs.sweep import run_sweep
    from jobs.sweep_report import write_sweep

    questions = load_questions(HOTPOT, limit=2)

    result = run_sweep(str(sample_index), questions, policies=["dense", "fixed", "adaptive"], budgets=[500, 1500], workers=1)
    paths = write_sweep(result, tmp_path / "out", title="sample")

    table = json.loads(paths["json"].read_text(encoding="utf-8"))["table"]
    markdown = paths["markdown"].read_text(encoding="utf-8")
    assert [(row["policy"], row["budget"]) for row in table] == [
        ("dense", 500), ("dense", 1500), ("fixed", 500), ("fixed", 1500), ("adaptive", 500), ("adaptive", 1500)
    ]
    assert all(row["n"] == 2 for row in table)
    assert all(row["cost_mean"] <= row["budget"] for row in table)
    assert "| adaptive | 1,500 |" in markdown
    assert "`fixed`'s best F1" in markdown
    assert paths["f1_plot"].read_bytes()[:8] == PNG_MAGIC
    assert paths["cost_plot"].read_bytes()[:8] == PNG_MAGIC
    assert set(result["equal_cost"]["matched"]) == {"adaptive"}


def test_sweep_rejects_learned_without_controller(sample_index):
    from jobs.sweep import run_sweep

    with pytest.raises(ValueError, match="needs a trained controller"):
        run_sweep(str(sample_index), [], policies=["fixed", "learned"], budgets=[500], workers=1)


def _state_after_synthesis(confidences: list[float], *, verified: bool) -> EpisodeState:
    question = "Who directed A Kiss for Corliss?"
    state = EpisodeState(question=question, budget=4000, spent=600)
    state.info["static"] = analyse_question(question) | {"is_bridge": 0.0}
    state.info["entity_names"] = []
    state.evidence["e1"] = Evidence("e1", "chunk", "d1", "A Kiss for Corliss", "A Kiss for Corliss was directed by Richard Wallace.", 1.0, 12)
    state.candidates = [
        Candidate(f"Director {index}", score=confidence, confidence=confidence, support=["e1"])
        for index, confidence in enumerate(confidences)
    ]
    if verified:
        state.verified[state.candidates[0].text] = 0.9
    for index, action in enumerate([Action(RETRIEVE, "chunks"), Action(REASON, "synthesize")]):
        state.steps.append(StepRecord(index=index, action=action, cost=300, latency_ms=1.0, features={}, new_evidence=1))
    return state


def test_uncertainty_adds_nothing_when_confident():
    state = _state_after_synthesis([0.9, 0.05], verified=False)
    values = monitor(state)

    plain = make_policy("adaptive").choose(state)
    spending = make_policy("adaptive-u").choose(state)

    assert not is_uncertain(values, entropy_threshold=0.9, margin_threshold=0.1)
    assert plain == Action(STOP, "answer")
    assert spending == plain
    assert "uncertainty_extras" not in state.info


def test_uncertainty_spends_when_margin_small():
    state = _state_after_synthesis([0.62, 0.6], verified=True)

    plain = make_policy("adaptive").choose(state)
    spending = make_policy("adaptive-u").choose(state)

    assert plain == Action(STOP, "answer")
    assert spending.kind == RETRIEVE
    assert spending.limit > make_policy("adaptive").limit
    assert state.info["uncertainty_extras"] == ["retrieve:chunks"]


def test_uncertainty_votes_before_deeper_retrieval():
    state = _state_after_synthesis([0.62, 0.6], verified=True)
    state.evidence["e2"] = Evidence("e2", "chunk", "d2", "Richard Wallace", "Richard Wallace was an American film director.", 0.8, 10)

    spending = make_policy("adaptive-u").choose(state)

    assert spending == Action(REASON, "vote")
    assert state.info["uncertainty_extras"] == ["reason:vote"]


@register("vote-test")
@dataclass
class VotePolicy:
    """Retrieve, synthesize, vote, stop; keeps the candidates' confidences around the vote."""

    name: str = "vote-test"

    def start(self, state: EpisodeState) -> None:
        self.plan = [Action(RETRIEVE, "chunks", limit=7), Action(REASON, "synthesize"), Action(REASON, "vote")]

    def choose(self, state: EpisodeState) -> Action:
        if self.plan and self.plan[0].name == "vote":
            state.info["before_vote"] = {candidate.text: candidate.confidence for candidate in state.candidates}
        if not self.plan:
            state.info["after_vote"] = {candidate.text: candidate.confidence for candidate in state.candidates}
            return Action(STOP, "answer")
        return self.plan.pop(0)


def test_vote_moves_confidence_to_vote_share(ponder):
    captured = {}
    policy = make_policy("vote-test")
    original_choose = policy.choose

    def choose(state):
        action = original_choose(state)
        captured.update(state.info)
        return action

    policy.choose = choose
    result = ponder.solver.solve("Who portrayed Corliss Archer in the film Kiss and Tell?", policy, budget=4000)

    vote = result.steps[-1]
    subsets = min(3, len(vote.evidence_ids))
    before, after = captured["before_vote"], captured["after_vote"]
    assert vote.action.label == "reason:vote"
    assert vote.note.startswith("votes: ")
    assert vote.cost > 0
    assert "charged the reservation" not in vote.note
    assert subsets >= 2
    assert set(before) == set(after)
    for text, confidence in before.items():
        share = 2 * after[text] - confidence
        assert min(abs(share - votes / subsets) for votes in range(subsets + 1)) < 1e-6, text
    assert any(after[text] != before[text] for text in before)


def test_uncertainty_off_matches_adaptive(ponder):
    questions = load_questions(HOTPOT, limit=4)

    for record in questions:
        plain = ponder.ask(record["question"], policy="adaptive", budget=3000)
        never = ponder.ask(
            record["question"],
            policy="adaptive-u",
            budget=3000,
            policy_options={"entropy_threshold": 2.0, "margin_threshold": -1.0},
        )

        assert [step.action for step in never.steps] == [step.action for step in plain.steps]
        assert never.answer == plain.answer


def test_cli_sweep_writes_folder(sample_index, tmp_path):
    from typer.testing import CliRunner

    from jobs.cli import app

    out = tmp_path / "sweep"
    args = ["eval", str(HOTPOT), "--db", str(sample_index), "--split", "heldout", "--limit", "2", "--sweep",
            "--budgets", "600,1200", "--policies", "hybrid,adaptive-u", "--workers", "1", "--out", str(out)]

    result = CliRunner().invoke(app, args)

    assert result.exit_code == 0, result.output
    assert (out / "sweep.json").exists()
    assert (out / "sweep.md").exists()
    assert (out / "f1_vs_cost.png").exists()
    assert "| adaptive-u | 1,200 |" in result.output


def test_cli_rejects_learned_without_controller(sample_index, tmp_path):
    from typer.testing import CliRunner

    from jobs.cli import app

    args = ["eval", str(HOTPOT), "--db", str(sample_index), "--sweep", "--policies", "fixed,learned", "--workers", "1", "--out", str(tmp_path)]

    result = CliRunner().invoke(app, args)

    assert result.exit_code == 1
    assert "needs a trained controller" in result.output


def test_cached_toolbox_matches_plain(ponder):
    from jobs.sweep import CachedToolbox

    question = load_questions(HOTPOT, limit=1)[0]["question"]
    plain = ponder.ask(question, policy="fixed", budget=3000)
    cached = CachedToolbox(ponder.toolbox)
    original = ponder.solver.toolbox
    ponder.solver.toolbox = cached
    try:
        first = ponder.ask(question, policy="fixed", budget=3000)
        second = ponder.ask(question, policy="fixed", budget=3000)
    finally:
        ponder.solver.toolbox = original

    for result in (first, second):
        assert [step.action for step in result.steps] == [step.action for step in plain.steps]
        assert [step.cost for step in result.steps] == [step.cost for step in plain.steps]
        assert result.answer == plain.answer
    assert cached.misses > 0
    assert cached.hits == cached.misses


def test_equal_cost_interpolates_reference():
    from jobs.sweep import equal_cost

    table = [
        {"policy": "fixed", "cost_mean": 400.0, "f1": 10.0},
        {"policy": "fixed", "cost_mean": 800.0, "f1": 30.0},
        {"policy": "adaptive", "cost_mean": 600.0, "f1": 35.0},
        {"policy": "adaptive", "cost_mean": 300.0, "f1": 20.0},
    ]

    result = equal_cost(table)

    points = {point["cost_mean"]: point for point in result["matched"]["adaptive"]}
    assert result["reference_best_f1"] == 30.0
    assert points[600.0]["reference_f1"] == 20.0
    assert points[600.0]["f1_gain"] == 15.0
    assert points[300.0]["reference_f1"] is None
    assert result["cost_to_reach_reference_best"]["fixed"] == 800.0
    assert result["cost_to_reach_reference_best"]["adaptive"] == 500.0
