"""Baseline policies: fixed retrieval plans that read no monitors.

They are the reference points of the budget sweep. Each retrieves chunks only and then
synthesises once, so the only thing that grows with the budget is how much it retrieves
(``k``, the chunks per retrieval):

- ``dense``: the top ``k`` chunks by cosine similarity alone.
- ``fts``: the top ``k`` chunks by BM25 alone.
- ``hybrid``: one pass of reciprocal rank fusion of both lists.
- ``ircot``: an iterative retrieve-and-reason loop with a fixed number of hops. Each hop
  retrieves with a query, then a bridge step reads the evidence so far and writes the
  next query (the question's second hop with the bridge entity filled in). The name
  comes from IRCoT, which interleaves retrieval with chain-of-thought steps. Here the
  embedded reasoner's bridge step takes the place of a generated thought.

Without an explicit ``k``, a baseline sizes ``k`` so that its whole plan fits the episode
budget with chunks of ``chunk_tokens`` tokens. Every retrieved token is paid for once
when retrieved and once more by every reasoning step that reads it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from controller.policies import register
from solver.state import REASON, RETRIEVAL_OVERHEAD_TOKENS, RETRIEVE, STOP, Action, EpisodeState

MAX_K = 50
# Tokens reserved for the question and the outputs of reasoning steps (an estimate).
QUESTION_RESERVE_TOKENS = 48


def chunks_for_budget(budget: float, reads: float, chunk_tokens: float, retrievals: int = 1) -> int:
    """Return how many chunks per retrieval fit ``budget``.

    ``reads`` is how many times each retrieved token is paid for across the plan: once
    when it is retrieved, plus once per reasoning step that reads it.
    """
    if chunk_tokens <= 0:
        message = f"chunk_tokens must be positive, got {chunk_tokens}"
        raise ValueError(message)
    usable = budget - retrievals * RETRIEVAL_OVERHEAD_TOKENS - QUESTION_RESERVE_TOKENS * max(1.0, reads - retrievals)
    return max(1, min(MAX_K, math.floor(usable / (reads * chunk_tokens))))


@dataclass
class SinglePassPolicy:
    """Retrieve the top ``k`` chunks with one search arm, then synthesise once."""

    name: str = "hybrid"
    mode: str = "hybrid"
    k: int | None = None
    chunk_tokens: float = 120.0

    def __post_init__(self) -> None:
        if self.mode not in ("hybrid", "dense", "fts"):
            message = f"unknown search mode {self.mode!r}; use hybrid, dense or fts"
            raise ValueError(message)
        if self.k is not None and self.k < 1:
            message = f"k must be at least 1, got {self.k}"
            raise ValueError(message)

    def start(self, state: EpisodeState) -> None:
        # One retrieval, then one synthesis that reads everything retrieved.
        k = self.k or chunks_for_budget(state.budget, reads=2, chunk_tokens=self.chunk_tokens)
        state.info["plan"] = [
            Action(RETRIEVE, "chunks", limit=k, args=(("mode", self.mode),)),
            Action(REASON, "synthesize"),
        ]

    def choose(self, state: EpisodeState) -> Action:
        plan = state.info["plan"]
        return plan.pop(0) if plan else Action(STOP, "answer")


@register("dense")
def dense_policy(**options) -> SinglePassPolicy:
    return SinglePassPolicy(name="dense", mode="dense", **options)


@register("fts")
def fts_policy(**options) -> SinglePassPolicy:
    return SinglePassPolicy(name="fts", mode="fts", **options)


@register("hybrid")
def hybrid_policy(**options) -> SinglePassPolicy:
    return SinglePassPolicy(name="hybrid", mode="hybrid", **options)


@register("ircot")
@dataclass
class IterativePolicy:
    """Alternate retrieval and a bridge step for ``hops`` hops, then synthesise.

    The first hop retrieves with the question. Each later hop retrieves with the
    follow-up query the last bridge step queued; when it queued none, with the question
    followed by the current best answer. A hop whose query was already run ends the loop
    early, since retrieving it again would find nothing new.
    """

    name: str = "ircot"
    hops: int = 2
    k: int | None = None
    chunk_tokens: float = 120.0

    def __post_init__(self) -> None:
        if self.hops < 1:
            message = f"hops must be at least 1, got {self.hops}"
            raise ValueError(message)
        if self.k is not None and self.k < 1:
            message = f"k must be at least 1, got {self.k}"
            raise ValueError(message)

    def start(self, state: EpisodeState) -> None:
        # Hop i's chunks are read by its retrieval, by the bridge steps of hops i..N-1
        # and by the final synthesis; summed over the hops that is 2N + N(N-1)/2 reads
        # of one hop's worth of chunks.
        reads = 2 * self.hops + self.hops * (self.hops - 1) / 2
        k = self.k or chunks_for_budget(state.budget, reads=reads, chunk_tokens=self.chunk_tokens, retrievals=self.hops)
        state.info["ircot"] = {"k": k, "hops_done": 0}

    def choose(self, state: EpisodeState) -> Action:
        progress = state.info["ircot"]
        last = state.steps[-1].action if state.steps else None
        if last is not None and last.kind == REASON and last.name == "synthesize":
            return Action(STOP, "answer")
        if last is not None and last.kind == RETRIEVE and progress["hops_done"] < self.hops:
            return Action(REASON, "bridge")
        if progress["hops_done"] < self.hops:
            query = self._next_query(state)
            if query is not None:
                progress["hops_done"] += 1
                return Action(RETRIEVE, "chunks", query=query, limit=progress["k"])
        return Action(REASON, "synthesize")

    def _next_query(self, state: EpisodeState) -> str | None:
        if not state.steps:
            return state.question
        while state.open_hops:
            query = state.open_hops.pop(0)
            if ("chunks", query) not in state.done_queries:
                return query
        if state.top is not None:
            query = f"{state.question} {state.top.text}"
            if ("chunks", query) not in state.done_queries:
                return query
        return None
