"""The actions worth considering in a state, and the key that names each kind of action.

The learned controller scores these actions and counterfactual probes sample from them.
An action is left out when running it could not change the state: a retrieval already
run with the same query, or a reasoning operation over evidence it has already read.
"""

from __future__ import annotations

from solver.state import REASON, RETRIEVE, Action, EpisodeState

# A retrieval of chunks with a follow-up query (a hop through a bridge entity) is its own
# kind of action: its value differs from retrieving with the question itself.
HOP_KEY = "retrieve:hop"

ACTION_KEYS = (
    "retrieve:chunks",
    "retrieve:graph",
    "retrieve:table",
    HOP_KEY,
    "reason:decompose",
    "reason:bridge",
    "reason:synthesize",
    "reason:compare",
    "reason:compute",
    "reason:verify",
)

# Reasoning operations whose output depends on the evidence: worth repeating only after
# new evidence arrives.
_EVIDENCE_READERS = ("bridge", "synthesize", "compare", "verify")


def action_key(label: str, query: str, question: str) -> str:
    """Name the kind of an action: its label, or ``retrieve:hop`` for a follow-up retrieval."""
    if label.startswith(RETRIEVE + ":") and query and query != question:
        return HOP_KEY
    return label


def key_of(action: Action, question: str) -> str:
    return action_key(action.label, action.query, question)


def available_actions(state: EpisodeState, *, limit: int = 5) -> list[Action]:
    """List the retrievals and reasoning steps that could still change ``state``."""
    actions: list[Action] = []
    for source in ("chunks", "graph", "table"):
        if source == "table" and not state.info.get("has_tables"):
            continue
        if (source, state.question) not in state.done_queries:
            actions.append(Action(RETRIEVE, source, limit=limit))
    hops = [hop for hop in state.open_hops if ("chunks", hop) not in state.done_queries]
    if hops:
        actions.append(Action(RETRIEVE, "chunks", query=hops[0], limit=limit))

    if state.count("reason:decompose") == 0:
        actions.append(Action(REASON, "decompose"))
    if state.info.get("has_tables") and _unread_since("compute", state):
        actions.append(Action(REASON, "compute"))
    if state.evidence:
        for operation in _EVIDENCE_READERS:
            if operation == "verify" and (state.top is None or state.top.text in state.verified):
                continue
            if _unread_since(operation, state):
                actions.append(Action(REASON, operation))
    return actions


def _unread_since(operation: str, state: EpisodeState) -> bool:
    """True when ``operation`` never ran or evidence arrived after its last run."""
    label = f"{REASON}:{operation}"
    last = None
    for position, step in enumerate(state.steps):
        if step.action.label == label:
            last = position
    if last is None:
        return True
    return any(step.new_evidence > 0 for step in state.steps[last + 1 :])
