"""Pick adaptive-u's uncertainty thresholds on the train split only.

Runs ``adaptive`` and ``adaptive-u`` under a small grid of (entropy, margin) thresholds
on the first --limit train questions of each data set and prints F1 and mean cost per
setting and budget. Heldout questions are never read.

Usage: python bench/tune_uncertainty.py --data ../shared/data --work ponder-data/bench
Writes bench/results/tune-uncertainty.json, which ``bench_sweep.py doc`` reports when present.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GRID = [(0.9, 0.1), (0.8, 0.2), (0.7, 0.3)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=ROOT / "ponder-data" / "bench")
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--budgets", default="2000,4000")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "tune-uncertainty.json")
    args = parser.parse_args()

    from bench.bench_sweep import DATA_SETS, index_path
    from jobs.eval_job import load_questions, summarise
    from jobs.splits import select_split
    from jobs.sweep import Task, run_tasks

    budgets = [float(value) for value in args.budgets.split(",")]
    tasks = [Task("adaptive", budget, f"adaptive@{budget:g}") for budget in budgets]
    for entropy, margin in GRID:
        options = (("entropy_threshold", entropy), ("margin_threshold", margin))
        tasks += [Task("adaptive-u", budget, f"u{entropy}/{margin}@{budget:g}", options) for budget in budgets]
    results = {}
    for name, spec in DATA_SETS.items():
        questions = select_split(load_questions(args.data / spec["questions"]), "train")[: args.limit]
        rows = run_tasks(str(index_path(args.work, name)), questions, tasks, workers=args.workers)
        results[name] = {}
        for task in tasks:
            summary = summarise([row for row in rows if row["setting"] == task.setting])
            results[name][task.setting] = {key: summary[key] for key in ("n", "f1", "em", "cost_mean", "steps_mean")}
        print(json.dumps({name: results[name]}, indent=2), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"limit": args.limit, "grid": GRID, "results": results}, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
