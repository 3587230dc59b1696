"""Budget-sweep benchmark: accuracy against mean cost, allocation, and the doc.

Steps, each a subcommand so that ``make benchmarks`` can run them one at a time:

- ``index``: build the HotpotQA and TAT-QA indexes under --work when missing.
- ``sweep``: on the heldout split of each data set, run every policy at every budget
  (with ``learned`` when --controller names a model file that exists), then spend one
  total budget split by difficulty and split evenly. Writes bench/results/sweep/.
- ``doc``: regenerate docs/benchmarks.md and docs/img/*.png from bench/results/.

Usage:
  python bench/bench_sweep.py index --data ../shared/data --work ponder-data/bench
  python bench/bench_sweep.py sweep --data ../shared/data --work ponder-data/bench
  python bench/bench_sweep.py doc
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SWEEP_RESULTS = RESULTS / "sweep"
DOC = ROOT / "docs" / "benchmarks.md"
IMAGES = ROOT / "docs" / "img"

# Each data set: the files its corpus is indexed from, and its question file.
DATA_SETS = {
    "hotpotqa": {
        "title": "HotpotQA dev",
        "corpus": ["hotpotqa-dev.jsonl"],
        "questions": "hotpotqa-dev.jsonl",
    },
    "tatqa": {
        "title": "TAT-QA dev",
        "corpus": ["tatqa-dev.jsonl", "tatqa-tables.jsonl"],
        "questions": "tatqa-dev.jsonl",
    },
}
DEFAULT_POLICIES = "dense,fts,hybrid,ircot,fixed,adaptive,adaptive-u"
DEFAULT_BUDGETS = "500,1000,2000,4000"
DEFAULT_LIMIT = 100
DEFAULT_TOTAL_PER_QUESTION = 1500.0


def index_path(work: Path, name: str) -> Path:
    return work / f"{name}-index"


def build_indexes(data: Path, work: Path) -> dict[str, float]:
    """Index each data set's corpus under ``work`` unless its index already exists."""
    from jobs.index_job import run_index

    seconds = {}
    for name, spec in DATA_SETS.items():
        db = index_path(work, name)
        if (db / "index_runs.lance").exists():
            print(f"{name}: index exists at {db}", flush=True)
            continue
        folder = work / f"{name}-corpus"
        folder.mkdir(parents=True, exist_ok=True)
        for file_name in spec["corpus"]:
            shutil.copy(data / file_name, folder / file_name)
        started = time.perf_counter()
        run_index(folder, str(db))
        seconds[name] = round(time.perf_counter() - started, 1)
        print(f"{name}: indexed in {seconds[name]} s", flush=True)
    return seconds


def run_sweeps(args: argparse.Namespace) -> None:
    from jobs.eval_job import load_questions
    from jobs.splits import select_split
    from jobs.sweep import run_allocation, run_sweep
    from jobs.sweep_report import write_allocation, write_sweep

    policies = [name.strip() for name in args.policies.split(",") if name.strip()]
    controller = None
    if args.controller and Path(args.controller).exists():
        controller = str(args.controller)
        policies.append("learned")
    elif args.controller:
        print(f"controller model {args.controller} not found; sweeping without the learned policy", flush=True)
    budgets = [float(value) for value in args.budgets.split(",")]
    for name, spec in DATA_SETS.items():
        questions = select_split(load_questions(args.data / spec["questions"]), "heldout", seed=args.split_seed)
        sample = questions[: args.limit] if args.limit else questions
        db = str(index_path(args.work, name))
        out = SWEEP_RESULTS / name
        if out.exists():
            shutil.rmtree(out)
        print(f"{name}: {len(sample)} of {len(questions)} heldout questions, {len(policies)} policies, {len(budgets)} budgets", flush=True)

        result = run_sweep(db, sample, policies=policies, budgets=budgets, controller=controller, workers=args.workers)
        result.update(data_set=name, heldout_questions=len(questions), split_seed=args.split_seed)
        write_sweep(result, out, title=spec["title"])
        print(f"{name}: sweep took {result['seconds']} s", flush=True)

        total = args.total_per_question * len(sample)
        allocation = run_allocation(db, sample, total_budget=total, policy="adaptive", workers=args.workers)
        write_allocation(allocation, out, title=spec["title"])
        print(f"{name}: allocation took {allocation['seconds']} s", flush=True)


# -- the doc -------------------------------------------------------------------------------


def _indexing_section() -> str:
    """Build the indexing section from bench/results/index.json, else keep the current doc's."""
    path = RESULTS / "index.json"
    if path.exists():
        return _indexing_from_json(json.loads(path.read_text(encoding="utf-8")))
    if DOC.exists():
        text = DOC.read_text(encoding="utf-8")
        start = text.find("## Indexing")
        if start >= 0:
            end = text.find("\n## ", start + 1)
            return text[start : end if end >= 0 else len(text)].rstrip() + "\n"
    return "## Indexing (`make bench-index`)\n\nNo indexing figures yet: run `make bench-index`.\n"


def _indexing_from_json(data: dict) -> str:
    lines = [
        "## Indexing (`make bench-index`)",
        "",
        "`bench/bench_index.py` indexes the HotpotQA dev paragraphs, then those plus the",
        "2WikiMultihopQA paragraphs, each followed by a no-op re-run, and measures",
        "supporting-paragraph recall of `ponder search` for the 500 HotpotQA questions against",
        f"the larger corpus. The baseline is spaCy alone (`nlp.pipe`, one process) over the same paragraphs: "
        f"{data['baseline_spacy_only']['seconds']} s.",
        "",
        "| corpus | paragraphs | full build | paragraphs/s | vs spaCy alone | no-op re-run | no-op / full | peak RSS (all processes) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, label in (("hotpotqa", "HotpotQA"), ("hotpotqa+2wiki", "HotpotQA + 2Wiki")):
        run = data.get(name)
        if not run:
            continue
        ratio = run.get("full_vs_spacy_only_ratio")
        lines.append(
            f"| {label} | {run['paragraphs']:,} | {run['full_seconds']} s | {run['paragraphs_per_second']} | "
            f"{'-' if ratio is None else ratio} | {run['noop_seconds']} s | {run['noop_ratio']} | {run['peak_rss_mib']:,} MiB |"
        )
    retrieval = data.get("retrieval")
    if retrieval:
        lines += [
            "",
            f"Hybrid search recall of supporting paragraphs (500 questions, larger corpus): recall@2 {retrieval['recall@2']}, "
            f"recall@5 {retrieval['recall@5']}, recall@10 {retrieval['recall@10']}; search latency p50 "
            f"{retrieval['search_ms_p50']} ms, p95 {retrieval['search_ms_p95']} ms.",
        ]
    return "\n".join(lines) + "\n"


def _pair_rows(table: list[dict], first: str, second: str) -> list[str]:
    rows = []
    for row in table:
        if row["policy"] != first:
            continue
        other = next((item for item in table if item["policy"] == second and item["budget"] == row["budget"]), None)
        if other is None:
            continue
        rows.append(
            f"| {row['budget']:,.0f} | {row['cost_mean']:,.0f} | {row['f1']:.1f} | {other['cost_mean']:,.0f} | {other['f1']:.1f} | "
            f"{other['f1'] - row['f1']:+.1f} |"
        )
    return rows


def _summary_lines(sweep: dict, allocation: dict | None) -> list[str]:
    """Compute the headline comparisons of one data set from its results."""
    lines = []
    gains = [point["f1_gain"] for point in (sweep.get("equal_cost") or {}).get("matched", {}).get("adaptive", []) if point["f1_gain"] is not None]
    if gains:
        lines.append(
            f"- At matched mean cost, `adaptive` minus `fixed` F1: {', '.join(f'{gain:+.1f}' for gain in gains)} "
            "(one value per `adaptive` budget inside `fixed`'s cost range)."
        )
    best = {}
    for row in sweep["table"]:
        if row["policy"] not in best or row["f1"] > best[row["policy"]]["f1"]:
            best[row["policy"]] = row
    lines.append(
        "- Best F1 per policy (at mean cost): "
        + ", ".join(f"`{policy}` {row['f1']:.1f} ({row['cost_mean']:,.0f})" for policy, row in best.items())
        + "."
    )
    pairs = [
        (row, other)
        for row in sweep["table"]
        if row["policy"] == "adaptive"
        for other in sweep["table"]
        if other["policy"] == "adaptive-u" and other["budget"] == row["budget"]
    ]
    if pairs:
        changes = [other["f1"] - row["f1"] for row, other in pairs]
        extra = [other["cost_mean"] - row["cost_mean"] for row, other in pairs]
        lines.append(
            f"- `adaptive-u` against `adaptive`: F1 change {min(changes):+.1f} to {max(changes):+.1f}, "
            f"mean cost change {min(extra):+,.0f} to {max(extra):+,.0f} tokens across the budgets."
        )
    if allocation:
        spread, even = allocation["strategies"]["global"], allocation["strategies"]["even"]
        lines.append(
            f"- One total budget split by difficulty against split evenly: F1 {spread['f1']:.1f} against {even['f1']:.1f} "
            f"({spread['f1'] - even['f1']:+.1f}), spending {spread['spent']:,.0f} and {even['spent']:,.0f} of "
            f"{spread['total_budget']:,.0f} tokens."
        )
    return lines


def _data_set_section(name: str, title: str) -> str:
    from jobs.sweep_report import COST_PLOT, F1_PLOT, allocation_markdown, equal_cost_markdown, sweep_table_markdown

    folder = SWEEP_RESULTS / name
    sweep = json.loads((folder / "sweep.json").read_text(encoding="utf-8"))
    IMAGES.mkdir(parents=True, exist_ok=True)
    f1_image = IMAGES / f"{name}-{F1_PLOT.replace('_', '-')}"
    cost_image = IMAGES / f"{name}-{COST_PLOT.replace('_', '-')}"
    shutil.copy(folder / F1_PLOT, f1_image)
    shutil.copy(folder / COST_PLOT, cost_image)
    allocation_path = folder / "allocation.json"
    allocation = json.loads(allocation_path.read_text(encoding="utf-8")) if allocation_path.exists() else None
    lines = [
        f"### {title}",
        "",
        f"{sweep['questions']} of the {sweep['heldout_questions']} heldout questions; the sweep took {sweep['seconds']:.0f} s.",
        "",
        *_summary_lines(sweep, allocation),
        "",
        sweep_table_markdown(sweep),
        "",
        equal_cost_markdown(sweep),
        "",
        f"![F1 against mean cost, {title}](img/{f1_image.name})",
        "",
        f"![Cost per question at budget {max(sweep['budgets']):,.0f}, {title}](img/{cost_image.name})",
        "",
    ]
    if any(row["policy"] == "adaptive-u" for row in sweep["table"]):
        lines += [
            "Uncertainty spending: `adaptive` against `adaptive-u` at each budget.",
            "",
            "| budget | adaptive mean cost | adaptive F1 | adaptive-u mean cost | adaptive-u F1 | F1 change |",
            "| --- | --- | --- | --- | --- | --- |",
            *_pair_rows(sweep["table"], "adaptive", "adaptive-u"),
            "",
        ]
    if allocation:
        lines += [
            f"Global allocation: policy `{allocation['policy']}`, one total of {allocation['total_budget']:,.0f} tokens "
            f"for the {allocation['questions']} questions, split by estimated difficulty and split evenly "
            f"({allocation['seconds']:.0f} s).",
            "",
            allocation_markdown(allocation),
            "",
        ]
    return "\n".join(lines)


def _tuning_section() -> str:
    path = RESULTS / "tune-uncertainty.json"
    if not path.exists():
        return ""
    data = json.loads(path.read_text(encoding="utf-8"))
    lines = [
        "### Choosing adaptive-u's thresholds (train split only)",
        "",
        f"`bench/tune_uncertainty.py` ran `adaptive` and `adaptive-u` with three (entropy, margin) threshold "
        f"pairs on the first {data['limit']} train questions of each data set. This step is not part of "
        "`make benchmarks`; its figures are from its last run.",
        "",
        "| data set | setting@budget | mean cost | EM | F1 | steps |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, settings in data["results"].items():
        for setting, row in settings.items():
            lines.append(f"| {name} | {setting} | {row['cost_mean']:,.0f} | {row['em']:.1f} | {row['f1']:.1f} | {row['steps_mean']:.2f} |")
    return "\n".join(lines) + "\n"


def write_doc(args: argparse.Namespace) -> None:
    sections = []
    for name, spec in DATA_SETS.items():
        if (SWEEP_RESULTS / name / "sweep.json").exists():
            sections.append(_data_set_section(name, spec["title"]))
    if not sections:
        raise SystemExit("no sweep results under bench/results/sweep; run: python bench/bench_sweep.py sweep")
    header = f"""# Benchmarks

Measured on a 2-core {platform.machine()} machine, Python {platform.python_version()}, with the
pinned dependencies of `pyproject.toml`. Other jobs may have shared the two cores, so
wall times are upper bounds. `make benchmarks` regenerates this page and its plots from
scratch with fixed seeds. `bench/bench_sweep.py doc` writes the sweep section from the
results in `bench/results/`.

"""
    method = f"""## Budget sweep (`make benchmarks`)

The claim under test: at equal total compute, spending by need beats spending evenly.
Each data set's corpus is indexed as one open corpus. Its questions are split into
`train` and `heldout` by a hash of the question id (seed {args.split_seed}); nothing is
tuned on `heldout`, and every figure below is from `heldout`. Every reasoning step ran on
the embedded tier (no LLM). Costs are in the solver's token unit (docs/solver.md).

Policies: `dense`, `fts` and `hybrid` retrieve the top k chunks by cosine similarity,
BM25 or their reciprocal rank fusion, then synthesise once. `ircot` alternates a hybrid
retrieval and a bridge step for two hops, then synthesises. These baselines grow k with
the budget. `fixed` runs the same ten-step plan for every question. `adaptive` routes,
stops and hops by its monitors. `adaptive-u` is `adaptive` plus a verification, a vote
among answers read from disjoint evidence subsets and a deeper retrieval, only at
uncertain stops, where the candidate entropy is at least 0.9 or
the margin is below 0.1. Those thresholds were picked on the train split, as shown at
the end of this page.

Cost of the run: the sweep runs every sampled question once per policy and budget, so
its size is chosen to finish the whole target in well under an hour on two cores. The
sample is the first {args.limit} heldout questions of each file, in file order, at budgets
of {args.budgets} tokens. Two worker processes share the work. Within each,
retrieval results are cached per (source, mode, query, groups, limit), because baselines
and budgets repeat the same searches. The global-allocation run gives `adaptive`
{args.total_per_question:,.0f} tokens per question in total, split once by estimated
difficulty and once evenly.

"""
    tuning = _tuning_section()
    body = header + _indexing_section() + "\n" + method + "\n".join(sections) + ("\n" + tuning if tuning else "")
    DOC.write_text(body, encoding="utf-8")
    print(f"wrote {DOC}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["index", "sweep", "doc"])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=ROOT / "ponder-data" / "bench")
    parser.add_argument("--policies", default=DEFAULT_POLICIES, help="comma-separated policies to sweep")
    parser.add_argument("--budgets", default=DEFAULT_BUDGETS, help="comma-separated budgets in tokens")
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="heldout questions per data set (0 for all)")
    parser.add_argument("--controller", type=Path, default=None, help="trained controller; adds the learned policy when the file exists")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--total-per-question", type=float, default=DEFAULT_TOTAL_PER_QUESTION, help="allocation run: total tokens per question")
    args = parser.parse_args()

    if args.step == "index":
        args.work.mkdir(parents=True, exist_ok=True)
        build_indexes(args.data, args.work)
    elif args.step == "sweep":
        run_sweeps(args)
    else:
        write_doc(args)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
