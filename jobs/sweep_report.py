"""Tables and plots of a budget sweep or an allocation run.

Plots use matplotlib's Agg backend, so they render without a display.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SWEEP_JSON = "sweep.json"
SWEEP_MD = "sweep.md"
F1_PLOT = "f1_vs_cost.png"
COST_PLOT = "cost_distribution.png"
ALLOCATION_JSON = "allocation.json"
ALLOCATION_MD = "allocation.md"


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def sweep_table_markdown(result: dict[str, Any]) -> str:
    lines = [
        "| policy | budget | mean cost | p95 cost | EM | F1 | recall@5 | abstain | steps |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in result["table"]:
        lines.append(
            f"| {row['policy']} | {row['budget']:,.0f} | {row['cost_mean']:,.0f} | {row['cost_p95']:,.0f} | "
            f"{row['em']:.1f} | {row['f1']:.1f} | {_number(row['recall@5'], 3)} | {row['abstain_rate']:.2f} | {row['steps_mean']:.1f} |"
        )
    return "\n".join(lines)


def equal_cost_markdown(result: dict[str, Any]) -> str:
    comparison = result.get("equal_cost") or {}
    if not comparison:
        return "No `fixed` curve in this sweep, so there is no equal-cost comparison."
    reference = comparison["reference"]
    lines = [
        f"F1 at matched mean cost: each point of a policy against `{reference}`'s F1 interpolated "
        f"linearly at the same mean cost (`-` where that cost lies outside `{reference}`'s measured range).",
        "",
        f"| policy | mean cost | F1 | {reference} F1 at that cost | gain |",
        "| --- | --- | --- | --- | --- |",
    ]
    for policy, points in comparison["matched"].items():
        for point in points:
            lines.append(
                f"| {policy} | {point['cost_mean']:,.0f} | {point['f1']:.1f} | {_number(point['reference_f1'])} | "
                f"{_number(point['f1_gain'])} |"
            )
    lines += [
        "",
        f"Mean cost at which each policy first reaches `{reference}`'s best F1 ({comparison['reference_best_f1']:.1f}), "
        "interpolated between measured points (`never` when no measured point reaches it):",
        "",
        "| policy | mean cost to reach it |",
        "| --- | --- |",
    ]
    for policy, cost in comparison["cost_to_reach_reference_best"].items():
        lines.append(f"| {policy} | {'never' if cost is None else f'{cost:,.0f}'} |")
    return "\n".join(lines)


def allocation_markdown(result: dict[str, Any]) -> str:
    lines = [
        "| split of the total | total | spent | per-question budget (min to max) | EM | F1 | recall@5 | abstain | steps |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    names = {"global": "by difficulty (global)", "even": "even"}
    for strategy, row in result["strategies"].items():
        lines.append(
            f"| {names.get(strategy, strategy)} | {row['total_budget']:,.0f} | {row['spent']:,.0f} | "
            f"{row['budget_min']:,.0f} to {row['budget_max']:,.0f} | {row['em']:.1f} | {row['f1']:.1f} | "
            f"{_number(row['recall@5'], 3)} | {row['abstain_rate']:.2f} | {row['steps_mean']:.1f} |"
        )
    return "\n".join(lines)


def plot_f1_vs_cost(result: dict[str, Any], path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=110)
    # Distinct markers and dashes keep curves visible where two policies coincide.
    markers = "osD^vP*X"
    dashes = ["-", "--", ":", "-."]
    for index, policy in enumerate(result["policies"]):
        points = sorted((row["cost_mean"], row["f1"]) for row in result["table"] if row["policy"] == policy)
        if not points:
            continue
        costs, scores = zip(*points)
        axes.plot(
            costs, scores, marker=markers[index % len(markers)], linestyle=dashes[index % len(dashes)],
            markerfacecolor="none", label=policy,
        )
    axes.set_xlabel("mean cost per question (tokens)")
    axes.set_ylabel("F1")
    axes.set_title(title or "F1 against mean cost")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def plot_cost_distribution(result: dict[str, Any], path: Path, budget: float | None = None, title: str = "") -> float:
    """Draw a box plot of per-question cost for each policy at one budget; return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budget = budget if budget is not None else max(result["budgets"])
    policies = [policy for policy in result["policies"] if any(row["policy"] == policy for row in result["rows"])]
    costs = [[row["cost"] for row in result["rows"] if row["policy"] == policy and row["budget"] == budget] for policy in policies]
    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=110)
    axes.boxplot(costs, tick_labels=policies, showmeans=True)
    axes.axhline(budget, color="grey", linestyle="--", linewidth=1, label=f"budget {budget:,.0f}")
    axes.set_ylabel("cost per question (tokens)")
    axes.set_title(title or f"Cost per question at budget {budget:,.0f}")
    axes.legend(fontsize="small")
    axes.grid(alpha=0.3, axis="y")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return budget


def write_sweep(result: dict[str, Any], out: Path, *, title: str = "", plot_prefix: str = "") -> dict[str, Path]:
    """Write the sweep's JSON, markdown table and two plots into the folder ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / SWEEP_JSON,
        "markdown": out / SWEEP_MD,
        "f1_plot": out / f"{plot_prefix}{F1_PLOT}",
        "cost_plot": out / f"{plot_prefix}{COST_PLOT}",
    }
    paths["json"].write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    plot_f1_vs_cost(result, paths["f1_plot"], title=title)
    budget = plot_cost_distribution(result, paths["cost_plot"], title=f"{title}: cost per question" if title else "")
    heading = f"# {title}\n\n" if title else ""
    paths["markdown"].write_text(
        f"{heading}{result['questions']} questions, {result['seconds']:.0f} s.\n\n"
        f"{sweep_table_markdown(result)}\n\n{equal_cost_markdown(result)}\n\n"
        f"![F1 against mean cost]({paths['f1_plot'].name})\n\n"
        f"![Cost per question at budget {budget:,.0f}]({paths['cost_plot'].name})\n",
        encoding="utf-8",
    )
    return paths


def write_allocation(result: dict[str, Any], out: Path, *, title: str = "") -> dict[str, Path]:
    """Write an allocation run's JSON and markdown table into the folder ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / ALLOCATION_JSON, "markdown": out / ALLOCATION_MD}
    paths["json"].write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    heading = f"# {title}\n\n" if title else ""
    paths["markdown"].write_text(
        f"{heading}{result['questions']} questions, policy `{result['policy']}`, {result['seconds']:.0f} s.\n\n"
        f"{allocation_markdown(result)}\n",
        encoding="utf-8",
    )
    return paths
