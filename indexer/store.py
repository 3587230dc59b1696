"""The LanceDB database behind an index: tables, versions, locking and snapshots.

Each LanceDB table keeps its own version history. An index version is the set of table
versions that one completed indexing run left behind, stored in the ``index_runs`` table.
Readers open a :class:`Snapshot`, which pins every table to the versions of the last
completed run, so a run that is still writing, or that died half-way, is never seen.
The next run first restores any table that moved past the last completed run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lancedb
import pyarrow as pa

from indexer.schema import DATA_TABLES, INDEX_RUNS, PER_DOCUMENT_TABLES

logger = logging.getLogger("ponder.store")

LOCK_FILE = ".ponder-index.lock"
_DELETE_BATCH = 400


class StoreError(RuntimeError):
    """Base class of the errors raised by the index store."""


class IndexNotFoundError(StoreError):
    """The database holds no completed index run."""


class IndexBusyError(StoreError):
    """Another indexing run holds the database lock."""


class IndexMismatchError(StoreError):
    """The index was built with settings that this run cannot mix with."""


def quote(value: str) -> str:
    """Quote a string literal for a LanceDB SQL filter."""
    return "'" + value.replace("'", "''") + "'"


def in_filter(column: str, values: Iterable[str]) -> str:
    return f"{column} IN ({', '.join(quote(value) for value in values)})"


def is_local_uri(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def local_path(uri: str) -> Path:
    return Path(uri.removeprefix("file://")).expanduser()


@dataclass(frozen=True)
class RunInfo:
    """The ``index_runs`` row of one run, with its JSON columns decoded."""

    run_id: str
    version: int
    status: str
    row: dict[str, Any]

    @property
    def table_versions(self) -> dict[str, int]:
        return json.loads(self.row["table_versions_json"] or "{}")

    @property
    def embedding_model(self) -> str:
        return self.row["embedding_model"]

    @property
    def embedding_dimension(self) -> int:
        return int(self.row["embedding_dimension"])


class IndexStore:
    """Open (and create on first write) the LanceDB database at ``uri``.

    ``uri`` is a local folder or any LanceDB URI such as ``s3://bucket/path``;
    ``storage_options`` go to LanceDB unchanged (endpoint, region, credentials).
    """

    def __init__(self, uri: str | os.PathLike[str], *, storage_options: dict[str, str] | None = None) -> None:
        self.uri = str(uri)
        self.storage_options = storage_options or None
        if is_local_uri(self.uri):
            path = local_path(self.uri)
            if path.exists() and not path.is_dir():
                message = f"index path {path} exists and is not a folder; pass a folder for --db"
                raise StoreError(message)
        self.db = lancedb.connect(self.uri, storage_options=self.storage_options)

    # -- tables ---------------------------------------------------------------------

    def table_names(self) -> set[str]:
        return set(self.db.list_tables().tables)

    def ensure_tables(self) -> None:
        """Create any missing table with its empty schema."""
        existing = self.table_names()
        for name, schema in {**DATA_TABLES, "index_runs": INDEX_RUNS}.items():
            if name not in existing:
                self.db.create_table(name, schema=schema)

    def open(self, name: str, version: int | None = None):
        return self.db.open_table(name, version=version) if version is not None else self.db.open_table(name)

    def table_versions(self) -> dict[str, int]:
        """Latest version of every data table."""
        return {name: self.open(name).version for name in DATA_TABLES}

    # -- locking --------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, *, wait: bool = False) -> Iterator[None]:
        """Hold the database's writer lock for the duration of a run.

        Local folders use an advisory file lock, which the operating system releases
        when the process dies, so a killed run never leaves a stale lock behind.
        """
        if not is_local_uri(self.uri):
            # NOTE: object stores have no advisory lock; runs on one URI must be
            # serialised by the scheduler (one CronJob with concurrencyPolicy: Forbid).
            yield
            return
        path = local_path(self.uri)
        path.mkdir(parents=True, exist_ok=True)
        handle = open(path / LOCK_FILE, "a+")
        try:
            flags = fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB
            try:
                fcntl.flock(handle, flags)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "unknown process"
                message = (
                    f"another indexing run is writing to {path} ({holder}); "
                    "wait for it to finish, or pass --wait to queue behind it"
                )
                raise IndexBusyError(message) from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} on {os.uname().nodename}\n")
            handle.flush()
            yield
        finally:
            handle.close()

    # -- runs and versions --------------------------------------------------------------

    def runs(self) -> list[RunInfo]:
        """All recorded runs, oldest first."""
        if "index_runs" not in self.table_names():
            return []
        rows = self.open("index_runs").to_arrow().to_pylist()
        rows.sort(key=lambda row: (row["started_at"], row["run_id"]))
        return [RunInfo(row["run_id"], int(row["version"]), row["status"], row) for row in rows]

    def completed_runs(self) -> list[RunInfo]:
        return [run for run in self.runs() if run.status == "completed"]

    def current_run(self) -> RunInfo | None:
        """The completed run that defines the index version readers see now."""
        completed = self.completed_runs()
        return max(completed, key=lambda run: (run.version, run.row["finished_at"])) if completed else None

    def recover(self) -> list[str]:
        """Undo the writes of a run that died before it completed.

        Returns the names of the tables that were restored or emptied.
        """
        current = self.current_run()
        restored: list[str] = []
        pinned = current.table_versions if current else {}
        for name, schema in DATA_TABLES.items():
            if name not in self.table_names():
                continue
            table = self.open(name)
            target = pinned.get(name)
            if target is None:
                if table.count_rows() > 0:
                    self.db.drop_table(name)
                    self.db.create_table(name, schema=schema)
                    restored.append(name)
            elif table.version != target:
                table.checkout(target)
                table.restore()
                restored.append(name)
        if restored:
            logger.warning("restored tables %s to the last completed index version", ", ".join(restored))
        return restored

    def record_run(self, row: dict[str, Any]) -> None:
        self.open("index_runs").add(pa.Table.from_pylist([row], schema=INDEX_RUNS))

    # -- per-document writes ----------------------------------------------------------

    def document_hashes(self) -> dict[str, str]:
        if "documents" not in self.table_names():
            return {}
        table = self.open("documents").to_arrow().select(["doc_id", "content_hash"])
        return dict(zip(table["doc_id"].to_pylist(), table["content_hash"].to_pylist(), strict=True))

    def delete_documents(self, doc_ids: list[str]) -> None:
        """Remove every row derived from these documents, the document rows last."""
        if not doc_ids:
            return
        for name in [*PER_DOCUMENT_TABLES, "documents"]:
            table = self.open(name)
            for start in range(0, len(doc_ids), _DELETE_BATCH):
                table.delete(in_filter("doc_id", doc_ids[start : start + _DELETE_BATCH]))

    def add_rows(self, name: str, rows: pa.Table) -> None:
        if rows.num_rows:
            self.open(name).add(rows)


class Snapshot:
    """A read-only view of one index version: every table pinned to that run's versions."""

    def __init__(self, store: IndexStore, run: RunInfo) -> None:
        self.store = store
        self.run = run
        self.version = run.version
        self._tables: dict[str, Any] = {}

    @classmethod
    def open(
        cls,
        uri: str | os.PathLike[str],
        *,
        version: int | None = None,
        storage_options: dict[str, str] | None = None,
    ) -> Snapshot:
        """Open the latest completed index version, or ``version`` when given."""
        if is_local_uri(str(uri)) and not local_path(str(uri)).exists():
            message = f"no index found at {uri}; build one with: ponder index CORPUS --db {uri}"
            raise IndexNotFoundError(message)
        store = IndexStore(uri, storage_options=storage_options)
        if version is None:
            run = store.current_run()
            if run is None:
                message = f"no completed index run in {uri}; build one with: ponder index CORPUS --db {uri}"
                raise IndexNotFoundError(message)
        else:
            matches = [run for run in store.completed_runs() if run.version == version]
            if not matches:
                known = sorted({run.version for run in store.completed_runs()})
                message = f"index version {version} not found in {uri}; known versions: {known}"
                raise IndexNotFoundError(message)
            run = max(matches, key=lambda run: run.row["finished_at"])
        return cls(store, run)

    def table(self, name: str):
        if name not in self._tables:
            pinned = self.run.table_versions.get(name)
            self._tables[name] = self.store.open(name, pinned)
        return self._tables[name]

    def arrow(self, name: str, columns: list[str] | None = None) -> pa.Table:
        table = self.table(name).to_arrow()
        return table.select(columns) if columns else table
