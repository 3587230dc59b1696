"""Entity graph of one snapshot: question linking, personalised PageRank walks, neighbours, attributes.

The graph has one node per entity and one per chunk. An entity links to each chunk that
mentions it, weighted by its mention count there. It also links to the entities it shares
sentences with (the ``relations`` table), weighted by the relation weight summed over
documents and scaled down so that mention edges dominate. Everything is loaded into
memory once per snapshot. Each set of caller groups gets its own subgraph, built on first
use and cached.

A walk runs igraph's personalised PageRank on the neighbourhood of its seed entities
(see ``NEIGHBOURHOOD_HOPS``) rather than on the whole graph. On the index of the 4,858
HotpotQA dev paragraphs (34k nodes, 125k edges) PRPACK takes about 43 ms of CPU per call
on the whole graph and about 1 ms on a neighbourhood.
"""

from __future__ import annotations

import ctypes
import logging
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import igraph
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from indexer.normalize import entity_key
from indexer.store import Snapshot
from solver.evidence import Evidence
from solver.search import clean_query

logger = logging.getLogger("ponder.graph")

# Relation weights are multiplied by this before they join mention counts on one graph,
# so an entity's chunks pull more walk probability than its co-occurring entities.
RELATION_SCALE = 0.2
# On the 500 HotpotQA dev questions, damping 0.5, 0.7 and 0.85 gave recall@5 within 0.01
# of each other. 0.85 was slightly better at recall@10.
DAMPING = 0.85
# The walk runs on the nodes within this many edges of a seed. Entity -> chunk -> entity
# -> chunk reaches the paragraph one bridge entity away from the question's entities.
NEIGHBOURHOOD_HOPS = 3
# Entities with more edges than this join a walk's neighbourhood but are not expanded
# further, because a hub such as "United States" would pull in most of the corpus.
HUB_DEGREE = 60
# Extra weight of the edge between an entity and each chunk of the document titled with
# its name, because a document is about the entity in its title.
TITLE_WEIGHT = 3.0
# Share of a chunk's score that comes from the cosine similarity of its vector to the query.
# On HotpotQA dev it raised walk recall@5 from 0.79 to 0.85, at the cost of embedding the query.
DENSE_WEIGHT = 0.5
MAX_NGRAM_TOKENS = 6
MAX_LINKED = 8
# Cosine similarity between a question phrase and an entity name above which the entity
# is linked, and how many entities one phrase may link this way.
NAME_SIMILARITY_MIN = 0.8
NAME_NEIGHBOURS = 2
# Link-score factors: a match through a surface form other than the entity's own name,
# a match found only through name vectors, and a match written in lower case.
ALIAS_FACTOR = 0.85
EMBEDDING_FACTOR = 0.8
LOWER_CASE_FACTOR = 0.25

_QUERY_VECTOR_CACHE = 64
_GROUP_SEPARATOR = "\x1f"
_TRAILING_PARENTHETICAL = re.compile(r"\s*\([^()]*\)\s*$")
_WORD = re.compile(r"\S+")
_QUOTED = re.compile(r"[\"“”«»]([^\"“”«»]{2,80})[\"“”«»]")
# Words that may sit inside a capitalised name: "University of Vermont", "Kiss and Tell".
_NAME_CONNECTORS = frozenset({"of", "and", "the", "for", "in", "on", "de", "da", "del", "von", "van", "a", "&"})
_STOP_WORDS = frozenset(
    """
    a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each either few
    for from further had has have having he her here hers herself him himself his how i if in
    into is it its itself just me more most my myself neither no nor not now of off on once
    only or other our ours ourselves out over own same she should so some such than that the
    their theirs them themselves then there these they this those through to too under until
    up very was we were what when where which while who whom whose why will with would you
    your yours yourself yourselves us s t many much one first same whom
    name named called known located based born died year years
    """.split()
)


@dataclass
class LinkedEntity:
    """An entity linked to a mention in a question."""

    entity_id: str
    name: str
    label: str
    score: float  # larger is better; exact, capitalised, rare names score near 1
    surface: str  # the question text that linked it


@dataclass
class Neighbor:
    """An entity related to another through shared sentences."""

    entity_id: str
    name: str
    label: str
    relations: list[str]  # relation labels, heaviest first
    weight: float  # relation weight summed over the documents the caller may read
    chunk_ids: list[str] = field(default_factory=list)  # evidence chunks, at most five


@dataclass
class _Token:
    key: str  # normalised piece, as entity_key writes it
    start: int  # character offsets of the whitespace-separated word it came from
    end: int
    capitalised: bool
    stop: bool


@dataclass
class _GraphView:
    """The graph restricted to one set of access groups, with the node ids of the full graph."""

    graph: igraph.Graph
    adjacency: sp.csr_matrix  # unweighted, for neighbourhood expansion
    degree: np.ndarray
    entity_allowed: np.ndarray
    chunk_allowed: np.ndarray


class _GroupSets:
    """Integer codes for the distinct access-group lists of rows, so one lookup filters a column."""

    def __init__(self) -> None:
        self._codes: dict[tuple[str, ...], int] = {}
        self._sets: list[frozenset[str]] = []
        self._allowed: dict[tuple[str, ...], np.ndarray] = {}

    def _code(self, groups: tuple[str, ...]) -> int:
        if groups not in self._codes:
            self._codes[groups] = len(self._sets)
            self._sets.append(frozenset(groups))
            self._allowed.clear()
        return self._codes[groups]

    def encode(self, column: pa.ChunkedArray | pa.Array) -> np.ndarray:
        """Return the code of each row's list of groups; a null list counts as no groups."""
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks() if column.num_chunks else pa.array([], type=column.type)
        encoded = pc.dictionary_encode(pc.binary_join(column, _GROUP_SEPARATOR))
        lookup = np.array(
            [self._code(tuple(value.split(_GROUP_SEPARATOR)) if value else ()) for value in encoded.dictionary.to_pylist()]
            + [self._code(())],
            dtype=np.int32,
        )
        indices = encoded.indices.fill_null(len(lookup) - 1).to_numpy(zero_copy_only=False)
        return lookup[indices.astype(np.int64)]

    def allowed(self, groups: tuple[str, ...]) -> np.ndarray:
        """Return a boolean per code: does that list share a group with ``groups``."""
        if groups not in self._allowed:
            caller = set(groups)
            self._allowed[groups] = np.array([bool(caller & members) for members in self._sets], dtype=bool)
        return self._allowed[groups]


@cache
def _igraph_openmp_set_threads():
    """Return ``omp_set_num_threads`` of the OpenMP runtime bundled with igraph, or None.

    igraph runs PRPACK with OpenMP threads. On a busy machine those threads wait for
    each other, so a PageRank that takes 1 ms on one thread took 100 to 500 ms of CPU
    (python-igraph 1.0.0 on a shared 2-core VM). A walk's neighbourhood is small, so one
    thread is enough.
    """
    folder = Path(igraph.__file__).resolve().parent.parent / "igraph.libs"
    for path in sorted(folder.glob("libgomp*.so*")):
        try:
            # dlopen of a library that is already loaded returns that copy, not a new one.
            return ctypes.CDLL(str(path)).omp_set_num_threads
        except (OSError, AttributeError):
            logger.warning("cannot load %s; PageRank keeps igraph's default OpenMP threads", path)
    return None


def _normalize_groups(groups: Sequence[str] | str) -> tuple[str, ...]:
    if isinstance(groups, str):
        groups = [groups]
    return tuple(sorted({group for group in groups if group}))


def _vector_matrix(column: pa.ChunkedArray) -> np.ndarray:
    vectors = column.combine_chunks() if column.num_chunks else pa.array([], type=column.type)
    width = vectors.type.list_size
    if len(vectors) == 0:
        return np.zeros((0, width), dtype=np.float32)
    return vectors.values.to_numpy(zero_copy_only=False).reshape(-1, width).astype(np.float32)


class GraphWalker:
    """Entity linking and graph walks over one snapshot, restricted to the caller's groups."""

    def __init__(self, snapshot: Snapshot, embedder=None) -> None:
        self.snapshot = snapshot
        if embedder is None:
            from indexer.embedding import Embedder

            embedder = Embedder()
        self.embedder = embedder
        self._groups = _GroupSets()
        self._views: dict[tuple[str, ...], _GraphView] = {}
        self._query_vectors: dict[str, np.ndarray] = {}
        self._load_entities()
        self._load_chunks()
        self._load_mentions()
        self._load_relations()
        self._load_attributes()
        logger.info(
            "entity graph loaded: %d entities, %d chunks, %d mention edges, %d relation pairs",
            self.n_entities,
            self.n_chunks,
            len(self._mention_entity),
            len(self._relation_source),
        )

    # -- loading ----------------------------------------------------------------------

    def _load_entities(self) -> None:
        table = self.snapshot.arrow("entities", ["entity_id", "key", "name", "label", "doc_count", "groups", "vector"])
        self.entity_ids: list[str] = table["entity_id"].to_pylist()
        # NOTE: a name is the most frequent surface form over all groups, so a caller may
        # see a spelling that only documents outside their groups use.
        self.entity_names: list[str] = table["name"].to_pylist()
        self.entity_labels: list[str] = table["label"].to_pylist()
        self._entity_keys: list[str] = table["key"].to_pylist()
        self.n_entities = len(self.entity_ids)
        self._entity_node = {entity: node for node, entity in enumerate(self.entity_ids)}
        self._key_index: dict[str, int] = {key: node for node, key in enumerate(self._entity_keys)}
        self._entity_codes = self._groups.encode(table["groups"])
        self._name_vectors = _vector_matrix(table["vector"])

        # Inverse document frequency in [0, 1]: 1 for a name in one document, lower for names
        # that many documents mention ("American", "United States").
        self.n_documents = max(self.snapshot.table("documents").count_rows(), 1)
        doc_count = np.maximum(table["doc_count"].to_numpy(zero_copy_only=False).astype(np.float64), 1.0)
        self._idf = np.log1p(self.n_documents / doc_count) / math.log1p(self.n_documents)

    def _load_chunks(self) -> None:
        table = self.snapshot.arrow("chunks", ["chunk_id", "doc_id", "title", "text", "n_tokens", "groups", "vector"])
        self.chunk_ids: list[str] = table["chunk_id"].to_pylist()
        self._chunk_doc: list[str] = table["doc_id"].to_pylist()
        self._chunk_title: list[str] = table["title"].to_pylist()
        self._chunk_text: list[str] = table["text"].to_pylist()
        self._chunk_tokens: list[int] = table["n_tokens"].to_pylist()
        self.n_chunks = len(self.chunk_ids)
        self._chunk_codes = self._groups.encode(table["groups"])
        self._chunk_vectors = _vector_matrix(table["vector"])

        # "Kiss and Tell (1945 film)" is about the entity "Kiss and Tell".
        title_entity = np.full(self.n_chunks, -1, dtype=np.int64)
        title_keys: dict[str, int] = {}
        for chunk, title in enumerate(self._chunk_title):
            if not title or not title.strip():
                continue
            if title not in title_keys:
                name = _TRAILING_PARENTHETICAL.sub("", title).strip() or title
                title_keys[title] = self._key_index.get(entity_key(name), -1)
            title_entity[chunk] = title_keys[title]
        self._title_chunk = np.flatnonzero(title_entity >= 0)
        self._title_entity = title_entity[self._title_chunk]

    def _load_mentions(self) -> None:
        """Build the mention edges and the dictionary from normalised surface forms to entities."""
        table = self.snapshot.arrow("mentions", ["entity_id", "chunk_id", "surface", "groups"])
        mentions = pl.from_arrow(table.drop_columns(["groups"])).with_columns(
            pl.Series("code", self._groups.encode(table["groups"]), dtype=pl.Int32)
        )
        entity_lookup = pl.DataFrame(
            {"entity_id": self.entity_ids, "entity": np.arange(self.n_entities, dtype=np.int64)},
            schema={"entity_id": pl.Utf8, "entity": pl.Int64},
        )
        chunk_lookup = pl.DataFrame(
            {"chunk_id": self.chunk_ids, "chunk": np.arange(self.n_chunks, dtype=np.int64)},
            schema={"chunk_id": pl.Utf8, "chunk": pl.Int64},
        )
        mentions = mentions.join(entity_lookup, on="entity_id", how="inner").join(chunk_lookup, on="chunk_id", how="inner")

        edges = mentions.group_by(["entity", "chunk"]).agg(pl.len().alias("count")).sort(["entity", "chunk"])
        self._mention_entity = edges["entity"].to_numpy()
        self._mention_chunk = edges["chunk"].to_numpy()
        self._mention_count = edges["count"].to_numpy().astype(np.float64)

        # Surface forms key the link dictionary together with each entity's own key. A form
        # seen only in documents outside a caller's groups cannot link for that caller.
        surfaces = mentions.group_by(["surface", "entity", "code"]).agg(pl.len().alias("count"))
        self._surface_index: dict[str, list[tuple[int, int, int]]] = {}
        key_cache: dict[str, str] = {}
        for surface, entity, code, count in surfaces.iter_rows():
            key = key_cache.get(surface)
            if key is None:
                key = key_cache[surface] = entity_key(surface)
            self._surface_index.setdefault(key, []).append((entity, code, count))

    def _load_relations(self) -> None:
        table = self.snapshot.arrow("relations", ["source_id", "target_id", "label", "weight", "chunk_id", "groups"])
        frame = pl.from_arrow(table.drop_columns(["groups"])).with_columns(
            pl.Series("code", self._groups.encode(table["groups"]), dtype=pl.Int32),
            pl.col("source_id").replace_strict(self._entity_node, default=-1, return_dtype=pl.Int64).alias("source"),
            pl.col("target_id").replace_strict(self._entity_node, default=-1, return_dtype=pl.Int64).alias("target"),
        )
        frame = frame.filter((pl.col("source") >= 0) & (pl.col("target") >= 0) & (pl.col("source") != pl.col("target")))
        self._relations = frame.select(["source", "target", "label", "weight", "chunk_id", "code"])

        # One undirected edge per entity pair and groups list. A view sums the lists it may read.
        pairs = (
            frame.select(
                pl.min_horizontal("source", "target").alias("low"),
                pl.max_horizontal("source", "target").alias("high"),
                "weight",
                "code",
            )
            .group_by(["low", "high", "code"])
            .agg(pl.col("weight").sum())
            .sort(["low", "high", "code"])
        )
        self._relation_source = pairs["low"].to_numpy()
        self._relation_target = pairs["high"].to_numpy()
        self._relation_weight = pairs["weight"].to_numpy().astype(np.float64)
        self._relation_code = pairs["code"].to_numpy()

    def _load_attributes(self) -> None:
        table = self.snapshot.arrow("attributes")
        columns = [name for name in table.column_names if name not in {"attribute_id", "groups"}]
        self._attributes = pl.from_arrow(table.select(columns)).with_columns(
            pl.Series("code", self._groups.encode(table["groups"]), dtype=pl.Int32)
        )

    # -- group views --------------------------------------------------------------------

    def _view(self, groups: tuple[str, ...]) -> _GraphView:
        """Return the graph restricted to ``groups``, building it on first use.

        Nodes keep their ids. A chunk or entity that no document in the groups mentions
        keeps no edge, and neither does a relation found only outside the groups, so no
        walk reaches them.
        """
        view = self._views.get(groups)
        if view is not None:
            return view
        allowed = self._groups.allowed(groups)
        entity_allowed = allowed[self._entity_codes] if self.n_entities else np.zeros(0, dtype=bool)
        chunk_allowed = allowed[self._chunk_codes] if self.n_chunks else np.zeros(0, dtype=bool)

        keep = chunk_allowed[self._mention_chunk] & entity_allowed[self._mention_entity]
        mention_source = self._mention_entity[keep]
        mention_target = self._mention_chunk[keep] + self.n_entities
        mention_weight = self._mention_count[keep]
        keep = chunk_allowed[self._title_chunk] & entity_allowed[self._title_entity]
        mention_source = np.concatenate([mention_source, self._title_entity[keep]])
        mention_target = np.concatenate([mention_target, self._title_chunk[keep] + self.n_entities])
        mention_weight = np.concatenate([mention_weight, np.full(int(keep.sum()), TITLE_WEIGHT)])

        keep = (
            allowed[self._relation_code]
            & entity_allowed[self._relation_source]
            & entity_allowed[self._relation_target]
        )
        pair = self._relation_source[keep] * self.n_entities + self._relation_target[keep]
        unique_pairs, inverse = np.unique(pair, return_inverse=True)
        relation_weight = np.bincount(inverse, weights=self._relation_weight[keep], minlength=len(unique_pairs))
        relation_source = unique_pairs // max(self.n_entities, 1)
        relation_target = unique_pairs % max(self.n_entities, 1)

        sources = np.concatenate([mention_source, relation_source]).astype(np.int64)
        targets = np.concatenate([mention_target, relation_target]).astype(np.int64)
        weights = np.concatenate([mention_weight, RELATION_SCALE * relation_weight])
        n_nodes = self.n_entities + self.n_chunks

        graph = igraph.Graph(n=n_nodes, edges=np.column_stack([sources, targets]), directed=False)
        graph.es["weight"] = weights
        adjacency = sp.coo_matrix(
            (np.ones(2 * len(sources), dtype=np.int8), (np.concatenate([sources, targets]), np.concatenate([targets, sources]))),
            shape=(n_nodes, n_nodes),
        ).tocsr()
        view = _GraphView(
            graph=graph,
            adjacency=adjacency,
            degree=np.diff(adjacency.indptr),
            entity_allowed=entity_allowed,
            chunk_allowed=chunk_allowed,
        )
        self._views[groups] = view
        logger.info("entity graph view for groups %s: %d edges", ",".join(groups), graph.ecount())
        return view

    # -- linking -------------------------------------------------------------------------

    def link(self, text: str, groups: Sequence[str]) -> list[LinkedEntity]:
        """Link the names mentioned in ``text`` to entities the caller's groups may read.

        Exact matches of normalised word n-grams (1 to 6 words) against entity keys and
        surface forms come first, longest match first and without overlaps. Capitalised
        phrases and quoted titles that no exact match covers are then compared with the
        entity name vectors. Scores fall for names that many documents mention, for alias
        and vector matches, and for matches written in lower case.
        """
        groups = _normalize_groups(groups)
        if not groups or not text or not text.strip() or self.n_entities == 0:
            return []
        view = self._view(groups)
        allowed = self._groups.allowed(groups)
        tokens = _tokenize(text)
        found: dict[int, LinkedEntity] = {}
        covered = [False] * len(tokens)

        for size in range(min(MAX_NGRAM_TOKENS, len(tokens)), 0, -1):
            for start in range(len(tokens) - size + 1):
                span = tokens[start : start + size]
                if any(covered[start : start + size]) or all(token.stop for token in span):
                    continue
                key = " ".join(token.key for token in span)
                matches = self._exact_matches(key, view, allowed)
                if not matches:
                    continue
                for index in range(start, start + size):
                    covered[index] = True
                proper = any(token.capitalised and not token.stop for token in span)
                surface = text[span[0].start : span[-1].end].strip(" \t\"“”'‘’.,;:!?()")
                for node, factor in matches:
                    score = factor * self._idf_weight(node) * (1.0 if proper else LOWER_CASE_FACTOR)
                    self._keep_best(found, node, score, surface)

        phrases = _name_phrases(text, tokens, covered)
        if phrases:
            self._link_by_vector(phrases, view, found)

        ranked = sorted(found.values(), key=lambda entity: (-entity.score, entity.name))
        return ranked[:MAX_LINKED]

    def _exact_matches(self, key: str, view: _GraphView, allowed: np.ndarray) -> list[tuple[int, float]]:
        """Return (entity node, score factor) for an n-gram key, within the caller's groups."""
        node = self._key_index.get(key)
        if node is not None and view.entity_allowed[node]:
            return [(node, 1.0)]
        counts: dict[int, int] = {}
        for entity, code, count in self._surface_index.get(key, ()):
            if allowed[code] and view.entity_allowed[entity]:
                counts[entity] = counts.get(entity, 0) + count
        if not counts:
            return []
        total = sum(counts.values())
        return [(entity, ALIAS_FACTOR * count / total) for entity, count in counts.items()]

    def _link_by_vector(self, phrases: list[str], view: _GraphView, found: dict[int, LinkedEntity]) -> None:
        vectors = self.embedder.embed(phrases)
        similarity = vectors @ self._name_vectors.T
        similarity[:, ~view.entity_allowed] = -1.0
        for row, phrase in enumerate(phrases):
            scores = similarity[row]
            count = min(NAME_NEIGHBOURS, len(scores))
            top = np.argpartition(-scores, count - 1)[:count]
            for node in top[np.argsort(-scores[top])]:
                value = float(scores[node])
                if value < NAME_SIMILARITY_MIN:
                    break
                score = EMBEDDING_FACTOR * value * self._idf_weight(int(node))
                self._keep_best(found, int(node), score, phrase)

    def _idf_weight(self, node: int) -> float:
        return 0.2 + 0.8 * float(self._idf[node])

    def _keep_best(self, found: dict[int, LinkedEntity], node: int, score: float, surface: str) -> None:
        current = found.get(node)
        if current is None or score > current.score:
            found[node] = LinkedEntity(
                entity_id=self.entity_ids[node],
                name=self.entity_names[node],
                label=self.entity_labels[node],
                score=round(score, 4),
                surface=surface,
            )

    def _link_names(self, names: Iterable[str], groups: tuple[str, ...]) -> list[LinkedEntity]:
        """Link names given on their own, such as a bridge entity found by a reasoner."""
        view = self._view(groups)
        allowed = self._groups.allowed(groups)
        linked: list[LinkedEntity] = []
        for name in names:
            if not name or not name.strip():
                continue
            matches = self._exact_matches(entity_key(name), view, allowed)
            if matches:
                for node, factor in matches:
                    linked.append(
                        LinkedEntity(
                            entity_id=self.entity_ids[node],
                            name=self.entity_names[node],
                            label=self.entity_labels[node],
                            score=round(factor * self._idf_weight(node), 4),
                            surface=name,
                        )
                    )
            else:
                linked.extend(self.link(name, groups)[:2])
        return linked

    # -- walking -------------------------------------------------------------------------

    def walk(
        self,
        query: str,
        groups: Sequence[str],
        *,
        limit: int = 5,
        seeds: list[LinkedEntity] | None = None,
        extra_seed_names: Sequence[str] = (),
        query_vector: np.ndarray | None = None,
    ) -> list[Evidence]:
        """Rank chunks by personalised PageRank from the query's entities.

        ``seeds`` replaces linking the query, and ``extra_seed_names`` adds entities by
        name. Seeds outside the caller's groups are ignored. Only chunks near a seed are
        ranked, by PageRank blended with the cosine similarity of their vectors to the
        query (``DENSE_WEIGHT``). Pass ``query_vector`` when the query is already
        embedded. Returns at most ``limit`` chunks the groups may read, best first, or
        nothing when no seed links.
        """
        clean_query(query)
        groups = _normalize_groups(groups)
        if not groups or limit < 1 or self.n_chunks == 0:
            return []
        view = self._view(groups)
        if seeds is None:
            seeds = self.link(query, groups)
        seeds = list(seeds) + self._link_names(extra_seed_names, groups)
        reset: dict[int, float] = {}
        seed_names: dict[int, str] = {}
        for seed in seeds:
            node = self._entity_node.get(seed.entity_id)
            if node is None or not view.entity_allowed[node] or seed.score <= 0:
                continue
            reset[node] = reset.get(node, 0.0) + float(seed.score)
            seed_names[node] = seed.name
        if not reset:
            return []

        nodes, scores, subgraph = self._personalized_pagerank(view, reset)
        # Chunks outside the caller's groups have no edges in the view, so none should be
        # here. The mask keeps that true even if a seed were a chunk.
        is_chunk = nodes >= self.n_entities
        is_chunk[is_chunk] = view.chunk_allowed[nodes[is_chunk] - self.n_entities]
        chunk_nodes = nodes[is_chunk]
        chunk_scores = scores[is_chunk]
        if len(chunk_nodes) == 0:
            return []
        ranking = chunk_scores / max(float(chunk_scores.max()), 1e-12)
        if DENSE_WEIGHT > 0:
            if query_vector is None:
                query_vector = self._query_vector(query)
            dense = np.clip(self._chunk_vectors[chunk_nodes - self.n_entities] @ query_vector, 0.0, None)
            ranking = (1.0 - DENSE_WEIGHT) * ranking + DENSE_WEIGHT * dense
        count = min(limit, len(chunk_nodes))
        top = np.argpartition(-ranking, count - 1)[:count]
        top = top[np.lexsort((chunk_nodes[top], -ranking[top]))]

        seed_local = np.searchsorted(nodes, np.array(list(reset), dtype=np.int64)).tolist()
        names = [seed_names[node] for node in sorted(reset, key=lambda node: -reset[node])]
        found: list[Evidence] = []
        for position in top:
            node = int(chunk_nodes[position])
            chunk = node - self.n_entities
            found.append(
                Evidence(
                    evidence_id=self.chunk_ids[chunk],
                    kind="graph",
                    doc_id=self._chunk_doc[chunk],
                    title=self._chunk_title[chunk],
                    text=self._chunk_text[chunk],
                    score=float(ranking[position]),
                    n_tokens=int(self._chunk_tokens[chunk] or 0),
                    source="retrieve:graph",
                    details={
                        "seeds": names,
                        "path": self._explain(subgraph, nodes, int(np.searchsorted(nodes, node)), seed_local),
                        "pagerank": float(chunk_scores[position]),
                    },
                )
            )
        return found

    def _query_vector(self, query: str) -> np.ndarray:
        """Embed a query, reusing the vectors of recent queries: an episode walks one query several times."""
        vector = self._query_vectors.get(query)
        if vector is None:
            if len(self._query_vectors) >= _QUERY_VECTOR_CACHE:
                self._query_vectors.pop(next(iter(self._query_vectors)))
            vector = self._query_vectors[query] = self.embedder.embed_one(query)
        return vector

    def _neighbourhood(self, view: _GraphView, seeds: list[int]) -> np.ndarray:
        """Return the sorted nodes within ``NEIGHBOURHOOD_HOPS`` of the seeds, expanding no hub."""
        member = np.zeros(view.adjacency.shape[0], dtype=bool)
        frontier = np.array(sorted(seeds), dtype=np.int64)
        member[frontier] = True
        for _ in range(NEIGHBOURHOOD_HOPS):
            frontier = frontier[view.degree[frontier] <= HUB_DEGREE]
            if len(frontier) == 0:
                break
            reached = np.unique(view.adjacency[frontier].indices)
            frontier = reached[~member[reached]]
            member[frontier] = True
        return np.flatnonzero(member)

    def _personalized_pagerank(self, view: _GraphView, reset: dict[int, float]) -> tuple[np.ndarray, np.ndarray, igraph.Graph]:
        """Run personalised PageRank on the seeds' neighbourhood.

        Returns the neighbourhood's node ids, their scores, and the induced subgraph whose
        vertex ``i`` is node ``nodes[i]``.

        NOTE: the walk cannot leave the neighbourhood, so scores differ from PageRank on
        the whole graph, most for nodes near its border. On HotpotQA dev, recall@5 did
        not change measurably between three and four hops.
        """
        nodes = self._neighbourhood(view, list(reset))
        subgraph = view.graph.induced_subgraph(nodes.tolist(), implementation="create_from_scratch")
        position = np.searchsorted(nodes, np.array(list(reset), dtype=np.int64))
        vector = np.zeros(len(nodes), dtype=np.float64)
        vector[position] = list(reset.values())
        if subgraph.ecount() == 0:
            return nodes, vector / vector.sum(), subgraph
        set_threads = _igraph_openmp_set_threads()
        if set_threads is not None:
            # The setting belongs to the calling thread, so it is made before every call.
            set_threads(1)
        scores = subgraph.personalized_pagerank(
            directed=False, damping=DAMPING, reset=vector.tolist(), weights="weight"
        )
        return nodes, np.asarray(scores, dtype=np.float64), subgraph

    def _explain(self, subgraph: igraph.Graph, nodes: np.ndarray, target: int, seeds: list[int]) -> str:
        """Describe a shortest path from a seed to a chunk: entity names and chunk titles."""
        if not seeds:
            return ""
        # Breadth-first order from the chunk meets the nearest seed first.
        order, _, parents = subgraph.bfs(target)
        seed_set = set(seeds)
        nearest = next((vertex for vertex in order if vertex in seed_set), None)
        if nearest is None:
            return ""
        steps = []
        vertex = nearest
        while True:
            node = int(nodes[vertex])
            if node < self.n_entities:
                steps.append(self.entity_names[node])
            else:
                steps.append(f"[{self._chunk_title[node - self.n_entities]}]")
            if vertex == target:
                break
            vertex = parents[vertex]
        return " -> ".join(steps)

    # -- neighbours and attributes ------------------------------------------------------------

    def neighbors(self, entity_id: str, groups: Sequence[str], limit: int = 10) -> list[Neighbor]:
        """Return the entities that share sentences with ``entity_id``, heaviest first.

        Only relations from documents the caller's groups may read count, and an entity
        the groups may not read has no neighbours.
        """
        groups = _normalize_groups(groups)
        node = self._entity_node.get(entity_id)
        if not groups or node is None or limit < 1:
            return []
        view = self._view(groups)
        if not view.entity_allowed[node]:
            return []
        allowed_codes = np.flatnonzero(self._groups.allowed(groups)).tolist()
        rows = self._relations.filter(
            ((pl.col("source") == node) | (pl.col("target") == node)) & pl.col("code").is_in(allowed_codes)
        ).with_columns(
            pl.when(pl.col("source") == node).then(pl.col("target")).otherwise(pl.col("source")).alias("other")
        )
        if rows.height == 0:
            return []
        labels = rows.group_by(["other", "label"]).agg(pl.col("weight").sum().alias("label_weight"))
        summary = (
            rows.group_by("other")
            .agg(pl.col("weight").sum().alias("weight"), pl.col("chunk_id").unique(maintain_order=True).head(5).alias("chunks"))
            .join(
                labels.sort(["label_weight", "label"], descending=[True, False])
                .group_by("other", maintain_order=True)
                .agg(pl.col("label").alias("labels")),
                on="other",
            )
            .sort(["weight", "other"], descending=[True, False])
        )
        found: list[Neighbor] = []
        for other, weight, chunks, labels_of_other in summary.iter_rows():
            if not view.entity_allowed[other]:
                continue
            found.append(
                Neighbor(
                    entity_id=self.entity_ids[other],
                    name=self.entity_names[other],
                    label=self.entity_labels[other],
                    relations=list(labels_of_other),
                    weight=float(weight),
                    chunk_ids=list(chunks),
                )
            )
            if len(found) >= limit:
                break
        return found

    def attributes_of(self, entity_ids: Sequence[str], groups: Sequence[str]) -> list[dict]:
        """Return the attribute rows of these entities that the caller's groups may read.

        Each row has entity_id, entity_name, attribute, value, value_type, number, unit,
        date, chunk_id, sentence and doc_id, in the order of ``entity_ids``.
        """
        groups = _normalize_groups(groups)
        if not groups or not entity_ids:
            return []
        allowed_codes = np.flatnonzero(self._groups.allowed(groups)).tolist()
        order = {entity: position for position, entity in enumerate(dict.fromkeys(entity_ids))}
        rows = (
            self._attributes.filter(pl.col("entity_id").is_in(list(order)) & pl.col("code").is_in(allowed_codes))
            .with_columns(pl.col("entity_id").replace_strict(order, return_dtype=pl.Int64).alias("position"))
            .sort(["position", "attribute", "chunk_id"])
            .drop(["position", "code"])
        )
        return rows.to_dicts()


def _tokenize(text: str) -> list[_Token]:
    """Split text into normalised word pieces that keep the offsets of their source word."""
    tokens: list[_Token] = []
    for match in _WORD.finditer(text):
        word = match.group()
        letters = "".join(character for character in word if character.isalpha())
        # "U.S." and "UK" are names even though their keys are stop words.
        abbreviation = len(letters) > 1 and letters.isupper()
        for piece in entity_key(word).split():
            if not any(character.isalnum() for character in piece):
                continue
            tokens.append(
                _Token(
                    key=piece,
                    start=match.start(),
                    end=match.end(),
                    capitalised=letters[:1].isupper(),
                    stop=piece in _STOP_WORDS and not abbreviation,
                )
            )
    return tokens


def _name_phrases(text: str, tokens: list[_Token], covered: list[bool]) -> list[str]:
    """Return quoted titles and runs of capitalised words that no exact match covers."""
    phrases: list[str] = []
    for match in _QUOTED.finditer(text):
        inside = [index for index, token in enumerate(tokens) if match.start(1) <= token.start < match.end(1)]
        if not all(covered[index] for index in inside):
            phrases.append(match.group(1).strip())
    run: list[int] = []

    def flush() -> None:
        while run and tokens[run[-1]].stop:
            run.pop()
        while run and tokens[run[0]].stop:
            run.pop(0)
        if run and not all(covered[index] for index in run):
            phrases.append(text[tokens[run[0]].start : tokens[run[-1]].end].strip(" \t\"“”'‘’.,;:!?()"))
        run.clear()

    for index, token in enumerate(tokens):
        if token.capitalised and not (token.stop and not run):
            run.append(index)
        elif run and token.key in _NAME_CONNECTORS:
            run.append(index)
        else:
            flush()
    flush()
    unique: list[str] = []
    for phrase in phrases:
        if phrase and phrase not in unique:
            unique.append(phrase)
    return unique
