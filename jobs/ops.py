"""Operating an index: rolling back to an earlier version, pruning old table versions,
checking the run history for alerts, and readers that follow new index versions.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import socket
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from indexer.schema import DATA_TABLES
from indexer.store import LEASE_TABLE, IndexStore, RunInfo, Snapshot, StoreError

logger = logging.getLogger("ponder.ops")

DEFAULT_KEEP_DAYS = 30.0
DEFAULT_KEEP_VERSIONS = 7

T = TypeVar("T")


class OperationError(StoreError):
    """An operation on the index was rejected; the message states why and what to do next."""


def run_operation(run: RunInfo) -> str:
    """Return what wrote a run row: ``index``, ``rollback`` or ``prune``."""
    changes = json.loads(run.row.get("changes_json") or "{}")
    return changes.get("operation", "index") if isinstance(changes, dict) else "index"


def run_note(run: RunInfo) -> str:
    """Return the note an operation left on its run row, or an empty string."""
    changes = json.loads(run.row.get("changes_json") or "{}")
    return changes.get("note", "") if isinstance(changes, dict) else ""


# -- rollback -------------------------------------------------------------------------


def missing_table_versions(store: IndexStore, run: RunInfo) -> dict[str, int]:
    """Return the tables whose version recorded by ``run`` no longer exists, -1 where it recorded none."""
    pinned = run.table_versions
    missing: dict[str, int] = {}
    for name in DATA_TABLES:
        target = pinned.get(name)
        if target is None:
            missing[name] = -1
            continue
        available = {entry["version"] for entry in store.open(name).list_versions()}
        if target not in available:
            missing[name] = target
    return missing


def restorable_versions(store: IndexStore) -> list[int]:
    """Return the index versions whose table versions all still exist, oldest first."""
    available = {name: {entry["version"] for entry in store.open(name).list_versions()} for name in DATA_TABLES}
    versions = set()
    for run in store.completed_runs():
        pinned = run.table_versions
        if all(pinned.get(name) in available[name] for name in DATA_TABLES):
            versions.add(run.version)
    return sorted(versions)


def rollback(
    db: str,
    version: int,
    *,
    storage_options: dict[str, str] | None = None,
    wait_for_lock: bool = False,
) -> RunInfo:
    """Restore every data table to the versions that index version ``version`` recorded.

    The restore writes new table versions with the old contents, then records a run row
    with status ``completed`` and a version number above every recorded one, so readers
    move to it. Earlier versions stay available for a later rollback until pruned.
    Raises :class:`OperationError` when the version is unknown, already current, or
    its table versions were pruned.
    """
    started_at = datetime.now(UTC)
    clock = time.perf_counter()
    store = IndexStore(db, storage_options=storage_options)
    with store.lock(wait=wait_for_lock):
        current = store.current_run()
        if current is None:
            message = f"no completed index run in {db}; nothing to roll back"
            raise OperationError(message)
        matches = [run for run in store.completed_runs() if run.version == version]
        if not matches:
            known = sorted({run.version for run in store.completed_runs()})
            message = f"index version {version} not found in {db}; known versions: {known} (see ponder runs --db {db})"
            raise OperationError(message)
        if version == current.version:
            message = f"index version {version} is already the current version of {db}; nothing to roll back"
            raise OperationError(message)
        target = max(matches, key=lambda run: run.row["finished_at"])
        missing = missing_table_versions(store, target)
        if missing:
            tables = ", ".join(
                f"{name} v{table_version}" if table_version >= 0 else f"{name} (never recorded)"
                for name, table_version in sorted(missing.items())
            )
            message = (
                f"index version {version} cannot be restored: pruning removed table versions {tables}; "
                f"restorable index versions: {restorable_versions(store)}"
            )
            raise OperationError(message)

        for name, table_version in target.table_versions.items():
            if name not in DATA_TABLES:
                continue
            table = store.open(name)
            if table.version != table_version:
                table.checkout(table_version)
                table.restore()
        new_version = max(run.version for run in store.completed_runs()) + 1
        note = f"rolled back to index version {version} (run {target.run_id}) from version {current.version}"
        row = _operation_row(
            target,
            store,
            operation="rollback",
            version=new_version,
            started_at=started_at,
            note=note,
            details={"rolled_back_to": version, "rolled_back_from": current.version, "source_run": target.run_id},
            seconds={"rollback": round(time.perf_counter() - clock, 3)},
        )
        store.record_run(row)
    logger.info("%s: %s; new index version %d", db, note, new_version)
    return RunInfo(row["run_id"], new_version, "completed", row)


def _operation_row(
    base: RunInfo,
    store: IndexStore,
    *,
    operation: str,
    version: int,
    started_at: datetime,
    note: str,
    details: dict[str, Any],
    seconds: dict[str, float],
) -> dict[str, Any]:
    """Build the ``index_runs`` row of an operation that changes no documents.

    The corpus, settings and embedding model come from ``base``, the run whose
    contents the new version has. ``changes_json`` carries the operation and its note.
    """
    row = dict(base.row)
    row.update(
        {
            "run_id": started_at.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8],
            "version": version,
            "status": "completed",
            "started_at": started_at,
            "finished_at": datetime.now(UTC),
            "user": _user(),
            "host": socket.gethostname(),
            "ray_address": "none",
            "n_seen": 0,
            "n_added": 0,
            "n_changed": 0,
            "n_deleted": 0,
            "n_unchanged": 0,
            "n_skipped": 0,
            "changes_json": json.dumps(
                {"added": [], "changed": [], "deleted": [], "operation": operation, "note": note, **details}
            ),
            "skipped_json": "[]",
            "warnings_json": "[]",
            "counts_json": "{}",
            "stage_seconds_json": json.dumps(seconds),
            "table_versions_json": json.dumps(store.table_versions()),
        }
    )
    return row


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER", "unknown")


# -- prune ----------------------------------------------------------------------------


@dataclass
class PruneReport:
    """Table versions that :func:`prune` removed and kept, per table."""

    removed: dict[str, list[int]] = field(default_factory=dict)  # table versions deleted
    kept: dict[str, list[int]] = field(default_factory=dict)  # table versions left
    bytes_removed: int = 0
    compacted: list[str] = field(default_factory=list)  # tables whose files were compacted
    protected_versions: list[int] = field(default_factory=list)  # index versions kept whatever their age

    def to_dict(self) -> dict[str, Any]:
        return {
            "removed": self.removed,
            "kept": self.kept,
            "bytes_removed": self.bytes_removed,
            "compacted": self.compacted,
            "protected_versions": self.protected_versions,
        }


def prune(
    db: str,
    *,
    keep_days: float = DEFAULT_KEEP_DAYS,
    keep_versions: int = DEFAULT_KEEP_VERSIONS,
    compact: bool = True,
    storage_options: dict[str, str] | None = None,
    wait_for_lock: bool = False,
) -> PruneReport:
    """Compact the data tables and delete table versions that nothing needs any more.

    A table version is kept when it is the table's latest version, when it was written
    less than ``keep_days`` days ago, or when a completed run of one of the
    ``keep_versions`` highest index versions recorded it. The current version is always
    among those, and runs that changed nothing share their version with the run before.
    Everything else is deleted, so older index versions can no longer be opened or
    rolled back to. ``index_runs`` and ``index_lock`` keep their latest version and those
    younger than ``keep_days``, because readers only read their latest version.

    Compaction rewrites small files into large ones as new table versions, so it is
    recorded as a run row with the same index version number and the compacted table
    versions; readers that refresh move to it and see the same contents.
    """
    if keep_days < 0:
        message = f"keep_days must be 0 or more, got {keep_days}"
        raise OperationError(message)
    if keep_versions < 1:
        message = f"keep_versions must be at least 1 (the current version is always kept), got {keep_versions}"
        raise OperationError(message)
    report = PruneReport()
    store = IndexStore(db, storage_options=storage_options)
    with store.lock(wait=wait_for_lock):
        current = store.current_run()
        if current is None:
            message = f"no completed index run in {db}; nothing to prune"
            raise OperationError(message)
        # A run that died left writes past the current version; drop them before compacting.
        store.recover()
        if compact:
            report.compacted = _compact(store, current)
        protected_runs = _runs_of_newest_versions(store, keep_versions)
        report.protected_versions = sorted({run.version for run in protected_runs})
        cutoff = time.time() - keep_days * 86_400
        for name in [*DATA_TABLES, "index_runs", LEASE_TABLE]:
            if name not in store.table_names():
                continue
            protected = {run.table_versions.get(name) for run in protected_runs} if name in DATA_TABLES else set()
            removed, kept, freed = _prune_table(store, name, protected, cutoff)
            report.removed[name] = removed
            report.kept[name] = kept
            report.bytes_removed += freed
    logger.info(
        "%s: pruned %d table versions (%d bytes); compacted %s",
        db,
        sum(len(versions) for versions in report.removed.values()),
        report.bytes_removed,
        ", ".join(report.compacted) or "nothing",
    )
    return report


def _runs_of_newest_versions(store: IndexStore, count: int) -> list[RunInfo]:
    completed = store.completed_runs()
    versions = sorted({run.version for run in completed})[-count:]
    return [run for run in completed if run.version in versions]


def _compact(store: IndexStore, current: RunInfo) -> list[str]:
    started_at = datetime.now(UTC)
    clock = time.perf_counter()
    compacted = [name for name in DATA_TABLES if _compact_table(store, name, indexes=True)]
    if compacted:
        note = f"compacted {', '.join(compacted)}; contents unchanged"
        row = _operation_row(
            current,
            store,
            operation="prune",
            version=current.version,
            started_at=started_at,
            note=note,
            details={},
            seconds={"compact": round(time.perf_counter() - clock, 3)},
        )
        store.record_run(row)
    # Each run appends a small file to index_runs and each lease update one to index_lock.
    # Nobody pins their versions, so they are compacted without a run row.
    for name in ("index_runs", LEASE_TABLE):
        if name in store.table_names() and _compact_table(store, name, indexes=False):
            compacted.append(name)
    return compacted


def _compact_table(store: IndexStore, name: str, *, indexes: bool) -> bool:
    """Compact one table's files (and fold new rows into its indexes); return whether it changed."""
    before = store.open(name).version
    dataset = store.open(name).to_lance()
    dataset.optimize.compact_files()
    if indexes:
        dataset.optimize.optimize_indices()
    return store.open(name).version != before


def _prune_table(store: IndexStore, name: str, protected: set[int | None], cutoff: float) -> tuple[list[int], list[int], int]:
    table = store.open(name)
    latest = table.version
    entries = table.list_versions()
    removable = [
        entry["version"]
        for entry in entries
        if entry["version"] != latest and entry["version"] not in protected and _epoch(entry["timestamp"]) < cutoff
    ]
    kept = sorted(entry["version"] for entry in entries if entry["version"] not in removable)
    if not removable:
        return [], kept, 0
    stats = table.to_lance().cleanup_old_versions(
        versions=removable, delete_unverified=False, error_if_tagged_old_versions=False
    )
    return sorted(removable), kept, int(getattr(stats, "bytes_removed", 0))


def _epoch(timestamp: datetime) -> float:
    # lance 14 returns version timestamps as naive datetimes in local time.
    return timestamp.timestamp()


# -- alerting -------------------------------------------------------------------------


@dataclass
class RunCheck:
    """The outcome of :func:`check_runs`: problems to alert on, and what was measured."""

    problems: list[str]
    summary: str

    @property
    def ok(self) -> bool:
        return not self.problems


def check_runs(
    runs: list[RunInfo],
    *,
    max_age_hours: float = 26.0,
    max_slowdown: float = 3.0,
    recent: int = 14,
    now: datetime | None = None,
) -> RunCheck:
    """Check that indexing is healthy: the newest run is recent and not unusually slow.

    Only indexing runs count, not rollbacks or compactions. A problem is reported when
    no indexing run completed, or when the newest one finished more than
    ``max_age_hours`` ago. A run that failed or hangs records nothing, so the age check
    is also the failure alarm. A problem is also reported when the newest run changed
    documents and took more than ``max_slowdown`` times the median duration of the
    ``recent`` earlier runs that changed documents. That check needs at least three of
    them.
    """
    now = now or datetime.now(UTC)
    indexing = [run for run in runs if run.status == "completed" and run_operation(run) == "index"]
    indexing.sort(key=lambda run: run.row["finished_at"])
    if not indexing:
        return RunCheck(["no completed indexing run recorded"], "no runs")
    newest = indexing[-1]
    problems = []
    age_hours = (now - newest.row["finished_at"]).total_seconds() / 3600
    if age_hours > max_age_hours:
        problems.append(
            f"the newest completed indexing run {newest.run_id} finished {age_hours:.1f} h ago, "
            f"more than the allowed {max_age_hours:g} h; check the scheduler and the job's logs"
        )
    duration = _duration(newest)
    baseline = [_duration(run) for run in indexing[:-1] if _changed(run)][-recent:]
    median = statistics.median(baseline) if len(baseline) >= 3 else None
    if median and _changed(newest) and duration > max_slowdown * median:
        problems.append(
            f"the newest indexing run {newest.run_id} took {duration:.0f} s, {duration / median:.1f} times "
            f"the median {median:.0f} s of the {len(baseline)} runs before it (allowed: {max_slowdown:g} times)"
        )
    median_text = f"{median:.0f} s" if median else "not enough earlier runs"
    summary = (
        f"newest indexing run {newest.run_id}: index version {newest.version}, finished {age_hours:.1f} h ago, "
        f"took {duration:.0f} s (median of earlier runs: {median_text})"
    )
    return RunCheck(problems, summary)


def _duration(run: RunInfo) -> float:
    return (run.row["finished_at"] - run.row["started_at"]).total_seconds()


def _changed(run: RunInfo) -> bool:
    return (run.row["n_added"] or 0) + (run.row["n_changed"] or 0) + (run.row["n_deleted"] or 0) > 0


# -- readers that follow new versions -------------------------------------------------


class LiveReader(Generic[T]):
    """A reader built from the newest completed index version, rebuilt when a newer one is recorded.

    ``build`` turns a :class:`Snapshot` into the reader a server needs (a
    ``ChunkSearcher``, for example). Queries keep using the current reader while a run
    writes, because a run becomes visible only when it records its row. :meth:`refresh`
    builds the reader of the new version before swapping it in, so callers never wait for
    the rebuild and never see a half-built reader. Safe to call from several threads.
    """

    def __init__(
        self,
        db: str,
        build: Callable[[Snapshot], T],
        *,
        storage_options: dict[str, str] | None = None,
    ) -> None:
        self.db = db
        self._build = build
        snapshot = Snapshot.open(db, storage_options=storage_options)
        self._current = (snapshot, build(snapshot))
        self._refresh_lock = threading.Lock()

    @property
    def snapshot(self) -> Snapshot:
        return self._current[0]

    @property
    def reader(self) -> T:
        return self._current[1]

    @property
    def version(self) -> int:
        return self._current[0].version

    def current(self) -> tuple[Snapshot, T]:
        """Return the snapshot and its reader as one consistent pair."""
        return self._current

    def refresh(self) -> bool:
        """Switch to the newest completed index version; return whether it changed."""
        with self._refresh_lock:
            snapshot, _ = self._current
            latest = snapshot.latest()
            if latest is snapshot:
                return False
            reader = self._build(latest)
            self._current = (latest, reader)
        logger.info("%s: readers moved from index version %d to %d", self.db, snapshot.version, latest.version)
        return True
