"""Fault injection for crash-safety tests of the indexing job; inert unless configured.

Two environment variables, read only by :meth:`FaultPlan.from_environment` when a run
starts, switch faults on. Production runs leave both unset.

``PONDER_FAULT_AFTER=POINT:N[:ACTION]``
    The N-th time the run reaches POINT, ACTION happens. ``kill`` (the default) sends
    SIGKILL to the driver process, as a power cut or the out-of-memory killer would.
    ``enospc`` raises ``OSError(ENOSPC)`` and ``eacces`` raises ``PermissionError``, as a
    full disk or a read-only folder would. Points, in run order:

    - ``delete``: each table delete of replaced or deleted documents;
    - ``analysis`` and ``embedding``: each batch an analysis or embedding actor finishes,
      counted per actor (set ``analyzers``/``embedders`` to 1 for a global count);
    - ``write``: each table write of a flushed batch of documents;
    - ``entities``: each write of the entities table;
    - ``indexes``: each full-text or vector index build or refresh;
    - ``record``: 1 just before the run record is written, 2 just after.

``PONDER_FAULT_VECTORS=KIND:DOC_ID[,KIND:DOC_ID...]``
    The embedding stage replaces the chunk vectors of DOC_ID: ``nan`` fills them with
    NaN, ``zero`` with zeros, ``empty`` returns no vectors at all.

NOTE: an actor kills the driver by process id, so ``kill`` at ``analysis`` or
``embedding`` works only when the actors run on the driver's host.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

AFTER_ENV = "PONDER_FAULT_AFTER"
VECTORS_ENV = "PONDER_FAULT_VECTORS"

POINTS = ("delete", "analysis", "embedding", "write", "entities", "indexes", "record")
ACTIONS = ("kill", "enospc", "eacces")
VECTOR_KINDS = ("nan", "zero", "empty")


class FaultConfigError(ValueError):
    """A fault-injection variable has a value that cannot be parsed."""


@dataclass
class FaultPlan:
    """The faults of one run. Picklable, so the driver hands it to its Ray actors."""

    point: str = ""
    count: int = 0
    action: str = "kill"
    driver_pid: int = 0
    vectors: dict[str, str] = field(default_factory=dict)  # doc_id -> nan, zero or empty
    reached: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> FaultPlan:
        environ = os.environ if environ is None else environ
        plan = cls(driver_pid=os.getpid())
        after = environ.get(AFTER_ENV, "").strip()
        if after:
            parts = after.split(":")
            valid = 2 <= len(parts) <= 3 and parts[0] in POINTS and parts[1].isdigit() and int(parts[1]) >= 1
            if valid and len(parts) == 3 and parts[2] not in ACTIONS:
                valid = False
            if not valid:
                message = (
                    f"{AFTER_ENV} must be POINT:N or POINT:N:ACTION with POINT one of {list(POINTS)}, "
                    f"N a positive integer and ACTION one of {list(ACTIONS)}; got {after!r}"
                )
                raise FaultConfigError(message)
            plan.point, plan.count = parts[0], int(parts[1])
            plan.action = parts[2] if len(parts) == 3 else "kill"
        for item in filter(None, (part.strip() for part in environ.get(VECTORS_ENV, "").split(","))):
            kind, _, doc_id = item.partition(":")
            if kind not in VECTOR_KINDS or not doc_id:
                message = f"{VECTORS_ENV} entries must be KIND:DOC_ID with KIND one of {list(VECTOR_KINDS)}; got {item!r}"
                raise FaultConfigError(message)
            plan.vectors[doc_id] = kind
        return plan

    @property
    def active(self) -> bool:
        return bool(self.point or self.vectors)

    def reach(self, point: str) -> None:
        """Count one pass through ``point`` and fire the fault when it is the chosen one."""
        if point != self.point:
            return
        self.reached[point] = self.reached.get(point, 0) + 1
        if self.reached[point] != self.count:
            return
        if self.action == "enospc":
            raise OSError(errno.ENOSPC, f"No space left on device (injected at {point}:{self.count})")
        if self.action == "eacces":
            raise PermissionError(errno.EACCES, f"Permission denied (injected at {point}:{self.count})")
        os.kill(self.driver_pid or os.getpid(), signal.SIGKILL)

    def corrupt(self, doc_id: str, vectors: np.ndarray) -> np.ndarray:
        """Return ``vectors`` as the configured vector fault for ``doc_id`` leaves them."""
        kind = self.vectors.get(doc_id)
        if kind == "nan":
            return np.full_like(vectors, np.nan)
        if kind == "zero":
            return np.zeros_like(vectors)
        if kind == "empty":
            return vectors[:0]
        return vectors


_ACTIVE = FaultPlan()


def reach(point: str) -> None:
    """Count a pass through ``point`` in the driver; see the module docstring."""
    _ACTIVE.reach(point)


@contextlib.contextmanager
def installed(plan: FaultPlan) -> Iterator[FaultPlan]:
    """Make ``plan`` the driver's active plan for the duration of one run."""
    global _ACTIVE
    previous = _ACTIVE
    _ACTIVE = plan
    try:
        yield plan
    finally:
        _ACTIVE = previous
