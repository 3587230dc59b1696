"""Counterfactual probes: what an action the policy did not take would have changed.

At a sampled share of steps the solver copies the state before the policy chooses, runs
one other available action on the copy and records its effect on the step. The copy's
spending is discarded, so the episode's cost, budget and answer are unchanged. A probed
retrieval is followed on the copy by the reading step a policy takes after new evidence
(compare for yes/no and which-of-two comparisons, synthesize otherwise), because a
retrieval alone does not change the candidates.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from solver.action_space import available_actions, key_of
from solver.state import REASON, RETRIEVE, Action, EpisodeState, ProbeRecord

if TYPE_CHECKING:
    from solver.episode import Solver

_COMPARISON_TYPES = {"yes_no", "one_of_two"}


def episode_random(probe_seed: int, question: str) -> random.Random:
    """A random source for one episode's probes, fixed by the seed and the question.

    Seeding with the question as well keeps an episode's probes the same whatever order
    an evaluation asks its questions in.
    """
    return random.Random(f"{probe_seed}\n{question}")


def pick_probe(copy: EpisodeState, chosen: Action, rng: random.Random, *, limit: int = 5) -> Action | None:
    """Pick uniformly one available action of another kind than ``chosen``."""
    chosen_key = key_of(chosen, copy.question)
    others = [action for action in available_actions(copy, limit=limit) if key_of(action, copy.question) != chosen_key]
    if not others:
        return None
    return rng.choice(others)


def run_probe(
    solver: Solver, copy: EpisodeState, action: Action, features: dict[str, float], index: int
) -> ProbeRecord:
    """Run ``action`` on ``copy`` (a deep copy of the state) and record what it changed."""
    before_top = copy.top.text if copy.top else ""
    before_confidence = copy.confidence
    step = solver._run(copy, action, features, index)
    copy.steps.append(step)
    cost, new_evidence, notes = step.cost, step.new_evidence, [step.note]
    if action.kind == RETRIEVE and new_evidence > 0:
        static = copy.info.get("static") or {}
        comparison = static.get("is_comparison", 0.0) > 0 and copy.answer_type in _COMPARISON_TYPES
        reading = solver._run(copy, Action(REASON, "compare" if comparison else "synthesize"), features, index)
        cost += reading.cost
        notes.append(f"then {reading.action.label}: {reading.note}")
    after_top = copy.top.text if copy.top else ""
    return ProbeRecord(
        action=action,
        cost=cost,
        new_evidence=new_evidence,
        confidence_before=before_confidence,
        confidence_after=copy.confidence,
        answer=after_top,
        answer_changed=after_top != before_top,
        note="; ".join(note for note in notes if note),
    )
