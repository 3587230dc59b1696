"""One thread that runs every solver and trace call of the server, with a bounded queue.

The solver, its snapshot and the trace buffer are not thread-safe, so the server runs
all of them on this single thread and the event loop only awaits the results. A call
that would exceed the queue limit is rejected at once with QueueFullError rather than
left to wait.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

Result = TypeVar("Result")


class QueueFullError(RuntimeError):
    """The solver thread is busy and its queue contains as many calls as allowed."""


class SolverWorker:
    """Run calls one at a time on a dedicated thread; at most ``queue_limit`` wait."""

    def __init__(self, queue_limit: int) -> None:
        self.capacity = queue_limit + 1  # the running call plus the waiting ones
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="ponder-solver")
        self._lock = threading.Lock()
        self._pending = 0

    @property
    def pending(self) -> int:
        """Calls accepted and not yet finished, the running one included."""
        with self._lock:
            return self._pending

    def submit(self, function: Callable[..., Result], *args: Any, **kwargs: Any) -> asyncio.Future[Result]:
        """Queue ``function(*args, **kwargs)`` and return a future for the running event loop.

        Raises QueueFullError when ``capacity`` calls are already pending. Cancelling
        the returned future before the call starts removes it from the queue; a call
        that has started runs to its end.
        """
        with self._lock:
            if self._pending >= self.capacity:
                message = f"the solver is busy with {self._pending} requests; retry later"
                raise QueueFullError(message)
            self._pending += 1
        try:
            future = self._executor.submit(functools.partial(function, *args, **kwargs))
        except RuntimeError:
            self._release()
            raise
        future.add_done_callback(self._release)
        return asyncio.wrap_future(future)

    def shutdown(self) -> None:
        """Drop the calls still waiting and wait for the running one to finish."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _release(self, _future: object = None) -> None:
        with self._lock:
            self._pending -= 1
