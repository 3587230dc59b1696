"""The retrieval tools an episode can call, bound to one index snapshot."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from indexer.embedding import Embedder, count_tokens
from indexer.store import Snapshot
from solver.evidence import Candidate, Evidence
from solver.search import ChunkSearcher
from solver.state import RETRIEVAL_OVERHEAD_TOKENS, EpisodeState

logger = logging.getLogger("ponder.tools")


@dataclass
class ComputeResult:
    output: list[Candidate]
    tokens_in: int
    tokens_out: int


class Toolbox:
    """Chunk search, graph walk and table tools over one snapshot, loaded once."""

    def __init__(self, snapshot: Snapshot, embedder: Embedder | None = None) -> None:
        from solver.graph import GraphWalker
        from solver.table_tool import TableTool

        self.snapshot = snapshot
        self.version = snapshot.version
        self.embedder = embedder or Embedder()
        self.chunks = ChunkSearcher(snapshot, self.embedder)
        self.graph = GraphWalker(snapshot, self.embedder)
        self.tables = TableTool(snapshot)

    @property
    def has_tables(self) -> bool:
        return self.tables.has_tables

    def prepare(self, state: EpisodeState) -> None:
        """Link the question's entities once; monitors and the router read them."""
        linked = self.graph.link(state.question, state.groups)
        state.info["linked"] = linked
        state.info["entity_names"] = [entity.surface or entity.name for entity in linked[:6]]
        state.info["has_tables"] = self.has_tables

    def retrieve(
        self, source: str, query: str, state: EpisodeState, *, limit: int, mode: str = "hybrid"
    ) -> tuple[list[Evidence], list[Candidate]]:
        """Run one retrieval; returns evidence in rank order and any ready-made candidates.

        ``mode`` picks the chunk search arm: "hybrid", "dense" or "fts". The graph and
        table sources have a single arm and accept only "hybrid".
        """
        hop = 1 if query != state.question else 0
        if source != "chunks" and mode != "hybrid":
            message = f"search mode {mode!r} applies only to chunk retrieval, not to {source!r}; drop the mode"
            raise ValueError(message)
        if source == "chunks":
            hits = self.chunks.search(query, groups=state.groups, limit=limit, mode=mode)
            found = [
                Evidence(
                    evidence_id=hit.chunk_id,
                    kind="chunk",
                    doc_id=hit.doc_id,
                    title=hit.title,
                    text=hit.text,
                    score=hit.score,
                    n_tokens=hit.n_tokens,
                    source="retrieve:chunks",
                    hop=hop,
                    details={"ranks": hit.ranks},
                )
                for hit in hits
            ]
            return found, []
        if source == "graph":
            seeds = state.info.get("linked") if hop == 0 else None
            found = self.graph.walk(query, state.groups, limit=limit, seeds=seeds)
            for item in found:
                item.hop = hop
            return found, []
        if source == "table":
            found = self.tables.lookup(query, state.groups, limit=limit)
            for item in found:
                item.hop = hop
            return found, []
        message = f"unknown retrieval source {source!r}; use chunks, graph or table"
        raise ValueError(message)

    def compute(self, question: str, state: EpisodeState) -> ComputeResult:
        """Table arithmetic for the question over the table rows gathered so far."""
        rows = [item for item in state.evidence.values() if item.kind == "table"]
        candidates = self.tables.compute(question, state.groups, rows or None)
        tokens_in = sum(item.n_tokens for item in rows) + len(question) // 4
        if not rows and candidates:
            # With no rows gathered, the table tool searched every table itself, which is
            # a retrieval: charge its overhead and the cells the derivation quotes.
            tokens_in += RETRIEVAL_OVERHEAD_TOKENS + count_tokens([candidates[0].derivation])[0]
        tokens_out = sum(len(candidate.derivation) // 4 + 2 for candidate in candidates[:1])
        return ComputeResult(candidates, tokens_in, tokens_out)
