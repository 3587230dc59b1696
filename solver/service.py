"""One object that answers questions over an index: snapshot, tools, reasoner, traces."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from controller.monitors import monitor
from controller.policies import make_policy, policy_names
from indexer.embedding import Embedder
from indexer.store import Snapshot
from solver.episode import EpisodeResult, Solver
from solver.state import EMBEDDED_TIER, StepRecord
from solver.tools import Toolbox
from solver.traces import TraceStore

logger = logging.getLogger("ponder.service")

DEFAULT_BUDGET = 4_000
MAX_BUDGET = 1_000_000


def check_request(question: str, *, policy: str, budget: float, groups: Sequence[str]) -> None:
    """Raise QueryError or ValueError, with the reason, unless :meth:`Ponder.ask` can run the request."""
    from solver.search import clean_query

    clean_query(question)
    if policy not in policy_names():
        message = f"unknown policy {policy!r}; available policies: {policy_names()}"
        raise ValueError(message)
    if not 0 < budget <= MAX_BUDGET:
        message = f"budget must be above 0 and at most {MAX_BUDGET} tokens, got {budget}"
        raise ValueError(message)
    if not groups:
        message = "the caller needs at least one access group, such as 'public'"
        raise ValueError(message)


class Ponder:
    """Answer questions over the index at ``db``, pinned to one index version.

    The snapshot, models and graph load once; each :meth:`ask` is one episode. Traces go
    to the same database unless ``record`` is false. Model tiers come from ``config``
    (a TOML file with ``[tiers.small]`` and ``[tiers.large]``), else from the file named
    by ``PONDER_CONFIG`` and the ``PONDER_TIER_*`` variables; see docs/models.md.
    """

    def __init__(
        self, db: str, *, version: int | None = None, record: bool = True, config: str | Path | None = None
    ) -> None:
        from solver.reasoner import EmbeddedReasoner
        from solver.tier_config import load_tier_configs

        tier_configs = load_tier_configs(config)  # checked first, so a bad file fails fast
        self.db = db
        self.snapshot = Snapshot.open(db, version=version)
        self.embedder = Embedder()
        self.toolbox = Toolbox(self.snapshot, self.embedder)
        self.reasoner = EmbeddedReasoner(embedder=self.embedder)
        self.models = _build_models(tier_configs, self.reasoner)
        if self.models:
            from controller.routing import TierRouter

            tiers = {EMBEDDED_TIER.name: EMBEDDED_TIER, **{name: model.tier for name, model in self.models.items()}}
            self.solver = Solver(self.toolbox, self.reasoner, monitor, tiers=tiers, models=self.models, router=TierRouter(tiers))
        else:
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
        probe_rate: float = 0.0,
        probe_seed: int = 0,
        user: str | None = None,
    ) -> EpisodeResult:
        """Run one episode and record its trace; ``user`` names the caller in the trace
        (default: the operating-system user).

        ``probe_rate`` is the share of steps that also run a counterfactual probe
        (solver/probes.py). Probes are off by default and do not change the answer or cost.
        """
        check_request(question, policy=policy, budget=budget, groups=groups)
        result = self.solver.solve(
            question,
            make_policy(policy, **(policy_options or {})),
            budget=budget,
            groups=tuple(groups),
            on_step=on_step,
            probe_rate=probe_rate,
            probe_seed=probe_seed,
        )
        if self.traces is not None:
            self.traces.record(result, gold=gold, user=user)
        return result

    def close(self) -> None:
        if self.traces is not None:
            self.traces.flush()
        for model in self.models.values():
            model.close()


def _build_models(configs: dict, verifier) -> dict:
    """Build one chat-endpoint reasoner per configured tier."""
    from solver.chat_client import ChatClient
    from solver.model_reasoner import ModelReasoner

    models = {}
    for name, config in configs.items():
        models[name] = ModelReasoner(config.to_tier(), ChatClient(config), verifier)
        logger.info("model tier %s: %s at %s", name, config.model, config.base_url)
    return models
