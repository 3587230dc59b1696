"""Hybrid chunk search: dense vectors and full text, fused by reciprocal rank.

Vectors of a snapshot are held in memory as one normalised matrix when the chunk table
is small enough (a matrix product over 11k chunks takes about a millisecond); larger
tables are searched through LanceDB's vector index. Full-text search always goes to
LanceDB's native inverted index, with the query passed as a plain match query so that
quotes, colons and AND/OR/NOT in a question are words, not syntax.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from indexer.store import Snapshot, quote

logger = logging.getLogger("ponder.search")

RRF_K = 60
IN_MEMORY_MAX_ROWS = 300_000
_QUERY_CHARS = re.compile(r"[^\w\s'-]+", re.UNICODE)
MAX_QUERY_CHARS = 2_000
# Other names of the single-list modes: "dense" for vector search, "fts" for full text.
MODE_ALIASES = {"dense": "vector", "fts": "text"}


class QueryError(ValueError):
    """A search query that cannot be run."""


@dataclass
class ChunkHit:
    """One chunk returned by a search, with the evidence of why."""

    chunk_id: str
    doc_id: str
    title: str
    text: str
    score: float  # fused score; larger is better
    n_tokens: int = 0  # embedding-model tokens of the text
    vector_score: float | None = None  # cosine similarity
    text_score: float | None = None  # BM25 from the full-text index
    ranks: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "chunk_id": self.chunk_id,
            "doc_id": self.doc_id,
            "title": self.title,
            "text": self.text,
            "score": round(self.score, 6),
            "n_tokens": self.n_tokens,
            "vector_score": None if self.vector_score is None else round(self.vector_score, 6),
            "text_score": None if self.text_score is None else round(self.text_score, 6),
            "ranks": self.ranks,
        }


def groups_filter(groups: Sequence[str]) -> str:
    return f"array_has_any(groups, [{', '.join(quote(group) for group in groups)}])"


def clean_query(query: str) -> str:
    """Check a query and reduce it to words for the full-text index."""
    if not isinstance(query, str) or not query.strip():
        message = "the query is empty; pass a question or some keywords"
        raise QueryError(message)
    if len(query) > MAX_QUERY_CHARS:
        message = f"the query has {len(query)} characters; the maximum is {MAX_QUERY_CHARS}"
        raise QueryError(message)
    return " ".join(_QUERY_CHARS.sub(" ", query).split())


class ChunkSearcher:
    """Hybrid search over the chunks of one snapshot, restricted to the caller's groups."""

    def __init__(self, snapshot: Snapshot, embedder=None) -> None:
        self.snapshot = snapshot
        self.table = snapshot.table("chunks")
        if embedder is None:
            from indexer.embedding import Embedder

            embedder = Embedder()
        self.embedder = embedder
        self._matrix: np.ndarray | None = None
        self._meta: pa.Table | None = None
        self._group_masks: dict[tuple[str, ...], np.ndarray] = {}
        self._position: dict[str, int] = {}
        if self.table.count_rows() <= IN_MEMORY_MAX_ROWS:
            self._load_matrix()

    def _load_matrix(self) -> None:
        data = self.table.to_arrow().select(["chunk_id", "doc_id", "title", "text", "n_tokens", "groups", "vector"])
        vectors = data["vector"].combine_chunks()
        width = vectors.type.list_size
        self._matrix = vectors.values.to_numpy(zero_copy_only=False).reshape(-1, width).astype(np.float32)
        self._meta = data.drop_columns(["vector"])
        self._position = {chunk_id: i for i, chunk_id in enumerate(self._meta["chunk_id"].to_pylist())}

    def _mask(self, groups: tuple[str, ...]) -> np.ndarray:
        if groups not in self._group_masks:
            allowed = set(groups)
            rows = self._meta["groups"].to_pylist()
            self._group_masks[groups] = np.array([bool(allowed.intersection(row)) for row in rows], dtype=bool)
        return self._group_masks[groups]

    def chunk(self, chunk_id: str) -> dict | None:
        if self._meta is not None:
            position = self._position.get(chunk_id)
            return None if position is None else {name: self._meta[name][position].as_py() for name in self._meta.column_names}
        rows = self.table.search().where(f"chunk_id = {quote(chunk_id)}").limit(1).to_arrow().to_pylist()
        return rows[0] if rows else None

    def vector_search(self, query_vector: np.ndarray, groups: Sequence[str], limit: int) -> list[tuple[str, float]]:
        groups = tuple(sorted(groups))
        if self._matrix is not None:
            scores = self._matrix @ query_vector
            scores = np.where(self._mask(groups), scores, -np.inf)
            limit = min(limit, int(np.isfinite(scores).sum()))
            if limit <= 0:
                return []
            top = np.argpartition(-scores, limit - 1)[:limit]
            top = top[np.argsort(-scores[top], kind="stable")]
            ids = self._meta["chunk_id"]
            return [(ids[int(i)].as_py(), float(scores[i])) for i in top]
        result = (
            self.table.search(query_vector)
            .distance_type("cosine")
            .where(groups_filter(groups), prefilter=True)
            .limit(limit)
            .select(["chunk_id", "_distance"])
            .to_arrow()
        )
        return [(chunk_id, 1.0 - distance) for chunk_id, distance in zip(result["chunk_id"].to_pylist(), result["_distance"].to_pylist(), strict=True)]

    def text_search(self, query: str, groups: Sequence[str], limit: int) -> list[tuple[str, float]]:
        from lancedb.query import MatchQuery

        words = clean_query(query)
        if not words:
            return []
        result = (
            self.table.search(MatchQuery(words, "text"), query_type="fts")
            .where(groups_filter(groups), prefilter=True)
            .limit(limit)
            .select(["chunk_id", "_score"])
            .to_arrow()
        )
        return list(zip(result["chunk_id"].to_pylist(), result["_score"].to_pylist(), strict=True))

    def search(
        self,
        query: str,
        *,
        groups: Sequence[str] = ("public",),
        limit: int = 10,
        mode: str = "hybrid",
        depth: int = 50,
        query_vector: np.ndarray | None = None,
    ) -> list[ChunkHit]:
        """Return the best ``limit`` chunks for ``query`` that the caller's groups may read.

        ``mode`` is "hybrid" (reciprocal rank fusion of both lists), "vector" (also
        spelled "dense") or "text" (also spelled "fts").
        """
        mode = MODE_ALIASES.get(mode, mode)
        if mode not in {"hybrid", "vector", "text"}:
            message = f"unknown search mode {mode!r}; use one of: hybrid, vector (dense), text (fts)"
            raise QueryError(message)
        clean_query(query)
        if not groups:
            return []
        lists: dict[str, list[tuple[str, float]]] = {}
        if mode in {"hybrid", "vector"}:
            vector = query_vector if query_vector is not None else self.embedder.embed_one(query)
            lists["vector"] = self.vector_search(vector, groups, max(depth, limit))
        if mode in {"hybrid", "text"}:
            lists["text"] = self.text_search(query, groups, max(depth, limit))
        return self._fuse(lists, limit)

    def _fuse(self, lists: dict[str, list[tuple[str, float]]], limit: int) -> list[ChunkHit]:
        fused: dict[str, float] = {}
        ranks: dict[str, dict[str, int]] = {}
        raw: dict[str, dict[str, float]] = {}
        for name, hits in lists.items():
            for rank, (chunk_id, score) in enumerate(hits, start=1):
                fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank)
                ranks.setdefault(chunk_id, {})[name] = rank
                raw.setdefault(chunk_id, {})[name] = score
        order = sorted(fused, key=lambda chunk_id: (-fused[chunk_id], chunk_id))[:limit]
        hits = []
        for chunk_id in order:
            row = self.chunk(chunk_id)
            if row is None:
                continue
            hits.append(
                ChunkHit(
                    chunk_id=chunk_id,
                    doc_id=row["doc_id"],
                    title=row["title"],
                    text=row["text"],
                    score=fused[chunk_id],
                    n_tokens=row["n_tokens"],
                    vector_score=raw[chunk_id].get("vector"),
                    text_score=raw[chunk_id].get("text"),
                    ranks=ranks[chunk_id],
                )
            )
        return hits
