"""Uncertainty-driven spending: extra compute only where the candidates disagree.

``adaptive-u`` is ``adaptive`` plus one rule. Whenever ``adaptive`` would stop with an
answer, the policy checks the candidate distribution. The step is uncertain when the
distribution's normalised entropy is high or the top candidate's margin over the
runner-up is small. An uncertain step gets more compute: first a verification of the top
candidate (when it has none), then a vote among answers read from disjoint evidence
subsets, then one deeper chunk retrieval for the question. That
retrieval asks for more results than the first, so new evidence can come in, which
``adaptive`` then reads as usual. A confident step gets nothing more, so on an episode
whose monitors stay confident ``adaptive-u`` takes the same steps as ``adaptive``.

The default thresholds (entropy 0.9 of its maximum, margin 0.1) are the best of the
settings that bench/tune_uncertainty.py tried on train questions. Retune them only on
the train split of a question file.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.monitors import monitor
from controller.policies import AdaptivePolicy, register
from solver.state import REASON, RETRIEVE, STOP, Action, EpisodeState


def is_uncertain(values: dict[str, float], *, entropy_threshold: float, margin_threshold: float) -> bool:
    """Return whether the monitor ``values`` show an uncertain candidate distribution.

    With no candidate there is nothing to choose between, so this returns False. The
    abstain rule of ``adaptive`` handles a missing answer.
    """
    if values["candidates"] < 1:
        return False
    return values["entropy"] >= entropy_threshold or values["margin"] < margin_threshold


@register("adaptive-u")
@dataclass
class UncertaintyPolicy(AdaptivePolicy):
    """``adaptive``, plus verification, a vote and a deeper retrieval at uncertain stops."""

    name: str = "adaptive-u"
    entropy_threshold: float = 0.9
    margin_threshold: float = 0.1
    deep_limit_factor: int = 2

    def choose(self, state: EpisodeState) -> Action:
        action = super().choose(state)
        if action.kind != STOP or action.name != "answer":
            return action
        if state.remaining < 2 * self.min_step_tokens:
            return action
        values = monitor(state)
        if not is_uncertain(values, entropy_threshold=self.entropy_threshold, margin_threshold=self.margin_threshold):
            return action
        extra = self._extra_action(state, values)
        if extra is None:
            return action
        state.info.setdefault("uncertainty_extras", []).append(extra.label)
        return extra

    def _extra_action(self, state: EpisodeState, values: dict[str, float]) -> Action | None:
        done = state.info.get("uncertainty_extras", [])
        if not values["verified"] and "reason:verify" not in done:
            return Action(REASON, "verify")
        if len(state.evidence) >= 2 and "reason:vote" not in done:
            return Action(REASON, "vote")
        if "retrieve:chunks" not in done:
            return Action(RETRIEVE, "chunks", limit=self.limit * self.deep_limit_factor)
        return None
