"""Training rows and models for the learned controller, from exported step traces.

A row is one (state, action kind) pair with a label: 1 when the action improved the
answer. Steps that were taken are labelled from the episode outcome, gated by the step's
own feedback; counterfactual probes are labelled from the F1 of the probe's answer.
docs/controller.md states the rules.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from controller.learned import (
    MIN_ROWS,
    MODEL_FEATURES,
    ActionModel,
    Controller,
    ControllerError,
    context_features,
    feature_row,
)
from controller.monitors import FEATURE_NAMES
from solver.action_space import action_key
from solver.answers import normalize_answer, token_f1

REQUIRED_COLUMNS = (
    "episode_id",
    "step_index",
    "action",
    "arguments_json",
    "cost",
    "new_evidence",
    "new_supporting",
    "confidence_delta",
    "top_answer",
    "features",
    "question",
    "outcome",
    "final_answer",
)
# A score must rise by more than this to count as an improvement.
TOLERANCE = 1e-6


def read_traces(paths: Sequence[str | Path]) -> pl.DataFrame:
    """Read exported trace files (``.jsonl`` or ``.parquet``) into one frame."""
    if not paths:
        raise ControllerError("no trace files given; export some with: ponder traces export --format jsonl --out steps.jsonl")
    frames = []
    for path in map(Path, paths):
        if not path.is_file():
            message = f"trace file not found: {path}; export one with: ponder traces export --format jsonl --out {path}"
            raise ControllerError(message)
        try:
            if path.suffix == ".parquet":
                frame = pl.read_parquet(path)
            elif path.suffix in {".jsonl", ".ndjson", ".json"}:
                frame = pl.read_ndjson(path, infer_schema_length=None)
            else:
                message = f"unknown trace file type {path.suffix!r} for {path}; use .jsonl or .parquet as written by ponder traces export"
                raise ControllerError(message)
        except pl.exceptions.PolarsError as error:
            message = f"cannot read trace file {path}: {error}"
            raise ControllerError(message) from None
        missing = [name for name in REQUIRED_COLUMNS if name not in frame.columns]
        if missing:
            message = f"trace file {path} lacks the columns {missing}; write it with: ponder traces export"
            raise ControllerError(message)
        frames.append(frame)
    return pl.concat(frames, how="diagonal_relaxed")


def labelled_rows(frame: pl.DataFrame) -> dict[str, Any]:
    """Turn trace rows into model rows: features, action kind, label, source and episode.

    Episodes without gold answers or user feedback carry no outcome and are skipped.
    """
    features = frame["features"].struct.unnest() if frame.height else pl.DataFrame()
    missing = [name for name in FEATURE_NAMES if name not in features.columns]
    if frame.height and missing:
        message = f"the traces' features lack {missing}; export them again with this version of ponder"
        raise ControllerError(message)
    records = frame.drop("features").to_dicts()
    feature_records = features.select(FEATURE_NAMES).to_dicts() if frame.height else []
    for record, values in zip(records, feature_records, strict=True):
        record["_features"] = values

    episodes: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        episodes.setdefault(record["episode_id"], []).append(record)

    matrix, keys, labels, sources, groups, costs = [], [], [], [], [], []
    skipped = 0
    for episode_id, steps in episodes.items():
        steps.sort(key=lambda record: record["step_index"])
        score = _scorer(steps[0])
        if score is None:
            skipped += len(steps)
            continue
        final = score(steps[0].get("final_answer"))
        previous: list[tuple[str, int]] = []
        before = ""
        for record in steps:
            question = record["question"]
            key = action_key(record["action"], _query(record["arguments_json"]), question)
            before_score = score(before or None)
            effect = (
                (record["new_evidence"] or 0) > 0
                or (record["new_supporting"] or 0) > 0
                or abs(record["confidence_delta"] or 0.0) > TOLERANCE
                or (record["top_answer"] or "") != before
            )
            matrix.append(feature_row(record["_features"], context_features(previous, key)))
            keys.append(key)
            labels.append(int(effect and final > before_score + TOLERANCE))
            sources.append("step")
            groups.append(episode_id)
            costs.append(float(record["cost"] or 0.0))

            probe_action = record.get("probe_action")
            probe_f1 = record.get("probe_f1")
            if probe_action and probe_f1 is not None:
                probe_key = action_key(probe_action, _query(record.get("probe_arguments_json")), question)
                probe_effect = (record.get("probe_new_evidence") or 0) > 0 or abs(record.get("probe_confidence_delta") or 0.0) > TOLERANCE or bool(record.get("probe_answer_changed"))
                matrix.append(feature_row(record["_features"], context_features(previous, probe_key)))
                keys.append(probe_key)
                labels.append(int(probe_effect and probe_f1 > before_score + TOLERANCE))
                sources.append("probe")
                groups.append(episode_id)
                costs.append(float(record.get("probe_cost") or 0.0))

            previous.append((key, record["new_evidence"] or 0))
            before = record["top_answer"] or ""
    return {
        "matrix": np.asarray(matrix, dtype=float).reshape(len(matrix), len(MODEL_FEATURES)),
        "keys": np.asarray(keys, dtype=object),
        "labels": np.asarray(labels, dtype=int),
        "sources": np.asarray(sources, dtype=object),
        "groups": np.asarray(groups, dtype=object),
        "costs": np.asarray(costs, dtype=float),
        "skipped": skipped,
        "episodes": len(episodes),
    }


def _query(arguments_json: str | None) -> str:
    if not arguments_json:
        return ""
    try:
        arguments = json.loads(arguments_json)
    except json.JSONDecodeError:
        return ""
    return arguments.get("query") or "" if isinstance(arguments, dict) else ""


def _scorer(record: dict[str, Any]):
    """A function scoring an answer in [0, 1] for one episode, or None without an outcome.

    Gold answers give token F1. A user's verdict scores the final answer 1 or 0 and any
    other answer 0, since the verdict says nothing else about it.
    """
    gold = _gold(record.get("gold_answers_json"))
    if gold:
        return lambda answer: token_f1(answer, gold)
    outcome = record.get("outcome")
    if outcome not in {"correct", "wrong"}:
        return None
    final = normalize_answer(record.get("final_answer") or "")
    value = 1.0 if outcome == "correct" else 0.0
    return lambda answer: value if answer and final and normalize_answer(answer) == final else 0.0


def _gold(text: str | None) -> list[str]:
    if not text:
        return []
    try:
        gold = json.loads(text)
    except json.JSONDecodeError:
        return []
    return [answer for answer in gold if isinstance(answer, str)] if isinstance(gold, list) else []


def fit_controller(rows: dict[str, Any], *, seed: int = 0, min_rows: int = MIN_ROWS, regularization: float = 1.0) -> tuple[Controller, dict]:
    """Fit one logistic regression per action kind; returns the controller and a report."""
    labels = rows["labels"]
    if labels.size == 0:
        message = (
            "the traces hold no labelled steps: score episodes against gold answers with ponder eval, "
            "or record outcomes with ponder feedback, then export again"
        )
        raise ControllerError(message)
    actions: dict[str, ActionModel] = {}
    per_action: dict[str, dict[str, Any]] = {}
    base_rate = float(labels.mean())
    for key in sorted(set(rows["keys"])):
        mask = rows["keys"] == key
        model, summary = _fit_action(
            key, rows["matrix"][mask], labels[mask], rows["groups"][mask], rows["costs"][mask],
            seed=seed, min_rows=min_rows, regularization=regularization, base_rate=base_rate,
        )
        summary["probe_rows"] = int(np.sum(rows["sources"][mask] == "probe"))
        actions[key] = model
        per_action[key] = summary
    positive = int(labels.sum())
    report = {
        "rows": int(labels.size),
        "step_rows": int(np.sum(rows["sources"] == "step")),
        "probe_rows": int(np.sum(rows["sources"] == "probe")),
        "episodes": rows["episodes"],
        "unlabelled_rows": rows["skipped"],
        "label_balance": {"positive": positive, "negative": int(labels.size - positive), "positive_share": round(positive / labels.size, 4)},
        "actions": per_action,
        "features": list(MODEL_FEATURES),
        "seed": seed,
    }
    return Controller(actions=actions, base_rate=positive / labels.size, seed=seed), report


def _fit_action(key, matrix, labels, groups, costs, *, seed, min_rows, regularization, base_rate) -> tuple[ActionModel, dict]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    positive = int(labels.sum())
    charged = costs[costs > 0]
    cost = float(np.median(charged)) if charged.size else 0.0
    summary: dict[str, Any] = {"rows": int(labels.size), "positive": positive, "cost_median": round(cost, 1)}
    if labels.size < min_rows or positive in (0, labels.size):
        # The action's rate shrunk toward the rate over all actions, with the weight of
        # min_rows rows: two lucky rows must not outrank an action with hundreds.
        rate = (positive + base_rate * min_rows) / (labels.size + min_rows)
        rate = min(max(rate, 1e-3), 1 - 1e-3)
        summary.update(model="constant", probability=round(rate, 4), cv_accuracy=None, cv_roc_auc=None, cv_folds=0)
        return ActionModel(key, int(labels.size), positive, cost, intercept=float(np.log(rate / (1 - rate)))), summary

    def make() -> Any:
        return make_pipeline(StandardScaler(), LogisticRegression(C=regularization, max_iter=2000, random_state=seed))

    summary.update(model="logistic", **_cross_validate(make, matrix, labels, groups, seed))
    pipeline = make().fit(matrix, labels)
    scaler, regression = pipeline[0], pipeline[1]
    # StandardScaler gives a feature that is constant in the training rows a scale of 1, so no scale is 0.
    model = ActionModel(
        key, int(labels.size), positive, cost,
        intercept=float(regression.intercept_[0]),
        mean=scaler.mean_.astype(float), scale=scaler.scale_.astype(float), coef=regression.coef_[0].astype(float),
    )
    ranked = sorted(zip(MODEL_FEATURES, model.coef.tolist(), strict=True), key=lambda item: -abs(item[1]))
    summary["top_weights"] = {name: round(weight, 3) for name, weight in ranked[:5]}
    return model, summary


def _cross_validate(make, matrix, labels, groups, seed) -> dict[str, Any]:
    """Accuracy and ROC AUC over folds that keep each episode's rows together."""
    from sklearn.exceptions import UndefinedMetricWarning
    from sklearn.model_selection import StratifiedGroupKFold, cross_validate

    minority = int(min(labels.sum(), labels.size - labels.sum()))
    folds = min(5, minority, len(set(groups)))
    if folds < 2:
        return {"cv_accuracy": None, "cv_roc_auc": None, "cv_folds": 0}
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # A fold whose test rows hold one label has no ROC AUC; it is left out of the mean.
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        scores = cross_validate(make(), matrix, labels, groups=groups, cv=splitter, scoring=("accuracy", "roc_auc"), error_score=np.nan)
        accuracy, auc = np.nanmean(scores["test_accuracy"]), np.nanmean(scores["test_roc_auc"])
    return {
        "cv_accuracy": None if np.isnan(accuracy) else round(float(accuracy), 4),
        "cv_roc_auc": None if np.isnan(auc) else round(float(auc), 4),
        "cv_folds": folds,
    }
