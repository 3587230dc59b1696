"""One object that answers questions over an index: snapshot, tools, reasoner, traces."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from controller.monitors import monitor
from controller.policies import make_policy
from indexer.embedding import Embedder
from indexer.store import Snapshot
from solver.episode import EpisodeResult, Solver
from solver.state import StepRecord
from solver.tools import Toolbox
from solver.traces import TraceStore

logger = logging.getLogger("ponder.service")

DEFAULT_BUDGET = 4_000
MAX_BUDGET = 1_000_000


class Ponder:
    """Answer questions over the index at ``db``, pinned to one index version.

    The snapshot, models and graph load once; each :meth:`ask` is one episode. Traces go
    to the same database unless ``record`` is false.
    """

    def __init__(self, db: str, *, version: int | None = None, record: bool = True) -> None:
        from solver.reasoner import EmbeddedReasoner

        self.db = db
        self.snapshot = Snapshot.open(db, version=version)
        self.embedder = Embedder()
        self.toolbox = Toolbox(self.snapshot, self.embedder)
        self.reasoner = EmbeddedReasoner(embedder=self.embedder)
        self.solver = Solver(self.toolbox, self.reasoner, monitor)
        self.traces = TraceStore(db) if record else None

    @property
    def version(self) -> int:
        return self.snapshot.version

    def ask(
        self,
        question: str,
        *,
        policy: str = "adaptive",
        budget: float = DEFAULT_BUDGET,
        groups: Sequence[str] = ("public",),
        gold: list[str] | None = None,
        on_step: Callable[[StepRecord], None] | None = None,
        policy_options: dict | None = None,
        user: str | None = None,
    ) -> EpisodeResult:
        """Run one episode and record its trace.

        ``user`` names the caller in the trace; it defaults to the operating-system user.
        """
        from solver.search import clean_query

        clean_query(question)
        if not 0 < budget <= MAX_BUDGET:
            message = f"budget must be above 0 and at most {MAX_BUDGET} tokens, got {budget}"
            raise ValueError(message)
        if not groups:
            message = "the caller needs at least one access group, such as 'public'"
            raise ValueError(message)
        result = self.solver.solve(
            question,
            make_policy(policy, **(policy_options or {})),
            budget=budget,
            groups=tuple(groups),
            on_step=on_step,
        )
        if self.traces is not None:
            self.traces.record(result, gold=gold, user=user)
        return result

    def close(self) -> None:
        if self.traces is not None:
            self.traces.flush()
