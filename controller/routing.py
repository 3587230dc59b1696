"""Tier routing: which model tier runs each reasoning step.

Filtering steps (decompose, bridge, verify) go to the ``small`` tier and synthesis steps
(synthesize, compare) to the ``large`` tier, falling back to ``small`` when no large
tier is configured. Table arithmetic (compute) stays on the embedded tier. A tier is
skipped when the episode cannot afford even its smallest prompt, and only a tier marked
reasoning-trained gets extra thinking tokens. With no model tiers configured every
step stays on the embedded tier, exactly as without a router.
"""

from __future__ import annotations

from dataclasses import replace

from solver.state import EMBEDDED_TIER, REASON, Action, EpisodeState, Tier

FILTERING_OPERATIONS = ("decompose", "bridge", "verify")
SYNTHESIS_OPERATIONS = ("synthesize", "compare")
_PREFERENCES = {
    **{operation: ("small",) for operation in FILTERING_OPERATIONS},
    **{operation: ("large", "small") for operation in SYNTHESIS_OPERATIONS},
}
# Estimated prompt tokens of a step with its instructions and a little evidence. A tier
# is not chosen when this prompt and a short answer cost more than the budget left.
MIN_PROMPT_TOKENS = 400
MIN_ANSWER_TOKENS = 64


class TierRouter:
    """Assign a model tier to each reason action that a policy left on the default tier.

    An action whose policy named a tier other than the embedded one keeps it.
    """

    def __init__(self, tiers: dict[str, Tier]) -> None:
        self.tiers = {name: tier for name, tier in tiers.items() if name != EMBEDDED_TIER.name}

    def __call__(self, action: Action, state: EpisodeState) -> Action:
        if action.kind != REASON or action.tier != EMBEDDED_TIER.name or not self.tiers:
            return action
        name = self.pick(action.name, state)
        if name == EMBEDDED_TIER.name:
            return action
        tier = self.tiers[name]
        arguments = dict(action.args)
        if tier.reasoning and tier.reasoning_tokens:
            arguments["reasoning_tokens"] = tier.reasoning_tokens
        return replace(action, tier=name, args=tuple(sorted(arguments.items())))

    def pick(self, operation: str, state: EpisodeState) -> str:
        """Return the tier for ``operation``: the first preferred tier that is configured and affordable."""
        for name in _PREFERENCES.get(operation, ()):
            tier = self.tiers.get(name)
            if tier is not None and tier.cost(MIN_PROMPT_TOKENS, MIN_ANSWER_TOKENS) <= state.remaining:
                return name
        return EMBEDDED_TIER.name
