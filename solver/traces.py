"""Step traces: every step and every episode outcome, stored in LanceDB and exported.

Two tables sit beside the index tables in the same database: ``episodes`` (one row per
question asked, with its outcome once known) and ``steps`` (one row per action, with the
state features and monitor values the controller saw, the cost and the immediate
feedback). docs/traces.md describes the exported layout.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from controller.monitors import FEATURE_NAMES
from indexer.store import IndexStore, quote
from solver.answers import exact_match, token_f1
from solver.episode import EpisodeResult

logger = logging.getLogger("ponder.traces")

FEATURES = pa.struct([(name, pa.float64()) for name in FEATURE_NAMES])

EPISODES = pa.schema(
    [
        ("episode_id", pa.string()),
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("user", pa.string()),
        ("groups", pa.list_(pa.string())),
        ("question", pa.string()),
        ("answer", pa.string()),
        ("confidence", pa.float64()),
        ("abstained", pa.bool_()),
        ("answer_type", pa.string()),
        ("derivation", pa.string()),
        ("citations_json", pa.string()),
        ("evidence_ids", pa.list_(pa.string())),
        ("cost", pa.float64()),
        ("budget", pa.float64()),
        ("latency_ms", pa.float64()),
        ("policy", pa.string()),
        ("index_version", pa.int64()),
        ("n_steps", pa.int32()),
        ("outcome", pa.string()),  # "correct", "wrong" or "" while unknown
        ("outcome_source", pa.string()),  # "gold" or "user"
        ("gold_answers_json", pa.string()),
        ("exact_match", pa.float64()),
        ("f1", pa.float64()),
        ("feedback_answer", pa.string()),
    ]
)

STEPS = pa.schema(
    [
        ("episode_id", pa.string()),
        ("index_version", pa.int64()),
        ("step_index", pa.int32()),
        ("action", pa.string()),
        ("arguments_json", pa.string()),
        ("tier", pa.string()),
        ("cost", pa.float64()),
        ("latency_ms", pa.float64()),
        ("new_evidence", pa.int32()),
        ("new_supporting", pa.int32()),
        ("confidence_before", pa.float64()),
        ("confidence_after", pa.float64()),
        ("confidence_delta", pa.float64()),
        ("top_answer", pa.string()),
        ("note", pa.string()),
        ("features", FEATURES),
        ("tier_used", pa.string()),
        ("tokens_in", pa.int64()),
        ("tokens_out", pa.int64()),
        ("error", pa.string()),
        # Counterfactual probe of the step (solver/probes.py), null when the step has none.
        ("probe_action", pa.string()),
        ("probe_arguments_json", pa.string()),
        ("probe_cost", pa.float64()),
        ("probe_new_evidence", pa.int32()),
        ("probe_confidence_delta", pa.float64()),
        ("probe_answer", pa.string()),
        ("probe_answer_changed", pa.bool_()),
        ("probe_f1", pa.float64()),
        ("evidence_ids", pa.list_(pa.string())),  # evidence the step returned or read
    ]
)

PROBE_COLUMNS = [field for field in STEPS if field.name.startswith("probe_")]


class TraceError(ValueError):
    """A trace request that cannot be carried out."""


class TraceStore:
    """Buffered writer and reader of the ``episodes`` and ``steps`` tables."""

    def __init__(self, db: str, *, flush_every: int = 50) -> None:
        self.store = IndexStore(db)
        self.flush_every = flush_every
        self._episodes: list[dict[str, Any]] = []
        self._steps: list[dict[str, Any]] = []
        existing = self.store.table_names()
        for name, schema in (("episodes", EPISODES), ("steps", STEPS)):
            if name not in existing:
                self.store.db.create_table(name, schema=schema)
            else:
                _add_missing_columns(self.store.open(name), schema)

    def record(self, result: EpisodeResult, *, gold: list[str] | None = None, user: str | None = None) -> None:
        """Buffer one episode; with ``gold`` answers its outcome is scored now."""
        outcome, source, em, f1 = "", "", None, None
        if gold:
            em = exact_match(result.answer, gold)
            f1 = token_f1(result.answer, gold)
            outcome, source = ("correct" if em or f1 >= 0.5 else "wrong"), "gold"
        self._episodes.append(
            {
                "episode_id": result.episode_id,
                "created_at": datetime.now(UTC),
                "user": user or _user(),
                "groups": list(result.groups),
                "question": result.question,
                "answer": result.answer,
                "confidence": result.confidence,
                "abstained": result.abstained,
                "answer_type": result.answer_type,
                "derivation": result.derivation,
                "citations_json": json.dumps([citation.to_dict() for citation in result.citations], ensure_ascii=False),
                "evidence_ids": [item.evidence_id for item in result.evidence],
                "cost": result.cost,
                "budget": result.budget,
                "latency_ms": result.latency_ms,
                "policy": result.policy,
                "index_version": result.index_version,
                "n_steps": len(result.steps),
                "outcome": outcome,
                "outcome_source": source,
                "gold_answers_json": json.dumps(gold or [], ensure_ascii=False),
                "exact_match": em,
                "f1": f1,
                "feedback_answer": None,
            }
        )
        for step in result.steps:
            self._steps.append(
                {
                    "episode_id": result.episode_id,
                    "index_version": result.index_version,
                    "step_index": step.index,
                    "action": step.action.label,
                    "arguments_json": json.dumps(step.action.arguments(), ensure_ascii=False),
                    "tier": step.action.tier if step.action.kind == "reason" else "",
                    "cost": step.cost,
                    "latency_ms": step.latency_ms,
                    "new_evidence": step.new_evidence,
                    "new_supporting": step.new_supporting,
                    "confidence_before": step.confidence_before,
                    "confidence_after": step.confidence_after,
                    "confidence_delta": step.confidence_delta,
                    "top_answer": step.top_answer,
                    "note": step.note,
                    "features": {name: float(step.features.get(name, 0.0)) for name in FEATURE_NAMES},
                    "tier_used": step.tier_used,
                    "tokens_in": step.tokens_in,
                    "tokens_out": step.tokens_out,
                    "error": step.error,
                    **_probe_columns(step, gold),
                    "evidence_ids": list(step.evidence_ids),
                }
            )
        if len(self._episodes) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        if self._steps:
            self.store.open("steps").add(pa.Table.from_pylist(self._steps, schema=STEPS))
        if self._episodes:
            self.store.open("episodes").add(pa.Table.from_pylist(self._episodes, schema=EPISODES))
        self._steps, self._episodes = [], []

    def feedback(self, episode_id: str, *, correct: bool, answer: str | None = None) -> dict[str, Any]:
        """Record a user's verdict on an episode; returns the updated episode row."""
        self.flush()
        table = self.store.open("episodes")
        where = f"episode_id = {quote(episode_id)}"
        if table.count_rows(where) == 0:
            message = f"episode {episode_id} not found; list episodes with: ponder traces export --format jsonl --out -"
            raise TraceError(message)
        values: dict[str, Any] = {"outcome": "correct" if correct else "wrong", "outcome_source": "user"}
        if answer is not None:
            values["feedback_answer"] = answer
        table.update(where=where, values=values)
        return table.search().where(where).limit(1).to_arrow().to_pylist()[0]

    def steps_frame(self) -> pl.DataFrame:
        """Steps joined with their episode's outcome: one training row per step."""
        self.flush()
        steps = pl.from_arrow(self.store.open("steps").to_arrow())
        episodes = pl.from_arrow(self.store.open("episodes").to_arrow()).select(
            "episode_id", "question", "policy", "budget", "groups", "user", "answer", "outcome", "outcome_source",
            "exact_match", "f1", "cost", "abstained", "gold_answers_json", "citations_json",
        ).rename({"cost": "episode_cost", "answer": "final_answer"})
        return steps.join(episodes, on="episode_id", how="left").sort(["episode_id", "step_index"])

    def export(self, out: str | Path, *, export_format: str = "jsonl") -> int:
        """Write the steps with outcomes to ``out``; returns the number of rows."""
        if export_format not in {"jsonl", "parquet"}:
            message = f"unknown trace format {export_format!r}; use jsonl or parquet"
            raise TraceError(message)
        if str(out) == "-" and export_format != "jsonl":
            message = f"{export_format} cannot be written to standard output; pass a file path to --out, or use --format jsonl"
            raise TraceError(message)
        if Path(out).is_dir():
            message = f"{out} is a folder; pass a file path to --out, such as {Path(out) / ('steps.' + export_format)}"
            raise TraceError(message)
        frame = self.steps_frame()
        if str(out) == "-":
            import sys

            sys.stdout.write(frame.write_ndjson())
            return frame.height
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if export_format == "jsonl":
            frame.write_ndjson(out)
        else:
            frame.write_parquet(out)
        return frame.height


def _add_missing_columns(table, schema: pa.Schema) -> None:
    """Add the columns of ``schema`` that a table written by an older version lacks, as nulls."""
    present = set(table.schema.names)
    missing = [column for column in schema if column.name not in present]
    if missing:
        table.add_columns(missing)
        logger.info("added columns %s to the %s table", [column.name for column in missing], table.name)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER", "unknown")


def _probe_columns(step, gold: list[str] | None) -> dict[str, Any]:
    probe = step.probe
    if probe is None:
        return {field.name: None for field in PROBE_COLUMNS}
    return {
        "probe_action": probe.action.label,
        "probe_arguments_json": json.dumps(probe.action.arguments(), ensure_ascii=False),
        "probe_cost": probe.cost,
        "probe_new_evidence": probe.new_evidence,
        "probe_confidence_delta": probe.confidence_delta,
        "probe_answer": probe.answer,
        "probe_answer_changed": probe.answer_changed,
        "probe_f1": token_f1(probe.answer or None, gold) if gold else None,
    }
