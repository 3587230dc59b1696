"""Question-answering benchmark: fixed against adaptive at the same mean cost.

For each data set, runs ``adaptive`` at the given budget, then ``fixed`` with its budget
set to the mean cost ``adaptive`` reached. The fixed plan spends its whole budget on
nearly every question, so the two mean costs land close together and the comparison is
at equal mean cost. With --reference it also runs ``fixed`` at the full budget.

Usage:
  python bench/bench_eval.py --data ../shared/data --work /tmp/ponder-bench --out bench/results/eval.json
The indexes are built under --work when missing (HotpotQA: its 4,858 paragraphs;
TAT-QA: its paragraphs and tables).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_index(corpus_files: list[Path], work: Path, name: str) -> str:
    from jobs.index_job import run_index

    db = work / f"{name}-index"
    folder = work / f"{name}-corpus"
    if not (db / "index_runs.lance").exists():
        folder.mkdir(parents=True, exist_ok=True)
        for file in corpus_files:
            shutil.copy(file, folder / file.name)
        run_index(folder, str(db))
    return str(db)


def run(db: str, questions: list[dict], policy: str, budget: float) -> dict:
    from jobs.eval_job import evaluate
    from solver.service import Ponder

    ponder = Ponder(db, record=False)
    started = time.perf_counter()
    summary = evaluate(ponder.ask, questions, policy=policy, budget=budget)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    summary.pop("questions")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=Path("/tmp/ponder-bench"))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "eval.json")
    parser.add_argument("--budget", type=float, default=4000)
    parser.add_argument("--limit", type=int, default=None, help="questions per data set (default: all)")
    parser.add_argument("--reference", action="store_true", help="also run fixed at the full budget")
    args = parser.parse_args()

    from jobs.eval_job import load_questions

    args.work.mkdir(parents=True, exist_ok=True)
    sets = {
        "hotpotqa": ([args.data / "hotpotqa-dev.jsonl"], args.data / "hotpotqa-dev.jsonl"),
        "tatqa": ([args.data / "tatqa-dev.jsonl", args.data / "tatqa-tables.jsonl"], args.data / "tatqa-dev.jsonl"),
    }
    results = {}
    for name, (corpus, question_file) in sets.items():
        db = build_index(corpus, args.work, name)
        questions = load_questions(question_file, limit=args.limit)
        adaptive = run(db, questions, "adaptive", args.budget)
        matched = max(1.0, adaptive["overall"]["cost_mean"])
        fixed_matched = run(db, questions, "fixed", matched)
        results[name] = {"adaptive": adaptive, "fixed_at_adaptive_mean_cost": fixed_matched}
        if args.reference:
            results[name]["fixed"] = run(db, questions, "fixed", args.budget)
        print(json.dumps({name: {key: value["overall"] for key, value in results[name].items()}}, indent=2), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
