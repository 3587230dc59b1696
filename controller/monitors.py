"""Monitors: what the controller knows about an episode at each step.

Every value is in [0, 1] unless its name says otherwise, is computed from the state alone
(no extra model calls), and is logged with each step so traces can train controllers.
"""

from __future__ import annotations

import math
import re

from solver.state import EpisodeState

_RELATIVE = re.compile(r"\b(who|whom|whose|which|that|where|when)\b", re.IGNORECASE)
_COMPARISON = re.compile(
    r"\b(both|either|older|younger|first|earlier|later|larger|smaller|more|less|longer|shorter|taller|higher|lower|same)\b",
    re.IGNORECASE,
)
_NUMERIC = re.compile(
    r"\b(how (much|many)|percentage|percent|change|difference|total|average|sum|ratio|increase|decrease|growth|revenue|cost|amount)\b",
    re.IGNORECASE,
)
_CAPITALISED = re.compile(r"(?<![.?!]\s)\b[A-Z][\w'’-]+(?:\s+(?:of|the|and|de|von|van)?\s*[A-Z][\w'’-]+)*")

FEATURE_NAMES = (
    "difficulty",
    "is_bridge",
    "is_comparison",
    "is_numeric",
    "question_entities",
    "budget_left",
    "steps",
    "evidence_count",
    "evidence_tokens",
    "coverage",
    "type_supported",
    "sufficiency",
    "confidence",
    "margin",
    "agreement",
    "entropy",
    "marginal_gain",
    "candidates",
    "open_hops",
    "bridges",
    "retrieved_chunks",
    "retrieved_graph",
    "retrieved_table",
    "verified",
)


def analyse_question(question: str) -> dict[str, float]:
    """Compute static features of the question, whose shape hints at how hard it is."""
    words = question.split()
    relative = len(_RELATIVE.findall(question[1:])) if words else 0
    comparison = bool(_COMPARISON.search(question)) or " or " in question.lower()
    numeric = bool(_NUMERIC.search(question))
    entities = len(_CAPITALISED.findall(question[1:])) if len(question) > 1 else 0
    # A bridge question describes an entity it does not name ("the woman who portrayed X").
    bridge = relative > 0 or bool(re.search(r"\b(of|by|from|in) the\b", question, re.IGNORECASE))
    length = min(1.0, len(words) / 30)
    difficulty = _sigmoid(-1.5 + 2.0 * length + 1.0 * bridge + 0.8 * comparison + 0.4 * min(entities, 3) / 3 + 0.5 * numeric)
    return {
        "difficulty": difficulty,
        "is_bridge": float(bridge),
        "is_comparison": float(comparison),
        "is_numeric": float(numeric),
        "question_entities": float(entities),
    }


def _sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value))


def coverage(state: EpisodeState) -> float:
    """Share of the question's entity names that appear in the gathered evidence."""
    names = state.info.get("entity_names") or []
    if not names:
        return 1.0 if state.evidence else 0.0
    text = " ".join(item.text.lower() + " " + item.title.lower() for item in state.evidence.values())
    return sum(1 for name in names if name.lower() in text) / len(names)


def candidate_entropy(state: EpisodeState) -> float:
    """Normalised entropy of the candidates' confidences (1 means no preference)."""
    weights = [max(candidate.confidence, 1e-6) for candidate in state.candidates[:5]]
    if len(weights) < 2:
        return 0.0 if weights else 1.0
    total = sum(weights)
    probabilities = [weight / total for weight in weights]
    return -sum(p * math.log(p) for p in probabilities) / math.log(len(probabilities))


def marginal_gain(state: EpisodeState, window: int = 2) -> float:
    """Confidence gained per 1,000 tokens over the last ``window`` steps."""
    recent = state.steps[-window:]
    spent = sum(step.cost for step in recent)
    if not recent or spent <= 0:
        return 0.0
    gained = recent[-1].confidence_after - recent[0].confidence_before
    return gained / spent * 1000


def monitor(state: EpisodeState) -> dict[str, float]:
    """Compute all monitor values and state features, keyed by FEATURE_NAMES."""
    static = state.info.get("static")
    if static is None:
        static = analyse_question(state.question)
        if "needs_bridge" in state.info:
            # The reasoner's parse of the question beats the keyword test when present.
            static["is_bridge"] = float(state.info["needs_bridge"])
        state.info["static"] = static
    candidates = state.candidates
    top = candidates[0] if candidates else None
    second = candidates[1].confidence if len(candidates) > 1 else 0.0
    sources = set()
    if top is not None:
        for evidence_id in top.support:
            item = state.evidence.get(evidence_id)
            if item is not None:
                sources.add((item.source, item.hop))
    type_supported = float(top is not None and (not state.answer_type or top.answer_type in ("", state.answer_type)))
    covered = coverage(state)
    return {
        **static,
        "budget_left": state.remaining / state.budget if state.budget else 0.0,
        "steps": float(len(state.steps)),
        "evidence_count": float(len(state.evidence)),
        "evidence_tokens": float(state.evidence_tokens()),
        "coverage": covered,
        "type_supported": type_supported,
        "sufficiency": 0.5 * covered + 0.5 * type_supported,
        "confidence": top.confidence if top else 0.0,
        "margin": (top.confidence - second) if top else 0.0,
        "agreement": min(1.0, len(sources) / 2),
        "entropy": candidate_entropy(state),
        "marginal_gain": marginal_gain(state),
        "candidates": float(len(candidates)),
        "open_hops": float(len(state.open_hops)),
        "bridges": float(len(state.bridges)),
        "retrieved_chunks": float(state.count("retrieve:chunks")),
        "retrieved_graph": float(state.count("retrieve:graph")),
        "retrieved_table": float(state.count("retrieve:table")),
        "verified": float(bool(top and top.text in state.verified)),
    }
