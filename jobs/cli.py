"""The ``ponder`` command line."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

app = typer.Typer(
    add_completion=False,
    rich_markup_mode=None,
    no_args_is_help=True,
    help="Ponder: graph-based retrieval and budgeted question answering over a private corpus.",
)
graph_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Inspect the entity graph.")
app.add_typer(graph_app, name="graph")

# Piped output is not wrapped at rich's default of 80 columns, so tables stay readable in logs.
# Markup is off because printed text comes from documents, questions and settings, where
# brackets such as "[/citation needed]" are content. Styles are applied with Text instead.
console = Console(width=None if sys.stdout.isatty() else 160, markup=False)
error_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160, markup=False)

DB_OPTION = typer.Option("ponder-data/index", "--db", help="Index database: a folder or a LanceDB URI.", envvar="PONDER_DB")
GROUPS_OPTION = typer.Option(
    "public", "--groups", help="Comma-separated access groups of the caller.", envvar="PONDER_GROUPS"
)


def _fail(message: str) -> None:
    error_console.print(Text.assemble(("error:", "bold red"), f" {message}"), highlight=False)
    raise typer.Exit(1)


def _require_index(db: str) -> None:
    """Stop with an error when a local ``db`` contains no index, before anything creates it."""
    from indexer.store import is_local_uri, local_path

    if is_local_uri(db) and not (local_path(db) / "index_runs.lance").exists():
        _fail(f"no index found at {db}; check --db (or PONDER_DB), or build one with: ponder index CORPUS --db {db}")


def _groups(value: str) -> list[str]:
    groups = [group.strip() for group in value.split(",") if group.strip()]
    if not groups:
        _fail("--groups needs at least one group name, for example --groups public")
    return groups


def _known_errors() -> tuple[type[Exception], ...]:
    from indexer.config import ConfigError
    from indexer.readers import CorpusError
    from indexer.store import StoreError
    from solver.search import QueryError

    return (ConfigError, CorpusError, StoreError, QueryError)


@app.callback()
def _setup(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at INFO level to stderr.")) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@app.command()
def index(
    corpus: Path = typer.Argument(..., help="Corpus folder or file (.txt .md .html .jsonl .csv)."),
    db: str = DB_OPTION,
    ray_address: str = typer.Option(None, "--ray-address", help="Ray cluster address; a local Ray starts when omitted.", envvar="PONDER_RAY_ADDRESS"),
    config_file: Path = typer.Option(None, "--config", help="TOML file with an [index] table of settings."),
    wait: bool = typer.Option(False, "--wait", help="Wait for another run on the same database instead of stopping."),
    as_json: bool = typer.Option(False, "--json", help="Print the run record as JSON."),
) -> None:
    """Index CORPUS into the database, re-processing only what changed.

    Example: ponder index sample/corpus --db ponder-data/index
    """
    from indexer.config import IndexConfig
    from jobs.index_job import run_index

    try:
        config = IndexConfig.from_file(config_file) if config_file else IndexConfig()
        with console.status("indexing...") if not as_json else _nullcontext():
            result = run_index(corpus, db, config=config, ray_address=ray_address, wait_for_lock=wait)
    except _known_errors() as error:
        _fail(str(error))
    summary = result.summary()
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    console.print(
        f"index version {result.version} at {db}: {summary['added']} added, {summary['changed']} changed, "
        f"{summary['deleted']} deleted, {summary['unchanged']} unchanged, {len(summary['skipped'])} skipped"
    )
    for item in summary["skipped"][:20]:
        console.print(f"  skipped {item['source']}: {item['reason']}", highlight=False)
    if len(summary["skipped"]) > 20:
        console.print(f"  ... and {len(summary['skipped']) - 20} more (see ponder runs --json)")
    for warning in summary["warnings"][:10]:
        console.print(f"  warning: {warning}", highlight=False)
    if summary["counts"]:
        console.print("  wrote " + ", ".join(f"{value} {name}" for name, value in summary["counts"].items()))
    console.print("  seconds per stage: " + ", ".join(f"{name} {value:.2f}" for name, value in summary["stage_seconds"].items()))


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@app.command()
def stats(
    db: str = DB_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    groups: str = typer.Option(
        None, "--groups", help="Comma-separated access groups: count and name only what they may read (default: everything)."
    ),
) -> None:
    """Show what the current index version holds."""
    from jobs.inspect import index_stats

    try:
        data = index_stats(db, groups=_groups(groups) if groups is not None else None)
    except _known_errors() as error:
        _fail(str(error))
    if as_json:
        print(json.dumps(data, indent=2, default=str))
        return
    console.print(f"index version {data['version']} (run {data['run_id']}, finished {data['finished_at']})")
    table = Table("table", "rows")
    for name, count in data["rows"].items():
        table.add_row(name, str(count))
    console.print(table)
    labels = Table("entity label", "entities")
    for label, count in data["entity_labels"].items():
        labels.add_row(label, str(count))
    console.print(labels)
    top = Table("most mentioned entity", "label", "mentions", "documents")
    for row in data["top_entities"]:
        top.add_row(row["name"], row["label"], str(row["mention_count"]), str(row["doc_count"]))
    console.print(top)
    relations = Table("relation label", "count")
    for label, count in data["relation_labels"].items():
        relations.add_row(label, str(count))
    console.print(relations)


@app.command()
def search(
    query: str = typer.Argument(..., help="Question or keywords."),
    db: str = DB_OPTION,
    limit: int = typer.Option(5, "--limit", "-k", min=1, max=100, help="Number of chunks to return."),
    mode: str = typer.Option("hybrid", "--mode", help="hybrid, vector or text."),
    groups: str = GROUPS_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Search the chunks with hybrid vector and full-text retrieval.

    Example: ponder search "Who portrayed Corliss Archer?" --db ponder-data/index
    """
    from indexer.store import Snapshot
    from solver.search import ChunkSearcher

    try:
        searcher = ChunkSearcher(Snapshot.open(db))
        hits = searcher.search(query, groups=_groups(groups), limit=limit, mode=mode)
    except _known_errors() as error:
        _fail(str(error))
    if as_json:
        print(json.dumps({"query": query, "version": searcher.snapshot.version, "hits": [hit.to_dict() for hit in hits]}, indent=2))
        return
    if not hits:
        console.print("no results")
    for rank, hit in enumerate(hits, start=1):
        vector = "-" if hit.vector_score is None else f"{hit.vector_score:.3f}"
        text = "-" if hit.text_score is None else f"{hit.text_score:.2f}"
        console.print(
            Text.assemble((f"{rank}. {hit.title}", "bold"), f"  score {hit.score:.4f}  (cosine {vector}, BM25 {text})  {hit.chunk_id}"),
            highlight=False,
        )
        console.print(f"   {hit.text[:300]}", highlight=False)


@app.command()
def runs(
    db: str = DB_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    limit: int = typer.Option(20, "--limit"),
    check: bool = typer.Option(
        False, "--check", help="Exit with status 1 when the newest indexing run is too old or too slow (for alerting)."
    ),
    max_age_hours: float = typer.Option(26.0, "--max-age-hours", min=0, help="With --check: maximum hours since the newest indexing run finished."),
    max_slowdown: float = typer.Option(3.0, "--max-slowdown", min=1, help="With --check: maximum duration of the newest run as a multiple of the median of earlier runs."),
) -> None:
    """List index runs: when, what changed, how long, which version."""
    from indexer.store import IndexStore

    _require_index(db)
    try:
        all_records = IndexStore(db).runs()
    except _known_errors() as error:
        _fail(str(error))
    if check:
        _check_runs(all_records, max_age_hours=max_age_hours, max_slowdown=max_slowdown, as_json=as_json)
        return
    records = all_records[-limit:]
    if as_json:
        print(json.dumps([run.row for run in records], indent=2, default=str))
        return
    from jobs.ops import run_note

    table = Table("run", "version", "finished", "added", "changed", "deleted", "unchanged", "skipped", "seconds", "note")
    for run in records:
        row = run.row
        seconds = (row["finished_at"] - row["started_at"]).total_seconds()
        table.add_row(
            run.run_id, str(run.version), str(row["finished_at"])[:19], str(row["n_added"]), str(row["n_changed"]),
            str(row["n_deleted"]), str(row["n_unchanged"]), str(row["n_skipped"]), f"{seconds:.1f}", run_note(run),
        )
    console.print(table)


def _check_runs(records, *, max_age_hours: float, max_slowdown: float, as_json: bool) -> None:
    from jobs.ops import check_runs

    result = check_runs(records, max_age_hours=max_age_hours, max_slowdown=max_slowdown)
    if as_json:
        print(json.dumps({"ok": result.ok, "problems": result.problems, "summary": result.summary}, indent=2))
    elif result.ok:
        console.print(f"ok: {result.summary}", highlight=False)
    else:
        for problem in result.problems:
            error_console.print(Text.assemble(("alert:", "bold red"), f" {problem}"), highlight=False)
        error_console.print(result.summary, highlight=False)
    if not result.ok:
        raise typer.Exit(1)


@graph_app.command("export")
def graph_export(
    out: Path = typer.Option(..., "--out", help="File to write."),
    db: str = DB_OPTION,
    export_format: str = typer.Option("graphml", "--format", help="graphml (Gephi, networkx) or edgelist."),
    groups: str = GROUPS_OPTION,
    with_chunks: bool = typer.Option(False, "--with-chunks", help="Add chunk nodes and entity-chunk mention edges."),
) -> None:
    """Write the entity graph for Gephi or networkx."""
    from jobs.inspect import export_graph

    try:
        nodes, edges = export_graph(db, out, export_format=export_format, groups=_groups(groups), with_chunks=with_chunks)
    except _known_errors() as error:
        _fail(str(error))
    console.print(f"wrote {nodes} nodes and {edges} edges to {out}")



traces_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Export step traces for training.")
app.add_typer(traces_app, name="traces")

BUDGET_OPTION = typer.Option(4000, "--budget", help="Most tokens an episode may spend (see docs/solver.md for the unit).")
POLICY_OPTION = typer.Option("adaptive", "--policy", help="Controller policy: fixed, adaptive or learned.")
TIERS_OPTION = typer.Option(
    None, "--config", help="TOML file whose tiers.small and tiers.large tables set the model tiers (default: PONDER_CONFIG); see docs/models.md."
)
CONTROLLER_OPTION = typer.Option(
    None, "--controller", help="Controller model file for --policy learned, written by ponder controller train."
)


def _policy_options(policy: str, controller: Path | None) -> dict:
    """Check --controller against --policy and return the options for make_policy."""
    from controller.learned import ControllerError, load_controller

    if controller is not None and policy != "learned":
        _fail(f"--controller is used only with --policy learned, not --policy {policy}")
    if policy != "learned":
        return {}
    if controller is None:
        _fail("--policy learned needs --controller MODEL; train one with: ponder controller train TRACES --out MODEL")
    try:
        load_controller(controller)
    except ControllerError as error:
        _fail(str(error))
    return {"controller": str(controller)}


def _print_episode(result, *, show_steps: bool = True) -> None:
    if result.abstained:
        console.print(Text.assemble(("answer:", "bold"), f" (abstained; best guess confidence {result.confidence:.2f})"))
    else:
        console.print(Text.assemble(("answer:", "bold"), f" {result.answer}   confidence {result.confidence:.2f}"), highlight=False)
    if result.derivation:
        console.print(Text.assemble(("derivation:", "bold"), f" {result.derivation}"), highlight=False)
    for citation in result.citations:
        console.print(Text.assemble("  ", (f"[{citation.title}]", "cyan"), f" {citation.sentence[:240]}"), highlight=False)
    console.print(
        f"cost {result.cost:.0f} of {result.budget:.0f} tokens, {len(result.steps)} steps, "
        f"{result.latency_ms:.0f} ms, policy {result.policy}, index version {result.index_version}, "
        f"episode {result.episode_id}"
    )
    if show_steps:
        console.print(Text("trace:", style="bold"))
        for step in result.steps:
            query = f" {step.action.query!r}" if step.action.query else ""
            console.print(
                f"  {step.index}. {step.action.label}{query}  cost {step.cost:.0f}, +{step.new_evidence} evidence, "
                f"confidence {step.confidence_before:.2f} -> {step.confidence_after:.2f}"
                + (f", top {step.top_answer!r}" if step.top_answer else "")
                + (f"  ({step.note})" if step.note else "")
                + (f"  [tier {step.tier_used}, {step.tokens_in} in, {step.tokens_out} out]" if step.tier_used else "")
                + (f"  error: {step.error}" if step.error else ""),
                highlight=False,
            )


def _open_ponder(db: str, config: Path | None = None):
    from solver.service import Ponder

    return Ponder(db, config=config)


@app.command()
def ask(
    question: str = typer.Argument(..., help="The question."),
    db: str = DB_OPTION,
    budget: float = BUDGET_OPTION,
    policy: str = POLICY_OPTION,
    groups: str = GROUPS_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the episode as JSON."),
    config_file: Path = TIERS_OPTION,
    controller: Path = CONTROLLER_OPTION,
) -> None:
    """Answer a question, with citations and the step trace.

    Example: ponder ask "What government position was held by the woman who portrayed Corliss Archer in the film Kiss and Tell?"
    """
    options = _policy_options(policy, controller)
    try:
        ponder = _open_ponder(db, config_file)
        result = ponder.ask(question, policy=policy, budget=budget, groups=_groups(groups), policy_options=options)
        ponder.close()
    except (*_known_errors(), ValueError) as error:
        _fail(str(error))
    if as_json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
        return
    _print_episode(result)


@app.command()
def shell(
    db: str = DB_OPTION,
    budget: float = BUDGET_OPTION,
    policy: str = POLICY_OPTION,
    groups: str = GROUPS_OPTION,
    config_file: Path = TIERS_OPTION,
    controller: Path = CONTROLLER_OPTION,
) -> None:
    """Ask questions interactively; each step prints as it happens. Ctrl-D, quit or exit ends it."""
    from solver.episode import step_to_dict

    options = _policy_options(policy, controller)
    try:
        ponder = _open_ponder(db, config_file)
    except _known_errors() as error:
        _fail(str(error))
    caller = _groups(groups)
    console.print(f"index version {ponder.version}, policy {policy}, budget {budget:.0f}. Ctrl-D to quit.")

    def show(step) -> None:
        data = step_to_dict(step)
        console.print(
            f"  step {data['index']}: {data['action']} cost {data['cost']:.0f}, "
            f"confidence {data['confidence_before']:.2f} -> {data['confidence_after']:.2f} {data['note']}"
            + (f" [tier {data['tier_used']}]" if data["tier_used"] else "")
            + (f" error: {data['error']}" if data["error"] else ""),
            highlight=False,
        )

    while True:
        try:
            question = console.input(Text("? ", style="bold")).strip()
        except (EOFError, KeyboardInterrupt):
            console.print()
            break
        if not question:
            continue
        if question.lower() in {"quit", "exit", ":q", ":quit"}:
            break
        try:
            result = ponder.ask(question, policy=policy, budget=budget, groups=caller, on_step=show, policy_options=options)
        except (*_known_errors(), ValueError) as error:
            error_console.print(Text.assemble(("error:", "bold red"), f" {error}"), highlight=False)
            continue
        _print_episode(result, show_steps=False)
    ponder.close()


@app.command("eval")
def evaluate(
    data: Path = typer.Argument(..., help="Question file (JSONL with question, answers, paragraphs)."),
    db: str = DB_OPTION,
    policy: str = POLICY_OPTION,
    budget: float = BUDGET_OPTION,
    limit: int = typer.Option(None, "--limit", min=1, help="Evaluate only the first N questions."),
    out: Path = typer.Option(None, "--out", help="Write the full results (every question) as JSON here; with --sweep or --allocate, the output folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    config_file: Path = TIERS_OPTION,
    controller: Path = CONTROLLER_OPTION,
    probe_rate: float = typer.Option(
        0.0, "--probe-rate", min=0.0, max=1.0,
        help="Share of steps that also run one action not taken on a copy of the state, recorded in the traces for training; costs time, not budget.",
    ),
    probe_seed: int = typer.Option(0, "--probe-seed", help="Seed that picks which steps are probed and with which action."),
    split: str = typer.Option("all", "--split", help="Questions to use: train, heldout or all (a fixed hash of each question id)."),
    split_seed: int = typer.Option(0, "--split-seed", help="Seed of the train/heldout split."),
    sweep: bool = typer.Option(False, "--sweep", help="Run every policy of --policies at every budget of --budgets."),
    budgets: str = typer.Option("500,1000,2000,4000", "--budgets", help="With --sweep: comma-separated budgets in tokens."),
    policies: str = typer.Option("dense,fts,hybrid,ircot,fixed,adaptive", "--policies", help="With --sweep: comma-separated policy names."),
    allocate: str = typer.Option(None, "--allocate", help="global: split --total-budget over the questions by estimated difficulty, and compare with an even split."),
    total_budget: float = typer.Option(None, "--total-budget", help="With --allocate: tokens for the whole batch."),
    workers: int = typer.Option(2, "--workers", min=1, help="With --sweep or --allocate: worker processes."),
) -> None:
    """Score answers and evidence on a QA file against the indexed corpus.

    With --sweep, runs every policy at every budget and writes a table of accuracy
    against mean cost (JSON and markdown) and plots into the --out folder. With
    --allocate global, spends --total-budget on the questions split by difficulty and
    split evenly, and writes both results into --out.

    Example: ponder eval questions.jsonl --db ponder-data/index --split heldout --sweep --budgets 500,1000,2000 --out sweep/
    """
    from functools import partial

    from rich.progress import Progress

    from jobs.eval_job import EvalError, evaluate as run_eval, load_questions
    from jobs.splits import select_split

    if sweep and allocate:
        _fail("--sweep and --allocate cannot be combined; run them one at a time")
    try:
        questions = select_split(load_questions(data), split, seed=split_seed)
    except (EvalError, ValueError) as error:
        _fail(str(error))
    if not questions:
        _fail(f"the {split} split of {data} is empty; use --split all")
    questions = questions[:limit] if limit else questions
    if sweep or allocate:
        _eval_batch(db, questions, sweep=sweep, allocate=allocate, budgets=budgets, policies=policies, policy=policy,
                    controller=controller, total_budget=total_budget, workers=workers, out=out, groups=_groups(GROUPS_DEFAULT))
        return
    options = _policy_options(policy, controller)
    try:
        ponder = _open_ponder(db, config_file)
        ask = partial(ponder.ask, policy_options=options, probe_rate=probe_rate, probe_seed=probe_seed)
        with Progress(console=error_console, transient=True, disable=as_json) as bar:
            task = bar.add_task("questions", total=len(questions))
            summary = run_eval(ask, questions, policy=policy, budget=budget, progress=lambda done, total: bar.update(task, completed=done))
        ponder.close()
    except (*_known_errors(), EvalError, ValueError) as error:
        _fail(str(error))
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
    brief = {key: value for key, value in summary.items() if key != "questions"}
    if as_json:
        print(json.dumps(brief, indent=2))
        return
    table = Table("type", "n", "EM", "F1", "recall@5", "mean cost", "p95 cost", "p50 ms", "p95 ms", "abstain", "steps")
    for name, row in [("all", summary["overall"]), *summary["by_type"].items()]:
        table.add_row(
            name, str(row["n"]), f"{row['em']:.1f}", f"{row['f1']:.1f}",
            "-" if row["recall@5"] is None else f"{row['recall@5']:.3f}", f"{row['cost_mean']:.0f}",
            f"{row['cost_p95']:.0f}", f"{row['latency_ms_p50']:.0f}", f"{row['latency_ms_p95']:.0f}",
            f"{row['abstain_rate']:.2f}", f"{row['steps_mean']:.1f}",
        )
    console.print(f"policy {policy}, budget {budget:.0f}, index version {ponder.version}")
    console.print(table)


GROUPS_DEFAULT = "public"


def _budget_list(text: str) -> list[float]:
    values = []
    for part in text.split(","):
        if not part.strip():
            continue
        try:
            values.append(float(part))
        except ValueError:
            _fail(f"--budgets needs comma-separated numbers of tokens, such as 500,1000,2000; got {part.strip()!r}")
    return values


def _eval_batch(db, questions, *, sweep, allocate, budgets, policies, policy, controller, total_budget, workers, out, groups) -> None:
    """Run a budget sweep or an allocation comparison and write its files into ``out``."""
    from rich.progress import Progress

    from jobs.sweep import run_allocation, run_sweep
    from jobs.sweep_report import allocation_markdown, equal_cost_markdown, sweep_table_markdown, write_allocation, write_sweep

    if out is None:
        _fail("--sweep and --allocate write several files; pass --out FOLDER")
    if allocate is not None and allocate != "global":
        _fail(f"unknown --allocate {allocate!r}; use --allocate global")
    if allocate and total_budget is None:
        _fail("--allocate global needs --total-budget N, the tokens for the whole batch")
    controller_path = str(controller) if controller else None
    if controller is not None and not controller.exists():
        _fail(f"controller model not found: {controller}; train one with ponder controller train")
    try:
        with Progress(console=error_console, transient=True) as bar:
            task = bar.add_task("questions", total=len(questions))

            def advance(done: int) -> None:
                bar.update(task, completed=done)

            if sweep:
                budget_values = _budget_list(budgets)
                names = [name.strip() for name in policies.split(",") if name.strip()]
                result = run_sweep(db, questions, policies=names, budgets=budget_values, controller=controller_path,
                                   workers=workers, groups=groups, progress=advance)
            else:
                result = run_allocation(db, questions, total_budget=total_budget, policy=policy, controller=controller_path,
                                        workers=workers, groups=groups, progress=advance)
    except (*_known_errors(), ValueError) as error:
        _fail(str(error))
    if sweep:
        paths = write_sweep(result, out)
        console.print(sweep_table_markdown(result), highlight=False)
        console.print(equal_cost_markdown(result), highlight=False)
    else:
        paths = write_allocation(result, out)
        console.print(allocation_markdown(result), highlight=False)
    console.print("wrote " + ", ".join(str(path) for path in paths.values()), highlight=False)


@app.command()
def feedback(
    episode: str = typer.Argument(..., help="Episode id, as printed by ponder ask."),
    db: str = DB_OPTION,
    correct: bool = typer.Option(None, "--correct/--wrong", help="Whether the answer was right."),
    answer: str = typer.Option(None, "--answer", help="The right answer, when it was wrong."),
) -> None:
    """Record whether an episode's answer was right; the trace export carries it."""
    from solver.traces import TraceError, TraceStore

    if correct is None:
        _fail("pass --correct or --wrong")
    _require_index(db)
    try:
        row = TraceStore(db).feedback(episode, correct=correct, answer=answer)
    except (*_known_errors(), TraceError) as error:
        _fail(str(error))
    console.print(f"episode {episode}: marked {row['outcome']}")


@traces_app.command("export")
def traces_export(
    out: str = typer.Option(..., "--out", help="File to write; - writes JSONL to standard output."),
    db: str = DB_OPTION,
    export_format: str = typer.Option("jsonl", "--format", help="jsonl or parquet."),
) -> None:
    """Export every step with its episode's outcome, one row per step."""
    from solver.traces import TraceError, TraceStore

    _require_index(db)
    try:
        rows = TraceStore(db).export(out, export_format=export_format)
    except (*_known_errors(), TraceError) as error:
        _fail(str(error))
    if out != "-":
        console.print(f"wrote {rows} steps to {out}")


controller_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Train the learned controller from step traces.")
app.add_typer(controller_app, name="controller")


@controller_app.command("train")
def controller_train(
    traces: list[Path] = typer.Argument(..., help="Trace files written by ponder traces export (.jsonl or .parquet)."),
    out: Path = typer.Option(..., "--out", help="Controller model file to write (JSON)."),
    seed: int = typer.Option(0, "--seed", help="Seed for the cross-validation folds and the regression."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Train a controller on step traces; use it with --policy learned --controller MODEL.

    Example: ponder controller train steps.jsonl --out controller.json
    """
    from controller.learned import ControllerError, train_controller

    try:
        report = train_controller(traces, out, seed=seed)
    except ControllerError as error:
        _fail(str(error))
    if as_json:
        print(json.dumps(report, indent=2))
        return
    balance = report["label_balance"]
    console.print(
        f"trained on {report['rows']} rows ({report['step_rows']} steps, {report['probe_rows']} probes) "
        f"from {report['episodes']} episodes; {report['unlabelled_rows']} steps without an outcome skipped",
        highlight=False,
    )
    console.print(f"labels: {balance['positive']} improved, {balance['negative']} not ({balance['positive_share']:.1%} improved)")
    table = Table("action", "rows", "probes", "improved", "model", "cv accuracy", "cv ROC AUC", "median cost", "largest weights")
    for key, row in report["actions"].items():
        weights = ", ".join(f"{name} {weight:+.2f}" for name, weight in row.get("top_weights", {}).items())
        table.add_row(
            key, str(row["rows"]), str(row["probe_rows"]), str(row["positive"]), row["model"],
            "-" if row["cv_accuracy"] is None else f"{row['cv_accuracy']:.3f}",
            "-" if row["cv_roc_auc"] is None else f"{row['cv_roc_auc']:.3f}",
            f"{row['cost_median']:.0f}", weights or f"constant {row.get('probability', 0):.2f}",
        )
    console.print(table)
    console.print(f"wrote {out}")


@app.command()
def serve(
    db: str = DB_OPTION,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; 0.0.0.0 listens on every interface."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="TCP port to listen on."),
    config_file: Path = typer.Option(
        None, "--config", help="TOML file whose [serve] table sets limits and API keys (docs/api.md) and whose [tiers] tables set the model tiers (docs/models.md).",
        envvar="PONDER_CONFIG",
    ),
) -> None:
    """Serve the HTTP API (docs at /docs) over the newest index version.

    Example: ponder serve --db ponder-data/index --port 8000
    """
    from functools import partial

    import uvicorn

    from jobs.server import create_app
    from jobs.server_config import ServeConfig
    from solver.service import Ponder
    from solver.tier_config import load_tier_configs

    try:
        config = ServeConfig.load(config_file)
        load_tier_configs(config_file)  # fail before start-up on invalid tier settings
    except _known_errors() as error:
        _fail(str(error))
    # The server logs its start and stop at INFO, with or without --verbose.
    logging.getLogger("ponder").setLevel(logging.INFO)
    load = partial(Ponder, config=config_file)
    uvicorn.run(create_app(db, config, load=load), host=host, port=port, log_level="info", timeout_graceful_shutdown=30)


@app.command()
def rollback(
    version: int = typer.Argument(..., help="Index version to restore, as listed by ponder runs."),
    db: str = DB_OPTION,
    wait: bool = typer.Option(False, "--wait", help="Wait for a running index job on the same database instead of stopping."),
    as_json: bool = typer.Option(False, "--json", help="Print the new run record as JSON."),
) -> None:
    """Restore an earlier index version; readers move to it as a new version.

    Example: ponder rollback 41 --db ponder-data/index
    """
    from jobs.ops import rollback as rollback_index, run_note

    _require_index(db)
    try:
        run = rollback_index(db, version, wait_for_lock=wait)
    except _known_errors() as error:
        _fail(str(error))
    if as_json:
        print(json.dumps(run.row, indent=2, default=str))
        return
    console.print(f"index version {run.version} at {db}: {run_note(run)}", highlight=False)


@app.command()
def prune(
    db: str = DB_OPTION,
    keep_days: float = typer.Option(30.0, "--keep-days", min=0, help="Keep every table version written in the last N days."),
    keep_versions: int = typer.Option(7, "--keep-versions", min=1, help="Keep the N highest index versions, whatever their age."),
    compact: bool = typer.Option(True, "--compact/--no-compact", help="Rewrite small data files into larger ones first."),
    wait: bool = typer.Option(False, "--wait", help="Wait for a running index job on the same database instead of stopping."),
    as_json: bool = typer.Option(False, "--json", help="Print what was removed and kept as JSON."),
) -> None:
    """Compact the tables and delete old table versions that no recent run needs.

    Example: ponder prune --db ponder-data/index --keep-days 14 --keep-versions 7
    """
    from jobs.ops import prune as prune_index

    _require_index(db)
    try:
        report = prune_index(db, keep_days=keep_days, keep_versions=keep_versions, compact=compact, wait_for_lock=wait)
    except _known_errors() as error:
        _fail(str(error))
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
        return
    removed = sum(len(versions) for versions in report.removed.values())
    console.print(
        f"removed {removed} table versions ({report.bytes_removed / 1e6:.1f} MB) from {db}; "
        f"index versions {report.protected_versions} stay restorable"
    )
    if report.compacted:
        console.print(f"compacted {', '.join(report.compacted)}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
