"""Evidence and answer candidates, shared by retrieval tools, reasoners and the controller."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Evidence:
    """A passage, graph path or table rows gathered during an episode."""

    evidence_id: str  # chunk_id for passages; table_id plus rows for table evidence
    kind: str  # "chunk", "graph", "table"
    doc_id: str
    title: str
    text: str
    score: float  # retrieval score, larger is better; comparable only within one kind
    n_tokens: int  # model tokens a reasoner reads to use this evidence
    source: str = ""  # the action that found it, such as "retrieve:chunks"
    hop: int = 0  # 0 for the question itself, 1 for a follow-up query through a bridge entity
    details: dict[str, Any] = field(default_factory=dict)  # graph path, table rows, derivation


@dataclass
class Candidate:
    """A possible answer with the evidence behind it."""

    text: str
    score: float  # unnormalised score from the reasoner
    confidence: float = 0.0  # calibrated probability-like value in [0, 1]
    answer_type: str = ""
    support: list[str] = field(default_factory=list)  # evidence_ids
    sentence: str = ""  # the supporting sentence
    derivation: str = ""  # for computed answers, the arithmetic shown
