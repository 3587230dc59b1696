"""Policies: how the controller turns monitor values into the next action.

``fixed`` is the baseline every claim is measured against: the same retrievals and
reasoning for every question. ``adaptive`` reads the monitors: it stops once an answer
of the right type is confidently supported, adds a hop through a bridge entity when the
question describes an entity it does not name, switches structure when the evidence
does not cover the question, and abstains when the budget is nearly spent and
confidence is low. New policies register with :func:`register`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from controller.monitors import monitor
from solver.state import REASON, RETRIEVE, STOP, Action, EpisodeState

_REGISTRY: dict[str, Callable[..., object]] = {}


def register(name: str):
    def wrap(factory):
        _REGISTRY[name] = factory
        return factory

    return wrap


def make_policy(name: str, **options):
    """Build a registered policy by name."""
    if name not in _REGISTRY:
        message = f"unknown policy {name!r}; available policies: {sorted(_REGISTRY)}"
        raise ValueError(message)
    return _REGISTRY[name](**options)


def policy_names() -> list[str]:
    return sorted(_REGISTRY)


def route(state: EpisodeState) -> str:
    """Pick the knowledge structure for a question: table, graph or chunks.

    Tables suit aggregates and arithmetic over reported figures, the graph suits
    questions that chain or compare entities, and plain chunks suit single facts.
    """
    static = state.info.get("static") or {}
    if static.get("is_numeric") and state.info.get("has_tables"):
        return "table"
    if static.get("is_comparison") or static.get("is_bridge") or static.get("question_entities", 0) >= 2:
        return "graph"
    return "chunks"


@register("fixed")
@dataclass
class FixedPolicy:
    """The same sequence for every question, stopping only when it ends or money runs out."""

    name: str = "fixed"
    limit: int = 5

    def start(self, state: EpisodeState) -> None:
        state.info["plan"] = [
            Action(RETRIEVE, "chunks", limit=self.limit),
            Action(RETRIEVE, "graph", limit=self.limit),
            Action(RETRIEVE, "table", limit=self.limit),
            Action(REASON, "synthesize"),
            Action(REASON, "compare"),
            Action(REASON, "compute"),
            Action(REASON, "bridge"),
            "hop",
            Action(REASON, "synthesize"),
            Action(REASON, "verify"),
        ]

    def choose(self, state: EpisodeState) -> Action:
        plan = state.info["plan"]
        while plan:
            action = plan.pop(0)
            if action == "hop":
                if state.open_hops:
                    return Action(RETRIEVE, "chunks", query=state.open_hops.pop(0), limit=self.limit)
                continue
            return action
        return Action(STOP, "answer")


@register("adaptive")
@dataclass
class AdaptivePolicy:
    """Spend by need: stop early when confident, add hops and switch structure when not."""

    name: str = "adaptive"
    limit: int = 5
    stop_confidence: float = 0.55
    verify_margin: float = 0.15
    abstain_confidence: float = 0.05
    min_step_tokens: float = 150.0

    def start(self, state: EpisodeState) -> None:
        state.route = route(state)

    def choose(self, state: EpisodeState) -> Action:
        values = monitor(state)
        last = state.steps[-1].action if state.steps else None
        static = state.info.get("static", {})
        comparison = static.get("is_comparison", 0.0) > 0 and state.answer_type in {"yes_no", "one_of_two"}

        # 1. Nothing gathered yet: retrieve from the routed structure.
        if not state.steps:
            return Action(RETRIEVE, state.route, limit=self.limit)

        # 2. Fresh evidence arrived: read it before deciding anything else.
        if last is not None and last.kind == RETRIEVE and state.steps[-1].new_evidence:
            numeric = static.get("is_numeric", 0.0) > 0 or state.answer_type == "number"
            if last.name == "table" and numeric and state.count("reason:compute") == 0:
                return Action(REASON, "compute")
            return Action(REASON, "compare" if comparison else "synthesize")
        if last is not None and last.label == "reason:compute" and not state.candidates:
            return Action(REASON, "synthesize")

        budget_low = state.remaining < self.min_step_tokens
        confident = values["confidence"] >= self.stop_confidence and values["type_supported"] > 0
        if budget_low:
            return Action(STOP, "abstain" if values["confidence"] < self.abstain_confidence else "answer")

        # 3. Confident and covered: stop.
        derived = state.top is not None and bool(state.top.derivation)
        # A bridge question's first confident answer is usually the bridge entity itself.
        hop_pending = static.get("is_bridge", 0.0) > 0 and not state.info.get("hop_query") and not comparison
        if confident and not hop_pending and (values["coverage"] >= 0.5 or values["agreement"] >= 1.0 or derived):
            if values["margin"] < self.verify_margin and not values["verified"]:
                return Action(REASON, "verify")
            return Action(STOP, "answer")

        # 4. A bridge question whose second hop has not been taken.
        if static.get("is_bridge") and not state.bridges and state.count("reason:bridge") == 0:
            return Action(REASON, "bridge")
        # Follow the best bridge only; a weaker one is tried when the best gave nothing.
        if state.open_hops and (not state.info.get("hop_query") or state.top is None):
            hop = state.open_hops.pop(0)
            return Action(RETRIEVE, "chunks", query=hop, limit=self.limit)

        # 5. Evidence does not cover the question: switch structure.
        for source in _switch_order(state.route):
            if state.count(f"retrieve:{source}") == 0 and (source != "table" or state.info.get("has_tables")):
                return Action(RETRIEVE, source, limit=self.limit)

        # 6. Everything tried once: verify a shaky answer, then stop.
        if state.top is not None and not values["verified"] and values["margin"] < self.verify_margin:
            return Action(REASON, "verify")
        if values["confidence"] < self.abstain_confidence:
            return Action(STOP, "abstain")
        return Action(STOP, "answer")


def _switch_order(current: str) -> list[str]:
    return {"chunks": ["graph", "table"], "graph": ["chunks", "table"], "table": ["chunks", "graph"]}[current]


# Policies defined in other modules register themselves on import. The imports sit at
# the end because those modules import ``register`` and ``AdaptivePolicy`` from here.
import controller.baselines  # noqa: E402, F401
import controller.learned  # noqa: E402, F401
import controller.uncertainty  # noqa: E402, F401
