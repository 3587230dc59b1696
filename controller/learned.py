"""A controller learned from exported step traces, and the ``learned`` policy that uses it.

For every kind of action (solver/action_space.py) a logistic regression estimates the
probability that taking the action in a state improves the episode's answer, from the
monitor values logged with each step plus three features of the step's context.
docs/controller.md describes the features, how labels are made and how to train.

The model file is JSON: feature names, standardisation and weights per action kind.
Loading it runs no code, and inference needs only numpy. Training needs scikit-learn.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from controller.monitors import FEATURE_NAMES, monitor
from controller.policies import register
from solver.action_space import ACTION_KEYS, available_actions, key_of
from solver.episode import ANSWER_TOKENS, OUTPUT_TOKENS
from solver.state import RETRIEVAL_OVERHEAD_TOKENS, RETRIEVE, STOP, Action, EpisodeState

MODEL_FORMAT = "ponder-controller"
MODEL_FORMAT_VERSION = 1

# Context of a step that the monitors do not log but the trace rows hold.
CONTEXT_FEATURES = (
    "last_new_evidence",  # log(1 + evidence items the previous step added)
    "last_was_retrieve",  # 1 when the previous step was a retrieval
    "repeats",  # earlier steps of the same action kind in the episode
)
MODEL_FEATURES = (*FEATURE_NAMES, *CONTEXT_FEATURES)

# An action kind with fewer labelled rows than this, or with one label only, gets a
# constant probability instead of a regression.
MIN_ROWS = 20
# Used when the traces hold no cost for a retrieval kind: the query charge plus five
# results of about 80 tokens. NOTE: this is an estimate. Trained models carry measured medians.
DEFAULT_RETRIEVAL_COST = RETRIEVAL_OVERHEAD_TOKENS + 400.0


class ControllerError(ValueError):
    """A controller model or trace file that cannot be used."""


@dataclass
class ActionModel:
    """The estimated probability that one kind of action improves the answer."""

    key: str
    rows: int
    positive: int
    cost: float  # median tokens charged for this kind of action in the traces
    intercept: float
    mean: np.ndarray | None = None  # feature means and scales for standardisation, None when constant
    scale: np.ndarray | None = None
    coef: np.ndarray | None = None

    @property
    def constant(self) -> bool:
        return self.coef is None

    def probability(self, matrix: np.ndarray) -> np.ndarray:
        """Probabilities for the rows of ``matrix`` (columns in MODEL_FEATURES order)."""
        matrix = np.atleast_2d(np.asarray(matrix, dtype=float))
        if self.constant:
            logits = np.full(matrix.shape[0], self.intercept)
        else:
            logits = ((matrix - self.mean) / self.scale) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-logits))

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "model": "constant" if self.constant else "logistic",
            "rows": self.rows,
            "positive": self.positive,
            "cost": self.cost,
            "intercept": self.intercept,
        }
        if not self.constant:
            data["mean"] = self.mean.tolist()
            data["scale"] = self.scale.tolist()
            data["coef"] = self.coef.tolist()
        return data


@dataclass
class Controller:
    """Per-action-kind models over MODEL_FEATURES, saved as plain JSON."""

    actions: dict[str, ActionModel]
    base_rate: float  # share of labelled training rows whose action improved the answer
    features: tuple[str, ...] = MODEL_FEATURES
    seed: int = 0
    sources: list[str] = field(default_factory=list)

    def probability(self, key: str, matrix: np.ndarray) -> np.ndarray:
        """Probabilities that action kind ``key`` improves the answer; zeros when untrained."""
        model = self.actions.get(key)
        if model is None:
            return np.zeros(np.atleast_2d(matrix).shape[0])
        return model.probability(matrix)

    def weights(self, key: str) -> dict[str, float]:
        """Standardised weights of one action kind by feature name; empty for a constant model."""
        model = self.actions.get(key)
        if model is None or model.constant:
            return {}
        return dict(zip(self.features, model.coef.tolist(), strict=True))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "features": list(self.features),
            "seed": self.seed,
            "sources": self.sources,
            "base_rate": self.base_rate,
            "actions": {key: self.actions[key].to_dict() for key in sorted(self.actions)},
        }

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")

    @classmethod
    def from_dict(cls, data: Any, *, origin: str = "controller model") -> Controller:
        """Build a controller from parsed JSON, checking every field it relies on."""

        def invalid(reason: str) -> ControllerError:
            return ControllerError(
                f"{origin} is not a valid controller model: {reason}; "
                "train a new one with: ponder controller train TRACES --out MODEL"
            )

        if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
            raise invalid(f"the 'format' field must be {MODEL_FORMAT!r}")
        if data.get("format_version") != MODEL_FORMAT_VERSION:
            raise invalid(f"format_version {data.get('format_version')!r} is not {MODEL_FORMAT_VERSION}")
        features = data.get("features")
        if features != list(MODEL_FEATURES):
            raise invalid("it was trained on other features than this version of Ponder logs")
        actions = data.get("actions")
        if not isinstance(actions, dict) or not actions:
            raise invalid("it has no 'actions'")
        models = {}
        for key, entry in actions.items():
            if key not in ACTION_KEYS:
                raise invalid(f"unknown action kind {key!r}")
            models[key] = _action_model(key, entry, len(features), invalid)
        base_rate = data.get("base_rate")
        if not isinstance(base_rate, (int, float)) or not 0.0 <= base_rate <= 1.0:
            raise invalid("'base_rate' must be a number between 0 and 1")
        return cls(actions=models, base_rate=float(base_rate), seed=int(data.get("seed", 0)), sources=list(data.get("sources", [])))


def _action_model(key: str, entry: Any, width: int, invalid) -> ActionModel:
    if not isinstance(entry, dict) or entry.get("model") not in {"logistic", "constant"}:
        raise invalid(f"action {key!r} needs 'model' set to 'logistic' or 'constant'")
    try:
        model = ActionModel(
            key=key,
            rows=int(entry["rows"]),
            positive=int(entry["positive"]),
            cost=float(entry["cost"]),
            intercept=float(entry["intercept"]),
        )
        if entry["model"] == "logistic":
            model.mean = np.asarray(entry["mean"], dtype=float)
            model.scale = np.asarray(entry["scale"], dtype=float)
            model.coef = np.asarray(entry["coef"], dtype=float)
    except (KeyError, TypeError, ValueError) as error:
        raise invalid(f"action {key!r} has a missing or non-numeric field ({error})") from None
    arrays = [] if model.constant else [model.mean, model.scale, model.coef]
    if any(array.shape != (width,) for array in arrays):
        raise invalid(f"action {key!r} needs {width} values in mean, scale and coef")
    if not all(np.all(np.isfinite(array)) for array in arrays) or not math.isfinite(model.intercept):
        raise invalid(f"action {key!r} has a value that is not a finite number")
    if any(np.any(array <= 0) for array in arrays[1:2]):
        raise invalid(f"action {key!r} has a scale that is not positive")
    return model


def load_controller(path: str | Path) -> Controller:
    """Read a controller model file written by :func:`train_controller`."""
    path = Path(path)
    if not path.is_file():
        message = f"controller model not found: {path}; train one with: ponder controller train TRACES --out {path}"
        raise ControllerError(message)
    stat = path.stat()
    return _load_cached(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=8)
def _load_cached(path: str, mtime_ns: int, size: int) -> Controller:
    # Keyed by modification time and size, so a retrained file is read again.
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        message = f"{path} is not a valid controller model: not JSON ({error}); train one with: ponder controller train TRACES --out MODEL"
        raise ControllerError(message) from None
    return Controller.from_dict(data, origin=path)


# -- features at decision time ---------------------------------------------------------


def context_features(previous: Sequence[tuple[str, int]], key: str) -> dict[str, float]:
    """Context features for taking action kind ``key`` after ``previous`` steps.

    ``previous`` lists the earlier steps of the episode as (action kind, new evidence).
    """
    last_key, last_new = previous[-1] if previous else ("", 0)
    return {
        "last_new_evidence": math.log1p(max(0, last_new)),
        "last_was_retrieve": float(last_key.startswith(RETRIEVE + ":")),
        "repeats": float(sum(1 for step_key, _ in previous if step_key == key)),
    }


def feature_row(features: dict[str, float], context: dict[str, float]) -> list[float]:
    values = {**features, **context}
    return [float(values.get(name, 0.0)) for name in MODEL_FEATURES]


def state_row(state: EpisodeState, values: dict[str, float], key: str) -> list[float]:
    previous = [(key_of(step.action, state.question), step.new_evidence) for step in state.steps]
    return feature_row(values, context_features(previous, key))


# -- the policy --------------------------------------------------------------------------


@register("learned")
@dataclass
class LearnedPolicy:
    """Take the available action with the highest probability of improvement per token.

    Actions whose probability is below ``min_probability`` are not worth their cost; by
    default that bar is the model's base rate, so an action is taken only when it is
    likelier to help than the average step in the training traces. While the episode has
    no candidate answer the bar is 0, because stopping then abstains for certain. When no
    action clears the bar the episode stops, abstaining when it has no answer or its
    confidence is below ``abstain_confidence``.
    """

    controller: str | Path | None = None
    name: str = "learned"
    limit: int = 5
    min_probability: float | None = None
    abstain_confidence: float = 0.05

    def __post_init__(self) -> None:
        if self.controller is None:
            message = (
                "the learned policy needs a controller model: pass --controller MODEL "
                "(train one with: ponder controller train TRACES --out MODEL)"
            )
            raise ControllerError(message)
        if self.min_probability is not None and not 0.0 <= self.min_probability <= 1.0:
            message = f"min_probability must be between 0 and 1, got {self.min_probability}"
            raise ControllerError(message)
        self.model = load_controller(self.controller)
        self.threshold = self.model.base_rate if self.min_probability is None else self.min_probability

    def start(self, state: EpisodeState) -> None:
        return None

    def score(self, state: EpisodeState) -> list[tuple[Action, float, float]]:
        """List each affordable available action with its probability of improvement and its cost."""
        values = monitor(state)
        scored = []
        for action in available_actions(state, limit=self.limit):
            cost = self._estimate_cost(state, action)
            if cost is None:
                continue
            key = key_of(action, state.question)
            row = np.asarray([state_row(state, values, key)])
            scored.append((action, float(self.model.probability(key, row)[0]), cost))
        return scored

    def choose(self, state: EpisodeState) -> Action:
        threshold = self.threshold if state.top is not None else 0.0
        worthwhile = [item for item in self.score(state) if item[1] > 0.0 and item[1] >= threshold]
        if worthwhile:
            action, _, _ = max(worthwhile, key=lambda item: item[1] / max(item[2], 1.0))
            if action.query and action.query in state.open_hops:
                state.open_hops.remove(action.query)
            return action
        if state.top is None or state.confidence < self.abstain_confidence:
            return Action(STOP, "abstain")
        return Action(STOP, "answer")

    def _estimate_cost(self, state: EpisodeState, action: Action) -> float | None:
        """Tokens the action would likely be charged, or None when it cannot be afforded."""
        remaining = state.remaining
        if action.kind == RETRIEVE:
            if remaining < RETRIEVAL_OVERHEAD_TOKENS + 1:
                return None
            model = self.model.actions.get(key_of(action, state.question))
            expected = model.cost if model is not None and model.cost > 0 else DEFAULT_RETRIEVAL_COST
            return min(expected, remaining)
        # The solver's own reservation: the question, the evidence it reads and the output.
        question_tokens = state.info.get("question_tokens") or int(1.3 * len(state.question.split())) + 2
        output_tokens = OUTPUT_TOKENS.get(action.name, ANSWER_TOKENS)
        if remaining < question_tokens + output_tokens:
            return None
        return min(float(question_tokens + state.evidence_tokens() + output_tokens), remaining)


# -- training ------------------------------------------------------------------------------


def train_controller(traces: Sequence[Path], out: Path, *, seed: int = 0) -> dict:
    """Train a controller on exported trace files (jsonl or parquet) and write it to ``out``.

    Returns a report: labelled rows, label balance, cross-validated accuracy and ROC AUC
    per action kind, and the features used.
    """
    from controller.training import fit_controller, labelled_rows, read_traces

    frame = read_traces(traces)
    rows = labelled_rows(frame)
    controller, report = fit_controller(rows, seed=seed)
    controller.sources = [Path(path).name for path in traces]
    controller.save(out)
    report["out"] = str(out)
    return report
