"""The episode's state and actions, and the cost model that prices every action.

Cost unit: one *token*, meaning one WordPiece token of the embedding model's tokenizer.
A reason action costs the tokens its model tier reads (question plus evidence) and
writes (its output), each multiplied by the tier's price per token. A retrieve action
costs the tokens of the text it returns plus a fixed charge for the query, because that
text enters the context every later reasoning step reads. Stopping is free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from solver.evidence import Candidate, Evidence

RETRIEVE = "retrieve"
REASON = "reason"
STOP = "stop"

RETRIEVE_SOURCES = ("chunks", "graph", "table")
REASON_OPERATIONS = ("decompose", "bridge", "verify", "compute", "compare", "synthesize", "vote")
STOP_KINDS = ("answer", "abstain")

# Charge for running one retrieval, on top of the tokens it returns.
RETRIEVAL_OVERHEAD_TOKENS = 16


@dataclass(frozen=True)
class Tier:
    """A model tier and its price per token read and written, in budget units."""

    name: str
    price_in: float = 1.0
    price_out: float = 1.0
    reasoning: bool = False  # trained to reason: only then are extra reasoning tokens granted
    context_tokens: int = 4_096
    reasoning_tokens: int = 0  # extra output tokens for thinking, granted on a reasoning tier only

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return tokens_in * self.price_in + tokens_out * self.price_out


EMBEDDED_TIER = Tier("embedded", price_in=1.0, price_out=1.0, reasoning=False, context_tokens=100_000)


@dataclass(frozen=True)
class Action:
    """One step an episode can take."""

    kind: str  # retrieve, reason or stop
    name: str  # a retrieve source, a reason operation or a stop kind
    query: str = ""
    tier: str = "embedded"
    limit: int = 5
    args: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        allowed = {RETRIEVE: RETRIEVE_SOURCES, REASON: REASON_OPERATIONS, STOP: STOP_KINDS}
        if self.kind not in allowed:
            message = f"unknown action kind {self.kind!r}; use one of {sorted(allowed)}"
            raise ValueError(message)
        if self.name not in allowed[self.kind]:
            message = f"unknown {self.kind} action {self.name!r}; use one of {list(allowed[self.kind])}"
            raise ValueError(message)
        if self.limit < 1:
            message = f"action limit must be at least 1, got {self.limit}"
            raise ValueError(message)

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.name}"

    def arguments(self) -> dict[str, Any]:
        data: dict[str, Any] = {"query": self.query, "tier": self.tier, "limit": self.limit}
        data.update(dict(self.args))
        return data


@dataclass
class ProbeRecord:
    """A counterfactual step: an action not taken, run on a copy of the state before a step.

    Nothing here was charged to the episode. ``cost`` is what the action (and, after a
    retrieval, the reading step that follows it) would have cost.
    """

    action: Action
    cost: float
    new_evidence: int
    confidence_before: float
    confidence_after: float
    answer: str  # the top candidate after the probe, empty when there is none
    answer_changed: bool  # the top candidate differs from the one before the step
    note: str = ""

    @property
    def confidence_delta(self) -> float:
        return self.confidence_after - self.confidence_before


@dataclass
class StepRecord:
    """The record of one step, as stored in the trace."""

    index: int
    action: Action
    cost: float
    latency_ms: float
    features: dict[str, float]  # state features and monitor values before the step
    new_evidence: int = 0
    new_supporting: int = 0  # new evidence that contains the top candidate or a bridge entity
    confidence_before: float = 0.0
    confidence_after: float = 0.0
    top_answer: str = ""
    note: str = ""  # what happened, such as "budget too small: 3 of 5 chunks kept"
    tier_used: str = ""  # tier whose output a reason step kept: the requested one, or embedded after a failure
    tokens_in: int = 0  # input tokens of a reason step, as its model reported them
    tokens_out: int = 0  # output tokens of a reason step, as its model reported them
    error: str = ""  # why the requested model tier failed, when the step fell back
    probe: ProbeRecord | None = None  # an action not taken, run on a copy of the state
    evidence_ids: list[str] = field(default_factory=list)  # evidence the step returned or read

    @property
    def confidence_delta(self) -> float:
        return self.confidence_after - self.confidence_before


@dataclass
class EpisodeState:
    """Everything the controller can see when it picks the next action."""

    question: str
    budget: float
    groups: tuple[str, ...] = ("public",)
    spent: float = 0.0
    evidence: dict[str, Evidence] = field(default_factory=dict)
    candidates: list[Candidate] = field(default_factory=list)
    open_hops: list[str] = field(default_factory=list)  # follow-up queries not yet retrieved
    done_queries: set[tuple[str, str]] = field(default_factory=set)  # (source, query) already run
    bridges: list[str] = field(default_factory=list)  # bridge entity names found
    steps: list[StepRecord] = field(default_factory=list)
    answer_type: str = ""
    route: str = "chunks"
    verified: dict[str, float] = field(default_factory=dict)  # candidate text -> support score
    info: dict[str, Any] = field(default_factory=dict)  # question analysis, computed once

    @property
    def remaining(self) -> float:
        return max(0.0, self.budget - self.spent)

    @property
    def top(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None

    @property
    def confidence(self) -> float:
        return self.candidates[0].confidence if self.candidates else 0.0

    def evidence_tokens(self) -> int:
        return sum(item.n_tokens for item in self.evidence.values())

    def ranked_evidence(self, limit: int | None = None) -> list[Evidence]:
        """Evidence for reasoners to read: the latest retrieval's results first, in rank order.

        An item found again by a later retrieval moves up with that retrieval's results.
        """
        ordered = sorted(
            self.evidence.values(),
            key=lambda item: (-item.details.get("retrieval", 0), item.details.get("rank", 0), item.evidence_id),
        )
        return ordered if limit is None else ordered[:limit]

    def count_retrievals(self) -> int:
        return sum(1 for step in self.steps if step.action.kind == "retrieve")

    def count(self, label: str) -> int:
        return sum(1 for step in self.steps if step.action.label == label)
