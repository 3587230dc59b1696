"""The indexing job: a Ray Data pipeline from a corpus folder to a LanceDB index.

The driver reads the corpus and compares content hashes with the last completed index
version. Only added and changed documents go through the pipeline: spaCy analysis on a
pool of actors, then embedding on another, each loading its model once. The driver
writes the results in batches, recomputes the entities the change touched, refreshes the
indexes and records the run. Readers keep seeing the previous version until that record
is written.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import pickle
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from indexer import faults, writer
from indexer.config import IndexConfig
from indexer.embedding import DIMENSION, MODEL_NAME
from indexer.faults import FaultPlan
from indexer.readers import read_corpus
from indexer.records import CorpusScan, Document, Skipped
from indexer.store import IndexMismatchError, IndexStore, IndexWriteError, is_storage_error, write_error
from jobs.ray_runtime import ray_session

logger = logging.getLogger("ponder.index")


@dataclass
class ChangePlan:
    """The documents a run adds, changes, deletes and leaves alone."""

    added: list[Document] = field(default_factory=list)
    changed: list[Document] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: int = 0

    @property
    def to_process(self) -> list[Document]:
        return self.added + self.changed

    @property
    def is_empty(self) -> bool:
        return not (self.added or self.changed or self.deleted)


def plan_changes(documents: list[Document], indexed: dict[str, str]) -> ChangePlan:
    """Compare the corpus with the indexed content hashes."""
    plan = ChangePlan()
    seen: set[str] = set()
    for document in documents:
        seen.add(document.doc_id)
        previous = indexed.get(document.doc_id)
        if previous is None:
            plan.added.append(document)
        elif previous != document.content_hash:
            plan.changed.append(document)
        else:
            plan.unchanged += 1
    plan.deleted = sorted(set(indexed) - seen)
    return plan


@dataclass
class RunResult:
    """The outcome of one run, with the same facts as its ``index_runs`` row."""

    run_id: str
    version: int
    plan: ChangePlan
    scan: CorpusScan
    stage_seconds: dict[str, float]
    counts: dict[str, int]
    wrote: bool
    rejected: list[Skipped] = field(default_factory=list)  # documents whose embeddings were unusable

    @property
    def skipped(self) -> list[Skipped]:
        """Inputs the reader skipped, then documents rejected during the run."""
        return self.scan.skipped + self.rejected

    def summary(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "version": self.version,
            "added": len(self.plan.added),
            "changed": len(self.plan.changed),
            "deleted": len(self.plan.deleted),
            "unchanged": self.plan.unchanged,
            "skipped": [{"source": item.source, "reason": item.reason} for item in self.skipped],
            "warnings": self.scan.warnings,
            "stage_seconds": self.stage_seconds,
            "counts": self.counts,
            "wrote_data": self.wrote,
        }


# -- Ray stages -----------------------------------------------------------------------


class AnalyzeStage:
    """Ray actor: spaCy analysis and table typing of a batch of documents."""

    def __init__(self, config: dict[str, Any], faults: FaultPlan | None = None) -> None:
        import ray

        from indexer.analysis import DocumentAnalyzer

        self.faults = faults or FaultPlan()
        self.node_id = ray.get_runtime_context().get_node_id()
        self.analyzer = DocumentAnalyzer(
            chunk_tokens=config["chunk_tokens"],
            overlap_tokens=config["overlap_tokens"],
        )

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from indexer.tables import typed_table

        documents = [pickle.loads(payload) for payload in batch["document"]]
        analyses = self.analyzer.analyze_many(documents)
        payloads = []
        for document, analysis in zip(documents, analyses, strict=True):
            typed = [typed_table(table) for table in document.tables]
            payloads.append(pickle.dumps((document, analysis, typed), protocol=pickle.HIGHEST_PROTOCOL))
        self.faults.reach("analysis")
        return {"doc_id": list(batch["doc_id"]), "analysis": payloads, "analyze_node": [self.node_id] * len(payloads)}


class EmbedStage:
    """Ray actor: embeddings of chunk texts and entity names."""

    def __init__(self, faults: FaultPlan | None = None) -> None:
        import ray

        from indexer.embedding import Embedder

        self.faults = faults or FaultPlan()
        self.node_id = ray.get_runtime_context().get_node_id()
        self.embedder = Embedder()
        self.name_cache: dict[str, Any] = {}

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        items = [pickle.loads(payload) for payload in batch["analysis"]]
        texts = [chunk.text for _, analysis, _ in items for chunk in analysis.chunks]
        # Repeated boilerplate is common in real corpora: embed each distinct text once.
        distinct = list(dict.fromkeys(texts))
        distinct_vectors = self.embedder.embed(distinct)
        position = {text: i for i, text in enumerate(distinct)}
        vectors = distinct_vectors[[position[text] for text in texts]] if texts else distinct_vectors
        names = sorted(
            {name for _, analysis, _ in items for name, _ in analysis.entity_names.values()} - set(self.name_cache)
        )
        if names:
            for name, vector in zip(names, self.embedder.embed(names), strict=True):
                self.name_cache[name] = vector
        if len(self.name_cache) > 200_000:
            self.name_cache.clear()
        payloads = []
        offset = 0
        for document, analysis, typed in items:
            chunk_vectors = self.faults.corrupt(document.doc_id, vectors[offset : offset + len(analysis.chunks)])
            offset += len(analysis.chunks)
            entity_vectors = {key: self.name_cache[name] for key, (name, _) in analysis.entity_names.items()}
            payloads.append(
                pickle.dumps((document, analysis, typed, chunk_vectors, entity_vectors), protocol=pickle.HIGHEST_PROTOCOL)
            )
        self.faults.reach("embedding")
        return {
            "doc_id": list(batch["doc_id"]),
            "result": payloads,
            "analyze_node": list(batch["analyze_node"]),
            "embed_node": [self.node_id] * len(payloads),
        }


# -- the run --------------------------------------------------------------------------


def run_index(
    corpus: str | Path,
    db: str,
    *,
    config: IndexConfig | None = None,
    ray_address: str | None = None,
    storage_options: dict[str, str] | None = None,
    wait_for_lock: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> RunResult:
    """Bring the index at ``db`` up to date with the corpus at ``corpus``.

    Raises :class:`IndexWriteError` when the database cannot be written (a full disk, a
    read-only folder); the previous index version stays the one readers see.
    """
    config = config or IndexConfig()
    fault_plan = FaultPlan.from_environment()
    started_at = datetime.now(UTC)
    timer = _StageTimer()
    run_id = started_at.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]

    with timer("read"):
        scan = read_corpus(corpus, default_groups=config.default_groups, max_document_chars=config.max_document_chars)

    store = IndexStore(db, storage_options=storage_options)
    store.check_writable()
    with faults.installed(fault_plan), store.lock(wait=wait_for_lock):
        current = store.current_run()
        try:
            result = _run_locked(store, scan, current, config, str(corpus), ray_address, run_id, timer, progress, started_at, fault_plan)
        except (OSError, RuntimeError) as error:
            if not is_storage_error(error):
                raise
            raise _abandon(store, error, current) from error
    logger.info(
        "index run %s: version %d, %d added, %d changed, %d deleted, %d unchanged, %d skipped",
        run_id,
        result.version,
        len(result.plan.added),
        len(result.plan.changed),
        len(result.plan.deleted),
        result.plan.unchanged,
        len(result.skipped),
    )
    return result


def _run_locked(store, scan, current, config, corpus, ray_address, run_id, timer, progress, started_at, fault_plan) -> RunResult:
    with timer("plan"):
        _check_embedding_model(current, store.uri)
        restored = store.recover() if store.table_names() else []
        store.ensure_tables()
        plan = plan_changes(scan.documents, store.document_hashes())
    version = current.version if current else 0
    counts: dict[str, int] = {}
    rejected: dict[str, Skipped] = {}
    wrote = not plan.is_empty or bool(restored) or current is None
    if not plan.is_empty:
        version += 1
        counts, rejected = _apply_plan(store, plan, config, ray_address, run_id, timer, progress, fault_plan)
        # A rejected document counts as skipped, not as added or changed.
        plan.added = [document for document in plan.added if document.doc_id not in rejected]
        plan.changed = [document for document in plan.changed if document.doc_id not in rejected]
    elif current is None:
        version = 1
    result = RunResult(run_id, version, plan, scan, timer.seconds, counts, wrote, list(rejected.values()))
    with timer("record"):
        faults.reach("record")
        store.record_run(_run_row(result, store, config, corpus, ray_address, started_at, wrote))
        faults.reach("record")
    result.stage_seconds = timer.seconds
    return result


def _abandon(store: IndexStore, error: BaseException, current) -> IndexWriteError:
    """Undo what a failed run wrote, when the storage still allows it, and describe the failure."""
    try:
        store.recover()
    except (OSError, RuntimeError, ValueError) as second:
        # The next run restores the tables before it writes, so this is safe to leave.
        logger.warning("could not undo the partial writes at %s now; the next run will: %s", store.uri, second)
    return write_error(store.uri, error, version=current.version if current else None)


def _check_embedding_model(current, db: str) -> None:
    if current is None:
        return
    if current.embedding_model != MODEL_NAME or current.embedding_dimension != DIMENSION:
        message = (
            f"the index at {db} was built with the embedding model {current.embedding_model} "
            f"({current.embedding_dimension} dimensions), but this installation embeds with {MODEL_NAME} "
            f"({DIMENSION} dimensions); vectors of two models cannot be mixed. Rebuild into a new folder "
            f"(ponder index CORPUS --db NEW_PATH) or reinstall the model the index was built with."
        )
        raise IndexMismatchError(message)


def _apply_plan(
    store: IndexStore,
    plan: ChangePlan,
    config: IndexConfig,
    ray_address: str | None,
    run_id: str,
    timer: _StageTimer,
    progress: Callable[[int, int], None] | None,
    fault_plan: FaultPlan,
) -> tuple[dict[str, int], dict[str, Skipped]]:
    """Write the plan's changes; return row counts and the documents rejected by doc_id."""
    touched_entities: set[str] = set()
    changed_ids = {document.doc_id for document in plan.changed}
    with timer("delete"):
        touched_entities |= writer.entity_ids_of_documents(store, plan.deleted + sorted(changed_ids))
        # A changed document's old rows go only when its new rows are written (in
        # _Batch.flush), so a document rejected during the run keeps its previous version.
        store.delete_documents(plan.deleted)

    entity_vectors: dict[str, Any] = {}
    entity_names: dict[str, tuple[str, str]] = {}
    counts = {"documents": 0, "chunks": 0, "mentions": 0, "relations": 0, "attributes": 0, "tables": 0}
    rejected: dict[str, Skipped] = {}
    batch = _Batch(store, run_id, counts, touched_entities, entity_vectors, entity_names, changed_ids, rejected)
    documents = plan.to_process
    if documents:
        nodes: set[str] = set()
        with timer("pipeline"), ray_session(ray_address, config) as cpus:
            done = 0
            for result in _pipeline(documents, config, cpus, nodes, fault_plan):
                batch.buffer.append(result)
                if len(batch.buffer) >= config.flush_documents:
                    done += batch.flush()
                    if progress:
                        progress(done, len(documents))
            batch.flush()
            if progress:
                progress(len(documents), len(documents))
        # Distinct Ray nodes that ran analysis or embedding actors, to show how a cluster run spread.
        counts["ray_nodes"] = len(nodes)
    if rejected:
        counts["documents_rejected"] = len(rejected)

    with timer("entities"):
        counts["entities_updated"] = writer.refresh_entities(store, touched_entities, entity_vectors, entity_names)
    with timer("indexes"):
        writer.refresh_indexes(store, config)
    return counts, rejected


def _pipeline(documents: list[Document], config: IndexConfig, cpus: int, nodes: set[str], fault_plan: FaultPlan):
    """Yield (document, analysis, typed tables, chunk vectors, entity vectors) per document.

    Adds the id of every Ray node that analysed or embedded a batch to ``nodes``.
    """
    import ray

    # Embedding costs about three times the CPU of spaCy analysis per paragraph, so most
    # actors embed. Actors share the CPUs evenly, with fractions where they do not divide.
    analyzers = config.analyzers or max(1, cpus // 4)
    embedders = config.embedders or max(2, cpus - analyzers)
    node_cpus = [node["Resources"].get("CPU", 0.0) for node in ray.nodes() if node["Alive"]]
    share = actor_share(cpus, analyzers + embedders, node_cpus)
    items = [
        {"doc_id": document.doc_id, "document": pickle.dumps(document, protocol=pickle.HIGHEST_PROTOCOL)}
        for document in documents
    ]
    dataset = ray.data.from_items(items, override_num_blocks=max(1, min(len(items) // config.batch_size, 200)))
    dataset = dataset.map_batches(
        AnalyzeStage,
        fn_constructor_kwargs={"config": config.to_dict(), "faults": fault_plan},
        batch_size=config.batch_size,
        compute=ray.data.ActorPoolStrategy(size=analyzers),
        num_cpus=share,
    )
    dataset = dataset.map_batches(
        EmbedStage,
        fn_constructor_kwargs={"faults": fault_plan},
        batch_size=config.batch_size,
        compute=ray.data.ActorPoolStrategy(size=embedders),
        num_cpus=share,
    )
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        nodes.update(batch["analyze_node"].tolist())
        nodes.update(batch["embed_node"].tolist())
        for payload in batch["result"]:
            yield pickle.loads(payload)


def actor_share(cpus: float, actors: int, node_cpus: list[float]) -> float:
    """Return the CPUs to reserve per actor so that all ``actors`` fit on the nodes.

    An actor runs on one node, so an even share of the cluster's CPUs can leave actors
    unplaced: three actors of 2/3 CPU fit one 2-CPU node but not two 1-CPU nodes. The
    share then shrinks to the largest fraction of one node's CPUs that places them all.
    """

    def slots(size: float) -> int:
        # The small tolerance keeps 2 / (2/3) from counting as 2.999... actors.
        return sum(int(cpu / size + 1e-9) for cpu in node_cpus)

    share = max(0.1, cpus / actors)
    if not node_cpus or slots(share) >= actors:
        return share
    fractions = sorted({cpu / k for cpu in node_cpus if cpu > 0 for k in range(1, actors + 1)}, reverse=True)
    for fraction in fractions:
        if fraction <= share and slots(fraction) >= actors:
            return max(0.1, fraction)
    return 0.1


@dataclass
class _Batch:
    """Documents buffered for one write, and the run totals that writes add to."""

    store: IndexStore
    run_id: str
    counts: dict[str, int]
    touched_entities: set[str]
    entity_vectors: dict[str, Any]
    entity_names: dict[str, tuple[str, str]]
    changed_ids: set[str]
    rejected: dict[str, Skipped]
    buffer: list[tuple] = field(default_factory=list)

    def flush(self) -> int:
        """Write the buffered documents whose embeddings are usable; return how many were buffered."""
        buffered, self.buffer = self.buffer, []
        accepted = [result for result in buffered if self._accept(result)]
        if not accepted:
            return len(buffered)
        replaced = [document.doc_id for document, *_ in accepted if document.doc_id in self.changed_ids]
        self.store.delete_documents(replaced)
        tables = writer.build_rows(accepted, self.run_id)
        for name in ("chunks", "mentions", "relations", "attributes", "source_tables", "table_cells"):
            self.store.add_rows(name, tables[name])
        # The document rows go last: a document is indexed only once all its rows are.
        self.store.add_rows("documents", tables["documents"])
        counts = self.counts
        counts["documents"] += tables["documents"].num_rows
        counts["chunks"] += tables["chunks"].num_rows
        counts["mentions"] += tables["mentions"].num_rows
        counts["relations"] += tables["relations"].num_rows
        counts["attributes"] += tables["attributes"].num_rows
        counts["tables"] += tables["source_tables"].num_rows
        for _, analysis, _, _, vectors in accepted:
            for key, (name, label) in analysis.entity_names.items():
                entity_id = writer.entity_id(key)
                self.touched_entities.add(entity_id)
                self.entity_names.setdefault(entity_id, (name, label))
                self.entity_vectors.setdefault(entity_id, vectors[key])
        return len(buffered)

    def _accept(self, result: tuple) -> bool:
        document, analysis, _, chunk_vectors, entity_vectors = result
        problem = writer.vector_problem(analysis, chunk_vectors, entity_vectors)
        if problem is None:
            return True
        if document.doc_id in self.changed_ids:
            outcome = "the previously indexed version stays"
        else:
            outcome = "not indexed"
        reason = f"rejected: {problem}; {outcome}, and the next run tries it again"
        logger.warning("document %s (%s) %s", document.doc_id, document.source, reason)
        self.rejected[document.doc_id] = Skipped(document.source, reason)
        return False


def _run_row(result: RunResult, store, config, corpus, ray_address, started_at, wrote) -> dict[str, Any]:
    plan = result.plan
    changes = {
        "added": [document.doc_id for document in plan.added][:1000],
        "changed": [document.doc_id for document in plan.changed][:1000],
        "deleted": plan.deleted[:1000],
    }
    return {
        "run_id": result.run_id,
        "version": result.version,
        "status": "completed",
        "started_at": started_at,
        "finished_at": datetime.now(UTC),
        "corpus": str(Path(corpus).resolve()) if "://" not in corpus else corpus,
        "user": _user(),
        "host": socket.gethostname(),
        "ray_address": ray_address or "local",
        "n_seen": len(result.scan.documents) + len(result.scan.skipped),
        "n_added": len(plan.added),
        "n_changed": len(plan.changed),
        "n_deleted": len(plan.deleted),
        "n_unchanged": plan.unchanged,
        "n_skipped": len(result.skipped),
        "changes_json": json.dumps(changes),
        "skipped_json": json.dumps([{"source": item.source, "reason": item.reason} for item in result.skipped]),
        "warnings_json": json.dumps(result.scan.warnings),
        "counts_json": json.dumps(result.counts),
        "stage_seconds_json": json.dumps(result.stage_seconds),
        "table_versions_json": json.dumps(store.table_versions()),
        "config_json": json.dumps(config.to_dict()),
        "embedding_model": MODEL_NAME,
        "embedding_dimension": DIMENSION,
    }


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER", "unknown")


class _StageTimer:
    """Accumulate wall-clock seconds per named stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str):
        timer = self

        class _Span:
            def __enter__(self):
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                timer.seconds[name] = round(timer.seconds.get(name, 0.0) + time.perf_counter() - self.start, 3)

        return _Span()
