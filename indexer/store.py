"""The LanceDB database behind an index: tables, versions, locking and snapshots.

Each LanceDB table keeps its own version history. An index version is the set of table
versions that one completed indexing run left behind, stored in the ``index_runs`` table.
Readers open a :class:`Snapshot`, which pins every table to the versions of the last
completed run, so a run that is still writing, or that died half-way, is never seen.
The next run first restores any table that moved past the last completed run.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import getpass
import ipaddress
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import lancedb
import pyarrow as pa

from indexer import faults
from indexer.config import ConfigError, read_toml_file
from indexer.schema import DATA_TABLES, INDEX_RUNS, PER_DOCUMENT_TABLES

logger = logging.getLogger("ponder.store")

LOCK_FILE = ".ponder-index.lock"
LEASE_TABLE = "index_lock"
DEFAULT_LEASE_SECONDS = 600.0
CONFIG_ENV = "PONDER_CONFIG"
LEASE_SECONDS_ENV = "PONDER_LEASE_SECONDS"
_DELETE_BATCH = 400

# LanceDB storage options taken from the standard AWS environment variables for s3://
# URIs. Where several variables map to one option, the first one set wins.
_S3_ENVIRONMENT: dict[str, tuple[str, ...]] = {
    "aws_access_key_id": ("AWS_ACCESS_KEY_ID",),
    "aws_secret_access_key": ("AWS_SECRET_ACCESS_KEY",),
    "aws_session_token": ("AWS_SESSION_TOKEN",),
    "aws_region": ("AWS_REGION", "AWS_DEFAULT_REGION"),
    "aws_endpoint": ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"),
    "allow_http": ("AWS_ALLOW_HTTP",),
}


class StoreError(RuntimeError):
    """Base class of the errors raised by the index store."""


class IndexNotFoundError(StoreError):
    """The database contains no completed index run."""


class IndexBusyError(StoreError):
    """Another indexing run holds the database lock."""


class IndexMismatchError(StoreError):
    """The index was built with settings that this run cannot mix with."""


class IndexWriteError(StoreError):
    """The database cannot be written: a full disk, a read-only folder, a storage failure."""


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_NOT_PERMITTED = (errno.EACCES, errno.EPERM, errno.EROFS)
_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def storage_errno(error: BaseException) -> int | None:
    """Return the operating-system error number behind a failed storage call, if any.

    Python raises OSError. LanceDB 0.40 raises RuntimeError with the number in its text,
    such as "LanceError(IO): Permission denied (os error 13)".
    """
    if isinstance(error, OSError):
        return error.errno
    match = _OS_ERROR.search(str(error))
    return int(match.group(1)) if match else None


def is_storage_error(error: BaseException) -> bool:
    """Return whether ``error`` is a failed read or write of the database's storage."""
    return isinstance(error, OSError) or (isinstance(error, RuntimeError) and "LanceError(IO)" in str(error))


def write_error(uri: str, error: BaseException, *, version: int | None, wrote: bool = True) -> IndexWriteError:
    """Build the error for a write to ``uri`` that failed with ``error``.

    ``version`` is the index version readers still see, None when there is none yet.
    ``wrote`` is False when the failure came before the run wrote anything.
    """
    text = str(error)
    code = storage_errno(error)
    if code in _NO_SPACE or "No space left" in text:
        cause = "no space left on the device that holds it"
        fix = "free space on that device, or pass --db a folder on a device with room"
    elif code in _NOT_PERMITTED or "Permission denied" in text or "Read-only file system" in text:
        cause = "permission denied"
        fix = f"make {uri} and everything in it writable by user {_user_name()} (for example chmod -R u+w {uri}), or pass --db a writable folder"
    else:
        cause = "a storage error"
        fix = "fix the storage problem named above"
    kept = f"Readers still see index version {version}" if version else "No index version was recorded"
    cleanup = "the next run undoes this run's partial writes" if wrote else "this run wrote nothing"
    message = f"writing the index at {uri} failed: {cause} ({text}). {kept}; {cleanup}. To fix: {fix}, then run ponder index again."
    return IndexWriteError(message)


def _user_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER", "unknown")


def quote(value: str) -> str:
    """Quote a string literal for a LanceDB SQL filter."""
    return "'" + value.replace("'", "''") + "'"


def in_filter(column: str, values: Iterable[str]) -> str:
    return f"{column} IN ({', '.join(quote(value) for value in values)})"


def is_local_uri(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def local_path(uri: str) -> Path:
    return Path(uri.removeprefix("file://")).expanduser()


def storage_options_for(
    uri: str, explicit: dict[str, str] | None = None, *, environ: dict[str, str] | None = None
) -> dict[str, str] | None:
    """Build the LanceDB storage options for ``uri``.

    Later sources win: the AWS environment variables (``s3://`` URIs only), the
    ``[storage]`` table of the settings file named by ``PONDER_CONFIG``, then
    ``explicit``. Keys are LanceDB option names such as ``aws_endpoint``. A plain-HTTP
    endpoint on a loopback address gets ``allow_http`` unless it is set. Local folders
    take only ``explicit``. The values may hold credentials: never log them.
    """
    environ = os.environ if environ is None else environ
    if is_local_uri(uri):
        return dict(explicit) if explicit else None
    options: dict[str, str] = {}
    if uri.startswith(("s3://", "s3a://")):
        for option, variables in _S3_ENVIRONMENT.items():
            value = next((environ[name] for name in variables if environ.get(name)), None)
            if value is not None:
                options[option] = value
    options.update(_storage_table(environ.get(CONFIG_ENV)))
    options.update(explicit or {})
    endpoint = options.get("aws_endpoint") or options.get("endpoint")
    if endpoint and "allow_http" not in options and _is_loopback_http(endpoint):
        options["allow_http"] = "true"
    return options or None


def _storage_table(config_file: str | None) -> dict[str, str]:
    if not config_file:
        return {}
    path = Path(config_file)
    try:
        data = read_toml_file(path, hint=f" (named by {CONFIG_ENV})")
    except ConfigError as error:
        raise StoreError(str(error)) from None
    section = data.get("storage", {})
    if not isinstance(section, dict):
        message = f"[storage] in {path} must be a table of LanceDB storage options"
        raise StoreError(message)
    # LanceDB takes strings only; TOML booleans become "true" and "false".
    return {str(key): str(value).lower() if isinstance(value, bool) else str(value) for key, value in section.items()}


def _is_loopback_http(endpoint: str) -> bool:
    parsed = urlparse(endpoint)
    if parsed.scheme != "http" or not parsed.hostname:
        return False
    if parsed.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parsed.hostname).is_loopback
    except ValueError:
        return False


def _lease_seconds_from_environment() -> float:
    value = os.environ.get(LEASE_SECONDS_ENV)
    if not value:
        return DEFAULT_LEASE_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if seconds <= 0:
        message = f"{LEASE_SECONDS_ENV} must be a positive number of seconds, got {value!r}"
        raise StoreError(message)
    return seconds


def _lock_owner() -> str:
    return f"pid {os.getpid()} on {os.uname().nodename}"


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

    ``uri`` is a local folder or any LanceDB URI such as ``s3://bucket/path``.
    ``storage_options`` (endpoint, region, credentials) override those found in the
    environment and the settings file, see :func:`storage_options_for`.
    ``lease_seconds`` sets how long a writer lease on an object store lasts without
    renewal (default ``PONDER_LEASE_SECONDS`` or 600).
    """

    def __init__(
        self,
        uri: str | os.PathLike[str],
        *,
        storage_options: dict[str, str] | None = None,
        lease_seconds: float | None = None,
    ) -> None:
        self.uri = str(uri)
        self.storage_options = storage_options_for(self.uri, storage_options)
        self.lease_seconds = lease_seconds or _lease_seconds_from_environment()
        self._lease: WriterLease | None = None
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

    def check_writable(self) -> None:
        """Raise :class:`IndexWriteError` when a local index folder cannot be written.

        Checks the folder (or the nearest existing parent it would be created in) and
        the folders of its tables, so a read-only index fails before any write. Object
        stores are not checked here; their write errors surface when the run writes.
        NOTE: the check uses os.access, which grants the root user everything, so a
        read-only folder written by root fails only at the first write.
        """
        if not is_local_uri(self.uri):
            return
        path = local_path(self.uri)
        folder = path
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        folders = [folder]
        if folder == path:
            for table in path.glob("*.lance"):
                folders += [table] + [child for child in table.iterdir() if child.is_dir()]
        for candidate in folders:
            if not os.access(candidate, os.W_OK | os.X_OK):
                error = PermissionError(errno.EACCES, "Permission denied", str(candidate))
                raise write_error(self.uri, error, version=self._readable_version(), wrote=False)

    def _readable_version(self) -> int | None:
        """Return the index version readers see, or None when there is none or it cannot be read."""
        try:
            current = self.current_run()
        except (OSError, RuntimeError, ValueError):
            return None
        return current.version if current else None

    # -- locking --------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, *, wait: bool = False) -> Iterator[None]:
        """Hold the database's writer lock for the duration of a run.

        Local folders use an advisory file lock, which the operating system releases
        when the process dies, so a killed run never leaves a stale lock behind. Object
        stores have no such lock, so they use a :class:`WriterLease` that expires when its
        holder stops renewing it.
        """
        if not is_local_uri(self.uri):
            with self._hold_lease(wait=wait):
                yield
            return
        path = local_path(self.uri)
        try:
            path.mkdir(parents=True, exist_ok=True)
            handle = open(path / LOCK_FILE, "a+")
        except OSError as error:
            raise write_error(self.uri, error, version=self._readable_version(), wrote=False) from error
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

    @contextlib.contextmanager
    def _hold_lease(self, *, wait: bool) -> Iterator[None]:
        lease = WriterLease(self, seconds=self.lease_seconds, owner=_lock_owner())
        while not lease.acquire():
            holder = lease.holder()
            if not wait:
                owner = holder["owner"] if holder else "unknown process"
                expires = _format_ms(holder["expires_ms"]) if holder else "unknown"
                message = (
                    f"another indexing run holds the writer lease on {self.uri} ({owner}, expires {expires} "
                    "unless renewed); wait for it to finish, or pass --wait to queue behind it. A lease "
                    "left by a killed run expires by itself."
                )
                raise IndexBusyError(message)
            time.sleep(min(5.0, self.lease_seconds / 10))
        lease.start_renewing()
        self._lease = lease
        try:
            yield
        finally:
            self._lease = None
            lease.release()

    def lease_table(self):
        """Open the ``index_lock`` table, creating it with a free lease when missing."""
        if LEASE_TABLE in self.table_names():
            return self.open(LEASE_TABLE)
        free = pa.Table.from_pylist([WriterLease.free_row()], schema=LEASE_SCHEMA)
        try:
            return self.db.create_table(LEASE_TABLE, data=free)
        except (ValueError, OSError, RuntimeError):
            # Another process created it between the check and the create.
            if LEASE_TABLE in self.table_names():
                return self.open(LEASE_TABLE)
            raise

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
        """Append a run row, which makes its table versions the current index version.

        Raises :class:`IndexBusyError` when this store's writer lease was taken over,
        because another run may have written since.
        """
        if self._lease is not None:
            self._lease.check()
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
            faults.reach("delete")
            for start in range(0, len(doc_ids), _DELETE_BATCH):
                table.delete(in_filter("doc_id", doc_ids[start : start + _DELETE_BATCH]))

    def add_rows(self, name: str, rows: pa.Table) -> None:
        if rows.num_rows:
            faults.reach("write")
            self.open(name).add(rows)


LEASE_SCHEMA = pa.schema(
    [
        ("lock_id", pa.string()),
        ("token", pa.string()),  # random per holder; empty when the lease is free
        ("owner", pa.string()),
        ("acquired_ms", pa.int64()),  # Unix time in milliseconds
        ("expires_ms", pa.int64()),
    ]
)


def _format_ms(milliseconds: int) -> str:
    return datetime.fromtimestamp(milliseconds / 1000, UTC).isoformat(timespec="seconds")


class WriterLease:
    """A writer lease with an expiry time, stored as one row of the ``index_lock`` table.

    Taking the lease is one conditional LanceDB update that changes the row only while
    the lease is free or expired. When two updates race, LanceDB commits one and re-runs
    the other on the new table version, where the condition no longer holds, so one run
    gets the lease (checked against local folders and an S3 server, lancedb 0.40). The
    holder renews it every quarter of ``seconds`` from a background thread.
    NOTE: expiry compares wall clocks, so the hosts' clocks must agree to well within
    ``seconds``.
    """

    LOCK_ID = "writer"

    def __init__(self, store: IndexStore, *, seconds: float, owner: str) -> None:
        self.store = store
        self.seconds = seconds
        self.owner = owner
        self.token = secrets.token_hex(16)
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._expires_ms = 0

    @classmethod
    def free_row(cls) -> dict[str, Any]:
        return {"lock_id": cls.LOCK_ID, "token": "", "owner": "", "acquired_ms": 0, "expires_ms": 0}

    def holder(self) -> dict[str, Any] | None:
        """Return the lease row when someone holds an unexpired lease, else None."""
        rows = self.store.lease_table().to_arrow().to_pylist()
        row = next((row for row in rows if row["lock_id"] == self.LOCK_ID), None)
        if row is None or not row["token"] or row["expires_ms"] < _now_ms():
            return None
        return row

    def acquire(self) -> bool:
        """Take the lease if it is free or expired; return whether this holder has it."""
        table = self.store.lease_table()
        now = _now_ms()
        expires = now + int(self.seconds * 1000)
        table.update(
            where=f"lock_id = {quote(self.LOCK_ID)} AND (token = '' OR expires_ms < {now})",
            values={"token": self.token, "owner": self.owner, "acquired_ms": now, "expires_ms": expires},
        )
        held = self._is_holder()
        if held:
            self._expires_ms = expires
            logger.info("took the writer lease on %s until %s", self.store.uri, _format_ms(expires))
        return held

    def renew(self) -> bool:
        """Extend the lease; return False, and mark it lost, when another holder has it."""
        expires = _now_ms() + int(self.seconds * 1000)
        table = self.store.lease_table()
        table.update(where=f"token = {quote(self.token)}", values={"expires_ms": expires})
        if not self._is_holder():
            self.lost = True
            logger.error("lost the writer lease on %s: another run took it over", self.store.uri)
            return False
        self._expires_ms = expires
        return True

    def check(self) -> None:
        """Renew the lease now, raising :class:`IndexBusyError` when it was lost."""
        if self.lost or not self.renew():
            message = (
                f"this run lost the writer lease on {self.store.uri} (it expired and another run took it "
                f"over), so it stops without recording a new index version; raise {LEASE_SECONDS_ENV} "
                "if renewals are slow"
            )
            raise IndexBusyError(message)

    def start_renewing(self) -> None:
        self._thread = threading.Thread(target=self._renew_loop, name="ponder-lease", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Stop renewing and free the lease if this holder still has it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self.store.lease_table().update(
                where=f"token = {quote(self.token)}", values={"token": "", "owner": "", "expires_ms": 0}
            )
            logger.info("released the writer lease on %s", self.store.uri)
        except (OSError, RuntimeError, ValueError) as error:
            logger.warning("could not release the writer lease on %s; it expires by itself: %s", self.store.uri, error)

    def _is_holder(self) -> bool:
        rows = self.store.lease_table().to_arrow().to_pylist()
        return any(row["token"] == self.token for row in rows)

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.seconds / 4):
            try:
                if not self.renew():
                    return
            except (OSError, RuntimeError, ValueError) as error:
                # A failed renewal is retried on the next tick; the lease is lost once it expires.
                logger.warning("renewing the writer lease on %s failed: %s", self.store.uri, error)
                if _now_ms() > self._expires_ms:
                    self.lost = True
                    logger.error("the writer lease on %s expired while renewals failed", self.store.uri)
                    return


def _now_ms() -> int:
    return int(time.time() * 1000)


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

    def latest(self) -> Snapshot:
        """Return a snapshot of the newest completed index version, or this one if it is still the newest.

        Runs that changed nothing pin the same table versions, so they return this snapshot.
        """
        run = self.store.current_run()
        if run is None or (run.version == self.version and run.table_versions == self.run.table_versions):
            return self
        return Snapshot(self.store, run)

    def table(self, name: str):
        if name not in self._tables:
            pinned = self.run.table_versions.get(name)
            self._tables[name] = self.store.open(name, pinned)
        return self._tables[name]

    def arrow(self, name: str, columns: list[str] | None = None) -> pa.Table:
        table = self.table(name).to_arrow()
        return table.select(columns) if columns else table
