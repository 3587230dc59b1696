"""Evaluation: ask every question of a QA file and score the answers and the evidence.

Open-corpus setting: the index holds the whole corpus, not each question's own
paragraphs. Scores: exact match and token F1 with SQuAD normalisation against any gold
answer, supporting-paragraph recall@5 of the episode's evidence ranking, cost, latency
and abstention, overall and per question type.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from solver.answers import exact_match, token_f1
from solver.episode import EpisodeResult


class EvalError(ValueError):
    """The question file cannot be evaluated."""


def load_questions(path: str | Path, *, limit: int | None = None) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        message = f"question file not found: {path}"
        raise EvalError(message)
    questions = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            message = f"{path}:{number} is not valid JSON ({error.msg}); each line must be one question record"
            raise EvalError(message) from None
        if not isinstance(record, dict) or not isinstance(record.get("question"), str) or not record.get("answers"):
            message = f"{path}:{number} needs a 'question' string and a non-empty 'answers' list"
            raise EvalError(message)
        questions.append(record)
        if limit is not None and len(questions) >= limit:
            break
    if not questions:
        message = f"{path} contains no questions; each line must be one question record"
        raise EvalError(message)
    return questions


def evidence_ranking(result: EpisodeResult) -> list[str]:
    """Documents of an episode in its own order of relevance.

    First the documents cited for the answer, then those naming a bridge entity or the
    answer, then the rest in the order they were retrieved (rank within each retrieval).
    """
    ranked: list[str] = []

    def add(doc_id: str) -> None:
        if doc_id and doc_id not in ranked:
            ranked.append(doc_id)

    for citation in result.citations:
        add(citation.doc_id)
    answer = (result.answer or "").lower()
    bridges = [step.note.removeprefix("bridges: ").split(", ")[0].lower() for step in result.steps if step.note.startswith("bridges: ")]
    names = [name for name in [answer, *bridges] if len(name) > 2]
    for item in result.evidence:
        if any(name in item.text.lower() or name in item.title.lower() for name in names):
            add(item.doc_id)
    for item in sorted(result.evidence, key=lambda item: item.details.get("order", 0)):
        add(item.doc_id)
    return ranked


def percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))
    return ordered[index]


def evaluate(
    ask: Callable[..., EpisodeResult],
    questions: list[dict[str, Any]],
    *,
    policy: str,
    budget: float,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Ask every question and return the scores, overall and by question type."""
    rows = []
    for number, record in enumerate(questions, start=1):
        started = time.perf_counter()
        result = ask(record["question"], policy=policy, budget=budget, gold=record["answers"])
        latency = (time.perf_counter() - started) * 1000
        rows.append(score_episode(record, result, latency))
        if progress:
            progress(number, len(questions))
    summary = {"overall": summarise(rows)}
    by_type: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_type[row["type"]].append(row)
    summary["by_type"] = {name: summarise(group) for name, group in sorted(by_type.items())}
    summary["policy"] = policy
    summary["budget"] = budget
    summary["questions"] = rows
    return summary


def score_episode(record: dict[str, Any], result: EpisodeResult, latency_ms: float) -> dict[str, Any]:
    """Score one episode against its question record: one row of the evaluation."""
    gold_docs = {p["pid"] for p in record.get("paragraphs", []) if p.get("is_supporting")}
    ranked = evidence_ranking(result)
    return {
        "id": record.get("id"),
        "type": record.get("type") or "unknown",
        "question": record["question"],
        "gold": record["answers"][0],
        "answer": result.answer,
        "em": exact_match(result.answer, record["answers"]),
        "f1": token_f1(result.answer, record["answers"]),
        "recall@5": len(gold_docs & set(ranked[:5])) / len(gold_docs) if gold_docs else None,
        "cost": result.cost,
        "latency_ms": latency_ms,
        "abstained": result.abstained,
        "steps": len(result.steps),
        "episode_id": result.episode_id,
    }


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    recalls = [row["recall@5"] for row in rows if row["recall@5"] is not None]
    costs = [row["cost"] for row in rows]
    latencies = [row["latency_ms"] for row in rows]
    return {
        "n": len(rows),
        "em": round(100 * sum(row["em"] for row in rows) / len(rows), 2),
        "f1": round(100 * sum(row["f1"] for row in rows) / len(rows), 2),
        "recall@5": round(sum(recalls) / len(recalls), 4) if recalls else None,
        "cost_mean": round(sum(costs) / len(costs), 1),
        "cost_p95": round(percentile(costs, 0.95), 1),
        "latency_ms_p50": round(percentile(latencies, 0.5), 1),
        "latency_ms_p95": round(percentile(latencies, 0.95), 1),
        "abstain_rate": round(sum(row["abstained"] for row in rows) / len(rows), 4),
        "steps_mean": round(sum(row["steps"] for row in rows) / len(rows), 2),
    }
