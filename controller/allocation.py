"""Global budget allocation: one total budget spread over a batch by estimated difficulty.

Before anything is retrieved, each question gets a difficulty score from its shape (the
monitors' static analysis), the number of hops the reasoner splits it into and the
number of corpus entities it links to. The ``global`` strategy then gives each question
a share of the total proportional to ``floor + score``. A single-fact lookup still gets
``floor`` parts, and a two-hop comparison gets more. The ``even`` strategy gives every
question the same share. Either way the shares add up to the total and no episode spends more than
its share, so the batch never spends more than the total.
"""

from __future__ import annotations

from collections.abc import Sequence

from controller.monitors import analyse_question

STRATEGIES = ("global", "even")


def estimate_difficulty(question: str, *, hops: int, linked_entities: int) -> float:
    """Score how much compute ``question`` is likely to need, in [0, 1].

    The weights are set by hand, not fitted: half from the monitors' difficulty (length,
    relative clauses, comparison and numeric words), then a fixed amount each for a
    multi-hop split, a comparison and up to four linked entities.
    """
    static = analyse_question(question)
    score = (
        0.5 * static["difficulty"]
        + 0.2 * float(hops >= 2)
        + 0.15 * static["is_comparison"]
        + 0.15 * min(linked_entities, 4) / 4
    )
    return min(1.0, max(0.0, score))


def allocate(scores: Sequence[float], total: float, *, strategy: str = "global", floor: float = 0.25) -> list[float]:
    """Split ``total`` tokens over questions with difficulty ``scores``.

    Returns one budget per question, in the order of ``scores``, summing to ``total``.
    """
    if strategy not in STRATEGIES:
        message = f"unknown allocation strategy {strategy!r}; use one of {list(STRATEGIES)}"
        raise ValueError(message)
    if not scores:
        message = "no questions to allocate a budget to"
        raise ValueError(message)
    if total <= 0:
        message = f"the total budget must be positive, got {total}"
        raise ValueError(message)
    if floor <= 0:
        message = f"floor must be positive so every question gets some budget, got {floor}"
        raise ValueError(message)
    if strategy == "even":
        weights = [1.0] * len(scores)
    else:
        weights = [floor + min(1.0, max(0.0, score)) for score in scores]
    whole = sum(weights)
    budgets = [total * weight / whole for weight in weights]
    # Rounding can push the sum a hair over the total, so the largest share gives up the excess.
    excess = sum(budgets) - total
    if excess > 0:
        largest = max(range(len(budgets)), key=budgets.__getitem__)
        budgets[largest] -= excess
    return budgets
