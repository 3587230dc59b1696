"""Budget sweep and global allocation: accuracy against mean cost for many policies.

``run_sweep`` runs every question under every (policy, budget) pair and summarises each
pair with the scores of ``ponder eval``. ``run_allocation`` spends one total budget on a
batch twice, split by estimated difficulty and split evenly. ``write_sweep`` writes the
table as JSON and markdown and draws the plots.

Work is spread over worker processes (each loads the index, models and graph once) one
question at a time, so a worker runs all pairs of a question back to back and its
reasoner's sentence caches stay warm. Within a worker, retrieval results are cached per
(source, mode, query, groups, limit), because the baselines and the budgets repeat the
same searches.
"""

from __future__ import annotations

import copy
import logging
import multiprocessing
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from jobs.eval_job import score_episode, summarise

logger = logging.getLogger("ponder.sweep")

LEARNED = "learned"


@dataclass(frozen=True)
class Task:
    """One episode to run for a question: a policy at a budget, labelled by its setting."""

    policy: str
    budget: float
    setting: str  # the budget as text in a sweep, "global" or "even" in an allocation
    options: tuple[tuple[str, Any], ...] = ()


class CachedToolbox:
    """A toolbox whose retrievals and entity linking are memoised for one run.

    Cached evidence is handed out as deep copies, because an episode writes its own
    ranks and order into the evidence it keeps.
    """

    def __init__(self, toolbox) -> None:
        self._toolbox = toolbox
        self._retrievals: dict[tuple, tuple] = {}
        self._links: dict[tuple, list] = {}
        self.hits = 0
        self.misses = 0

    def __getattr__(self, name: str):
        return getattr(self._toolbox, name)

    def prepare(self, state) -> None:
        key = (state.question, state.groups)
        if key not in self._links:
            self._links[key] = self._toolbox.graph.link(state.question, state.groups)
        linked = self._links[key]
        state.info["linked"] = linked
        state.info["entity_names"] = [entity.surface or entity.name for entity in linked[:6]]
        state.info["has_tables"] = self._toolbox.has_tables

    def retrieve(self, source: str, query: str, state, *, limit: int, mode: str = "hybrid"):
        # A graph walk for the question itself is seeded by the question's linked
        # entities, so the key records whether the query is the question.
        key = (source, mode, query, state.groups, limit, query == state.question)
        if key not in self._retrievals:
            self.misses += 1
            self._retrievals[key] = self._toolbox.retrieve(source, query, state, limit=limit, mode=mode)
        else:
            self.hits += 1
        return copy.deepcopy(self._retrievals[key])


# -- running episodes, in process or in worker processes ---------------------------------

_WORKER: dict[str, Any] = {}


def _open_worker(db: str) -> None:
    from solver.service import Ponder

    ponder = Ponder(db, record=False)
    cached = CachedToolbox(ponder.toolbox)
    ponder.toolbox = cached
    ponder.solver.toolbox = cached
    _WORKER["ponder"] = ponder


def _run_question(item: tuple[dict[str, Any], list[Task], tuple[str, ...]]) -> list[dict[str, Any]]:
    record, tasks, groups = item
    ponder = _WORKER["ponder"]
    rows = []
    for task in tasks:
        started = time.perf_counter()
        result = ponder.ask(
            record["question"],
            policy=task.policy,
            budget=task.budget,
            groups=groups,
            gold=record["answers"],
            policy_options=dict(task.options),
        )
        row = score_episode(record, result, (time.perf_counter() - started) * 1000)
        row.update(policy=task.policy, setting=task.setting, budget=task.budget)
        rows.append(row)
    return rows


def _estimate_question(item: tuple[dict[str, Any], tuple[str, ...]]) -> dict[str, float]:
    from controller.allocation import estimate_difficulty

    record, groups = item
    ponder = _WORKER["ponder"]
    question = record["question"]
    hops = len(ponder.reasoner.decompose(question))
    linked = len(ponder.toolbox.graph.link(question, groups))
    return {"hops": hops, "linked": linked, "difficulty": estimate_difficulty(question, hops=hops, linked_entities=linked)}


@dataclass
class EpisodeRunner:
    """Run per-question work in this process (``workers`` <= 1) or in a process pool."""

    db: str
    workers: int = 2
    _pool: ProcessPoolExecutor | None = field(default=None, init=False, repr=False)

    def __enter__(self) -> EpisodeRunner:
        if self.workers <= 1:
            _open_worker(self.db)
        else:
            # spawn: a forked child would inherit the parent's model and Ray state.
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_open_worker, initargs=(self.db,))
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        _WORKER.clear()

    def map(self, function: Callable, items: Iterable, progress: Callable[[int], None] | None = None) -> list:
        items = list(items)
        if self._pool is None:
            results = []
            for item in items:
                results.append(function(item))
                if progress:
                    progress(len(results))
            return results
        results = []
        for result in self._pool.map(function, items):
            results.append(result)
            if progress:
                progress(len(results))
        return results


# -- the sweep ---------------------------------------------------------------------------


def check_policies(policies: Sequence[str], controller: str | None) -> None:
    """Reject unknown policies, and ``learned`` without a trained controller."""
    from controller.policies import policy_names

    if not policies:
        message = "no policies to sweep; pass --policies, for example --policies fixed,adaptive"
        raise ValueError(message)
    for name in policies:
        if name == LEARNED:
            if not controller:
                message = "policy 'learned' needs a trained controller; pass --controller MODEL or drop learned from --policies"
                raise ValueError(message)
            continue
        if name not in policy_names():
            message = f"unknown policy {name!r} in --policies; available policies: {policy_names()}"
            raise ValueError(message)


def sweep_tasks(policies: Sequence[str], budgets: Sequence[float], controller: str | None = None) -> list[Task]:
    check_policies(policies, controller)
    if not budgets or any(budget <= 0 for budget in budgets):
        message = f"budgets must be positive token counts, got {list(budgets)}"
        raise ValueError(message)
    tasks = []
    for policy in policies:
        options = (("controller", controller),) if policy == LEARNED else ()
        for budget in budgets:
            tasks.append(Task(policy, float(budget), f"{budget:g}", options))
    return tasks


def run_tasks(
    db: str,
    questions: list[dict[str, Any]],
    tasks: Sequence[Task],
    *,
    workers: int = 2,
    groups: Sequence[str] = ("public",),
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Run every task on every question and return one scored row per episode."""
    with EpisodeRunner(db, workers) as runner:
        per_question = runner.map(_run_question, [(record, list(tasks), tuple(groups)) for record in questions], progress)
    return [row for question_rows in per_question for row in question_rows]


def run_sweep(
    db: str,
    questions: list[dict[str, Any]],
    *,
    policies: Sequence[str],
    budgets: Sequence[float],
    controller: str | None = None,
    workers: int = 2,
    groups: Sequence[str] = ("public",),
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Run every question under every (policy, budget) pair and return the rows and the table."""
    tasks = sweep_tasks(policies, budgets, controller)
    started = time.perf_counter()
    rows = run_tasks(db, questions, tasks, workers=workers, groups=groups, progress=progress)
    table = []
    for task in tasks:
        group = [row for row in rows if row["policy"] == task.policy and row["setting"] == task.setting]
        table.append({"policy": task.policy, "budget": task.budget, **summarise(group)})
    return {
        "questions": len(questions),
        "policies": list(policies),
        "budgets": [float(budget) for budget in budgets],
        "seconds": round(time.perf_counter() - started, 1),
        "table": table,
        "equal_cost": equal_cost(table),
        "rows": rows,
    }


def _curve(table: list[dict[str, Any]], policy: str) -> list[tuple[float, float]]:
    return sorted((row["cost_mean"], row["f1"]) for row in table if row["policy"] == policy)


def interpolate(curve: list[tuple[float, float]], cost: float) -> float | None:
    """F1 of a policy at ``cost``, linear between its measured points; None outside them."""
    if not curve or cost < curve[0][0] or cost > curve[-1][0]:
        return None
    for (cost_a, f1_a), (cost_b, f1_b) in zip(curve, curve[1:]):
        if cost_a <= cost <= cost_b:
            if cost_b == cost_a:
                return max(f1_a, f1_b)
            return f1_a + (f1_b - f1_a) * (cost - cost_a) / (cost_b - cost_a)
    return curve[-1][1] if cost == curve[-1][0] else None


def cost_to_reach(curve: list[tuple[float, float]], target: float) -> float | None:
    """Lowest mean cost at which a curve reaches F1 ``target``, linear between points."""
    previous = None
    for cost, f1 in curve:
        if f1 >= target:
            if previous is None or previous[1] >= target:
                return cost
            cost_a, f1_a = previous
            return cost_a + (cost - cost_a) * (target - f1_a) / (f1 - f1_a)
        previous = (cost, f1)
    return None


def equal_cost(table: list[dict[str, Any]], reference: str = "fixed", others: Sequence[str] = ("adaptive", "adaptive-u", LEARNED)) -> dict[str, Any]:
    """Compare policies with ``reference`` at matched mean cost.

    For each other policy and each of its points, the result holds the reference's F1 at
    the same mean cost, interpolated along the reference's curve (None outside its
    range). It also holds the mean cost at which each policy first reaches the
    reference's best F1.
    """
    reference_curve = _curve(table, reference)
    if not reference_curve:
        return {}
    best = max(f1 for _, f1 in reference_curve)
    result: dict[str, Any] = {"reference": reference, "reference_best_f1": best, "cost_to_reach_reference_best": {}, "matched": {}}
    for policy in [reference, *others]:
        curve = _curve(table, policy)
        if not curve:
            continue
        reach = cost_to_reach(curve, best)
        result["cost_to_reach_reference_best"][policy] = None if reach is None else round(reach, 1)
        if policy == reference:
            continue
        matched = []
        for cost, f1 in curve:
            other = interpolate(reference_curve, cost)
            matched.append(
                {
                    "cost_mean": cost,
                    "f1": f1,
                    "reference_f1": None if other is None else round(other, 2),
                    "f1_gain": None if other is None else round(f1 - other, 2),
                }
            )
        result["matched"][policy] = matched
    return result


# -- global allocation -------------------------------------------------------------------


def run_allocation(
    db: str,
    questions: list[dict[str, Any]],
    *,
    total_budget: float,
    policy: str = "adaptive",
    controller: str | None = None,
    workers: int = 2,
    groups: Sequence[str] = ("public",),
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Spend ``total_budget`` on the batch split by difficulty, then split evenly."""
    from controller.allocation import allocate

    check_policies([policy], controller)
    if total_budget <= 0:
        message = f"--total-budget must be a positive number of tokens, got {total_budget}"
        raise ValueError(message)
    options = (("controller", controller),) if policy == LEARNED else ()
    started = time.perf_counter()
    with EpisodeRunner(db, workers) as runner:
        estimates = runner.map(_estimate_question, [(record, tuple(groups)) for record in questions])
        scores = [estimate["difficulty"] for estimate in estimates]
        plans = {strategy: allocate(scores, total_budget, strategy=strategy) for strategy in ("global", "even")}
        items = []
        for index, record in enumerate(questions):
            tasks = [Task(policy, plans[strategy][index], strategy, options) for strategy in plans]
            items.append((record, tasks, tuple(groups)))
        per_question = runner.map(_run_question, items, progress)
    rows = [row for question_rows in per_question for row in question_rows]
    for index, estimate in enumerate(estimates):
        for row in per_question[index]:
            row.update(estimate)
    strategies = {}
    for strategy, budgets in plans.items():
        group = [row for row in rows if row["setting"] == strategy]
        strategies[strategy] = {
            **summarise(group),
            "total_budget": total_budget,
            "allocated": round(sum(budgets), 2),
            "spent": round(sum(row["cost"] for row in group), 1),
            "budget_min": round(min(budgets), 1),
            "budget_max": round(max(budgets), 1),
        }
    return {
        "questions": len(questions),
        "policy": policy,
        "total_budget": total_budget,
        "seconds": round(time.perf_counter() - started, 1),
        "strategies": strategies,
        "rows": rows,
    }
